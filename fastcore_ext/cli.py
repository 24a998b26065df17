"""The `fastcore-ext` command (also `python -m fastcore_ext`): the lesson-1 flow from a shell.

    fastcore-ext train [PATH] [--arch A] [--size S] [--bs B] [--epochs N] [--unfreeze-epochs M]
                       [--lr auto|FLOAT] [--pretrained/--no-pretrained] [--bf16] [--cache]
                       [--workers N] [--seed N] [--valid-pct P] [--out DIR] [--nproc N]
    fastcore-ext predict MODEL IMAGE [IMAGE ...]
    fastcore-ext lr-find [PATH] [same data and model options as train]

`train` runs the lesson: lr_find, fit_one_cycle (body frozen when pretrained), unfreeze,
lr_find, fit_one_cycle with a slice of learning rates; then it writes into --out:

    export.pth                 the exported model (`load_learner`, `fastcore-ext predict`)
    metrics.csv                one row per epoch of each stage (CSVLogger; epochs count from
                               0 again in stage 2)
    metrics.jsonl              the same rows as JSON objects, with the stage and learning rates
    plots/*.png                lr_find and losses and schedule of each stage, top losses,
                               confusion matrix
    summary.json               final error rate, times, learning rates, most confused pairs
    models/                    checkpoints (models/interrupted.pth after Ctrl-C)

Without PATH it trains on the embedded demo dataset (fastcore_ext.data.demo) with defaults
sized for a CPU (DEMO_DEFAULTS); with PATH the defaults are the lesson's (FOLDER_DEFAULTS).
Options left unset are printed with the value chosen. Pretrained weights are used by default
only when torchvision's cache already holds them.

`--nproc N` (N > 1) runs the same training in N processes on this machine through torchrun
and DistributedDataParallel (gloo on CPUs, NCCL on GPUs; fastcore_ext.distributed): the demo
dataset is drawn first, each process trains on its shard, rank 0 prints and writes the files.
On several machines, start `torchrun ... -m fastcore_ext train ...` on each yourself (README).

Exit status: 0 done, 2 usage error (one line on stderr), 130 interrupted (Ctrl-C: what was
trained so far is saved and exported first), 1 any other error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["DEMO_DEFAULTS", "FOLDER_DEFAULTS", "UsageError", "main"]

PROG = "fastcore-ext"

FOLDER_DEFAULTS: dict[str, Any] = {
    "arch": "resnet34",
    "size": 224,
    "bs": 64,
    "epochs": 4,
    "unfreeze_epochs": 2,
    "lr_find_iters": 100,
}
"""Defaults of train / lr-find on an image folder: the lesson's."""

DEMO_DEFAULTS: dict[str, Any] = {
    "arch": "resnet18",
    "size": 64,
    "bs": 32,
    "epochs": 6,
    "unfreeze_epochs": 2,
    "lr_find_iters": 50,
}
"""Defaults on the demo dataset, sized so the whole main job runs in minutes on a 2-core CPU."""

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in the command line or in what it names (exit status 2, one line)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# ---- argument types: each names what it expected and what came ------------------------------
def _int_at_least(lo: int) -> Any:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {v}")
        return v

    parse.__name__ = f"int>={lo}"
    return parse


def _lr(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a positive number such as 3e-3, got {text!r}"
        ) from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive number, got {text!r}")
    return v


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return v


def _add_data_model_options(p: argparse.ArgumentParser, *, training: bool) -> None:
    p.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="image folder: PATH/train/<class>/* and PATH/valid/<class>/*, or PATH/<class>/* "
        "split by --valid-pct; omitted: the embedded demo dataset",
    )
    d, f = DEMO_DEFAULTS, FOLDER_DEFAULTS
    p.add_argument(
        "--arch",
        help=f"torchvision architecture (default {f['arch']}; {d['arch']} on the demo dataset)",
    )
    p.add_argument(
        "--size",
        type=_int_at_least(16),
        help=f"input size in pixels (default {f['size']}; {d['size']} on the demo dataset)",
    )
    p.add_argument(
        "--bs", type=_int_at_least(1), help=f"batch size (default {f['bs']}; {d['bs']} on demo)"
    )
    if training:
        p.add_argument(
            "--epochs",
            type=_int_at_least(1),
            help=f"epochs of the first fit_one_cycle (default {f['epochs']}; "
            f"{d['epochs']} on the demo dataset)",
        )
        p.add_argument(
            "--unfreeze-epochs",
            type=_int_at_least(0),
            help=f"epochs after unfreeze (default {f['unfreeze_epochs']}; "
            f"{d['unfreeze_epochs']} on the demo dataset; 0 skips the second stage)",
        )
        p.add_argument(
            "--lr",
            type=_lr,
            default="auto",
            help="max learning rate of the first fit: 'auto' (lr_find's valley, the default) "
            "or a number; the second fit uses slice(lr_find's valley, lr/10), or "
            "slice(lr/100, lr/10) with a number",
        )
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start from ImageNet weights (torchvision's cache; downloaded when online) and "
        "freeze the body for the first fit; default: only when the weights are already cached",
    )
    p.add_argument("--bf16", action="store_true", help="train in bfloat16 mixed precision")
    p.add_argument(
        "--cache", action="store_true", help="keep decoded, presized images in a memory map"
    )
    p.add_argument(
        "--workers",
        type=_int_at_least(0),
        help="data loader worker processes (default: the data layer's choice)",
    )
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed (default 0)")
    p.add_argument(
        "--valid-pct",
        type=_fraction,
        default=0.2,
        help="validation fraction when PATH has no train/ and valid/ folders (default 0.2)",
    )
    p.add_argument(
        "--out",
        default="fastcore_ext_run",
        help="output folder (default ./fastcore_ext_run)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The `fastcore-ext` argument parser (sub-commands train, predict, lr-find)."""
    parser = _Parser(
        prog=PROG,
        description="fastai-style image classification on fused C++/CUDA kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    train = sub.add_parser(
        "train",
        help="train a classifier (the lesson-1 flow) and write model, metrics and plots",
        description="lr_find, fit_one_cycle, unfreeze, lr_find, fit_one_cycle(slice); then "
        "export the model and write metrics, plots and a summary into --out.",
    )
    _add_data_model_options(train, training=True)
    train.add_argument(
        "--nproc",
        type=_int_at_least(1),
        default=1,
        help="processes on this machine (torchrun + DistributedDataParallel: one per GPU, or "
        "gloo processes on the CPU); default 1",
    )
    predict = sub.add_parser(
        "predict",
        help="classify images with an exported model",
        description="Print the predicted class and its probability for each image.",
    )
    predict.add_argument("model", metavar="MODEL", help="export.pth, or the folder holding it")
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    lr_find = sub.add_parser(
        "lr-find",
        help="run the learning-rate finder only",
        description="Build the data and model as train does, run lr_find, save its plot into "
        "--out/plots and print the suggestions.",
    )
    _add_data_model_options(lr_find, training=False)
    return parser


# ---- choices shown to the user -------------------------------------------------------------------
def _announce_defaults(args: argparse.Namespace, training: bool) -> None:
    """Fill the options left unset (see _resolve_defaults) and say which values were chosen."""
    chosen = _resolve_defaults(args, training)
    if chosen:
        kind = "the demo dataset" if args.path is None else "an image folder"
        print(f"Defaults for {kind}: {', '.join(chosen)}")


def _resolve_defaults(args: argparse.Namespace, training: bool) -> list[str]:
    """Fill the options left unset from the demo or folder defaults; return 'name value' of
    each one filled."""
    table = DEMO_DEFAULTS if args.path is None else FOLDER_DEFAULTS
    chosen = []
    names = ["arch", "size", "bs", "lr_find_iters"]
    if training:
        names += ["epochs", "unfreeze_epochs"]
    for name in names:
        if getattr(args, name, None) is None:
            setattr(args, name, table[name])
            if name != "lr_find_iters":
                chosen.append(f"--{name.replace('_', '-')} {table[name]}")
    return chosen


def _weights_state(arch: str) -> tuple[Any, Path | None]:
    """(builder, cached weights file or None) of a torchvision architecture name."""
    from torchvision import models

    from fastcore_ext.vision import _weights_cache_file

    try:
        builder = models.get_model_builder(arch)
    except ValueError:
        known = ", ".join(n for n in models.list_models(module=models) if n.startswith("resnet"))
        raise UsageError(
            f"--arch: expected a torchvision classification model name (e.g. {known}), got {arch!r}"
        ) from None
    try:
        weights = models.get_model_weights(builder).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return builder, None
    path = _weights_cache_file(weights)
    return builder, path if path.is_file() else None


def _choose_pretrained(args: argparse.Namespace) -> tuple[Any, bool, str]:
    """(builder, pretrained, sentence saying why)."""
    builder, cached = _weights_state(args.arch)
    if args.pretrained is False:
        return builder, False, "pretrained: no (--no-pretrained): training from scratch"
    if cached is not None:
        return builder, True, f"pretrained: yes (ImageNet weights from {cached})"
    if args.pretrained is None:
        return (
            builder,
            False,
            (
                f"pretrained: no ({args.arch}'s ImageNet weights are not in torchvision's cache; "
                f"pass --pretrained to download them): training from scratch"
            ),
        )
    return builder, True, f"pretrained: yes (downloading {args.arch}'s ImageNet weights)"


# ---- data and learner ----------------------------------------------------------------------------
# The data layer's errors start with the name of its argument; the option that sets it.
_OPTION_OF = {
    "bs": "--bs",
    "size": "--size",
    "valid_pct": "--valid-pct",
    "num_workers": "--workers",
}


def _build_data(args: argparse.Namespace) -> tuple[Any, str]:
    """The bunch for args.path (or the demo dataset) and a line describing it."""
    from fastcore_ext.augment import get_transforms
    from fastcore_ext.data import (
        BadImageError,
        ImageDataBunch,
        demo_dataset,
        get_image_files,
        imagenet_stats,
    )

    if args.path is None:
        t0 = time.perf_counter()
        root = demo_dataset()
        source = f"the demo dataset at {root} (ready in {time.perf_counter() - t0:.1f} s)"
        split = {}
    else:
        root = Path(args.path).expanduser()
        if not root.is_dir():
            what = "a file" if root.exists() else "missing"
            raise UsageError(f"PATH: expected an image folder, got {str(root)!r} ({what})")
        try:
            has_images = bool(get_image_files(root))
        except (ValueError, OSError) as e:
            raise UsageError(f"PATH: {e}") from None
        if not has_images:
            raise UsageError(
                f"PATH: no images (.jpg, .png, ...) under {str(root)!r}; expected "
                f"PATH/train/<class>/*, PATH/valid/<class>/* or PATH/<class>/*"
            )
        presplit = (root / "train").is_dir() and (root / "valid").is_dir()
        split = {} if presplit else {"valid_pct": args.valid_pct}
        source = f"{root} ({'train/ and valid/' if presplit else f'valid_pct {args.valid_pct}'})"
    try:
        data = ImageDataBunch.from_folder(
            root,
            ds_tfms=get_transforms(),
            size=args.size,
            bs=args.bs,
            num_workers=args.workers,
            cache=args.cache,
            seed=args.seed,
            **split,
        ).normalize(imagenet_stats)
    except (BadImageError, ValueError, TypeError) as e:
        message = str(e).splitlines()[0]
        option = _OPTION_OF.get(message.split(":", 1)[0], "PATH")
        raise UsageError(f"{option}: {message}") from None
    n_train, n_valid = len(data.train_ds), len(data.valid_ds)
    desc = f"data: {source}: {data.c} classes, {n_train} train / {n_valid} valid images"
    return data, desc


def _build_learner(args: argparse.Namespace, data: Any, out: Path) -> Any:
    from fastcore_ext.metrics import error_rate
    from fastcore_ext.vision import create_cnn

    builder, pretrained, why = _choose_pretrained(args)
    print(why)
    try:
        learn = create_cnn(
            data, builder, pretrained=pretrained, metrics=error_rate, path=out, seed=args.seed
        )
    except RuntimeError as e:
        if pretrained and "pretrained" in str(e).lower():
            raise UsageError(
                f"--pretrained: {str(e).splitlines()[0]} Pass --no-pretrained to train from "
                f"scratch."
            ) from None
        raise
    if args.bf16:
        learn.to_bf16()
    return learn


@contextlib.contextmanager
def _plots_saved_by_us() -> Iterator[None]:
    """Turn off the library's automatic PNG saving (it names files after the plot kind, so
    two lr_find plots would overwrite each other); the CLI saves each figure itself."""
    from fastcore_ext.plots import PLOTS_ENV

    old = os.environ.get(PLOTS_ENV)
    os.environ[PLOTS_ENV] = "off"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(PLOTS_ENV, None)
        else:
            os.environ[PLOTS_ENV] = old


class _Run:
    """What a train command has produced so far (files, times, numbers): the summary."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.start = time.perf_counter()
        self.times: dict[str, float] = {}
        self.plots: list[Path] = []
        self.lrs: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.loggers: list[Any] = []  # callbacks of every fit (not of lr_find)
        from fastcore_ext.distributed import launch_rank

        # only rank 0 of a multi-process run writes files (the other ranks run silently)
        self.writes = launch_rank() == 0

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0

    def save_plot(self, fig: Any, name: str) -> None:
        from fastcore_ext.plots import save_png

        if self.writes:
            self.plots.append(save_png(fig, self.out / "plots" / f"{name}.png"))


def _jsonl_logger(path: Path, run: _Run) -> Any:
    """A callback appending one JSON object per epoch to `path`: stage, epoch, the epoch
    table's values and the learning rates of the epoch's last batch."""
    from fastcore_ext.callback import Callback

    class JSONLinesLogger(Callback):
        order = 60

        def after_epoch(self) -> None:
            rec = self.learn.recorder
            row = dict(zip(rec.metric_names[1:-1], [*rec.values[-1]], strict=True))
            row = {
                "stage": run.info.get("stage"),
                "epoch": rec.epochs[-1],
                **row,
                "time_s": round(rec.epoch_times[-1], 3),
                "lrs": rec.lrs[-1] if rec.lrs else None,
            }
            if run.writes:
                with open(path, "a") as f:
                    f.write(json.dumps(row) + "\n")

    return JSONLinesLogger()


def _lr_find(learn: Any, run: _Run, iters: int, name: str) -> Any:
    with run.timed("lr_find"):
        sugg = learn.lr_find(num_it=iters)
    run.save_plot(learn.recorder.plot(), name)
    print(
        f"lr_find ({name}): valley {sugg.valley:.2e}, steep {sugg.steep:.2e}, "
        f"minimum {sugg.minimum:.2e}"
    )
    return sugg


def _fit_stage(learn: Any, run: _Run, stage: str, epochs: int, max_lr: Any) -> None:
    run.info["stage"] = stage
    with run.timed("fit"):
        learn.fit_one_cycle(epochs, max_lr, cbs=run.loggers)
    run.save_plot(learn.recorder.plot_losses(), f"losses_{stage}")
    run.save_plot(learn.recorder.plot_lr(show_moms=True), f"schedule_{stage}")
    run.info["epochs_done"] = run.info.get("epochs_done", 0) + epochs
    rec = learn.recorder
    if rec.metrics and rec.metrics[-1]:
        run.info["error_rate"] = rec.metrics[-1][0]
        run.info["valid_loss"] = rec.valid_losses[-1]


def _fmt_lr(lr: Any) -> str:
    if isinstance(lr, slice):
        return f"slice({lr.start:.1e}, {lr.stop:.1e})"
    return f"{lr:.1e}"


def _train_stages(args: argparse.Namespace, learn: Any, run: _Run, pretrained: bool) -> None:
    """The lesson: lr_find, fit_one_cycle, unfreeze, lr_find, fit_one_cycle(slice)."""
    if args.lr == "auto":
        sugg = _lr_find(learn, run, args.lr_find_iters, "lr_find_stage1")
        lr1 = sugg.valley
        why = "lr_find's valley"
    else:
        lr1, why = args.lr, "--lr"
    run.lrs["stage1"] = lr1
    frozen = "body frozen, " if pretrained else ""
    print(f"\nStage 1: fit_one_cycle({args.epochs}, max_lr={_fmt_lr(lr1)}) ({frozen}{why})")
    _fit_stage(learn, run, "stage1", args.epochs, lr1)
    if args.unfreeze_epochs == 0:
        return
    learn.unfreeze()
    hi = lr1 / 10
    if args.lr == "auto":
        valley = _lr_find(learn, run, args.lr_find_iters, "lr_find_stage2").valley
        lo = valley if valley < hi else hi / 10
        why = "lr_find's valley after unfreeze up to stage 1's lr / 10"
    else:
        lo, why = lr1 / 100, "--lr / 100 up to --lr / 10"
    lr2 = slice(lo, hi)
    run.lrs["stage2"] = [lo, hi]
    print(
        f"\nStage 2: unfreeze, fit_one_cycle({args.unfreeze_epochs}, max_lr={_fmt_lr(lr2)}) ({why})"
    )
    _fit_stage(learn, run, "stage2", args.unfreeze_epochs, lr2)


def _interpret(learn: Any, run: _Run) -> list[tuple[str, str, int]]:
    from fastcore_ext.interpret import ClassificationInterpretation

    with run.timed("interpretation"):
        interp = ClassificationInterpretation.from_learner(learn)
        run.save_plot(interp.plot_top_losses(9), "top_losses")
        run.save_plot(interp.plot_confusion_matrix(), "confusion_matrix")
        confused = interp.most_confused(min_val=2)
    run.info["error_rate"] = interp.error_rate()
    return confused


def _write_summary(run: _Run, args: argparse.Namespace, learn: Any, confused: list) -> dict:
    total = time.perf_counter() - run.start
    summary = {
        "data": run.info.get("data"),
        "arch": args.arch,
        "size": args.size,
        "bs": args.bs,
        "pretrained": run.info.get("pretrained"),
        "precision": learn.precision if learn is not None else None,
        "epochs": args.epochs,
        "unfreeze_epochs": args.unfreeze_epochs,
        "epochs_done": run.info.get("epochs_done", 0),
        "learning_rates": run.lrs,
        "final_error_rate": run.info.get("error_rate"),
        "final_valid_loss": run.info.get("valid_loss"),
        "most_confused": [list(t) for t in confused],
        "time_s": {"total": round(total, 1), **{k: round(v, 1) for k, v in run.times.items()}},
        "interrupted": run.info.get("interrupted", False),
        "files": sorted(str(p.relative_to(run.out)) for p in run.out.rglob("*") if p.is_file()),
    }
    if run.writes:
        (run.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _print_summary(s: dict, out: Path) -> None:
    def mmss(sec: float) -> str:
        return f"{int(sec // 60)}:{int(sec % 60):02d}"

    err = s["final_error_rate"]
    parts = ", ".join(f"{k} {mmss(v)}" for k, v in s["time_s"].items() if k != "total")
    lines = [
        "",
        "Summary" + (" (interrupted)" if s["interrupted"] else ""),
        f"  {s['data']}",
        f"  model: {s['arch']}, {'pretrained' if s['pretrained'] else 'from scratch'}, "
        f"{s['size']} px, bs {s['bs']}, {s['precision']}, {s['epochs_done']} epochs",
        f"  learning rates: {json.dumps(s['learning_rates'])}",
        f"  final error rate: {'n/a' if err is None else f'{err:.4f}'}",
        f"  time: {mmss(s['time_s']['total'])} ({parts})",
    ]
    if s["most_confused"]:
        pairs = ", ".join(f"{a} -> {b} ({n})" for a, b, n in s["most_confused"][:5])
        lines.append(f"  most confused (actual -> predicted): {pairs}")
    elif err is not None:
        lines.append("  most confused: no pair of classes confused twice or more")
    lines.append(f"  output: {out}/ (export.pth, metrics.csv, metrics.jsonl, plots/, summary.json)")
    print("\n".join(lines))


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """argv with its --nproc option (`--nproc N` or `--nproc=N`) taken out."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _launch(args: argparse.Namespace) -> int:
    """--nproc N: draw the demo dataset once (if it is the data), then run this same command
    in N processes through torchrun; its exit status."""
    from fastcore_ext import distributed

    if args.path is None:
        import fastcore_ext.data as data_mod

        data_mod.demo_dataset()  # complete before the processes start: none of them draws it
    print(f"Starting {args.nproc} processes (torchrun, DistributedDataParallel)")
    code = distributed.launch(args.nproc, _without_nproc(args.argv))
    return EXIT_INTERRUPTED if code in (-2, 130) else code


def _cmd_train(args: argparse.Namespace) -> int:
    from fastcore_ext.distributed import launch_rank, launched_by_torchrun

    if args.nproc > 1 and not launched_by_torchrun():
        return _launch(args)
    if launch_rank() != 0:  # the other processes of a multi-process run work silently
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            return _train(args)
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    _announce_defaults(args, training=True)
    out = Path(args.out).expanduser()
    _check_out(out)
    from fastcore_ext.callback import CSVLogger

    run = _Run(out)
    with run.timed("data"):
        data, desc = _build_data(args)
    print(desc)
    run.info["data"] = desc.removeprefix("data: ")
    for stale in ("metrics.csv", "metrics.jsonl"):
        (out / stale).unlink(missing_ok=True)
    run.loggers = [CSVLogger("metrics.csv", append=True), _jsonl_logger(out / "metrics.jsonl", run)]
    learn = _build_learner(args, data, out)
    pretrained = any(not p.requires_grad for p in learn.model.parameters())
    run.info["pretrained"] = pretrained
    confused: list = []
    try:
        with _plots_saved_by_us():
            _train_stages(args, learn, run, pretrained)
            confused = _interpret(learn, run)
    except KeyboardInterrupt:
        run.info["interrupted"] = True
        saved = learn.save("interrupted")
        learn.export("export.pth")
        s = _write_summary(run, args, learn, confused)
        _print_summary(s, out)
        print(f"Interrupted: saved {saved} and {out / 'export.pth'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    learn.export("export.pth")
    s = _write_summary(run, args, learn, confused)
    _print_summary(s, out)
    return 0


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: expected a folder, got {str(out)!r} (an existing file)")
    out.mkdir(parents=True, exist_ok=True)


def _cmd_lr_find(args: argparse.Namespace) -> int:
    _announce_defaults(args, training=False)
    out = Path(args.out).expanduser()
    _check_out(out)
    run = _Run(out)
    data, desc = _build_data(args)
    print(desc)
    learn = _build_learner(args, data, out)
    with _plots_saved_by_us():
        _lr_find(learn, run, args.lr_find_iters, "lr_find")
    print(f"plot: {run.plots[-1]}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from fastcore_ext.data import BadImageError
    from fastcore_ext.export import load_learner

    model = Path(args.model).expanduser()
    file = model / "export.pth" if model.is_dir() else model
    if not file.is_file():
        raise UsageError(f"MODEL: expected export.pth or a folder holding it, got {str(model)!r}")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise UsageError(f"IMAGE: expected image files, got {missing[0]!r} (not a file)")
    try:
        learn = load_learner(file)
    except ValueError as e:
        raise UsageError(f"MODEL: {str(e).splitlines()[0]}") from None
    width = max(len(str(p)) for p in args.images)
    for img in args.images:
        try:
            name, _, probs = learn.predict(Path(img))
        except BadImageError as e:
            raise UsageError(f"IMAGE: {str(e).splitlines()[0]}") from None
        print(f"{img:<{width}}  {name}  {float(probs.max()):.4f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    import matplotlib

    matplotlib.use("Agg")  # plots are written as PNG files, never shown
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped too
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        command = {"train": _cmd_train, "predict": _cmd_predict, "lr-find": _cmd_lr_find}
        return command[args.command](args)
    except UsageError as e:
        msg = str(e)
        if not msg.startswith(PROG):
            msg = f"{PROG} {args.command}: error: {msg}"
        print(msg, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
