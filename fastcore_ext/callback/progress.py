"""Progress output of a fit: a bar per phase and the epoch table, as fastai shows them; and
the bar of an inference pass (`PassBar`: get_preds, validate, tta, interpretation).

Where the output goes decides how it looks:

- a Jupyter notebook: fastprogress' HTML display, as fastai's (a bar over the epochs and a
  bar of the current phase, updated in place, then the epoch table as an HTML table);
- a terminal: a bar redrawn in place with carriage returns
  (`|█████-----| 50.00% [5/10 00:01<00:01 0.6931]`) and the table below, as text;
- anything else (a log file, a pipe, CI): no bar, one plain line per epoch, and during a
  phase that runs long one line a minute (`log_interval`) saying how far it is, so a batch
  job's log shows progress through a long first epoch or lr_find:
  ``  train: 120/400 batches (30%), 01:00 elapsed, 02:20 left, loss 1.2345``.

The text table is fastprogress' console layout, which fastai v2 prints, except that a value
wider than its column (a huge loss) keeps a space before the next column:

    epoch     train_loss  valid_loss  error_rate  time
    0         1.175709    0.318438    0.099800    00:18

fastprogress' console classes are not used: they print to the process' stdout whatever the
stream, count any stdout as a terminal, and run wide values into the next column.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from fastprogress.fastprogress import NBMasterBar, NBProgressBar

from fastcore_ext import ranks
from fastcore_ext.callback.core import Callback
from fastcore_ext.plots import in_notebook

__all__ = [
    "PassBar",
    "ProgressCallback",
    "bar_text",
    "format_cell",
    "format_header",
    "format_row",
    "format_time",
]

BAR_WIDTH = 40
MIN_COL = 8  # fastprogress pads every column name to at least 8 characters


def format_time(seconds: float) -> str:
    """mm:ss, or h:mm:ss from one hour on (fastprogress' format_time)."""
    t = int(seconds)
    h, m, s = t // 3600, (t // 60) % 60, t % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _padded(names: list[str]) -> list[str]:
    return [n + " " * (MIN_COL - len(n)) if len(n) < MIN_COL else n for n in names]


def format_header(names: list[str]) -> str:
    """The table's header line: names padded to 8 characters, two spaces apart."""
    return "  ".join(_padded(names))


def format_cell(cell: object) -> str:
    """A table cell: ints as is, floats with 6 decimals, None as '#na#', strings as is."""
    if cell is None:
        return "#na#"
    if isinstance(cell, float):
        return f"{cell:.6f}"
    return str(cell)


def format_row(names: list[str], cells: list[object]) -> str:
    """One table row: each cell followed by enough spaces to line up under its header, and
    by at least one space when it is wider than its column."""
    text = ""
    for cell, name in zip(cells, _padded(names), strict=True):
        t = format_cell(cell)
        text += t + " " * max(1, 2 + len(name) - len(t))
    return text


def _is_terminal(stream: TextIO) -> bool:
    """True for a terminal (it honours '\\r')."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class _NotebookDisplay:
    """fastai's display in a Jupyter notebook, drawn by fastprogress: a bar over the epochs
    and a bar of the current phase above the epoch table (HTML), updated in place; when the
    fit ends only the table stays."""

    def __init__(self, n_epoch: int) -> None:
        self.mbar = NBMasterBar(range(n_epoch))
        self.pbar: NBProgressBar | None = None

    def start_epoch(self, epoch: int) -> None:
        self.mbar.update(epoch)  # the first call displays the master bar

    def start_phase(self, total: int) -> None:
        self.pbar = NBProgressBar(range(total), parent=self.mbar, leave=False)
        self.pbar.update(0)

    def step(self, done: int, comment: str) -> None:
        if self.pbar is not None:
            self.pbar.comment = comment
            self.pbar.update(done)

    def end_phase(self) -> None:
        if self.pbar is not None:
            self.pbar.on_iter_end()
            self.pbar = None

    def table_row(self, cells: list[str]) -> None:
        self.mbar.write(cells, table=True)

    def close(self) -> None:
        self.mbar.on_iter_end()


def bar_text(done: int, total: int, elapsed: float, comment: str = "") -> str:
    """The text bar: ``|█████-----| 50.00% [5/10 00:01<00:01 comment]``."""
    remaining = elapsed / done * (total - done) if done else 0.0
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    pct = 100 * done / total if total else 100.0
    return (
        f"|{'█' * filled}{'-' * (BAR_WIDTH - filled)}| {pct:.2f}% "
        f"[{done}/{total} {format_time(elapsed)}<{format_time(remaining)}"
        f"{' ' + comment if comment else ''}]"
    )


class PassBar:
    """The progress bar of one pass over `total` batches: HTML in a notebook (fastprogress),
    a text bar redrawn in place on a terminal (`out`), nothing when `out` is None and
    `notebook` is False. `update(done)` after each batch (the text bar is redrawn at most
    every min_interval seconds, and at the end); `close()` removes it (fastai's leave=False:
    only the results stay). `comment`: read at each redraw of the text bar, shown after the
    times (the fit's smoothed loss). An inference pass's bar comes from
    `ProgressCallback.pass_bar`, which decides where it shows; the same callback draws each
    phase of a fit on a terminal with one."""

    def __init__(
        self,
        total: int,
        out: TextIO | None,
        notebook: bool,
        min_interval: float = 0.1,
        comment: Callable[[], str] | None = None,
    ) -> None:
        self.total, self.out, self.min_interval, self.comment = total, out, min_interval, comment
        self._nb = NBProgressBar(range(total), leave=False) if notebook else None
        self._start = self._last = time.perf_counter()
        self._len = 0
        self.update(0)

    def update(self, done: int) -> None:
        if self._nb is not None:
            self._nb.update(done)
        if self.out is None:
            return
        now = time.perf_counter()
        if done and done != self.total and now - self._last < self.min_interval:
            return
        self._last = now
        text = bar_text(done, self.total, now - self._start, self.comment() if self.comment else "")
        self.out.write("\r" + text + " " * max(0, self._len - len(text)))
        self.out.flush()
        self._len = len(text)

    def close(self) -> None:
        if self._nb is not None:
            self._nb.on_iter_end()
            self._nb = None
        if self.out is not None and self._len:
            self.out.write("\r" + " " * self._len + "\r")
            self.out.flush()
            self._len = 0


class ProgressCallback(Callback):
    """Shows a progress bar per training / validation phase and the epoch table: as HTML in
    a Jupyter notebook, as text in a terminal, as one plain line per epoch elsewhere.

    show_bar: draw the bar (never drawn on a non-interactive output). In a notebook, without
      the bar the table is shown as text.
    show_table: show the header and one row per epoch.
    Only rank 0 of a distributed fit shows anything.
    stream: where to write text; None means sys.stdout at the time of the fit (or the
      notebook's HTML display inside a Jupyter kernel).
    min_interval: seconds between two redraws of the text bar (each redraw reads the
      smoothed loss, which on a GPU waits for the device).
    log_interval: on an output that is neither a terminal nor a notebook (a log, a pipe),
      seconds between two lines saying how far a phase is (the first after that long).
    """

    order = 60

    def __init__(
        self,
        show_bar: bool = True,
        show_table: bool = True,
        stream: TextIO | None = None,
        min_interval: float = 0.1,
        log_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.show_bar = show_bar
        self.show_table = show_table
        self.stream = stream
        self.min_interval = min_interval
        self.log_interval = log_interval
        self._log_start: float | None = None  # a logged phase's start (log / pipe output)
        self._log_last = 0.0
        self._out: TextIO = sys.stdout
        self._notebook: _NotebookDisplay | None = None
        self._bar_on = False
        self._quiet = False  # a process other than rank 0
        self._bar: PassBar | None = None  # the terminal bar of the current phase

    def __getstate__(self) -> dict[str, Any]:
        """A copy without what holds the terminal (copy.deepcopy / pickle of a learner:
        fastai's ensembles, a learner sent to a worker process): the output is taken again
        at the next fit; a stream that is the process's stdout or stderr is not kept."""
        state = dict(self.__dict__)
        state["_out"], state["_bar"], state["_notebook"] = None, None, None
        if state.get("stream") in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            state["stream"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._out = self.stream if self.stream is not None else sys.stdout

    def _write_line(self, line: str) -> None:
        if self._quiet:
            return
        self._close_bar()
        self._out.write(line + "\n")
        self._out.flush()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _comment(self) -> str:
        return f"{self.learn.recorder.smooth_loss:.4f}" if self.learn.training else ""

    def pass_bar(self, total: int) -> PassBar:
        """The bar of one inference pass of `total` batches (get_preds, validate, tta, ...),
        with this callback's settings: none when show_bar is off, outside rank 0, or where
        the fit's bar would not be drawn either (a log file, a pipe)."""
        out = self.stream if self.stream is not None else sys.stdout
        shown = self.show_bar and total > 0 and ranks.is_main_process()
        notebook = shown and self.stream is None and in_notebook()
        text = shown and not notebook and _is_terminal(out)
        return PassBar(total, out if text else None, notebook, self.min_interval)

    # ---- events -------------------------------------------------------------------------
    def before_fit(self) -> None:
        self._out = self.stream if self.stream is not None else sys.stdout
        self._quiet = not ranks.is_main_process()
        self._notebook = None
        if not self._quiet and self.stream is None and in_notebook() and self.show_bar:
            self._notebook = _NotebookDisplay(self.learn.n_epoch)
        self._bar_on = self.show_bar and _is_terminal(self._out) and not self._quiet
        self._bar = None
        if not self.show_table:
            return
        names = self.learn.recorder.metric_names
        if self._notebook is not None:
            self._notebook.table_row(list(names))
        else:
            self._write_line(format_header(names))

    def before_epoch(self) -> None:
        if self._notebook is not None:
            self._notebook.start_epoch(self.learn.epoch)

    def _start_phase(self) -> None:
        self._log_start = None
        if self._notebook is not None:
            self._notebook.start_phase(len(self.learn.dl))
        elif self._bar_on:
            self._close_bar()
            total = len(self.learn.dl)
            self._bar = PassBar(total, self._out, False, self.min_interval, self._comment)
        elif self.show_bar and not self._quiet:  # a log or a pipe: a line now and then
            self._log_start = self._log_last = time.perf_counter()

    def before_train(self) -> None:
        self._start_phase()

    def before_validate(self) -> None:
        self._start_phase()

    def after_batch(self) -> None:
        done = self.learn.iter + 1
        if self._notebook is not None:
            self._notebook.step(done, self._comment())
        elif self._bar is not None:
            self._bar.update(done)
        elif self._log_start is not None:
            now = time.perf_counter()
            if now - self._log_last >= self.log_interval and done < len(self.learn.dl):
                self._log_last = now
                self._write_line(self._log_line(done, now - self._log_start))

    def _log_line(self, done: int, elapsed: float) -> str:
        total = len(self.learn.dl)
        phase = "train" if self.learn.training else "valid"
        left = elapsed * (total - done) / done
        loss = f", loss {self._comment()}" if self.learn.training else ""
        return (
            f"  {phase}: {done}/{total} batches ({100 * done // total}%), "
            f"{format_time(elapsed)} elapsed, {format_time(left)} left{loss}"
        )

    def after_train(self) -> None:
        if self._notebook is not None:
            self._notebook.end_phase()

    def after_validate(self) -> None:
        if self._notebook is not None:
            self._notebook.end_phase()

    def after_epoch(self) -> None:
        if not self.show_table:
            return
        rec = self.learn.recorder
        cells: list[object] = [
            rec.epochs[-1],
            rec.train_losses[-1],
            rec.valid_losses[-1],
            *rec.metrics[-1],
            format_time(rec.epoch_times[-1]),
        ]
        if self._notebook is not None:
            self._notebook.table_row([format_cell(c) for c in cells])
        else:
            self._write_line(format_row(rec.metric_names, cells))

    def after_fit(self) -> None:
        if self._notebook is not None:
            self._notebook.close()
            self._notebook = None
        self._close_bar()
