"""What every plot of fastcore_ext does last: lay the figure out, show it in a notebook or
save it where nothing will show it, and return it.

Plots are `PlotFigure`s (matplotlib Figures) made by `new_figure`: through pyplot, as
fastai's, so the plot just made is pyplot's current figure and ``plt.savefig('b.png')``,
``plt.title(...)`` or ``plt.gcf()`` right after ``dls.show_batch()`` act on it (in a script,
a terminal, and a notebook with the inline backend; a notebook with another backend, e.g.
``%matplotlib widget``, gets figures outside pyplot). With a backend that shows windows
(TkAgg, QtAgg, macosx...) every plot stays open for ``plt.show()``, as fastai's; with any
other (Agg, the inline backend) a plot closes the library's earlier figures in pyplot, so a
script making hundreds of plots neither piles them up nor meets matplotlib's "more than 20
figures" warning (a figure closed in pyplot is still a Figure: its `savefig` works).

- In a Jupyter notebook the figure is shown inline (PNG) as fastai's plots appear: with or
  without ``%matplotlib inline``, after a trailing ``;``, inside a function, several in one
  cell. With the inline backend (a notebook's default) pyplot shows it at the end of the cell,
  so what the cell added (``plt.title``, ``plt.ylim``) is in the picture (after
  ``plt.ioff()``: at ``plt.show()``, as fastai's); in the cell that first imports pyplot
  (before IPython sets the inline display up) or with another backend it is shown when the
  plot is made (and is not pyplot's after that).
  Returned as the cell's last value it is not shown a second time in that cell. Nothing is
  written.
- Anywhere else (a script, a terminal, CI) the Figure is also written as
  ``<plot dir>/<name>.png``. The plot dir is, first to apply: the folder given to
  `set_plot_dir`, the environment variable ``FASTCORE_EXT_PLOTS``, else ``plots`` in the
  working directory. Never a folder of a data set: a PNG left among the images would be
  listed as one by `get_image_files` on the next run, so when the plot dir falls inside the
  folder of a data set this process built (`keep_out_of`: every ImageDataBunch registers its
  path), ``<that folder>_plots`` beside it is used instead. ``set_plot_dir(False)`` or
  ``FASTCORE_EXT_PLOTS=off`` (``0`` / ``none`` too) turns saving off. A plot dir the library
  creates gets the empty file ``.fastcore_ext_plots`` (`files.PLOTS_MARKER`): image listings
  (`get_image_files`, so every data set's classes) pass a folder holding it by, for a script
  that made no data set (`load_learner` + `predict`, `show_image`) run inside one. Every
  plot is kept: a second plot of one name in this process (two ``show_batch`` calls
  comparing resize methods, a second ``lr_find``) is saved as ``<name>-2.png``, the third
  ``<name>-3.png``, and so on (a file left by an earlier run is overwritten). Each save
  prints one line with the file's
  path (`saved_file(fig)` gives it too); a figure that updates an earlier one
  (``replaces=``, ShowGraph's after each epoch) is written over that one's file silently.
  The file is written to a temporary name in the same folder and renamed, so a crash never
  leaves a half-written PNG.

`show_image` (fastai's) draws one image this way, or into an Axes it is given.

A program that saves each figure itself (the lesson pipeline) turns the automatic saving
off for a block with ``with autosave(False):``. In a distributed run only rank 0 saves.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import sys
import weakref
from collections.abc import Iterator, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fastcore_ext.checks import check_int, check_positive_int
from fastcore_ext.files import PLOTS_MARKER, atomic_write
from fastcore_ext.ranks import is_main_process

__all__ = [
    "PlotFigure",
    "autosave",
    "check_ctxs",
    "check_figsize",
    "finish",
    "grid_cells",
    "image_grid",
    "in_notebook",
    "keep_out_of",
    "new_figure",
    "plot_dir",
    "save_png",
    "saved_file",
    "set_plot_dir",
    "show_image",
    "show_images",
    "show_inline",
    "subplots",
]

PLOTS_ENV = "FASTCORE_EXT_PLOTS"
DEFAULT_DIR = "plots"
_OFF = {"0", "off", "none", "false", "no"}
_announced: set[Path] = set()  # folders whose first save said how to change the folder
_written: set[Path] = set()  # every file saved by `finish` in this process, resolved
_files: weakref.WeakKeyDictionary[Figure, Path] = weakref.WeakKeyDictionary()  # saved_file
_autosave = True  # see autosave()
_chosen: list[Path | bool] = []  # what set_plot_dir was last given (empty: never called)
_data_roots: list[Path] = []  # folders of data sets (keep_out_of), resolved


class PlotFigure(Figure):
    """The Figure of every fastcore_ext plot: a matplotlib Figure that a notebook shows once.
    `finish` shows it inline when the plot is made; as the result of that same cell IPython
    would show it again (twice with the inline backend), so it is not; in a later cell, or
    given to `display()` in a later cell, it shows as any figure."""

    _shown_in: int | None = None  # the execution count of the cell that showed it

    def _ipython_display_(self) -> None:
        if self._shown_in is None or self._shown_in != _execution_count():
            show_inline(self)


# backends that show no window: only pyplot's current figure is of use there
_NO_WINDOWS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}
_INLINE = {"inline", "module://matplotlib_inline.backend_inline"}
_in_pyplot: weakref.WeakSet[Figure] = weakref.WeakSet()  # library figures made by pyplot


def _backend() -> str:
    import matplotlib

    return matplotlib.get_backend().lower()


def new_figure(**kwargs: Any) -> PlotFigure:
    """A `PlotFigure` made with `kwargs` (figsize, dpi, layout...) for a plot of the library,
    by pyplot (so its current figure) in a script, a terminal, or a notebook whose backend is
    inline; outside a notebook, with a backend showing no window, the library's earlier
    figures are closed in pyplot first (see the module docstring). A notebook with another
    backend (``%matplotlib widget``) gets a figure pyplot does not hold."""
    notebook, backend = in_notebook(), _backend()
    if notebook and backend not in _INLINE:
        return PlotFigure(**kwargs)
    import matplotlib.pyplot as plt

    if not notebook and backend in _NO_WINDOWS:
        for fig in list(_in_pyplot):
            _close_in_pyplot(fig)
    fig = plt.figure(FigureClass=PlotFigure, **kwargs)
    _in_pyplot.add(fig)
    return fig


def _close_in_pyplot(fig: Figure) -> None:
    """Let pyplot go of `fig` when it holds it as a library figure (it stays a Figure)."""
    if fig in _in_pyplot:
        import matplotlib.pyplot as plt

        plt.close(fig)


def _pyplot_shows_it(fig: Figure) -> bool:
    """True when pyplot will show `fig` in the notebook: it holds it and the inline backend's
    display at the end of each cell is set up (IPython does that after the cell that first
    imports pyplot), which shows it at the end of this cell, or at ``plt.show()`` after
    ``plt.ioff()``, as fastai's figures."""
    if fig not in _in_pyplot or fig.canvas.manager is None or _backend() not in _INLINE:
        return False
    from IPython import get_ipython
    from matplotlib_inline.backend_inline import flush_figures

    shell = get_ipython()
    callbacks = getattr(getattr(shell, "events", None), "callbacks", {})
    return flush_figures in callbacks.get("post_execute", [])


def _execution_count() -> int | None:
    from IPython import get_ipython

    return getattr(get_ipython(), "execution_count", None)


def show_inline(fig: Figure) -> None:
    """Display `fig` in the running notebook as a PNG of figsize * dpi pixels, tightly cropped
    as matplotlib's inline backend does (needs IPython)."""
    from IPython.display import display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    display({"image/png": buf.getvalue(), "text/plain": repr(fig)}, raw=True)
    if isinstance(fig, PlotFigure):
        fig._shown_in = _execution_count()


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython over ZMQ), where a returned Figure is shown
    inline; False in a script, a terminal (IPython included) or CI."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


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


def set_plot_dir(folder: str | os.PathLike | bool | None) -> None:
    """Where scripts save plots from now on: a folder (relative ones are resolved against the
    working directory at each save), False to save nothing, None to go back to the
    default (``FASTCORE_EXT_PLOTS``, else ``./plots``)."""
    if folder is None:
        _chosen.clear()
    elif folder is False:
        _chosen[:] = [False]
    elif isinstance(folder, str | os.PathLike) and str(folder).strip():
        _chosen[:] = [Path(folder).expanduser()]
    else:
        raise TypeError(f"folder should be a path, False or None, got {folder!r}")


def keep_out_of(folder: str | os.PathLike) -> None:
    """Never save plots inside `folder` (a data set's folder) in this process: a plot dir that
    falls inside it is replaced by ``<folder>_plots`` beside it (see `plot_dir`)."""
    root = Path(folder).expanduser().resolve()
    if root not in _data_roots:
        _data_roots.append(root)


def _outside_data(folder: Path) -> Path:
    """`folder`, or ``<root>_plots`` beside the outermost registered data folder holding it."""
    resolved = folder.resolve()
    holding = [r for r in _data_roots if resolved.is_relative_to(r)]
    if not holding:
        return folder
    root = min(holding, key=lambda r: len(r.parts))
    return root.parent / f"{root.name}_plots"


def plot_dir() -> Path | None:
    """The folder scripts save plots in (see the module docstring); None when saving is off.
    Never inside a data set's folder registered with `keep_out_of`."""
    if _chosen:
        chosen = _chosen[0]
        return None if chosen is False else _outside_data(Path(chosen))
    env = os.environ.get(PLOTS_ENV)
    if env is not None and env.strip():
        if env.strip().lower() in _OFF:
            return None
        return _outside_data(Path(env.strip()).expanduser())
    return _outside_data(Path(DEFAULT_DIR))


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` as a PNG of figsize * dpi pixels at `path`, atomically
    (`files.atomic_write`). Creates the folder. Returns the path."""
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=fig.dpi)
    return path


def grid_cells(nrows: int | None, ncols: int | None) -> int | None:
    """fastai v2's nrows / ncols of an image grid, checked: the number of cells when both are
    given (the most images such a grid shows), else None."""
    for name, value in (("nrows", nrows), ("ncols", ncols)):
        if value is not None:
            check_int(name, value, 1)
    return nrows * ncols if nrows is not None and ncols is not None else None


def image_grid(
    k: int,
    figsize: tuple[float, float] | None,
    titles: list[str],
    cell: tuple[float, float],
    nrows: int | None = None,
    ncols: int | None = None,
) -> tuple[Figure, list, float]:
    """A figure of k images in a grid with every axis off: (figure, the k axes to draw in, a
    title font size in points that fits the longest line of `titles` in a cell, 5 to 12).

    The grid, as fastai v2's ``get_grid``: nrows x ncols when both are given (at least k
    cells); nrows rows of ceil(k / nrows) columns; ncols columns of ceil(k / ncols) rows;
    neither: ceil(sqrt(k)) columns (fastai v1's near-square grid) of ceil(k / columns) rows.
    figsize None: `cell` (width, height) inches per image, at least 4 x 3 in all."""
    cells = grid_cells(nrows, ncols)
    if cells is not None:
        rows, cols = nrows, ncols
        if cells < k:
            raise ValueError(
                f"nrows, ncols: a {rows} x {cols} grid has fewer than the {k} cells asked for"
            )
    elif nrows is not None:
        rows, cols = nrows, math.ceil(k / nrows)
    elif ncols is not None:
        rows, cols = math.ceil(k / ncols), ncols
    else:
        cols = math.ceil(math.sqrt(k))
        rows = math.ceil(k / cols)
    figsize = check_figsize(figsize, (max(4.0, cell[0] * cols), max(3.0, cell[1] * rows + 0.4)))
    # constrained layout: tight_layout let a row's titles (two lines, as show_results') run
    # over the images above them, and overlapped a suptitle
    fig = new_figure(figsize=figsize, layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax in axes:
        ax.set_axis_off()
    cell_pts = min(figsize[0] / cols, figsize[1] / rows) * 72
    longest = max((len(line) for t in titles for line in t.split("\n")), default=1)
    fontsize = min(max(min(0.11 * cell_pts, 1.7 * cell_pts / max(longest, 1)), 5.0), 12.0)
    return fig, axes[:k], float(fontsize)


def _image_pixels(im: Any) -> np.ndarray:
    """An image as an array imshow takes: a tensor [C, H, W] (C < 5, moved last) or
    [H, W, C] / [H, W]; a PIL image or anything numpy reads ([H, W, C] / [H, W]). One channel
    becomes [H, W]."""
    if isinstance(im, torch.Tensor):
        t = im.detach().cpu()
        t = t.float() if t.dtype in (torch.bfloat16, torch.float16) else t
        if t.dim() == 3 and t.shape[0] < 5:
            t = t.permute(1, 2, 0)
        pixels = t.numpy()
    else:
        pixels = np.asarray(im)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] in (3, 4))):
        raise ValueError(
            f"im should be an image: a tensor [C, H, W] or an array [H, W, C] with 1, 3 or 4 "
            f"channels, or [H, W]; got {type(im).__name__} of shape {tuple(pixels.shape)}"
        )
    if pixels.dtype == object or not (
        np.issubdtype(pixels.dtype, np.number) or pixels.dtype == np.bool_
    ):
        raise TypeError(f"im should hold numbers, got {type(im).__name__} of {pixels.dtype}")
    return pixels


def _fig_bound(pixels: int) -> float:
    """The default size of a figure side for an image side of `pixels`: fastai's one inch per
    32 pixels up to 5 inches, but at least 2 (fastai's 1 inch leaves no room for a title in a
    saved PNG, which is not cropped to its content as a notebook's is)."""
    return float(min(5, max(2, pixels // 32)))


def show_image(
    im: Any,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
    ctx: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """fastai's `show_image`: draw one image, axes hidden, with an optional `title`.

    im: a tensor [C, H, W] (C < 5) or [H, W, C] / [H, W] (uint8, or float in [0, 1]), a PIL
    image (PILImage.create, PIL.Image.open) or a numpy array. ax (or fastai's ctx): an Axes to
    draw into; None: a new figure of `figsize` inches (default 1 inch per 32 pixels a side, 2
    to 5; the title's font shrinks to fit its width), shown inline in a notebook or saved as
    'show_image.png' elsewhere (`finish`). kwargs go to matplotlib's imshow (e.g.
    cmap='gray'). Returns the Axes, as fastai's."""
    if ax is not None and ctx is not None:
        raise ValueError("ax and ctx name the same Axes (ctx is fastai's name): give one")
    ax = ax if ax is not None else ctx
    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax should be a matplotlib Axes or None, got {type(ax).__name__}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title should be a str or None, got {type(title).__name__}")
    pixels = _image_pixels(im)
    own = ax is None
    if own:
        h, w = pixels.shape[:2]
        fig = new_figure(figsize=check_figsize(figsize, (_fig_bound(w), _fig_bound(h))))
        ax = fig.add_subplot()
    ax.imshow(pixels, **kwargs)
    if title is not None:
        width_pts = ax.figure.get_size_inches()[0] * 72
        longest = max(len(line) for line in title.split("\n")) or 1
        ax.set_title(title, fontsize=min(12.0, max(6.0, 1.6 * width_pts / longest)))
    ax.set_axis_off()
    if own:
        finish(ax.figure, "show_image")
    return ax


def subplots(
    nrows: int = 1,
    ncols: int = 1,
    figsize: tuple[float, float] | None = None,
    imsize: float = 3,
    suptitle: str | None = None,
    **kwargs: Any,
) -> tuple[Figure, np.ndarray]:
    """fastai's `subplots`: a Figure of nrows x ncols Axes, `imsize` inches each unless
    `figsize` says (kwargs go to matplotlib's ``Figure.subplots``: sharex, ...), and the
    Axes as an array (one Axes too, as fastai's). What is drawn is yours to show or save
    (``plt.show()``, ``fig.savefig``); `show_images` does both for images."""
    nrows, ncols = check_positive_int("nrows", nrows), check_positive_int("ncols", ncols)
    if figsize is None:
        figsize = (ncols * imsize, nrows * imsize)
    fig = new_figure(figsize=check_figsize(figsize, figsize))
    axs = fig.subplots(nrows, ncols, **kwargs)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig, np.atleast_1d(axs)


def show_images(
    ims: Sequence[Any],
    nrows: int = 1,
    ncols: int | None = None,
    titles: Sequence[str | None] | None = None,
    **kwargs: Any,
) -> Figure:
    """fastai's `show_images`: the images `ims` (what `show_image` takes) in an nrows x ncols
    grid (ncols default: as many as fill it), each titled by `titles`; kwargs go to
    `subplots` (figsize, imsize, suptitle). Shown inline in a notebook, saved as
    'show_images.png' elsewhere (`finish`). Returns the Figure."""
    ims = list(ims)
    if not ims:
        raise ValueError("ims: expected at least one image, got none")
    nrows = check_positive_int("nrows", nrows)
    ncols = -(-len(ims) // nrows) if ncols is None else check_positive_int("ncols", ncols)
    if nrows * ncols < len(ims):
        raise ValueError(f"ims: {len(ims)} images do not fit a grid of {nrows} x {ncols}")
    titles = [None] * len(ims) if titles is None else list(titles)
    if len(titles) != len(ims):
        raise ValueError(f"titles: expected one per image ({len(ims)}), got {len(titles)}")
    fig, axs = subplots(nrows, ncols, **kwargs)
    for ax in axs.flat:
        ax.set_axis_off()
    for im, title, ax in zip(ims, titles, axs.flat, strict=False):
        show_image(im, ax=ax, title=title)
    return finish(fig, "show_images")


def check_ctxs(ctxs: Any) -> list[Axes] | None:
    """fastai's `ctxs`: matplotlib Axes to draw into (one, a list, or the array
    ``plt.subplots`` gives, flattened), as a list; None stays None."""
    if ctxs is None:
        return None
    axes = [ctxs] if isinstance(ctxs, Axes) else list(np.asarray(ctxs, dtype=object).flat)
    if not axes or not all(isinstance(ax, Axes) for ax in axes):
        raise TypeError(
            f"ctxs should be matplotlib Axes (e.g. the axs of plt.subplots), got {ctxs!r:.80}"
        )
    return axes


def check_figsize(
    figsize: tuple[float, float] | None, default: tuple[float, float]
) -> tuple[float, float]:
    """`figsize` (width, height) in inches as floats, or `default` when it is None."""
    if figsize is None:
        return default
    if not (
        isinstance(figsize, (tuple, list))
        and len(figsize) == 2
        and all(isinstance(v, Real) and not isinstance(v, bool) and v > 0 for v in figsize)
    ):
        raise ValueError(f"figsize should be (width, height) in inches > 0, got {figsize!r}")
    return (float(figsize[0]), float(figsize[1]))


def _file_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    if not safe:
        raise ValueError(f"name should hold letters or digits (a file name), got {name!r}")
    return f"{safe}.png"


def saved_file(fig: Figure) -> Path | None:
    """The PNG file (an absolute path) `finish` last wrote `fig` to in this process, or None
    (never saved: a notebook, saving off, another rank)."""
    return _files.get(fig)


def _new_file(folder: Path, file_name: str) -> Path:
    """``folder/file_name``, or while this process already saved that file,
    ``<stem>-2.png``, ``<stem>-3.png``... (the first not saved yet): one file per plot."""
    stem = file_name.removesuffix(".png")
    path, n = folder / file_name, 1
    while path.resolve() in _written:
        n += 1
        path = folder / f"{stem}-{n}.png"
    return path


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is inside it, else absolute."""
    resolved, cwd = path.resolve(), Path.cwd().resolve()
    return str(resolved.relative_to(cwd) if resolved.is_relative_to(cwd) else resolved)


def finish(fig: Figure, name: str, replaces: Figure | None = None) -> Figure:
    """Last step of every plot: tight layout (unless the figure has a layout engine of its
    own); in a notebook show it inline (`show_inline`), elsewhere save it as
    ``plot_dir()/<name>.png``, or ``<name>-<n>.png`` for the n-th plot of that name in this
    process (atomic; prints the file's path, see `saved_file`). Returns `fig`.

    name: what the plot shows, e.g. 'lr_find', 'confusion_matrix' (characters other than
    letters, digits, '_', '-', '.' become '_'). replaces: an earlier figure that `fig` is a
    newer version of (a graph redrawn after each epoch): `fig` is written over that figure's
    file, without a line printed, and closed in pyplot; None (or a figure never saved) gives
    a file of its own."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig should be a matplotlib Figure, got {type(fig).__name__}")
    if replaces is not None and not isinstance(replaces, Figure):
        raise TypeError(
            f"replaces should be a matplotlib Figure or None, got {type(replaces).__name__}"
        )
    file_name = _file_name(name)
    if fig.get_layout_engine() is None:
        fig.tight_layout()

    if in_notebook():
        if is_main_process() and not _pyplot_shows_it(fig):
            show_inline(fig)
            _close_in_pyplot(fig)  # shown: pyplot would show it again in a later cell
        return fig
    if replaces is not None:  # superseded: not for plt.show()
        _close_in_pyplot(replaces)
    folder = plot_dir()
    if not _autosave or folder is None or not is_main_process():
        return fig
    previous = saved_file(replaces) if replaces is not None else None
    if not folder.exists():  # a folder of plots only: image listings pass it by
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PLOTS_MARKER).touch()
    path = save_png(fig, previous if previous is not None else _new_file(folder, file_name))
    _written.add(path.resolve())
    _files[fig] = path.absolute()
    if previous is not None:
        return fig
    key = path.parent.resolve()
    hint = ""
    if key not in _announced:
        _announced.add(key)
        hint = " (fastcore_ext.plots.set_plot_dir to change the folder)"
    print(f"Plot saved: {_shown_path(path)}{hint}")
    return fig
