"""A seeded CPU fit gives bit-identical weights before and after the Learner's restructure
(issue 13: save/load, inference, mixed precision, layer groups and the one-cycle copy moved
out of learner.py).

The fingerprint in tests/data/seeded_fit_fingerprint.json (sha256 of the bytes of every
tensor of the model's state_dict, and of the validation predictions) was recorded with the
code BEFORE the restructure (the Learner of 1,100 lines), by running this file as a script:
`PYTHONPATH=.:tests python tests/test_seeded_fit.py --record` (resnet_fit is unchanged
since; small_fit was recorded again, the same way, when a learner's later fits began to draw
new data epochs instead of repeating the first fit's: its three fits after lr_find now see
data epochs 0, 1-2 and 3 instead of 0, 0-1 and 0; and again when freeze_to began to clear
the optimizer's per-parameter state as fastai's does: its unfreeze() now starts the moments
afresh; and again when a fit after a one-cycle fit began to keep that schedule's last
momentum, as fastai's: its final fit(1) now runs at it instead of 0.9; the "cpu_capability"
entry was added by hand first, the "amx" entry (False) in session 12, when a Xeon with AMX,
also "AVX512" to torch, gave other bits). The test reruns the same procedure with the
current code and compares. Float results depend on torch's kernels, so the fingerprint is
tied to the torch version and the CPU it was recorded with (torch 2.14.1+cu130 on an AMD
EPYC Zen 4, where torch uses its AVX512 kernels): the test is skipped on another torch
version or CPU capability (e.g. an AVX2-only Zen 3), and runs in fp32 (to_fp32()) so that
bfloat16 autocast, chosen automatically on some CPUs, is out. The thread count matters too:
with OMP_NUM_THREADS=1 (not how CI runs) the reductions take another order and both fits
differ. Both fits pass wd_bn_bias=True: the recorded code decayed every parameter, and the
default became fastai v2's wd_bn_bias=False afterwards (tests/test_layer_groups.py checks
the default).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import pytest
import torch
from fakes import easy_bunch, make_learner
from torch import nn

from fastcore_ext.hardware import cpu_flags
from fastcore_ext.vision import create_cnn, models

FINGERPRINT = Path(__file__).parent / "data" / "seeded_fit_fingerprint.json"
RECORDED = json.loads(FINGERPRINT.read_text())


def three_group_model() -> nn.Sequential:
    """conv-BN-ReLU x2, pool, dropout (draws from torch's RNG), linear: three layer groups."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(8, 2),
    )


def has_amx() -> bool:
    """Whether this CPU has AMX tiles (oneDNN then picks other float32 conv kernels)."""
    return "amx_tile" in cpu_flags()


def digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint(learn) -> dict[str, str]:
    out = {k: digest(v) for k, v in learn.model.state_dict().items()}
    out["valid_preds"] = digest(learn.get_preds()[0])
    return out


def small_fit() -> dict[str, str]:
    """lr_find, a frozen one-cycle epoch, unfreeze, two one-cycle epochs with a slice of
    lrs, one constant-lr epoch: three layer groups, BatchNorm, dropout, fp32."""
    torch.manual_seed(0)
    model = three_group_model()
    learn = make_learner(
        model=model, splitter=lambda m: [m[:3], m[3:6], m[6:]], seed=3, wd_bn_bias=True
    )
    learn.to_fp32()
    learn.lr_find(num_it=12)
    learn.freeze()
    learn.fit_one_cycle(1, 1e-2)
    learn.unfreeze()
    learn.fit_one_cycle(2, slice(1e-4, 1e-2), wd=[0.0, 1e-3, 1e-2])
    learn.fit(1, 1e-3)
    return fingerprint(learn)


def resnet_fit() -> dict[str, str]:
    """create_cnn resnet18 (random init) at 32 px on generated images, bs 4: lr_find, then
    fit_one_cycle(2) on every layer group, fp32."""
    torch.manual_seed(0)
    data = easy_bunch(n_train=16, n_valid=8, size=32, bs=4)
    learn = create_cnn(data, models.resnet18, pretrained=False, seed=1, wd_bn_bias=True)
    learn.progress.stream = io.StringIO()
    learn.to_fp32()
    # session 13's matrix-product weight gradients (layer4's 1x1 maps here) are other
    # arithmetic, on purpose: off, so the fingerprint keeps guarding everything else (with
    # them off the fit matched it to the bit in session 21; tests/test_conv_weight_grad.py
    # checks their values)
    learn.conv_weight_grad.enabled = False
    learn.lr_find(num_it=12)
    learn.unfreeze()
    learn.fit_one_cycle(2, slice(1e-4, 1e-3))
    return fingerprint(learn)


def run_all() -> dict[str, dict[str, str]]:
    return {"small_fit": small_fit(), "resnet18_fit": resnet_fit()}


@pytest.mark.skipif(
    torch.__version__ != RECORDED["torch"],
    reason=f"the fingerprint was recorded with torch {RECORDED['torch']}; float kernels differ "
    f"between versions (this is torch {torch.__version__})",
)
@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() != RECORDED["cpu_capability"],
    reason=f"the fingerprint was recorded on a CPU where torch uses its "
    f"{RECORDED['cpu_capability']} kernels, this one gets "
    f"{torch.backends.cpu.get_cpu_capability()} (other reduction orders, other bits)",
)
@pytest.mark.skipif(
    has_amx() != RECORDED["amx"],
    reason=f"the fingerprint was recorded on a CPU {'with' if RECORDED['amx'] else 'without'} "
    f"AMX; oneDNN's float32 convolutions take other kernels (other reduction orders) where "
    f"the CPU's AMX support differs",
)
@pytest.mark.parametrize("case", ["small_fit", "resnet18_fit"])
def test_seeded_fit_is_bit_identical_to_the_recorded_one(case):
    expected = RECORDED[case]
    got = {"small_fit": small_fit, "resnet18_fit": resnet_fit}[case]()
    differing = sorted(k for k in expected if got.get(k) != expected[k])
    assert set(got) == set(expected)
    assert not differing, f"{len(differing)} tensors differ from the recorded fit: {differing}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: PYTHONPATH=.:tests python tests/test_seeded_fit.py --record")
    FINGERPRINT.parent.mkdir(exist_ok=True)
    result = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "amx": has_amx(),
        **run_all(),
    }
    FINGERPRINT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FINGERPRINT}")
