"""Notebook widgets to clean an image data set by hand: fastai v2's `ImagesCleaner` and
`ImageClassifierCleaner` (fastai.vision.widgets), as fastbook's chapter 2 uses them::

    cleaner = ImageClassifierCleaner(learn)
    cleaner            # in a notebook: a category and a data set to pick, the images below
    for idx in cleaner.delete(): cleaner.fns[idx].unlink()
    for idx, cat in cleaner.change(): shutil.move(str(cleaner.fns[idx]), path/cat)

`ImagesCleaner` shows image files as thumbnails in a horizontally scrolling row, each over a
dropdown of '<Keep>', '<Delete>' and the class names; `delete()` and `change()` read the
choices back. `ImageClassifierCleaner` computes, once, the loss of every training and
validation image under the learner's model, and shows the images of one actual class in one
data set, the highest loss first: the images most likely to be mislabelled or not to belong
to the data set at all.

The widgets are ipywidgets ones. ipywidgets is optional: importing this module does not need
it, constructing a cleaner without it is an ImportError saying to `pip install ipywidgets`.

Unlike fastai, the training images are scored without augmentation (the validation
transform: presize, centre crop, normalization), so a file's loss does not depend on a random
draw; and a re-fill (a dropdown changed) leaves out the files that no longer exist (deleted
or moved since the cleaner was built), where fastai fails on them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from fastcore_ext.checks import check_int
from fastcore_ext.data import DeviceDataLoader, PILImage
from fastcore_ext.foundation import L
from fastcore_ext.inference import in_order_loader

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = ["ImageClassifierCleaner", "ImagesCleaner", "ItemLoss"]

KEEP, DELETE = "<Keep>", "<Delete>"
DATA_SETS = ("Train", "Valid")  # the options of ImageClassifierCleaner's dd_ds, as fastai's


def _ipywidgets() -> Any:
    """The ipywidgets module, or an ImportError saying why it is needed and how to get it."""
    try:
        import ipywidgets
    except ImportError as e:
        raise ImportError(
            "ImagesCleaner and ImageClassifierCleaner are Jupyter widgets (thumbnails with a "
            "dropdown each) built with ipywidgets, which is not installed: pip install "
            "ipywidgets (an optional dependency of fastcore_ext)"
        ) from e
    return ipywidgets


def _thumbnail_png(fn: Path, height: int, width: int) -> bytes:
    """The picture of `fn` fitted into height x width pixels (aspect kept, as fastai's
    `to_thumb`), encoded as PNG."""
    buf = io.BytesIO()
    PILImage.create(fn).to_thumb(height, width).save(buf, format="PNG")
    return buf.getvalue()


class ImagesCleaner:
    """A row of image thumbnails, each above a dropdown to keep it, delete it or give it
    another class (fastai's `ImagesCleaner`).

    opts: the class names offered besides '<Keep>' and '<Delete>'. height, width: the box
    (pixels) each thumbnail fits in, aspect kept. max_n: how many files `set_fns` shows (the
    first ones). Attributes: opts (('<Keep>', '<Delete>') + the class names), fns (an `L` of
    the Paths shown), widget (an ipywidgets Box scrolling horizontally, one
    VBox([Image, Dropdown]) per file). In a notebook the cleaner displays as its widget.
    """

    def __init__(
        self, opts: Iterable[str] = (), height: int = 128, width: int = 256, max_n: int = 30
    ) -> None:
        widgets = _ipywidgets()
        if isinstance(opts, str):
            raise TypeError(f"opts should be a sequence of class names, got the str {opts!r}")
        self.opts: tuple[str, ...] = (KEEP, DELETE) + tuple(opts)
        self.height = check_int("height", height, 1)
        self.width = check_int("width", width, 1)
        self.max_n = check_int("max_n", max_n, 1)
        self.fns: L = L()
        layout = {"overflow": "scroll hidden", "flex_flow": "row", "display": "flex"}
        self.widget = widgets.Box([], layout={**layout, "width": "100%"})  # fastai's carousel

    def set_fns(self, fns: Iterable[str | Path]) -> None:
        """Show the first max_n files of `fns`, each as a thumbnail over a dropdown set to
        '<Keep>'; replaces what was shown (and the choices made on it)."""
        if isinstance(fns, (str, Path)):
            raise TypeError(f"fns should be a list of image files, got the single path {fns!r}")
        widgets = _ipywidgets()
        self.fns = L([Path(f) for f in fns][: self.max_n])
        children = []
        for fn in self.fns:
            thumb = widgets.Image(
                value=_thumbnail_png(fn, self.height, self.width),
                format="png",
                layout={"height": f"{self.height}px"},
            )
            choice = widgets.Dropdown(options=self.opts, layout={"width": "max-content"})
            children.append(widgets.VBox([thumb, choice], layout={"flex": "0 0 auto"}))
        self.widget.children = children

    def values(self) -> L:
        """The value of each file's dropdown, in the order of `fns`."""
        return L([box.children[1].value for box in self.widget.children])

    def delete(self) -> L:
        """The indices (into `fns`) of the files marked '<Delete>'."""
        return L([i for i, v in enumerate(self.values()) if v == DELETE])

    def change(self) -> L:
        """(index into `fns`, class name) of each file given a class."""
        return L([(i, v) for i, v in enumerate(self.values()) if v not in (KEEP, DELETE)])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class ItemLoss(NamedTuple):
    """One image of a data set as `ImageClassifierCleaner` ranks it."""

    fn: Path  # the image file
    label: str  # its actual class
    loss: float  # the learner's loss on it


class ImageClassifierCleaner:
    """fastai's `ImageClassifierCleaner`: the images of one class in one data set, worst
    loss first, through an `ImagesCleaner` whose choices say which files to delete or move.

    learn: a Learner on image files (ImageDataLoaders / ImageDataBunch, DataBlock); its model
    scores every training and validation image once, here (`Learner.get_preds` with
    with_loss: eval mode; the training images without augmentation). kwargs: ImagesCleaner's
    (height, width, max_n). Attributes: dd_cats (Dropdown of the classes: the ACTUAL class of
    the images shown), dd_ds (Dropdown of 'Train' and 'Valid'), iw (the ImagesCleaner),
    items (per data set, train then valid, an `ItemLoss` per scored file, in data set
    order), widget (VBox([dd_cats, dd_ds, iw.widget])). Changing either dropdown re-fills the
    images; `fns`, `values()`, `delete()` and `change()` are the ImagesCleaner's, on the
    images shown now.
    """

    def __init__(self, learn: Learner, **kwargs: Any) -> None:
        widgets = _ipywidgets()
        data = _file_data(learn)
        vocab = getattr(data, "vocab", None)
        vocab = [str(c) for c in (data.classes if vocab is None else vocab)]
        self.iw = ImagesCleaner(vocab, **kwargs)
        self.dd_cats = widgets.Dropdown(options=vocab)
        self.dd_ds = widgets.Dropdown(options=DATA_SETS)
        self.items: tuple[list[ItemLoss], list[ItemLoss]] = (
            _item_losses(learn, data, "train"),
            _item_losses(learn, data, "valid"),
        )
        self.dd_ds.observe(self.on_change_ds, "value")
        self.dd_cats.observe(self.on_change_ds, "value")
        self.on_change_ds()
        self.widget = widgets.VBox([self.dd_cats, self.dd_ds, self.iw.widget])

    def on_change_ds(self, change: Any = None) -> None:
        """Show the files of the chosen data set whose actual class is the chosen one, the
        highest loss first (ties in data set order); files that no longer exist are left
        out."""
        chosen = [o for o in self.items[self.dd_ds.index] if o.label == self.dd_cats.value]
        ranked = sorted(chosen, key=lambda o: o.loss, reverse=True)
        self.iw.set_fns([o.fn for o in ranked if o.fn.exists()])

    @property
    def fns(self) -> L:
        """The files shown now (the ImagesCleaner's), which delete() and change() index."""
        return self.iw.fns

    def values(self) -> L:
        """The value of each shown file's dropdown."""
        return self.iw.values()

    def delete(self) -> L:
        """The indices (into `fns`) of the files marked '<Delete>'."""
        return self.iw.delete()

    def change(self) -> L:
        """(index into `fns`, class name) of each file given another class."""
        return self.iw.change()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _file_data(learn: Any) -> Any:
    """The learner's data, checked to have training and validation sets of image files."""
    data = getattr(learn, "data", None)
    if data is None or not hasattr(learn, "get_preds"):
        raise TypeError(
            f"learn should be a Learner with data (vision_learner(dls, ...)), got "
            f"{type(learn).__name__}"
        )
    for ds_type in ("train", "valid"):
        if getattr(data, f"{ds_type}_dl", None) is None:
            raise ValueError(
                f"ImageClassifierCleaner ranks the learner's training and validation images, "
                f"but this learner has no {ds_type} data (data.{ds_type}_dl is None: a learner "
                f"from load_learner keeps only what predict needs); build the data "
                f"(ImageDataLoaders.from_folder, ...) and a learner on it (vision_learner), "
                f"then learn.load(...) a checkpoint saved by learn.save"
            )
    missing = [
        f"data.{ds_type}_ds.items"
        for ds_type in ("train", "valid")
        if getattr(getattr(data, f"{ds_type}_ds", None), "items", None) is None
    ]
    if missing or not isinstance(data.valid_dl, DeviceDataLoader):
        what = ", ".join(missing) if missing else "data.valid_dl a DeviceDataLoader"
        raise ValueError(
            f"ImageClassifierCleaner shows image files: it needs data that lists them, as "
            f"ImageDataLoaders / ImageDataBunch / DataBlock give (data.train_ds.items, "
            f"data.valid_ds.items, read by a DeviceDataLoader), got {type(data).__name__} "
            f"without {what} (data built from tensors or arrays has no files to show)"
        )
    every = list(data.train_ds.items) + list(data.valid_ds.items)
    if not any(isinstance(o, (str, Path)) and Path(o).is_file() for o in every):
        first = f" (the first: {every[0]!r})" if every else ""
        raise ValueError(
            f"ImageClassifierCleaner shows image files, but none of the {len(every)} items of "
            f"the training and validation sets is an existing file{first}: were they moved "
            f"or deleted since the data was built?"
        )
    return data


def _item_losses(learn: Learner, data: Any, ds_type: str) -> list[ItemLoss]:
    """(file, actual class, loss) of every readable image of data.`ds_type`_ds, in data set
    order: one `Learner.get_preds(dl=..., with_loss=True)` pass over it in order, through the
    validation transform. Unreadable files (the loader names them in a warning) have no
    entry."""
    ds = getattr(data, f"{ds_type}_ds")
    if len(ds.items) == 0:
        return []
    dl = in_order_loader(data, ds_type)
    _, targets, losses = learn.get_preds(dl=dl, with_loss=True)
    bad = set(dl.bad_items)
    kept = [fn for fn in ds.items if fn not in bad]
    if len(kept) != len(losses):
        raise RuntimeError(
            f"get_preds gave {len(losses)} losses for the {len(kept)} readable items of the "
            f"{ds_type} set: the losses cannot be matched to their files"
        )
    classes: Sequence[str] = ds.classes
    return [
        ItemLoss(Path(fn), str(classes[t]), loss)
        for fn, t, loss in zip(kept, targets.tolist(), losses.tolist(), strict=True)
    ]
