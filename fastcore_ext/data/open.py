"""`open_image` and its `Image`: one image file as a picture, fastai v1's spelling.

fastai v1 returns its own ``Image``: shown inline by a notebook, drawn by ``img.show()``,
with ``img.shape`` / ``img.size`` / ``img.data``, accepted by ``learn.predict``. So does
this one, and ``img.pil`` is the PIL image of it.
"""

from __future__ import annotations

import io
import os
from typing import Any, NoReturn

import numpy as np
import PIL.Image
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fastcore_ext.checks import check_positive_int
from fastcore_ext.plots import check_figsize, finish, new_figure

from .images import BadImageError, to_rgb

__all__ = ["Image", "PILImage", "PILImageBW", "open_image"]


class Image:
    """One RGB picture (fastai v1's ``Image``), what `open_image` returns.

    px: ``uint8 Tensor[3, H, W]``; data: the same as float in [0, 1] (v1's ``img.data``);
    shape: ``(3, H, W)``; size: ``(H, W)`` (v1's order, not PIL's (W, H)); pil: a PIL image.
    A notebook shows it inline; `show` draws it with matplotlib; ``np.asarray(img)`` is
    ``uint8 [H, W, 3]``, so `Learner.predict` and `data.preprocess` take it as they take a
    file."""

    def __init__(self, px: torch.Tensor) -> None:
        if not (
            isinstance(px, torch.Tensor)
            and px.dtype == torch.uint8
            and px.dim() == 3
            and px.shape[0] == 3
        ):
            raise TypeError(
                f"px: expected a uint8 Tensor[3, H, W], got "
                f"{getattr(px, 'dtype', type(px).__name__)} {tuple(getattr(px, 'shape', ()))}"
            )
        self.px = px.cpu()

    @property
    def data(self) -> torch.Tensor:
        return self.px.float() / 255

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.px.shape)  # type: ignore[return-value]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.px.shape[1:])  # type: ignore[return-value]

    @property
    def pil(self) -> PIL.Image.Image:
        return PIL.Image.fromarray(np.asarray(self))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = self.px.permute(1, 2, 0).contiguous().numpy()
        return arr if dtype is None else arr.astype(dtype)

    def show(
        self,
        ax: Axes | None = None,
        figsize: tuple[float, float] | None = (3, 3),
        title: str | None = None,
        hide_axis: bool = True,
    ) -> Figure | Axes:
        """Draw the picture into `ax`, or into a new figure of `figsize` inches (shown
        inline in a notebook, saved as 'image.png' in the plot folder elsewhere), with an
        optional `title`. Returns the new Figure, or `ax` (fastai's return: a notebook
        cell ending with it then shows the figure once)."""
        if title is not None and not isinstance(title, str):
            raise TypeError(f"title should be a str or None, got {type(title).__name__}")
        own = ax is None
        if own:
            fig = new_figure(figsize=check_figsize(figsize, (3, 3)))
            ax = fig.add_subplot()
        elif not isinstance(ax, Axes):
            raise TypeError(f"ax should be a matplotlib Axes or None, got {type(ax).__name__}")
        ax.imshow(np.asarray(self))
        if hide_axis:
            ax.set_axis_off()
        if title is not None:
            ax.set_title(title)
        return finish(ax.figure, "image") if own else ax

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.pil.save(buf, format="PNG")
        return buf.getvalue()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.shape}"


class PILImage(PIL.Image.Image):
    """fastai v2's PILImage (fastbook: ``img = PILImage.create(fn)``, ``img.to_thumb(128)``,
    ``learn.predict(img)``): a PIL image, an RGB `PIL.Image.Image` subclass as fastai's, made
    by `create`. ``shape`` is (h, w) as fastai's, ``size`` (w, h), ``mode``, ``resize``,
    ``crop`` ... are PIL's, and what resize, crop, copy, convert and transpose return are
    PILImages too (PIL's functions that make an image anew, and `rotate`, give plain PIL
    images, which predict takes as well); `show`
    draws it with matplotlib (fastai's, not PIL's external viewer); a notebook shows it inline;
    ``np.asarray(img)`` is ``uint8 [H, W, 3]``."""

    @classmethod
    def create(cls, fn: Any) -> PILImage:
        """An image file (a path or str, or its bytes, as fastai), a PIL image, or a uint8
        (or float in [0, 1]) numpy array / tensor (as `learn.predict` takes them) -> the
        picture in RGB (EXIF orientation applied; grayscale, palette and RGBA converted)."""
        if isinstance(fn, bytes | bytearray | memoryview):
            try:
                with PIL.Image.open(io.BytesIO(fn)) as pil:
                    pil.load()
                    rgb = to_rgb(pil)
            except (OSError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
                raise BadImageError(
                    f"fn: expected the bytes of an image file, got {len(fn)} bytes that do not "
                    f"decode ({e})"
                ) from e
        else:
            rgb = to_rgb(fn)  # uint8 Tensor[3, H, W]
        return cls._adopt(PIL.Image.fromarray(rgb.permute(1, 2, 0).numpy()))

    @classmethod
    def _adopt(cls, img: PIL.Image.Image) -> PILImage:
        """`img`, a PIL image made just now by this class or by PIL, as a `cls`: PIL makes
        every image a plain `PIL.Image.Image`, so the new object takes this class (as
        fastai's BypassNewMeta does), its pixels kept without a copy."""
        img.__class__ = cls
        return img

    def _new(self, im: Any) -> PILImage:
        """PIL's maker of derived images (resize, crop, copy, convert, rotate, ...): they are
        PILImages too, with `shape`, `to_thumb` and `show`."""
        return self._adopt(super()._new(im))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width), fastai's order (PIL's `size` is (width, height))."""
        return self.height, self.width

    def to_thumb(self, h: int, w: int | None = None) -> PILImage:
        """A copy that fits in h x w pixels (w default h), aspect kept (fastai's to_thumb:
        PIL's thumbnail on a copy)."""
        w = h if w is None else w
        h, w = check_positive_int("h", h), check_positive_int("w", w)
        thumb = self.copy()
        thumb.thumbnail((w, h))
        return thumb

    def show(
        self,
        ctx: Axes | None = None,
        figsize: tuple[float, float] | None = (3, 3),
        title: str | None = None,
        hide_axis: bool = True,
        ax: Axes | None = None,
    ) -> Figure | Axes:
        """Draw the picture into `ax` (or fastai's name for it, `ctx`), or into a new figure
        of `figsize` inches, as `Image.show`: returns the new Figure, or the Axes given."""
        px = torch.from_numpy(np.array(self.convert("RGB"))).permute(2, 0, 1)
        return Image(px).show(ax=ax if ax is not None else ctx, figsize=figsize, title=title,
                              hide_axis=hide_axis)  # fmt: skip

    def __repr__(self) -> str:
        return f"{type(self).__name__} mode={self.mode} size={self.width}x{self.height}"


def open_image(fn: str | os.PathLike) -> Image:
    """Decode the image file `fn` -> `Image` in RGB (EXIF orientation applied; grayscale and
    palette files converted). A file that cannot be decoded raises BadImageError naming it."""
    if not isinstance(fn, str | os.PathLike):
        raise TypeError(f"fn: expected an image file path, got {type(fn).__name__}")
    return Image(to_rgb(fn))


BW_NOTE = (
    "grayscale files are read as RGB (three equal channels), as fastai's PILImage reads "
    "them, and models take 3 channels here (n_in=1 is not offered): use PILImage / the "
    "default ImageBlock"
)


class PILImageBW:
    """fastai v2's grayscale image type (``ImageBlock(cls=PILImageBW)``, one channel): not
    offered; its use raises a ValueError saying why (`BW_NOTE`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise ValueError(f"PILImageBW: not offered: {BW_NOTE}")

    @classmethod
    def create(cls, fn: Any) -> NoReturn:
        raise ValueError(f"PILImageBW: not offered: {BW_NOTE}")
