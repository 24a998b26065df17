"""fastai v2's DataBlock API, for what this library does: single-label image classification.

    bears = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
        splitter=RandomSplitter(valid_pct=0.2, seed=42), get_y=parent_label,
        item_tfms=Resize(128))
    dls = bears.dataloaders(path)                      # an ImageDataLoaders
    bears = bears.new(item_tfms=RandomResizedCrop(128, min_scale=0.3))

The steps are fastai's: ``items = get_items(source)`` (no get_items: the source is the list of
items, or a pandas DataFrame whose rows are the items), ``(train, valid) =
splitter(items)`` (default ``RandomSplitter()``), for each item ``x = get_x(item)`` (an
image file path; default the item itself) and ``y = get_y(item)`` (a str or int label;
default the item itself), the vocab from the training labels (sorted unless
``CategoryBlock(sort=False)``; or ``CategoryBlock(vocab=...)``), then the bunch that
`ImageDataLoaders` builds from those train and valid lists, with `item_tfms` / `batch_tfms`
read as `ImageDataLoaders` reads them (`Resize`, `RandomResizedCrop`, `aug_transforms`,
`Normalize`).

The data seed (the shuffle and the augmentation of every epoch, as `ImageDataLoaders`' seed):
``RandomSplitter(seed=s)``'s s, which also gives fastai's split for s; without a seed (any
splitter), one int drawn from torch's global RNG when the loaders are built (so
``torch.manual_seed`` before makes a run reproducible, as in fastai), and
``RandomSplitter(seed=None)`` then splits as ``RandomSplitter(seed=<that int>)`` would (fastai
draws its permutation straight from torch's global RNG: the same reproducibility, another
permutation).

Refused, each with an error naming the argument: blocks other than (ImageBlock,
CategoryBlock) (MultiCategoryBlock, RegressionBlock, MaskBlock, PointBlock, BBoxBlock are
defined only to say so), several inputs (n_inp, get_x lists), getters of other lengths,
dl_type, a label that is not a str or int, an x that is not an image file.

``datasets(source)`` gives fastai's Datasets: ``dsets.train[0] -> (PILImage, TensorCategory)``
(datasets.py says what differs).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from fastcore_ext.checks import int_or_none, short_repr
from fastcore_ext.warn import warn_user

from .bunch import _UNSET, CategoryMap, ImageDataLoaders, _resolve_pipeline, _resolve_seed, _sized
from .datasets import Datasets, ImageItems
from .items import (
    GrandparentSplitter,
    ItemSplit,
    MissingPathError,
    RandomSplitter,
    _is_dataframe,
    shown_names,
)
from .open import BW_NOTE, PILImage, PILImageBW

__all__ = [
    "BBoxBlock",
    "CategoryBlock",
    "DataBlock",
    "ImageBlock",
    "MaskBlock",
    "MultiCategoryBlock",
    "PointBlock",
    "RegressionBlock",
]


class ImageBlock:
    """fastai v2's input block for RGB images: each x is an image file path. `cls` may be
    fastai's default PILImage only (no grayscale PILImageBW)."""

    def __init__(self, cls: type | None = None) -> None:
        if cls is not None and cls is not PILImage:
            name = getattr(cls, "__name__", cls)
            note = f": {BW_NOTE}" if cls is PILImageBW else ""
            raise ValueError(
                f"cls: ImageBlock reads RGB images (PILImage) only, got {name!r}{note}"
            )

    def __repr__(self) -> str:
        return "ImageBlock()"


class CategoryBlock:
    """fastai v2's single-label target block. vocab: the classes (fastai's CategoryMap: its
    unique values, sorted when `sort`); None: the training set's labels, sorted when `sort`
    (else in order of first appearance). add_na: '#na#' as class 0."""

    def __init__(
        self, vocab: Sequence[object] | None = None, sort: bool = True, add_na: bool = False
    ) -> None:
        if vocab is not None:
            if isinstance(vocab, str) or not isinstance(vocab, Sequence | np.ndarray):
                if not hasattr(vocab, "tolist"):  # a pandas Series or Index
                    raise TypeError(f"vocab: expected a list of class names, got {vocab!r}")
            labels = [_label(v, "vocab", f"entry {k}") for k, v in enumerate(vocab)]
            vocab = _unique(labels, sort, "vocab")
            if not vocab:
                raise ValueError("vocab: expected at least one class, got an empty list")
        self.vocab, self.sort, self.add_na = vocab, bool(sort), bool(add_na)

    def classes(self, train_labels: Sequence[object]) -> list[object]:
        """The vocab, fastai's way: the given one, or the training labels' unique values."""
        vocab = self.vocab if self.vocab is not None else _unique(train_labels, self.sort, "get_y")
        return (["#na#"] if self.add_na else []) + list(vocab)

    def __repr__(self) -> str:
        return f"CategoryBlock(vocab={self.vocab}, sort={self.sort}, add_na={self.add_na})"


def _unique(labels: Sequence[object], sort: bool, arg: str) -> list[object]:
    out = list(dict.fromkeys(labels))
    if sort:
        try:
            out = sorted(out)
        except TypeError as e:
            kinds = sorted({type(x).__name__ for x in out})
            raise TypeError(f"{arg}: labels of several types cannot be sorted into a vocab, "
                            f"got {kinds}: give every label one type") from e  # fmt: skip
    return out


def _label(y: object, arg: str, where: str) -> str | int:
    """A label as a str or int (numpy scalars and 0-d tensors converted to their value); else
    a TypeError naming `arg`; an empty or blank str is a ValueError."""
    if isinstance(y, np.generic) or (isinstance(y, torch.Tensor) and y.ndim == 0):
        y = y.item()
    if isinstance(y, str) and not y.strip():
        raise ValueError(f"{arg}: empty label {y!r} for {where}")
    if isinstance(y, str | int):  # bool is an int, as in fastai's vocab [False, True]
        return y
    raise TypeError(
        f"{arg}: expected a str or int label (single-label classification: CategoryBlock), "
        f"got {type(y).__name__} {short_repr(y)} for {where}"
    )


def _refused(name: str, what: str) -> NoReturn:
    raise ValueError(
        f"blocks: {name} ({what}) is not supported: this library trains single-label image "
        "classifiers, blocks=(ImageBlock, CategoryBlock)"
    )


def MultiCategoryBlock(
    encoded: bool = False, vocab: object = None, add_na: bool = False
) -> NoReturn:
    """fastai v2's multi-label target block: refused (ValueError naming `blocks`)."""
    _refused("MultiCategoryBlock", "multi-label targets")


def RegressionBlock(n_out: int | None = None) -> NoReturn:
    """fastai v2's float target block: refused (ValueError naming `blocks`)."""
    _refused("RegressionBlock", "float targets")


def MaskBlock(codes: object = None) -> NoReturn:
    """fastai v2's segmentation mask block: refused (ValueError naming `blocks`)."""
    _refused("MaskBlock", "segmentation masks")


def PointBlock() -> NoReturn:
    """fastai v2's key point block: refused (ValueError naming `blocks`)."""
    _refused("PointBlock", "key points")


def BBoxBlock() -> NoReturn:
    """fastai v2's bounding box block: refused (ValueError naming `blocks`)."""
    _refused("BBoxBlock", "bounding boxes")


def _instantiate(b: object) -> object:
    """A block as fastai takes it: a class or function is called (CategoryBlock ->
    CategoryBlock()), an instance is kept."""
    return b() if callable(b) else b


def _one_getter(f: object, arg: str) -> Callable[[Any], Any] | None:
    if isinstance(f, list | tuple):
        if len(f) != 1:
            raise ValueError(
                f"{arg}: expected one function (one input and one target), got {len(f)}; to "
                "chain functions, write one function that calls them"
            )
        f = f[0]
    if f is not None and not callable(f):
        raise TypeError(f"{arg}: expected a callable item -> value, got {f!r}")
    return f


def _indices(idx: object, n: int, which: str) -> list[int]:
    """A splitter's `which` ('train' / 'valid') side as item indices: integers in [0, n), or a
    mask of one bool per item (numpy, torch or Python bools: its true positions), as fastai's
    L indexing takes either."""
    if isinstance(idx, str | bytes) or not hasattr(idx, "__iter__"):
        raise TypeError(
            f"splitter: expected (train indices, valid indices), got {which} as "
            f"{type(idx).__name__} {short_repr(idx)}"
        )
    values = idx.tolist() if isinstance(idx, np.ndarray | torch.Tensor) else list(idx)
    if values and all(isinstance(v, bool | np.bool_) for v in values):
        if len(values) != n:
            raise ValueError(
                f"splitter: {which} is a mask of {len(values)} bools for {n} items: a mask "
                "needs one bool per item"
            )
        return [i for i, v in enumerate(values) if v]
    out = []
    for v in values:
        i = int_or_none(v)
        if i is None:
            raise TypeError(
                f"splitter: expected {which} indices as integers (or a mask of one bool per "
                f"item), got {type(v).__name__} {short_repr(v)} among them"
            )
        out.append(i)
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise ValueError(f"splitter: {which} indices must lie in [0, {n}), got {bad[:5]}")
    return out


def _left_out(splitter: object, items: Sequence[Any], train: list[int], valid: list[int]) -> str:
    """', k in neither set (...)' for a split that leaves k of the items out, else ''; with a
    GrandparentSplitter, the grandparent folders of the items left out."""
    placed = set(train).union(valid)
    left = [i for i in range(len(items)) if i not in placed]
    if not left:
        return ""
    if _is_dataframe(items):
        return f", {len(left)} in neither set, e.g. row {left[0]}"
    if isinstance(splitter, GrandparentSplitter):
        names = sorted({Path(items[i]).parent.parent.name for i in left})
        shown = ", ".join(map(repr, names[:5])) + (", ..." if len(names) > 5 else "")
        return f", {len(left)} in neither set: their grandparent folders are {shown}"
    return f", {len(left)} in neither set, e.g. {short_repr(items[left[0]])}"


def _warn_path_labels(labels: Sequence[str | int]) -> None:
    """Warn when every label holds a '/': a pattern searched in the whole path (fastbook's
    RegexLabeller without using_attr(..., 'name')) gives folders as labels; fastai says
    nothing."""
    texts = [y for y in labels if isinstance(y, str)]
    if texts and len(texts) == len(labels) and all("/" in y for y in texts):
        warn_user(
            f"get_y: every label holds a '/' (e.g. {texts[0]!r}): a pattern searched in the "
            "whole path labels by folders; RegexLabeller on the file name is "
            "using_attr(RegexLabeller(pat), 'name'), as fastbook's pets"
        )


class DataBlock:
    """fastai v2's ``DataBlock(blocks, get_items, get_x, get_y, splitter, item_tfms,
    batch_tfms)`` for (ImageBlock, CategoryBlock); see the module doc for each step, the data
    seed and what is refused. `getters` = [get_x, get_y] as fastai's; `n_inp` may only be 1."""

    def __init__(
        self,
        blocks: Sequence[object] | None = None,
        dl_type: object = None,
        getters: Sequence[Callable[[Any], Any] | None] | None = None,
        n_inp: int | None = None,
        item_tfms: object = None,
        batch_tfms: object = None,
        *,
        get_items: Callable[[Any], Sequence[Any]] | None = None,
        splitter: Callable[[Any], tuple[Sequence[int], Sequence[int]]] | None = None,
        get_y: Callable[[Any], object] | Sequence[Callable[[Any], object]] | None = None,
        get_x: Callable[[Any], object] | Sequence[Callable[[Any], object]] | None = None,
    ) -> None:
        if blocks is None:
            raise ValueError(
                "blocks: expected (ImageBlock, CategoryBlock), got None (fastai's default "
                "TransformBlocks do nothing this library can train on)"
            )
        if isinstance(blocks, str) or not isinstance(blocks, Sequence):
            raise TypeError(f"blocks: expected (ImageBlock, CategoryBlock), got {blocks!r}")
        made = [_instantiate(b) for b in blocks]
        kinds = (ImageBlock, CategoryBlock)
        if len(made) != 2 or not all(isinstance(b, k) for b, k in zip(made, kinds, strict=True)):
            raise ValueError(
                "blocks: expected (ImageBlock, CategoryBlock): one image input and one category "
                f"target, got {tuple(made)!r}"
            )
        if dl_type is not None:
            raise ValueError(f"dl_type: the loaders are this library's, got dl_type={dl_type!r}")
        if n_inp is not None and n_inp != 1:
            raise ValueError(f"n_inp: expected 1 (one image input), got {n_inp!r}")
        if getters is not None:
            if isinstance(getters, str) or not isinstance(getters, Sequence) or len(getters) != 2:
                raise ValueError(f"getters: expected [get_x, get_y], got {getters!r}")
            if get_x is not None or get_y is not None:
                raise ValueError("getters: give getters or get_x/get_y, not both")
            get_x, get_y = getters
        if get_items is not None and not callable(get_items):
            raise TypeError(f"get_items: expected a callable source -> items, got {get_items!r}")
        if isinstance(splitter, type):
            raise TypeError(f"splitter: expected a splitter, an instance such as "
                            f"{splitter.__name__}(), got the class {splitter.__name__} itself: "
                            "call it")  # fmt: skip
        if splitter is not None and not callable(splitter):
            raise TypeError(f"splitter: expected a callable items -> (train, valid), got "
                            f"{splitter!r}")  # fmt: skip
        self.image_block, self.category_block = made
        self.get_items = get_items
        self.splitter = RandomSplitter() if splitter is None else splitter
        self.get_x = _one_getter(get_x, "get_x")
        self.get_y = _one_getter(get_y, "get_y")
        self.item_tfms, self.batch_tfms = item_tfms, batch_tfms

    def new(self, item_tfms: object = None, batch_tfms: object = None) -> DataBlock:
        """A copy with these item_tfms and batch_tfms (None: none), as fastai's ``new`` (which
        sets them on the DataBlock itself and returns it; this one leaves self unchanged)."""
        block = copy.copy(self)
        block.item_tfms, block.batch_tfms = item_tfms, batch_tfms
        return block

    # -- the steps --------------------------------------------------------------------------

    def _items(self, source: object) -> Any:
        items = source if self.get_items is None else self.get_items(source)
        if _is_dataframe(items):
            return items
        if isinstance(items, str | os.PathLike) or not isinstance(items, Sequence | np.ndarray):
            what = "get_items(source)" if self.get_items is not None else "source"
            raise TypeError(
                f"get_items: expected {what} to be a list of items or a pandas DataFrame, got "
                f"{type(items).__name__}"
                + (
                    "; pass get_items=get_image_files to list a folder's images"
                    if self.get_items is None
                    else ""
                )  # fmt: skip
            )
        if len(items) == 0:
            raise ValueError(f"get_items: no items found in {source!r}")
        return items

    def _split(self, items: Any, seed: int | None) -> tuple[list[int], list[int]]:
        n = len(items)
        if isinstance(self.splitter, RandomSplitter):
            train, valid = self.splitter.split(n, seed)
        else:
            out = self.splitter(items)
            if not isinstance(out, tuple | list) or len(out) != 2:
                got = (
                    f"a {type(out).__name__} of {len(out)}"
                    if isinstance(out, tuple | list)
                    else f"{type(out).__name__} {short_repr(out)}"
                )
                raise TypeError(
                    f"splitter: expected a pair (train indices, valid indices), got {got}"
                )
            train, valid = _indices(out[0], n, "train"), _indices(out[1], n, "valid")
        left = "" if train and valid else _left_out(self.splitter, items, train, valid)
        if not train:  # an empty validation set is fine: every item trains (valid_pct=0)
            raise ValueError(
                f"splitter: {self.splitter!r} gave an empty training set ({n} items{left}); a "
                "model needs items to train on"
            )
        if not valid and left:  # a typo in a folder name, more likely than a wish
            warn_user(
                f"splitter: {self.splitter!r} gave an empty validation set ({n} items{left}): "
                "the fit will show no validation loss or metrics"
            )
        return train, valid

    def _x_y(self, item: object, where: str, df: bool) -> tuple[Path, str | int]:
        """(image path, label) of one item; `where` names it in errors."""
        x = item if self.get_x is None else self.get_x(item)
        if not isinstance(x, str | os.PathLike):
            raise TypeError(
                "get_x: expected an image file path per item (ImageBlock), got "
                f"{type(x).__name__} {short_repr(x)} for {where}"
                + (
                    "; pass get_x=ColReader(<column>) to read a DataFrame's file names"
                    if self.get_x is None and df
                    else ""
                )  # fmt: skip
            )
        y = item if self.get_y is None else self.get_y(item)
        return Path(x), _label(y, "get_y", where)

    def _xy(self, items: Any, idx: list[int]) -> tuple[list[Path], list[str | int]]:
        df = _is_dataframe(items)
        rows = items.iloc if df else items
        pairs = [self._x_y(rows[i], f"item {i}", df) for i in idx]
        xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
        missing = [p for p in xs if not p.is_file()]
        if missing:
            raise MissingPathError(
                f"get_x: {len(missing)} of {len(xs)} image files do not exist "
                f"(e.g. {shown_names(missing, 3)})"
            )
        return xs, ys

    def _item_split(self, source: object, seed: int | None) -> tuple[Any, ItemSplit]:
        """(the items, their ItemSplit for `seed`) from `source`: get_items, splitter, get_x,
        get_y and the vocab."""
        items = self._items(source)
        train, valid = self._split(items, seed)
        tx, ty = self._xy(items, train)
        vx, vy = self._xy(items, valid)
        _warn_path_labels(ty)
        vocab = self.category_block.classes(ty)
        index = {v: k for k, v in enumerate(vocab)}
        untrained = [y for y in dict.fromkeys(vy) if y not in index]
        if untrained and self.category_block.vocab is None:
            # as the folder APIs' split: the vocab holds them, with a warning (fastai's
            # Categorize takes the training labels only and fails at the first validation)
            vocab = self.category_block.classes([*ty, *untrained])
            index = {v: k for k, v in enumerate(vocab)}
            shown = ", ".join(f"{str(y)!r} ({vy.count(y)})" for y in untrained[:10])
            warn_user(
                f"splitter: the split put every image of {len(untrained)} class(es) in the "
                f"validation set, so the model cannot learn them: {shown}. They are classes "
                "of the vocab (fastai's Categorize fails on them at the first validation). "
                "Give each class more images, or choose another seed or splitter"
            )
        unknown = sorted({str(y) for y in (*ty, *vy) if y not in index})
        if unknown:
            where = (
                "the vocab given"
                if self.category_block.vocab is not None
                else "the training set's labels (the vocab, as fastai's Categorize)"
            )
            raise ValueError(
                f"get_y: labels {shown_names(unknown, 10)} are not in {where}: "
                f"{shown_names([str(v) for v in vocab], 20)}"
            )
        classes = [str(v) for v in vocab]
        split = ItemSplit(tx, [index[y] for y in ty], vx, [index[y] for y in vy], classes)
        return items, split

    def _seed(self) -> int | None:
        return self.splitter.seed if isinstance(self.splitter, RandomSplitter) else None

    def dataloaders(
        self,
        source: object,
        path: str | os.PathLike = ".",
        *,
        bs: int = 64,
        val_bs: int | None = None,
        num_workers: int | None = None,
        cache: bool | str | os.PathLike | None = False,
        skip_bad: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        decode_device: torch.device | str | None = None,
        shuffle: bool = True,
        drop_last: bool | None = None,
    ) -> ImageDataLoaders:
        """The `ImageDataLoaders` of `source` (fastai's ``dataloaders(source, path='.',
        **kwargs)``): `path` is where the learner saves (models/), as fastai's; the other
        arguments are ImageDataLoaders' (bs, val_bs, num_workers, cache, skip_bad, device,
        channels_last, decode_device) and fastai's shuffle (False: the training loader
        keeps the items' order every epoch) and drop_last (of the training loader's last
        partial batch; None: ``drop_last=shuffle``, as fastai's). The
        folder holding the images is kept free of plots (see fastcore_ext.plots). When the
        items are files (no DataFrame, no get_x), ``dls.test_dl(files, with_labels=True)``
        labels new files with get_y."""
        seed = _resolve_seed(self._seed(), ImageDataLoaders._seed_rng)
        items, split = self._item_split(source, seed)
        get_y = self.get_y
        labeller = (
            get_y if get_y is not None and self.get_x is None and not _is_dataframe(items) else None
        )
        files = [str(p.absolute()) for p in split.train_items + split.valid_items]
        folder = Path(os.path.commonpath(files))
        return ImageDataLoaders._build(
            path, lambda _: split, seed, _UNSET, None, self.item_tfms, self.batch_tfms,
            bs=bs, val_bs=val_bs, num_workers=num_workers, cache=cache, skip_bad=skip_bad,
            device=device, channels_last=channels_last, decode_device=decode_device,
            data_folder=folder if folder.is_dir() else folder.parent,
            labeller=labeller, shuffle=shuffle, drop_last=drop_last,
        )  # fmt: skip

    def datasets(self, source: object) -> Datasets:
        """fastai v2's ``datasets(source)``: the split items with their labels, before any
        transform: ``dsets.train[i] -> (PILImage, TensorCategory)``, `dsets.valid`,
        `dsets.vocab` (see datasets.py). The split is `dataloaders`' for the same seed: the
        RandomSplitter's, else one int drawn from torch's global RNG at this call (a later
        `dataloaders` call without a seed draws its own)."""
        seed = _resolve_seed(self._seed(), ImageDataLoaders._seed_rng)
        _, split = self._item_split(source, seed)
        vocab = CategoryMap(split.classes)
        return Datasets(
            ImageItems(split.train_items, split.train_labels, vocab),
            ImageItems(split.valid_items, split.valid_labels, vocab),
        )

    def summary(self, source: object) -> None:
        """Print what `dataloaders(source)` would build, without decoding an image: the items
        found, the first one's x and y, the split sizes, the vocab and the pipeline (fastai's
        summary steps through its transforms on one batch; this one decodes no image: without
        a Resize it reads the files' headers for their size, as `dataloaders`)."""
        seed, note = self._seed(), ""
        if isinstance(self.splitter, RandomSplitter) and seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
            note = f"; no seed: this split drew seed {seed}, dataloaders draws its own"
        items, split = self._item_split(source, seed)
        df = _is_dataframe(items)
        first = items.iloc[0] if df else items[0]
        x, y = self._x_y(first, "item 0", df)
        p = _sized(
            _resolve_pipeline(_UNSET, None, self.item_tfms, self.batch_tfms),
            split.train_items + split.valid_items,
        )
        found = (
            f"{getattr(self.get_items, '__name__', self.get_items)}({source!r})"
            if self.get_items is not None
            else "the source itself" + (" (DataFrame rows)" if df else "")
        )
        first_shown = "row 0 of the DataFrame" if df else repr(first)
        lines = [
            f"DataBlock: {self.image_block!r}, {self.category_block!r}",
            f"  items: {len(items)}, from {found}",
            f"  first item: {first_shown}",
            f"    x = {x}",
            f"    y = {y!r}",
            f"  split: {self.splitter!r}: {len(split.train_items)} train, "
            f"{len(split.valid_items)} valid{note}",
            f"  vocab ({len(split.classes)}): {split.classes}",
            f"  item_tfms: {self.item_tfms!r} -> each image presized to {p.presize} px "
            f"(method {p.method!r})",
            f"  batch_tfms: {self.batch_tfms!r} -> batches of {p.size} x {p.size} px; "
            f"random augmentation: {p.spec if p.spec is not None else 'none'}; "
            f"normalization: {p.stats if p.stats is not None else 'none'}",
        ]
        print("\n".join(lines))
