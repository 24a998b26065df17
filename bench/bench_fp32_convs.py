"""The bare training step with and without the CPU-specific choices of a bf16 / fp32 fit:
ConvWeightGrad's matrix-product weight gradients (every CPU, fp32) and MixedPrecision's
weight-bound convolutions in float32 (`fp32_convs`, default on CPUs with AMX), taking turns
in one process so a load spike hits every variant alike.

    python bench/bench_fp32_convs.py [rounds]      # default 12

resnet18 from scratch, 64 px, bs 64 (bench_train's CPU model-only step: forward, loss,
backward, fused Adam step on one fixed batch). Prints the CPU model and each variant's median
and minimum over the rounds: a number here holds for that CPU only.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import CONFIG, cpu_model  # noqa: E402

from fastcore_ext.learner import Learner  # noqa: E402
from fastcore_ext.vision import create_body, create_head  # noqa: E402


def step_learner(precision: str, *, fp32_convs: bool = False, matmul: bool = True) -> Learner:
    """A Learner holding one fixed batch, after the fit's first-batch checks, as
    bench_train.model_only_learner builds it, with the two choices set."""
    cfg = CONFIG["cpu"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(create_body(cfg["arch"], pretrained=False), create_head(512, 12))

    class _Data:  # the bunch interface, enough for a Learner that never iterates it
        train_dl = valid_dl = None
        path, c, device = ".", 12, "cpu"

    learn = Learner(_Data(), model, seed=0)
    learn.to_fp32()
    if precision == "bf16":
        learn.to_channels_last()
        learn.to_bf16()
        learn.mixed_precision.fp32_convs = fp32_convs
    learn.conv_weight_grad.enabled = matmul
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg["bs"], 3, cfg["size"], cfg["size"], generator=g)
    y = torch.randint(0, 12, (cfg["bs"],), generator=g)
    learn.model.train()
    learn.training = True
    learn.xb, learn.yb = (x,), (y,)
    learn.conv_weight_grad.before_batch()
    if learn.mixed_precision is not None:
        learn.mixed_precision.before_batch()
    return learn


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    variants = {
        "fp32 NCHW, matrix-product weight grads off": step_learner("fp32", matmul=False),
        "fp32 NCHW, matrix-product weight grads on (default)": step_learner("fp32"),
        "bf16 channels-last, fp32_convs off": step_learner("bf16", fp32_convs=False),
        "bf16 channels-last, fp32_convs on": step_learner("bf16", fp32_convs=True),
    }
    for learn in variants.values():  # warm-up
        for _ in range(2):
            learn._do_one_batch()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, learn in variants.items():
            t = time.perf_counter()
            learn._do_one_batch()
            times[name].append(time.perf_counter() - t)
    print(f"{cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, v in times.items():
        print(f"{name:55s} median {1e3 * statistics.median(v):6.1f} ms, min {1e3 * min(v):6.1f}")


if __name__ == "__main__":
    main()
