"""Callbacks that watch a fit: stop on a NaN loss, stop early, keep the best model, log to CSV.

- `TerminateOnNaN` (attached to every Learner): a training loss that is NaN or infinite
  ends the fit before that batch's backward pass and optimizer step, so the parameters are
  the last finite ones; a warning names the epoch and the batch.
- `EarlyStoppingCallback`: ends the fit when the monitored value stopped improving.
- `SaveModelCallback`: saves the model (atomically, `Learner.save`) whenever the monitored
  value improves, or every epoch; loads the best one back at the end of the fit.
- `ReduceLROnPlateau`: divides the learning rates by `factor` when the monitored value
  stopped improving, on what the optimizer uses (its one-cycle schedule when one is set).
- `CSVLogger`: one CSV row per epoch (the table the progress output prints), flushed and
  fsync'ed after each epoch, so a crash loses at most the epoch in progress.

Monitored values are the Recorder's columns: 'train_loss', 'valid_loss' or a metric's name
(e.g. 'error_rate'). As in fastai, a name containing 'loss' or 'error' is better when lower,
anything else when higher, unless `comp` (or v1's `mode`) says otherwise.

Both fastai spellings are taken. v2's: `SaveModelCallback(monitor='accuracy', fname='best')`,
the monitored column first, for `cbs=`. v1's: the learner first and the rest by keyword,
`SaveModelCallback(learn, every='improvement', monitor='accuracy', mode='auto',
name='bestmodel')`, `EarlyStoppingCallback(learn, monitor='valid_loss', min_delta=0.01,
patience=3)`, `CSVLogger(learn, filename='history')`, for fit's `callbacks=`, or without
the learner through `callback_fns=[partial(SaveModelCallback, monitor='accuracy')]` (the
Learner calls each with itself). A callback made with a learner belongs to it.
"""

from __future__ import annotations

import csv
import math
import operator
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch

from fastcore_ext import ranks
from fastcore_ext.callback.core import Callback, CancelFitException
from fastcore_ext.callback.lr_finder import LRFinder
from fastcore_ext.callback.progress import format_time
from fastcore_ext.checks import int_or_none, real_or_none
from fastcore_ext.data.items import shown_names
from fastcore_ext.torch_core import non_finite_tensors
from fastcore_ext.warn import warn_user

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = [
    "CSVLogger",
    "EarlyStoppingCallback",
    "ReduceLROnPlateau",
    "SaveModelCallback",
    "TerminateOnNaN",
    "TerminateOnNaNCallback",
    "TrackerCallback",
]

_LOWER_IS_BETTER = (np.less, operator.lt)
MODES = ("auto", "min", "max")  # fastai v1's `mode`: auto follows the column's name


def _is_learner(obj: object) -> bool:
    """True for a Learner (what fastai v1's callbacks take first): an object with a recorder
    and fit_one_cycle. (The callbacks sit below the Learner's module, so it is not imported.)"""
    return hasattr(obj, "recorder") and hasattr(obj, "fit_one_cycle")


def _first_argument(
    cls: str, first: Any, monitor: str | None, comp: Any
) -> tuple[Learner | None, str]:
    """(the learner of fastai v1's form or None, the monitored column) from a tracker's first
    positional argument `first` (the learner, v1; the column, v2; or None) and `monitor=`."""
    learn = None
    if _is_learner(first):
        learn, first = first, None
        if comp is not None and not callable(comp):
            raise TypeError(
                f"{cls}(learn, ...): with the learner first (fastai v1's form) give the other "
                f"arguments by keyword (monitor=, mode=, ...); got {comp!r} as the second "
                f"positional argument"
            )
    elif first is not None and not isinstance(first, str):
        raise TypeError(
            f"{cls}: the first argument should be the monitored column (a str, fastai v2) or "
            f"the learner (fastai v1), got {type(first).__name__}"
        )
    if first is not None and monitor is not None:
        raise TypeError(
            f"{cls}: the monitored column was given twice, {first!r} and monitor={monitor!r}"
        )
    if monitor is not None and not isinstance(monitor, str):
        raise TypeError(f"monitor should be a column name (str), got {type(monitor).__name__}")
    return learn, first if first is not None else (monitor or "valid_loss")


def _comp_of_mode(mode: str | None, comp: Any) -> Any:
    """`comp` from fastai v1's mode: 'min' np.less, 'max' np.greater, 'auto' (or None) the
    default of the column's name (comp=None)."""
    if mode is None:
        return comp
    if mode not in MODES:
        raise ValueError(f"mode should be one of {MODES}, got {mode!r}")
    if comp is not None:
        raise TypeError(f"give comp (fastai v2) or mode (v1), not both; got {comp!r} and {mode!r}")
    return {"min": np.less, "max": np.greater}.get(mode)


def _say(learn: object, message: str) -> None:
    """Print a line where the learner's progress table goes (stdout by default); only rank 0
    of a distributed fit prints."""
    if not ranks.is_main_process():
        return
    stream = getattr(getattr(learn, "progress", None), "stream", None)
    print(message, file=stream if stream is not None else sys.stdout, flush=True)


class TerminateOnNaN(Callback):
    """Ends the fit when a training loss is NaN or infinite, before that batch's backward
    pass and optimizer step: the parameters stay those after the last finite step.
    (BatchNorm running statistics did see the bad batch's forward pass.)

    Checking reads the loss on the host once per training batch (free on the CPU; on a GPU
    it waits for the forward pass of that batch). `stopped_at` is (epoch, batch) of the bad
    batch, or None. A warning (RuntimeWarning) says where the fit stopped.
    """

    order = -9  # before everything else that looks at the loss
    run_valid = False

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None

    def before_fit(self) -> None:
        self.stopped_at = None

    def after_loss(self) -> None:
        loss = self.learn.loss
        if bool(torch.isfinite(loss).all()):
            return
        learn = self.learn
        self.stopped_at = (learn.epoch, learn.iter)
        value = float(loss.detach().float().reshape(-1)[0])
        broken = non_finite_tensors(learn.model)
        state = (
            f"{len(broken)} of the model's tensors are not finite already ("
            f"{shown_names(broken, 3)}: the steps before diverged, or this batch's "
            "forward pass put NaN into BatchNorm's running statistics), so its predictions mean "
            "nothing: learn.load a checkpoint saved before, or build the learner anew, and "
            "lower the learning rate"
            if broken
            else "the parameters are those after the previous batch. Lower the learning rate, "
            "or check the data and the loss"
        )
        warn_user(
            f"TerminateOnNaN: the training loss is {value} at epoch {learn.epoch}, batch "
            f"{learn.iter} (0-based, of {learn.n_iter} batches): the fit stopped before that "
            f"batch's backward pass and optimizer step; {state}.",
            RuntimeWarning,
        )
        raise CancelFitException


TerminateOnNaNCallback = TerminateOnNaN
"""fastai's name (v1 and v2) of the same class."""


class TrackerCallback(Callback):
    """Base of the callbacks that follow one recorded value across epochs.

    monitor: 'train_loss', 'valid_loss' or a metric name. comp: comp(value, best) -> True
    when value is better (default: `np.less` for names containing 'loss' or 'error', else
    `np.greater`). min_delta: how much better it must be. reset_on_fit: forget the best
    value at the start of every fit. After each epoch `best` holds the best value so far and
    `new_best` whether this epoch set it. During `lr_find` (an LRFinder attached: its passes
    are no epochs of the user's, and skip validation) the tracker does nothing, as fastai's.
    """

    order = 60

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Callable[[float, float], bool] | None = None,
        min_delta: float = 0.0,
        reset_on_fit: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor should be a column name (str), got {type(monitor).__name__}")
        if comp is None:
            comp = np.less if ("loss" in monitor or "error" in monitor) else np.greater
        if not callable(comp):
            raise TypeError(f"comp should be callable comp(value, best) -> bool, got {comp!r}")
        number = real_or_none(min_delta)
        if number is None:
            raise TypeError(f"min_delta should be a float, got {type(min_delta).__name__}")
        min_delta = number
        if not (math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"min_delta should be a finite number >= 0, got {min_delta}")
        self.monitor = monitor
        self.comp = comp
        self.lower_is_better = comp in _LOWER_IS_BETTER
        self.min_delta = -float(min_delta) if self.lower_is_better else float(min_delta)
        self.reset_on_fit = reset_on_fit
        self.best: float | None = None
        self.new_best = False
        self.missing = False  # this epoch had no value of `monitor` (no validation set)
        self._said_missing = False
        self._idx = 0
        self._off = False  # this fit is an lr_find

    def _worst(self) -> float:
        return math.inf if self.lower_is_better else -math.inf

    def before_fit(self) -> None:
        self._off = any(isinstance(cb, LRFinder) for cb in self.learn.cbs)
        self._said_missing = False
        if self._off:
            return
        if self.reset_on_fit or self.best is None:
            self.best = self._worst()
        names = self.learn.recorder.metric_names[1:-1]  # without 'epoch' and 'time'
        if self.monitor not in names:
            raise ValueError(f"monitor should be one of {names}, got {self.monitor!r}")
        self._idx = names.index(self.monitor)

    def after_epoch(self) -> None:
        self.new_best = False
        self.missing = False
        if self._off:
            return
        value = self.learn.recorder.values[-1][self._idx]
        if value is None:  # no validation set (valid_pct=0): nothing to track this epoch
            self.missing = True
            if not self._said_missing:
                self._said_missing = True
                warn_user(
                    f"{type(self).__name__}: {self.monitor!r} has no value (the data has no "
                    "validation set), so this callback does nothing in this fit; monitor "
                    "'train_loss' instead"
                )
            return
        self.new_best = bool(self.comp(value - self.min_delta, self.best))
        if self.new_best:
            self.best = float(value)


class _PatienceCallback(TrackerCallback):
    """A tracker that counts the epochs in a row without improvement (`wait`) against
    `patience` (EarlyStoppingCallback, ReduceLROnPlateau)."""

    patience: int
    wait: int

    def before_fit(self) -> None:
        self.wait = 0
        super().before_fit()

    def _waited_out(self) -> bool:
        """After this epoch's tracking (`after_epoch`): True once `patience` epochs in a row
        brought no improvement."""
        if self._off or self.missing:
            return False
        if self.new_best:
            self.wait = 0
            return False
        self.wait += 1
        return self.wait >= self.patience


class EarlyStoppingCallback(_PatienceCallback):
    """Ends the fit once `monitor` has not improved (by more than `min_delta`) for
    `patience` epochs in a row (fastai's EarlyStoppingCallback).

    fastai v2's form: `EarlyStoppingCallback(monitor='valid_loss', comp=None, min_delta=0.,
    patience=1)`. fastai v1's: `EarlyStoppingCallback(learn, monitor='valid_loss',
    mode='auto', min_delta=0, patience=0)`, the rest by keyword; v1 stopped once more epochs
    than `patience` went without improvement, so v1's patience p is v2's p + 1 (v1's default
    0 is v2's 1). mode: 'auto' (lower is better for 'loss' and 'error' columns, as v2; v1's
    auto looked for 'loss' only), 'min' or 'max', instead of comp. monitor defaults to
    'valid_loss'."""

    order = TrackerCallback.order + 3

    def __init__(
        self,
        learn_or_monitor: Learner | str | None = None,
        /,
        comp: Callable[[float, float], bool] | None = None,
        min_delta: float = 0.0,
        patience: int | None = None,
        reset_on_fit: bool = True,
        *,
        monitor: str | None = None,
        mode: str | None = None,
    ) -> None:
        learn, monitor = _first_argument("EarlyStoppingCallback", learn_or_monitor, monitor, comp)
        super().__init__(monitor, _comp_of_mode(mode, comp), min_delta, reset_on_fit)
        v1 = learn is not None  # v1's patience p stops where v2's p + 1 does
        patience = (0 if v1 else 1) if patience is None else patience
        number = int_or_none(patience)
        if number is None or number < 0:
            raise ValueError(f"patience should be an int >= 0, got {patience!r}")
        patience = number  # v2's 0 stops at the first epoch without improvement, as its 1
        self.patience = patience + 1 if v1 else patience
        self.wait = 0
        self.learn = learn

    def after_epoch(self) -> None:
        super().after_epoch()
        if self._waited_out():
            _say(
                self.learn,
                f"No improvement since epoch {self.learn.epoch - self.wait}: early stopping",
            )
            raise CancelFitException


class ReduceLROnPlateau(_PatienceCallback):
    """Divides every param group's learning rate by `factor` (not below `min_lr`) once
    `monitor` has not improved (by more than `min_delta`) for `patience` epochs in a row,
    then waits `patience` epochs again; prints "Epoch N: reducing lr to X" (X the last layer
    group's lr of the next step) when the lr went down. fastai v2's ReduceLROnPlateau, same
    arguments and counting (checked against fastai 2.8.12's source and a run of `fit`).

    It acts on what the optimizer steps with: the groups' lr in a plain `fit`; during a
    scheduled fit (fit_one_cycle, fit_flat_cos, fit_sgdr: the fused optimizer's device
    schedule) each group's schedule peak lr_max, so the rest of the schedule runs scaled by
    1/factor, min_lr bounding the peak. (In fastai the ParamScheduler overwrites the reduced
    lr at the next batch, so there the reduction only lasts in a plain fit.)"""

    order = TrackerCallback.order + 2

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Callable[[float, float], bool] | None = None,
        min_delta: float = 0.0,
        patience: int = 1,
        factor: float = 10.0,
        min_lr: float = 0.0,
        reset_on_fit: bool = True,
    ) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        number = int_or_none(patience)  # 0 acts as 1, as in fastai
        if number is None or number < 0:
            raise ValueError(f"patience should be an int >= 0, got {patience!r}")
        factor_number, min_lr_number = real_or_none(factor), real_or_none(min_lr)
        if factor_number is None or not (math.isfinite(factor_number) and factor_number > 1):
            raise ValueError(f"factor should be a finite number > 1, got {factor!r}")
        if min_lr_number is None or not (math.isfinite(min_lr_number) and min_lr_number >= 0):
            raise ValueError(f"min_lr should be a finite number >= 0, got {min_lr!r}")
        self.patience, self.factor, self.min_lr = number, factor_number, min_lr_number
        self.wait = 0

    def after_epoch(self) -> None:
        super().after_epoch()
        if not self._waited_out():
            return
        self.wait = 0
        learn = self.learn
        old = learn.current_hypers()[0][-1]
        opt = learn.opt
        schedule = getattr(opt, "one_cycle", None)
        if schedule is not None:
            opt.set_lr_max([self._reduced(lr) for lr in schedule["lr_max"]])
        else:
            for group in opt.param_groups:
                group["lr"] = self._reduced(group["lr"])
        new = learn.current_hypers()[0][-1]
        if new < old:
            _say(learn, f"Epoch {learn.epoch}: reducing lr to {new}")

    def _reduced(self, lr: float) -> float:
        return max(lr / self.factor, self.min_lr)


class SaveModelCallback(TrackerCallback):
    """Saves the model with `Learner.save` (atomic) to path/model_dir/`fname`.pth each time
    `monitor` improves, and loads that best model back at the end of the fit (also when the
    fit was cut short by a NaN loss or early stopping, as fastai's; after Ctrl-C or an error
    the learner keeps its weights of that moment, as fastai's, and a line says which file
    holds the best). every_epoch=True (or n) saves
    `fname`_<epoch> after every (n-th) epoch instead and loads nothing; at_end=True saves once,
    at the end. with_opt: include the optimizer state (needed to resume training from the
    file; see `Learner.load`). `last_saved_path` is the file written last.

    fastai v2's form: `SaveModelCallback(monitor='valid_loss', comp=None, min_delta=0.,
    fname='model', every_epoch=False, at_end=False, with_opt=False)`. fastai v1's:
    `SaveModelCallback(learn, monitor='valid_loss', mode='auto', every='improvement',
    name='bestmodel')`, the rest by keyword: every 'improvement' (the default) or 'epoch'
    (every_epoch=True), name for fname (default 'bestmodel' in this form), mode 'auto' /
    'min' / 'max' for comp (as EarlyStoppingCallback). monitor defaults to 'valid_loss'.
    """

    order = TrackerCallback.order + 1

    def __init__(
        self,
        learn_or_monitor: Learner | str | None = None,
        /,
        comp: Callable[[float, float], bool] | None = None,
        min_delta: float = 0.0,
        fname: str | None = None,
        every_epoch: bool | int = False,
        at_end: bool = False,
        with_opt: bool = False,
        reset_on_fit: bool = True,
        *,
        monitor: str | None = None,
        mode: str | None = None,
        every: str | None = None,
        name: str | None = None,
    ) -> None:
        learn, monitor = _first_argument("SaveModelCallback", learn_or_monitor, monitor, comp)
        super().__init__(monitor, _comp_of_mode(mode, comp), min_delta, reset_on_fit)
        if name is not None:
            if fname is not None:
                raise TypeError(
                    f"give fname (fastai v2) or name (v1), not both; got {fname!r} and {name!r}"
                )
            fname = name
        if fname is None:
            fname = "bestmodel" if learn is not None else "model"
        if every is not None:
            if every not in ("improvement", "epoch"):
                raise ValueError(f"every should be 'improvement' or 'epoch', got {every!r}")
            if every_epoch is not False:
                raise TypeError(
                    f"give every_epoch (fastai v2) or every (v1), not both; got "
                    f"{every_epoch!r} and {every!r}"
                )
            every_epoch = every == "epoch"
        if not isinstance(fname, str) or not fname:
            raise TypeError(f"fname should be a non-empty str, got {fname!r}")
        number = every_epoch if isinstance(every_epoch, bool) else int_or_none(every_epoch)
        if number is None or number < 0:
            raise ValueError(f"every_epoch should be a bool or an int >= 1, got {every_epoch!r}")
        every_epoch = number
        if every_epoch and at_end:
            raise ValueError("every_epoch and at_end exclude each other; pass one of them")
        self.fname = fname
        self.every_epoch = int(every_epoch)
        self.at_end = at_end
        self.with_opt = with_opt
        self.last_saved_path: Path | None = None
        self._saved_best = False
        self.learn = learn

    def _save(self, name: str) -> None:
        self.last_saved_path = self.learn.save(name, with_opt=self.with_opt)

    def before_fit(self) -> None:
        super().before_fit()
        if self.reset_on_fit and not self._off:  # else the best of earlier fits still counts
            self._saved_best = False

    def after_epoch(self) -> None:
        if self._off:
            return
        if self.every_epoch:
            if self.learn.epoch % self.every_epoch == 0:
                self._save(f"{self.fname}_{self.learn.epoch}")
            return
        super().after_epoch()
        if self.new_best and not self.at_end:
            _say(
                self.learn,
                f"Better model found at epoch {self.learn.epoch} with {self.monitor} value: "
                f"{self.best}.",
            )
            self._save(self.fname)
            self._saved_best = True

    def after_fit(self) -> None:
        if self._off:
            return
        if self.at_end:
            self._save(self.fname)
        elif self._saved_best and self.learn.fit_error is not None:
            _say(
                self.learn,
                f"SaveModelCallback: the fit was interrupted, so the model is not loaded back "
                f"from {self.last_saved_path} (the best {self.monitor}, {self.best}); "
                f"learn.load({self.fname!r}) does",
            )
        elif self._saved_best:
            self.learn.load(self.fname, with_opt=self.with_opt, with_rng=False)


class CSVLogger(Callback):
    """Writes the epoch table to learn.path/`fname`: a header line, then one row per epoch
    (epoch, train_loss, valid_loss, metrics..., time), flushed and fsync'ed after each row.
    append=True adds to an existing file (the header is written again only when it differs
    from the file's first line). `path` is the file of the last fit; `read_log()` returns its
    rows as dicts of strings. In a distributed fit only rank 0 writes.

    fastai v2's form: `CSVLogger(fname='history.csv', append=False)`; fastai v1's:
    `CSVLogger(learn, filename='history', append=False)`, writing `filename`.csv."""

    order = 60

    def __init__(
        self,
        learn_or_fname: Learner | str | os.PathLike | None = None,
        /,
        append: bool = False,
        *,
        fname: str | os.PathLike | None = None,
        filename: str | None = None,
    ) -> None:
        super().__init__()
        learn = None
        if _is_learner(learn_or_fname):
            learn, learn_or_fname = learn_or_fname, None
        names = [v for v in (learn_or_fname, fname, filename) if v is not None]
        if len(names) > 1:
            raise TypeError(f"CSVLogger: give the file name once, got {names!r}")
        if filename is not None:
            if not isinstance(filename, str):
                raise TypeError(f"filename should be a str, got {type(filename).__name__}")
            fname = f"{filename}.csv"
        else:
            fname = names[0] if names else "history.csv"
        if not isinstance(fname, (str, os.PathLike)):
            raise TypeError(f"fname should be a str or Path, got {type(fname).__name__}")
        self.fname = Path(fname)
        self.append = append
        self.path: Path | None = None
        self._file: TextIO | None = None
        self._writer = None
        self.learn = learn

    def read_log(self) -> list[dict[str, str]]:
        """The rows of the file, each a dict column -> text."""
        if self.path is None:
            raise ValueError("read_log: no fit has used this CSVLogger yet")
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def before_fit(self) -> None:
        self.path = path = Path(self.learn.path) / self.fname
        if not ranks.is_main_process():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        header = self.learn.recorder.metric_names
        first_line = None
        if self.append and path.is_file():
            with open(path, newline="") as f:
                first_line = next(csv.reader(f), None)
        self._file = open(path, "a" if self.append else "w", newline="")
        self._writer = csv.writer(self._file)
        if first_line != header:
            self._writer.writerow(header)
            self._sync()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def after_epoch(self) -> None:
        if self._writer is None:  # not rank 0
            return
        rec = self.learn.recorder
        row = [rec.epochs[-1], rec.train_losses[-1], rec.valid_losses[-1], *rec.metrics[-1]]
        cells = ["" if v is None else v for v in row]  # floats in full precision
        self._writer.writerow([*cells, format_time(rec.epoch_times[-1])])
        self._sync()

    def after_fit(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None
