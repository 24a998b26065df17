"""The types of a data set's items: `TensorImage` (an image as a uint8 tensor [3, H, W] that
shows itself) and `TensorCategory` (a label as its class index), as fastai v2 names them.

    img, label = data.train_ds[0]        # (TensorImage, TensorCategory)
    img.show(title=data.classes[label])  # fastai v1's Image.show, v2's show_image
    img.shape, int(label)                # torch.Size([3, 224, 224]), 3

Both are torch.Tensor subclasses: torch operations take them as tensors (and keep the type,
as fastai's do); `torch.stack` of a list of them, `torch.as_tensor`, `.float() / 255` work.
"""

from __future__ import annotations

from typing import Any

import torch

from fastcore_ext.plots import show_image
from fastcore_ext.torch_core import tensor

__all__ = ["TensorCategory", "TensorImage"]


class _TypedTensor(torch.Tensor):
    """A tensor type built as fastai's TensorBase: ``T(x)`` is `tensor(x)` (a number, list,
    numpy array or tensor, its dtype kept: ints int64, a uint8 array uint8, Python floats
    float32) of type T. (``torch.Tensor``'s own constructor took ``T(1)`` as a size and gave
    an uninitialized float tensor.)"""

    @staticmethod
    def __new__(cls, x: Any) -> _TypedTensor:
        return tensor(x).as_subclass(cls)

    def __deepcopy__(self, memo: dict[int, Any]) -> _TypedTensor:
        """A copy of the same type (torch's default needs new_empty to keep the type)."""
        copied = self.as_subclass(torch.Tensor).clone().as_subclass(type(self))
        memo[id(self)] = copied
        return copied


class TensorCategory(_TypedTensor):
    """fastai v2's type of a category label: an int64 tensor of class indices (0-d for one
    item: ``TensorCategory(1)``), printed as ``TensorCategory(0)``; torch operations on it
    keep the type, as fastai's. It indexes a list (``classes[label]``) as an int does."""


class TensorImage(_TypedTensor):
    """An image as a uint8 tensor [3, H, W] (fastai v2's TensorImage; ``TensorImage(x)`` of a
    tensor or array keeps its dtype): ``img.show()`` draws it (`show_image`: in a notebook
    inline, in a script saved as a PNG)."""

    def show(
        self,
        ax: Any = None,
        figsize: tuple[float, float] | None = None,
        title: str | None = None,
        ctx: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Draw the image (fastai's ``show_image(img, ax, figsize, title)``); returns the
        Axes."""
        return show_image(self.as_subclass(torch.Tensor), ax, figsize, title, ctx, **kwargs)


def category_item(index: int) -> TensorCategory:
    """A class index as a 0-d `TensorCategory`."""
    return torch.tensor(index, dtype=torch.int64).as_subclass(TensorCategory)
