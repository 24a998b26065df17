"""LRFinder: the callback behind `Learner.lr_find` (an exponential learning-rate sweep)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from fastcore_ext.callback.core import Callback, CancelFitException, CancelValidException
from fastcore_ext.schedule import exp_sweep

__all__ = ["LRFinder"]


class LRFinder(Callback):
    """Sets every group's learning rate for training batch i to its sweep's i-th value, and
    ends the fit after `num_it` batches, or (with `stop_div`) as soon as the smoothed loss
    passes 4 times the best smoothed loss seen so far or is not finite. Validation is
    skipped.

    start_lrs, end_lrs: one value per layer group; group g sweeps exponentially from
    start_lrs[g] to end_lrs[g], so equal end/start ratios keep the ratios between the groups.
    """

    order = 55  # after the Recorder (50), which computes the smoothed loss it reads
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
        self.num_it = num_it
        self.stop_div = stop_div
        self.sweeps = [
            list(exp_sweep(s, e, num_it)) for s, e in zip(start_lrs, end_lrs, strict=True)
        ]
        self.best_loss = math.inf

    def before_fit(self) -> None:
        self.best_loss = math.inf

    def before_batch(self) -> None:
        i = self.learn.train_iter - 1  # train_iter counts the batch being processed
        for group, sweep in zip(self.learn.opt.param_groups, self.sweeps, strict=True):
            group["lr"] = sweep[i]

    def after_batch(self) -> None:
        loss = self.learn.recorder.smooth_loss
        if loss < self.best_loss:
            self.best_loss = loss
        if self.stop_div and (loss > 4 * self.best_loss or not math.isfinite(loss)):
            raise CancelFitException
        if self.learn.train_iter >= self.num_it:
            raise CancelFitException

    def before_validate(self) -> None:
        raise CancelValidException
