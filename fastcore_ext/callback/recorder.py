"""Recorder: what happened during a fit, as plain Python floats, and its plots.

Per training batch: the smoothed loss (exponential moving average with beta=0.98, debiased
as fastai does; fastai's `recorder.losses`), the raw loss, and every layer group's learning
rate and momentum (the values the optimizer step of that batch used; `lrs` / `moms` the
last group's, as fastai's). Per epoch: the train loss (the smoothed loss at the end of the
epoch, as fastai prints it), the validation loss, the metrics over the whole validation
set, and the wall time.

Losses are kept as detached device tensors during an epoch and turned into floats in one
transfer at the end of the training phase (or whenever someone reads `smooth_loss`), so
recording costs no host-device synchronisation per batch. Nothing keeps a graph alive.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fastcore_ext import ranks
from fastcore_ext.callback.core import Callback
from fastcore_ext.callback.progress import format_time
from fastcore_ext.checks import check_bool, int_or_none
from fastcore_ext.metrics import Metric, metric_name, metric_value
from fastcore_ext.plots import check_figsize, finish, new_figure
from fastcore_ext.torch_core import cat_nested, map_nested

if TYPE_CHECKING:
    from fastcore_ext.schedule import Suggestions

__all__ = ["Recorder"]


class Recorder(Callback):
    """Records losses, hyper-parameters, metrics and times of the last fit (or lr_find).

    Attributes (all reset at the start of each fit):
      losses: list[float]            smoothed training loss after each batch (fastai's)
      raw_losses: list[float]        raw training loss of each batch
      group_lrs: list[list[float]]   per batch, one learning rate per layer group
      group_moms: list[list[float]]  per batch, one momentum per layer group (nan if the
                                     optimizer has none)
      lrs, moms: list[float]         (read-only) per batch, the last layer group's learning
                                     rate / momentum (fastai's `recorder.lrs`, v1's `moms`)
      epochs: list[int]              index of each finished epoch
      nb_batches: list[int]          training batches of each epoch
      iters: list[int]               (read-only) batches processed at each epoch's end
      train_losses: list[float]      smoothed train loss at the end of each epoch
      valid_losses: list[float|None] mean validation loss over the whole set (None if no
                                     validation ran that epoch)
      metrics: list[list[float|None]] each metric over the whole validation set, per epoch
      epoch_times: list[float]       seconds per epoch
      metric_names: list[str]        ['epoch', 'train_loss', 'valid_loss', *metrics, 'time']
      suggestions: Suggestions|None  set by `Learner.lr_find`
    """

    order = 50

    def __init__(self, beta: float = 0.98) -> None:
        super().__init__()
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta should be in [0, 1), got {beta!r}")
        self.beta = beta
        self.metric_names: list[str] = ["epoch", "train_loss", "valid_loss", "time"]
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded."""
        self._loss_of_batch = False  # the batch in progress has its loss (after_batch records)
        self._batch_hypers: tuple[list[float], list[float]] = ([], [])  # its step's lrs, moms
        self._losses: list[float] = []
        self._raw_losses: list[float] = []
        self.group_lrs: list[list[float]] = []
        self.group_moms: list[list[float]] = []
        self.epochs: list[int] = []
        self.nb_batches: list[int] = []
        self.train_losses: list[float] = []
        self.valid_losses: list[float | None] = []
        self.metrics: list[list[float | None]] = []
        self.epoch_times: list[float] = []
        self.suggestions: Suggestions | None = None
        # the (lr, loss) each suggestion marks, as fastai's plot_lr_find (minimum: the lowest
        # loss, whose lr is ten times the suggestion)
        self.suggestion_points: list[tuple[float, float]] | None = None
        self._hps: dict[str, list[float]] | None = None  # a ParamScheduler's, for this fit
        self.min_grad_lr: float | None = None  # fastai v1's name, set by plot(suggestion=True)
        self._pending: list[torch.Tensor] = []  # detached 0-dim losses not yet converted
        self._avg = 0.0
        self._count = 0
        self._epoch_batches = 0
        self._epoch_start = 0.0
        self._epoch_valid: tuple[float | None, list[float | None]] | None = None
        self._val_loss_sum: torch.Tensor | None = None
        self._val_n = 0
        self._val_preds: list[torch.Tensor] = []
        self._val_targs: list[torch.Tensor] = []

    # ---- values -------------------------------------------------------------------------
    @property
    def smooth_loss(self) -> float:
        """The current smoothed training loss (nan before the first batch)."""
        self._flush()
        return self._losses[-1] if self._losses else math.nan

    @property
    def train_metrics(self) -> bool:
        """fastai's option of metrics on the training set too: not offered (False); setting
        it True is refused rather than ignored."""
        return False

    @train_metrics.setter
    def train_metrics(self, value: bool) -> None:
        if value:
            raise ValueError(
                "train_metrics=True is not offered: metrics are computed on the validation set "
                "only (learn.get_preds(ds_idx=0) and the metric give the training set's)"
            )

    @property
    def losses(self) -> list[float]:
        """The smoothed training loss of every training batch so far, as fastai's (read
        during a fit, up to the current batch: reading waits for its loss on a GPU)."""
        self._flush()
        return self._losses

    @losses.setter
    def losses(self, value: list[float]) -> None:
        self._flush()
        self._losses = list(value)

    @property
    def raw_losses(self) -> list[float]:
        """Each training batch's own loss, unsmoothed (read as `losses`)."""
        self._flush()
        return self._raw_losses

    @raw_losses.setter
    def raw_losses(self, value: list[float]) -> None:
        self._flush()
        self._raw_losses = list(value)

    @property
    def lrs(self) -> list[float]:
        """Per training batch, the last layer group's learning rate (fastai's
        `recorder.lrs`); every group's: `group_lrs`."""
        return [g[-1] for g in self.group_lrs]

    @property
    def moms(self) -> list[float]:
        """Per training batch, the last layer group's momentum (fastai v1's
        `recorder.moms`; nan if the optimizer has none); every group's: `group_moms`."""
        return [g[-1] for g in self.group_moms]

    @property
    def hps(self) -> dict[str, list[float]]:
        """fastai's `recorder.hps`: per scheduled hyper-parameter, its value at each training
        batch of the last fit (the last layer group's): a ParamScheduler's names when one
        ran, else 'lr' and 'mom' (fit_one_cycle's, as fastai's, and any other fit's)."""
        return self._hps if self._hps is not None else {"lr": self.lrs, "mom": self.moms}

    @hps.setter
    def hps(self, value: dict[str, list[float]]) -> None:
        self._hps = value

    @property
    def iters(self) -> list[int]:
        """The number of training batches processed at the end of each epoch (fastai's
        `recorder.iters`, where `plot_loss` puts the validation losses)."""
        return list(itertools.accumulate(self.nb_batches))

    @property
    def values(self) -> list[list[float | None]]:
        """Per epoch: [train_loss, valid_loss, *metrics] (fastai v2's `recorder.values`)."""
        return [
            [t, v, *m]
            for t, v, m in zip(self.train_losses, self.valid_losses, self.metrics, strict=True)
        ]

    @property
    def log(self) -> list[Any]:
        """The last epoch's row as the table printed it: [epoch, train_loss, valid_loss,
        *metrics, time as 'mm:ss'] (fastai v2's `recorder.log` after a fit); [] before any
        epoch."""
        if not self.epochs:
            return []
        return [self.epochs[-1], *self.values[-1], format_time(self.epoch_times[-1])]

    @property
    def val_losses(self) -> list[float | None]:
        """fastai v1's name for `valid_losses`: each epoch's validation loss."""
        return self.valid_losses

    @property
    def final_record(self) -> list[float | None] | None:
        """The last epoch's [train_loss, valid_loss, *metrics] (fastai v2's `final_record`
        after a fit), or None before any epoch. Unlike fastai's, `validate()` does not
        replace it: validate returns its own [valid_loss, *metrics]."""
        values = self.values
        return values[-1] if values else None

    def _flush(self) -> None:
        """Turn the pending device losses into floats (one transfer) and smooth them."""
        if not self._pending:
            return
        raw = torch.stack(self._pending).float().cpu().tolist()
        self._pending.clear()
        for v in raw:
            self._avg = self.beta * self._avg + (1 - self.beta) * v
            self._count += 1
            self._raw_losses.append(v)
            self._losses.append(self._avg / (1 - self.beta**self._count))

    # ---- events -------------------------------------------------------------------------
    def before_fit(self) -> None:
        self.reset()
        names = [metric_name(m) for m in self.learn.metrics]
        self.metric_names = ["epoch", "train_loss", "valid_loss", *names, "time"]

    def before_batch(self) -> None:
        self._loss_of_batch = False  # a batch cancelled before its loss records nothing

    def before_epoch(self) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_batches = 0
        self._epoch_valid = None

    def after_loss(self) -> None:
        # after_batch records the batch (not one cancelled before its loss), reading
        # learn.loss there, as fastai's Recorder: a callback before this one (order < 50) may
        # still change it in after_batch; the hyper-parameters are those of this batch's step
        self._loss_of_batch = True
        if self.learn.training:
            self._batch_hypers = self.learn.current_hypers()

    def after_train(self) -> None:
        self._flush()
        self.nb_batches.append(self._epoch_batches)

    def before_train(self) -> None:
        self._loss_of_batch = False  # a phase cancelled between after_loss and after_batch

    def before_validate(self) -> None:
        self._loss_of_batch = False
        self._val_loss_sum = None
        self._val_n = 0
        self._val_preds, self._val_targs = [], []
        for m in self.learn.metrics:
            if isinstance(m, Metric):  # fastai's metric classes accumulate batch by batch
                m.reset()

    def after_batch(self) -> None:
        learn = self.learn
        if not self._loss_of_batch:
            return
        self._loss_of_batch = False
        if learn.training:
            self._pending.append(learn.loss.detach().reshape(()))
            lrs, moms = self._batch_hypers
            self.group_lrs.append(lrs)
            self.group_moms.append(moms)
            self._epoch_batches += 1
            return
        (yb,) = learn.yb
        bs = yb.shape[0]
        batch_sum = learn.loss.detach().float() * bs
        self._val_loss_sum = (
            batch_sum if self._val_loss_sum is None else self._val_loss_sum + batch_sum
        )
        self._val_n += bs
        if learn.metrics:
            self._val_preds.append(map_nested(learn.pred, _detached))  # a tuple too
            self._val_targs.append(yb.detach())
            for m in learn.metrics:
                if isinstance(m, Metric):
                    m.accumulate(learn)

    def after_validate(self) -> None:
        preds = cat_nested(self._val_preds) if self._val_preds else None
        targs = torch.cat(self._val_targs) if self._val_targs else None
        # Several processes: sums, counts, predictions and targets of the whole set.
        loss_sum, n, preds, targs = ranks.reduce_validation(
            self._val_loss_sum, self._val_n, preds, targs
        )
        if n == 0 or loss_sum is None:
            self._epoch_valid = None
            return
        valid_loss = (loss_sum / n).item()
        mets: list[float | None] = []
        if self.learn.metrics:
            mets = [metric_value(m, preds, targs) for m in self.learn.metrics]
        self._val_preds, self._val_targs, self._val_loss_sum = [], [], None
        self._epoch_valid = (valid_loss, mets)

    def after_epoch(self) -> None:
        self._flush()
        self.epochs.append(self.learn.epoch)
        self.train_losses.append(self.smooth_loss)
        if self._epoch_valid is None:
            self.valid_losses.append(None)
            self.metrics.append([None] * len(self.learn.metrics))
        else:
            self.valid_losses.append(self._epoch_valid[0])
            self.metrics.append(list(self._epoch_valid[1]))
        self.epoch_times.append(time.perf_counter() - self._epoch_start)

    def after_fit(self) -> None:
        self._flush()

    # ---- plots --------------------------------------------------------------------------
    # Every plot returns its Figure; outside a notebook it is also saved as
    # <plot dir>/<name>.png (fastcore_ext.plots.finish, through `_finish`).
    def plot(
        self,
        skip_start: int = 10,
        skip_end: int = 5,
        suggestions: bool = True,
        *,
        figsize: tuple[float, float] | None = None,
        suggestion: bool | None = None,
    ) -> Figure:
        """The learning-rate finder's curve: smoothed loss against the last group's learning
        rate (log scale), without the first `skip_start` and last `skip_end` batches (all of
        them when that leaves fewer than two), with the suggestions of the last `lr_find`
        listed in the legend and marked where fastai's plot_lr_find marks them (on the curve;
        minimum at the lowest loss, ten times its suggestion). Saved as 'lr_find.png'.
        Returns the Figure. fastai v1's `suggestion=True` also prints its two lines ('Min
        numerical gradient', the steep suggestion, kept as `min_grad_lr`; 'Min loss divided
        by 10', minimum)."""
        if suggestion is not None:
            suggestions = check_bool("suggestion", suggestion)
        self._check_lr_find("plot")
        lo, hi = _window(len(self.group_lrs), skip_start, skip_end)
        lrs = self.lrs[lo:hi]
        losses = self.losses[lo:hi]
        marks = []
        if suggestions and self.suggestions is not None:
            points = self.suggestion_points or [
                (lr, _loss_at(lr, lrs, losses)) for lr in self.suggestions
            ]
            marks = [
                (f"{name}: {lr:.2e}", *point)
                for (name, lr), point in zip(
                    self.suggestions._asdict().items(), points, strict=True
                )
            ]
        fig = self._lr_find_figure(lrs, losses, marks, check_figsize(figsize, (6, 4)))
        if marks and suggestion:
            self.min_grad_lr = self.suggestions.steep
            print(f"Min numerical gradient: {self.suggestions.steep:.2E}")
            print(f"Min loss divided by 10: {self.suggestions.minimum:.2E}")
        return self._finish(fig, "lr_find")

    def plot_lr_find(
        self,
        skip_end: int = 5,
        return_fig: bool = True,
        suggestions: Sequence[tuple[float, float]] | None = None,
        nms: Sequence[str] | None = None,
    ) -> Figure | None:
        """fastai v2's `plot_lr_find`: the curve of `plot` (smoothed loss against the last
        group's learning rate) from the first batch on, without the last `skip_end` (all of
        them when that leaves fewer than two); `suggestions`, (lr, loss) points, are marked
        and named by `nms` in the legend (what `lr_find(suggest_funcs=..., show_plot=True)`
        passes). Saved as 'lr_find.png'. Returns the Figure, None with return_fig=False."""
        return_fig = check_bool("return_fig", return_fig)
        marks = _named_points(suggestions, nms)
        self._check_lr_find("plot_lr_find")
        lo, hi = _window(len(self.group_lrs), 0, skip_end)
        fig = self._lr_find_figure(self.lrs[lo:hi], self.losses[lo:hi], marks, (6, 4))
        fig = self._finish(fig, "lr_find")
        return fig if return_fig else None

    def _check_lr_find(self, method: str) -> None:
        """Flush the pending losses; ValueError naming `method` when nothing is recorded."""
        self._flush()
        if not self.group_lrs:
            raise ValueError(
                f"recorder.{method}() needs a recorded run: call learn.lr_find() first"
            )

    def _lr_find_figure(
        self,
        lrs: Sequence[float],
        losses: Sequence[float],
        marks: Sequence[tuple[str, float, float]],
        figsize: tuple[float, float],
    ) -> Figure:
        """plot's and plot_lr_find's drawing: `losses` against `lrs` (log scale), each
        (label, lr, loss) of `marks` a marker named in the legend."""
        fig = new_figure(figsize=figsize)
        ax = fig.add_subplot()
        ax.plot(lrs, losses, color="C0")
        ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Smoothed loss")
        ax.set_title("Learning rate finder")
        ax.grid(True, which="major", alpha=0.3)
        markers = ("o", "v", "s", "^", "D")
        for k, (label, lr, loss) in enumerate(marks):
            ax.plot(
                [lr],
                [loss],
                markers[k % len(markers)],
                color=f"C{k + 1}",
                markersize=9,
                label=label,
            )
        if marks:
            ax.legend()
        return fig

    def plot_losses(
        self,
        skip_start: int = 0,
        with_valid: bool = True,
        *,
        skip_end: int = 0,
        figsize: tuple[float, float] | None = None,
    ) -> Figure:
        """Smoothed training loss after each batch and validation loss at the end of each
        epoch (dots), against the number of batches processed (fastai v1's `plot_losses`),
        without the first `skip_start` and last `skip_end` batches. Saved as 'losses.png'."""
        self._flush()
        if not self.losses:
            raise ValueError("recorder.plot_losses() needs a recorded fit: call learn.fit first")
        lo, hi = _window(len(self.losses), skip_start, skip_end)
        fig = new_figure(figsize=check_figsize(figsize, (6, 4)))
        self._draw_losses(fig.add_subplot(), lo, hi, with_valid)
        return self._finish(fig, "losses")

    def plot_loss(
        self,
        skip_start: int = 5,
        with_valid: bool = True,
        log: bool = False,
        show_epochs: bool = False,
        ax: Axes | None = None,
    ) -> Figure | None:
        """fastai v2's `plot_loss`: the curves of `plot_losses` (smoothed training loss after
        each batch, validation loss at the end of each epoch) without the first `skip_start`
        batches. log: both axes logarithmic; show_epochs: a dotted vertical line at the end
        of each epoch; ax: draw into this matplotlib Axes (nothing saved, None returned, as
        fastai's: a notebook shows the figure once), else a new Figure saved as
        'losses.png', returned."""
        with_valid = check_bool("with_valid", with_valid)
        log = check_bool("log", log)
        show_epochs = check_bool("show_epochs", show_epochs)
        if ax is not None and not isinstance(ax, Axes):
            raise TypeError(f"ax should be a matplotlib Axes or None, got {type(ax).__name__}")
        self._flush()
        if not self.losses:
            raise ValueError("recorder.plot_loss() needs a recorded fit: call learn.fit first")
        lo, hi = _window(len(self.losses), skip_start, 0)
        if ax is not None:
            self._draw_losses(ax, lo, hi, with_valid, log, show_epochs)
            return None
        fig = new_figure(figsize=(6, 4))
        self._draw_losses(fig.add_subplot(), lo, hi, with_valid, log, show_epochs)
        return self._finish(fig, "losses")

    def _draw_losses(
        self,
        ax: Axes,
        lo: int,
        hi: int,
        with_valid: bool,
        log: bool = False,
        show_epochs: bool = False,
    ) -> None:
        """plot_losses' and plot_loss's drawing: the smoothed loss of batches lo..hi-1 against
        the batches processed (lo+1..hi) and, with_valid, the validation losses of the epochs
        that ended within them; log: log-log axes; show_epochs: a line at each epoch end."""
        ends = self.iters
        ax.plot(range(lo + 1, hi + 1), self.losses[lo:hi], label="Train")
        if with_valid:
            pts = [
                (e, v)
                for e, v in zip(ends, self.valid_losses, strict=False)
                if v is not None and lo < e <= hi
            ]
            if pts:
                ax.plot([e for e, _ in pts], [v for _, v in pts], "o-", label="Validation")
        if show_epochs:
            for e in ends:
                if lo < e <= hi:
                    ax.axvline(e, color="grey", linestyle=":")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("Batches processed")
        ax.set_ylabel("Loss")
        ax.set_title("Training and validation loss")
        ax.grid(True, alpha=0.3)
        ax.legend()

    def plot_lr(
        self,
        show_moms: bool = False,
        *,
        skip_start: int = 0,
        skip_end: int = 0,
        figsize: tuple[float, float] | None = None,
    ) -> Figure:
        """Each layer group's learning rate per training batch, one line per group (and its
        momentum in a second panel with `show_moms`). The lr axis is logarithmic when the
        groups' peak learning rates differ tenfold or more (discriminative lrs), so every
        group's schedule stays visible. Saved as 'lr.png' ('lr_moms.png' with moms)."""
        keys = ("lr", "mom") if show_moms else ("lr",)
        default = (11, 4) if show_moms else (6, 4)
        name = "lr_moms" if show_moms else "lr"
        return self._plot_sched("plot_lr", keys, skip_start, skip_end, figsize, default, name)

    def plot_sched(
        self, keys: str | Sequence[str] | None = None, figsize: tuple[float, float] | None = None
    ) -> Figure:
        """fastai v2's `plot_sched`: the schedule of each hyper-parameter in `keys` (those of
        `hps`: a ParamScheduler's names, else 'lr' and 'mom'; all of them by default) over
        the training batches of the last fit, one panel each; lr and mom a line per layer
        group (v2 draws the last group's), drawn as `plot_lr` draws them, the others the last
        group's. Saved as 'sched.png'. Returns the Figure."""
        keys = _sched_keys(keys, tuple(self.hps))
        default = (6 * len(keys), 4)
        return self._plot_sched("plot_sched", keys, 0, 0, figsize, default, "sched")

    def _plot_sched(
        self,
        method: str,
        keys: tuple[str, ...],
        skip_start: int,
        skip_end: int,
        figsize: tuple[float, float] | None,
        default_figsize: tuple[float, float],
        name: str,
    ) -> Figure:
        """plot_lr's and plot_sched's drawing: a panel per key of `keys` ('lr', 'mom') over
        the batches without the first skip_start and last skip_end, saved as `name`; `method`
        names the caller in the error of a recorder with nothing recorded."""
        if not self.group_lrs:
            raise ValueError(f"recorder.{method}() needs a recorded fit: call learn.fit first")
        lo, hi = _window(len(self.group_lrs), skip_start, skip_end)
        iters = range(lo, hi)
        fig = new_figure(figsize=check_figsize(figsize, default_figsize))
        axes = fig.subplots(1, len(keys)) if len(keys) > 1 else [fig.add_subplot()]
        n_groups = len(self.group_lrs[0])
        for ax, key in zip(axes, keys, strict=True):
            if key in ("lr", "mom"):
                values = self.group_lrs if key == "lr" else self.group_moms
                for g in range(n_groups):
                    ax.plot(iters, [values[i][g] for i in iters], _style(g), label=f"group {g}")
            else:  # another scheduled hyper-parameter: the last group's (hps)
                ax.plot(iters, [self.hps[key][i] for i in iters], label=f"group {n_groups - 1}")
            if key == "lr":
                peaks = [max(self.group_lrs[i][g] for i in iters) for g in range(n_groups)]
                if min(peaks) > 0 and max(peaks) / min(peaks) >= 10:
                    ax.set_yscale("log")
            label = {"lr": "Learning rate", "mom": "Momentum"}.get(key, key)
            ax.set_xlabel("Iterations")
            ax.set_ylabel(label)
            ax.set_title(f"{label} schedule")
            ax.grid(True, alpha=0.3)
            if n_groups > 1:
                ax.legend()
        return self._finish(fig, name)

    def plot_metrics(self, *, figsize: tuple[float, float] | None = None) -> Figure:
        """Each metric over the whole validation set at the end of each epoch, one panel per
        metric, against the epoch. Saved as 'metrics.png'."""
        names = self.metric_names[3:-1]
        if not names or not self.metrics:
            raise ValueError(
                "recorder.plot_metrics() needs a fit with metrics: create the learner with "
                "metrics=... (e.g. error_rate) and call learn.fit first"
            )
        n = len(names)
        fig = new_figure(figsize=check_figsize(figsize, (min(4.5 * n, 16), 3.5)))
        axes = fig.subplots(1, n, squeeze=False)[0]
        for k, (ax, name) in enumerate(zip(axes, names, strict=True)):
            pts = [(e, m[k]) for e, m in zip(self.epochs, self.metrics, strict=True)]
            pts = [(e, v) for e, v in pts if v is not None]
            ax.plot([e for e, _ in pts], [v for _, v in pts], "o-", color=f"C{k}")
            ax.set_xlabel("Epoch")
            ax.set_title(name)
            ax.grid(True, alpha=0.3)
            epochs = sorted({e for e, _ in pts})
            if epochs:
                ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
            if 0 < len(epochs) <= 10:  # one tick per epoch (one epoch: MaxNLocator gave 0.1s)
                ax.set_xticks(epochs)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        return self._finish(fig, "metrics")

    def _finish(self, fig: Figure, name: str) -> Figure:
        """Last step of every plot (`fastcore_ext.plots.finish`): layout, the PNG in the
        plot dir outside a notebook, return the Figure."""
        return finish(fig, name)

    def show(self, fig: Figure) -> None:
        """Display `fig` now when running inside a Jupyter kernel (used by show_plot=True)."""
        if "ipykernel" in sys.modules:
            from IPython.display import display

            display(fig)


def _style(group: int) -> str:
    """Line style of a layer group: groups with equal schedules stay visible on top of
    each other."""
    return ("-", "--", ":", "-.")[group % 4]


def _skip(name: str, value: Any) -> int:
    """A number of batches to skip: an int >= 0."""
    number = int_or_none(value)
    if number is None or number < 0:
        raise ValueError(f"{name} should be an int >= 0, got {value!r}")
    return number


def _window(n: int, skip_start: int, skip_end: int) -> tuple[int, int]:
    """[lo, hi) of n recorded batches without the first skip_start and last skip_end; all
    of them when that would leave fewer than two."""
    lo, hi = _skip("skip_start", skip_start), n - _skip("skip_end", skip_end)
    return (lo, hi) if hi - lo >= 2 else (0, n)


def _sched_keys(keys: str | Sequence[str] | None, recorded: tuple[str, ...]) -> tuple[str, ...]:
    """plot_sched's keys as a tuple: names of `recorded` (the hyper-parameters recorded, with
    'lr' and 'mom' always), all of those by default."""
    names = tuple(dict.fromkeys(("lr", "mom", *recorded)))
    if keys is None:
        return recorded
    found = (keys,) if isinstance(keys, str) else keys
    if (
        not isinstance(found, Sequence)
        or not found
        or any(k not in names for k in found)
        or len(set(found)) != len(found)
    ):
        raise ValueError(
            f"keys should be one of {list(names)} or a sequence of them without repeats (the "
            f"hyper-parameters the last fit recorded), got {keys!r}"
        )
    return tuple(found)


def _named_points(
    suggestions: Sequence[tuple[float, float]] | None, nms: Sequence[str] | None
) -> list[tuple[str, float, float]]:
    """plot_lr_find's marks: (name, lr, loss) for each (lr, loss) of `suggestions`, named by
    `nms` in the same order."""
    if suggestions is None:
        if nms is not None:
            raise ValueError(f"nms names the suggestions: give suggestions too, got nms={nms!r}")
        return []
    try:
        points = [(float(lr), float(loss)) for lr, loss in suggestions]
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"suggestions should be a sequence of (lr, loss) points, got {suggestions!r}"
        ) from e
    if nms is None or isinstance(nms, str) or len(nms) != len(points):
        raise ValueError(
            f"nms should be a sequence of {len(points)} names, one per suggestion, got {nms!r}"
        )
    return [(str(nm), lr, loss) for nm, (lr, loss) in zip(nms, points, strict=True)]


def _loss_at(lr: float, lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The recorded loss at the recorded learning rate closest (in log space) to `lr`."""
    i = min(range(len(lrs)), key=lambda j: abs(math.log(lrs[j]) - math.log(lr)))
    return losses[i]


def _detached(x: Any) -> Any:
    """A tensor leaf of the model's output detached (what a metric reads); others as they
    are."""
    return x.detach() if isinstance(x, torch.Tensor) else x
