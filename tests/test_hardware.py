"""hardware: native-bfloat16 detection from stubbed CPU flags and CUDA capabilities."""

from __future__ import annotations

import pytest
import torch

from fastcore_ext import hardware

ZEN3 = "fpu vme sse sse2 avx avx2 fma"  # no bf16 instruction
ZEN4 = ZEN3 + " avx512f avx512bw avx512_bf16 avx512_vnni"
SAPPHIRE_RAPIDS = ZEN3 + " avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"


def cpuinfo(tmp_path, flags: str):
    """A /proc/cpuinfo of two processors with `flags` (only the first one's are read)."""
    text = "".join(
        f"processor\t: {i}\nmodel name\t: Some CPU\nflags\t\t: {flags}\nbogomips\t: 1.0\n\n"
        for i in range(2)
    )
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(ZEN3, []), (ZEN4, ["avx512_bf16"]), (SAPPHIRE_RAPIDS, ["amx_bf16", "avx512_bf16"])],
)
def test_cpu_flags_from_a_cpuinfo_file(tmp_path, flags, expected):
    found = hardware.cpu_flags(cpuinfo(tmp_path, flags))
    assert found == frozenset(flags.split())
    assert hardware.native_bf16_cpu_flags(found) == expected


def test_missing_or_flagless_cpuinfo_gives_no_flags(tmp_path):
    assert hardware.cpu_flags(tmp_path / "absent") == frozenset()
    (tmp_path / "other").write_text("processor\t: 0\nmodel name\t: x\n")
    assert hardware.cpu_flags(tmp_path / "other") == frozenset()


@pytest.mark.parametrize(
    ("flags", "native", "amx"),
    [(ZEN3, False, False), (ZEN4, True, False), (SAPPHIRE_RAPIDS, True, True)],
)
def test_has_native_bf16_and_has_amx_on_the_cpu_follow_the_flags(monkeypatch, flags, native, amx):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags.split()))
    assert hardware.has_native_bf16("cpu") is native
    assert hardware.has_amx() is amx
    assert hardware.has_native_bf16(torch.device("cpu")) is native


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 5), False), ((8, 0), True), ((9, 0), True)]
)
def test_has_native_bf16_on_cuda_from_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert hardware.has_native_bf16("cuda:0") is expected


def test_other_devices_are_not_native():
    assert hardware.has_native_bf16("meta") is False
