"""Recorder: what happened during a fit, as plain Python floats, and its plots.

Per training batch: the raw loss, the smoothed loss (exponential moving average with
beta=0.98, debiased as fastai does), and every layer group's learning rate and momentum
(the values the optimizer step of that batch used). Per epoch: the train loss (the smoothed
loss at the end of the epoch, as fastai prints it), the validation loss, the metrics over
the whole validation set, and the wall time.

Losses are kept as detached device tensors during an epoch and turned into floats in one
transfer at the end of the training phase (or whenever someone reads `smooth_loss`), so
recording costs no host-device synchronisation per batch. Nothing keeps a graph alive.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.figure import Figure

from fastcore_ext.callback.core import Callback

if TYPE_CHECKING:
    from fastcore_ext.schedule import Suggestions

__all__ = ["Recorder", "metric_name"]


def metric_name(metric: Callable[..., Any]) -> str:
    """The column name of a metric: its `__name__`, or its function's for a partial."""
    if isinstance(metric, partial):
        return metric_name(metric.func)
    name = getattr(metric, "__name__", None)
    return name if name is not None else type(metric).__name__


class Recorder(Callback):
    """Records losses, hyper-parameters, metrics and times of the last fit (or lr_find).

    Attributes (all reset at the start of each fit):
      losses: list[float]            raw training loss of each batch
      smooth_losses: list[float]     smoothed training loss after each batch
      lrs: list[list[float]]         per batch, one learning rate per layer group
      moms: list[list[float]]        per batch, one momentum per layer group (nan if the
                                     optimizer has none)
      epochs: list[int]              index of each finished epoch
      nb_batches: list[int]          training batches of each epoch
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
        self.losses: list[float] = []
        self.smooth_losses: list[float] = []
        self.lrs: list[list[float]] = []
        self.moms: list[list[float]] = []
        self.epochs: list[int] = []
        self.nb_batches: list[int] = []
        self.train_losses: list[float] = []
        self.valid_losses: list[float | None] = []
        self.metrics: list[list[float | None]] = []
        self.epoch_times: list[float] = []
        self.suggestions: Suggestions | None = None
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
        return self.smooth_losses[-1] if self.smooth_losses else math.nan

    @property
    def values(self) -> list[list[float | None]]:
        """Per epoch: [train_loss, valid_loss, *metrics] (fastai v2's `recorder.values`)."""
        return [
            [t, v, *m]
            for t, v, m in zip(self.train_losses, self.valid_losses, self.metrics, strict=True)
        ]

    def _flush(self) -> None:
        """Turn the pending device losses into floats (one transfer) and smooth them."""
        if not self._pending:
            return
        raw = torch.stack(self._pending).float().cpu().tolist()
        self._pending.clear()
        for v in raw:
            self._avg = self.beta * self._avg + (1 - self.beta) * v
            self._count += 1
            self.losses.append(v)
            self.smooth_losses.append(self._avg / (1 - self.beta**self._count))

    # ---- events -------------------------------------------------------------------------
    def before_fit(self) -> None:
        self.reset()
        names = [metric_name(m) for m in self.learn.metrics]
        self.metric_names = ["epoch", "train_loss", "valid_loss", *names, "time"]

    def before_epoch(self) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_batches = 0
        self._epoch_valid = None

    def after_loss(self) -> None:
        learn = self.learn
        if not learn.training:
            return
        self._pending.append(learn.loss.detach().reshape(()))
        lrs, moms = learn.current_hypers()
        self.lrs.append(lrs)
        self.moms.append(moms)
        self._epoch_batches += 1

    def after_train(self) -> None:
        self._flush()
        self.nb_batches.append(self._epoch_batches)

    def before_validate(self) -> None:
        self._val_loss_sum = None
        self._val_n = 0
        self._val_preds, self._val_targs = [], []

    def after_batch(self) -> None:
        learn = self.learn
        if learn.training or learn.loss is None:
            return
        bs = learn.yb.shape[0]
        batch_sum = learn.loss.detach().float() * bs
        self._val_loss_sum = (
            batch_sum if self._val_loss_sum is None else self._val_loss_sum + batch_sum
        )
        self._val_n += bs
        if learn.metrics:
            self._val_preds.append(learn.pred.detach())
            self._val_targs.append(learn.yb.detach())

    def after_validate(self) -> None:
        if self._val_n == 0 or self._val_loss_sum is None:
            self._epoch_valid = None
            return
        valid_loss = (self._val_loss_sum / self._val_n).item()
        mets: list[float | None] = []
        if self.learn.metrics:
            preds = torch.cat(self._val_preds)
            targs = torch.cat(self._val_targs)
            mets = [float(m(preds, targs)) for m in self.learn.metrics]
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
    def plot(self, skip_start: int = 10, skip_end: int = 5, suggestions: bool = True) -> Figure:
        """The learning-rate finder's curve: smoothed loss against the last group's learning
        rate (log scale), without the first `skip_start` and last `skip_end` batches, with
        the suggestions of the last `lr_find` marked. Returns the Figure."""
        self._flush()
        if not self.lrs:
            raise ValueError("recorder.plot() needs a recorded run: call learn.lr_find() first")
        lrs = [g[-1] for g in self.lrs]
        losses = self.smooth_losses
        lrs, losses = _trim(lrs, skip_start, skip_end), _trim(losses, skip_start, skip_end)
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        ax.plot(lrs, losses)
        ax.set_xscale("log")
        ax.set_xlabel("Learning Rate")
        ax.set_ylabel("Loss")
        if suggestions and self.suggestions is not None:
            markers = ("o", "v", "s", "^", "D")
            for (name, lr), marker in zip(
                self.suggestions._asdict().items(), markers, strict=False
            ):
                ax.plot(
                    [lr],
                    [_loss_at(lr, lrs, losses)],
                    marker,
                    markersize=8,
                    label=f"{name}: {lr:.2e}",
                )
            ax.legend()
        return self._finish(fig, "lr_find")

    def plot_losses(self, skip_start: int = 0, with_valid: bool = True) -> Figure:
        """Smoothed training loss per batch and validation loss at the end of each epoch,
        against the number of batches processed (fastai v1's `plot_losses`)."""
        self._flush()
        if not self.smooth_losses:
            raise ValueError("recorder.plot_losses() needs a recorded fit: call learn.fit first")
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        iters = range(skip_start, len(self.smooth_losses))
        ax.plot(list(iters), self.smooth_losses[skip_start:], label="Train")
        if with_valid:
            ends, total = [], 0
            for n in self.nb_batches:
                total += n
                ends.append(total)
            pts = [(e, v) for e, v in zip(ends, self.valid_losses, strict=False) if v is not None]
            pts = [(e, v) for e, v in pts if e > skip_start]
            if pts:
                ax.plot([e for e, _ in pts], [v for _, v in pts], label="Validation")
        ax.set_xlabel("Batches processed")
        ax.set_ylabel("Loss")
        ax.legend()
        return self._finish(fig, "losses")

    def plot_lr(self, show_moms: bool = False) -> Figure:
        """Each layer group's learning rate per batch (and momentum with `show_moms`)."""
        if not self.lrs:
            raise ValueError("recorder.plot_lr() needs a recorded fit: call learn.fit first")
        fig = Figure(figsize=(12, 4) if show_moms else (6, 4))
        axes = fig.subplots(1, 2) if show_moms else [fig.add_subplot()]
        iters = list(range(len(self.lrs)))
        n_groups = len(self.lrs[0])
        for g in range(n_groups):
            axes[0].plot(iters, [h[g] for h in self.lrs], label=f"group {g}")
        axes[0].set_xlabel("Iterations")
        axes[0].set_ylabel("Learning Rate")
        if n_groups > 1:
            axes[0].legend()
        if show_moms:
            for g in range(n_groups):
                axes[1].plot(iters, [h[g] for h in self.moms], label=f"group {g}")
            axes[1].set_xlabel("Iterations")
            axes[1].set_ylabel("Momentum")
        return self._finish(fig, "lr")

    def _finish(self, fig: Figure, name: str) -> Figure:
        """Last step of every plot: lay the figure out and return it. In a notebook the
        returned Figure is displayed by IPython. `name` identifies the plot (e.g. for a file
        name when the figure is also saved)."""
        fig.tight_layout()
        return fig

    def show(self, fig: Figure) -> None:
        """Display `fig` now when running inside a Jupyter kernel (used by show_plot=True)."""
        if "ipykernel" in sys.modules:
            from IPython.display import display

            display(fig)


def _trim(xs: Sequence[float], skip_start: int, skip_end: int) -> list[float]:
    """xs without the first skip_start and last skip_end items; all of xs if too short."""
    stop = len(xs) - skip_end
    if stop - skip_start < 2:
        return list(xs)
    return list(xs[skip_start:stop])


def _loss_at(lr: float, lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The recorded loss at the recorded learning rate closest (in log space) to `lr`."""
    i = min(range(len(lrs)), key=lambda j: abs(math.log(lrs[j]) - math.log(lr)))
    return losses[i]
