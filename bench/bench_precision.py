"""Step time through the Learner's fit: fp32 / bf16 autocast, NCHW / channels-last.

    python bench/bench_precision.py                 # resnet18 64 px bs 64, resnet34 128 px bs 32
    python bench/bench_precision.py --only resnet18 --batches 8

Each configuration trains a randomly initialized create_cnn model on random in-memory
images (no data loading in the timing) for `--batches` training batches (one epoch, no
validation); the four configurations take turns for `--rounds` rounds (so a load spike from
another process hits them alike). Reported: the median and the minimum wall time of a
training batch (forward, loss, backward, optimizer step) over all rounds, the first
`--warmup` batches of each run left out. It prints the CPU model and the
bf16 flags fastcore_ext.hardware sees, so `precision="auto"`'s choice can be judged.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import time

import torch

from fastcore_ext.callback import Callback, CancelValidException
from fastcore_ext.hardware import native_bf16_cpu_flags
from fastcore_ext.vision import create_cnn, models

CONFIGS = {"resnet18": (models.resnet18, 64, 64), "resnet34": (models.resnet34, 128, 32)}


class _Loader:
    """`n` batches of one random (x float [bs, 3, size, size], y int64 [bs]) on `device`."""

    def __init__(self, bs: int, size: int, n: int, device: str = "cpu") -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(bs, 3, size, size, generator=g).to(device)
        self.y = torch.randint(0, 10, (bs,), generator=g).to(device)
        self.n = n

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield self.x, self.y


class _Bunch:
    def __init__(self, bs: int, size: int, n: int, device: str = "cpu") -> None:
        self.train_dl = _Loader(bs, size, n, device)
        self.valid_dl = _Loader(bs, size, 1, device)
        self.device = torch.device(device)
        self.c = 10
        self.path = "."


class _BatchTimer(Callback):
    """Wall time of each training batch (on CUDA up to the end of its kernels); validation
    skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def before_batch(self) -> None:
        self._t0 = time.perf_counter()

    def after_batch(self) -> None:
        if self.learn.data.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t0)

    def before_validate(self) -> None:
        raise CancelValidException


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def step_times(name: str, precision: str, nhwc: bool, batches: int, warmup: int) -> list[float]:
    arch, size, bs = CONFIGS[name]
    data = _Bunch(bs, size, batches)
    learn = create_cnn(data, arch, pretrained=False, seed=0, precision=precision)
    if nhwc:
        learn.to_channels_last()
    learn.progress.stream = io.StringIO()
    timer = _BatchTimer()
    learn.fit(1, 1e-3, cbs=timer)
    return timer.times[warmup:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(CONFIGS), action="append")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    flags = native_bf16_cpu_flags()
    print(f"CPU: {_cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"native bf16 flags: {', '.join(flags) or 'none'}")
    for name in args.only or list(CONFIGS):
        _, size, bs = CONFIGS[name]
        configs = [(p, nhwc) for p in ("fp32", "bf16") for nhwc in (False, True)]
        times: dict[tuple[str, bool], list[float]] = {c: [] for c in configs}
        for _ in range(args.rounds):
            for precision, nhwc in configs:
                times[precision, nhwc] += step_times(
                    name, precision, nhwc, args.batches, args.warmup
                )
        base = statistics.median(times["fp32", False])
        cells = [
            f"{p} {'channels-last' if nhwc else 'NCHW'} {statistics.median(t) * 1e3:.0f} ms "
            f"(min {min(t) * 1e3:.0f}; {statistics.median(t) / base:.2f}x)"
            for (p, nhwc), t in times.items()
        ]
        print(f"{name} {size} px bs {bs}, median ms/step: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
