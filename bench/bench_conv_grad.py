"""Convolution weight gradients on the CPU: torch's (oneDNN) against one matrix product.

    python bench/bench_conv_grad.py                # the layer table, then the whole step
    python bench/bench_conv_grad.py --rounds 20

1. resnet18's 3x3 convolutions at 64 px, bs 64: the weight gradient and the input gradient
   by torch's convolution backward (`aten.convolution_backward`, one of them only) and by
   `fastcore_ext.callback.conv_weight_grad`'s products (`conv2d_weight_grad`,
   `conv2d_input_grad`), taking turns, minimum and median over `--rounds`; the ratio of
   weights to the input's elements in the batch, which `matmul_grad_convs` compares with
   MATMUL_GRAD_RATIO.
2. The whole training step (forward, loss, backward, fused Adam step on one fixed batch, as
   bench_train's model-only step) with the callback's hooks on and off, taking turns in one
   process: fp32 (NCHW), and bf16 + channels-last where the CPU runs bf16 natively (there
   with MixedPrecision's weight-bound convolutions in float32, as a fit on a CPU with AMX).

The CPU model and flags head the output: a number here holds for that CPU only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import cpu_model, model_only_learner  # noqa: E402

from fastcore_ext.callback.conv_weight_grad import (  # noqa: E402
    MatmulGrads,
    conv2d_input_grad,
    conv2d_weight_grad,
)
from fastcore_ext.hardware import native_bf16_cpu_flags  # noqa: E402
from fastcore_ext.learner import Learner  # noqa: E402

LAYERS = [  # (where in resnet18 at 64 px, input [N, C, H, W], weight [O, C, 3, 3], stride)
    ("layer2", (64, 128, 8, 8), (128, 128, 3, 3), 1),
    ("layer3", (64, 256, 4, 4), (256, 256, 3, 3), 1),
    ("layer4.0.conv1", (64, 256, 4, 4), (512, 256, 3, 3), 2),
    ("layer4", (64, 512, 2, 2), (512, 512, 3, 3), 1),
]


def _turns(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each of `fns` per round, the functions taking turns; two warm-up rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds + 2):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            if r >= 2:
                times[k].append(time.perf_counter() - start)
    return times


def _ms(v: list[float]) -> str:
    return f"{min(v) * 1e3:.1f} / {statistics.median(v) * 1e3:.1f}"


def layer_table(rounds: int) -> None:
    head = "conv (resnet18, 64 px, bs 64) | weights / input"
    grads = "torch ms (min / median) | product ms | torch / product"
    print(f"| {head} | weight grad: {grads} | input grad: {grads} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    aten = torch.ops.aten.convolution_backward
    for name, xs, ws, s in LAYERS:
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(xs, generator=g), torch.randn(ws, generator=g)
        go = torch.randn_like(torch.nn.functional.conv2d(x, w, None, s, 1))
        conv = (go, x, w, None, [s, s], [1, 1], [1, 1], False, [0, 0], 1)
        fns = {
            "torch_w": lambda conv=conv: aten(*conv, [False, True, False]),
            "product_w": lambda x=x, go=go, s=s: conv2d_weight_grad(
                x, go, (3, 3), (s, s), (1, 1), (1, 1)
            ),
            "torch_x": lambda conv=conv: aten(*conv, [True, False, False]),
            "product_x": lambda w=w, go=go, s=s, hw=xs[2:]: conv2d_input_grad(
                go, w, hw, (s, s), (1, 1), (1, 1)
            ),
        }
        t = _turns(fns, rounds)
        cells = []
        for k in ("w", "x"):
            speed = statistics.median(t[f"torch_{k}"]) / statistics.median(t[f"product_{k}"])
            cells.append(f"{_ms(t[f'torch_{k}'])} | {_ms(t[f'product_{k}'])} | {speed:.2f}")
        ratio = w.numel() / x.numel()
        where = f"{name}: {ws[1]} -> {ws[0]}, {xs[2]}x{xs[3]}, stride {s}"
        print(f"| {where} | {ratio:.2f} | {' | '.join(cells)} |")


def step_table(rounds: int) -> None:
    precisions = ["fp32"] + (["bf16"] if native_bf16_cpu_flags() else [])
    print("\n| step (resnet18, 64 px, bs 64) | hooks | min / median ms | off / on (median) |")
    print("| --- | --- | ---: | ---: |")
    for precision in precisions:
        learn = model_only_learner("cpu", precision)  # its checks picked and hooked the convs
        cb = learn.conv_weight_grad
        cb._hooks.remove()  # off again: the turns put them on and off
        modules = dict(learn.model.named_modules())
        t = _turns(
            {"off": learn._do_one_batch, "on": _hooked(learn, [modules[n] for n in cb.convs])},
            rounds,
        )
        speed = statistics.median(t["off"]) / statistics.median(t["on"])
        print(f"| {precision} | off | {_ms(t['off'])} | |")
        print(f"| {precision} | on: {', '.join(cb.convs)} | {_ms(t['on'])} | {speed:.2f} |")


def _hooked(learn: Learner, convs: list[torch.nn.Module]):  # noqa: ANN202
    """A training step of `learn` with MatmulGrads on `convs` for that step."""

    def step() -> None:
        hooks = MatmulGrads(convs)
        try:
            learn._do_one_batch()
        finally:
            hooks.remove()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="timed turns of each variant")
    args = parser.parse_args()
    print(f"{cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    layer_table(args.rounds)
    step_table(args.rounds)


if __name__ == "__main__":
    main()
