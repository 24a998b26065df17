"""Learner: a model, its data, its optimizer and the training loop that ties them together.

The loop has fastai v2's shape: `fit` runs epochs, an epoch runs a training and a
validation phase, a phase runs batches, and every step fires an event that callbacks
(`fastcore_ext.callback`) hook into. The optimizer is fastcore_ext's fused Adam by default;
`fit_one_cycle` hands the whole one-cycle schedule to it (the kernel evaluates lr and
momentum from a device-side step counter), and the optimizer answers the same values on
the host (`hypers_at`) for the Recorder.

Every public method is here; the work of most lives in the module of its concept:
- the length of a fit in epochs and steps, the one-cycle schedule and lr_find's
  suggestions: `fastcore_ext.schedule`;
- layer groups, freezing, lr/wd ranges, the optimizer's param groups (one or two per layer
  group: `wd_bn_bias`), fine_tune's learning rates and the optimizer's one-cycle setter:
  `fastcore_ext.layer_groups`;
- the events and their dispatch to callbacks: `fastcore_ext.callback.core`;
- save/load and the checkpoint format (exact resume with `fit_one_cycle(start_epoch=k)`):
  `fastcore_ext.checkpoint`;
- get_preds / predict / tta: `fastcore_ext.inference` (validation, too, runs under
  torch.inference_mode in the learner's precision and memory layout);
- mixed precision: the `MixedPrecision` callback (`fastcore_ext.callback.mixed_precision`),
  which to_bf16 / to_fp16 attach and to_fp32 removes; `precision="auto"` (the default,
  DEFAULT_PRECISION) picks bf16 + channels-last where the hardware runs bf16 natively
  (`fastcore_ext.hardware`), fp32 elsewhere;
- on the CPU, the weight gradient of weight-heavy convolutions as one matrix product: the
  `ConvWeightGrad` callback attached to every learner, `learn.conv_weight_grad`
  (`fastcore_ext.callback.conv_weight_grad`);
- lr_find's sweep and in-memory snapshot: `fastcore_ext.callback.lr_finder`;
- several processes: `fastcore_ext.callback.ddp` (public module `fastcore_ext.distributed`);
- `compile()`: the model's forward through torch.compile, opt-in: `fastcore_ext.compiling`.

Interruptions: a NaN/inf training loss ends the fit before that batch's step
(`TerminateOnNaN`, attached to every learner). An exception that escapes a fit (Ctrl-C's
KeyboardInterrupt, a DataLoader worker that died, an error in a callback) ends it like a
CancelFitException would, then goes on to the caller with the learner ready for the next
fit: `fastcore_ext.interrupt`.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastcore_ext import inference, interrupt
from fastcore_ext import layer_groups as lg
from fastcore_ext.callback import ddp, mixed_precision
from fastcore_ext.callback.conv_weight_grad import ConvWeightGrad
from fastcore_ext.callback.core import (
    CANCEL_EVENTS,
    EVENTS,
    Callback,
    CancelBackwardException,
    CancelBatchException,
    CancelEpochException,
    CancelStepException,
    CancelTrainException,
    CancelValidException,
    fire,
)
from fastcore_ext.callback.ddp import DEFAULT_TIMEOUT
from fastcore_ext.callback.lr_finder import LRFinder, check_suggest_funcs, suggest, sweep
from fastcore_ext.callback.mixed_precision import PRECISIONS, MixedPrecision
from fastcore_ext.callback.progress import ProgressCallback
from fastcore_ext.callback.recorder import Recorder
from fastcore_ext.callback.tracker import TerminateOnNaN
from fastcore_ext.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_save,
    checkpoint_state,
    item_ids,
    load_checkpoint,
    model_file,
    shown_classes,
)
from fastcore_ext.checks import check_bool, check_int, int_or_none
from fastcore_ext.compiling import CompiledForward, compile_forward
from fastcore_ext.data.items import shown_names
from fastcore_ext.data.loader import keep_workers
from fastcore_ext.data.paths import DataPath, file_in_the_way
from fastcore_ext.export import DEFAULT_EXPORT, describe_metric, export_model
from fastcore_ext.foundation import L
from fastcore_ext.interpret import ClassificationInterpretation
from fastcore_ext.layer_groups import NORM_TYPES, default_splitter
from fastcore_ext.losses import FlatLoss, is_class_loss
from fastcore_ext.metrics import check_metric, metric_name
from fastcore_ext.optim import Adam
from fastcore_ext.ranks import is_main_process, launched_by_torchrun
from fastcore_ext.schedule import (
    NO_WARMUP,
    Suggestions,
    batches_per_epoch,
    check_epochs,
    check_one_cycle_args,
    minimum,
    sgdr_cycles,
    steep,
    suggest_lrs,
    suggestion_window,
    valley,
)
from fastcore_ext.warn import warn_user

__all__ = [
    "Learner",
    "set_seed",
    "default_splitter",
    "NORM_TYPES",
    "CHECKPOINT_FORMAT",
    "DEFAULT_PRECISION",
]

DEFAULT_LR = 1e-3  # fit's learning rate when none is given (fastai v2)
DEFAULT_MAX_LR = 1e-3  # fit_one_cycle's: fastai v2's defaults.lr (v1 had slice(3e-3))
DEFAULT_PRECISION = "auto"  # Learner(precision=None) uses it; "fp32" turns the automatic choice off


# The steps of a fit as show_training_loop prints them: fastai v2's `_loop`, with this loop's
# after_backward and its cancel events where they fire.
_LOOP = (
    "Start Fit",
    "before_fit",
    "Start Epoch Loop",
    "before_epoch",
    "Start Train",
    "before_train",
    "Start Batch Loop",
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_cancel_backward",
    "after_backward",
    "before_step",
    "after_cancel_step",
    "after_step",
    "after_cancel_batch",
    "after_batch",
    "End Batch Loop",
    "End Train",
    "after_cancel_train",
    "after_train",
    "Start Valid",
    "before_validate",
    "Start Batch Loop",
    "**CBs same as train batch**",
    "End Batch Loop",
    "End Valid",
    "after_cancel_validate",
    "after_validate",
    "End Epoch Loop",
    "after_cancel_epoch",
    "after_epoch",
    "End Fit",
    "after_cancel_fit",
    "after_fit",
)


def set_seed(seed: int, reproducible: bool = False) -> None:
    """Seed Python's `random`, numpy's global generator and torch (CPU and every GPU).
    reproducible=True (fastai's) also makes cuDNN choose deterministic convolution
    algorithms (``torch.backends.cudnn.deterministic = True``, ``benchmark = False``), for
    runs that repeat on a GPU at some cost in speed; a CPU run repeats without it."""
    number = int_or_none(seed)
    if number is None:
        raise TypeError(f"seed should be an int, got {type(seed).__name__}")
    if not isinstance(reproducible, bool):
        raise TypeError(f"reproducible should be True or False, got {reproducible!r}")
    seed = number
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if reproducible:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


class _ProgressToggle:
    """Returned by `Learner.no_bar()` / `no_logging()`: the progress callback's `setting`
    (show_bar or show_table) is already off; leaving a `with` block (if the call was used as
    one) puts the previous value back."""

    def __init__(self, progress: ProgressCallback, setting: str) -> None:
        self._progress = progress
        self._setting = setting
        self._previous = getattr(progress, setting)
        setattr(progress, setting, False)

    def __enter__(self) -> _ProgressToggle:
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self._progress, self._setting, self._previous)


_V1_EVENTS = {
    "on_train_begin": "before_fit",
    "on_epoch_begin": "before_epoch",
    "on_batch_begin": "before_batch",
    "on_loss_begin": "after_pred",
    "on_backward_begin": "after_loss",
    "on_backward_end": "after_backward",
    "on_step_end": "after_step",
    "on_batch_end": "after_batch",
    "on_epoch_end": "after_epoch",
    "on_train_end": "after_fit",
}
"""fastai v1's callback methods -> the fastai v2 event of the same moment."""


FEW_SWEEP_POINTS = 10  # lr_find warns when its suggestions come from fewer points than this


def _warn_few_points(used: int, recorded: int, num_it: int) -> None:
    """Warn that lr_find's suggestions come from `used` (< FEW_SWEEP_POINTS) points of a sweep
    that recorded `recorded` of its `num_it` iterations: a slope of so few noisy losses is
    mostly noise (fastai 2.8.12's valley is then the sweep's first lr, 1e-7, silently)."""
    if used >= FEW_SWEEP_POINTS:
        return
    if recorded < num_it:
        why = (
            f", which stopped after {recorded} of its {num_it} iterations as the loss "
            "diverged: too few for the loss's slope to be more than noise; pass "
            "stop_div=False to sweep on, or a lower start_lr"
        )
    else:
        why = (
            f" (num_it={num_it}): too few for the loss's slope to be more than noise; run "
            "more iterations (num_it=100, the default; each is a batch)"
        )
    warn_user(f"lr_find: the suggestions come from only {used} points of the sweep{why}")


class Learner:
    """Trains `model` on `data` (a bunch: train_dl/valid_dl yielding (x, y) on data.device).

    Args:
      data: the bunch (fastcore_ext.data's ImageDataBunch / ImageDataLoaders; PyTorch
        DataLoaders as fastai's ``DataLoaders(train_dl, valid_dl)``; or any object with
        `train_dl` and `valid_dl`, loaders of (x, y) batches on `device`, and `path`).
      model: an nn.Module mapping x (e.g. Tensor[B, 3, S, S]) to logits Tensor[B, c]; moved
        to data.device.
      loss_func: loss(preds, targets) -> 0-dim Tensor; default nn.CrossEntropyLoss().
      opt_func: optimizer class (or factory) called as opt_func(param_groups, lr=...);
        default fastcore_ext.optim.Adam (whose default weight decay is 0.01).
      metrics: a metric or list of metrics f(preds, targs), each computed over the whole
        validation set at the end of each epoch (fastcore_ext.metrics).
      wd: weight decay, a float or one per layer group; None keeps the optimizer's default.
      wd_bn_bias: False (the default, fastai v2's): no weight decay on the parameters of
        normalization layers (NORM_TYPES) nor on any bias (fastai's `norm_bias_params`);
        True: weight decay on every parameter (fastai v1's `bn_wd=True`, and what this
        library did before following v2). Each layer group becomes one or two optimizer
        param groups (decayed, not decayed) sharing its lr; `group_map` says which
        (fastcore_ext.layer_groups.GroupMap).
      path, model_dir: where files of this learner go (path/model_dir); path defaults to
        data.path.
      splitter: splitter(model) -> list of layer groups, each an nn.Module or an iterable of
        parameters/modules; default: one group. Every parameter must be in exactly one group.
      seed: if given, `set_seed(seed)` now.
      cbs: extra callbacks, in addition to the Recorder and the ProgressCallback;
        `callbacks` is fastai v1's name for it (give one of the two).
      callback_fns: fastai v1's: functions called with the learner at the start of every
        fit, each returning a callback for that fit (`ShowGraph`, `partial(SaveModelCallback,
        monitor='accuracy')`); kept in `learn.callback_fns`, a list.
      dls: fastai v2's keyword for `data` (``Learner(dls=dls, model=model)``).
      lr: fastai v2's (keyword only here): the learning rate of fit, fit_one_cycle,
        fit_flat_cos and fit_sgdr called without one (a float, slice or one per layer
        group; `learn.lr`); None: the lr of an `opt_func=partial(..., lr=...)`, as fastai's,
        else DEFAULT_LR / DEFAULT_MAX_LR (1e-3, fastai's defaults.lr).
      precision: 'auto' (bf16 autocast + channels-last where data.device runs bfloat16
        natively, else fp32; the choice is printed once per process, when a fit or lr_find
        starts: `precision_note`), 'fp32', 'bf16' or 'fp16'; None means DEFAULT_PRECISION
        ('auto').
      train_bn: fastai v2's (keyword only here): True (the default) keeps normalization
        layers trainable in frozen layer groups; False freezes them with their group.
      moms: fastai v2's (keyword only here): fit_one_cycle's momentums when it is called
        without moms; default (0.95, 0.85, 0.95).
    """

    def __init__(
        self,
        data: Any = None,
        model: nn.Module | None = None,
        loss_func: Callable[..., torch.Tensor] | None = None,
        opt_func: Callable[..., torch.optim.Optimizer] = Adam,
        metrics: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
        wd: float | Sequence[float] | None = None,
        path: str | Path | None = None,
        model_dir: str | Path = "models",
        splitter: Callable[[nn.Module], Iterable[Any]] | None = None,
        seed: int | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        precision: str | None = None,
        wd_bn_bias: bool = False,
        callback_fns: Sequence[Callable[[Learner], Callback]] | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
        *,
        dls: Any = None,
        lr: float | slice | Sequence[float] | None = None,
        train_bn: bool = True,
        moms: Sequence[float] = (0.95, 0.85, 0.95),
    ) -> None:
        precision = DEFAULT_PRECISION if precision is None else precision
        self.train_bn = check_bool("train_bn", train_bn)
        if isinstance(moms, (tuple, list)) and len(moms) == 2:  # fastai v1's (0.95, 0.85)
            moms = (moms[0], moms[1], moms[0])
        self.moms = check_one_cycle_args(25.0, 1e5, 0.25, moms)[3]
        cbs = _v1_alias("Learner", "cbs", cbs, "callbacks", callbacks)
        data = _v1_alias("Learner", "dls", dls, "data", data)  # Learner(dls=dls, model=m): v2
        self.wd_bn_bias = check_bool("wd_bn_bias", wd_bn_bias)
        _check_learner_args(data, model, loss_func, opt_func, path, model_dir, splitter, precision)
        _check_class_count(model, data, at_construction=True)
        if seed is not None:
            set_seed(seed)
        self.seed = seed
        self._data = data
        # the classes the model's outputs stand for: the data's at construction, at each fit
        # and at load (the data setter compares new data with these)
        self._output_classes = getattr(data, "classes", None)
        self.model = model.to(torch.device(data.device))
        self.loss_func = loss_func if loss_func is not None else nn.CrossEntropyLoss()
        self._default_loss = self.loss_func if loss_func is None else None  # none was given
        self.opt_func = opt_func
        self._metrics = _check_metrics(metrics, getattr(data, "c", None))
        self._model_dir = Path(model_dir).expanduser()
        self.path = Path(path) if path is not None else Path(getattr(data, "path", "."))
        self.model_dir = self._model_dir
        self.splitter = splitter if splitter is not None else default_splitter
        self.channels_last = False
        self._auto_layout = False  # channels-last set by precision="auto" (to_fp32 undoes it)
        self.layer_groups = lg.split(self.model, self.splitter)
        if lr is None and isinstance(opt_func, partial):
            lr = opt_func.keywords.get("lr")  # fastai's: partial(SGD, lr=0.05) sets learn.lr
        if lr is not None:
            self.lr_range(lr, "lr")  # checked now, against the layer groups
        self.lr = lr
        self._norm_params = lg.norm_param_ids(self.model)
        self._frozen_by_freeze: set[int] = set()  # what freeze_to froze (not the user)
        self._norm_bias = lg.norm_bias_param_ids(self.model)
        self.group_map: lg.GroupMap  # which layer group each optimizer param group is of
        self.wd = lg.wd_range(wd, len(self.layer_groups)) if wd is not None else None
        self.opt = self._create_opt()

        self.cbs: L = L()  # fastai's L of the attached callbacks
        self.recorder = Recorder()
        self.progress = ProgressCallback()
        self.conv_weight_grad = ConvWeightGrad()
        self.add_cbs([self.recorder, self.progress, TerminateOnNaN(), self.conv_weight_grad])
        if cbs is not None:
            self.add_cbs(_as_cbs(cbs))
        self.callback_fns: list[Callable[[Learner], Callback]] = _check_callback_fns(callback_fns)

        # State of the loop, readable by callbacks.
        self.epoch = 0
        self.n_epoch = 0
        self._start_epoch = 0
        self.iter = 0
        self.n_iter = 0
        self.train_iter = 0  # training batches done in the current fit (fastai's)
        # fastai's pct_train: the share of the fit's training batches done (a batch counts
        # from its after_batch on, as fastai's TrainEvalCallback counts it)
        self.pct_train = 0.0
        self.event: str | None = None  # the event fired last, or being fired (interrupt.where)
        # the exception (Ctrl-C's KeyboardInterrupt, an error) ending the fit while its
        # after_cancel_fit and after_fit run (interrupt.end_after_exception); None otherwise
        self.fit_error: BaseException | None = None
        self.training = False
        self.dl: Any = None
        # the batch as fastai v2 holds it: tuples of inputs and of targets (one of each here)
        self.xb: tuple[torch.Tensor, ...] | None = None
        self.yb: tuple[torch.Tensor, ...] | None = None
        self.pred: torch.Tensor | None = None
        self.loss_grad: torch.Tensor | None = None
        # fastai's: 0 before the first batch, then the last batch's loss (kept after a fit)
        self.loss: torch.Tensor = torch.tensor(0.0)
        self._one_cycle_fit = False  # a fit_one_cycle is running: the optimizer's schedule
        self._sched_step = 0  # host mirror of the optimizer's schedule step counter
        self.epochs_done = 0  # epochs finished by the last fit (or the loaded checkpoint)
        # Training epochs finished over every fit (or the loaded checkpoint's count): a fit's
        # epoch e draws the data epoch _data_epoch0 + e, so each fit gets new shuffles and
        # augmentations, as fastai's loaders (a resume, start_epoch=k, continues its fit's).
        self.epochs_trained = 0
        self._data_epoch0 = 0
        # Distributed mode (fastcore_ext.distributed): its callback, and the model wrapped in
        # DistributedDataParallel for the training forward passes of the current fit.
        self.distributed: Callback | None = None
        self.ddp_model: nn.Module | None = None
        self.compiled: CompiledForward | None = None  # set by compile(): the forward passes' model
        # What precision "auto" chose, printed as the first fit starts (mixed_precision.announce)
        self.precision_note: str | None = None
        if launched_by_torchrun():
            self.distrib()
        mixed_precision.set_up(self, precision)  # after distrib: this rank's device

    # ---- construction helpers -----------------------------------------------------------
    def create_opt(self) -> None:
        """fastai v2's: a new optimizer (`opt_func` over the layer groups as now frozen, the
        learner's wd): moments, step counts and the one-cycle position start afresh."""
        self._check_not_destroyed()
        self.opt = self._create_opt()
        self._one_cycle_fit, self._sched_step = False, 0

    def _create_opt(self) -> torch.optim.Optimizer:
        no_wd = set() if self.wd_bn_bias else self._norm_bias
        opt, self.group_map = lg.make_optimizer(
            self.opt_func, self.layer_groups, self.wd, DEFAULT_LR, no_wd
        )
        return opt

    # ---- callbacks ----------------------------------------------------------------------
    def add_cb(self, cb: Callback | type[Callback]) -> Learner:
        """Attach a callback (kept sorted by `order`; equal orders keep insertion order); a
        Callback class is instantiated with its defaults, as fastai's. Returns the learner
        (fastai's ``learn.add_cb(cb).fit(1)``); the callback is then also the learner's
        attribute of its `name` (``learn.count_cb``), as fastai's.
        One callback object may serve several learners (fastai's ``cbs=`` list reused for
        each model of an ensemble): its `learn` is the learner whose fit, validation or
        prediction last started (its state, such as a tracker's best value, is shared)."""
        if _is_callback_class(cb):
            cb = cb()
        v1 = [name for name in _V1_EVENTS if callable(getattr(cb, name, None))]
        renames = ", ".join(f"{name} -> {_V1_EVENTS[name]}" for name in v1)
        if not isinstance(cb, Callback):
            hint = (
                f" (it defines fastai v1's {v1}: subclass Callback and use v2's event names, "
                f"{renames})"
                if v1
                else " (class MyCallback(Callback) with methods named after the events, "
                "before_batch, after_loss, ...)"
            )
            raise TypeError(f"cb should be a fastcore_ext Callback instance, got {cb!r}{hint}")
        if v1:
            raise TypeError(
                f"cb: {type(cb).__name__} defines fastai v1's callback method(s) {v1}, which "
                f"this Learner does not call (its events are fastai v2's): rename them "
                f"{renames}; state is on the callback (self.epoch, self.iter, self.loss, "
                "self.pred, self.xb, self.yb, self.training: the learner's), raise "
                "CancelFitException to stop (v1's return {'stop_training': True})"
            )
        cb.learn = self
        self.cbs.append(cb)
        self.cbs.sort(key=lambda c: c.order)
        return self

    def add_cbs(self, cbs: Iterable[Callback | type[Callback]]) -> Learner:
        """Attach several callbacks; returns the learner."""
        for cb in cbs:
            self.add_cb(cb)
        return self

    def remove_cb(self, cb: Callback | type[Callback]) -> Learner:
        """Detach a callback, or every attached callback of a Callback class (fastai's
        ``remove_cb(MyCallback)``); returns the learner. One that is not attached is left
        alone, as fastai's does (no error)."""
        for c in self._attached(cb):
            self.cbs.remove(c)
            c.learn = None
        return self

    def _attached(self, cb: Callback | type[Callback]) -> list[Callback]:
        """The attached callbacks `cb` names: those of its class for a Callback class, else
        [cb] when it is attached."""
        if not isinstance(cb, Callback) and not _is_callback_class(cb):
            raise TypeError(f"cb should be a Callback or a Callback class, got {cb!r}")
        if _is_callback_class(cb):
            return [c for c in self.cbs if isinstance(c, cb)]
        return [cb] if cb in self.cbs else []

    def remove_cbs(self, cbs: Iterable[Callback | type[Callback]]) -> Learner:
        """Detach several callbacks (or classes of them); returns the learner."""
        for cb in list(cbs):
            self.remove_cb(cb)
        return self

    @contextlib.contextmanager
    def added_cbs(self, cbs: Callback | Sequence[Callback]) -> Iterator[Learner]:
        """fastai's ``with learn.added_cbs(cbs):``: the callbacks attached inside the block
        and detached after it, also when it raises."""
        added = _as_cbs(cbs)
        self.add_cbs(added)
        try:
            yield self
        finally:
            self.remove_cbs([cb for cb in added if cb in self.cbs])

    @contextlib.contextmanager
    def removed_cbs(
        self, cbs: Callback | type[Callback] | Sequence[Callback | type[Callback]]
    ) -> Iterator[Learner]:
        """fastai's ``with learn.removed_cbs(cbs):``: the attached callbacks (or those of a
        Callback class) detached inside the block and attached again after it, also when it
        raises."""
        given = [cbs] if isinstance(cbs, Callback | type) else list(cbs)
        removed = [c for cb in given for c in self._attached(cb)]
        self.remove_cbs(removed)
        try:
            yield self
        finally:
            self.add_cbs(removed)

    @property
    def smooth_loss(self) -> torch.Tensor:
        """The smoothed training loss after the last training batch (fastai's
        `learn.smooth_loss`, which a callback reads as `self.smooth_loss`), a 0-dim float32
        CPU tensor as fastai's (``.item()``): the Recorder's `smooth_loss` (nan before the
        first batch or without a Recorder). Reading it waits for the batches' losses on a
        GPU; the loop itself never does. As fastai's, the Recorder (order 50) records a
        batch in its after_batch, so before that (after_loss, after_step, the after_batch of
        a lower order) a callback reads the previous batch's."""
        rec = self.__dict__.get("recorder")
        return torch.tensor(math.nan if rec is None else rec.smooth_loss)

    @property
    def final_record(self) -> list[float | None] | None:
        """fastai v2's ``learn.final_record``: the Recorder's (the last epoch's [train_loss,
        valid_loss, *metrics]; None before any epoch or without a Recorder)."""
        rec = self.__dict__.get("recorder")
        return None if rec is None else rec.final_record

    def __getattr__(self, name: str) -> Any:
        """An attached callback by its `name` (fastai's ``learn.recorder``, ``learn.count_cb``);
        only reached when the learner has no such attribute of its own."""
        cbs = self.__dict__.get("cbs")
        if cbs is not None and not name.startswith("__"):
            for cb in cbs:
                if cb.name == name:
                    return cb
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def ordered_cbs(self, event: str) -> list[Callback]:
        """The attached callbacks that define `event` (their class overrides the method),
        in the order they run (fastai v2's `ordered_cbs`)."""
        _check_event("event", event)
        base = getattr(Callback, event)
        return [cb for cb in self.cbs if getattr(type(cb), event) is not base]

    def show_training_loop(self) -> None:
        """Print the loop's steps and, at each event, the attached callbacks that act on it,
        in order (fastai v2's `show_training_loop`, with this loop's backward and cancel
        events). Callbacks of one fit only (fit's cbs, callback_fns) are not attached yet."""
        indent = 0
        for step in _LOOP:
            if step.startswith("Start"):
                print(f"{' ' * indent}{step}")
                indent += 2
            elif step.startswith("End"):
                indent -= 2
                print(f"{' ' * indent}{step}")
            elif step.startswith("**"):
                print(f"{' ' * indent} - {step}")
            else:
                names = ", ".join(type(cb).__name__ for cb in self.ordered_cbs(step))
                print(f"{' ' * indent} - {step:21}: [{names}]")

    def _event(self, name: str) -> None:
        self.event = name
        if name == "after_batch" and self.training:  # fastai's TrainEvalCallback.after_batch
            self.pct_train += 1 / (self.n_iter * self.n_epoch)
            self.train_iter += 1
        if name in _PASS_STARTS:  # a callback attached to several learners serves this one
            for cb in self.cbs:
                cb.learn = self
        fire(self.cbs, name, self.training)

    def __call__(self, event_name: str | Sequence[str]) -> None:
        """fastai v2's ``learn('before_batch')``: fire one event (or each of a list, in
        order) on the attached callbacks, as the loop does; for stepping a callback by hand
        (fastai's MixUp picture: ``learn._split(b); learn('before_batch'); mixup.x``)."""
        names = [event_name] if isinstance(event_name, str) else event_name
        if not isinstance(names, Sequence) or not names:
            raise TypeError(
                f"event_name should be an event's name or a list of them, got {event_name!r}"
            )
        for name in names:
            _check_event("event_name", name)
        for name in names:
            self._event(name)

    def __enter__(self) -> Learner:
        """fastai v2's ``with Learner(...) as learn:``: before_fit and before_epoch fire on
        entry, after_epoch and after_fit on exit (callbacks stepped by hand in between)."""
        self(["before_fit", "before_epoch"])
        return self

    def __exit__(self, *exc: object) -> None:
        self(["after_epoch", "after_fit"])

    def _split(self, b: Sequence[torch.Tensor]) -> None:
        """fastai v2's: batch `b` as the loop's `xb` (its first element) and `yb` (the rest)."""
        if not isinstance(b, Sequence) or not b:
            raise TypeError(f"b: expected a batch (x, y) as one_batch gives it, got {b!r:.80}")
        self.xb, self.yb = tuple(b[:1]), tuple(b[1:])

    @property
    def x(self) -> torch.Tensor | None:
        """fastai v2's ``learn.x``: the batch's input, ``xb[0]`` (None outside a batch)."""
        return self.xb[0] if self.xb else None

    @property
    def y(self) -> torch.Tensor | None:
        """fastai v2's ``learn.y``: the batch's targets, ``yb[0]`` (None outside a batch or
        without targets)."""
        return self.yb[0] if self.yb else None

    def _with_events(self, f: Callable[[], None], level: str, exc: type[Exception]) -> None:
        """before_<level>, f(), after_<level>; `exc` raised inside is caught and fires
        after_cancel_<level> first (fastai v2's `_with_events`)."""
        try:
            self._event(f"before_{level}")
            f()
        except exc:
            self._event(f"after_cancel_{level}")
        self._event(f"after_{level}")

    # ---- the loop -----------------------------------------------------------------------
    def _train_dl(self) -> Any:
        """data.train_dl; ValueError saying what to do instead when it is None (a learner
        from load_learner)."""
        train_dl = getattr(self.data, "train_dl", None)
        if train_dl is None:
            raise inference.no_data_error("train")
        return train_dl

    def _fit(self, n_epoch: int, start_epoch: int, cbs: Sequence[Callback] | None) -> None:
        self._train_dl()
        if not any(p.requires_grad for p in self.model.parameters()):  # torch: "element 0 of
            raise ValueError(  # tensors does not require grad" at the first backward
                "model: every parameter is frozen (requires_grad False), so a fit has nothing "
                "to train: learn.unfreeze() undoes a freeze, model.requires_grad_(True) what "
                "you froze yourself"
            )
        if start_epoch > self.epochs_trained:
            warn_user(
                f"start_epoch={start_epoch}, but this learner has trained {self.epochs_trained} "
                f"epoch(s) (learn.epochs_trained, from the checkpoint loaded last and the fits "
                f"since): the fit skips the first {start_epoch} epochs of its schedule for a "
                f"model that has not trained them. To resume, first load the checkpoint saved "
                f"after epoch {start_epoch - 1} (SaveModelCallback(every_epoch=True, "
                f"with_opt=True) writes model_{start_epoch - 1}.pth)"
            )
        self._output_classes = getattr(self.data, "classes", None)
        mixed_precision.announce(self)
        extra = [_call_callback_fn(fn, self) for fn in self.callback_fns] + list(cbs or [])
        try:
            self.add_cbs(extra)
            self.n_epoch = n_epoch
            self._start_epoch = start_epoch
            self.epoch = start_epoch
            self.epochs_done = start_epoch
            self._data_epoch0 = max(0, self.epochs_trained - start_epoch)
            self.iter = 0
            self.train_iter = 0
            self.pct_train = start_epoch / n_epoch
            self.opt.zero_grad(set_to_none=True)
            with keep_workers(self.data):  # from epoch to epoch, stopped when the fit ends
                interrupt.run_fit(self, self._do_fit)
        finally:
            for cb in extra:
                if cb in self.cbs:
                    self.remove_cb(cb)
            self.training = False
            self._forget_batch()

    def _do_fit(self) -> None:
        for epoch in range(self._start_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpochException)

    def _do_epoch(self) -> None:
        self._do_epoch_train()
        self._do_epoch_validate()
        self.epochs_done = self.epoch + 1
        self.epochs_trained = self._data_epoch0 + self.epochs_done

    def _do_epoch_train(self) -> None:
        set_epoch = getattr(self.data.train_dl, "set_epoch", None)  # a loader may not take it
        if set_epoch is not None:
            set_epoch(self._data_epoch0 + self.epoch)
        self.dl = self.data.train_dl
        self.model.train()
        self.training = True
        self._with_events(self._all_batches, "train", CancelTrainException)

    def _do_epoch_validate(self) -> None:
        self.dl = self.data.valid_dl
        self.model.eval()
        self.training = False
        with torch.inference_mode():
            self._with_events(self._all_batches, "validate", CancelValidException)

    def _all_batches(self) -> None:
        self.n_iter = len(self.dl)
        batches = iter(self.dl)
        met = 0
        try:
            for i, (xb, yb) in enumerate(batches):
                met += 1
                self.iter = i
                self.xb, self.yb = (xb,), (yb,)
                scheduled = self._sched_step
                if self.training and self._one_cycle_fit:  # opt.hypers: this batch's values
                    self.opt.hypers_step = scheduled
                self._with_events(self._do_one_batch, "batch", CancelBatchException)
                if self.training and self._one_cycle_fit and self._sched_step == scheduled:
                    # no step this batch (GradientAccumulation, a cancelled step): the
                    # schedule still counts it, as fastai's ParamScheduler counts batches
                    self.opt.skip_step()
                    self._sched_step += 1
        finally:  # a phase cut short: release the loader's pass now, not at garbage collection
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        if self.training and not met:
            raise RuntimeError(_no_training_batch(self.dl, self.epoch))

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context of every forward pass: the MixedPrecision callback's
        torch.autocast (after to_bf16 / to_fp16), or a no-op in fp32."""
        mp = self.mixed_precision
        return mp.autocast() if mp is not None else contextlib.nullcontext()

    def _do_one_batch(self) -> None:
        (xb,) = self.xb
        if self.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        if self.training and self.ddp_model is not None:
            model = self.ddp_model
        else:
            model = self.compiled if self.compiled is not None else self.model
        with self.autocast():
            self.pred = model(xb)
            self._event("after_pred")
            first = self.training and self.train_iter == 0  # a fit's first batch
            if first:
                _check_outputs(self.pred, self.data, self.loss_func)
                _check_elementwise_loss(self.pred, self.yb, self.loss_func)
                if self.loss_func is self._default_loss:
                    _check_default_loss_targets(self.pred, self.yb)
            self.loss_grad = self.loss_func(self.pred, *self.yb)
            if first:
                _check_loss_value(self.loss_grad, self.loss_func)
        # a copy, as fastai's: a callback changing loss_grad in place (an L1 penalty added)
        # changes the gradient, not the loss the recorder and the metrics report
        self.loss = self.loss_grad.detach().clone()
        self._event("after_loss")
        if not self.training:
            return
        self._with_events(self._backward, "backward", CancelBackwardException)
        self._with_events(self._step, "step", CancelStepException)
        self.opt.zero_grad(set_to_none=True)

    def _backward(self) -> None:
        self.loss_grad.backward()  # (MixedPrecision's before_backward may have scaled it)

    def _step(self) -> None:
        self.opt.step()
        self._sched_step += 1

    def current_hypers(self) -> tuple[list[float], list[float]]:
        """(lrs, moms), one per layer group, that the next optimizer step uses: the
        optimizer's one-cycle schedule during fit_one_cycle (and after it, those of its last
        step, as fastai's opt.hypers keep them), else its param-group values."""
        if self._one_cycle_fit or getattr(self.opt, "one_cycle", None) is not None:
            total = self.opt.one_cycle["total_steps"]
            lrs, moms = self.opt.hypers_at(min(self._sched_step, total - 1))
        else:  # by fastai's names where the optimizer has them (a torch one's betas[0]: mom)
            groups = getattr(self.opt, "hypers", None) or self.opt.param_groups
            lrs = [float(g["lr"]) for g in groups]
            moms = [float(g.get("mom", math.nan)) for g in groups]
        return self.group_map.per_layer(lrs), self.group_map.per_layer(moms)

    # ---- public training API ------------------------------------------------------------
    def fit(
        self,
        n_epoch: int,
        lr: float | slice | Sequence[float] | None = None,
        wd: float | Sequence[float] | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        start_epoch: int = 0,
        *,
        callbacks: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
    ) -> None:
        """Train for `n_epoch` epochs at a constant learning rate.

        lr: a float (every layer group), slice(a, b) (geometric from a to b across the
        groups), slice(b) (b/10 for all groups but the last, b for the last) or one value per
        group; default 1e-3. wd: weight decay (float or per group; with wd_bn_bias=False
        never on normalization layers and biases); default the learner's `wd`, else the
        optimizer's current value. cbs: callbacks for this fit only (`callbacks`: fastai
        v1's name). start_epoch: skip the epochs before it (to resume after `load`; see
        fit_one_cycle). reset_opt: a new optimizer first (`create_opt`), as fastai's.
        """
        cbs = _v1_alias("fit", "cbs", cbs, "callbacks", callbacks)
        n_epoch, start_epoch = check_epochs(n_epoch, start_epoch)
        if check_bool("reset_opt", reset_opt):
            self.create_opt()
        lrs = self.lr_range(self._default_lr(DEFAULT_LR) if lr is None else lr, "lr")
        self._clear_schedule()
        lg.set_lrs(self.opt, self.group_map, lrs)
        lg.set_wd(self.opt, self.group_map, wd, self.wd)
        self._fit(n_epoch, start_epoch, _as_cbs(cbs))

    def fit_one_cycle(
        self,
        n_epoch: int,
        max_lr: float | slice | Sequence[float] | None = None,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        moms: Sequence[float] | None = None,
        wd: float | Sequence[float] | None = None,
        start_epoch: int = 0,
        cbs: Callback | Sequence[Callback] | None = None,
        *,
        reset_opt: bool = False,
        lr_max: float | slice | Sequence[float] | None = None,
        div_factor: float | None = None,
        final_div: float | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
    ) -> None:
        """Train with the one-cycle policy (Leslie Smith): the lr rises (cosine) from
        max_lr/div to max_lr over the first pct_start of the steps, while momentum falls from
        moms[0] to moms[1], then falls to max_lr/div_final while momentum rises to moms[2].

        max_lr: as `fit`'s lr; default 1e-3 (fastai v2's; the notes' v1 had slice(3e-3),
        bench/README.md says why we follow v2); `lr_max` is fastai v2's name for it (give one
        of the two). The optimizer evaluates the schedule itself. start_epoch: resume the
        cycle there (after `load`ing the checkpoint of the end of epoch start_epoch - 1, with
        every other argument repeated: bit-exact on the CPU).

        moms: default the learner's `moms` ((0.95, 0.85, 0.95)). reset_opt: a new optimizer
        first (`create_opt`), as fastai's.

        fastai v1's spellings: moms=(0.95, 0.85), two values, for (0.95, 0.85, 0.95);
        div_factor for div; final_div for the end's divisor of max_lr (v1's lr ends at
        max_lr / final_div, default div_factor * 1e4 there; here max_lr / div_final, default
        1e5, as v2); callbacks for cbs. v1's default pct_start was 0.3, v2's (here) 0.25."""
        div = _v1_alias("fit_one_cycle", "div", div, "div_factor", div_factor, default=25.0)
        div_final = _v1_alias(
            "fit_one_cycle", "div_final", div_final, "final_div", final_div, default=1e5
        )
        cbs = _v1_alias("fit_one_cycle", "cbs", cbs, "callbacks", callbacks)
        if isinstance(div, (tuple, list)):
            raise TypeError(
                f"fit_one_cycle: div should be a number, got {div!r}; fastai v1's third "
                f"positional argument was moms, here it is div: pass moms={div!r}"
            )
        if moms is None:
            moms = self.moms
        if check_bool("reset_opt", reset_opt):
            self.create_opt()
        if isinstance(moms, (tuple, list)) and len(moms) == 2:
            moms = (moms[0], moms[1], moms[0])
        try:  # div and div_final alone, named as the caller named them
            check_one_cycle_args(div, div_final, 0.25, (0.95, 0.85, 0.95))
        except (TypeError, ValueError) as e:
            for v1, v2, given in (("div_factor", "div", div_factor), ("final_div", "div_final",
                                                                       final_div)):  # fmt: skip
                if given is not None and str(e).startswith(f"{v2} "):
                    raise type(e)(f"{v1} (fastai v1's name of {v2}): {e}") from None
            raise
        n_epoch, start_epoch = check_epochs(n_epoch, start_epoch)
        self._check_not_destroyed()
        lr_name = "max_lr"  # the name errors give: the argument the caller used
        if lr_max is not None:
            if max_lr is not None:
                raise TypeError(
                    f"fit_one_cycle: give max_lr (fastai v1's name) or lr_max (v2's), not "
                    f"both; got max_lr={max_lr!r} and lr_max={lr_max!r}"
                )
            max_lr, lr_name = lr_max, "lr_max"
        set_one_cycle = lg.one_cycle_setter(self.opt, moms)
        lr_max = self.lr_range(
            self._default_lr(DEFAULT_MAX_LR) if max_lr is None else max_lr, lr_name
        )
        n_batches = batches_per_epoch(self._train_dl())
        start_step = start_epoch * n_batches
        lg.set_wd(self.opt, self.group_map, wd, self.wd)
        set_one_cycle(
            n_epoch * n_batches,
            self.group_map.expand(lr_max),
            div=div,
            div_final=div_final,
            pct_start=pct_start,
            moms=tuple(moms),
            start_step=start_step,
        )
        self._scheduled_fit(n_epoch, start_epoch, start_step, _as_cbs(cbs))

    def fit_flat_cos(
        self,
        n_epoch: int,
        lr: float | slice | Sequence[float] | None = None,
        div_final: float = 1e5,
        pct_start: float = 0.75,
        wd: float | Sequence[float] | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        start_epoch: int = 0,
        *,
        mom: float | None = None,
        reset_opt: bool = False,
    ) -> None:
        """fastai v2's fit_flat_cos: the learning rate flat at `lr` over the first
        `pct_start` of the steps, then a cosine down to lr / div_final (fastai's
        ``combined_cos(pct_start, lr, lr, lr / div_final)``), momentum constant at `mom`.
        It is the one-cycle schedule with div=1 and moms=(mom, mom, mom), run by the same
        optimizer (`fit_one_cycle`'s arguments otherwise; lr default 1e-3, a slice for layer
        groups). mom None (the default): the optimizer's, as fastai's, which schedules none:
        0.9 for a new Adam, what the last fit_one_cycle's last step used after one."""
        if check_bool("reset_opt", reset_opt):
            self.create_opt()  # before the optimizer's momentum is read
            reset_opt = False
        mom = self._resting_mom() if mom is None else mom
        self.fit_one_cycle(
            n_epoch, max_lr=lr, div=1.0, div_final=div_final, pct_start=pct_start,
            moms=(mom, mom, mom), wd=wd, start_epoch=start_epoch, cbs=cbs, reset_opt=reset_opt,
        )  # fmt: skip

    def fit_sgdr(
        self,
        n_cycles: int,
        cycle_len: int,
        lr_max: float | slice | Sequence[float] | None = None,
        cycle_mult: int = 2,
        cbs: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
        wd: float | Sequence[float] | None = None,
        start_epoch: int = 0,
        *,
        mom: float | None = None,
    ) -> None:
        """fastai v2's SGDR (cosine annealing with warm restarts): `n_cycles` cycles, cycle i
        lasting cycle_len * cycle_mult**i epochs (`schedule.sgdr_cycles`), in each a cosine
        from lr_max down to 0 with no warm-up (fastai's SchedCos(lr_max, 0)), momentum
        constant at `mom` (None: the optimizer's, as fit_flat_cos). lr_max: as `fit`'s lr (a
        slice for layer groups); default 1e-3.
        reset_opt: a new optimizer first (`create_opt`: moments and step counts afresh), as
        fastai's. start_epoch: resume there (after `load`).

        Each cycle is the optimizer's one-cycle schedule with div=1, div_final=inf and
        pct_start=`NO_WARMUP`, set again at the start of each epoch at the epoch's position in
        its cycle (fastai's ParamScheduler resets its position at each epoch too). fastai
        places a cycle's boundaries with float32 fractions of the fit, so at some cycle
        starts its first step gets the end of the cycle before (an lr near 0) instead of
        lr_max; here every cycle starts at lr_max. cycle_mult=1 (equal cycles) works here;
        fastai divides by zero."""
        cbs = _as_cbs(cbs)
        cycles = sgdr_cycles(n_cycles, cycle_len, cycle_mult)
        n_epoch, start_epoch = check_epochs(sum(n for _, n in cycles), start_epoch)
        self._check_not_destroyed()
        if check_bool("reset_opt", reset_opt):
            self.create_opt()
        mom = self._resting_mom() if mom is None else mom
        moms = (mom, mom, mom)
        set_one_cycle = partial(
            lg.one_cycle_setter(self.opt, moms),
            div=1.0,
            div_final=math.inf,
            pct_start=NO_WARMUP,
            moms=moms,
        )
        lrs = self.lr_range(self._default_lr(DEFAULT_LR) if lr_max is None else lr_max, "lr_max")
        n_batches = batches_per_epoch(self._train_dl())
        restarts = _WarmRestarts(cycles, n_batches, set_one_cycle)
        total, start_step = restarts.position(start_epoch)
        set_one_cycle(total, self.group_map.expand(lrs), start_step=start_step)
        lg.set_wd(self.opt, self.group_map, wd, self.wd)
        self._scheduled_fit(n_epoch, start_epoch, start_step, [restarts, *cbs])

    def _scheduled_fit(
        self, n_epoch: int, start_epoch: int, start_step: int, cbs: list[Callback]
    ) -> None:
        """`_fit` with the optimizer's device schedule (set by the caller) setting lr and mom,
        its host mirror `_sched_step` starting at `start_step`."""
        self._one_cycle_fit, self._sched_step = True, start_step
        try:
            self._fit(n_epoch, start_epoch, cbs)
        finally:
            self._one_cycle_fit = False

    def fine_tune(
        self,
        epochs: int,
        base_lr: float = 2e-3,
        freeze_epochs: int = 1,
        lr_mult: float = 100,
        pct_start: float = 0.3,
        div: float = 5.0,
        **kwargs: Any,
    ) -> None:
        """Transfer learning as fastai v2: `freeze_epochs` one-cycle epochs of the head only
        (max_lr slice(base_lr), pct_start 0.99), then unfreeze and `epochs` one-cycle epochs
        with max_lr slice(base_lr/2/lr_mult, base_lr/2). kwargs go to both fit_one_cycle
        calls (div_final, moms, wd, cbs)."""
        epochs = check_int("epochs", epochs, 1)
        freeze_epochs = check_int("freeze_epochs", freeze_epochs, 0)
        self._train_dl()  # a learner without training data says so before freezing
        frozen_lr, unfrozen_lr = lg.fine_tune_lrs(base_lr, lr_mult)
        self.freeze()
        if freeze_epochs:
            self.fit_one_cycle(freeze_epochs, frozen_lr, pct_start=0.99, **kwargs)
        self.unfreeze()
        self.fit_one_cycle(epochs, unfrozen_lr, pct_start=pct_start, div=div, **kwargs)

    def lr_find(
        self,
        start_lr: float | slice | Sequence[float] = 1e-7,
        end_lr: float | slice | Sequence[float] = 10,
        num_it: int = 100,
        stop_div: bool = True,
        show_plot: bool | None = None,
        suggest_funcs: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
        *,
        wd: float | Sequence[float] | None = None,
    ) -> Suggestions | tuple[float, ...]:
        """Learning-rate range test: train up to `num_it` batches while every group's lr
        grows exponentially from start_lr to end_lr (as `fit`'s lr), stopping once the
        smoothed loss passes 4x its best (stop_div); no validation. Afterwards the learner
        is exactly as before and the recorder keeps the sweep (`callback.lr_finder.sweep`).
        Returns Suggestions(valley, steep, minimum) from `schedule.suggest_lrs` (kept as
        `recorder.suggestions`, which `recorder.plot()` marks); fastai's SuggestedLRs with
        suggest_funcs, or on v2's data (SuggestedLRs(valley=...), show_plot or not).

        show_plot: draw the curve now. None (the default) is fastai v2's True when
        `suggest_funcs` is given (a v2-only argument: fastbook's
        `learn.lr_find(suggest_funcs=(minimum, steep))` draws its plot) or the data is v2's
        (`ImageDataLoaders`, a DataBlock's: a plain `learn.lr_find()` then draws the curve with
        valley marked and returns SuggestedLRs(valley=...), as fastai v2's); for fastai v1's
        data (`ImageDataBunch`: the lesson's `learn.lr_find()` then `learn.recorder.plot()`
        draws it once) it is False and v1's line says how to draw it
        (`show_plot=False` draws nothing and prints nothing).

        suggest_funcs: fastai v2's, suggestion functions f(lrs, losses, num_it) -> (lr,
        (lr, loss)) such as `valley`, `steep`, `minimum`, `slide` (`schedule`); then the
        result is fastai's SuggestedLRs, a namedtuple of their lrs named after them in the
        order given (`lr_min, lr_steep = learn.lr_find(suggest_funcs=(minimum, steep))`;
        `callback.lr_finder.suggest`), and show_plot draws `recorder.plot_lr_find` with
        their points marked.

        wd (fastai v1's): the weight decay of the sweep (a float, or one per layer group, as
        `fit`'s); None: the optimizer's current one. Put back afterwards with the rest."""
        num_it = check_int("num_it", num_it, 2)
        if suggest_funcs is None and getattr(self.data, "fastai_version", 1) == 2:
            suggest_funcs = (valley,)  # fastai v2's default: SuggestedLRs(valley=...)
        v1_form = show_plot is None and suggest_funcs is None  # v1 printed how to plot
        show_plot = (
            suggest_funcs is not None if show_plot is None else check_bool("show_plot", show_plot)
        )
        if wd is not None:
            lg.wd_range(wd, len(self.layer_groups))  # checked before the sweep begins
        funcs = None if suggest_funcs is None else check_suggest_funcs(suggest_funcs)
        starts = self.lr_range(start_lr, "start_lr", zero=False)  # an exponential sweep
        ends = self.lr_range(end_lr, "end_lr", zero=False)
        n_epoch = math.ceil(num_it / batches_per_epoch(self._train_dl()))
        sweep(self, LRFinder(starts, ends, num_it, stop_div), n_epoch, wd)
        rec = self.recorder
        lrs = rec.lrs
        rec.suggestions = suggest_lrs(lrs, rec.losses, num_it)
        _warn_few_points(len(suggestion_window(lrs, rec.losses, num_it)[0]), len(lrs), num_it)
        rec.suggestion_points = suggest((valley, steep, minimum), lrs, rec.losses, num_it)[1]
        if funcs is None:
            if show_plot:
                rec.show(rec.plot())
            elif v1_form and is_main_process():  # fastai v1's line, so a v2 user knows
                print(
                    "LR Finder is complete, type learn.recorder.plot() to see the graph (or "
                    "pass show_plot=True)"
                )
            return rec.suggestions
        suggested, points = suggest(funcs, lrs, rec.losses, num_it)
        if show_plot:
            rec.show(rec.plot_lr_find(suggestions=points, nms=suggested._fields))
        return suggested

    # ---- inference (fastcore_ext.inference) ---------------------------------------------
    def get_preds(
        self,
        ds_type: str | None = None,
        with_loss: bool = False,
        with_input: bool = False,
        dl: Iterable[Any] | None = None,
        act: Callable[[torch.Tensor], torch.Tensor] | None = None,
        reorder: bool = True,
        *,
        ds_idx: int | None = None,
        with_decoded: bool = False,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """One inference pass over a data set (ds_type 'valid', the default, 'train', or
        'test', fastai v1's test set of ``data.add_test``; or any `dl` of (x, y)), in eval
        mode under torch.inference_mode, in the learner's precision and memory layout.
        ds_idx: fastai v2's name for the data set, 1 valid or 0 train (give ds_type or
        ds_idx, not both). Returns (probs float32 [N, c], targets [N]), then the predicted
        classes (int64 [N], the argmax of probs) with with_decoded, then per-item losses
        with with_loss, and the inputs in front with with_input: fastai v2's order (inputs,
        probs, targets, decoded, losses). cbs: callbacks for this pass only, as fastai's.
        Details in `fastcore_ext.inference.get_preds`."""
        ds_type = _data_set("get_preds", ds_type, ds_idx)
        with self.added_cbs(cbs or []):
            return inference.get_preds(
                self, ds_type, with_loss, with_input, dl, act, reorder, with_decoded
            )

    def validate(
        self,
        ds_type: str | Iterable[Any] | None = None,
        dl: Iterable[Any] | None = None,
        *,
        ds_idx: int | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> list[float]:
        """[loss, *metrics] over the whole validation set ('valid', the default), the
        training set in order ('train') or any `dl` of (x, y) batches (also given first, as
        fastai v1's `learn.validate(learn.data.valid_dl)`), computed as the epoch table
        computes valid_loss and the metrics (fastai's `learn.validate()`); ds_idx: fastai
        v2's name for the data set (1 valid, 0 train). In eval mode under
        torch.inference_mode, in the learner's precision, as every validation phase (what a
        fit runs in float32 is its training batches only), so right after a fit it gives the
        table's last row exactly; the recorder is left alone. cbs: callbacks for this pass
        only, as fastai's. Details in `fastcore_ext.inference.validate`."""
        if ds_type is not None and not isinstance(ds_type, str) and dl is None:
            ds_type, dl = None, ds_type
        with self.added_cbs(cbs or []):
            return inference.validate(self, _data_set("validate", ds_type, ds_idx), dl)

    def predict(self, item: Any, with_input: bool = False) -> tuple[Any, ...]:
        """Classify one image: a file path, a PIL image, or a tensor / array [3, H, W] or
        [H, W, 3] of uint8 or of floats in [0, 1] (`open_image(f).data`). It goes through the
        validation transform (presize, center crop, normalization: `data.preprocess`), then
        the model as in get_preds. Returns (class, class index, probabilities float32
        Tensor[c] on the CPU), as fastai v1 and v2: the class a `Category`, its name as a str
        with v1's `.obj` (the name) and `.data` (the index), the index an int64 0-dim
        tensor. with_input (fastai v2's): the input first, as the model saw it with the
        normalization undone (int64 [3, S, S] pixels in [0, 255], as ``dls.decode``)."""
        return inference.predict(self, item, with_input)

    def summary(self) -> inference.Summary:
        """fastai v2's `learn.summary()`: the model's layers with their output shapes and
        parameter counts on a batch of the data's size, the totals, the optimizer, the loss,
        what is frozen and the callbacks (`fastcore_ext.inference.summary`)."""
        return inference.summary(self)

    def show_results(
        self,
        ds_type: str | None = None,
        rows: int = 3,
        figsize: tuple[float, float] | None = None,
        max_n: int | None = None,
        *,
        ds_idx: int | None = None,
        nrows: int | None = None,
        ncols: int | None = None,
        ctxs: Any = None,
        shuffle: bool = True,
        dl: Any = None,
    ) -> Any:
        """fastai's `learn.show_results()`: rows x rows items (or max_n) spread over the
        'valid' or 'train' set (v1's ds_type or v2's ds_idx; shuffle=False: its first
        items; or those of v2's `dl`, e.g. a test_dl), titled with their actual and predicted
        classes, green when right, red when wrong, in v2's nrows x ncols grid or the Axes
        `ctxs`; saved as a PNG outside notebooks. Returns the matplotlib Figure (None with
        ctxs); details in `fastcore_ext.inference.show_results`."""
        ds_type = _data_set("show_results", ds_type, ds_idx)
        return inference.show_results(
            self, ds_type, rows, figsize, max_n, nrows=nrows, ncols=ncols, ctxs=ctxs,
            shuffle=shuffle, dl=dl,
        )  # fmt: skip

    def tta(
        self,
        ds_type: str | None = None,
        dl: Any = None,
        n: int = 4,
        beta: float | None = 0.25,
        use_max: bool = False,
        *,
        ds_idx: int | None = None,
    ) -> tuple[Any, torch.Tensor]:
        """Test-time augmentation, as fastai v2's `Learner.tta`: n passes with the training
        augmentation (repeatable), averaged (or max with use_max), blended with one plain
        pass: (torch.lerp(augmented, plain, beta), targets); details in
        `fastcore_ext.inference.tta`. ds_type 'valid' (the default) or 'train', or fastai
        v2's ds_idx (1 or 0)."""
        n = check_int("n", n, 1)
        ds_type = _data_set("tta", ds_type, ds_idx)
        return inference.tta(self, ds_type, dl, n, beta, use_max)

    def interpret(self, ds_type: str = "valid", tta: bool = False) -> ClassificationInterpretation:
        """fastai v1's `learn.interpret()`: `ClassificationInterpretation.from_learner(self,
        ds_type, tta=tta)` (tta: from v1's `TTA` predictions instead of one plain pass)."""
        return ClassificationInterpretation.from_learner(self, ds_type=ds_type, tta=tta)

    def TTA(  # fastai v1's name
        self,
        beta: float | None = 0.4,
        scale: float = 1.35,
        ds_type: str = "valid",
        with_loss: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """fastai v1's test-time augmentation: a plain pass and 8 fixed passes (zoom by
        `scale` at each corner, mirrored or not, with the training augmentation's random
        rotation, warp and lighting), blended as beta * plain + (1 - beta) * mean(passes).
        Returns (preds, targets), (preds, targets, losses) with with_loss, or (plain,
        augmented mean, targets) with beta=None; details and the differences from v1 in
        `fastcore_ext.inference.tta_v1`. fastai v2's spelling is `tta`."""
        return inference.tta_v1(self, beta, scale, ds_type, with_loss)

    # ---- layer groups, learning rates, freezing (fastcore_ext.layer_groups) ---------------
    def _default_lr(self, default: float) -> float | slice | Sequence[float]:
        """The lr of a fit called without one: `Learner(lr=...)`'s, else `default`."""
        return default if getattr(self, "lr", None) is None else self.lr

    def lr_range(
        self, lr: float | slice | Sequence[float], name: str = "lr", zero: bool = True
    ) -> list[float]:
        """One learning rate per layer group from a float, slice(a, b), slice(b) or a
        sequence (see `fit`; 0 allowed unless `zero` is False). `name` is the argument named
        in errors; a slice that goes down is warned of (`layer_groups.lr_range`). A fit at
        lr 0 is legitimate (it refreshes BatchNorm's statistics only)."""
        return lg.lr_range(lr, len(self.layer_groups), name, zero)

    def _clear_schedule(self) -> None:
        """Take the optimizer's one-cycle schedule off (a plain fit, lr_find): its param
        groups keep the momentum of the schedule's last step where their own is not 0, as
        fastai's hypers keep what its ParamScheduler set last (the next fit sets the lr)."""
        opt = self.opt
        clear = getattr(opt, "clear_schedule", None)
        if clear is not None:
            last = self._scheduled_moms()
            clear()
            own = [h.get("mom") for h in getattr(opt, "hypers", [])]
            if last is not None and len(own) == len(last) and None not in own + last:
                opt.set_hyper("mom", [m if o else o for m, o in zip(last, own, strict=True)])
        self._one_cycle_fit = False

    def _scheduled_moms(self) -> list[float | None] | None:
        """The momentum of each param group at the last step of the optimizer's one-cycle
        schedule (the last batch's: `hypers_step`, else, after lr_find's restore or a `load`,
        the step before the schedule's position); None when none is set or no step of it
        ran."""
        opt = self.opt
        sched = getattr(opt, "one_cycle", None)
        if sched is None:
            return None
        step = getattr(opt, "hypers_step", None)
        if step is None:
            position = opt.schedule_step
            if position == 0:
                return None
            step = position - 1
        moms = opt.hypers_at(min(step, sched["total_steps"] - 1))[1]
        return [m if "mom" in h else None for m, h in zip(moms, opt.hypers, strict=True)]

    def _resting_mom(self) -> float:
        """The momentum a fit that schedules none runs at, as fastai's (fit_flat_cos, fit_sgdr
        without mom): the last step's of a one-cycle schedule still set, else the
        optimizer's own (the first param group's; 0.9 for a new Adam)."""
        moms = self._scheduled_moms() or [h.get("mom") for h in getattr(self.opt, "hypers", [])]
        return float(moms[0]) if moms and moms[0] is not None else 0.9

    def freeze_to(self, n: int) -> None:
        """Freeze the layer groups before index n (negative n counts from the end) and make
        the others trainable, normalization layers excepted (fastai's train_bn, the
        learner's `train_bn`): frozen
        parameters get no gradient and no step (fastcore_ext.layer_groups.freeze_to). The
        optimizer's per-parameter state (Adam's moments and step counts, SGD's momentum) is
        cleared, as fastai's freeze_to does (`opt.clear_state()`): the stage after
        `unfreeze()` starts its moments afresh. The one-cycle position is not state.

        Without a `splitter`, parameters you froze yourself (`requires_grad_(False)`, not
        by an earlier freeze) stay frozen, as under fastai's default splitter
        (`trainable_params`); with one, its groups are frozen and unfrozen whole."""
        self._check_not_destroyed()
        leave: set[int] = set()
        if self.splitter is default_splitter:
            leave = {
                id(p)
                for group in self.layer_groups
                for p in group
                if not p.requires_grad and id(p) not in self._frozen_by_freeze
            }
        trainable = self._norm_params if self.train_bn else set()
        self._frozen_by_freeze = lg.freeze_to(self.layer_groups, n, trainable, leave)
        self.opt.clear_state()

    def freeze(self) -> None:
        """Train only the last layer group (plus normalization layers everywhere)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every layer group."""
        self.freeze_to(0)

    @property
    def metrics(self) -> list[Callable[..., Any]]:
        """The metrics computed on the validation set after each epoch (a list). Setting it
        checks them as the constructor does: None or [] for none, one metric or several."""
        return self._metrics

    @metrics.setter
    def metrics(self, value: Any) -> None:
        self._metrics = _check_metrics(value, getattr(self.data, "c", None))

    # ---- data ---------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        """The data the learner trains and validates on. Setting it (fastai v1's progressive
        resizing: `learn.data = data_256`) checks the new data: a ValueError when its class
        count differs from the model's outputs where the model tells them (an nn.Sequential
        ending in a Linear, as create_cnn's head); a warning when the same count names other
        classes, or the same in another order (the model's outputs then stand for other
        classes until trained), or when the count differs from the old data's and the
        model's outputs are unknown. The same classes swap silently."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._check_not_destroyed()
        check_data(value)
        _check_class_count(self.model, value)
        _warn_other_classes(self._output_classes, getattr(value, "classes", None))
        self._data = value

    @property
    def dls(self) -> Any:
        """The data (fastai v2's name for `learn.data`; setting it sets `data`)."""
        return self.data

    @dls.setter
    def dls(self, value: Any) -> None:
        self.data = value

    # ---- misc -----------------------------------------------------------------------------
    def no_bar(self) -> _ProgressToggle:
        """Turn the progress bar off (the epoch table still prints). Used as
        `with learn.no_bar(): ...` the bar comes back after the block; called plainly, it
        stays off (`learn.progress.show_bar = True` turns it on again)."""
        return _ProgressToggle(self.progress, "show_bar")

    def no_logging(self) -> _ProgressToggle:
        """fastai v2's `with learn.no_logging(): ...`: no epoch table (header and rows)
        inside the block; the bar still shows, and the recorder still records. Called
        plainly, the table stays off (`learn.progress.show_table = True` turns it on)."""
        return _ProgressToggle(self.progress, "show_table")

    def no_mbar(self) -> _ProgressToggle:
        """fastai v2's `with learn.no_mbar(): ...`: without its master bar fastai writes no
        epoch table (the batch bars stay); here the same as `no_logging()`, there being one
        bar per phase and no master bar."""
        return self.no_logging()

    def to_channels_last(self) -> Learner:
        """Store the model's 4-d weights and feed its inputs channels-last (NHWC), the fast
        layout for convolutions on GPUs and on CPUs with bf16 units. Returns self."""
        self._check_not_destroyed()
        self.model.to(memory_format=torch.channels_last)
        self.channels_last = True
        self._auto_layout = False
        return self

    to_channelslast = to_channels_last  # fastai v2's spelling

    def compile(
        self,
        mode: str | bool | None = None,
        *,
        fullgraph: bool = False,
        dynamic: bool | None = None,
        backend: str | Callable[..., Any] = "inductor",
        options: dict[str, Any] | None = None,
    ) -> Learner:
        """Run every forward pass of the model from now on (training, validation, get_preds,
        predict, tta) through `torch.compile(learn.model, mode=mode, ...)`, the arguments
        being torch.compile's; `learn.compile(False)` goes back to the eager model. Off by
        default: on the 2-core AMD EPYC Zen 4 we measured, a resnet18 training step (64 px,
        bs 64) was no faster compiled (5-6 % slower on a quiet machine), fp32 and bf16
        alike, after about 30 s of compiling (bench/bench_compile.py, bench/README.md); on
        CUDA it is not measured yet (bench/device_check.sh runs that
        benchmark). Returns self.

        What is compiled: the model's forward and, through AOTAutograd, its backward. The
        loss, our fused optimizer step (a kernel launch of its own) and the data pipeline
        run as before. On CUDA, mode="reduce-overhead" also captures the compiled forward
        and backward in CUDA graphs (one replay each per step); outputs are copied out of
        the graphs' memory. `learn.model` stays the user's module (`learn.compiled.module`
        is the OptimizedModule around it, sharing its parameters), so save/load, export,
        freeze and state_dict keys are unchanged; module hooks added or removed later are
        seen (a change of hooks compiles anew). Changing precision (to_bf16,
        to_fp32), layout (to_channels_last) or freezing after compile recompiles on the
        next forward pass (torch.compile's guards); validation and get_preds compile their
        own variant for eval mode under inference_mode, and a last smaller batch one with
        dynamic shapes. torch keeps at most torch._dynamo.config.recompile_limit (8)
        variants for all compiled models of a process together and runs the model eagerly
        beyond (a logged warning only), so compile() first empties that cache
        (torch.compiler.reset()): other compiled learners of the process recompile on their
        next call. Under DDP (several processes) the training forward stays eager, through
        DistributedDataParallel.

        mode: None or True (torch's default), "reduce-overhead", "max-autotune", ...
        (torch._inductor.list_mode_options()), or False (back to eager). fullgraph,
        dynamic, backend, options: as torch.compile. Raises TypeError / ValueError naming a
        bad argument, and fastcore_ext.compiling.CompileError when torch.compile cannot run
        here (Python version, no C++ compiler for inductor on the CPU, no Triton on CUDA)
        or, at the first forward pass, when its backend fails on the model."""
        if mode is False:
            self.compiled = None
            return self
        self.compiled = compile_forward(
            self.model,
            self.data.device,
            mode=None if mode is True else mode,
            fullgraph=fullgraph,
            dynamic=dynamic,
            backend=backend,
            options=options,
        )
        return self

    # ---- several processes ----------------------------------------------------------------
    def distrib(self, timeout: float = DEFAULT_TIMEOUT) -> Learner:
        """Train on every process of a torchrun launch (DDP, fastcore_ext.distributed):
        process group, GPU pinning, sharded loaders, the model wrapped during each fit.
        Done by itself when created under torchrun; a no-op in one process. Returns self."""
        ddp.enter(self, timeout)
        return self

    def distrib_ctx(
        self, timeout: float = DEFAULT_TIMEOUT
    ) -> contextlib.AbstractContextManager[Learner]:
        """`with learn.distrib_ctx(): ...` runs the block in distributed mode (`distrib`);
        on leaving, the loaders yield the whole data set again and a process group the
        block created is destroyed (unless the learner was already distributed before)."""
        return ddp.distrib_ctx(self, timeout)

    # ---- mixed precision (fastcore_ext.callback.mixed_precision) ---------------------------
    @property
    def mixed_precision(self) -> MixedPrecision | None:
        """The attached MixedPrecision callback, or None (fp32)."""
        return mixed_precision.attached(self.cbs)

    @property
    def precision(self) -> str:
        """'fp32', 'bf16' or 'fp16': how forward passes run (see to_bf16 / to_fp16)."""
        mp = self.mixed_precision
        return mp.name if mp is not None else "fp32"

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype (torch.bfloat16 / torch.float16), or None in fp32."""
        mp = self.mixed_precision
        return mp.dtype if mp is not None else None

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        """fp16's loss scaler, or None."""
        mp = self.mixed_precision
        return mp.scaler if mp is not None else None

    def to_bf16(self, fp32_epochs: int = 0) -> Learner:
        """Forward passes and the loss under torch.autocast(bfloat16) (CPU or CUDA), no loss
        scaling; fast where bf16 is native, best with channels-last (elsewhere torch emulates
        it, many times slower than float32: a warning says so). fp32_epochs: the
        learner's first epochs (over all its fits) in float32 (precision 'auto' uses 1 for a
        model trained from scratch). Returns self; details in
        fastcore_ext.callback.mixed_precision."""
        mixed_precision.use(self, mixed_precision.bf16(self.data.device, fp32_epochs))
        return self

    def to_fp16(self) -> Learner:
        """Forward passes and the loss under torch.autocast(float16) with a GradScaler on a
        GPU; a step whose grads overflowed is skipped. Returns self; details in
        fastcore_ext.callback.mixed_precision. float16 with loss scaling is a GPU recipe: with
        data on the CPU (where fastai's to_fp16 trains in float32, its autocast('cuda')
        disabled with a warning) a warning says so and the learner keeps its precision
        (by default 'auto': bf16 where the CPU runs it natively), so fastbook's
        ``vision_learner(dls, resnet50).to_fp16()`` runs as written (`Learner(precision=
        'fp16')` on the CPU is refused: that is this library's own argument)."""
        if self.data.device.type != "cuda":
            warn_user(
                f"to_fp16: float16 with loss scaling is a GPU recipe and data.device is "
                f"{self.data.device}: the learner keeps its precision, {self.precision!r} "
                f"(learn.to_bf16() and learn.to_fp32() choose one on the CPU)"
            )
            return self
        mixed_precision.use(self, mixed_precision.fp16(self.data.device))
        return self

    def to_fp32(self) -> Learner:
        """Back to plain float32 forward passes (no autocast, no scaler); channels-last goes
        too when precision='auto' chose it. Returns self."""
        self._check_not_destroyed()
        if self._auto_layout:
            self.model.to(memory_format=torch.contiguous_format)
            self.channels_last = self._auto_layout = False
        mixed_precision.use(self, None)
        return self

    # ---- memory (fastai v1's purge / destroy) ---------------------------------------------
    def purge(self, clear_opt: bool = True) -> Learner:
        """fastai v1's `learn.purge()`: release what the learner holds beyond its weights, so
        its memory (GPU memory above all) can be reused: the parameters' gradients, the last
        batch, prediction and loss, and with clear_opt the
        optimizer's state (a new optimizer over the same layer groups, freezing and weight
        decay: the next fit starts its moments afresh, as after v1's purge); then Python's
        garbage collection and, on CUDA, torch's cached blocks. The model, the data, the
        callbacks and the recorder stay. Returns self."""
        check_bool("clear_opt", clear_opt)
        self._check_not_destroyed()
        for p in self.model.parameters():
            p.grad = None
        if clear_opt:
            self.create_opt()
        self._release_memory()
        return self

    def destroy(self) -> None:
        """fastai v1's `learn.destroy()`: free the model, the optimizer and the data, leaving
        a shell that holds no tensor (`learn.recorder`'s floats stay); any later use of the
        model or the data raises a RuntimeError saying the learner was destroyed."""
        self.model = _DestroyedModel()
        self.opt = self._data = _Destroyed()
        self.layer_groups = []
        self.compiled = self.ddp_model = None
        self._release_memory()
        print("this Learner object self-destroyed - it still exists, but no longer usable")

    def _check_not_destroyed(self) -> None:
        """RuntimeError after `destroy()`, for the methods that would otherwise fail on the
        empty shell with an error about something else (its optimizer, model or groups)."""
        if isinstance(self.model, _DestroyedModel):
            raise RuntimeError(_DESTROYED)

    def _forget_batch(self) -> None:
        """Drop the loop's references to the last loader, batch, prediction and loss graph
        (`loss`, a detached number, stays, as fastai's)."""
        self.dl = self.xb = self.yb = self.pred = self.loss_grad = None

    def _release_memory(self) -> None:
        """purge's and destroy's last step: forget the last batch, collect the garbage and,
        on CUDA, return torch's cached blocks."""
        self._forget_batch()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---- files (fastcore_ext.checkpoint, fastcore_ext.export) ---------------------------
    @property
    def path(self) -> DataPath:
        """The folder of this learner's files (a pathlib Path with fastai's `ls()`): `export`
        writes there, `save` under path/model_dir. Setting it checks that it is not a file
        (nor inside one)."""
        return self._path

    @path.setter
    def path(self, value: str | os.PathLike) -> None:
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"path should be a str or Path, got {type(value).__name__}")
        folder = Path(value).expanduser()  # '~/runs' is the home folder's, not a '~' folder
        _check_folder("path", folder, folder)
        _check_folder("model_dir", self._model_dir, folder / self._model_dir)
        self._path = DataPath(folder)  # with fastai's ls(): learn.path.ls(file_exts='.pkl')

    @property
    def model_dir(self) -> Path:
        """The folder of `save` / `load`'s checkpoints, relative to `path` (or absolute).
        Setting it checks that path/model_dir is not a file (nor inside one)."""
        return self._model_dir

    @model_dir.setter
    def model_dir(self, value: str | os.PathLike) -> None:
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"model_dir should be a str or Path, got {type(value).__name__}")
        folder = Path(value).expanduser()
        _check_folder("model_dir", folder, self._path / folder)
        self._model_dir = folder

    def _model_file(self, name: str | os.PathLike, arg: str = "name") -> Path:
        return model_file(self.path / self.model_dir, name, arg)

    def save(self, name: str | os.PathLike, with_opt: bool = True) -> Path:
        """Save a checkpoint to path/model_dir/`name`.pth, atomically: the model, the epochs
        done, the RNG states, the data's classes (which `load` checks) and, with_opt, the
        optimizer (moments, one-cycle schedule, step counter) and fp16's scaler: what `load` +
        `fit_one_cycle(start_epoch=...)` need to resume exactly (fastcore_ext.checkpoint).
        Returns the file's path."""
        path = self._model_file(name)
        return atomic_save(self.checkpoint(with_opt), path)

    def checkpoint(self, with_opt: bool = True) -> dict[str, Any]:
        """What `save` writes, as a dict whose tensors are copies on the CPU (training on
        does not change it): a snapshot to write later with `checkpoint.atomic_save(state,
        path)`, which `load` then reads (the command line's train keeps one per epoch, for
        --resume)."""
        opt = self.opt if check_bool("with_opt", with_opt) else None
        return checkpoint_state(
            self.model,
            opt,
            self.epochs_done,
            getattr(self.data, "seed", None),
            self.scaler,
            self.group_map.to_dict(),
            self.epochs_trained,
            getattr(self.data, "classes", None),
            self._item_ids("train_ds"),
        )

    def load(
        self,
        name: str | os.PathLike,
        with_opt: bool = True,
        strict: bool = True,
        with_rng: bool | None = None,
        *,
        device: str | torch.device | None = None,
    ) -> Learner:
        """Load path/model_dir/`name`.pth (from `save`, or a plain model state_dict); the
        file's epoch counts become `epochs_done` and `epochs_trained`. with_opt: the optimizer
        state too; strict: the file must fit the model exactly and have been saved for the
        same classes, in the same order, when it names them (False: what matches, with a
        warning; a file of which nothing fits is an error); with_rng (default with_opt): the
        RNG states. An optimizer state saved with other param groups (another wd_bn_bias, or a
        file from before it) is rearranged for this learner's. device (fastai's): checked (a
        device this machine lacks is an error, as fastai's); the tensors are read onto the
        model's device whatever it says (fastai's maps them there, then copies them into the
        model as well). Returns self; details in
        fastcore_ext.checkpoint.load_checkpoint."""
        check_bool("with_opt", with_opt)
        check_bool("strict", strict)
        if device is not None:
            try:
                kind = torch.device(device).type
            except (RuntimeError, TypeError) as e:
                raise ValueError(f"device: expected a torch device, got {device!r}") from e
            backend = getattr(torch, kind, None) if kind != "cpu" else None
            if kind != "cpu" and not (backend is not None and backend.is_available()):
                raise ValueError(f"device: {device!r} is not available on this machine")
        if with_rng is not None:
            check_bool("with_rng", with_rng)
        regroup = partial(
            lg.regroup_state_dict,
            group_map=self.group_map,
            groups=self.layer_groups,
            norm_bias=self._norm_bias,
            current=self.opt.param_groups,
        )
        path = self._model_file(name)
        if not path.is_file():
            given = self.path / self.model_dir / Path(name).expanduser()
            raise FileNotFoundError(_missing_checkpoint(name, path, given))
        self.epochs_done, self.epochs_trained = load_checkpoint(
            path,
            self.model,
            self.opt if with_opt else None,
            strict=strict,
            with_rng=with_opt if with_rng is None else with_rng,
            data_seed=getattr(self.data, "seed", None),
            scaler=self.scaler,
            regroup=regroup,
            classes=getattr(self.data, "classes", None),
            valid_items=self._item_ids("valid_ds"),
        )
        self._output_classes = getattr(self.data, "classes", None)
        return self

    def _item_ids(self, ds_name: str) -> torch.Tensor | None:
        """`checkpoint.item_ids` of data.`ds_name`'s items, relative to data.path; None where
        the data has no items."""
        items = getattr(getattr(self.data, ds_name, None), "items", None)
        if items is None:
            return None
        return item_ids(items, getattr(self.data, "path", "."))

    def export(self, fname: str | os.PathLike = DEFAULT_EXPORT) -> Path:
        """Write what inference needs to path/`fname`: the weights and a JSON description
        (architecture, head, classes, normalization, input size and presize, the labelling
        rule and the metrics where they are the library's) with no pickled code.
        `load_learner` (fastcore_ext.exported) rebuilds the learner from it. Supports
        create_cnn models (a torchvision body + create_head) and xresnets. A metric of
        your own is not kept (code is not exported): a warning names it. Returns the file's
        path."""
        if not isinstance(fname, (str, os.PathLike)) or not str(fname):
            raise TypeError(f"fname should be a non-empty str or Path, got {fname!r}")
        self._check_not_destroyed()
        file = self.path / Path(fname).expanduser()  # an absolute fname stands alone
        if os.path.isdir(file):
            raise ValueError(f"fname should name a file, got {fname!r}: {file} is a folder")
        left = [metric_name(m) for m in self.metrics if describe_metric(m) is None]
        if left:
            warn_user(
                f"export: the metrics {left} are not kept (an export holds no code; it names "
                "the library's metric functions): set learn.metrics after load_learner"
            )
        return export_model(self.model, self.data, self.precision, file, self.metrics)


def _no_training_batch(dl: Any, epoch: int) -> str:
    """The error of a training pass that met no batch (nothing trained: its loss would be
    nan), saying why where the loader knows: every image unreadable."""
    bad = list(getattr(dl, "bad_items", []))
    if not bad:
        return f"epoch {epoch}: the training loader yielded no batch; nothing was trained"
    return (
        f"epoch {epoch}: the training loader yielded no batch; nothing was trained: its "
        f"{len(bad)} unreadable image(s) ({shown_names(bad)}) left no batch of at least 2 images "
        "(verify_images(files) prints why each cannot be read)"
    )


class _WarmRestarts(Callback):
    """fit_sgdr's schedule: before each epoch's training, the optimizer's one-cycle
    (`set_one_cycle`, SGDR's arguments bound) is set to the epoch's cycle and to its first
    step in it, with the schedule's current lr_max (what ReduceLROnPlateau may have
    lowered); the learner's host mirror of the step counter follows."""

    order = -20  # before the callbacks that read the schedule

    def __init__(
        self, cycles: list[tuple[int, int]], n_batches: int, set_one_cycle: Callable[..., None]
    ) -> None:
        super().__init__()
        self.cycles, self.n_batches, self.set_one_cycle = cycles, n_batches, set_one_cycle

    def position(self, epoch: int) -> tuple[int, int]:
        """(steps of the cycle holding `epoch`, the step of the cycle that epoch starts at)."""
        for first, length in self.cycles:
            if first <= epoch < first + length:
                return length * self.n_batches, (epoch - first) * self.n_batches
        raise ValueError(f"epoch should be < {sum(n for _, n in self.cycles)}, got {epoch}")

    def before_train(self) -> None:
        learn = self.learn
        total, step = self.position(learn.epoch)
        self.set_one_cycle(total, learn.opt.one_cycle["lr_max"], start_step=step)
        learn._sched_step = step


_DESTROYED = "this Learner was destroyed (learn.destroy()): create a new one"


def _destroyed(_self: object) -> Any:
    raise RuntimeError(_DESTROYED)


class _DestroyedModel(nn.Module):
    """learn.model after destroy(): no parameters; calling it raises."""

    def forward(self, *args: Any) -> torch.Tensor:
        raise RuntimeError(_DESTROYED)


class _Destroyed:
    """learn.data and learn.opt after destroy(): every attribute the learner reads of them
    raises."""

    train_dl = valid_dl = device = classes = c = path = preprocess = spec = seed = property(
        _destroyed
    )
    train_ds = valid_ds = size = bs = stats = param_groups = state = property(_destroyed)
    step = zero_grad = state_dict = load_state_dict = property(_destroyed)


def _check_event(arg: str, name: object) -> None:
    """ValueError naming `arg` unless `name` is an event of the loop (EVENTS, CANCEL_EVENTS)."""
    if name not in EVENTS and name not in CANCEL_EVENTS:
        raise ValueError(f"{arg} should be one of {EVENTS + CANCEL_EVENTS}, got {name!r}")


def _data_set(method: str, ds_type: str | None, ds_idx: int | None) -> str:
    """The ds_type of a pass given as fastai v1's `ds_type` or v2's `ds_idx` (at most one);
    'valid' when neither is given. TypeError when both are, ValueError for another ds_idx."""
    if ds_idx is None:
        return "valid" if ds_type is None else ds_type
    if ds_type is not None:
        raise TypeError(
            f"{method}: give ds_type (fastai v1's name) or ds_idx (v2's), not both; got "
            f"ds_type={ds_type!r} and ds_idx={ds_idx!r}"
        )
    return inference.ds_idx_set(ds_idx)


def _as_cbs(cbs: Callback | Sequence[Callback] | None) -> list[Callback]:
    """`cbs` as a list of callbacks; a Callback class (``cbs=SaveModelCallback``) becomes an
    instance with its default arguments, as fastai's add_cb makes it."""
    if cbs is None:
        return []
    single = isinstance(cbs, Callback) or _is_callback_class(cbs)
    if not single and (not isinstance(cbs, Iterable) or isinstance(cbs, str | bytes)):
        cbs = [cbs]  # one object that is no Callback: add_cb says what it should be
    listed = [cbs] if single else list(cbs)
    return [cb() if _is_callback_class(cb) else cb for cb in listed]


def _is_callback_class(cb: object) -> bool:
    """Whether `cb` is a Callback class (fastai instantiates one where an object is due)."""
    return isinstance(cb, type) and issubclass(cb, Callback)


def _v1_alias(
    where: str, name: str, value: Any, v1_name: str, v1_value: Any, default: Any = None
) -> Any:
    """The value of an argument fastai v1 spelt `v1_name` and v2 (and this library) `name`:
    v1's when given, else `value`; TypeError when both were given (`value` not `default`)."""
    if v1_value is None:
        return value
    if value != default:
        raise TypeError(
            f"{where}: give {name} or {v1_name} (fastai v1's name for it), not both; got "
            f"{name}={value!r} and {v1_name}={v1_value!r}"
        )
    return v1_value


def _check_callback_fns(fns: Any) -> list[Callable[[Learner], Callback]]:
    """callback_fns as a list of callables (one callable alone is taken as a list of one)."""
    if fns is None:
        return []
    listed = [fns] if callable(fns) else list(fns)
    for fn in listed:
        if not callable(fn):
            raise TypeError(
                f"callback_fns should hold functions called with the learner that return a "
                f"Callback (a Callback class, or partial(SomeCallback, arg=...)), got {fn!r}"
            )
    return listed


def _call_callback_fn(fn: Callable[[Learner], Callback], learn: Learner) -> Callback:
    """fn(learn), as fastai v1 makes the callbacks of callback_fns at the start of a fit;
    TypeError naming `fn` when it takes no learner or gives no Callback."""
    try:
        inspect.signature(fn).bind(learn)
    except TypeError:
        raise TypeError(
            f"callback_fns: {fn!r} cannot be called with the learner (fastai v1 calls each "
            f"item as fn(learn)); a callback that takes no learner goes in cbs= instead"
        ) from None
    except ValueError:  # no signature to read (a builtin): call it and see
        pass
    cb = fn(learn)
    if not isinstance(cb, Callback):
        raise TypeError(
            f"callback_fns: {fn!r} called with the learner should return a fastcore_ext "
            f"Callback, got {type(cb).__name__}"
        )
    return cb


def _check_learner_args(
    data: Any,
    model: Any,
    loss_func: Any,
    opt_func: Any,
    path: Any,
    model_dir: Any,
    splitter: Any,
    precision: Any,
) -> None:
    """The checks of Learner's arguments (TypeError / ValueError naming the argument)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model should be a torch.nn.Module, got {type(model).__name__}")
    if loss_func is not None and not callable(loss_func):
        raise TypeError(f"loss_func should be callable or None, got {type(loss_func).__name__}")
    if isinstance(loss_func, type):  # nn.CrossEntropyLoss: failed at batch 0 inside torch
        raise TypeError(
            f"loss_func: pass an instance, {loss_func.__name__}(), not the class "
            f"{loss_func.__name__} itself"
        )
    if not callable(opt_func):
        raise TypeError(f"opt_func should be an optimizer class or factory, got {opt_func!r}")
    if splitter is not None and not callable(splitter):
        raise TypeError(f"splitter should be callable or None, got {type(splitter).__name__}")
    if not isinstance(model_dir, (str, Path)):
        raise TypeError(f"model_dir should be a str or Path, got {type(model_dir).__name__}")
    if path is not None and not isinstance(path, (str, Path)):
        raise TypeError(f"path should be a str, Path or None, got {type(path).__name__}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision should be one of {PRECISIONS} or None, got {precision!r}")
    check_data(data)


def check_data(data: Any) -> None:
    """TypeError unless `data` has the bunch attributes the learner reads (also create_cnn's
    first check, before it reads data.c)."""
    if isinstance(data, tuple | list) and len(data) == 2:
        raise TypeError(
            f"data should be a bunch, got a {type(data).__name__} of two loaders: wrap them "
            f"as fastai's, DataLoaders(train_dl, valid_dl) (fastcore_ext.data.DataLoaders)"
        )
    for attr in ("train_dl", "valid_dl", "device"):
        if not hasattr(data, attr):
            raise TypeError(
                f"data should be a bunch with train_dl, valid_dl and device "
                f"(e.g. ImageDataBunch), got {type(data).__name__} without {attr!r}"
            )


# Layers after the last Linear that keep its width (a head may end with them).
_SAME_WIDTH = (nn.Dropout, nn.ReLU, nn.Identity, nn.Softmax, nn.LogSoftmax, nn.Sigmoid)


def _n_outputs(model: nn.Module) -> int | None:
    """The number of outputs of `model` where its structure tells it: an nn.Sequential
    (create_cnn's (body, head), or a plain stack) whose last layers, in order, end with an
    nn.Linear followed only by layers that keep its width; None for anything else (a module
    whose forward may call its layers in another order than they were registered)."""
    while isinstance(model, nn.Sequential) and len(model):
        layers = list(model)
        while len(layers) > 1 and isinstance(layers[-1], _SAME_WIDTH):
            layers.pop()
        model = layers[-1]
    return model.out_features if isinstance(model, nn.Linear) else None


def _check_class_count(model: nn.Module, data: Any, at_construction: bool = False) -> None:
    """ValueError when data.c differs from the model's outputs (both known): the model could
    not name the data's classes (validate and the metrics would be nonsense, predict would
    index past data.classes, save would record classes the head was not made for). At
    construction a warning instead (fastai's MixUp picture builds a Learner around a model
    it never calls, nn.Linear(3, 4)); a fit refuses such a model at its first batch."""
    n_out = _n_outputs(model)
    c = getattr(data, "c", None)
    if n_out is None or c is None or int(c) == n_out:
        return
    said = (
        f"data: the data has {c} classes (data.c = {c}), but the model has {n_out} outputs "
        f"(its last Linear layer): it cannot classify this data"
    )
    if at_construction:
        warn_user(f"{said}; a fit refuses it (give the model data.c = {c} outputs)")
        return
    raise ValueError(
        f"{said}. For other classes make a "
        f"new learner for this data (create_cnn / vision_learner builds a head of data.c "
        f"outputs); to keep a trained body, learn.save(name) first and load it into the "
        f"new learner with load(name, strict=False)"
    )


# The events that start a fit, or a validation or prediction pass outside a fit.
_PASS_STARTS = frozenset(("before_fit", "before_validate"))


def _check_outputs(pred: Any, data: Any, loss_func: Any) -> None:
    """ValueError at a fit's first batch when the model's outputs [B, n] do not number the
    data's classes under a classification loss (cross-entropy, NLL, label smoothing;
    `_check_class_count` finds it at construction where the model's structure tells n; here
    any model: torchvision's resnet18() has 1000 outputs)."""
    if not isinstance(pred, torch.Tensor) and (
        is_class_loss(loss_func) or _is_elementwise(loss_func)
    ):
        raise ValueError(
            f"model: it returned {_describe(pred)}, and loss_func "
            f"{_loss_name(loss_func)} takes one tensor of predictions: have the model return "
            "them alone, or add a callback whose after_pred picks them "
            "(`self.learn.pred = self.pred[0]`, as with fastai)"
        )
    _check_class_weights(pred, loss_func)
    c = getattr(data, "c", None)
    if (
        not is_class_loss(loss_func) or c is None or not isinstance(pred, torch.Tensor)
        or pred.dim() != 2 or pred.shape[1] == c
    ):  # fmt: skip
        return
    raise ValueError(
        f"model: it gives {pred.shape[1]} outputs per item and the data has {c} classes "
        f"(data.c): a classifier of this data needs {c} (e.g. torchvision's "
        f"resnet18(num_classes={c}), or create_cnn / vision_learner, which build the head)"
    )


# Losses that compare predictions and targets element by element: torch broadcasts (or
# fails on) shapes that differ, e.g. [B, 1] against [B] into [B, B].
_ELEMENTWISE_LOSSES = (
    nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCEWithLogitsLoss, nn.BCELoss,
)  # fmt: skip
_ELEMENTWISE_FUNCTIONS = (
    F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss,
    F.binary_cross_entropy_with_logits, F.binary_cross_entropy,
)  # fmt: skip


def _is_elementwise(loss_func: Any) -> bool:
    return isinstance(loss_func, _ELEMENTWISE_LOSSES) or any(
        loss_func is f for f in _ELEMENTWISE_FUNCTIONS
    )


def _loss_name(loss_func: Any) -> str:
    return getattr(loss_func, "__name__", type(loss_func).__name__)


def _describe(x: Any) -> str:
    """'Tensor [16, 3]', 'a tuple of 2 (Tensor [16, 3], Tensor [16, 8])', 'int 3'."""
    if isinstance(x, torch.Tensor):
        return f"Tensor {list(x.shape)}"
    if isinstance(x, list | tuple):
        items = ", ".join(_describe(o) for o in x[:4]) + (", ..." if len(x) > 4 else "")
        return f"a {type(x).__name__} of {len(x)} ({items})"
    return type(x).__name__


def _check_class_weights(pred: Any, loss_func: Any) -> None:
    """ValueError at a fit's first batch for a classifier's loss whose class weights
    (`weight=`) torch would refuse inside the loss: not one per output, another dtype than
    the (float32) predictions (float64, as numpy and scikit-learn's compute_class_weight
    give them), or on another device."""
    weight = getattr(loss_func, "weight", None)
    if not (is_class_loss(loss_func) and isinstance(weight, torch.Tensor)):
        return
    if not (isinstance(pred, torch.Tensor) and pred.dim() == 2):
        return
    name, c = _loss_name(loss_func), pred.shape[1]
    if weight.dim() != 1 or weight.numel() != c:
        raise ValueError(
            f"loss_func: {name}'s weight should hold one value per class ({c}, the model's "
            f"outputs), got shape {list(weight.shape)}"
        )
    if weight.dtype != pred.dtype:
        raise ValueError(
            f"loss_func: {name}'s weight is {weight.dtype} and the predictions are "
            f"{pred.dtype}: make it float32 (torch.tensor(w, dtype=torch.float32))"
        )
    if weight.device != pred.device:
        raise ValueError(
            f"loss_func: {name}'s weight is on {weight.device} and the model on "
            f"{pred.device}: move it there (weight.to(learn.dls.device))"
        )


def _check_default_loss_targets(pred: Any, yb: Sequence[Any]) -> None:
    """ValueError at a fit's first batch when no loss_func was given (the default: a
    classifier's cross-entropy over class indices) and the targets are floats that are not
    class probabilities (rows of the predictions' shape, >= 0, summing to 1): fastai cannot
    infer a loss from such data and asks for one; torch's would say only that the targets'
    dtype is wrong, or train a one-output model on a loss that is always 0."""
    if len(yb) != 1 or not isinstance(yb[0], torch.Tensor) or not yb[0].is_floating_point():
        return
    y = yb[0]
    if (
        isinstance(pred, torch.Tensor) and pred.dim() == 2 and pred.shape == y.shape
        and pred.shape[1] > 1 and bool((y >= 0).all())
        and torch.allclose(y.float().sum(1), torch.ones(()), atol=1e-3)
    ):  # fmt: skip
        return  # class probabilities (soft labels), which cross-entropy takes
    raise ValueError(
        "loss_func: none was given, so the learner trains with nn.CrossEntropyLoss() (a "
        f"classifier's: one int64 class index per item), but the targets are {y.dtype} "
        f"{list(y.shape)}: pass the loss of your task (e.g. loss_func=MSELossFlat() for "
        "numbers to predict), or give the targets as class indices"
    )


def _check_loss_value(loss: Any, loss_func: Any) -> None:
    """ValueError at a fit's first batch unless the loss is one number (the batch's mean or
    sum): backward and the recorder need one."""
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return
    reduction = getattr(loss_func, "reduction", None)
    hint = (
        f" (it has reduction={reduction!r}: use 'mean' or 'sum')"
        if reduction not in (None, "mean", "sum")
        else ""
    )
    raise ValueError(
        f"loss_func: {_loss_name(loss_func)} returned {_describe(loss)}; a fit needs one "
        f"number per batch, the mean or the sum of the items' losses{hint}"
    )


def _missing_checkpoint(name: str | os.PathLike, path: Path, given: Path) -> str:
    """Learner.load's message for a missing checkpoint `path` (of `name`; `given`: the name
    as written, under the models folder): the file fastai's double .pth or another kind of
    file beside it, else the checkpoints the folder holds."""
    doubled = path.with_name(path.name + ".pth")
    if doubled.is_file():
        return (
            f"no such file: {path}; {doubled.name} is there (fastai's learn.save adds "
            f".pth to a name that ends in it): load({str(name) + '.pth'!r}) reads it"
        )
    if given.is_file() and given.suffix != ".pth":
        return f"no such file: {path} (learn.load reads the .pth checkpoints of learn.save); " + (
            f"{given} is there: an export, which load_learner({str(given)!r}) reads"
            if given.suffix == ".pkl"
            else f"{given} is there: learn.load adds .pth to a name not ending in it; rename "
            "the file to end in .pth"
        )
    saved = sorted(path.parent.glob("*.pth")) if path.parent.is_dir() else []
    held = (
        f"{path.parent.name}/ holds {', '.join(p.stem for p in saved[:8])}"
        + (", ..." if len(saved) > 8 else "")
        if saved
        else f"no checkpoint is in {path.parent}"
    )
    return f"name: no such file: {path} ({held}; learn.save(name) writes one)"


def _check_elementwise_loss(pred: Any, yb: Sequence[Any], loss_func: Any) -> None:
    """ValueError at a fit's first batch when an element-wise loss (MSE, L1, smooth L1,
    Huber, binary cross-entropy; module or function) gets predictions and targets of other
    shapes: torch would fail inside the loss, or broadcast them silently and train on the
    wrong comparison ([B, 1] against [B] gives [B, B]; [B, n] against B class indices where
    B == n). The Flat losses (MSELossFlat, BCEWithLogitsLossFlat, ...) flatten both sides
    themselves: for them only the numbers of elements must agree."""
    flat = isinstance(loss_func, FlatLoss)
    if not (flat or _is_elementwise(loss_func)) or len(yb) != 1:
        return
    y = yb[0]
    if not (isinstance(pred, torch.Tensor) and isinstance(y, torch.Tensor)):
        return
    if pred.numel() == y.numel() if flat else pred.shape == y.shape:
        return
    name = _loss_name(loss_func)
    shapes = f"the model gives {list(pred.shape)} and the targets are {list(y.shape)}"
    if y.dim() == 1 and not y.is_floating_point() and pred.dim() == 2 and pred.shape[1] > 1:
        raise ValueError(
            f"loss_func: {name} compares predictions with targets of the same shape, but "
            f"{shapes} ({y.dtype}: one class index per item, as single-label data gives): "
            "a classifier's loss is CrossEntropyLossFlat() (the default when loss_func is not "
            "given), or F.cross_entropy"
        )
    if flat:
        raise ValueError(
            f"loss_func: {name} compares the flattened predictions with the flattened targets "
            f"element by element, but {shapes}: {pred.numel()} against {y.numel()} elements"
        )
    raise ValueError(
        f"loss_func: {name} compares predictions with targets element by element, but "
        f"{shapes}; torch would broadcast them (or fail) and train on the wrong comparison. "
        "Make them the same shape: e.g. a model of one output for targets [B] needs its "
        "output flattened (pred.view(-1), nn.Flatten(0)) or targets [B, 1]"
    )


def _warn_other_classes(old: Sequence[Any] | None, new: Sequence[Any] | None) -> None:
    """A warning when new data names other classes than those the model's outputs stand for
    (`old`: the data's at construction, the last fit or load; `_check_class_count` has
    refused a count the model's outputs tell it cannot classify): other names or the same
    in another order, or another count where the outputs are unknown. Nothing when either
    list is unknown or they are equal (swapping back to the data the model was made for is
    silent)."""
    if old is None or new is None:
        return
    old, new = [str(c) for c in old], [str(c) for c in new]
    if old == new:
        return
    if len(old) != len(new):
        warn_user(
            f"data: the new data has {len(new)} classes, the model was made for {len(old)}: "
            f"it cannot classify it (its outputs are not known here, so this is not "
            f"checked); for other classes make a new learner"
        )
        return
    how = "the same in another order" if sorted(old) == sorted(new) else "other classes"
    warn_user(
        f"data: the new data's classes are {how}: {shown_classes(new)}, where the model's "
        f"outputs stand for {shown_classes(old)}. The model's output i stands for its old "
        f"class i, now named data.classes[i]: predictions, validate and the metrics are wrong "
        f"until it is trained on this data (to keep the classes, build the data in the "
        f"model's order: CategoryBlock(vocab=learn.data.classes))"
    )


def _check_folder(name: str, value: Path, folder: Path) -> None:
    """ValueError naming `name` when `folder` (where the learner writes files) or the
    nearest of its parents that exists is a file: saving there could only fail."""
    folder = Path(os.path.normpath(folder))  # "models/.." as mkdir will walk it
    file = file_in_the_way(folder)
    if file is not None:
        where = "it is" if file == folder else f"{file} is"
        raise ValueError(
            f"{name} should be a folder (this learner's files go under it), got "
            f"{str(value)!r}: {where} a file"
        )


def _check_metrics(metrics: Any, n_classes: int | None) -> list[Callable[..., Any]]:
    if metrics is None:
        return []
    several = isinstance(metrics, Iterable) and not isinstance(metrics, str | bytes)
    several = several and not callable(metrics)  # a list, a tuple, fastai's L
    mets = list(metrics) if several else [metrics]
    for m in mets:
        check_metric(m, n_classes)
    return mets
