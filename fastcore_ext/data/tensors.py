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

__all__ = ["TensorCategory", "TensorImage"]


class TensorCategory(torch.Tensor):
    """fastai v2's type of a category label: an int64 tensor of class indices (0-d for one
    item), printed as ``TensorCategory(0)``; torch operations on it keep the type, as
    fastai's. It indexes a list (``classes[label]``) as an int does."""


class TensorImage(torch.Tensor):
    """An image as a uint8 tensor [3, H, W] (fastai v2's TensorImage): ``img.show()`` draws
    it (`show_image`: in a notebook inline, in a script saved as a PNG)."""

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
