"""The `fastcore-ext` command (also `python -m fastcore_ext`): the lesson-1 flow from a shell.

    fastcore-ext train [PATH] [--arch A] [--size S] [--bs B] [--epochs N] [--unfreeze-epochs M]
                       [--lr auto|FLOAT] [--pretrained/--no-pretrained]
                       [--precision auto|fp32|bf16|fp16] [--compile] [--cache] [--skip-bad]
                       [--workers N] [--seed N]
                       [--valid-pct P] [--label-re PATTERN | --labels-csv FILE]
                       [--lr-find-iters N] [--out DIR] [--nproc N] [--resume]
    fastcore-ext predict MODEL IMAGE [IMAGE ...] [--csv]
    fastcore-ext lr-find [PATH] [same data and model options as train]

`train` runs the lesson (fastcore_ext.lesson.run_lesson: fit_one_cycle at 3e-3 with the
body frozen when pretrained, unfreeze, lr_find, fit_one_cycle with a slice of learning
rates) and writes into --out: export.pkl, metrics.csv, metrics.jsonl, plots/*.png,
summary.json and models/ (see fastcore_ext.lesson). `lr-find` runs lesson.find_lr.

PATH is a folder of class folders (PATH/train/<class>/*, PATH/valid/<class>/*, or
PATH/<class>/* split by --valid-pct), or with `--label-re PATTERN` any images under PATH
labelled by the first group of PATTERN searched in their path, as fastai's from_name_re
(Pets: `fastcore-ext train images/ --label-re '/([^/]+)_\\d+.jpg$'`), or with
`--labels-csv FILE` the files a CSV of name,label rows names (fastai's from_csv; MNIST_SAMPLE:
`fastcore-ext train mnist_sample --labels-csv labels.csv`).
Without PATH it trains on the embedded demo dataset (fastcore_ext.data.demo) with defaults
sized for a CPU (DEMO_DEFAULTS); with PATH the defaults are the lesson's (FOLDER_DEFAULTS).
Options left unset are printed with the value chosen. Pretrained weights are used by default
only when torchvision's cache already holds them. Unreadable images (truncated, not an image)
are skipped when training meets them, or left out up front with `--skip-bad`; the final lines
and summary.json's `bad_images` count both.

`predict` prints one line per image (its path, the predicted class and its probability), or
with `--csv` a CSV table (header ``file,prediction,probability``; a path or class name holding
a comma, a quote or a space is quoted as the csv module does, so a program can read it back);
an image it cannot read (truncated, not an image) is skipped with a line on stderr naming it,
and the others are predicted.

This module parses, prints and exits: the work is fastcore_ext.lesson's.

`--nproc N` (N > 1) runs the same training in N processes on this machine through torchrun
and DistributedDataParallel (gloo on CPUs, NCCL on GPUs; fastcore_ext.distributed): the demo
dataset is drawn first, each process trains on its shard, rank 0 prints and writes the files.
On several machines, start `torchrun ... -m fastcore_ext train ...` on each yourself (README).

Exit status: 0 done (`predict`: at least one image predicted, unreadable ones skipped), 2
usage error (one line on stderr; `predict`: also when none of the images could be read), 130
interrupted (Ctrl-C: what was trained so far is saved and exported first), 143 terminated
(SIGTERM, from `timeout`, `kill` or a job scheduler, during `train`: saved as after a Ctrl-C),
1 any other error. An interrupted (or terminated) `train` saves the state at the end of its
last completed epoch: the same command with `--resume` goes on from there in the same --out
folder (lesson.run_lesson's resume).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import math
import os
import signal
import sys
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import matplotlib
import torch

from fastcore_ext.data import BadImageError, demo_dataset, get_image_files
from fastcore_ext.export import DEFAULT_EXPORT
from fastcore_ext.exported import load_learner
from fastcore_ext.launch import launch
from fastcore_ext.lesson import (
    INTERRUPTED,
    LESSON_LR,
    PREVIOUS,
    LessonConfig,
    LessonError,
    LessonSummary,
    check_config,
    check_image_folder,
    find_lr,
    run_lesson,
    signal_handled,
)
from fastcore_ext.ranks import launch_rank, launched_by_torchrun, world_size

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
EXIT_TERMINATED = 143  # 128 + SIGTERM: saved as after a Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (`predict ... | head`)


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
        "split by --valid-pct, or any images with --label-re; omitted: the embedded demo "
        "dataset",
    )
    p.add_argument(
        "--label-re",
        metavar="PATTERN",
        help="label each image of PATH by the first group of this regular expression searched "
        "in its path (fastai's from_name_re), e.g. '/([^/]+)_\\d+.jpg$' for Pets-style "
        "file names; split by --valid-pct",
    )
    p.add_argument(
        "--labels-csv",
        metavar="FILE",
        help="label the images of PATH from a CSV file of name,label rows (fastai's from_csv; "
        "MNIST_SAMPLE's labels.csv: names relative to PATH; a relative FILE not found from "
        "here is looked up under PATH); split by --valid-pct",
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
        "--bs",
        type=_int_at_least(2),  # BatchNorm trains on 2 images a batch or more
        help=f"batch size (default {f['bs']}; {d['bs']} on demo)",
    )
    p.add_argument(
        "--lr-find-iters",
        type=_int_at_least(10),
        help=f"steps of each lr_find sweep (default {f['lr_find_iters']}, fastai's num_it; "
        f"{d['lr_find_iters']} on the demo dataset): on a small folder a sweep of 100 steps "
        "is several epochs",
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
            default=LESSON_LR,
            help=f"max learning rate of the first fit (default {LESSON_LR:g}, the lesson "
            f"notes'), or 'auto': lr_find's valley; the second fit uses slice(lr_find's "
            f"valley after unfreeze, lr/10)",
        )
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start from ImageNet weights (torchvision's cache; downloaded when online) and "
        "freeze the body for the first fit; default: only when the weights are already cached",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="auto (the default): bfloat16 autocast + channels-last where the hardware runs "
        "bf16 natively (CPUs with AMX or AVX512-BF16, CUDA capability 8.0+), else fp32; fp16: "
        "CUDA only, with loss scaling",
    )
    p.add_argument("--bf16", action="store_true", help="the same as --precision bf16")
    p.add_argument(
        "--compile",
        action="store_true",
        help="run the model's forward through torch.compile (learn.compile(): slower to start; "
        "see bench/README.md for when it pays)",
    )
    p.add_argument(
        "--cache", action="store_true", help="keep decoded, presized images in a memory map"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="decode every image first and leave out the unreadable ones (default: skip each "
        "when training meets it, named by a warning the first time)",
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
        description="fit_one_cycle at --lr (3e-3; `--lr auto`: lr_find's valley first), "
        "unfreeze, lr_find, fit_one_cycle(slice(its valley, lr / 10)); then export the model "
        "and write metrics, plots and a summary into --out.",
    )
    _add_data_model_options(train, training=True)
    train.add_argument(
        "--nproc",
        type=_int_at_least(1),
        default=1,
        help="processes on this machine (torchrun + DistributedDataParallel: one per GPU, or "
        "gloo processes on the CPU); default 1",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="go on with the interrupted run in --out from the end of its last completed epoch "
        "(repeat its options; --workers may differ)",
    )
    predict = sub.add_parser(
        "predict",
        help="classify images with an exported model",
        description="Print the predicted class and its probability for each image (a folder: "
        "every image file under it). A missing or unreadable image is skipped (named on "
        "stderr) and the others are predicted; the exit status is 2 when none could be read.",
    )
    predict.add_argument(
        "model", metavar="MODEL", help=f"{DEFAULT_EXPORT}, or the folder holding it"
    )
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders")
    predict.add_argument(
        "--csv",
        action="store_true",
        help="print CSV (header file,prediction,probability; fields quoted where needed) "
        "instead of aligned columns",
    )
    predict.add_argument(
        "--probs",
        action="store_true",
        help="also print every class's probability (CSV: a column per class, named by it; "
        "aligned: class=probability pairs)",
    )
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
    """Fill the options left unset (see _resolve_defaults) and say which values were chosen;
    first a PATH that is no folder is a LessonError (nothing printed before it)."""
    if args.path is not None:
        check_image_folder(args.path)
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


def _config(args: argparse.Namespace, training: bool) -> LessonConfig:
    """The lesson's configuration from the parsed (and defaulted) command line."""
    stages = {}
    if training:
        stages = {
            "epochs": args.epochs,
            "unfreeze_epochs": args.unfreeze_epochs,
            "lr": None if args.lr == "auto" else args.lr,
            "resume": args.resume,
        }
    return LessonConfig(
        path=None if args.path is None else Path(args.path),
        label_re=args.label_re,
        labels_csv=None if args.labels_csv is None else Path(args.labels_csv),
        arch=args.arch,
        size=args.size,
        bs=args.bs,
        lr_find_iters=args.lr_find_iters,
        pretrained=args.pretrained,
        precision="bf16" if args.bf16 else args.precision,
        compile=args.compile,
        cache=args.cache,
        skip_bad=args.skip_bad,
        workers=args.workers,
        seed=args.seed,
        valid_pct=args.valid_pct,
        out=Path(args.out),
        **stages,
    )


# The LessonConfig field a LessonError names -> the option (or argument) that sets it.
_OPTION_OF = {
    "path": "PATH",
    "label_re": "--label-re",
    "labels_csv": "--labels-csv",
    "precision": "--precision",
    "compile": "--compile",
    "arch": "--arch",
    "bs": "--bs",
    "valid_pct": "--valid-pct",
    "pretrained": "--pretrained",
    "out": "--out",
    "resume": "--resume",
}


def _usage_error(e: LessonError) -> UsageError:
    message = f"{_OPTION_OF[e.field]}: {e}"
    if e.field == "pretrained":
        message += " Pass --no-pretrained to train from scratch."
    return UsageError(message)


def _print_summary(s: LessonSummary) -> None:
    def mmss(sec: float) -> str:
        return f"{int(sec // 60)}:{int(sec % 60):02d}"

    err = s.final_error_rate
    n = world_size()
    procs = f" per process x {n} processes" if n > 1 else ""
    parts = ", ".join(f"{k} {mmss(v)}" for k, v in s.time_s.items() if k != "total")
    lines = [
        "",
        "Summary" + (" (interrupted)" if s.interrupted else ""),
        f"  {s.data}",
        f"  model: {s.arch}, {'pretrained' if s.pretrained else 'from scratch'}, "
        f"{s.size} px, bs {s.bs}{procs}, {s.precision}, {s.epochs_done} "
        f"epoch{'' if s.epochs_done == 1 else 's'}",
        f"  learning rates: {json.dumps(s.learning_rates)}",
        f"  final error rate: {'n/a' if err is None else f'{err:.4f}'}",
        f"  time: {mmss(s.time_s['total'])} ({parts})",
    ]
    if s.resumed_from is not None:
        lines.append(f"  resumed from {s.resumed_from} (the times are this run's)")
    if s.most_confused:
        pairs = ", ".join(f"{a} -> {b} ({n})" for a, b, n in s.most_confused[:5])
        lines.append(f"  most confused (actual -> predicted): {pairs}")
    elif err is not None and not s.interrupted:  # interrupted: the interpretation did not run
        lines.append("  most confused: no pair of classes confused twice or more")
    bad = s.bad_images
    for count, files, how in [
        (bad.skipped, bad.skipped_files, "skipped during the run"),
        (bad.dropped, bad.dropped_files, "left out by --skip-bad"),
    ]:
        if count:
            more = f", and {count - len(files)} more" if count > len(files) else ""
            lines.append(f"  unreadable images {how}: {count} ({', '.join(files)}{more})")
    written = sorted(
        {f.split("/")[0] + ("/" if "/" in f else "") for f in s.files} | {"summary.json"}
    )  # fmt: skip (written after the summary listed files)
    lines.append(f"  output: {s.out}/ ({', '.join(written)})")
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
    """--nproc N: draw the demo dataset once (if it is the data), check what the run would
    refuse (one usage error here, not one per process), then run this same command in N
    processes through torchrun; its exit status."""
    if args.path is None:
        demo_dataset()  # complete before the processes start: none of them draws it
    checked = copy.copy(args)
    _resolve_defaults(checked, training=True)  # the processes announce them
    try:
        check_config(_config(checked, training=True), nproc=args.nproc)
    except LessonError as e:
        raise _usage_error(e) from None
    print(f"Starting {args.nproc} processes (torchrun, DistributedDataParallel)")
    code = launch(args.nproc, _without_nproc(args.argv))
    return EXIT_INTERRUPTED if code in (-2, 130) else code


def _cmd_train(args: argparse.Namespace) -> int:
    if args.nproc > 1 and not launched_by_torchrun():
        return _launch(args)
    with _terminate_as_interrupt() as terminated:
        if launch_rank() != 0:  # the other processes of a multi-process run work silently
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                code = _train(args)
        else:
            code = _train(args)
    return EXIT_TERMINATED if terminated and code == EXIT_INTERRUPTED else code


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[list[bool]]:
    """Within the block SIGTERM (what `timeout`, `kill` and job schedulers send; torchrun
    passes it on to its processes) is taken as a Ctrl-C: the model is saved and exported as
    then. Yields a list that is truthy once SIGTERM came."""
    came: list[bool] = []

    def handler(signum: int, frame: object) -> None:
        if not came:
            came.append(True)
            raise KeyboardInterrupt

    with signal_handled(signal.SIGTERM, handler):
        yield came


def _train(args: argparse.Namespace) -> int:
    try:
        _announce_defaults(args, training=True)
        summary = run_lesson(_config(args, training=True))
    except LessonError as e:
        raise _usage_error(e) from None
    _print_summary(summary)
    if summary.interrupted:
        if launch_rank() == 0:  # once in a multi-process run
            going_on = (
                f"the same train command with --resume goes on from {summary.resume_point}; "
                if summary.resume_point is not None
                else "(no epoch was completed, so nothing to resume); "
            )
            print(
                f"Interrupted: saved {summary.saved} and {summary.out / DEFAULT_EXPORT}. "
                f"`{PROG} predict {summary.out} FILES` classifies with the model trained so "
                f"far; {going_on}without --resume it starts afresh (these files then move to "
                f"{summary.out / PREVIOUS}/, or to {summary.out / INTERRUPTED}/ when "
                f"{PREVIOUS}/ holds a run that finished)",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    return 0


def _cmd_lr_find(args: argparse.Namespace) -> int:
    try:
        _announce_defaults(args, training=False)
        result = find_lr(_config(args, training=False))
    except LessonError as e:
        raise _usage_error(e) from None
    print(f"plot: {result.plot}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    model = Path(args.model).expanduser()
    try:
        learn = load_learner(model)
    except FileNotFoundError as e:  # names the missing file, and an old export.pth beside it
        raise UsageError(f"MODEL: expected {DEFAULT_EXPORT} or a folder holding it: {e}") from None
    except ValueError as e:
        raise UsageError(f"MODEL: {str(e).splitlines()[0]}") from None
    images: list[str] = []
    for arg in args.images:
        found = get_image_files(arg) if Path(arg).is_dir() else [arg]
        if not found:
            print(f"{PROG} predict: skipped {arg}: a folder without image files", file=sys.stderr)
        images += map(str, found)
    if not images:
        raise UsageError(f"IMAGE: no image files in {', '.join(args.images)}")
    width = max(map(display_width, images))
    table = csv.writer(sys.stdout, lineterminator="\n") if args.csv else None
    if table is not None:
        every = list(learn.data.classes) if args.probs else []
        table.writerow(["file", "prediction", "probability", *every])
    skipped = 0
    batch: list[tuple[str, torch.Tensor]] = []  # (file, its input [1, 3, S, S])
    for k, img in enumerate(images):
        if not Path(img).is_file():
            skipped += 1
            print(f"{PROG} predict: skipped {img}: no such file", file=sys.stderr)
        else:
            try:
                batch.append((img, learn.data.preprocess(Path(img))))
            except BadImageError as e:
                skipped += 1
                why = str(e.__cause__ or e).splitlines()[0]
                print(
                    f"{PROG} predict: skipped {img}: not a readable image ({why})",
                    file=sys.stderr,
                )
        if batch and (len(batch) == PREDICT_BS or k == len(images) - 1):
            _print_predictions(learn, batch, width, table, args.probs)
            batch = []
    if skipped == len(images):
        raise UsageError(f"IMAGE: none of the images could be read ({skipped}, named above)")
    if skipped:
        print(f"{PROG} predict: {skipped} of {len(images)} images skipped", file=sys.stderr)
    return 0


PREDICT_BS = 64
"""Images `predict` runs through the model at once (one forward pass per batch: a CPU runs a
batch of 64 small images many times faster than 64 passes of one)."""


def _print_predictions(
    learn: Any,
    batch: list[tuple[str, torch.Tensor]],
    width: int,
    table: Any = None,
    every: bool = False,
) -> None:
    """One line per file: its name, the predicted class and its probability (a row of the
    csv writer `table` when given, else aligned columns), then with `every` each class's
    probability (6 decimals)."""
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=[(torch.cat([x for _, x in batch]), None)])
    classes = learn.data.classes
    names = max(map(display_width, classes))
    for (img, _), row in zip(batch, probs, strict=True):
        name = classes[int(row.argmax())]
        each = [f"{float(p):.6f}" for p in row] if every else []
        if table is not None:
            table.writerow([img, name, f"{float(row.max()):.4f}", *each])
        else:
            pairs = "".join(f"  {c}={p}" for c, p in zip(classes, each, strict=False))
            print(f"{_padded(img, width)}  {_padded(name, names)}  {float(row.max()):.4f}{pairs}")


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal: 2 for a wide character (CJK: East Asian width W or
    F), 0 for a combining mark, 1 for any other."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _padded(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    matplotlib.use("Agg")  # plots are written as PNG files, never shown
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped too
    parser = build_parser()
    with warnings.catch_warnings():  # the previous showwarning comes back after the command
        warnings.showwarning = _show_warning
        return _run(parser, argv)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning as a command line prints it: no source line (there is no user's code to
    point at: a library warning named '<frozen runpy>:88')."""
    print(f"{PROG}: warning: {message}", file=sys.stderr if file is None else file)


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the sub-command (argparse names only the program)
            raise UsageError(
                f"{PROG} {args.command}: error: unrecognized arguments: {' '.join(extra)} "
                f"(see {PROG} {args.command} --help)"
            )
        args.argv = list(sys.argv[1:] if argv is None else argv)
        command = {"train": _cmd_train, "predict": _cmd_predict, "lr-find": _cmd_lr_find}
        return command[args.command](args)
    except UsageError as e:
        msg = str(e)
        if not msg.startswith(PROG):
            msg = f"{PROG} {args.command}: error: {msg}"
        if launch_rank() == 0:  # under torchrun every process finds it: said once
            print(msg, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout's reader closed it: stop quietly, as other commands do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the flush at exit would raise it again
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
