"""ActivationStats: the mean, standard deviation and share of near-zero values of each
layer's activations at every training batch, and fastai's plots of them (fastbook chapter
13, `fastai.callback.hook.ActivationStats`).

    stats = ActivationStats(with_hist=True)
    learn.fit_one_cycle(1, 0.06, cbs=stats)
    stats.plot_layer_stats(0)        # mean, std, % near zero of the first layer, per batch
    stats.color_dim(-2)              # the "colorful dimension" histogram image

As fastai 2.8.12's: by default it hooks the leaf modules of the model that have parameters
(`hooks.flatten_model` + `hooks.has_params`: frozen ones too); it records training batches
only (every one, or batches 0, every, 2 * every... of the fit with `every`), as
`stats[batch][layer]`, a dict of 'mean', 'std' (unbiased), 'near_zero' (the share of
activations <= 0.05, negative ones included) and, with `with_hist`, 'hist': torch.histc of
the activations in 40 bins over [0, 10] (values outside are not counted). Statistics are of
the output in float32 (a bfloat16 output under autocast is converted first). A module that
outputs a tuple gets a list of such dicts, one per tensor.

Differences, none in the values: the statistics are computed on the model's device and
copied to the CPU in one transfer per epoch (fastai copies every activation to the CPU and
reads each number at every batch); nothing is computed during validation, whose values
fastai computes and drops; the hooks are removed at the end of the fit also when it ends by
an exception (the loop still fires after_fit then), and a fit of `lr_find` is sat out: its
sweep neither replaces the stats of the last fit nor is slowed by the hooks. Plots return
their Figure and go through `fastcore_ext.plots.finish` (inline in a notebook, else saved as
'<plot dir>/layer_stats_<idx>.png', 'color_dim_<idx>.png'). Under `learn.compile()`, keep
every=None: each change of the model's hooks compiles the model anew.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from fastcore_ext.callback.core import Callback
from fastcore_ext.callback.lr_finder import LRFinder
from fastcore_ext.checks import check_bool, check_int, int_or_none
from fastcore_ext.foundation import L
from fastcore_ext.hooks import Hooks, check_modules, flatten_model, has_params
from fastcore_ext.plots import check_figsize, finish, new_figure

__all__ = ["ActivationStats"]

NEAR_ZERO = 0.05
"""An activation <= this counts as near zero (fastai's threshold)."""
HIST_BINS, HIST_MIN, HIST_MAX = 40, 0.0, 10.0
"""with_hist: torch.histc(activations, 40, 0, 10), as fastai's."""
STATS = ("mean", "std", "near_zero")
"""The statistics of every layer at every recorded batch, in `layer_stats`' order."""


def _entries(layer: Any) -> list[dict[str, Any]]:
    """The dicts of one layer's record: one (a tensor output), a list (a tuple output) or
    none (the module did not run in that batch)."""
    if isinstance(layer, dict):
        return [layer]
    if isinstance(layer, list):
        return [d for d in layer if isinstance(d, dict)]
    return []


def _flat_tensors(o: tuple) -> list[torch.Tensor]:
    """The tensors of a nested tuple, in order (fastai's _flatten_tuple, then its filter)."""
    out: list[torch.Tensor] = []
    for item in o:
        if isinstance(item, tuple):
            out += _flat_tensors(item)
        elif isinstance(item, torch.Tensor):
            out.append(item)
    return out


class ActivationStats(Callback):
    """Records statistics of the activations of `modules` at training batches (module doc).

    with_hist: also a 40-bin histogram over [0, 10] of each layer's activations (needed by
    `hist` and `color_dim`). modules: the modules to hook (an iterable; an nn.Sequential
    gives its children); None: the model's leaf modules with parameters, found at each fit.
    every: record one training batch in `every` (batches 0, every, 2 * every... of the fit,
    fastai's), hooking the modules for those batches only; None: every training batch.

    After a fit, `stats` holds one L per recorded batch of one record per module: a dict of
    floats 'mean', 'std', 'near_zero' (and 'hist', a float32 CPU tensor [40])."""

    order = -20  # fastai's
    run_valid = False  # fastai records training batches only

    def __init__(
        self,
        with_hist: bool = False,
        modules: Iterable[nn.Module] | None = None,
        every: int | None = None,
    ) -> None:
        super().__init__()
        self.with_hist = check_bool("with_hist", with_hist)
        self.modules = None if modules is None else check_modules("modules", modules)
        self.every = None if every is None else check_int("every", every, 1)
        self.hooks: Hooks | None = None
        self._hooked: list[nn.Module] = []  # the modules of the current fit
        self._stats = L()
        self._pending: list[L] = []  # recorded batches whose values are still tensors
        self._off = False  # an lr_find sweep

    def __repr__(self) -> str:
        return f"ActivationStats(with_hist={self.with_hist}, every={self.every})"

    # ---- recording -----------------------------------------------------------------------
    def hook(self, m: nn.Module, i: Any, o: Any) -> dict[str, torch.Tensor] | list | None:
        """What the hook of each module stores at a training forward pass: a dict of 0-dim
        tensors 'mean', 'std', 'near_zero' (and 'hist', [40]) of the detached output `o` in
        float32, a list of them for a tuple output; None outside training batches."""
        if not self.learn.training:
            return None
        if isinstance(o, tuple):
            return [self._layer_stats(t) for t in _flat_tensors(o)]
        return self._layer_stats(o)

    def _layer_stats(self, o: torch.Tensor) -> dict[str, torch.Tensor]:
        x = o.float()
        res = {
            "mean": x.mean(),
            "std": x.std(),
            "near_zero": (x <= NEAR_ZERO).sum().double() / x.numel(),
        }
        if self.with_hist:
            res["hist"] = x.histc(HIST_BINS, HIST_MIN, HIST_MAX)
        return res

    def before_fit(self) -> None:
        self._remove()  # hooks a fit left behind, if its after_fit never came
        self._off = any(isinstance(cb, LRFinder) for cb in self.learn.cbs)
        if self._off:
            return
        self._stats, self._pending = L(), []
        if self.modules is not None:
            self._hooked = list(self.modules)
        else:
            self._hooked = [m for m in flatten_model(self.learn.model) if has_params(m)]
        if self.every is None:
            self._register()

    def _recorded(self, batch: int) -> bool:
        """Training batch `batch` of the fit is recorded: with `every`, batches 0, every,
        2 * every... (learn.train_iter is the batch's index until after_batch, which
        counts it, as fastai's)."""
        return self.learn.training and (self.every is None or batch % self.every == 0)

    def before_batch(self) -> None:
        if self._off or not self._recorded(self.learn.train_iter):
            return
        if self.every is not None:
            self._register()
        self._clear()  # what a probe pass of another callback's before_batch stored

    def after_batch(self) -> None:
        # no hooks: the batch was cancelled in an earlier callback's before_batch (every)
        if self._off or not self._recorded(self.learn.train_iter - 1) or self.hooks is None:
            return
        stored = self.hooks.stored
        if any(s is not None for s in stored):  # else no forward pass ran: a cancelled batch
            self._pending.append(stored)
        self._clear()
        if self.every is not None:
            self._remove()

    def after_train(self) -> None:
        self._flush()

    def after_fit(self) -> None:
        self._remove()
        self._flush()

    def _register(self) -> None:
        self._remove()  # never two sets of hooks at once
        self.hooks = Hooks(self._hooked, self.hook)

    def _clear(self) -> None:
        for h in self.hooks:
            h.stored = None

    def _remove(self) -> None:
        if self.hooks is not None:
            self.hooks.remove()
        self.hooks = None

    def _flush(self) -> None:
        """The pending records' tensors as Python floats (and CPU histograms), in one
        transfer; the batches move to `stats`."""
        entries = [d for batch in self._pending for layer in batch for d in _entries(layer)]
        if entries:
            values = torch.stack([torch.stack([d[k].double() for k in STATS]) for d in entries])
            for d, row in zip(entries, values.cpu().tolist(), strict=True):
                d.update(zip(STATS, row, strict=True))
            with_hist = [d for d in entries if "hist" in d]
            if with_hist:
                hists = torch.stack([d["hist"] for d in with_hist]).cpu()
                for d, h in zip(with_hist, hists, strict=True):
                    d["hist"] = h
        self._stats.extend(self._pending)
        self._pending = []

    # ---- reading -------------------------------------------------------------------------
    @property
    def stats(self) -> L:
        """Per recorded training batch, an L of each module's record (class docstring)."""
        self._flush()
        return self._stats

    def _layer(self, idx: int, method: str) -> L:
        """The records of module `idx` in every recorded batch; errors naming `method`."""
        stats = self.stats
        if not stats:
            raise ValueError(
                f"{method}() needs recorded statistics: fit the learner with this callback "
                f"first (learn.fit(1, cbs=stats) or Learner(..., cbs=stats))"
            )
        n = len(stats[0])
        index = int_or_none(idx)
        if index is None:
            raise TypeError(f"idx should be an int (a layer's index), got {idx!r}")
        if not -n <= index < n:
            raise IndexError(f"idx should be in [{-n}, {n}) for {n} hooked layers, got {index}")
        records = stats.itemgot(index)
        if not all(isinstance(r, dict) for r in records):
            raise ValueError(
                f"layer {index} has no single record in every batch (its module output a "
                f"tuple, or did not run): read .stats[batch][{index}] directly"
            )
        return records

    def layer_stats(self, idx: int) -> L:
        """L of three Ls, each with one value per recorded batch, of layer `idx` (an index
        into the hooked modules; -1 the last): mean, std, near_zero."""
        records = self._layer(idx, "layer_stats")
        return L(records.itemgot(k) for k in STATS)

    def hist(self, idx: int) -> torch.Tensor:
        """Layer `idx`'s histograms as fastai's: log(1 + count), Tensor[40, n_batches] (bin
        0, values near 0, first). Needs with_hist=True."""
        records = self._layer(idx, "hist")
        if not all("hist" in r for r in records):
            raise ValueError(
                "hist() needs histograms: record them with ActivationStats(with_hist=True)"
            )
        return torch.stack(tuple(records.itemgot("hist"))).t().float().log1p()

    # ---- plots ---------------------------------------------------------------------------
    def plot_layer_stats(self, idx: int) -> Figure:
        """Three panels of layer `idx` against the recorded batches: mean, std and the share
        of activations near zero (fastai's title '% near zero', its values in [0, 1]). Saved
        as 'layer_stats_<idx>.png' outside a notebook. Returns the Figure."""
        stats = self.layer_stats(idx)
        fig = new_figure(figsize=(12, 3))
        for values, ax, title in zip(
            stats, fig.subplots(1, 3), ("mean", "std", "% near zero"), strict=True
        ):
            ax.plot(values)
            ax.set_title(title)
        return finish(fig, f"layer_stats_{idx}")

    def color_dim(
        self, idx: int, figsize: tuple[float, float] = (10, 5), ax: Axes | None = None
    ) -> Figure | None:
        """fastai's "colorful dimension" of layer `idx`: `hist(idx)` as an image, one column
        per recorded batch, bin 0 at the bottom, axes off. ax: draw into this matplotlib
        Axes (nothing saved, None returned, as fastai's); else a new Figure of `figsize`
        inches, saved as 'color_dim_<idx>.png' outside a notebook, returned. Needs
        with_hist=True."""
        if ax is not None and not isinstance(ax, Axes):
            raise TypeError(f"ax should be a matplotlib Axes or None, got {type(ax).__name__}")
        res = self.hist(idx)
        own = ax is None
        if own:
            ax = new_figure(figsize=check_figsize(figsize, (10, 5))).add_subplot()
        ax.imshow(res.numpy(), origin="lower")
        ax.axis("off")
        return finish(ax.figure, f"color_dim_{idx}") if own else None
