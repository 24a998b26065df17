"""Does this hardware run bfloat16 matrix math natively? (what `precision="auto"` asks)

CPU: yes with AMX-BF16 (Intel Sapphire Rapids and later) or AVX512-BF16 (Intel Cooper Lake,
AMD Zen 4 and later), read from the kernel's CPU flags (/proc/cpuinfo) at run time; other
CPUs (or systems without /proc/cpuinfo) emulate bfloat16 and are often slower than float32
there. CUDA: yes from compute capability 8.0 (Ampere) on.

Layer 0: imports only torch.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

__all__ = ["BF16_CPU_FLAGS", "cpu_flags", "has_amx", "native_bf16_cpu_flags", "has_native_bf16"]

BF16_CPU_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of the CPU instructions that multiply bfloat16 natively."""


@functools.cache
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The flags of the first processor listed in `cpuinfo` (Linux's /proc/cpuinfo format:
    a line `flags : fpu vme ...`); empty where the file does not exist or has none."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def native_bf16_cpu_flags(flags: frozenset[str] | None = None) -> list[str]:
    """The flags of BF16_CPU_FLAGS that `flags` (default: this CPU's) holds, in that order."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in BF16_CPU_FLAGS if f in flags]


def has_amx() -> bool:
    """True where this CPU has AMX-BF16 (Intel Sapphire Rapids and later): the only CPU kind
    where the float32 weight-bound convolutions of a bf16 fit (`MixedPrecision.fp32_convs`)
    and `ConvWeightGrad` were measured faster, so where both are on by default."""
    return "amx_bf16" in cpu_flags()


def has_native_bf16(device: torch.device | str) -> bool:
    """True where bfloat16 matrix math is native on `device`: a CPU with AMX-BF16 or
    AVX512-BF16, a CUDA GPU of compute capability 8.0 or more. False on other devices."""
    device = torch.device(device)
    if device.type == "cpu":
        return bool(native_bf16_cpu_flags())
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return False
