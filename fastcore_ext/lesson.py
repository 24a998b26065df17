"""The lesson-1 pipeline as a library function: `run_lesson(LessonConfig(...))`.

    fit_one_cycle(epochs, 3e-3) (body frozen when pretrained), unfreeze, lr_find,
    fit_one_cycle(slice(lr_find's valley, 3e-4)), interpretation, export

as the lesson notes' "basic approach" (`learn.fit_one_cycle(4, 3e-3)`, `learn.unfreeze()`,
`learn.fit_one_cycle(4, slice(xxx, 3e-4))`, xxx from the learning-rate finder). `lr=None`
takes stage 1's rate from an lr_find before it as well (its valley).

`run_lesson` builds the data (the embedded demo dataset, a folder of class folders, or a
flat folder labelled by a regular expression on the file names as
`ImageDataBunch.from_name_re`), the learner, runs the stages and writes into `config.out`:

    export.pkl      the exported model (`load_learner`, `fastcore-ext predict`)
    metrics.csv     one row per epoch of each stage (CSVLogger; epochs count from 0 again in
                    stage 2)
    metrics.jsonl   the same rows as JSON objects, with the stage and learning rates
    plots/*.png     lr_find and losses and schedule of each stage, top losses, confusion matrix
    summary.json    `LessonSummary.to_json()`: final error rate, times, learning rates, most
                    confused pairs, unreadable images skipped or dropped
    models/         checkpoints after Ctrl-C: interrupted.pth (the weights at that moment)
                    and resume.pth (the end of the last epoch completed, for `resume=True`)
    previous/       what the run before into the same folder left there (the same names)
    interrupted/    the same, for a run that did not finish beside a finished one in previous/

It prints what it decides and does (the pretrained choice, the data, each stage's learning
rate, the epoch tables) and returns a `LessonSummary`. A Ctrl-C (KeyboardInterrupt, or
SIGTERM through the command line) during the stages saves and exports what was trained so
far and returns a summary with `interrupted=True`; it also writes models/resume.pth, the
state at the end of the last epoch completed (kept in memory after each epoch: copies on the
CPU, the model and its optimizer's moments), with the stage, its learning rates and the
configuration. A run with `resume=True` and the same configuration (`workers` may differ)
goes on from there in the same folder: it loads that state (weights, optimizer, epoch counts,
random generators) and continues the interrupted stage with `fit_one_cycle(...,
start_epoch=k)`, so in one process it ends with the weights and error rate of a run never
interrupted (the plots of a resumed stage show the epochs after the resume only).
`find_lr(config)` runs only the data, the learner and one lr_find.

A configuration that cannot run raises `LessonError`, whose `field` names the LessonConfig
field at fault (the command line maps it to its option). In a run launched by torchrun only
rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from torchvision import models

from fastcore_ext.augment import get_transforms
from fastcore_ext.callback import Callback, CSVLogger
from fastcore_ext.checkpoint import atomic_save, load_file
from fastcore_ext.compiling import CompileError
from fastcore_ext.data import (
    BadImageError,
    ImageDataBunch,
    ItemSplit,
    demo_dataset,
    get_image_files,
    imagenet_stats,
    items_from_folder,
    items_from_name_re,
    items_from_table,
    read_labels_csv,
)
from fastcore_ext.data.items import loose_images
from fastcore_ext.export import DEFAULT_EXPORT, OLD_EXPORT
from fastcore_ext.files import atomic_write, remove_stale_temporaries
from fastcore_ext.interpret import ClassificationInterpretation
from fastcore_ext.learner import Learner
from fastcore_ext.metrics import error_rate
from fastcore_ext.model_builder import (
    BodyCutError,
    PretrainedWeightsError,
    pretrained_weights_cached,
    resolve_arch,
)
from fastcore_ext.plots import autosave, save_png
from fastcore_ext.ranks import all_gather_objects, launch_rank
from fastcore_ext.schedule import Suggestions
from fastcore_ext.vision import create_cnn

__all__ = [
    "BadImages",
    "JSONLinesLogger",
    "LESSON_LR",
    "LessonConfig",
    "LessonError",
    "LessonSummary",
    "LrFindResult",
    "check_config",
    "check_image_folder",
    "find_lr",
    "run_lesson",
    "signal_handled",
]


class LessonError(ValueError):
    """A lesson configuration that cannot run. `field`: the LessonConfig field at fault
    ('path', 'label_re', 'labels_csv', 'arch', 'bs', 'valid_pct', 'pretrained', 'precision',
    'compile', 'out', 'resume')."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


LESSON_LR = 3e-3
"""Stage 1's max learning rate by default: the lesson notes' ("3e-3 is a good default
learning rate", `learn.fit_one_cycle(4, 3e-3)`). Not lr_find's valley: on a from-scratch
curve, flat within its noise up to about 5e-2, the valley lands where the noise puts it
(1e-3 to 3e-3 on the demo over seeds), and on the demo's main job 1e-3 ends at error 0.329,
3e-3 at 0.16 (README)."""


@dataclass
class LessonConfig:
    """What `run_lesson` / `find_lr` run.

    path: an image folder (path/train/<class>/* and path/valid/<class>/*, or path/<class>/*
    split by valid_pct, or with label_re any images under path); None: the embedded demo
    dataset. label_re: label each image by the first group of this regular expression
    searched in its path (fastai's from_name_re, e.g. r'/([^/]+)_\\d+.jpg$' for Pets' file
    names), split by valid_pct. labels_csv: a CSV file of `name,label` rows (fastai's
    from_csv, MNIST_SAMPLE's labels.csv: names relative to path), split by valid_pct; a
    relative file that does not exist from the working directory is looked up under path.
    precision: 'auto', 'fp32', 'bf16' or 'fp16' (Learner(precision=...)); None: the
    library's default ('auto': bf16 + channels-last where the hardware runs bf16 natively).
    compile: run the model's forward through torch.compile (Learner.compile; off by default).
    lr: max learning rate of stage 1 (default LESSON_LR, 3e-3); None: lr_find's valley.
    Stage 2 runs slice(lr_find's valley after unfreeze, lr / 10).
    pretrained: None uses the ImageNet weights only when torchvision's cache holds them.
    cache: keep presized images in a memory map. skip_bad: check every image when the data
    are built and leave the unreadable ones out (else they are skipped when training meets
    them; both are counted in the summary). workers: loader processes (None: the data
    layer's choice). out: the run's folder. resume: go on from out/models/resume.pth, which
    an interrupted run with the same configuration wrote."""

    path: Path | None = None
    label_re: str | None = None
    labels_csv: Path | None = None
    arch: str = "resnet34"
    size: int = 224
    bs: int = 64
    epochs: int = 4
    unfreeze_epochs: int = 2
    lr: float | None = LESSON_LR
    lr_find_iters: int = 100
    pretrained: bool | None = None
    precision: str | None = None
    compile: bool = False
    cache: bool = False
    skip_bad: bool = False
    workers: int | None = None
    seed: int = 0
    valid_pct: float = 0.2
    out: Path = Path("fastcore_ext_run")
    resume: bool = False


BAD_FILES_LISTED = 20
"""At most this many file names of each kind in `BadImages` (the counts are complete)."""


@dataclass
class BadImages:
    """Unreadable image files of a run. skipped: met by the loaders (training, validation,
    lr_find, interpretation) and left out of their batches; dropped: left out when the data
    were built (skip_bad). *_files: the first `BAD_FILES_LISTED` of each, sorted, relative to
    the data folder (absolute when outside it)."""

    skipped: int = 0
    dropped: int = 0
    skipped_files: list[str] = field(default_factory=list)
    dropped_files: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, data: ImageDataBunch) -> BadImages:
        """The unreadable files `data` met so far and those its skip_bad dropped; under
        several processes, those every process's shards met (each process must call it)."""

        def names(paths: list[Path]) -> list[str]:
            rel = []
            for p in sorted(set(paths))[:BAD_FILES_LISTED]:
                try:
                    rel.append(str(Path(p).relative_to(data.path)))
                except ValueError:
                    rel.append(str(p))
            return rel

        skipped = [p for met in all_gather_objects(data.bad_items) for p in met]
        dropped = data.dropped_items  # dropped when the data were built: alike in every process
        return cls(len(set(skipped)), len(dropped), names(skipped), names(dropped))

    def __bool__(self) -> bool:
        return bool(self.skipped or self.dropped)

    def to_json(self) -> dict[str, Any]:
        """The `bad_images` object of summary.json."""
        return {
            "skipped": self.skipped,
            "dropped": self.dropped,
            "skipped_files": self.skipped_files,
            "dropped_files": self.dropped_files,
        }


@dataclass
class LessonSummary:
    """What a lesson run did. `to_json()` is summary.json. learning_rates: {'stage1': lr,
    'stage2': [lo, hi]}; time_s: {'total', 'data', 'lr_find', 'fit', 'interpretation'}
    (those that ran in this process); most_confused: (actual, predicted, count) of pairs
    seen twice or more; files: the files under out, relative to it; saved: the checkpoint
    written on Ctrl-C; bad_images: the unreadable images skipped during the run or dropped
    by skip_bad; resume_point: where `resume=True` would go on from ('the end of stage 1's
    epoch 2 of 4'), None when nothing can be resumed; resumed_from: where this run went on
    from, None for a run from the start."""

    data: str | None
    arch: str
    size: int
    bs: int
    pretrained: bool | None
    precision: str | None
    epochs: int
    unfreeze_epochs: int
    epochs_done: int
    learning_rates: dict[str, Any]
    final_error_rate: float | None
    final_valid_loss: float | None
    most_confused: list[tuple[str, str, int]]
    time_s: dict[str, float]
    interrupted: bool
    files: list[str]
    out: Path
    saved: Path | None = None
    bad_images: BadImages = field(default_factory=BadImages)
    resume_point: str | None = None
    resumed_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object of summary.json."""
        return {
            "data": self.data,
            "arch": self.arch,
            "size": self.size,
            "bs": self.bs,
            "pretrained": self.pretrained,
            "precision": self.precision,
            "epochs": self.epochs,
            "unfreeze_epochs": self.unfreeze_epochs,
            "epochs_done": self.epochs_done,
            "learning_rates": self.learning_rates,
            "final_error_rate": self.final_error_rate,
            "final_valid_loss": self.final_valid_loss,
            "most_confused": [list(t) for t in self.most_confused],
            "time_s": self.time_s,
            "interrupted": self.interrupted,
            "files": self.files,
            "bad_images": self.bad_images.to_json(),
            "resume_point": self.resume_point,
            "resumed_from": self.resumed_from,
        }


@dataclass
class LrFindResult:
    """What `find_lr` found: the suggestions and the plot file (None on a rank > 0)."""

    suggestions: Suggestions
    plot: Path | None


@dataclass
class _Run:
    """What a lesson run has produced so far (files, times, numbers)."""

    out: Path
    writes: bool  # only rank 0 of a multi-process run writes files
    start: float = field(default_factory=time.perf_counter)
    times: dict[str, float] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    lrs: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    data: str | None = None
    pretrained: bool | None = None
    error_rate: float | None = None
    valid_loss: float | None = None
    resumed_from: str | None = None
    resume_point: str | None = None

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0

    def save_plot(self, fig: Figure, name: str) -> None:
        if self.writes:
            self.plots.append(save_png(fig, self.out / "plots" / f"{name}.png"))


class JSONLinesLogger(Callback):
    """Appends one JSON object per epoch to `path`: the stage (`stage_of()`), the epoch, the
    epoch table's values, the epoch's time and the learning rates of its last batch (one
    per layer group). writes=False (a rank > 0) writes nothing."""

    order = 60

    def __init__(self, path: Path, stage_of: Any, writes: bool = True) -> None:
        super().__init__()
        self.path, self.stage_of, self.writes = Path(path), stage_of, writes

    def after_epoch(self) -> None:
        rec = self.learn.recorder
        values = dict(zip(rec.metric_names[1:-1], [*rec.values[-1]], strict=True))
        row = {
            "stage": self.stage_of(),
            "epoch": rec.epochs[-1],
            **values,
            "time_s": round(rec.epoch_times[-1], 3),
            "lrs": rec.group_lrs[-1] if rec.group_lrs else None,
        }
        if self.writes:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


# ---- data and learner ------------------------------------------------------------------------
def _check_out(out: Path, config: LessonConfig) -> None:
    """`out` is a folder outside the images (created if missing)."""
    if out.exists() and not out.is_dir():
        raise LessonError("out", f"expected a folder, got {str(out)!r} (an existing file)")
    if config.path is not None:
        images = Path(config.path).expanduser().resolve()
        if out.resolve().is_relative_to(images):
            raise LessonError(
                "out",
                f"expected a folder outside the data set {str(images)!r}, got {str(out)!r}: "
                "the plots and models written there would be read as images by the next run",
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LessonError("out", f"cannot create the folder {str(out)!r}: {e.strerror}") from None
    for folder in (out, out / "models", out / "plots"):  # before any training, any deletion
        if folder.is_dir():
            try:
                fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
                os.close(fd)
                os.unlink(probe)
            except OSError as e:
                raise LessonError(
                    "out", f"cannot write into the folder {str(folder)!r}: {e.strerror}"
                ) from None


RESUME_NAME = "resume"
RESUME = f"models/{RESUME_NAME}.pth"
"""Under out: the state at the end of an interrupted run's last completed epoch (`_Resume`)."""

# What an earlier run into the same folder left that this run would not overwrite; the export
# too (a run that fails before its export must not leave the last one there; export.pth: the
# name before 2026-12-06); in plots/ only the names a run writes (a user's own files stay).
_STALE = (
    DEFAULT_EXPORT,
    OLD_EXPORT,
    "metrics.csv",
    "metrics.jsonl",
    "summary.json",
    "models/interrupted.pth",
    RESUME,
    "plots/lr_find*.png",
    "plots/losses_*.png",
    "plots/schedule_*.png",
    "plots/top_losses.png",
    "plots/confusion_matrix.png",
)


PREVIOUS = "previous"
"""The folder under --out where a run moves what the run before it left (`_keep_previous`)."""
INTERRUPTED = "interrupted"
"""Where it moves them instead when that run did not finish and previous/ holds one that did."""


def _earlier_files(folder: Path) -> list[Path]:
    return [f for pattern in _STALE for f in sorted(folder.glob(pattern)) if f.is_file()]


def _finished(folder: Path) -> bool:
    """Whether the run whose files are in `folder` finished (its summary.json says so)."""
    try:
        return json.loads((folder / "summary.json").read_text()).get("interrupted") is False
    except (OSError, ValueError, AttributeError):
        return False


def _keep_previous(out: Path) -> Path | None:
    """Move what an earlier run left in `out` (the `_STALE` names) into out/previous/, the
    run before that one's files there removed first (only those names: a user's own files
    stay): a rerun must not delete an interrupted run's model before it has saved its own.
    A run that did not finish goes to out/interrupted/ instead when previous/ holds one that
    did: two interrupted reruns deleted a finished run's model. Returns the folder, or None
    when there was nothing to keep."""
    found = _earlier_files(out)
    if not found:
        return None
    dest = out / PREVIOUS
    if not _finished(out) and _finished(dest):
        dest = out / INTERRUPTED
    try:
        for f in _earlier_files(dest):  # the run before the earlier one
            f.unlink(missing_ok=True)
        for f in found:
            target = dest / f.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)
    except OSError as e:
        raise LessonError(
            "out",
            f"cannot keep the earlier run's files in {str(dest)!r}: {e.strerror} ({e.filename})",
        ) from None
    return dest


@contextlib.contextmanager
def signal_handled(signum: int, handler: Any) -> Iterator[None]:
    """Within the block `handler` (what signal.signal takes) answers signal `signum`, the
    previous handler again after it. Outside the main thread nothing is installed: signals do
    not reach that code anyway."""
    try:
        previous = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signum, previous)


@dataclass
class _Source:
    """Where the images come from: `split(seed)` lists and splits them (the data layer's
    ItemSplit), `bunch(**kwargs)` builds the ImageDataBunch of that same split."""

    description: str
    field: str  # the LessonConfig field at fault when listing or labelling fails
    split: Callable[[int], ItemSplit]
    bunch: Callable[..., ImageDataBunch]


def _check_fits(n_items: int, config: LessonConfig) -> None:
    """The split leaves both sets non-empty (fastai's rule: int(valid_pct * n) to valid)."""
    cut = int(config.valid_pct * n_items)
    if cut == 0 or cut == n_items:
        empty = "validation" if cut == 0 else "training"
        raise LessonError(
            "valid_pct",
            f"valid_pct: {config.valid_pct} of {n_items} images leaves an empty {empty} set; "
            "use more images or another valid_pct",
        )


def _label_pattern(label_re: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(label_re)
    except re.error as e:
        raise LessonError(
            "label_re", f"expected a regular expression, got {label_re!r} ({e})"
        ) from None
    if pattern.groups < 1:
        raise LessonError(
            "label_re", f"expected a regular expression with a group (the label), got {label_re!r}"
        )
    return pattern


def _labels_csv(config: LessonConfig, root: Path) -> Path:
    """config.labels_csv as given when it exists, else under root (fastai's csv_labels)."""
    given = Path(config.labels_csv).expanduser()
    csv = given if given.is_file() or given.is_absolute() else root / given
    if not csv.is_file():
        if csv == given:
            problem = f"{csv} {'is a folder' if csv.is_dir() else 'does not exist'}"
        else:
            problem = f"neither {str(given)!r} nor {str(csv)!r} exists"
        raise LessonError("labels_csv", f"expected a CSV file of name,label rows: {problem}")
    return csv.resolve()


def check_image_folder(path: str | os.PathLike) -> Path:
    """`path` (user-expanded) when it is a folder, else a LessonError naming it (the
    command line checks it before it prints anything)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "a file" if root.exists() else "missing"
        raise LessonError("path", f"expected an image folder, got {str(root)!r} ({what})")
    return root


def _source(config: LessonConfig) -> _Source:
    """The images of config.path (class folders, or labelled by config.label_re), or of the
    demo dataset."""
    vp = config.valid_pct
    if config.path is None:
        t0 = time.perf_counter()
        root = demo_dataset()
        desc = f"the demo dataset at {root} (ready in {time.perf_counter() - t0:.1f} s)"
        return _Source(
            desc,
            "path",
            lambda s: items_from_folder(root, seed=s),
            lambda **kw: ImageDataBunch.from_folder(root, **kw),
        )
    root = check_image_folder(config.path)
    try:
        files = get_image_files(root)
    except (ValueError, OSError) as e:
        raise LessonError("path", str(e)) from None
    if not files:
        layouts = "PATH/train/<class>/*, PATH/valid/<class>/* or PATH/<class>/*"
        if config.label_re is not None:
            layouts = "image files named after their class (--label-re)"
        raise LessonError(
            "path", f"no images (.jpg, .png, ...) under {str(root)!r}; expected {layouts}"
        )
    if config.label_re is not None and config.labels_csv is not None:
        raise LessonError(
            "labels_csv",
            f"expected labels from file names (label_re) or from a CSV file (labels_csv), "
            f"got both: {config.label_re!r} and {str(config.labels_csv)!r}",
        )
    if config.label_re is not None:
        pattern = _label_pattern(config.label_re)
        _check_fits(len(files), config)
        return _Source(
            f"{root} (labels from file names by '{config.label_re}', valid_pct {vp})",
            "label_re",
            lambda s: items_from_name_re(root, files, pattern, vp, s),
            lambda **kw: ImageDataBunch.from_name_re(root, files, pattern, vp, **kw),
        )
    if config.labels_csv is not None:
        csv = _labels_csv(config, root)
        _check_fits(len(files), config)
        return _Source(
            f"{root} (labels from {csv}, valid_pct {vp})",
            "labels_csv",
            lambda s: items_from_table(root, *read_labels_csv(csv), valid_pct=vp, seed=s),
            lambda **kw: ImageDataBunch.from_csv(root, csv_labels=csv, valid_pct=vp, **kw),
        )
    if (root / "train").is_dir() and (root / "valid").is_dir():
        ignored = "" if vp == LessonConfig.valid_pct else f"; valid_pct {vp} not used"
        return _Source(
            f"{root} (train/ and valid/{ignored})",
            "path",
            lambda s: items_from_folder(root, seed=s),
            lambda **kw: ImageDataBunch.from_folder(root, **kw),
        )
    loose = loose_images(files, root)
    if loose:  # the layout's mistake first: a split of these few images is not the problem
        raise LessonError("path", f"{loose} (or name the class in the file name: --label-re)")
    _check_fits(len(files), config)
    return _Source(
        f"{root} (valid_pct {vp})",
        "path",
        lambda s: items_from_folder(root, valid_pct=vp, seed=s),
        lambda **kw: ImageDataBunch.from_folder(root, valid_pct=vp, **kw),
    )


def _split_items(config: LessonConfig, nproc: int = 1) -> tuple[_Source, ItemSplit]:
    """The data source of `config` and its split, checked: a LessonError when the items
    cannot be listed or split, or when bs is larger than each of `nproc` processes' share of
    the training set (an epoch would have no batch)."""
    source = _source(config)
    try:
        items = source.split(config.seed)
    except (ValueError, TypeError) as e:
        raise LessonError(source.field, str(e).splitlines()[0]) from None
    n = len(items.train_items)
    if n // nproc < config.bs:
        share = f"the training set ({n} items)" if nproc == 1 else (
            f"each of the {nproc} processes' share of the training set ({n // nproc} of {n} "
            "items)"
        )  # fmt: skip
        raise LessonError(
            "bs",
            f"{config.bs} is larger than {share}, so an epoch would have no batch (the last "
            "partial batch is dropped); pass a smaller bs",
        )
    return source, items


def check_config(config: LessonConfig, nproc: int = 1) -> None:
    """What `run_lesson` would refuse before training, checked without building anything
    (the output folder and what it holds to resume, the data's items and split, bs against
    each process's share, the architecture): `fastcore-ext train --nproc N` runs it once
    before starting N processes, so a usage error is one line, not one per process and a
    torchrun traceback."""
    out = Path(config.out).expanduser()
    _check_out(out, config)
    if config.resume:
        _Resume.read(out, config)
    _split_items(config, nproc)
    choose_pretrained(config)


def build_data(config: LessonConfig) -> tuple[ImageDataBunch, str]:
    """The bunch of config.path (or the demo dataset), normalized with ImageNet's
    statistics, and a line describing it."""
    source, _ = _split_items(config)
    try:
        data = source.bunch(
            ds_tfms=get_transforms(),
            size=config.size,
            bs=config.bs,
            num_workers=config.workers,
            cache=config.cache,
            skip_bad=config.skip_bad,
            seed=config.seed,
        ).normalize(imagenet_stats)
    except (BadImageError, ValueError, TypeError) as e:
        raise LessonError("path", str(e).splitlines()[0]) from None
    n_train, n_valid = len(data.train_ds), len(data.valid_ds)
    desc = f"data: {source.description}: {data.c} classes, {n_train} train / {n_valid} valid images"
    return data, desc


def choose_pretrained(config: LessonConfig) -> tuple[Any, bool, str]:
    """(torchvision builder, pretrained, a sentence saying why) for config.arch."""
    try:
        builder = resolve_arch(config.arch)
    except (ValueError, TypeError):
        known = ", ".join(n for n in models.list_models(module=models) if n.startswith("resnet"))
        raise LessonError(
            "arch",
            f"expected a torchvision classification model name (e.g. {known}), got {config.arch!r}",
        ) from None
    cached = pretrained_weights_cached(builder)
    if config.pretrained is False:
        return builder, False, "pretrained: no (--no-pretrained): training from scratch"
    if cached is not None:
        return builder, True, f"pretrained: yes (ImageNet weights from {cached})"
    if config.pretrained is None:
        why = (
            f"pretrained: no ({config.arch}'s ImageNet weights are not in torchvision's cache; "
            f"pass --pretrained to download them): training from scratch"
        )
        return builder, False, why
    return builder, True, f"pretrained: yes (downloading {config.arch}'s ImageNet weights)"


def build_learner(config: LessonConfig, data: ImageDataBunch) -> Learner:
    """create_cnn on `data` with error_rate, the learner's path config.out; prints the
    pretrained decision."""
    builder, pretrained, why = choose_pretrained(config)
    if config.precision == "fp16" and data.device.type != "cuda":
        raise LessonError(
            "precision",
            f"expected auto, fp32 or bf16 on {data.device.type}, got 'fp16' (CUDA only)",
        )
    print(why)
    try:
        learn = create_cnn(
            data,
            builder,
            pretrained=pretrained,
            metrics=error_rate,
            path=Path(config.out).expanduser(),
            seed=config.seed,
            precision=config.precision,
        )
    except PretrainedWeightsError as e:
        raise LessonError("pretrained", str(e).splitlines()[0]) from None
    except BodyCutError as e:  # a vision transformer: no CNN body to cut at its pooling layer
        raise LessonError(
            "arch",
            f"expected a CNN that create_cnn can cut at its pooling layer (resnet, densenet, "
            f"vgg, mobilenet, efficientnet, convnext, ...), got {config.arch!r}: "
            f"{e.reason.splitlines()[0]}",
        ) from None
    if config.compile:
        try:
            learn.compile()
        except CompileError as e:
            raise LessonError("compile", str(e)) from None
    return learn


# ---- resuming an interrupted run -------------------------------------------------------------
# Fields of LessonConfig that a resumed run may change: they do not change what is trained.
_RESUME_FREE = ("workers", "out", "resume")


def _config_record(config: LessonConfig) -> dict[str, Any]:
    """The fields of `config` a resumed run must repeat, as JSON values (paths absolute)."""
    record = {}
    for key, value in asdict(config).items():
        if key not in _RESUME_FREE:
            is_path = isinstance(value, os.PathLike)
            record[key] = str(Path(value).expanduser().resolve()) if is_path else value
    return record


@dataclass
class _Resume:
    """Where an interrupted run can go on from: the end of its `epochs` epochs of `stage`
    ('stage1' or 'stage2'), the run's learning rates so far, its configuration
    (`_config_record`) and the learner's checkpoint then (`Learner.checkpoint()`; empty in
    one `read` from the file, whose weights `learn.load` takes: hundreds of MB not kept for
    the whole run)."""

    stage: str
    epochs: int
    lrs: dict[str, Any]
    config: dict[str, Any]
    state: dict[str, Any]

    def point(self, config: LessonConfig) -> str:
        """Where it goes on from, counting epochs from 0 as the epoch tables do."""
        n = config.epochs if self.stage == "stage1" else config.unfreeze_epochs
        of = "its only one" if n == 1 else f"of 0..{n - 1}"
        return f"the end of stage {self.stage[-1]}'s epoch {self.epochs - 1} ({of})"

    def rows_before(self, config: LessonConfig) -> int:
        """The epoch rows metrics.csv / metrics.jsonl held at this point (stage 1's epochs,
        then stage 2's: lr_find writes none)."""
        return self.epochs + (config.epochs if self.stage == "stage2" else 0)

    def trim_logs(self, out: Path, config: LessonConfig) -> int:
        """Leave metrics.csv and metrics.jsonl with this point's rows: a Ctrl-C while the
        epoch after it was being saved had logged that epoch, which the resumed run trains
        and logs again. Returns the number of epoch rows dropped (of metrics.csv)."""
        keep, dropped = self.rows_before(config), 0
        for name, header in (("metrics.csv", 1), ("metrics.jsonl", 0)):
            file = out / name
            if file.is_file():
                lines = file.read_text().splitlines(keepends=True)
                if len(lines) > header + keep:
                    if name == "metrics.csv":
                        dropped = len(lines) - header - keep
                    with atomic_write(file) as f:
                        f.write("".join(lines[: header + keep]).encode())
        return dropped

    def save(self, file: Path) -> Path:
        """Write the checkpoint with the rest under its "lesson" key (what `read` takes)."""
        lesson = {"stage": self.stage, "epochs": self.epochs, "lrs": self.lrs}
        return atomic_save({**self.state, "lesson": {**lesson, "config": self.config}}, file)

    @classmethod
    def read(cls, out: Path, config: LessonConfig) -> _Resume:
        """The resume point out/RESUME holds; a LessonError ('resume') when there is none,
        the file cannot be read, or its run had another configuration."""
        file = out / RESUME
        if not file.is_file():
            killed = (out / "metrics.csv").is_file() and not (out / "summary.json").is_file()
            why = (
                "its run was stopped outright (metrics.csv but no summary.json: SIGKILL, out "
                "of memory, a power loss), which saves nothing to resume"
                if killed
                else "an interrupted run writes it once it has completed an epoch; a run that "
                "finished removes it"
            )
            raise LessonError(
                "resume", f"nothing to resume in {str(out)!r}: no {RESUME} there ({why})"
            )
        try:
            lesson = load_file(file)["lesson"]  # the weights: learn.load reads them
            resume = cls(lesson["stage"], lesson["epochs"], lesson["lrs"], lesson["config"], {})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise LessonError("resume", f"cannot resume from {str(file)!r}: {e}") from None
        now = _config_record(config)
        changed = [k for k in now if resume.config.get(k) != now[k]]
        if changed:

            def shown(k: str, v: Any) -> str:
                return "auto" if k == "lr" and v is None else repr(v)  # --lr auto

            then = ", ".join(f"{k} {shown(k, resume.config.get(k))}" for k in changed)
            given = ", ".join(f"{k} {shown(k, now[k])}" for k in changed)
            raise LessonError(
                "resume",
                f"the interrupted run in {str(out)!r} had {then}; this one has {given}: "
                "resume with the same options (only the workers may differ), or run without "
                "resume to start afresh",
            )
        return resume


class _EpochSnapshot(Callback):
    """Keeps the learner's checkpoint at the end of each epoch of a stage's fit (copies on
    the CPU: the model and its optimizer's moments, about three times the weights with Adam)
    as a `_Resume` for the run's Ctrl-C path to write."""

    order = 70  # after the Recorder and the loggers: the epoch is complete

    def __init__(self, run: _Run, config: LessonConfig) -> None:
        super().__init__()
        self.run, self.record = run, _config_record(config)
        self.last: _Resume | None = None

    def after_epoch(self) -> None:
        learn = self.learn
        stage = str(self.run.stage)
        self.last = _Resume(
            stage, learn.epochs_done, dict(self.run.lrs), self.record, learn.checkpoint()
        )


# ---- the stages ------------------------------------------------------------------------------
def _lr_find(learn: Learner, run: _Run, iters: int, name: str) -> Suggestions:
    print(f"Running lr_find: up to {iters} training steps at growing learning rates ...")
    with run.timed("lr_find"):
        sugg = learn.lr_find(num_it=iters, show_plot=False)  # plotted into the run's plots
    run.save_plot(learn.recorder.plot(), name)
    print(
        f"lr_find ({name}): valley {sugg.valley:.2e}, steep {sugg.steep:.2e}, "
        f"minimum {sugg.minimum:.2e}"
    )
    return sugg


def _fit_stage(
    learn: Learner,
    run: _Run,
    loggers: list[Callback],
    stage: str,
    epochs: int,
    max_lr: Any,
    start_epoch: int = 0,
) -> None:
    run.stage = stage
    if start_epoch < epochs:
        with run.timed("fit"):
            learn.fit_one_cycle(epochs, max_lr, cbs=loggers, start_epoch=start_epoch)
        run.save_plot(learn.recorder.plot_losses(), f"losses_{stage}")
        run.save_plot(learn.recorder.plot_lr(show_moms=True), f"schedule_{stage}")
    _record_last_epoch(learn, run)


def _record_last_epoch(learn: Learner, run: _Run) -> None:
    """The run's error rate and validation loss from the learner's last completed epoch; an
    epoch of an lr_find sweep (no validation: None) is none (a Ctrl-C in lr_find after its
    first sweep epoch left the summary's error rate None)."""
    rec = learn.recorder
    if rec.metrics and rec.metrics[-1] and rec.metrics[-1][0] is not None:
        run.error_rate = rec.metrics[-1][0]
        run.valid_loss = rec.valid_losses[-1]


def _fmt_lr(lr: Any) -> str:
    if isinstance(lr, slice):
        return f"slice({lr.start:.1e}, {lr.stop:.1e})"
    return f"{lr:.1e}"


def _train_stages(
    config: LessonConfig,
    learn: Learner,
    run: _Run,
    loggers: list[Callback],
    resume: _Resume | None = None,
) -> None:
    """(lr_find with lr=None,) fit_one_cycle, unfreeze, lr_find, fit_one_cycle(slice); from
    `resume`'s point when given (its learning rates, its stage from its next epoch)."""
    start1 = start2 = 0
    if resume is not None:
        run.lrs = dict(resume.lrs)
        if resume.stage == "stage1":
            learn.load(RESUME_NAME)
            start1 = resume.epochs
        else:
            start1 = config.epochs
    if "stage1" in run.lrs:
        lr1, why = run.lrs["stage1"], "as the interrupted run"
    elif config.lr is None:
        lr1 = _lr_find(learn, run, config.lr_find_iters, "lr_find_stage1").valley
        why = "lr_find's valley"
    else:
        lr1 = config.lr
        why = "the lesson's default" if config.lr == LESSON_LR else "--lr"
    run.lrs["stage1"] = lr1
    frozen = "body frozen, " if run.pretrained else ""
    going_on = f", from epoch {start1}" if 0 < start1 < config.epochs else ""
    if start1 < config.epochs:
        print(
            f"\nStage 1: fit_one_cycle({config.epochs}, max_lr={_fmt_lr(lr1)}) "
            f"({frozen}{why}{going_on})"
        )
    _fit_stage(learn, run, loggers, "stage1", config.epochs, lr1, start1)
    if config.unfreeze_epochs == 0:
        return
    learn.unfreeze()
    if resume is not None and resume.stage == "stage2":
        learn.load(RESUME_NAME)  # after unfreeze, which clears the optimizer's moments
        start2 = resume.epochs
        lo, hi = run.lrs["stage2"]
        why, going_on = "as the interrupted run", f", from epoch {start2}"
    else:
        hi = lr1 / 10
        valley = _lr_find(learn, run, config.lr_find_iters, "lr_find_stage2").valley
        going_on = ""
        if valley < hi:
            lo, why = valley, "from lr_find's valley after unfreeze to stage 1's lr / 10"
        else:
            lo, why = (
                hi / 10,
                (
                    f"lr_find's valley after unfreeze, {valley:.1e}, is not below stage 1's lr / "
                    "10, so the slice runs from a tenth of that to it"
                ),
            )
    lr2 = slice(lo, hi)
    run.lrs["stage2"] = [lo, hi]
    if start2 < config.unfreeze_epochs:
        print(
            f"\nStage 2: unfreeze, fit_one_cycle({config.unfreeze_epochs}, "
            f"max_lr={_fmt_lr(lr2)}) ({why}{going_on})"
        )
    _fit_stage(learn, run, loggers, "stage2", config.unfreeze_epochs, lr2, start2)


def _interpret(learn: Learner, run: _Run) -> list[tuple[str, str, int]]:
    with run.timed("interpretation"):
        interp = ClassificationInterpretation.from_learner(learn)
        run.save_plot(interp.plot_top_losses(9), "top_losses")
        run.save_plot(interp.plot_confusion_matrix(), "confusion_matrix")
        confused = interp.most_confused(min_val=2)
    run.error_rate = interp.error_rate()
    return confused


def _summary(
    run: _Run,
    config: LessonConfig,
    data: ImageDataBunch,
    learn: Learner,
    confused: list[tuple[str, str, int]],
    interrupted: bool,
    saved: Path | None,
) -> LessonSummary:
    """The summary of `run`, written to out/summary.json (by the process that writes)."""
    total = time.perf_counter() - run.start
    summary = LessonSummary(
        data=run.data,
        arch=config.arch,
        size=config.size,
        bs=config.bs,
        pretrained=run.pretrained,
        precision=_precision_run(learn),
        epochs=config.epochs,
        unfreeze_epochs=config.unfreeze_epochs,
        epochs_done=learn.epochs_trained,
        learning_rates=run.lrs,
        final_error_rate=run.error_rate,
        final_valid_loss=run.valid_loss,
        most_confused=confused,
        time_s={"total": round(total, 1), **{k: round(v, 1) for k, v in run.times.items()}},
        interrupted=interrupted,
        files=sorted(str(p.relative_to(run.out)) for p in run.out.rglob("*") if p.is_file()),
        out=run.out,
        saved=saved,
        bad_images=BadImages.of(data),
        resume_point=run.resume_point,
        resumed_from=run.resumed_from,
    )
    if run.writes:
        (run.out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def _precision_run(learn: Learner) -> str:
    """The precision the epochs trained in: 'bf16 (its first epoch fp32)' under precision
    'auto' from scratch; 'fp32' when every epoch was one of those float32 epochs."""
    mp, done = learn.mixed_precision, learn.epochs_trained
    if mp is None or not mp.fp32_epochs:
        return learn.precision
    if done <= mp.fp32_epochs:
        return "fp32"
    n = mp.fp32_epochs
    return f"{learn.precision} (first {n} epoch{'' if n == 1 else 's'} fp32)"


def run_lesson(config: LessonConfig) -> LessonSummary:
    """Run the lesson (see the module docstring) and return its summary; LessonError for a
    configuration that cannot run."""
    out = Path(config.out).expanduser()
    _check_out(out, config)
    resume = _Resume.read(out, config) if config.resume else None
    run = _Run(out, writes=launch_rank() == 0)
    with run.timed("data"):
        data, desc = build_data(config)
    print(desc)
    run.data = desc.removeprefix("data: ")
    learn = build_learner(config, data)  # its errors (--arch, --precision) leave out as it was
    if resume is not None:
        run.resumed_from = resume.point(config)
        print(f"Resuming from {run.resumed_from} ({out / RESUME})")
        if run.writes and (dropped := resume.trim_logs(out, config)):
            print(
                f"  the interrupted run had logged {dropped} epoch row(s) after that point, "
                f"ended as the interrupt came and before their state was kept: trained again"
            )
    elif run.writes and (previous := _keep_previous(out)) is not None:
        kept = (
            f" ({PREVIOUS}/ keeps the last run that finished)"
            if previous.name == INTERRUPTED
            else ""
        )
        print(
            f"the earlier run's files (export, models, metrics, plots) moved to {previous}/{kept}"
        )
    if run.writes:
        for folder in (out, out / "models"):  # a SIGKILL during a save left them
            remove_stale_temporaries(folder)
    loggers = [
        CSVLogger("metrics.csv", append=True),
        JSONLinesLogger(out / "metrics.jsonl", lambda: run.stage, run.writes),
    ]
    snapshot = _EpochSnapshot(run, config)
    run.pretrained = any(not p.requires_grad for p in learn.model.parameters())
    confused: list[tuple[str, str, int]] = []
    try:
        with autosave(False):  # each figure is saved under its own name by run.save_plot
            _train_stages(config, learn, run, [*loggers, snapshot], resume)
            confused = _interpret(learn, run)
    except KeyboardInterrupt:
        _record_last_epoch(learn, run)  # of the last epoch completed before the Ctrl-C
        with saving():
            if run.writes:
                print("Saving the model (a second Ctrl-C waits for it) ...", flush=True)
            saved = learn.save("interrupted")
            learn.export()
            last = snapshot.last or resume  # none completed since: the point resumed from
            if snapshot.last is not None:
                snapshot.last.save(out / RESUME)
            run.resume_point = None if last is None else last.point(config)
            return _summary(run, config, data, learn, confused, interrupted=True, saved=saved)
    with saving():  # the trained model: a Ctrl-C now would lose the whole run
        learn.export()
        if run.writes:  # finished: nothing to resume, and no model of an interruption
            for name in (RESUME, "models/interrupted.pth"):
                (out / name).unlink(missing_ok=True)
    return _summary(run, config, data, learn, confused, interrupted=False, saved=None)


@contextlib.contextmanager
def saving() -> Iterator[None]:
    """Within the block Ctrl-C and SIGTERM are ignored: a save cut short leaves the previous
    file (every file is written whole or not at all), but this run's model would be lost."""
    with (
        signal_handled(signal.SIGINT, signal.SIG_IGN),
        signal_handled(signal.SIGTERM, signal.SIG_IGN),
    ):
        yield


def find_lr(config: LessonConfig) -> LrFindResult:
    """Build the data and learner as run_lesson does, run lr_find (config.lr_find_iters
    iterations), save its plot as out/plots/lr_find.png and print the suggestions."""
    out = Path(config.out).expanduser()
    _check_out(out, config)
    run = _Run(out, writes=launch_rank() == 0)
    data, desc = build_data(config)
    print(desc)
    learn = build_learner(config, data)
    with autosave(False):
        sugg = _lr_find(learn, run, config.lr_find_iters, "lr_find")
    return LrFindResult(sugg, run.plots[-1] if run.plots else None)
