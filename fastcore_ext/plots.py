"""What every plot of fastcore_ext does last: lay the figure out, save it when nothing can
show it, and return it.

Plots are built on `matplotlib.figure.Figure` objects, never through pyplot's global state,
so they neither pop up windows nor pile up in pyplot's registry. In a notebook the returned
Figure is displayed by IPython. When the matplotlib backend is non-interactive (Agg, PDF,
SVG, ...: a script, a terminal without display, CI), the Figure is also written as a PNG,
``<folder>/plots/<name>.png``, where folder is the learner's `path` (the bunch's `path` for
show_batch): the file is written to a temporary name in the same folder and renamed, so a
crash never leaves a half-written PNG, and its path is printed the first time this process
writes it (re-drawing the same plot overwrites it silently).

In a distributed run only rank 0 saves. The environment variable ``FASTCORE_EXT_PLOTS``
overrides this: a folder puts every saved
plot there instead, and ``0`` / ``off`` / ``none`` turns saving off. A program that saves
each figure itself (the lesson pipeline) turns the automatic saving off for a block with
``with autosave(False):``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from fastcore_ext.ranks import is_main_process

__all__ = ["autosave", "check_figsize", "finish", "is_interactive", "plots_folder", "save_png"]

PLOTS_ENV = "FASTCORE_EXT_PLOTS"
_OFF = {"0", "off", "none", "false", "no"}
_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}
_announced: set[Path] = set()
_autosave = True  # see autosave()


def is_interactive() -> bool:
    """True when the current matplotlib backend can display figures (a GUI toolkit, or a
    notebook's inline backend); False for the file-only backends (Agg, PDF, SVG, ...)."""
    return matplotlib.get_backend().lower() not in _NON_INTERACTIVE


@contextlib.contextmanager
def autosave(enabled: bool) -> Iterator[None]:
    """Within the block, `finish` saves figures (as described above) only when `enabled`;
    the previous setting comes back afterwards."""
    global _autosave
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled should be a bool, got {enabled!r}")
    previous, _autosave = _autosave, enabled
    try:
        yield
    finally:
        _autosave = previous


def plots_folder(root: str | os.PathLike | None) -> Path | None:
    """Where plots of an object whose files live under `root` are saved: root/'plots',
    or the folder named by FASTCORE_EXT_PLOTS; None when saving is off or root is None."""
    env = os.environ.get(PLOTS_ENV)
    if env is not None and env.strip():
        return None if env.strip().lower() in _OFF else Path(env)
    return None if root is None else Path(root) / "plots"


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` as a PNG of figsize * dpi pixels at `path`, atomically: a temporary file in
    the same folder, renamed over `path` only once complete (removed on any failure).
    Creates the folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".png.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=fig.dpi)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_figsize(
    figsize: tuple[float, float] | None, default: tuple[float, float]
) -> tuple[float, float]:
    """`figsize` (width, height) in inches as floats, or `default` when it is None."""
    if figsize is None:
        return default
    if not (
        isinstance(figsize, (tuple, list))
        and len(figsize) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in figsize)
    ):
        raise ValueError(f"figsize should be (width, height) in inches > 0, got {figsize!r}")
    return (float(figsize[0]), float(figsize[1]))


def _file_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    if not safe:
        raise ValueError(f"name should hold letters or digits (a file name), got {name!r}")
    return f"{safe}.png"


def finish(fig: Figure, name: str, root: str | os.PathLike | None) -> Figure:
    """Last step of every plot: tight layout (unless the figure has a layout engine of its
    own); with a non-interactive backend, save it as ``plots_folder(root)/<name>.png``
    (atomic; the path printed once per file and process). Returns `fig`.

    name: what the plot shows, e.g. 'lr_find', 'confusion_matrix' (characters other than
    letters, digits, '_', '-', '.' become '_'). root: the learner's or bunch's path, or None
    (never saved)."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig should be a matplotlib Figure, got {type(fig).__name__}")
    file_name = _file_name(name)
    if fig.get_layout_engine() is None:
        fig.tight_layout()

    folder = plots_folder(root)
    if not _autosave or folder is None or is_interactive() or not is_main_process():
        return fig
    path = save_png(fig, folder / file_name)
    key = path.resolve()
    if key not in _announced:
        _announced.add(key)
        print(f"Saved plot {path}", file=sys.stdout)
    return fig
