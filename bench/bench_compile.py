"""Training step time through the Learner, eager against `learn.compile()`.

    python bench/bench_compile.py                      # CPU: resnet18 64 px bs 64, fp32 and bf16
    python bench/bench_compile.py --threads 1          # on a shared 2-core machine (below)
    python bench/bench_compile.py --device cuda --modes default,reduce-overhead

resnet18 from scratch (create_cnn, pretrained=False) on one random in-memory batch (no data
loading in the timing), `learn.fit(1)` of `--batches` training batches, validation skipped
(bench_precision.py's loader and timer). For each precision (fp32; bf16 = `to_bf16()` +
`to_channels_last()`), an eager learner and one compiled learner per mode are built from the
same seed. A compiled learner's first batch compiles the forward and backward, then steps:
its wall time is reported as "first batch" (compile time = first batch - a step), with
torch's on-disk caches off (inductor's FX graph cache; --cache keeps them), so the compile
is cold. Then the eager and the compiled learner take turns for `--rounds` rounds, so a load
spike from another process hits both alike (each mode against the eager learner in its own
block: compile() empties torch's compile cache, so modes cannot interleave). Reported: the
median and minimum of the per-batch wall times, the first batch of each fit left out, and
compiled / eager. The device, threads and load average (start, after each block, end).
With 2 threads on a 2-core machine that other processes load, every parallel region waits
for the thread that lost its core: steps of 6-10 s instead of about 0.4 s were seen at load
average 8-12, so there use `--threads 1`.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics

import torch
import torch._inductor.config as inductor_config
from bench_precision import _BatchTimer, _Bunch, _cpu_model

from fastcore_ext.vision import create_cnn, models

PRECISIONS = ("fp32", "bf16")


def make_learner(precision: str, device: str, batches: int, mode: str | None):
    """A resnet18 learner on random 64 px images, bs 64; `mode` None: eager."""
    data = _Bunch(64, 64, batches, device)
    learn = create_cnn(data, models.resnet18, pretrained=False, seed=0, precision="fp32")
    if precision == "bf16":
        learn.to_bf16().to_channels_last()
    if mode is not None:
        learn.compile(None if mode == "default" else mode)
    learn.progress.stream = io.StringIO()
    return learn


def batch_times(learn) -> list[float]:
    timer = _BatchTimer()
    learn.fit(1, 1e-3, cbs=timer)
    return timer.times


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--modes", default="default", help="compile modes, comma-separated")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--batches", type=int, default=4, help="per fit, the first left out")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--cache", action="store_true", help="keep inductor's on-disk caches on")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.cache:
        inductor_config.force_disable_caches = True
    modes = args.modes.split(",")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()
    print(f"{name}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"load average at start: {_load()}", flush=True)
    rows = []
    for precision in args.precisions.split(","):
        eager = make_learner(precision, args.device, args.batches, None)
        batch_times(eager)  # warm-up (allocator, oneDNN primitives)
        for mode in modes:  # compile() empties torch's compile cache: one mode at a time
            learn = make_learner(precision, args.device, args.batches, mode)
            first = batch_times(learn)[0]  # compiles the forward and backward, then steps
            times: dict[str, list[float]] = {"eager": [], mode: []}
            for _ in range(args.rounds):
                times["eager"] += batch_times(eager)[1:]
                times[mode] += batch_times(learn)[1:]
            base = statistics.median(times["eager"])
            for key, t in times.items():
                med = statistics.median(t)
                rows.append(
                    f"| {precision} | {key} | {med * 1e3:.1f} | {min(t) * 1e3:.1f} | "
                    f"{med / base:.2f}x | {f'{first:.1f} s' if key == mode else '-'} | {len(t)} |"
                )
            print(f"{precision} {mode} done, load average {_load()}", flush=True)
    print(f"\nresnet18 64 px bs 64 on {name}; load average at the end: {_load()}")
    print("| precision | forward | median ms/step | min | vs eager | first batch | steps |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
