"""ShowGraph: the training and validation losses drawn again after every epoch of a fit.

fastai v1's `ShowGraph` (`callback_fns=ShowGraph`) and v2's `ShowGraphCallback`
(`cbs=ShowGraphCallback()`): after each epoch a figure of the recorder's losses so far (the
smoothed training loss per batch, the validation loss at each epoch's end, as
`recorder.plot_loss` draws them), its x axis spanning the whole fit. In a Jupyter notebook
the figure is one output updated in place, as fastai's; elsewhere it is written through
`fastcore_ext.plots.finish` as '<plot dir>/show_graph.png', rewritten after each epoch (a
later fit's graph gets a file of its own: show_graph-2.png...). It sits `lr_find` out, as the
trackers do.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from fastcore_ext import ranks
from fastcore_ext.callback.core import Callback
from fastcore_ext.callback.lr_finder import LRFinder
from fastcore_ext.plots import PlotFigure, finish, in_notebook, new_figure

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = ["ShowGraph", "ShowGraphCallback"]


class ShowGraph(Callback):
    """Redraws the losses after every epoch (see the module doc). `learn`: fastai v1's form
    `ShowGraph(learn)` (what callback_fns calls), else attached by the learner. `fig` is the
    figure of the last epoch (None before one)."""

    order = 65  # after the Recorder (50) has the epoch's validation loss

    def __init__(self, learn: Learner | None = None) -> None:
        super().__init__()
        self.learn = learn
        self.fig: PlotFigure | None = None
        self._display: Any = None  # the notebook output updated in place
        self._off = False

    def before_fit(self) -> None:
        self._off = any(isinstance(cb, LRFinder) for cb in self.learn.cbs)
        self._display = None
        self.fig = None

    def after_epoch(self) -> None:
        if self._off or not ranks.is_main_process():
            return
        rec = self.learn.recorder
        if not rec.nb_batches or not any(rec.nb_batches):
            return
        # in a notebook the figure is this fit's one output, not pyplot's (whose inline
        # backend would show every epoch's figure again at the end of the cell)
        notebook = in_notebook()
        fig = PlotFigure(figsize=(6, 4)) if notebook else new_figure(figsize=(6, 4))
        ax = fig.add_subplot()
        rec.plot_loss(skip_start=0, ax=ax)
        per_epoch = max(rec.nb_batches)  # the x axis spans the fit's epochs
        ax.set_xlim(0, max(self.learn.n_epoch * per_epoch, sum(rec.nb_batches)))
        previous, self.fig = self.fig, fig
        if notebook:
            self._show(fig)
        else:
            finish(fig, "show_graph", replaces=previous)  # this fit's file, updated

    def _show(self, fig: PlotFigure) -> None:
        """The figure as the notebook output of this fit, replacing the previous epoch's."""
        from IPython.display import display

        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
        data = {"image/png": buf.getvalue(), "text/plain": "ShowGraph"}
        if self._display is None:
            self._display = display(data, raw=True, display_id=True)
        else:
            self._display.update(data, raw=True)


ShowGraphCallback = ShowGraph
"""fastai v2's name."""
