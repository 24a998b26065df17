"""LRFinder: the callback behind `Learner.lr_find` (an exponential learning-rate sweep), the
in-memory snapshot lr_find restores afterwards, `sweep`, which runs one between the two
(and, when an exception ends it early, says how far it got once the learner is put back),
and `suggest`, fastai v2's `suggest_funcs` applied to the recorded sweep."""

from __future__ import annotations

import collections
import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from fastcore_ext.callback.core import (
    Callback,
    CancelFitException,
    CancelValidException,
    report_stop,
)
from fastcore_ext.checkpoint import rng_state, set_rng_state
from fastcore_ext.layer_groups import set_lrs, set_wd
from fastcore_ext.metrics import metric_name
from fastcore_ext.schedule import Point, exp_sweep, suggestion_window

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = ["LRFinder", "Snapshot", "sweep", "check_suggest_funcs", "suggest"]


class LRFinder(Callback):
    """Sets every layer group's learning rate for training batch i to its sweep's i-th value,
    and ends the fit after `num_it` batches, or (with `stop_div`) as soon as the smoothed
    loss passes 4 times the best smoothed loss seen so far (from the MIN_POINTS-th batch on)
    or is not finite. Validation is skipped.

    start_lrs, end_lrs: one value per layer group; group g sweeps exponentially from
    start_lrs[g] to end_lrs[g], so equal end/start ratios keep the ratios between the groups.
    iters_done: the sweep's iterations so far (batches whose optimizer step ran), which an
    interrupted sweep reports (`sweep`).
    """

    order = 55  # after the Recorder (50), which computes the smoothed loss it reads
    MIN_POINTS = 3
    """The first batch whose loss may end the sweep as diverged: a sweep that stops there still
    leaves the 2 points before it that the suggestions need. (On little data the first
    batches' losses differ 10x at rates far too small to diverge: 0.07 to 3.7 seen with 8
    images a batch, and a sweep of 8 ended at its 2nd point with nothing to suggest from.)"""
    run_valid = False

    def __init__(
        self, start_lrs: Sequence[float], end_lrs: Sequence[float], num_it: int, stop_div: bool
    ) -> None:
        super().__init__()
        if len(start_lrs) != len(end_lrs):
            raise ValueError(
                f"start_lrs and end_lrs should have one value per layer group, got "
                f"{len(start_lrs)} and {len(end_lrs)}"
            )
        for g, (start, end) in enumerate(zip(start_lrs, end_lrs, strict=True)):
            if not start < end:
                per_group = len(set(start_lrs)) > 1 or len(set(end_lrs)) > 1
                group = f" (layer group {g})" if per_group else ""
                raise ValueError(
                    f"start_lr should be below end_lr{group}: the sweep goes up from start_lr "
                    f"to end_lr, got start_lr={start:g} and end_lr={end:g}"
                )
        self.num_it = num_it
        self.stop_div = stop_div
        self.sweeps = [
            list(exp_sweep(s, e, num_it)) for s, e in zip(start_lrs, end_lrs, strict=True)
        ]
        self.best_loss = math.inf
        self.iters_done = 0  # the sweep's batches whose optimizer step has run

    def before_fit(self) -> None:
        self.best_loss = math.inf
        self.iters_done = 0

    def before_batch(self) -> None:
        i = self.learn.train_iter  # the batch's index (counted at its after_batch)
        set_lrs(self.learn.opt, self.learn.group_map, [sweep[i] for sweep in self.sweeps])

    def after_step(self) -> None:
        self.iters_done = self.learn.train_iter + 1

    def after_batch(self) -> None:
        loss = self.learn.recorder.smooth_loss
        if loss < self.best_loss:
            self.best_loss = loss
        diverged = loss > 4 * self.best_loss and self.learn.train_iter >= self.MIN_POINTS
        if self.stop_div and (diverged or not math.isfinite(loss)):
            raise CancelFitException
        if self.learn.train_iter >= self.num_it:
            raise CancelFitException

    def before_validate(self) -> None:
        raise CancelValidException


@dataclass
class Snapshot:
    """Everything a learning-rate sweep changes, copied in memory (no temporary file): the
    model's weights and buffers, requires_grad flags, gradients, train/eval modes, the
    optimizer's state, the RNG states (checkpoint.rng_state), fp16's scaler, epochs_done and
    epochs_trained (so a sweep leaves the data epochs of the next fit as they were)."""

    model_state: dict[str, torch.Tensor]
    requires_grad: list[bool]
    grads: list[torch.Tensor | None]
    modes: list[bool]
    opt_state: dict[str, Any]
    rng: dict[str, Any]
    scaler_state: dict[str, Any] | None
    epochs_done: int
    epochs_trained: int

    @classmethod
    def take(cls, learn: Learner) -> Snapshot:
        params = list(learn.model.parameters())
        scaler = learn.scaler
        return cls(
            model_state={k: v.detach().clone() for k, v in learn.model.state_dict().items()},
            requires_grad=[p.requires_grad for p in params],
            grads=[None if p.grad is None else p.grad.detach().clone() for p in params],
            modes=[m.training for m in learn.model.modules()],
            opt_state=copy.deepcopy(learn.opt.state_dict()),
            rng=rng_state(),
            scaler_state=scaler.state_dict() if scaler is not None else None,
            epochs_done=learn.epochs_done,
            epochs_trained=learn.epochs_trained,
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
        set_rng_state(self.rng)
        if self.scaler_state is not None and learn.scaler is not None:
            learn.scaler.load_state_dict(self.scaler_state)
        learn.epochs_done = self.epochs_done
        learn.epochs_trained = self.epochs_trained


def sweep(learn: Learner, finder: LRFinder, n_epoch: int, wd: Any = None) -> None:
    """Run `finder`'s sweep as a fit of up to `n_epoch` epochs, without the epoch table and
    with no schedule in the optimizer (and with weight decay `wd` when not None, as `fit`'s
    wd), then put back everything it changed (`Snapshot`); the recorder keeps the sweep.

    An exception that ends the sweep early (Ctrl-C's KeyboardInterrupt included) goes on to
    the caller after the learner is put back, with a note saying after how many of the
    `num_it` iterations lr_find stopped; a KeyboardInterrupt also prints it (on stderr), in
    place of the training loop's message (`fastcore_ext.interrupt`), whose epochs and batches
    are not the user's."""
    snapshot = Snapshot.take(learn)
    show_table = learn.progress.show_table
    learn.progress.show_table = False
    try:
        learn._clear_schedule()
        set_wd(learn.opt, learn.group_map, wd, None)
        learn._fit(n_epoch, 0, [finder])
    except BaseException as e:
        _put_back(learn, snapshot, show_table)
        _report_stop(finder, e)  # after the restore: what it says is now true
        raise
    _put_back(learn, snapshot, show_table)


def _put_back(learn: Learner, snapshot: Snapshot, show_table: bool) -> None:
    learn.progress.show_table = show_table
    snapshot.restore(learn)


def _report_stop(finder: LRFinder, e: BaseException) -> None:
    """Say that lr_find stopped after finder.iters_done of its num_it iterations and that the
    learner was put back: a note on `e` and, for a KeyboardInterrupt, a line on stderr."""
    after = f"after {finder.iters_done} of {finder.num_it} iterations"
    what = "parameters, optimizer state, BatchNorm statistics and RNG states"
    report_stop(
        e,
        f"fastcore_ext: lr_find stopped {after}; the learner's {what} were put back.",
        f"lr_find interrupted {after}. The learner is usable: its {what} are those from "
        f"before lr_find (put back); no learning rate was suggested.",
    )


SuggestFunc = Callable[..., tuple[float, Point]]  # f(lrs, losses, num_it) -> (lr, (lr, loss))


def check_suggest_funcs(suggest_funcs: Any) -> tuple[SuggestFunc, ...]:
    """lr_find's `suggest_funcs` as a tuple: one suggestion function (fastai's default is
    `valley` alone) or a non-empty sequence of them."""
    funcs = (suggest_funcs,) if callable(suggest_funcs) else suggest_funcs
    if (
        isinstance(funcs, (str, bytes))
        or not isinstance(funcs, Sequence)
        or not all(callable(f) for f in funcs)
    ):
        raise TypeError(
            "suggest_funcs should be a sequence of suggestion functions f(lrs, losses, num_it) "
            f"-> (lr, (lr, loss)) such as (valley, steep, minimum), got {suggest_funcs!r}"
        )
    if not funcs:
        raise ValueError(
            "suggest_funcs should hold at least one suggestion function such as valley, "
            "got an empty sequence"
        )
    return tuple(funcs)


def suggest(
    suggest_funcs: Sequence[SuggestFunc], lrs: Sequence[float], losses: Sequence[float], num_it: int
) -> tuple[tuple[float, ...], list[Point]]:
    """fastai v2's `lr_find(suggest_funcs=...)` result: each function called as
    f(lrs, losses, num_it) on `schedule.suggestion_window` of the sweep, as float64 tensors
    (fastai passes tensors, so a function written for fastai works: `losses.argmin()`).

    Returns (SuggestedLRs, points): a namedtuple of the suggested lrs whose fields are the
    functions' names in the order given (a partial's function's name; a name that is no
    valid field, a lambda's or a repeated one, becomes `_<position>`), and the (lr, loss)
    point each asks a plot to mark."""
    w_lrs, w_losses = suggestion_window(lrs, losses, num_it)
    t_lrs = torch.tensor(w_lrs, dtype=torch.float64)
    t_losses = torch.tensor(w_losses, dtype=torch.float64)
    values, points = [], []
    for func in suggest_funcs:
        out = func(t_lrs, t_losses, num_it)
        try:
            lr, (point_lr, point_loss) = out
            lr, point = float(lr), (float(point_lr), float(point_loss))
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"suggest_funcs: {metric_name(func)} should return (lr, (lr, loss)), as fastai's "
                f"suggestion functions do, got {out!r}"
            ) from e
        values.append(lr)
        points.append(point)
    names = [metric_name(f) for f in suggest_funcs]
    suggested_lrs = collections.namedtuple("SuggestedLRs", names, rename=True)
    return suggested_lrs(*values), points
