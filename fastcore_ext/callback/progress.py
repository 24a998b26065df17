"""Progress output of a fit: a bar per phase and the epoch table, as fastai prints them.

In a terminal or a Jupyter notebook a bar is redrawn in place with carriage returns
(`|█████-----| 50.00% [5/10 00:01<00:01 0.6931]`); when the output is not interactive (a
log file, a pipe, CI) there is no bar, only one plain line per epoch. The table is
fastprogress' console layout, which fastai v2 prints:

    epoch     train_loss  valid_loss  error_rate  time
    0         1.175709    0.318438    0.099800    00:18
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from fastcore_ext import ranks
from fastcore_ext.callback.core import Callback

__all__ = ["ProgressCallback", "format_time", "format_header", "format_row"]

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


def format_row(names: list[str], cells: list[object]) -> str:
    """One table row: ints as is, floats with 6 decimals, None as '#na#', strings as is,
    each cell followed by enough spaces to line up under its header."""
    text = ""
    for cell, name in zip(cells, _padded(names), strict=True):
        if cell is None:
            t = "#na#"
        elif isinstance(cell, float):
            t = f"{cell:.6f}"
        else:
            t = str(cell)
        text += t + " " * (2 + len(name) - len(t))
    return text


def _interactive(stream: TextIO) -> bool:
    """True for a terminal or a Jupyter kernel's output stream (both honour '\\r')."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class ProgressCallback(Callback):
    """Draws a progress bar per training / validation phase and prints the epoch table.

    show_bar: draw the bar (only ever drawn on an interactive output).
    show_table: print the header and one row per epoch.
    Only rank 0 of a distributed fit prints anything.
    stream: where to write; None means sys.stdout at the time of the fit.
    min_interval: seconds between two redraws of the bar (each redraw reads the smoothed
      loss, which on a GPU waits for the device).
    """

    order = 60

    def __init__(
        self,
        show_bar: bool = True,
        show_table: bool = True,
        stream: TextIO | None = None,
        min_interval: float = 0.1,
    ) -> None:
        super().__init__()
        self.show_bar = show_bar
        self.show_table = show_table
        self.stream = stream
        self.min_interval = min_interval
        self._out: TextIO = sys.stdout
        self._bar_on = False
        self._quiet = False  # a process other than rank 0
        self._bar_len = 0
        self._phase_start = 0.0
        self._last_draw = 0.0

    def _write_line(self, line: str) -> None:
        if self._quiet:
            return
        self._clear_bar()
        self._out.write(line + "\n")
        self._out.flush()

    def _clear_bar(self) -> None:
        if self._bar_len:
            self._out.write("\r" + " " * self._bar_len + "\r")
            self._out.flush()
            self._bar_len = 0

    def _draw(self, done: int, total: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        elapsed = now - self._phase_start
        remaining = elapsed / done * (total - done) if done else 0.0
        filled = BAR_WIDTH * done // total if total else BAR_WIDTH
        pct = 100 * done / total if total else 100.0
        comment = ""
        if self.learn.training:
            loss = self.learn.recorder.smooth_loss
            comment = f" {loss:.4f}"
        text = (
            f"|{'█' * filled}{'-' * (BAR_WIDTH - filled)}| {pct:.2f}% "
            f"[{done}/{total} {format_time(elapsed)}<{format_time(remaining)}{comment}]"
        )
        pad = max(0, self._bar_len - len(text))
        self._out.write("\r" + text + " " * pad)
        self._out.flush()
        self._bar_len = len(text)

    # ---- events -------------------------------------------------------------------------
    def before_fit(self) -> None:
        self._out = self.stream if self.stream is not None else sys.stdout
        self._quiet = not ranks.is_main_process()
        self._bar_on = self.show_bar and _interactive(self._out) and not self._quiet
        self._bar_len = 0
        if self.show_table:
            self._write_line(format_header(self.learn.recorder.metric_names))

    def _start_phase(self) -> None:
        self._phase_start = time.perf_counter()
        self._last_draw = 0.0
        if self._bar_on:
            self._draw(0, len(self.learn.dl), force=True)

    def before_train(self) -> None:
        self._start_phase()

    def before_validate(self) -> None:
        self._start_phase()

    def after_batch(self) -> None:
        if self._bar_on:
            total = self.learn.n_iter
            done = self.learn.iter + 1
            self._draw(done, total, force=done == total)

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
        self._write_line(format_row(rec.metric_names, cells))

    def after_fit(self) -> None:
        self._clear_bar()
