"""`open_image`: one image file as a picture, fastai v1's spelling.

fastai v1 returns its own ``Image`` (shown inline by a notebook, accepted by
``learn.predict``). Here it is a PIL image in RGB, which does both: a notebook shows it
inline, and `Learner.predict` takes it as it takes a path.
"""

from __future__ import annotations

import os

from PIL import Image

from .images import to_rgb

__all__ = ["open_image"]


def open_image(fn: str | os.PathLike) -> Image.Image:
    """Decode the image file `fn` -> RGB PIL image (EXIF orientation applied; grayscale and
    palette files converted). A file that cannot be decoded raises BadImageError naming it."""
    if not isinstance(fn, str | os.PathLike):
        raise TypeError(f"fn: expected an image file path, got {type(fn).__name__}")
    rgb = to_rgb(fn)  # uint8 Tensor[3, H, W]
    return Image.fromarray(rgb.permute(1, 2, 0).contiguous().numpy())
