"""Learner: a model, its data, its optimizer and the training loop that ties them together.

The loop has fastai v2's shape: `fit` runs epochs, an epoch runs a training and a
validation phase, a phase runs batches, and every step fires an event that callbacks
(`fastcore_ext.callback`) hook into. The optimizer is fastcore_ext's fused Adam by default;
`fit_one_cycle` hands the whole one-cycle schedule to it (the kernel evaluates lr and
momentum from a device-side step counter), while the Recorder gets the same values from
the host closed form in `fastcore_ext.schedule`.

Parameters are split into layer groups (`splitter`); the optimizer has one param group
per layer group from the start, holding every parameter, so freezing (requires_grad off,
grads None, which the optimizer skips) never changes its structure or loses its state.

Saving and resuming (`save`, `load`, `fit_one_cycle(start_epoch=k)`): a checkpoint holds the
model, the optimizer (its state, the one-cycle schedule and the device step counter), the
number of epochs done and the random generators' states at the moment of saving. Resuming
is exact because nothing else is random: the data loaders derive the shuffle and the
augmentation of epoch e from (data seed, e), and the only other randomness of a fit, dropout,
draws from torch's global generator, which `load` puts back where the saving run had it. So
a checkpoint written at the end of epoch k (SaveModelCallback(every_epoch=True,
with_opt=True)) loaded into a fresh learner on the same data and seed, followed by
`fit_one_cycle(n, ..., start_epoch=k)` with the original arguments, ends with the weights of
the uninterrupted run, bit for bit on the CPU.

Interruptions: a NaN/inf training loss ends the fit before that batch's step
(`TerminateOnNaN`, attached to every learner). An exception that escapes a fit (Ctrl-C's
KeyboardInterrupt, a DataLoader worker that died, an error in a callback) ends it like a
CancelFitException would (callbacks get `after_cancel_fit` and `after_fit`: the progress bar
closes, a CSVLogger closes its file, SaveModelCallback loads its best model), the data
loaders' worker processes are stopped, a note on the exception says where the fit stopped,
and the exception goes on to the caller with the learner ready for the next fit.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fastcore_ext.callback.core import (
    Callback,
    CancelBackwardException,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidException,
)
from fastcore_ext.callback.lr_finder import LRFinder
from fastcore_ext.callback.progress import ProgressCallback
from fastcore_ext.callback.recorder import Recorder
from fastcore_ext.callback.tracker import TerminateOnNaN
from fastcore_ext.checkpoint import atomic_save, load_file, rng_state, set_rng_state
from fastcore_ext.distributed import (
    DEFAULT_TIMEOUT,
    all_gather_cat,
    enter,
    exit_distrib,
    launched_by_torchrun,
)
from fastcore_ext.optim import Adam
from fastcore_ext.schedule import Suggestions, one_cycle, suggest_lrs

__all__ = ["Learner", "set_seed", "default_splitter", "NORM_TYPES", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "fastcore_ext.checkpoint"  # the "format" entry of a Learner.save file
CHECKPOINT_VERSION = 1

DEFAULT_LR = 1e-3  # fit's learning rate when none is given (fastai v2)
DEFAULT_MAX_LR = 1e-3  # fit_one_cycle's: fastai v2's defaults.lr (v1 had slice(3e-3))

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
)
"""Layers whose parameters stay trainable in a frozen layer group (fastai's train_bn)."""

# Events fired per batch; callbacks with run_train/run_valid False skip them in that phase.
_INNER_EVENTS = frozenset(
    {
        "before_batch",
        "after_pred",
        "after_loss",
        "before_backward",
        "after_backward",
        "before_step",
        "after_step",
        "after_batch",
        "after_cancel_batch",
        "after_cancel_backward",
        "after_cancel_step",
    }
)


def set_seed(seed: int) -> None:
    """Seed Python's `random`, numpy's global generator and torch (CPU and every GPU)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed should be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """One layer group holding every parameter of the model."""
    return [list(model.parameters())]


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} should be >= {minimum}, got {value}")
    return value


def _check_lr_value(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a float, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} should be a finite number > 0, got {value}")
    return value


@dataclass(frozen=True)
class OneCycle:
    """The host copy of the schedule a fit_one_cycle hands to the optimizer: lr and
    momentum of each layer group at step k are `schedule.one_cycle(k / total_steps, ...)`."""

    total_steps: int
    lr_max: tuple[float, ...]
    div: float
    div_final: float
    pct_start: float
    moms: tuple[float, float, float]

    def at(self, step: int) -> tuple[list[float], list[float]]:
        """(lrs, moms), one value per layer group, for the step with index `step`."""
        pos = step / self.total_steps
        pairs = [
            one_cycle(pos, lr, self.div, self.div_final, self.pct_start, self.moms)
            for lr in self.lr_max
        ]
        return [float(lr) for lr, _ in pairs], [float(m) for _, m in pairs]


@dataclass
class _Snapshot:
    """Everything a learning-rate sweep changes, copied in memory (no temporary file)."""

    model_state: dict[str, torch.Tensor]
    requires_grad: list[bool]
    grads: list[torch.Tensor | None]
    modes: list[bool]
    opt_state: dict[str, Any]
    torch_rng: torch.Tensor
    cuda_rng: list[torch.Tensor] | None
    python_rng: Any
    numpy_rng: Any
    scaler_state: dict[str, Any] | None
    epochs_done: int

    @classmethod
    def take(cls, learn: Learner) -> _Snapshot:
        params = list(learn.model.parameters())
        return cls(
            model_state={k: v.detach().clone() for k, v in learn.model.state_dict().items()},
            requires_grad=[p.requires_grad for p in params],
            grads=[None if p.grad is None else p.grad.detach().clone() for p in params],
            modes=[m.training for m in learn.model.modules()],
            opt_state=copy.deepcopy(learn.opt.state_dict()),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
            python_rng=random.getstate(),
            numpy_rng=np.random.get_state(),
            scaler_state=learn.scaler.state_dict() if learn.scaler is not None else None,
            epochs_done=learn.epochs_done,
        )

    def restore(self, learn: Learner) -> None:
        learn.model.load_state_dict(self.model_state)
        for p, flag, grad in zip(
            learn.model.parameters(), self.requires_grad, self.grads, strict=True
        ):
            p.requires_grad_(flag)
            p.grad = grad
        for m, mode in zip(learn.model.modules(), self.modes, strict=True):
            m.training = mode
        learn.opt.load_state_dict(self.opt_state)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        random.setstate(self.python_rng)
        np.random.set_state(self.numpy_rng)
        if self.scaler_state is not None:
            learn.scaler.load_state_dict(self.scaler_state)
        learn.epochs_done = self.epochs_done


class _BarToggle:
    """Returned by `Learner.no_bar()`: the bar is already off; leaving a `with` block (if
    the call was used as one) puts the previous setting back."""

    def __init__(self, progress: ProgressCallback) -> None:
        self._progress = progress
        self._previous = progress.show_bar
        progress.show_bar = False

    def __enter__(self) -> _BarToggle:
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.show_bar = self._previous


class Learner:
    """Trains `model` on `data` (a bunch: train_dl/valid_dl yielding (x, y) on data.device).

    Args:
      data: the bunch (fastcore_ext.data's ImageDataBunch / ImageDataLoaders, or any object
        with `train_dl`, `valid_dl`, `device`, `c` and `path`).
      model: an nn.Module mapping x (e.g. Tensor[B, 3, S, S]) to logits Tensor[B, c]; moved
        to data.device.
      loss_func: loss(preds, targets) -> 0-dim Tensor; default nn.CrossEntropyLoss().
      opt_func: optimizer class (or factory) called as opt_func(param_groups, lr=...);
        default fastcore_ext.optim.Adam (whose default weight decay is 0.01).
      metrics: a metric or list of metrics f(preds, targs), each computed over the whole
        validation set at the end of each epoch (fastcore_ext.metrics).
      wd: weight decay, a float or one per layer group; None keeps the optimizer's default.
      path, model_dir: where files of this learner go (path/model_dir); path defaults to
        data.path.
      splitter: splitter(model) -> list of layer groups, each an nn.Module or an iterable of
        parameters/modules; default: one group. Every parameter must be in exactly one group.
      seed: if given, `set_seed(seed)` now.
      cbs: extra callbacks, in addition to the Recorder and the ProgressCallback.
    """

    def __init__(
        self,
        data: Any,
        model: nn.Module,
        loss_func: Callable[..., torch.Tensor] | None = None,
        opt_func: Callable[..., torch.optim.Optimizer] = Adam,
        metrics: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
        wd: float | Sequence[float] | None = None,
        path: str | Path | None = None,
        model_dir: str | Path = "models",
        splitter: Callable[[nn.Module], Iterable[Any]] | None = None,
        seed: int | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model should be a torch.nn.Module, got {type(model).__name__}")
        if loss_func is not None and not callable(loss_func):
            raise TypeError(f"loss_func should be callable or None, got {type(loss_func).__name__}")
        if not callable(opt_func):
            raise TypeError(f"opt_func should be an optimizer class or factory, got {opt_func!r}")
        if splitter is not None and not callable(splitter):
            raise TypeError(f"splitter should be callable or None, got {type(splitter).__name__}")
        if not isinstance(model_dir, (str, Path)):
            raise TypeError(f"model_dir should be a str or Path, got {type(model_dir).__name__}")
        if path is not None and not isinstance(path, (str, Path)):
            raise TypeError(f"path should be a str, Path or None, got {type(path).__name__}")
        for attr in ("train_dl", "valid_dl", "device"):
            if not hasattr(data, attr):
                raise TypeError(
                    f"data should be a bunch with train_dl, valid_dl and device "
                    f"(e.g. ImageDataBunch), got {type(data).__name__} without {attr!r}"
                )
        if seed is not None:
            set_seed(seed)
        self.seed = seed
        self.data = data
        self.model = model.to(torch.device(data.device))
        self.loss_func = loss_func if loss_func is not None else nn.CrossEntropyLoss()
        self.opt_func = opt_func
        self.metrics = self._check_metrics(metrics)
        self.path = Path(path) if path is not None else Path(getattr(data, "path", "."))
        self.model_dir = Path(model_dir)
        self.splitter = splitter if splitter is not None else default_splitter
        self.channels_last = False
        self.layer_groups = self._split()
        self._norm_params = {
            id(p)
            for m in self.model.modules()
            if isinstance(m, NORM_TYPES)
            for p in m.parameters(recurse=False)
        }
        self.wd = self._wd_range(wd) if wd is not None else None
        self.opt = self._create_opt()

        self.cbs: list[Callback] = []
        self.recorder = Recorder()
        self.progress = ProgressCallback()
        self.add_cbs([self.recorder, self.progress, TerminateOnNaN()])
        if cbs is not None:
            self.add_cbs([cbs] if isinstance(cbs, Callback) else cbs)

        # State of the loop, readable by callbacks.
        self.epoch = 0
        self.n_epoch = 0
        self._start_epoch = 0
        self.iter = 0
        self.n_iter = 0
        self.train_iter = 0  # training batches started in the current fit
        self.training = False
        self.dl: Any = None
        self.xb: torch.Tensor | None = None
        self.yb: torch.Tensor | None = None
        self.pred: torch.Tensor | None = None
        self.loss_grad: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None
        self._one_cycle: OneCycle | None = None
        self._sched_step = 0  # host mirror of the optimizer's schedule step counter
        self.epochs_done = 0  # epochs finished by the last fit (or the loaded checkpoint)
        # Mixed precision (to_bf16 / to_fp16): the autocast dtype, and fp16's GradScaler.
        self.amp_dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        # Distributed mode (fastcore_ext.distributed): its callback, and the model wrapped in
        # DistributedDataParallel for the training forward passes of the current fit.
        self.distributed: Callback | None = None
        self.ddp_model: nn.Module | None = None
        if launched_by_torchrun():
            self.distrib()

    # ---- construction helpers -----------------------------------------------------------
    @staticmethod
    def _check_metrics(metrics: Any) -> list[Callable[..., Any]]:
        if metrics is None:
            return []
        mets = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
        for m in mets:
            if not callable(m):
                raise TypeError(f"metrics should be callables f(preds, targs), got {m!r}")
        return mets

    def _split(self) -> list[list[nn.Parameter]]:
        groups = list(self.splitter(self.model))
        if not groups:
            raise ValueError("splitter returned no layer group; expected at least one")
        out: list[list[nn.Parameter]] = []
        seen: set[int] = set()
        for i, group in enumerate(groups):
            params = list(_params_of(group, i))
            if not params:
                raise ValueError(f"splitter's layer group {i} holds no parameter")
            for p in params:
                if id(p) in seen:
                    raise ValueError(
                        f"splitter put a parameter in two layer groups (again in group {i})"
                    )
                seen.add(id(p))
            out.append(params)
        missing = [n for n, p in self.model.named_parameters() if id(p) not in seen]
        if missing:
            raise ValueError(
                f"splitter left {len(missing)} model parameters out of every layer group "
                f"(first: {missing[0]!r}); every parameter should be in exactly one group"
            )
        foreign = len(seen) - sum(1 for _ in self.model.parameters())
        if foreign:
            raise ValueError(f"splitter returned {foreign} parameters that are not in the model")
        return out

    def _create_opt(self) -> torch.optim.Optimizer:
        groups: list[dict[str, Any]] = [{"params": g} for g in self.layer_groups]
        if self.wd is not None:
            for g, wd in zip(groups, self.wd, strict=True):
                g["wd"] = wd
        opt = self.opt_func(groups, lr=DEFAULT_LR)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"opt_func should build a torch.optim.Optimizer (e.g. fastcore_ext.optim.Adam), "
                f"got {type(opt).__name__}"
            )
        if len(opt.param_groups) != len(self.layer_groups):
            raise ValueError(
                f"opt_func should keep one param group per layer group "
                f"({len(self.layer_groups)}), got {len(opt.param_groups)}"
            )
        return opt

    # ---- callbacks ----------------------------------------------------------------------
    def add_cb(self, cb: Callback) -> None:
        """Attach a callback (kept sorted by `order`; equal orders keep insertion order)."""
        if not isinstance(cb, Callback):
            raise TypeError(f"cb should be a fastcore_ext Callback instance, got {cb!r}")
        if cb.learn is not None and cb.learn is not self:
            raise ValueError(f"{cb!r} is already attached to another Learner")
        cb.learn = self
        self.cbs.append(cb)
        self.cbs.sort(key=lambda c: c.order)

    def add_cbs(self, cbs: Iterable[Callback]) -> None:
        """Attach several callbacks."""
        for cb in cbs:
            self.add_cb(cb)

    def remove_cb(self, cb: Callback) -> None:
        """Detach a callback."""
        if cb not in self.cbs:
            raise ValueError(f"{cb!r} is not attached to this Learner")
        self.cbs.remove(cb)
        cb.learn = None

    def _event(self, name: str) -> None:
        inner = name in _INNER_EVENTS
        for cb in list(self.cbs):
            if inner and not (cb.run_train if self.training else cb.run_valid):
                continue
            getattr(cb, name)()

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
    def _fit(self, n_epoch: int, start_epoch: int, cbs: Sequence[Callback] | None) -> None:
        if getattr(self.data, "train_dl", None) is None:
            raise ValueError(
                "this Learner has no training data (load_learner makes learners for "
                "inference: predict). Build a Learner on a bunch to train"
            )
        extra = list(cbs or [])
        try:
            self.add_cbs(extra)
            self.n_epoch = n_epoch
            self._start_epoch = start_epoch
            self.epoch = start_epoch
            self.epochs_done = start_epoch
            self.iter = 0
            self.train_iter = 0
            self.opt.zero_grad(set_to_none=True)
            self._run_fit()
        finally:
            for cb in extra:
                if cb in self.cbs:
                    self.remove_cb(cb)
            self.training = False
            self.dl = None
            self.xb = self.yb = self.pred = self.loss_grad = self.loss = None

    def _run_fit(self) -> None:
        """before_fit, the epochs, after_fit; CancelFitException ends it early. Any other
        exception (KeyboardInterrupt included) ends it the same way, then goes on."""
        try:
            self._event("before_fit")
            self._do_fit()
        except CancelFitException:
            self._event("after_cancel_fit")
        except BaseException as e:
            self._end_after_exception(e)
            raise
        try:
            self._event("after_fit")
        except BaseException:
            self._close_loaders()
            raise

    def _where(self) -> str:
        """Where the loop is, for messages: 'epoch 2 (of 0..3), training batch 5 of 30'."""
        epochs = f"epoch {self.epoch} (of {self._start_epoch}..{self.n_epoch - 1})"
        if self.dl is None:
            return epochs
        phase = "training" if self.training else "validation"
        return f"{epochs}, {phase} batch {self.iter} (0-based) of {self.n_iter}"

    def _end_after_exception(self, e: BaseException) -> None:
        """Clean up after an exception escaped the loop (see the module docstring)."""
        where = self._where()
        if hasattr(e, "add_note"):  # Python 3.11+
            e.add_note(f"fastcore_ext: the fit stopped at {where}.")
        if isinstance(e, KeyboardInterrupt):
            print(
                f"Training interrupted at {where}. The learner is usable: its parameters are "
                f"those after the last completed optimizer step.",
                file=sys.stderr,
                flush=True,
            )
        try:
            self._event("after_cancel_fit")
            self._event("after_fit")
        except Exception as cleanup_error:  # keep the original exception going
            warnings.warn(
                f"a callback failed while ending the interrupted fit: {cleanup_error!r}",
                RuntimeWarning,
                stacklevel=2,
            )
        finally:
            self._close_loaders()

    def _close_loaders(self) -> None:
        """Stop the data loaders' worker processes (they restart on the next pass)."""
        for dl in (getattr(self.data, "train_dl", None), getattr(self.data, "valid_dl", None)):
            close = getattr(dl, "close", None)
            if close is not None:
                close()

    def _do_fit(self) -> None:
        for epoch in range(self._start_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpochException)

    def _do_epoch(self) -> None:
        self._do_epoch_train()
        self._do_epoch_validate()
        self.epochs_done = self.epoch + 1

    def _do_epoch_train(self) -> None:
        self.data.train_dl.set_epoch(self.epoch)
        self.dl = self.data.train_dl
        self.model.train()
        self.training = True
        self._with_events(self._all_batches, "train", CancelTrainException)

    def _do_epoch_validate(self) -> None:
        self.dl = self.data.valid_dl
        self.model.eval()
        self.training = False
        with torch.no_grad():
            self._with_events(self._all_batches, "validate", CancelValidException)

    def _all_batches(self) -> None:
        self.n_iter = len(self.dl)
        batches = iter(self.dl)
        try:
            for i, (xb, yb) in enumerate(batches):
                self.iter = i
                self.xb, self.yb = xb, yb
                if self.training:
                    self.train_iter += 1
                self._with_events(self._do_one_batch, "batch", CancelBatchException)
        finally:  # a phase cut short: release the loader's pass now, not at garbage collection
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context of forward passes: torch.autocast with the dtype set
        by to_bf16 / to_fp16 on the data's device, or a no-op in fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.data.device).type, dtype=self.amp_dtype)

    def _do_one_batch(self) -> None:
        xb = self.xb
        if self.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        model = self.ddp_model if self.training and self.ddp_model is not None else self.model
        with self.autocast():
            self.pred = model(xb)
            self._event("after_pred")
            self.loss_grad = self.loss_func(self.pred, self.yb)
        self.loss = self.loss_grad.detach()
        self._event("after_loss")
        if not self.training:
            return
        self._with_events(self._backward, "backward", CancelBackwardException)
        self._with_events(self._step, "step", CancelStepException)
        self.opt.zero_grad(set_to_none=True)

    def _backward(self) -> None:
        if self.scaler is not None:
            self.scaler.scale(self.loss_grad).backward()
        else:
            self.loss_grad.backward()

    def _step(self) -> None:
        if self.scaler is None:
            self.opt.step()
            if self._one_cycle is not None:
                self._sched_step += 1
            return
        # fp16: the scaler skips a step whose grads hold inf/NaN, and the fused optimizer's
        # device counter does not advance then; the host mirror follows the device counter.
        self.scaler.step(self.opt)
        self.scaler.update()
        if self._one_cycle is not None:
            counter = getattr(self.opt, "schedule_step", None)
            self._sched_step = int(counter) if counter is not None else self._sched_step + 1

    def current_hypers(self) -> tuple[list[float], list[float]]:
        """(lrs, moms), one per layer group, that the next optimizer step uses: the one-cycle
        closed form during fit_one_cycle, else the optimizer's param-group values."""
        if self._one_cycle is not None:
            return self._one_cycle.at(self._sched_step)
        groups = self.opt.param_groups
        return [float(g["lr"]) for g in groups], [float(g.get("mom", math.nan)) for g in groups]

    # ---- public training API ------------------------------------------------------------
    def fit(
        self,
        n_epoch: int,
        lr: float | slice | Sequence[float] | None = None,
        wd: float | Sequence[float] | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        start_epoch: int = 0,
    ) -> None:
        """Train for `n_epoch` epochs at a constant learning rate.

        lr: a float (every layer group), slice(a, b) (geometric from a to b across the
        groups), slice(b) (b/10 for all groups but the last, b for the last) or one value per
        group; default 1e-3. wd: weight decay (float or per group); default the learner's
        `wd`, else the optimizer's current value. cbs: callbacks for this fit only.
        start_epoch: skip the epochs before it (to resume after `load`; see fit_one_cycle).
        """
        n_epoch = _check_positive_int("n_epoch", n_epoch)
        start_epoch = _check_start_epoch(start_epoch, n_epoch)
        lrs = self.lr_range(DEFAULT_LR if lr is None else lr, "lr")
        self._clear_schedule()
        for group, value in zip(self.opt.param_groups, lrs, strict=True):
            group["lr"] = value
        self._set_wd(wd)
        self._fit(n_epoch, start_epoch, _as_cbs(cbs))

    def fit_one_cycle(
        self,
        n_epoch: int,
        max_lr: float | slice | Sequence[float] | None = None,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        wd: float | Sequence[float] | None = None,
        start_epoch: int = 0,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> None:
        """Train with the one-cycle policy (Leslie Smith): over the first pct_start of the
        steps the lr rises (cosine) from max_lr/div to max_lr while momentum falls from
        moms[0] to moms[1]; then the lr falls to max_lr/div_final and momentum rises to
        moms[2].

        max_lr: as `fit`'s lr (float, slice or per group); default 1e-3 (fastai v2). The optimizer
        evaluates the schedule itself for total_steps = n_epoch * len(data.train_dl) steps.
        start_epoch: resume the cycle at this epoch (epochs start_epoch..n_epoch-1 run,
        the schedule starts at step start_epoch * len(data.train_dl)). To resume a fit
        exactly, `load` the checkpoint saved at the end of epoch start_epoch - 1 (with its
        optimizer state; `learn.epochs_done` then says start_epoch) and repeat every other
        argument of the interrupted call.
        """
        n_epoch = _check_positive_int("n_epoch", n_epoch)
        start_epoch = _check_start_epoch(start_epoch, n_epoch)
        if not (isinstance(moms, (tuple, list)) and len(moms) == 3):
            raise ValueError(f"moms should be 3 floats (start, middle, end), got {moms!r}")
        set_one_cycle = getattr(self.opt, "set_one_cycle", None)
        if set_one_cycle is None:
            raise TypeError(
                f"fit_one_cycle needs an optimizer with set_one_cycle (fastcore_ext.optim.Adam "
                f"or SGD); opt_func built {type(self.opt).__name__}"
            )
        lr_max = self.lr_range(DEFAULT_MAX_LR if max_lr is None else max_lr, "max_lr")
        n_batches = self._train_len()
        total = n_epoch * n_batches
        start_step = start_epoch * n_batches
        self._set_wd(wd)
        set_one_cycle(
            total,
            lr_max,
            div=div,
            div_final=div_final,
            pct_start=pct_start,
            moms=tuple(moms),
            start_step=start_step,
        )
        self._one_cycle = OneCycle(
            total, tuple(lr_max), float(div), float(div_final), float(pct_start), tuple(moms)
        )
        self._sched_step = start_step
        try:
            self._fit(n_epoch, start_epoch, _as_cbs(cbs))
        finally:
            self._one_cycle = None

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
        epochs = _check_positive_int("epochs", epochs)
        freeze_epochs = _check_positive_int("freeze_epochs", freeze_epochs, minimum=0)
        base_lr = _check_lr_value("base_lr", base_lr)
        lr_mult = _check_lr_value("lr_mult", lr_mult)
        self.freeze()
        if freeze_epochs:
            self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, **kwargs)
        base_lr /= 2
        self.unfreeze()
        self.fit_one_cycle(
            epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, **kwargs
        )

    def lr_find(
        self,
        start_lr: float | slice | Sequence[float] = 1e-7,
        end_lr: float | slice | Sequence[float] = 10,
        num_it: int = 100,
        stop_div: bool = True,
        show_plot: bool = False,
    ) -> Suggestions:
        """Learning-rate range test: train `num_it` batches while every group's lr grows
        exponentially from start_lr to end_lr (floats, slices or per-group values as in
        `fit`; equal end/start ratios keep the ratios between the groups), stopping early
        once the smoothed loss passes 4x its best (stop_div). No validation runs.

        Afterwards the model's weights and buffers (BatchNorm running statistics included),
        train/eval modes, requires_grad flags and gradients, the optimizer's state and
        hyper-parameters, and the RNG states (torch CPU/CUDA, random, numpy) are exactly as
        before, restored from an in-memory snapshot. The recorder keeps the sweep, so
        `learn.recorder.plot()` draws it. Returns Suggestions(valley, steep, minimum) from
        `schedule.suggest_lrs` on the last group's lrs and the smoothed losses (which looks at
        fastai's window: without the first num_it//10 and the last 5 batches)."""
        num_it = _check_positive_int("num_it", num_it, minimum=2)
        starts = self.lr_range(start_lr, "start_lr")
        ends = self.lr_range(end_lr, "end_lr")
        n_epoch = math.ceil(num_it / self._train_len())
        finder = LRFinder(starts, ends, num_it, stop_div)
        snapshot = _Snapshot.take(self)
        show_table = self.progress.show_table
        self.progress.show_table = False
        try:
            self._clear_schedule()
            self._fit(n_epoch, 0, [finder])
        finally:
            self.progress.show_table = show_table
            snapshot.restore(self)
        rec = self.recorder
        rec.suggestions = suggest_lrs([g[-1] for g in rec.lrs], rec.smooth_losses, num_it)
        if show_plot:
            rec.show(rec.plot())
        return rec.suggestions

    # ---- inference --------------------------------------------------------------------------
    def get_preds(
        self,
        ds_type: str = "valid",
        with_loss: bool = False,
        with_input: bool = False,
        dl: Iterable[Any] | None = None,
        act: Callable[[torch.Tensor], torch.Tensor] | None = None,
        reorder: bool = True,
    ) -> tuple[torch.Tensor, ...]:
        """One inference pass over a data set: the model in eval mode under torch.no_grad
        (its train/eval modes are put back afterwards), no callback events, no gradient graph.

        ds_type: 'valid' (the validation loader: every item, in valid_ds order, validation
        transform) or 'train' (every training item in train_ds order, unshuffled and without
        drop_last, but through the training loader's transforms: random augmentation seeded
        from (seed, epoch) of the loader's next epoch, which does not advance; fastai's
        choice. Pass `dl` for an un-augmented pass). Needs a loader with `shuffle` and
        `drop_last` attributes (fastcore_ext.data's DeviceDataLoader).
        with_loss: also return per-item losses: the learner's loss_func with
        reduction='none' (an nn loss module with a `reduction` attribute, or
        F.cross_entropy / F.nll_loss), on the raw outputs in float32.
        with_input: also return the model inputs, moved to the CPU batch by batch.
        dl: any iterable of (x, y) batches; overrides ds_type.
        act: applied to the raw outputs Tensor[B, c] (float32); default softmax over the
        classes.
        reorder: when the loader is shuffled and tells its order (`batch_indices()`), put the
        rows back into data set order; else rows come in the loader's order.

        Returns, on the CPU, as fastai v2 orders them:
        (probs float32 [N, c], targets [N]) -- targets int64 for classification,
        + losses float32 [N] at the end when with_loss,
        + inputs [N, ...] at the front when with_input: (inputs, probs, targets[, losses]).
        """
        if ds_type not in ("valid", "train"):
            raise ValueError(f"ds_type should be 'valid' or 'train', got {ds_type!r}")
        for name, flag in (
            ("with_loss", with_loss),
            ("with_input", with_input),
            ("reorder", reorder),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} should be a bool, got {type(flag).__name__} {flag!r}")
        if act is not None and not callable(act):
            raise TypeError(f"act should be a callable or None, got {type(act).__name__}")
        source = "the given dl" if dl is not None else f"data.{ds_type}_dl"
        if dl is None:
            dl = self._preds_dl(ds_type)
        elif not isinstance(dl, Iterable):
            raise TypeError(f"dl should be an iterable of (x, y) batches, got {type(dl).__name__}")
        per_item = self._per_item_loss_func() if with_loss else None
        order = _pass_order(dl) if reorder else None
        outs: list[torch.Tensor] = []
        targs: list[torch.Tensor] = []
        losses: list[torch.Tensor] = []
        inputs: list[torch.Tensor] = []
        modes = [m.training for m in self.model.modules()]
        self.model.eval()
        try:
            with torch.no_grad():
                for batch in dl:
                    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                        raise TypeError(f"dl should yield (x, y) pairs, got {type(batch).__name__}")
                    xb, yb = batch
                    out = self._inference_forward(xb).float()
                    if out.dim() != 2 or out.shape[0] != yb.shape[0]:
                        raise ValueError(
                            f"the model should return Tensor[B, c] for a batch of B = "
                            f"{yb.shape[0]}, got shape {tuple(out.shape)}"
                        )
                    outs.append(out)
                    targs.append(yb)
                    if per_item is not None:
                        loss = per_item(out, yb)
                        if loss.shape != yb.shape[:1]:
                            raise ValueError(
                                f"loss_func with reduction='none' should give one loss per "
                                f"item, shape ({yb.shape[0]},), got {tuple(loss.shape)}"
                            )
                        losses.append(loss.float())
                    if with_input:
                        inputs.append(xb.detach().cpu())
        finally:
            for m, mode in zip(self.model.modules(), modes, strict=True):
                m.training = mode
        raw, targ, loss, inp = (torch.cat(p) if p else None for p in (outs, targs, losses, inputs))
        if getattr(dl, "world_size", 1) > 1:  # this process's block: gather all, rank order
            raw, targ, loss, inp = map(all_gather_cat, (raw, targ, loss, inp))
            order = None if order is None else all_gather_cat(order)
        if raw is None:
            raise ValueError(f"{source} yielded no batch")
        probs = (torch.softmax(raw, dim=-1) if act is None else act(raw)).float().cpu()
        res = [probs, targ.cpu()]
        if with_loss:
            res.append(loss.cpu())
        if with_input:
            res.insert(0, inp)
        if order is not None:
            if len(order) != len(probs):
                raise ValueError(
                    f"dl's batch_indices() name {len(order)} items but it yielded {len(probs)}"
                )
            perm = torch.argsort(order)
            res = [r[perm] for r in res]
        return tuple(res)

    def _inference_forward(self, xb: torch.Tensor) -> torch.Tensor:
        """The model call of every inference pass (get_preds and what builds on it): the input
        Tensor[B, C, H, W] in the learner's memory format, then the model -> Tensor[B, c].
        The caller holds torch.no_grad and eval mode; it runs in the learner's precision
        (autocast after to_bf16 / to_fp16)."""
        if self.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            return self.model(xb)

    def _preds_dl(self, ds_type: str) -> Iterable[Any]:
        """The loader of get_preds(ds_type): the validation loader as it is, or a shallow copy
        of the training loader with shuffle and drop_last off (same transforms, same workers;
        iterating the copy leaves the original's epoch counter alone)."""
        if ds_type == "valid":
            return self.data.valid_dl
        train_dl = self.data.train_dl
        if not (hasattr(train_dl, "shuffle") and hasattr(train_dl, "drop_last")):
            raise ValueError(
                f"ds_type='train' reads the training set in order through a copy of "
                f"data.train_dl with shuffle and drop_last off, but {type(train_dl).__name__} "
                f"has no such attributes; pass dl= (an unshuffled loader) instead"
            )
        ordered = copy.copy(train_dl)
        ordered.shuffle = False
        ordered.drop_last = False
        return ordered

    def _per_item_loss_func(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """loss_func giving one loss per item (reduction='none')."""
        lf = self.loss_func
        if isinstance(getattr(lf, "reduction", None), str):
            per_item = copy.copy(lf)
            per_item.reduction = "none"
            return per_item
        if lf in (F.cross_entropy, F.nll_loss):
            return partial(lf, reduction="none")
        raise ValueError(
            f"with_loss needs per-item losses: loss_func should be a torch loss module with a "
            f"`reduction` attribute (e.g. nn.CrossEntropyLoss()) or F.cross_entropy, got "
            f"{lf!r}; call get_preds without with_loss and compute them from the outputs"
        )

    # ---- layer groups, learning rates, freezing ------------------------------------------
    def lr_range(self, lr: float | slice | Sequence[float], name: str = "lr") -> list[float]:
        """One learning rate per layer group from a float, slice(a, b), slice(b) or a
        sequence (see `fit`). `name` is the argument named in errors."""
        n = len(self.layer_groups)
        if isinstance(lr, slice):
            if lr.step is not None:
                raise ValueError(f"{name} as a slice takes no step, got {lr!r}")
            if lr.stop is None:
                raise ValueError(
                    f"{name} as a slice needs a stop (the last group's lr), got {lr!r}"
                )
            stop = _check_lr_value(f"{name}.stop", lr.stop)
            if lr.start is None:
                return [stop / 10] * (n - 1) + [stop]
            start = _check_lr_value(f"{name}.start", lr.start)
            if n == 1:
                return [stop]
            ratio = (stop / start) ** (1 / (n - 1))
            return [start * ratio**i for i in range(n - 1)] + [stop]
        if isinstance(lr, (list, tuple, np.ndarray, torch.Tensor)):
            values = [float(v) for v in (lr.tolist() if hasattr(lr, "tolist") else lr)]
            if len(values) != n:
                raise ValueError(
                    f"{name} should have one value per layer group ({n}), got {len(values)}"
                )
            return [_check_lr_value(f"{name}[{i}]", v) for i, v in enumerate(values)]
        return [_check_lr_value(name, lr)] * n

    def _wd_range(self, wd: float | Sequence[float]) -> list[float]:
        n = len(self.layer_groups)
        values = list(wd) if isinstance(wd, (list, tuple)) else [wd] * n
        if len(values) != n:
            raise ValueError(
                f"wd should be a float or one per layer group ({n}), got {len(values)}"
            )
        out = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"wd should be a float or floats, got {type(v).__name__} {v!r}")
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"wd should be a finite number >= 0, got {v}")
            out.append(float(v))
        return out

    def _set_wd(self, wd: float | Sequence[float] | None) -> None:
        values = self._wd_range(wd) if wd is not None else self.wd
        if values is None:
            return
        for group, value in zip(self.opt.param_groups, values, strict=True):
            group["wd"] = value

    def _clear_schedule(self) -> None:
        clear = getattr(self.opt, "clear_schedule", None)
        if clear is not None:
            clear()
        self._one_cycle = None

    def _train_len(self) -> int:
        n = len(self.data.train_dl)
        if n == 0:
            raise ValueError(
                "data.train_dl has no batches (len 0): fewer training items than the batch "
                "size with drop_last; lower bs or add items"
            )
        return n

    def freeze_to(self, n: int) -> None:
        """Freeze the layer groups before index n (negative n counts from the end) and make
        the others trainable. Parameters of normalization layers (BatchNorm, ...) stay
        trainable in frozen groups (fastai's train_bn). Frozen parameters get
        requires_grad False and no gradient, so the optimizer step (weight decay included)
        leaves them untouched; the optimizer keeps every group and its state."""
        n_groups = len(self.layer_groups)
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n should be an int, got {type(n).__name__} {n!r}")
        if not -n_groups <= n <= n_groups:
            raise ValueError(f"n should be in [-{n_groups}, {n_groups}] (layer groups), got {n}")
        n_frozen = n if n >= 0 else n_groups + n
        for i, group in enumerate(self.layer_groups):
            for p in group:
                trainable = i >= n_frozen or id(p) in self._norm_params
                p.requires_grad_(trainable)
                if not trainable:
                    p.grad = None

    def freeze(self) -> None:
        """Train only the last layer group (plus normalization layers everywhere)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every layer group."""
        self.freeze_to(0)

    # ---- misc -----------------------------------------------------------------------------
    @property
    def dls(self) -> Any:
        """The data (fastai v2's name for `learn.data`)."""
        return self.data

    def no_bar(self) -> _BarToggle:
        """Turn the progress bar off (the epoch table still prints). Used as
        `with learn.no_bar(): ...` the bar comes back after the block; called plainly, it
        stays off (`learn.progress.show_bar = True` turns it on again)."""
        return _BarToggle(self.progress)

    def to_channels_last(self) -> Learner:
        """Store the model's 4-d weights and feed its inputs channels-last (NHWC), the fast
        layout for convolutions on GPUs. Returns self."""
        self.model.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    # ---- several processes ----------------------------------------------------------------
    def distrib(self, timeout: float = DEFAULT_TIMEOUT) -> Learner:
        """Train on every process of a torchrun launch (DDP; see fastcore_ext.distributed):
        initialize the process group if needed (NCCL on CUDA, else gloo; collectives fail
        after `timeout` seconds), pin this process to its GPU, shard the loaders and wrap
        the model in DistributedDataParallel during each fit. Done by itself when the
        Learner is created under torchrun; a no-op in a single process. Returns self."""
        enter(self, timeout)
        return self

    @contextlib.contextmanager
    def distrib_ctx(self, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Learner]:
        """`with learn.distrib_ctx(): ...` runs the block in distributed mode (`distrib`);
        on leaving, the loaders yield the whole data set again and a process group the
        block created is destroyed (unless the learner was already distributed before)."""
        entered = enter(self, timeout)
        try:
            yield self
        finally:
            if entered:
                exit_distrib(self)

    # ---- mixed precision ------------------------------------------------------------------
    @property
    def precision(self) -> str:
        """'fp32', 'bf16' or 'fp16': how forward passes run (see to_bf16 / to_fp16)."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def to_bf16(self) -> Learner:
        """Run forward passes and the loss under torch.autocast(bfloat16), on the CPU or a
        CUDA GPU. Parameters, gradients and optimizer state stay float32; bfloat16 has
        float32's range, so no loss scaling is needed. Fast where the hardware has bfloat16
        matrix units (Ampere and later GPUs; CPUs with AMX or AVX-512-BF16); on other CPUs it
        can be slower than float32 (bench/README.md, "Training"). Returns self."""
        device = torch.device(self.data.device)
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"to_bf16: the GPU of data.device ({device}) does not support bfloat16; use "
                f"learn.to_fp16() there"
            )
        self.amp_dtype, self.scaler = torch.bfloat16, None
        return self

    def to_fp16(self) -> Learner:
        """Run forward passes and the loss under torch.autocast(float16) on a CUDA GPU, with
        a torch.amp.GradScaler: the loss is scaled before backward, and the fused optimizer
        unscales the grads itself and skips a step whose grads overflowed (its step counter,
        and so the one-cycle schedule, does not advance then). Parameters and optimizer state
        stay float32. CUDA only: on the CPU use `to_bf16()`. Returns self."""
        device = torch.device(self.data.device)
        if device.type != "cuda":
            raise ValueError(
                f"to_fp16 needs a CUDA device, data.device is {device}: float16 with loss "
                f"scaling is a GPU recipe; on the CPU use learn.to_bf16() (or stay in fp32)"
            )
        self.amp_dtype, self.scaler = torch.float16, torch.amp.GradScaler("cuda")
        return self

    def to_fp32(self) -> Learner:
        """Back to plain float32 forward passes (no autocast, no scaler). Returns self."""
        self.amp_dtype, self.scaler = None, None
        return self

    # ---- checkpoints ----------------------------------------------------------------------
    def _model_file(self, name: str | os.PathLike, arg: str = "name") -> Path:
        if not isinstance(name, (str, os.PathLike)) or not str(name):
            raise TypeError(f"{arg} should be a non-empty str or Path, got {name!r}")
        file = Path(name)
        if file.suffix != ".pth":
            file = file.with_name(file.name + ".pth")
        return self.path / self.model_dir / file

    def save(self, name: str | os.PathLike, with_opt: bool = True) -> Path:
        """Save a checkpoint to path/model_dir/`name`.pth, atomically: written to a temporary
        file in that folder, fsync'ed and renamed, so an error or Ctrl-C during the write
        leaves the previous file intact and no temporary file. Holds the model's state_dict,
        the epochs done, the random generators' states and, with_opt, the optimizer state
        (moments, one-cycle schedule and step counter) and the fp16 loss scaler: everything
        `load` + `fit_one_cycle(start_epoch=...)` need to resume. Only tensors and plain
        values: it loads with torch.load(weights_only=True). Returns the file's path."""
        path = self._model_file(name)
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "epoch": self.epochs_done,
            "rng": rng_state(),
            "data_seed": getattr(self.data, "seed", None),
        }
        if with_opt:
            state["opt"] = self.opt.state_dict()
            if self.scaler is not None:
                state["scaler"] = self.scaler.state_dict()
        return atomic_save(state, path)

    def load(
        self,
        name: str | os.PathLike,
        with_opt: bool = True,
        strict: bool = True,
        with_rng: bool | None = None,
    ) -> Learner:
        """Load path/model_dir/`name`.pth (written by `save`; a plain model state_dict file
        works too) into this learner. Returns self.

        with_opt: also load the optimizer state (a warning when the file has none).
        strict: the file must hold exactly this model's tensors with the same shapes, else a
        ValueError lists the differences (another architecture or number of classes).
        strict=False loads the tensors that match by name and shape, warns about the rest,
        and loads no optimizer state. with_rng: restore the random generators' states saved
        in the file (default: with_opt), so a resumed fit draws the same dropout masks as
        the uninterrupted one. `epochs_done` becomes the file's epoch count. Nothing is
        changed when an error is raised."""
        path = self._model_file(name)
        device = next(iter(self.model.state_dict().values()), torch.empty(0)).device
        ckpt = load_file(path, map_location=device)
        if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT:
            model_state = ckpt.get("model")
        else:  # a bare state_dict
            model_state, ckpt = ckpt, {}
        model_state = self._matching_state(model_state, path, strict)
        exact = len(model_state) == len(self.model.state_dict())
        opt_state = ckpt.get("opt") if with_opt else None
        if with_opt and opt_state is None:
            warnings.warn(
                f"{path} holds no optimizer state; only the model was loaded", stacklevel=2
            )
        if opt_state is not None and not exact:
            warnings.warn(
                f"{path}: not every model tensor matched (strict=False), so the optimizer "
                f"state was not loaded",
                stacklevel=2,
            )
            opt_state = None
        if opt_state is not None:
            try:
                self.opt.load_state_dict(opt_state)
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(
                    f"{path}: the optimizer state does not fit this learner's optimizer "
                    f"({type(self.opt).__name__}, {len(self.opt.param_groups)} param groups): {e}. "
                    f"Load with with_opt=False to take the model only"
                ) from e
        self.model.load_state_dict(model_state, strict=False)
        if opt_state is not None and self.scaler is not None and "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        if (with_opt if with_rng is None else with_rng) and "rng" in ckpt:
            set_rng_state(ckpt["rng"])
            seed = getattr(self.data, "seed", None)
            if ckpt.get("data_seed") is not None and seed is not None and seed != ckpt["data_seed"]:
                warnings.warn(
                    f"{path} was saved by a learner whose data seed was {ckpt['data_seed']}, "
                    f"this one's is {seed}: a resumed fit will shuffle and augment differently",
                    stacklevel=2,
                )
        self.epochs_done = int(ckpt.get("epoch", 0) or 0)
        return self

    def _matching_state(self, state: Any, path: Path, strict: bool) -> dict[str, torch.Tensor]:
        """The entries of `state` to load into the model; ValueError when strict and the file
        does not fit (nothing loaded)."""
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise ValueError(f"{path} holds no model state_dict (a dict of name -> tensor)")
        own = self.model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [
            f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
            for k in own
            if k in state and state[k].shape != own[k].shape
        ]
        if not (missing or unexpected or shapes):
            return dict(state)
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if keys:
                more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
                parts.append(f"{len(keys)} {label} ({'; '.join(keys[:3])}{more})")
        summary = ", ".join(parts)
        if strict:
            raise ValueError(
                f"{path} does not fit this model ({type(self.model).__name__}): {summary}. It "
                f"was saved from another architecture or head (e.g. another number of "
                f"classes); load(..., strict=False) takes only the tensors that match"
            )
        warnings.warn(f"{path}: loading only the matching tensors; {summary}", stacklevel=3)
        return {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}

    # ---- inference --------------------------------------------------------------------------
    def export(self, fname: str | os.PathLike = "export.pth") -> Path:
        """Write what inference needs to path/`fname`: the weights and a JSON description
        (architecture, head, classes, normalization, input size and presize) with no pickled
        code. `fastcore_ext.export.load_learner` rebuilds the learner from it. Supports
        create_cnn models (a torchvision body + create_head). Returns the file's path."""
        from fastcore_ext.export import export_learner

        if not isinstance(fname, (str, os.PathLike)) or not str(fname):
            raise TypeError(f"fname should be a non-empty str or Path, got {fname!r}")
        return export_learner(self, self.path / fname)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode and no grad; every module's mode comes back afterwards."""
        modes = [m.training for m in self.model.modules()]
        self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for m, mode in zip(self.model.modules(), modes, strict=True):
                m.training = mode

    def _in_order_loader(self, ds_type: str) -> Any:
        """A loader over `ds_type`'s dataset yielding every item in order through the
        validation transform: valid_dl itself, or a new one over the training set."""
        if ds_type not in ("train", "valid"):
            raise ValueError(f"ds_type should be 'train' or 'valid', got {ds_type!r}")
        valid_dl = getattr(self.data, "valid_dl", None)
        if ds_type == "valid" or valid_dl is None:
            return valid_dl
        from fastcore_ext.data import DeviceDataLoader

        train_dl = self.data.train_dl
        return DeviceDataLoader(
            train_dl.dataset,
            train_dl.bs,
            train=False,
            size=train_dl.size,
            device=train_dl.device,
            seed=train_dl.seed,
            stats=train_dl.stats,
            num_workers=train_dl.num_workers,
            channels_last=train_dl.channels_last,
        )

    def predict(self, item: Any) -> tuple[str, int, torch.Tensor]:
        """Classify one image: a file path, a PIL image, or a uint8 tensor / array [3, H, W]
        or [H, W, 3]. It goes through the validation transform (presize, center crop,
        normalization: `data.preprocess`), then the model in eval mode. Returns (class name,
        class index, probabilities float32 Tensor[c] on the CPU)."""
        preprocess = getattr(self.data, "preprocess", None)
        if preprocess is None:
            raise TypeError(
                f"predict needs data with preprocess(items) (an ImageDataBunch, or a learner "
                f"from load_learner), got {type(self.data).__name__}"
            )
        x = preprocess(_channels_first(item))  # (1, 3, S, S)
        with self._inference():
            logits = self._inference_forward(x)
        probs = torch.softmax(logits.float(), dim=1)[0].cpu()
        idx = int(probs.argmax())
        return self.data.classes[idx], idx, probs

    def tta(
        self,
        ds_type: str = "valid",
        dl: Any = None,
        n: int = 4,
        beta: float | None = 0.25,
        use_max: bool = False,
    ) -> tuple[Any, torch.Tensor]:
        """Test-time augmentation, as fastai v2's `Learner.tta`: predictions over `ds_type`'s
        dataset ('valid' or 'train'), or over the items of `dl` (a DeviceDataLoader with
        train=False, e.g. of a test set), for n passes with the training augmentation
        (data.spec; pass i draws its parameters from a generator seeded from (data seed, i),
        so it is repeatable), averaged (or their element-wise max with use_max), and one plain
        pass (the validation transform). Returns (preds, targets) with
        preds = torch.lerp(augmented, plain, beta) = (1 - beta) * augmented + beta * plain
        (fastai's formula: beta weighs the plain pass); with use_max the element-wise max of
        both; with beta=None ((augmented, plain), targets). Items in dataset order;
        probabilities float32 Tensor[N, c]."""
        n = _check_positive_int("n", n)
        if beta is not None:
            if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 1:
                raise ValueError(f"beta should be a float in [0, 1] or None, got {beta!r}")
        if dl is None:
            dl = self._in_order_loader(ds_type)
        spec = getattr(self.data, "spec", None)
        if not hasattr(dl, "uint8_batches") or not hasattr(dl, "augment"):
            raise TypeError(
                f"tta needs a DeviceDataLoader (uint8 batches it augments itself), got "
                f"{type(dl).__name__}"
            )
        if spec is None:
            raise ValueError(
                "tta needs the training augmentation, and data.spec is None (built with "
                "ds_tfms=None or without aug_transforms in batch_tfms)"
            )
        seed = getattr(self.data, "seed", 0)
        passes = [self.get_preds(dl=_AugmentedPass(dl, spec, seed, i))[0].float() for i in range(n)]
        stacked = torch.stack(passes)
        augmented = stacked.max(0)[0] if use_max else stacked.mean(0)
        plain, targets = self.get_preds(dl=_PlainPass(dl))[:2]
        plain = plain.float()
        if use_max:
            return torch.stack([plain, augmented]).max(0)[0], targets
        if beta is None:
            return (augmented, plain), targets
        return torch.lerp(augmented, plain, float(beta)), targets


def _params_of(group: Any, index: int) -> Iterable[nn.Parameter]:
    """The parameters of one layer group as a splitter may return it."""
    if isinstance(group, nn.Parameter):
        yield group
    elif isinstance(group, nn.Module):
        yield from group.parameters()
    elif isinstance(group, Iterable) and not isinstance(group, (str, bytes, torch.Tensor)):
        for item in group:
            if isinstance(item, nn.Module):
                yield from item.parameters()
            elif isinstance(item, nn.Parameter):
                yield item
            else:
                raise TypeError(
                    f"splitter's layer group {index} should hold Parameters or Modules, got "
                    f"{type(item).__name__}"
                )
    else:
        raise TypeError(
            f"splitter's layer group {index} should be a Module or an iterable of Parameters, "
            f"got {type(group).__name__}"
        )


def _channels_first(item: Any) -> Any:
    """A uint8 tensor [H, W, C] (C in 1, 3, 4) as [C, H, W]; anything else as it is (a
    [3, H, W] tensor stays: channels-first wins when both readings are possible)."""
    if (
        isinstance(item, torch.Tensor)
        and item.dim() == 3
        and item.shape[-1] in (1, 3, 4)
        and item.shape[0] not in (1, 3, 4)
    ):
        return item.permute(2, 0, 1)
    return item


class _PlainPass:
    """One pass over an in-order loader (train=False) through its validation transform,
    leaving the loader's epoch counter alone."""

    def __init__(self, dl: Any) -> None:
        self.dl = dl
        self.world_size = getattr(dl, "world_size", 1)  # a shard's passes are gathered

    def __len__(self) -> int:
        return len(self.dl)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.dl.uint8_batches(0):
            yield self.dl.augment(x, None), y


class _AugmentedPass(_PlainPass):
    """The same items and order, through the training augmentation `spec` with parameters
    drawn from a generator seeded from (seed, pass index)."""

    def __init__(self, dl: Any, spec: Any, seed: int, index: int) -> None:
        super().__init__(dl)
        self.spec, self.seed, self.index = spec, seed, index

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from fastcore_ext.augment import augment_batch, epoch_generator

        gen = epoch_generator(self.seed ^ _TTA_STREAM, self.index)
        mean, std = self.dl.stats if self.dl.stats is not None else ((0.0,) * 3, (1.0,) * 3)
        for x, y in self.dl.uint8_batches(0):
            xb = augment_batch(
                x,
                self.dl.size,
                mean=mean,
                std=std,
                spec=self.spec,
                generator=gen,
                train=True,
                channels_last=self.dl.channels_last,
            )
            yield xb, y


_TTA_STREAM = 0x77A_5EED  # keeps TTA's augmentation streams apart from training's


def _check_start_epoch(start_epoch: Any, n_epoch: int) -> int:
    start_epoch = _check_positive_int("start_epoch", start_epoch, minimum=0)
    if start_epoch >= n_epoch:
        raise ValueError(f"start_epoch should be < n_epoch ({n_epoch}), got {start_epoch}")
    return start_epoch


def _as_cbs(cbs: Callback | Sequence[Callback] | None) -> list[Callback]:
    if cbs is None:
        return []
    return [cbs] if isinstance(cbs, Callback) else list(cbs)


def _pass_order(dl: Any) -> torch.Tensor | None:
    """Data set indices int64 [N] of the items the next pass over a shuffled `dl` yields, in
    the order it yields them (from its `batch_indices()`); None for a loader that is not
    shuffled or does not tell."""
    if not getattr(dl, "shuffle", False) or not hasattr(dl, "batch_indices"):
        return None
    batches = list(dl.batch_indices())
    if not batches:
        return None
    return torch.cat([torch.as_tensor(b, dtype=torch.int64) for b in batches])
