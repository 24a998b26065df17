"""Training end to end, side by side with fastai: the lesson flow (an image folder, a resnet
from scratch, fit_one_cycle) in both libraries on the same data, device and settings.

Time to accuracy: each library as a user gets it (fit_one_cycle at its own default max_lr
unless BENCH_TRAIN_LR is set), round r with seed r in both (split, init, shuffle), the wall
time of the fit and the error rate it reached; mean +- sd of the error over the seeds.

CPU (no GPU present): resnet18, 64 px (presize 80), batch 64, 3 epochs of fit_one_cycle,
2 DataLoader workers, on the demo dataset (`fastcore_ext.data.demo_dataset()`: 1920 train +
480 valid JPEGs of 80 px, 12 classes); fp32 (`to_fp32()`), and where the CPU has bf16
dot-product instructions (AVX512-BF16 or AMX) also ours in bf16 (`to_bf16()` +
`to_channels_last()`) and ours by default ("auto": the Learner's precision 'auto', there bf16
+ channels-last after a float32 first epoch), compared with fastai's fp32 (fastai 2.8.12's
`to_bf16()` autocasts for CUDA only, so on the CPU it would train in fp32; fastai's "auto" is
its default, fp32, so its fp32 runs serve both) and with our fp32 on the same seeds.
CUDA (when present): resnet34, 224 px (presize 280), batch 64, 3 epochs, workers = min(16,
cores), on the demo dataset drawn at 320 px with 525 images a class (`demo_dataset(size=320,
n_per_class=525)`: 5,040 train + 1,260 valid JPEGs, issue 14's "at least 5,000 images");
fp32, fp16 (`to_fp16()`) and bf16 (`to_bf16()`) in both libraries.
The CPU model and its flags (avx2, avx512f, avx512_bf16, amx) head the table.

- fastai 2.8: `ImageDataLoaders.from_folder(item_tfms=Resize(presize),
  batch_tfms=[*aug_transforms(size=size), Normalize.from_stats(*imagenet_stats)])`,
  `vision_learner(dls, arch, pretrained=False, metrics=error_rate)`.
- ours: `ImageDataBunch.from_folder(ds_tfms=get_transforms(), size=size, cache=True)
  .normalize(imagenet_stats)` (presize round(1.25 * size) = the same as fastai's),
  `create_cnn(data, arch, pretrained=False, metrics=error_rate)`. The decoded cache lives
  under FASTCORE_EXT_HOME; the benchmark fills it once before the timed runs (untimed), so
  every timed run of ours reads a warm cache (each row says). fastai decodes every epoch.
  BENCH_TRAIN_CACHE=cold gives each fit of ours an empty FASTCORE_EXT_HOME instead: its first
  epoch decodes the JPEGs (and fills the cache), as a user's first fit on a folder does.

Each fit runs in a fresh subprocess (fastai and ours never share a process), rounds
alternate which library goes first, and the table gives every run plus medians: wall time of
fit_one_cycle (validation included), training images/s (train images x epochs / wall time),
the training images/s of the first epoch and of the later ones apart (validation excluded: a
callback times each epoch and each validation pass, synchronizing the GPU at those
boundaries only), final error rate, and where the time went (data loading + augmentation,
forward, backward, optimizer step, validation, the rest: callbacks, progress, zero_grad,
epoch ends), measured by a timing callback at the loop's events (on CUDA only with
BENCH_TRAIN_PROFILE=1, which synchronizes at every event). The model-only step (forward +
loss + backward + fused Adam step on one fixed batch, no data) gives the ceiling the whole
pipeline is compared with: the summary gives ours' later-epoch training rate as a share of
it, per precision.

fastai runs in its own interpreter: FASTAI_PYTHON (a Python that can import fastai.vision.all
and the same torch), else this interpreter if it can import fastai, else the fastai side is
skipped. A venv that borrows the project's torch and holds only fastai's own pure-python
wheels:

    python -m venv ~/fastai-venv
    python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \\
        > ~/fastai-venv/lib/python3.X/site-packages/project.pth   # the project's site-packages
    ~/fastai-venv/bin/pip install --no-deps fastai==2.8.12 fastcore==2.2.41 \\
        fastprogress==1.0.3 fastdownload==0.0.8 fasttransform==0.0.5 plum-dispatch==2.9.0 \\
        beartype==0.23.1 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 \\
        cloudpickle==3.1.3
    ~/fastai-venv/bin/pip install requests pyyaml scipy scikit-learn   # fastai.vision.all
    ~/fastai-venv/bin/pip install scikit-image   # only for bench/accuracy.py's photo set
    export FASTAI_PYTHON=~/fastai-venv/bin/python

(fastprogress 1.0.3, not 1.1: 1.1 imports python-fasthtml and its web-server stack.)

Run:

    python -m pytest bench/bench_train.py -s       # side by side + model-only step
    python bench/bench_train.py --run ours --data DIR --device cpu --precision fp32  # one fit

Environment: BENCH_TRAIN_ROUNDS (seeds, default 3), BENCH_TRAIN_EPOCHS (default 3),
BENCH_TRAIN_LR (max_lr of both; default each library's own), BENCH_TRAIN_PRECISIONS (comma
list of fp32, bf16, fp16, auto; default fp32 on the CPU, plus bf16,auto where bf16 is
native; fp32,fp16,bf16 on CUDA), BENCH_TRAIN_LIBS (default "ours,fastai"),
BENCH_TRAIN_TIMEOUT (seconds per fit, default 1200), BENCH_TRAIN_PROFILE=1 (phase times on
CUDA), BENCH_TRAIN_CACHE (warm or cold, default warm), BENCH_TRAIN_DEMO_N (demo images a
class; default 200 on the CPU, 525 on CUDA), BENCH_TRAIN_MODEL_PRECISIONS (model-only step;
default fp32 on the CPU, fp32,bf16,fp16 on CUDA), BENCH_TRAIN_MODEL_STEPS (timed model-only
steps, default 20 on CUDA, 8 on the CPU; bf16 on a CPU without bf16 instructions at most 3).

A short GPU run (for bench/device_check.sh):

    BENCH_TRAIN_ROUNDS=1 BENCH_TRAIN_CACHE=cold BENCH_TRAIN_PRECISIONS=fp32,auto,fp16 \\
        python -m pytest -q -s -p no:cacheprovider bench/bench_train.py
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fastcore_ext.hardware import cpu_flags, native_bf16_cpu_flags

try:  # the fastai interpreter runs this file as a script and need not have pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CONFIG = {
    "cpu": {"arch": "resnet18", "size": 64, "presize": 80, "bs": 64, "epochs": 3,
            "workers": 2, "lr": None, "demo": {}, "precisions": ["fp32"]},
    "cuda": {"arch": "resnet34", "size": 224, "presize": 280, "bs": 64, "epochs": 3,
             "workers": min(16, os.cpu_count() or 1), "lr": None,
             "demo": {"size": 320, "n_per_class": 525},
             "precisions": ["fp32", "fp16", "bf16"]},
}  # fmt: skip
PHASES = ("data", "forward", "backward", "step", "valid", "other")

if pytest is not None:
    pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected a positive int, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {raw!r}")
    return value


def _env_list(name: str, default: list[str], allowed: tuple[str, ...]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    values = [v.strip() for v in raw.split(",") if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"{name}: expected a comma list of {allowed}, got {raw!r}")
    return values


def settings(device: str = DEVICE) -> dict:
    """The configuration of `device` with the BENCH_TRAIN_* environment applied."""
    cfg = dict(CONFIG[device])
    cfg["epochs"] = _env_int("BENCH_TRAIN_EPOCHS", cfg["epochs"])
    cfg["rounds"] = _env_int("BENCH_TRAIN_ROUNDS", 3)
    cfg["timeout"] = _env_int("BENCH_TRAIN_TIMEOUT", 1200)
    if device == "cpu" and native_bf16_cpu_flags():
        cfg["precisions"] = ["fp32", "bf16", "auto"]
    cfg["precisions"] = _env_list(
        "BENCH_TRAIN_PRECISIONS", cfg["precisions"], ("fp32", "fp16", "bf16", "auto")
    )
    cfg["libs"] = _env_list("BENCH_TRAIN_LIBS", ["ours", "fastai"], ("ours", "fastai"))
    if device == "cpu" and "fp16" in cfg["precisions"]:
        raise ValueError("BENCH_TRAIN_PRECISIONS: fp16 needs CUDA (use bf16 on the CPU)")
    lr = os.environ.get("BENCH_TRAIN_LR", "")
    cfg["lr"] = float(lr) if lr else cfg["lr"]
    cfg["profile"] = device == "cpu" or os.environ.get("BENCH_TRAIN_PROFILE") == "1"
    cfg["cache"] = os.environ.get("BENCH_TRAIN_CACHE", "").strip() or "warm"
    if cfg["cache"] not in ("warm", "cold"):
        raise ValueError(f"BENCH_TRAIN_CACHE: expected warm or cold, got {cfg['cache']!r}")
    n = _env_int("BENCH_TRAIN_DEMO_N", cfg["demo"].get("n_per_class", 200))
    cfg["demo"] = {**cfg["demo"], "n_per_class": n}
    return cfg


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ---- where the time goes: one timing callback for both libraries ---------------------------------
class _PhaseTimerMixin:
    """Seconds of a fit per phase, from the loop's events (same names in both libraries):
    the time since the previous event goes to the phase that the current event ends.
    data: waiting for the next training batch (loading, decoding, augmentation, normalization,
    transfer); forward: forward + loss; backward; step: the optimizer step; valid: the whole
    validation pass; other: everything else (zero_grad, other callbacks' batch and epoch
    ends, metrics, progress, epoch setup)."""

    def _t_init(self, device: str, sync: bool) -> None:
        self._t_device, self._t_sync = device, sync
        self.phases = dict.fromkeys(PHASES, 0.0)
        self._t_last = 0.0

    def _t_mark(self, phase: str) -> None:
        if self._t_sync:
            _sync(self._t_device)
        now = time.perf_counter()
        self.phases[phase] += now - self._t_last
        self._t_last = now

    def _t_training(self) -> bool:
        return bool(self.learn.training)

    def before_fit(self) -> None:
        if self._t_sync:
            _sync(self._t_device)
        self._t_last = time.perf_counter()

    def before_epoch(self) -> None:
        self._t_mark("other")

    def before_train(self) -> None:
        self._t_mark("other")

    def before_batch(self) -> None:
        self._t_mark("data" if self._t_training() else "valid")

    def after_loss(self) -> None:
        self._t_mark("forward" if self._t_training() else "valid")

    def after_backward(self) -> None:
        self._t_mark("backward")

    def after_step(self) -> None:
        self._t_mark("step")

    def after_batch(self) -> None:
        self._t_mark("other" if self._t_training() else "valid")

    def after_train(self) -> None:
        self._t_mark("data")  # the loader's end of pass (StopIteration) after the last batch

    def before_validate(self) -> None:
        self._t_mark("other")

    def after_validate(self) -> None:
        self._t_mark("valid")

    def after_epoch(self) -> None:
        self._t_mark("other")

    def after_fit(self) -> None:
        self._t_mark("other")


class _EpochTimerMixin:
    """Wall seconds of each epoch and of each epoch's validation pass, the device
    synchronized at those boundaries only (so the training batches run as unprofiled)."""

    def _e_init(self, device: str) -> None:
        self._e_device = device
        self.epoch_s: list[float] = []
        self.valid_s: list[float] = []

    def _e_now(self) -> float:
        _sync(self._e_device)
        return time.perf_counter()

    def before_epoch(self) -> None:
        self._e0 = self._e_now()

    def before_validate(self) -> None:
        self._v0 = self._e_now()

    def after_validate(self) -> None:
        self.valid_s.append(round(self._e_now() - self._v0, 3))

    def after_epoch(self) -> None:
        self.epoch_s.append(round(self._e_now() - self._e0, 3))


def _phases_out(phases: dict[str, float] | None) -> dict[str, float] | None:
    return None if phases is None else {k: round(v, 4) for k, v in phases.items()}


# ---- one fit per library (each in its own subprocess) --------------------------------------------
def run_ours(data_dir: Path, device: str, precision: str, cfg: dict, seed: int = 0) -> dict:
    """One fit_one_cycle of ours; returns the row (wall_s, n_train, error_rate, ...).
    bf16: `to_bf16()` + `to_channels_last()`; fp32: `to_fp32()`; auto: the Learner's
    default."""
    from fastcore_ext.callback import Callback
    from fastcore_ext.data import ImageDataBunch, imagenet_stats
    from fastcore_ext.vision import create_cnn, error_rate, get_transforms

    data = ImageDataBunch.from_folder(
        data_dir, ds_tfms=get_transforms(), size=cfg["size"], bs=cfg["bs"],
        num_workers=cfg["workers"], cache=True, seed=seed, device=device,
    ).normalize(imagenet_stats)  # fmt: skip
    if data.presize != cfg["presize"]:
        raise RuntimeError(f"our presize is {data.presize}, the benchmark's {cfg['presize']}")
    warm = data.train_ds.cache.complete and data.valid_ds.cache.complete
    learn = create_cnn(data, cfg["arch"], pretrained=False, metrics=error_rate, seed=seed)
    learn.progress.show_bar = learn.progress.show_table = False
    if precision == "bf16":
        learn.to_bf16()
        learn.to_channels_last()
    elif precision == "fp16":
        learn.to_fp16()
    elif precision == "fp32":
        learn.to_fp32()

    class Timer(_PhaseTimerMixin, Callback):
        order = 1000  # after the recorder and the progress callback

    class EpochTimer(_EpochTimerMixin, Callback):
        order = 1001

    timer, epochs = Timer(), EpochTimer()
    timer._t_init(device, sync=device == "cuda")
    epochs._e_init(device)
    cbs = [epochs] + ([timer] if cfg["profile"] else [])
    _sync(device)
    start = time.perf_counter()
    learn.fit_one_cycle(cfg["epochs"], max_lr=cfg["lr"], cbs=cbs)
    _sync(device)
    wall = time.perf_counter() - start
    return {
        "lib": "ours",
        "wall_s": wall,
        "n_train": len(data.train_ds),
        "n_valid": len(data.valid_ds),
        "train_batches": len(data.train_dl),
        "error_rate": float(learn.recorder.metrics[-1][0]),
        "valid_losses": [round(float(v), 4) for v in learn.recorder.valid_losses],
        "epoch_s": epochs.epoch_s,
        "valid_s": epochs.valid_s,
        "phases": _phases_out(timer.phases if cfg["profile"] else None),
        "cache": "warm" if warm else "cold",
        "chose": learn.precision,
        "version": _version("fastcore_ext"),
    }


def run_fastai(data_dir: Path, device: str, precision: str, cfg: dict, seed: int = 0) -> dict:
    """One fit_one_cycle of fastai 2.8 on the same folder and settings. bf16: fastai's own
    `to_bf16()`, whose autocast is for CUDA only (fastai 2.8.12's MixedPrecision calls
    `autocast('cuda', ...)`), so on the CPU it trains in fp32."""
    import fastai
    import torchvision
    from fastai.vision.all import (
        Callback,
        ImageDataLoaders,
        Normalize,
        Resize,
        aug_transforms,
        error_rate,
        imagenet_stats,
        set_seed,
        vision_learner,
    )

    set_seed(seed)
    dls = ImageDataLoaders.from_folder(
        data_dir, train="train", valid="valid", seed=seed,
        item_tfms=Resize(cfg["presize"]),
        batch_tfms=[*aug_transforms(size=cfg["size"]), Normalize.from_stats(*imagenet_stats)],
        bs=cfg["bs"], num_workers=cfg["workers"], device=torch.device(device),
    )  # fmt: skip
    arch = getattr(torchvision.models, cfg["arch"])
    learn = vision_learner(dls, arch, pretrained=False, metrics=error_rate)
    if precision == "fp16":
        learn.to_fp16()
    elif precision == "bf16":
        learn.to_bf16()

    class Timer(_PhaseTimerMixin, Callback):
        order = 1000  # after fastai's Recorder (50) and ProgressCallback (60)

    class EpochTimer(_EpochTimerMixin, Callback):
        order = 1001

    timer, epochs = Timer(), EpochTimer()
    timer._t_init(device, sync=device == "cuda")
    epochs._e_init(device)
    cbs = [epochs] + ([timer] if cfg["profile"] else [])
    _sync(device)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        if cfg["lr"] is None:  # fastai's default lr_max (defaults.lr, 1e-3)
            learn.fit_one_cycle(cfg["epochs"], cbs=cbs)
        else:
            learn.fit_one_cycle(cfg["epochs"], cfg["lr"], cbs=cbs)
    _sync(device)
    wall = time.perf_counter() - start
    names = list(learn.recorder.metric_names)
    row = learn.recorder.values[-1]  # [train_loss, valid_loss, error_rate]
    return {
        "lib": "fastai",
        "wall_s": wall,
        "n_train": len(dls.train_ds),
        "n_valid": len(dls.valid_ds),
        "train_batches": len(dls.train),
        "error_rate": float(row[names.index("error_rate") - 1]),
        "valid_losses": [round(float(v[1]), 4) for v in learn.recorder.values],
        "epoch_s": epochs.epoch_s,
        "valid_s": epochs.valid_s,
        "phases": _phases_out(timer.phases if cfg["profile"] else None),
        "cache": "-",
        "chose": precision,
        "version": fastai.__version__,
    }


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed as a distribution (run from a checkout)
        return "checkout"


@functools.cache
def fastai_python() -> str | None:
    """The interpreter that runs fastai: FASTAI_PYTHON, else this one if it can import
    fastai.vision.all, else None (skip). An unusable FASTAI_PYTHON is an error."""
    explicit = os.environ.get("FASTAI_PYTHON")
    candidates = [explicit] if explicit else [sys.executable]
    for python in candidates:
        probe = subprocess.run(
            [python, "-c", "import fastai.vision.all, fastai; print(fastai.__version__)"],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        if probe.returncode == 0:
            return python
        if explicit:
            raise RuntimeError(
                f"FASTAI_PYTHON={explicit!r} cannot import fastai.vision.all:\n"
                f"{probe.stderr[-2000:]}"
            )
    return None


def _fit_in_subprocess(
    lib: str, data_dir: Path, device: str, precision: str, cfg: dict, seed: int
) -> dict:
    python = sys.executable if lib == "ours" else fastai_python()
    cmd = [python, str(Path(__file__).resolve()), "--run", lib, "--data", str(data_dir),
           "--device", device, "--precision", precision,
           "--epochs", str(cfg["epochs"]), "--seed", str(seed)]  # fmt: skip
    if cfg["lr"] is not None:
        cmd += ["--lr", str(cfg["lr"])]
    if cfg["profile"]:
        cmd.append("--profile")
    env = dict(os.environ)  # both import this file, which reads the CPU flags via fastcore_ext
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_train_home_") as home:
        if lib == "ours" and cfg["cache"] == "cold":
            env["FASTCORE_EXT_HOME"] = home  # an empty decoded-image cache for this fit
        try:
            out = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                timeout=cfg["timeout"],
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{lib} {precision} fit took over {cfg['timeout']} s") from e
    if out.returncode != 0:
        raise RuntimeError(f"{lib} run failed ({out.returncode}):\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = max(load_before, os.getloadavg()[0])
    return result


def _demo(cfg: dict) -> Path:
    from fastcore_ext.data import demo_dataset

    return demo_dataset(**cfg["demo"])


def _warm_cache(data_dir: Path, device: str, cfg: dict) -> None:
    """Fill our decoded cache (one pass over both splits), untimed, so that every timed run
    of ours reads the same warm cache."""
    from fastcore_ext.data import ImageDataBunch, imagenet_stats

    data = ImageDataBunch.from_folder(
        data_dir, ds_tfms=None, size=cfg["size"], bs=cfg["bs"], num_workers=cfg["workers"],
        cache=True, seed=0, device=device,
    ).normalize(imagenet_stats)  # fmt: skip
    for dl in (data.train_dl, data.valid_dl):
        for _ in dl:
            pass
    for dl in (data.train_dl, data.valid_dl):
        close = getattr(dl, "close", None)
        if close is not None:
            close()


# ---- the table -----------------------------------------------------------------------------------
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_model() -> str:
    """'<model name> (flags: avx2 avx512f ...)' from /proc/cpuinfo: the flags that decide
    the speed of fp32 and bf16 convolutions; 'unknown CPU' elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    name = "?"
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            name = value.strip()
            break
    flags = cpu_flags()
    have = " ".join(f for f in CPU_FLAGS if f in flags) or "none of " + " ".join(CPU_FLAGS)
    return f"{name} (flags: {have})"


def _device_name() -> str:
    if DEVICE == "cuda":
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    threads = torch.get_num_threads()
    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads"


def _rate(r: dict, epochs: int) -> float:
    return r["n_train"] * epochs / r["wall_s"]


def train_rates(r: dict) -> tuple[float | None, float | None]:
    """(first epoch, later epochs) training images/s of a row, validation excluded; None
    where the row has no such epoch."""
    epoch_s, valid_s = r.get("epoch_s") or [], r.get("valid_s") or []
    if len(valid_s) != len(epoch_s):  # a row without validation times
        return None, None
    train_s = [e - v for e, v in zip(epoch_s, valid_s, strict=True)]
    first = r["n_train"] / train_s[0] if train_s else None
    later = r["n_train"] * (len(train_s) - 1) / sum(train_s[1:]) if len(train_s) > 1 else None
    return first, later


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _phase_cells(r: dict) -> str:
    ph = r.get("phases")
    if not ph:
        return " | ".join("-" for _ in PHASES)
    return " | ".join(f"{ph[k]:.1f}" for k in PHASES)


def format_table(rows: list[dict], epochs: int) -> str:
    """Markdown table, one line per fit."""
    head = "| round | lib | precision | wall s | train img/s | epoch 1 img/s | epochs 2+ img/s "
    head += "| error_rate "
    head += "| epochs s | "
    head += " | ".join(f"{k} s" for k in PHASES) + " | cache | load |"
    sep = "| " + " | ".join(["---"] * 3 + ["---:"] * (6 + len(PHASES)) + ["---", "---:"]) + " |"
    lines = [head, sep]
    for r in rows:
        epochs_s = " / ".join(f"{t:.1f}" for t in r.get("epoch_s") or [])
        first, later = train_rates(r)
        lines.append(
            f"| {r['round']} | {r['lib']} | {r['precision']} | {r['wall_s']:.1f} | "
            f"{_rate(r, epochs):.0f} | {_cell(first)} | {_cell(later)} | "
            f"{r['error_rate']:.4f} | {epochs_s} | "
            f"{_phase_cells(r)} | "
            f"{r['cache']} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.4f} +- {sd:.4f}"


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summarize(
    rows: list[dict], epochs: int, model_rates: dict[str, float] | None = None
) -> list[str]:
    """Per (precision, lib): median wall time, median training images/s of the first and of
    the later epochs, mean +- sd of the error rate over the seeds; the ours/fastai ratios per
    precision (wall time, and images/s of the first and the later epochs); ours' later-epoch
    rate as a share of `model_rates` (model-only images/s per precision the runs chose); ours
    bf16 and auto against ours fp32 seed by seed."""
    out = []
    med, rates, chose = {}, {}, {}
    for precision in dict.fromkeys(r["precision"] for r in rows):
        for lib in ("ours", "fastai"):
            sel = [r for r in rows if r["lib"] == lib and r["precision"] == precision]
            if sel:
                wall = statistics.median(r["wall_s"] for r in sel)
                med[lib, precision] = wall
                first, later = (_median(list(v)) for v in zip(*map(train_rates, sel), strict=True))
                rates[lib, precision] = first, later
                chose[lib, precision] = sel[0].get("chose", precision)
                out.append(
                    f"{precision} {lib}: {len(sel)} seeds, median {wall:.1f} s "
                    f"({sel[0]['n_train'] * epochs / wall:.0f} train img/s; training only: "
                    f"epoch 1 {_cell(first)}, epochs 2+ {_cell(later)} img/s), error_rate "
                    f"{_mean_sd([r['error_rate'] for r in sel])}"
                )
    for (lib, precision), wall in med.items():
        # fastai's own run of the same precision, else its fp32 (fastai's bf16 on the CPU)
        ref = precision if ("fastai", precision) in med else "fp32"
        if lib == "ours" and ("fastai", ref) in med:
            ratio = wall / med["fastai", ref]
            line = f"ours {precision} / fastai {ref} wall time: {ratio:.2f}x"
            pairs = zip(rates[lib, precision], rates["fastai", ref], strict=True)
            parts = [
                f"{name} {a / b:.2f}x"
                for name, (a, b) in zip(("epoch 1", "epochs 2+"), pairs, strict=True)
                if a is not None and b is not None
            ]
            out.append(line + ("; images/s " + ", ".join(parts) if parts else ""))
    for (lib, precision), (_, later) in rates.items():
        model = (model_rates or {}).get(chose[lib, precision])
        if lib == "ours" and later is not None and model:
            out.append(
                f"ours {precision} epochs 2+ training rate: {later / model:.0%} of the "
                f"model-only rate ({later:.0f} / {model:.0f} img/s, {chose[lib, precision]})"
            )
    by_seed = {(r["precision"], r["round"]): r for r in rows if r["lib"] == "ours"}
    for other in dict.fromkeys(p for p, _ in by_seed if p != "fp32"):
        pairs = [
            (by_seed["fp32", k], by_seed[p, k])
            for p, k in by_seed
            if p == other and ("fp32", k) in by_seed
        ]
        diffs = ", ".join(f"{b['error_rate'] - a['error_rate']:+.4f}" for a, b in pairs)
        if diffs:
            out.append(f"ours {other} - fp32 error_rate, same seeds: {diffs}")
    return out


def side_by_side(device: str = DEVICE) -> tuple[list[dict], dict]:
    """Every fit of the comparison, fresh subprocess each, alternating order per round."""
    cfg = settings(device)
    data_dir = _demo(cfg)  # generated once, outside the timed runs
    libs = [lib for lib in cfg["libs"] if lib == "ours" or fastai_python() is not None]
    if "ours" in libs and cfg["cache"] == "warm":
        _warm_cache(data_dir, device, cfg)
    rows = []
    for precision in cfg["precisions"]:
        # fastai's to_bf16 autocasts for CUDA only: on the CPU it would train in fp32; its
        # default ("auto") is fp32: its fp32 runs serve those comparisons
        fastai_runs = not (precision == "auto" or (precision == "bf16" and device == "cpu"))
        plibs = [lib for lib in libs if lib == "ours" or fastai_runs]
        for r in range(cfg["rounds"]):  # round r: seed r in both libraries
            order = plibs if r % 2 == 0 else plibs[::-1]
            for lib in order:
                res = _fit_in_subprocess(lib, data_dir, device, precision, cfg, seed=r)
                rows.append({**res, "round": r, "precision": precision})
                print(
                    f"  {lib} {precision} round {r}: {res['wall_s']:.1f} s, error_rate "
                    f"{res['error_rate']:.4f}, load {res['load']:.1f}; {json.dumps(res)}",
                    flush=True,
                )
    return rows, cfg


def test_fit_one_cycle_side_by_side():
    """The target on the CPU: our wall time at most 0.6x fastai's at an equal or lower
    error rate; printed, never asserted (the machine is shared)."""
    cfg = settings()
    if fastai_python() is None:
        print("\nfastai is not importable here (set FASTAI_PYTHON): ours only")
    rows, cfg = side_by_side()
    versions = {r["lib"]: r["version"] for r in rows}
    print(
        f"\n{_device_name()}; {cfg['arch']} from scratch, {cfg['size']} px (presize "
        f"{cfg['presize']}), bs {cfg['bs']}, {cfg['epochs']} epochs of fit_one_cycle at "
        f"{cfg['lr'] or 'each library default'}, {cfg['workers']} workers; {versions}\n"
    )
    print(format_table(rows, cfg["epochs"]))
    model_rates = {}
    for chose in dict.fromkeys(r["chose"] for r in rows if r["lib"] == "ours"):
        steps = 3 if _slow_bf16(chose) else (20 if DEVICE == "cuda" else 8)
        model_rates[chose] = model_only_rate(DEVICE, chose, steps)[1]
    print("\nmedians:")
    for line in summarize(rows, cfg["epochs"], model_rates):
        print("  " + line)
    assert all(r["wall_s"] > 0 and 0.0 <= r["error_rate"] <= 1.0 for r in rows)


def test_summarize_time_to_accuracy():
    """The summary lines (fast): mean +- sd of the error, the wall-time ratios (ours bf16 and
    auto against fastai fp32 where fastai has no such row) and bf16 - fp32, auto - fp32 per
    seed."""
    rows = [
        {"lib": lib, "precision": p, "round": k, "wall_s": w, "n_train": 100, "error_rate": e}
        for lib, p, k, w, e in (
            ("ours", "fp32", 0, 10.0, 0.5), ("ours", "fp32", 1, 12.0, 0.3),
            ("fastai", "fp32", 0, 20.0, 0.4), ("fastai", "fp32", 1, 20.0, 0.4),
            ("ours", "bf16", 0, 5.0, 0.6), ("ours", "bf16", 1, 7.0, 0.3),
            ("ours", "auto", 0, 6.0, 0.45), ("ours", "auto", 1, 8.0, 0.35),
        )
    ]  # fmt: skip
    lines = summarize(rows, epochs=3)
    expected = (
        "fp32 ours: 2 seeds, median 11.0 s (27 train img/s; training only: epoch 1 -, "
        "epochs 2+ - img/s), error_rate 0.4000 +- 0.1414"
    )
    assert expected in lines
    assert "ours fp32 / fastai fp32 wall time: 0.55x" in lines
    assert "ours bf16 / fastai fp32 wall time: 0.30x" in lines
    assert "ours bf16 - fp32 error_rate, same seeds: +0.1000, +0.0000" in lines
    assert "ours auto / fastai fp32 wall time: 0.35x" in lines
    assert "ours auto - fp32 error_rate, same seeds: -0.0500, +0.0500" in lines
    assert cpu_model()  # a model name and its flags, or 'unknown CPU'


def test_summarize_training_rates():
    """The first and later epochs' training images/s (validation excluded), their ours/fastai
    ratios and ours' later rate as a share of the model-only rate of the precision it chose."""
    rows = [
        {"lib": "ours", "precision": "auto", "round": 0, "wall_s": 4.0, "n_train": 100,
         "error_rate": 0.5, "epoch_s": [2.0, 1.0, 1.0], "valid_s": [0.5, 0.5, 0.5],
         "chose": "bf16"},
        {"lib": "fastai", "precision": "fp32", "round": 0, "wall_s": 10.0, "n_train": 100,
         "error_rate": 0.5, "epoch_s": [4.0, 3.0, 3.0], "valid_s": [1.0, 1.0, 1.0],
         "chose": "fp32"},
    ]  # fmt: skip
    assert train_rates(rows[0]) == (100 / 1.5, 200.0)
    assert train_rates({"n_train": 100, "epoch_s": [2.0], "valid_s": [0.5]}) == (100 / 1.5, None)
    lines = summarize(rows, epochs=3, model_rates={"bf16": 400.0, "fp32": 100.0})
    ratios = "ours auto / fastai fp32 wall time: 0.40x; images/s epoch 1 2.00x, epochs 2+ 4.00x"
    share = "ours auto epochs 2+ training rate: 50% of the model-only rate (200 / 400 img/s, bf16)"
    assert ratios in lines and share in lines
    assert not any("fastai fp32 epochs 2+ training rate" in line for line in lines)


# ---- the model alone -----------------------------------------------------------------------------
def _slow_bf16(precision: str) -> bool:
    """bf16 on a CPU without bf16 instructions: about 9x fp32's step (Zen 3), so few steps."""
    return DEVICE == "cpu" and precision == "bf16" and not native_bf16_cpu_flags()


def model_only_learner(device: str, precision: str):  # noqa: ANN201 (a Learner)
    """A Learner holding one fixed batch [bs, 3, size, size] of CONFIG[device] (no data
    loader), in training mode: channels-last on CUDA as create_cnn does and in bf16 as the
    bf16 fits do, after the default callbacks' first-batch checks, as in a fit."""
    from fastcore_ext.learner import Learner
    from fastcore_ext.vision import create_body, create_head

    cfg = CONFIG[device]
    body = create_body(cfg["arch"], pretrained=False)
    model = torch.nn.Sequential(body, create_head(512, 12))

    class _Data:  # the bunch interface, enough for a Learner that never iterates it
        train_dl = valid_dl = None
        path, c = ".", 12

    _Data.device = device
    learn = Learner(_Data(), model, seed=0)
    learn.to_fp32()  # precision 'auto' would pick bf16 where it is native, even for "fp32"
    if device == "cuda" or precision == "bf16":  # as create_cnn on CUDA, and bf16 fits
        learn.to_channels_last()
    if precision == "bf16":
        learn.to_bf16()
    elif precision == "fp16":
        learn.to_fp16()
    assert learn.precision == precision, (learn.precision, precision)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg["bs"], 3, cfg["size"], cfg["size"], generator=g).to(device)
    y = torch.randint(0, 12, (cfg["bs"],), generator=g).to(device)
    learn.model.train()
    learn.training = True
    learn.xb, learn.yb = (x,), (y,)  # as the loop holds a batch (fastai v2's tuples)
    learn.conv_weight_grad.before_batch()  # the fit's first-batch checks: on the CPU the
    if learn.mixed_precision is not None:  # matmul weight gradients (and with AMX in bf16 the
        learn.mixed_precision.before_batch()  # weight-bound convs in fp32), as in a fit
    return learn


def model_only_rate(device: str, precision: str, steps: int) -> tuple[float, float]:
    """(median seconds per step, images/s) of forward + loss + backward + fused Adam step on
    one fixed batch (`model_only_learner`), through the Learner's own batch code."""
    learn = model_only_learner(device, precision)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        _sync(device)
        start = time.perf_counter()
        learn._do_one_batch()
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    learn.training = False
    step = statistics.median(times)
    return step, CONFIG[device]["bs"] / step


def test_model_only_step():
    """Model-only throughput in each precision (BENCH_TRAIN_MODEL_PRECISIONS; default fp32
    on the CPU: on a CPU without bf16 matrix instructions, Zen 3 here, bf16 autocast is about
    9x slower than fp32, so bf16 there is opt-in and runs 3 steps)."""
    default = ["fp32", "bf16", "fp16"] if DEVICE == "cuda" else ["fp32"]
    precisions = _env_list("BENCH_TRAIN_MODEL_PRECISIONS", default, ("fp32", "bf16", "fp16"))
    cfg = CONFIG[DEVICE]
    print(
        f"\n{_device_name()}; model-only step, {cfg['arch']}, [{cfg['bs']}, 3, {cfg['size']}, "
        f"{cfg['size']}], load {os.getloadavg()[0]:.1f}"
    )
    fp32_steps = _env_int("BENCH_TRAIN_MODEL_STEPS", 20 if DEVICE == "cuda" else 8)
    for precision in precisions:
        steps = min(3, fp32_steps) if _slow_bf16(precision) else fp32_steps
        step, rate = model_only_rate(DEVICE, precision, steps)
        print(f"  {precision}: {step * 1000:.1f} ms/step, {rate:.0f} images/s (median of {steps})")
        assert step > 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one fit of the side-by-side benchmark (JSON)")
    parser.add_argument("--run", choices=["ours", "fastai"], required=True)
    parser.add_argument("--data", type=Path, required=True, help="the image folder")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=DEVICE)
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"], default="fp32")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="phase times (syncs on CUDA)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, init, shuffle")
    parser.add_argument("--lr", type=float, default=None, help="max_lr (default: the library's)")
    args = parser.parse_args(argv)
    cfg = dict(CONFIG[args.device])
    if args.epochs is not None:
        if args.epochs < 1:
            parser.error(f"--epochs: expected a positive int, got {args.epochs}")
        cfg["epochs"] = args.epochs
    cfg["profile"] = args.profile
    cfg["lr"] = args.lr
    if not (args.data / "train").is_dir() or not (args.data / "valid").is_dir():
        parser.error(f"--data: expected a folder with train/ and valid/, got {args.data}")
    run = run_ours if args.run == "ours" else run_fastai
    print(json.dumps(run(args.data, args.device, args.precision, cfg, seed=args.seed)))


if __name__ == "__main__":
    main()
