"""fastai v2's ``DataBlock.datasets(source)``: the items and labels of each split, before any
transform.

    dsets = bears.datasets(path)
    dsets.train[0]          # (PILImage mode=RGB size=500x375, TensorCategory(0))
    dsets.vocab             # ['black', 'grizzly', 'teddy']
    len(dsets.train), dsets.valid.items[:3]

As fastai's (checked against fastai 2.8.12 on the same folder): an item is the image file
opened as a `PILImage` at its own size, in RGB, with its label as a `TensorCategory` (an int64
0-d tensor, its index in the vocab); ``decode`` gives the label's name back. What differs:
fastai's ``dsets[i]`` / ``dsets.items`` / ``len(dsets)`` index every item of the source in
get_items' order; here only ``dsets.train`` and ``dsets.valid`` hold items, and
``dsets.dataloaders()`` is not offered (``DataBlock.dataloaders(source)`` builds the
loaders).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .bunch import CategoryMap
from .loader import item_index
from .open import PILImage
from .tensors import TensorCategory, category_item

__all__ = ["Datasets", "ImageItems", "TensorCategory"]


class ImageItems:
    """One split of `Datasets` (fastai's ``dsets.train`` / ``dsets.valid``): image files and
    their class indices. ``ds[i] -> (PILImage, TensorCategory)``: the file opened in RGB at
    its own size (EXIF orientation applied) and its label; `items` the files, `vocab` the
    classes."""

    def __init__(self, items: Sequence[Path], labels: Sequence[int], vocab: CategoryMap) -> None:
        if len(items) != len(labels):
            raise ValueError(f"labels: expected {len(items)} labels, got {len(labels)}")
        self.items: list[Path] = list(items)
        self.labels: list[int] = [int(y) for y in labels]
        self.vocab = vocab

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[PILImage, TensorCategory]:
        i = item_index(i, len(self.items))
        return PILImage.create(self.items[i]), category_item(self.labels[i])

    def decode(self, item: tuple[object, torch.Tensor | int]) -> tuple[object, str]:
        """``(image, label index)`` -> ``(image, class name)``, as fastai's ``dsets.decode``."""
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TypeError(f"item: expected (image, label), got {item!r}")
        image, label = item
        return image, str(self.vocab[int(label)])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} items of (PILImage, TensorCategory); "
            f"vocab {list(self.vocab)})"
        )


class Datasets:
    """What ``DataBlock.datasets(source)`` returns (see the module doc): `train` and `valid`
    (`ImageItems`), `vocab` (a `CategoryMap`), ``n_inp = 1``."""

    n_inp = 1

    def __init__(self, train: ImageItems, valid: ImageItems) -> None:
        self.train, self.valid = train, valid

    @property
    def vocab(self) -> CategoryMap:
        """The class names, in label order (``vocab.o2i``: name -> index)."""
        return self.train.vocab

    def decode(self, item: tuple[object, torch.Tensor | int]) -> tuple[object, str]:
        """``(image, label index)`` -> ``(image, class name)``, as fastai's."""
        return self.train.decode(item)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(train {len(self.train)}, valid {len(self.valid)} items; "
            f"vocab {list(self.vocab)})"
        )
