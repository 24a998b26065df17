"""Decoding and presizing: any image source to a deterministic uint8 square.

`to_rgb` turns a file, a PIL image, a numpy array or a tensor into ``uint8 Tensor[3, H, W]``
with EXIF orientation applied and grayscale, palette and RGBA converted to RGB (alpha
dropped, as Pillow's ``convert('RGB')``); images of more than 8 bits, 16-bit and float,
become 8-bit the same way whatever the route (`wide_to_8bit`: 16-bit keeps its high byte,
float in [0, 1] is scaled by 255); an animation
gives its first frame. Files are decoded by TorchCodec (JPEG, PNG, WebP, GIF, AVIF; its
image decoders come in its wheel and need no FFmpeg), Pillow for what it can't read (BMP,
TIFF, PPM). Where TorchCodec cannot be imported (not installed, or its native libraries
fail to load) torchvision.io's decoders, deprecated since torchvision 0.29, take its place,
with one warning per process; both give the same pixels (tests/test_data_images.py). Before
any decoding, the size the file's header declares is checked against Pillow's
``PIL.Image.MAX_IMAGE_PIXELS`` (`check_image_size`): a decompression bomb (a 10 MB PNG that
declares 60000 x 60000 pixels) is refused as an unreadable image, naming the file, its size
and the limit, instead of allocating gigabytes (3-7 us per small JPEG, a few percent of its
decode).
Presizing, with antialiased bilinear filtering on the uint8 data: `presize_whole` gives what
the decoded cache keeps, the whole image with its short side resized to `size` and its aspect
kept (``method='crop'``; its centre square is fastai's ``Resize(size)`` crop exactly),
resized to the square ignoring its aspect (``method='squish'``), or with its long side
resized to `size` and its short side padded on both sides by as many pixels as it lacks
(``'pad-zeros'``, ``'pad-reflection'``, ``'pad-border'``: fastai v2's ``ResizeMethod.Pad``
with its ``pad_mode``; `resize_method` gives the name). A square window of side `size` is
then cut from it (`window_origins`): the training set takes it at a random position along
the long side ('crop') or the padded side ('pad': the image lands at a random place in the
square, as fastai's random ``pcts`` on the training set), fresh every epoch (fastai v2's
``Resize(size)`` / v1's ``rand_crop`` on the training set), everything else at the centre.
`presize` is the centre window (validation, predict).

Decoded tensors keep the decoders' HWC storage: ``[3, H, W]`` views with channels-last
strides, which is also the layout of the collated batches.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import textwrap
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from fastcore_ext.checks import check_bool, check_positive_int
from fastcore_ext.files import atomic_write
from fastcore_ext.foundation import L

from .items import get_image_files

try:
    from torchcodec.decoders import decode_image as _torchcodec_decode

    _TORCHCODEC_ERROR = ""
except Exception as e:  # ImportError, or OSError / RuntimeError from its native libraries
    _torchcodec_decode = None
    _TORCHCODEC_ERROR = f"{type(e).__name__}: {e}"

__all__ = [
    "BadImageError",
    "ImageTooLargeError",
    "DecodedBatch",
    "check_image_size",
    "file_image_size",
    "decoded_batch",
    "ImageSource",
    "PAD_MODES",
    "RESIZE_METHODS",
    "image_decoder",
    "image_size",
    "JPEG_REDUCING_GAP",
    "load_image",
    "load_whole",
    "presize",
    "reduced_min_side",
    "presize_whole",
    "resize_images",
    "resize_method",
    "to_rgb",
    "verify_images",
    "wide_to_8bit",
    "window_origins",
]

PAD_MODES = ("zeros", "reflection", "border")
RESIZE_METHODS = ("crop", "squish", *(f"pad-{m}" for m in PAD_MODES))


def resize_method(method: str, pad_mode: str = "reflection") -> str:
    """The presize method of fastai v2's ``Resize(size, method, pad_mode)``: 'crop', 'squish'
    or ``'pad-<pad_mode>'`` (pad_mode matters only for method 'pad', as in fastai)."""
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode: expected one of {PAD_MODES}, got {pad_mode!r}")
    if method == "pad":
        return f"pad-{pad_mode}"
    if method not in ("crop", "squish"):
        raise ValueError(f"method: expected one of ('crop', 'squish', 'pad'), got {method!r}")
    return method


# The fallback decoders warn at every call that torchvision 0.29 deprecates them (in favour of
# TorchCodec); the warning that TorchCodec is missing is the one that matters, once.
warnings.filterwarnings(
    "ignore",
    message="The image decoding and encoding capabilities of TorchVision are deprecated",
    category=DeprecationWarning,
    module=r"torchvision\.io\.image",
)
_fallback_warned = False

ImageSource = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


class BadImageError(ValueError):
    """An image that cannot be decoded. The message names the file."""


class ImageTooLargeError(BadImageError):
    """An image refused before decoding for the pixels its header declares (more than twice
    ``PIL.Image.MAX_IMAGE_PIXELS``): the file may well be a good photo, so
    ``verify_images(delete=True)`` keeps it."""


def image_decoder() -> str:
    """The library that decodes image files in this process: 'torchcodec', or 'torchvision'
    where TorchCodec cannot be imported (Pillow reads what either cannot)."""
    return "torchcodec" if _torchcodec_decode is not None else "torchvision"


def _decode_torchvision(data: bytes) -> torch.Tensor:
    """The fallback: torchvision.io's decoders, warning once per process."""
    global _fallback_warned
    import torchvision.io as tvio

    if not _fallback_warned:
        _fallback_warned = True
        warnings.warn(
            f"TorchCodec cannot be imported ({_TORCHCODEC_ERROR}); images are decoded with "
            "torchvision.io's deprecated decoders instead (the same pixels). Install the "
            "torchcodec version of requirements.txt to use it",
            stacklevel=4,
        )
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return tvio.decode_image(encoded, mode=tvio.ImageReadMode.RGB, apply_exif_orientation=True)


def _decode_bytes(data: bytes) -> torch.Tensor:
    """Encoded JPEG/PNG/WebP/GIF/AVIF -> ``uint8 | uint16 Tensor[3, H, W]`` or ``[N, 3, H, W]``
    (an animation), EXIF orientation applied. RuntimeError or ValueError when it can't."""
    if _torchcodec_decode is None:
        return _decode_torchvision(data)
    return _torchcodec_decode(data, mode="RGB", output_dtype="auto")


_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # Pillow's single-channel >8-bit


def _stretch(v: np.ndarray) -> np.ndarray:
    """Values (float64) -> uint8, their minimum to 0 and their maximum to 255, rounded (a
    constant image: all 0)."""
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        return np.zeros(v.shape, np.uint8)
    return np.rint((v - lo) * (255 / (hi - lo))).astype(np.uint8)


def wide_to_8bit(img: Image.Image) -> Image.Image:
    """A single-channel image of more than 8 bits (Pillow modes I;16*, I, F: 16-bit PNG, TIFF
    and PGM, 32-bit integer and float TIFF) -> mode 'L', the conversion every route to RGB
    takes (a path, a PIL image, bytes, `open_image`); Pillow's ``convert('RGB')`` would clip
    it to 0-255, leaving a 16-bit image white and a float one in [0, 1] black.

    - Integer values all within 0-255 (8-bit data in a wider mode: ``convert('I')`` of a
      grayscale image) are taken as they are, as Pillow's ``convert('L')`` and fastai read
      them (as 16-bit they would be black).
    - I;16 (16-bit): the high byte, ``v >> 8``, as a 16-bit PNG decoded from its path.
    - I (32-bit integer, Pillow's mode for 16-bit PGM/PPM and 32-bit TIFF): taken as 16-bit
      (``v >> 8``) when its values lie in [0, 65535], which is where 16-bit data opened as 'I'
      lies; any other range (negative values, or above 65535) is stretched from its minimum
      to its maximum, the only scale left for an image of unknown depth.
    - F (float): ``round(v * 255)`` when its values lie in [0, 1] (the float convention of
      this library, `Image.data`, and of image libraries that save float images), as they are
      (rounded) in [0, 255] when some exceeds 1 (8-bit data as floats, as Pillow and fastai
      read them); any other range (physical units, HDR, negative values) is stretched from
      its minimum to its maximum, so the picture shows instead of a clipped black or white
      one (its absolute level is lost: min-max per image). NaN and infinite values count as 0.
    Any other mode is returned as it is."""
    if img.mode not in _WIDE_MODES:
        return img
    arr = np.asarray(img)
    eight_bit = bool(arr.size) and 0 <= arr.min() and arr.max() <= 255
    if img.mode.startswith("I") and eight_bit:
        out = arr.astype(np.uint8)
    elif img.mode.startswith("I;16"):
        out = (arr.astype(np.uint16) >> 8).astype(np.uint8)
    elif img.mode == "I":
        if arr.size and 0 <= arr.min() and arr.max() <= 65535:
            out = (arr >> 8).astype(np.uint8)
        else:
            out = _stretch(arr.astype(np.float64)) if arr.size else arr.astype(np.uint8)
    else:
        v = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if not v.size or (0 <= v.min() and v.max() <= 1):
            out = np.rint(v * 255).astype(np.uint8)
        elif 0 <= v.min() and v.max() <= 255:
            out = np.rint(v).astype(np.uint8)
        else:
            out = _stretch(v)
    return Image.fromarray(out)  # uint8 [H, W]: mode L


def _pil_to_rgb(img: Image.Image) -> torch.Tensor:
    img = wide_to_8bit(ImageOps.exif_transpose(img))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)  # (H, W, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman or
# arithmetic): the segment that holds the image's height and width
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(d: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(d):
        if d[i] != 0xFF:
            return None
        m = d[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
        elif m == 0x01 or 0xD0 <= m <= 0xD8:  # markers without a length
            i += 2
        elif m in _JPEG_SOF:
            return int.from_bytes(d[i + 7 : i + 9], "big"), int.from_bytes(d[i + 5 : i + 7], "big")
        elif m in (0xD9, 0xDA):  # end of image, or scan data, before any frame header
            return None
        else:
            i += 2 + int.from_bytes(d[i + 2 : i + 4], "big")
    return None


def _webp_size(d: bytes) -> tuple[int, int] | None:
    chunk = d[12:16]
    if chunk == b"VP8X" and len(d) >= 30:  # extended: the canvas
        return int.from_bytes(d[24:27], "little") + 1, int.from_bytes(d[27:30], "little") + 1
    if chunk == b"VP8L" and len(d) >= 25 and d[20] == 0x2F:  # lossless
        bits = int.from_bytes(d[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(d) >= 30 and d[23:26] == b"\x9d\x01\x2a":  # lossy
        w, h = int.from_bytes(d[26:28], "little"), int.from_bytes(d[28:30], "little")
        return w & 0x3FFF, h & 0x3FFF
    return None


def _bmp_size(d: bytes) -> tuple[int, int] | None:
    if len(d) < 26:
        return None
    if int.from_bytes(d[14:18], "little") == 12:  # OS/2 core header: 16-bit sizes
        return int.from_bytes(d[18:20], "little"), int.from_bytes(d[20:22], "little")
    w = int.from_bytes(d[18:22], "little", signed=True)
    h = int.from_bytes(d[22:26], "little", signed=True)  # negative: stored top-down
    return abs(w), abs(h)


def image_size(data: bytes, path: str | os.PathLike = "<bytes>") -> tuple[int, int] | None:
    """(width, height) that the header of the encoded image `data` declares, read without
    decoding any pixel: JPEG, PNG, GIF (the logical screen), WebP and BMP are parsed here (a
    few microseconds); any other format through Pillow's header reader (``PIL.Image.open``
    reads no pixels). None when no header can be read (the decoder then names the file as
    unreadable). Pillow refuses a header of more than twice ``PIL.Image.MAX_IMAGE_PIXELS``
    itself (DecompressionBombError): BadImageError naming `path`."""
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:2] == b"BM":
        return _bmp_size(data)
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(
            f"{path}: refused before decoding ({e}); raise PIL.Image.MAX_IMAGE_PIXELS (or set "
            "it to None) to read it"
        ) from e
    except Exception:  # not an image Pillow knows: the decoder decides
        return None


# the bytes read from the start of a file for its size, then, when the header lies further
# (a JPEG whose EXIF segment comes before its frame header), the most read
_HEADER_BYTES = (4096, 1 << 20)


def file_image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) that the image file's header declares (`image_size` of its first
    bytes, no pixel decoded), or None when it cannot be read (the loaders then name the file
    as unreadable)."""
    try:
        with open(path, "rb") as f:
            data = f.read(_HEADER_BYTES[0])
            size = image_size(data, path)
            if size is None:
                size = image_size(data + f.read(_HEADER_BYTES[1] - len(data)), path)
    except (OSError, BadImageError):
        return None
    return size


def check_image_size(data: bytes, path: str | os.PathLike) -> None:
    """Check, before decoding, the pixels an image's header declares against Pillow's
    ``PIL.Image.MAX_IMAGE_PIXELS`` (read at each call; None: no limit) as Pillow does: above
    the limit a DecompressionBombWarning naming `path`, and the image is decoded; above twice
    the limit it is refused (`ImageTooLargeError`, naming `path`, the size and the limit), as
    an unreadable image is, instead of allocating gigabytes for a decompression bomb (a 10 MB
    PNG can declare 60000 x 60000 pixels, 10.8 GB decoded)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None:
        return
    size = image_size(data, path)
    if size is None or size[0] * size[1] <= limit:
        return
    w, h = size
    if w * h <= 2 * limit:
        warnings.warn(
            f"{path}: its header declares {w} x {h} = {w * h:,} pixels, more than "
            f"PIL.Image.MAX_IMAGE_PIXELS ({limit:,}); decoded, as Pillow does up to twice "
            "the limit",
            Image.DecompressionBombWarning,
            stacklevel=2,
        )
        return
    raise ImageTooLargeError(
        f"{path}: its header declares {w} x {h} = {w * h:,} pixels, more than twice "
        f"PIL.Image.MAX_IMAGE_PIXELS ({limit:,}), the limit against decompression bombs "
        "(Pillow refuses it too); it was not decoded. To read it, raise the limit "
        f"(PIL.Image.MAX_IMAGE_PIXELS = {w * h}, or None for none) before building the data or "
        "predicting"
    )


# A JPEG file whose short side holds at least twice `JPEG_REDUCING_GAP` times the presize is
# decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling, through Pillow's ``draft``):
# the largest of these that keeps its short side at least JPEG_REDUCING_GAP times the presize,
# which antialiased resampling then brings down to the presize. Pillow's ``thumbnail`` does
# the same with its default ``reducing_gap=2.0``. Read at each decode; None decodes every
# file whole, as fastai does (set it before building the data: loader workers copy it).
JPEG_REDUCING_GAP: float | None = 2.0


@contextlib.contextmanager
def jpeg_reducing_gap(gap: float | None) -> Iterator[None]:
    """`JPEG_REDUCING_GAP` set to `gap` inside the block, put back after it."""
    global JPEG_REDUCING_GAP
    before, JPEG_REDUCING_GAP = JPEG_REDUCING_GAP, gap
    try:
        yield
    finally:
        JPEG_REDUCING_GAP = before


def reduced_min_side(size: int) -> int | None:
    """The short side a JPEG decoded for presize `size` keeps at least (`JPEG_REDUCING_GAP`
    times `size`, rounded up), or None where JPEG_REDUCING_GAP is None (decode whole)."""
    gap = JPEG_REDUCING_GAP
    if gap is None:
        return None
    if isinstance(gap, bool) or not isinstance(gap, int | float) or not gap >= 1:
        raise ValueError(
            f"fastcore_ext.data.images.JPEG_REDUCING_GAP: expected a number >= 1 or None, got "
            f"{gap!r}"
        )
    return math.ceil(gap * size)


def _decode_jpeg_reduced(data: bytes, min_side: int) -> torch.Tensor | None:
    """The JPEG `data` decoded at the smallest of 1/2, 1/4, 1/8 of its size whose short side
    is at least `min_side` (RGB, EXIF orientation applied); None where no such reduction
    exists (a short side under ``2 * min_side``), the file is not a JPEG, or Pillow cannot
    read it (the whole decode then names what is wrong)."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    size = _jpeg_size(data)
    if size is None or min(size) < 2 * min_side:
        return None
    try:
        with Image.open(io.BytesIO(data)) as pil:
            if pil.format != "JPEG" or pil.draft(None, (min_side, min_side)) is None:
                return None
            return _pil_to_rgb(pil)
    except Exception:  # Pillow raises many types for corrupt data
        return None


# "decode_rows, /__w/torchcodec/.../DecodeJpeg.cpp:287, ": where in the decoder's C++ source
# its error was raised, a path of the machine that built the wheel, of no use to a user
_SOURCE_PLACE = re.compile(r"(\w+, )?/\S+\.(?:cpp|cc|c|h|cu):\d+,? ?")


def _decoded_by_pillow(data: bytes) -> bool:
    """GIF and AVIF files, which Pillow decodes for every route: torchcodec gives a
    transparent pixel a GIF's background colour or an AVIF's black, where Pillow's
    convert('RGB') (a PIL image or bytes passed in, and fastai) keeps the colour under it."""
    return data[:4] == b"GIF8" or data[4:12] in (b"ftypavif", b"ftypavis")


def _decode_file(path: Path, min_side: int | None = None) -> torch.Tensor:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadImageError(f"{path}: cannot read file ({e})") from e
    if not data:
        raise BadImageError(f"{path}: cannot decode image (the file is empty: 0 bytes)")
    check_image_size(data, path)
    if min_side is not None:
        img = _decode_jpeg_reduced(data, min_side)
        if img is not None:
            return img
    if _decoded_by_pillow(data):
        try:
            with Image.open(io.BytesIO(data)) as pil:
                return _pil_to_rgb(pil)
        except Exception as e:  # Pillow raises many types for corrupt data
            raise BadImageError(f"{path}: cannot decode image (Pillow: {e})") from e
    try:
        img = _decode_bytes(data)
    except (RuntimeError, ValueError) as dec_err:
        try:
            with Image.open(path) as pil:
                pil.load()
                return _pil_to_rgb(pil)
        except Exception as pil_err:  # Pillow raises many types for corrupt data
            dec_msg = _SOURCE_PLACE.sub("", (str(dec_err).strip().splitlines() or [""])[-1])
            # torchcodec's advice to try decode_jpeg() on a valid image: not this case
            dec_msg = textwrap.shorten(dec_msg.split(" If you know")[0], 200, placeholder="...")
            raise BadImageError(
                f"{path}: cannot decode image ({image_decoder()}: {dec_msg}; Pillow: {pil_err})"
            ) from pil_err
    if img.ndim == 4:  # an animated GIF or WebP: its first frame, as Pillow
        img = img[0]
    return _to_8bit(img)  # a 16-bit PNG: its high byte


_ARRAY_DTYPES = tuple(
    np.dtype(d) for d in (np.uint8, np.uint16, np.bool_, np.float16, np.float32, np.float64)
)
_TENSOR_INTS = (torch.uint8, torch.uint16, torch.bool)


def _to_8bit(t: torch.Tensor) -> torch.Tensor:
    """uint16 -> its high byte (a 16-bit image, as `wide_to_8bit` reads a 16-bit file), or
    its values where all lie within 0-255 (8-bit data, as wide_to_8bit takes it); bool
    -> 0 / 255 (Pillow's mode '1' as an array); anything else as it is."""
    if t.dtype == torch.uint16:
        wide = t.to(torch.int32)
        if wide.numel() and int(wide.max()) <= 255:
            return wide.to(torch.uint8)
        return (wide >> 8).to(torch.uint8)
    if t.dtype == torch.bool:
        return t.to(torch.uint8) * 255
    return t


def to_rgb(item: ImageSource, min_side: int | None = None) -> torch.Tensor:
    """Any image source -> ``uint8 Tensor[3, H, W]`` (RGB, EXIF orientation applied).

    item: a path (str or PathLike), a PIL image, a numpy array ``[H, W]`` or ``[H, W, C]``
    (or an object numpy turns into one, such as `open_image`'s Image), or a tensor ``[H, W]``,
    ``[C, H, W]`` or ``[H, W, C]`` (channels-first when both readings fit), C in (1, 3, 4).
    Arrays and tensors hold uint8 values, uint16 (a 16-bit image: its high byte, as a 16-bit
    file), bool (0 or 255), or float values in [0, 1] (`Image.data`, or uint8 / 255), which
    become ``round(x * 255)``. min_side: a JPEG file may be decoded smaller, by
    a factor 2, 4 or 8, as long as its short side stays at least min_side (`load_whole`);
    None (default): every file whole.
    """
    if isinstance(item, str | os.PathLike):
        return _decode_file(Path(item), min_side)
    if isinstance(item, Image.Image):
        try:  # Pillow reads the pixels of an opened file now
            return _pil_to_rgb(item)
        except OSError as e:  # "image file is truncated", a broken stream
            name = getattr(item, "filename", "") or "the PIL image"
            raise BadImageError(f"item: cannot read {name!r} ({e})") from e
    if hasattr(item, "__array__") and not isinstance(item, np.ndarray | torch.Tensor):
        item = np.asarray(item)
    if isinstance(item, np.ndarray):
        if item.dtype not in _ARRAY_DTYPES or item.ndim not in (2, 3):
            raise TypeError(
                f"item: expected a uint8, uint16, bool (or float in [0, 1]) array [H, W] or "
                f"[H, W, C], got {item.dtype} with shape {item.shape}"
            )
        t = _to_8bit(torch.from_numpy(np.array(item)))  # a copy: the array may be read-only
        return _pixels(t[None] if t.ndim == 2 else t.permute(2, 0, 1), item.shape)
    if isinstance(item, torch.Tensor):
        if not (item.dtype in _TENSOR_INTS or item.is_floating_point()) or item.ndim not in (2, 3):
            raise TypeError(
                f"item: expected a uint8, uint16, bool (or float in [0, 1]) tensor [H, W], "
                f"[C, H, W] or [H, W, C], got {item.dtype} with shape {tuple(item.shape)}"
            )
        t = _to_8bit(item[None] if item.ndim == 2 else item)
        if t.shape[0] not in (1, 3, 4) and t.shape[-1] in (1, 3, 4):
            t = t.permute(2, 0, 1)  # [H, W, C]
        return _pixels(t.cpu(), tuple(item.shape))
    raise TypeError(
        "item: expected a file path, PIL image, or a uint8, uint16, bool (or float in [0, 1]) "
        f"numpy array or tensor, got {type(item).__name__}"
    )


def _pixels(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """uint8 or float (values in [0, 1]) Tensor[C, H, W] -> ``uint8 Tensor[3, H, W]``: gray
    expanded, alpha dropped, floats as round(x * 255). Errors name `shape`, the item's."""
    c = t.shape[0]
    if c not in (1, 3, 4):
        raise TypeError(f"item: expected 1, 3 or 4 channels, got {c} (shape {shape})")
    if t.is_floating_point():
        if t.numel() == 0:
            raise ValueError(f"item: expected an image of at least 1x1 pixel, got shape {shape}")
        lo, hi = (float(v) for v in torch.aminmax(t.float()))
        if not 0 <= lo <= hi <= 1:
            raise ValueError(
                f"item: a float image should hold values in [0, 1] (as Image.data, or uint8 "
                f"/ 255), got values in [{lo:.4g}, {hi:.4g}] (shape {shape}); pass the image "
                f"before normalization"
            )
        t = (t.float() * 255).round_().clamp_(0, 255).to(torch.uint8)
    return t.expand(3, -1, -1) if c == 1 else t[:3]


MAX_ASPECT = 8  # presize_whole keeps at most this many short sides of an image's long side


def presize_whole(img: torch.Tensor, size: int, method: str = "crop") -> torch.Tensor:
    """``uint8 Tensor[3, H, W]`` -> ``uint8 Tensor[3, h, w]``, what the decoded cache keeps.

    crop (`_crop_whole`): the short side resized to `size`, the long side to as many pixels
    as the image holds on the same pixel grid, equally many on each side of the centre
    window, so that the centre window (validation, predict) is fastai's ``Resize(size)``
    exactly: the square crop at the centre of the original, resized; at most MAX_ASPECT times
    `size` long (a 30000 x 1 banner would otherwise become 280 x 8.4 million pixels:
    gigabytes in memory and in the cache), so training windows reach no further out there.
    squish: the whole image resized to ``size x size``. pad-<mode>: the long side resized to
    `size`, the short side to ``short * size / long`` rounded (at least 1 pixel), then padded
    on both sides by ``pad = size - short`` pixels (`_pad_canvas`) with zeros, the reflection
    of the image (numpy's 'reflect': the edge pixel not repeated) or its edge pixels
    (border): ``[3, size, short + 2 * pad]`` (or its transpose), whose windows of side `size`
    hold the image at every place from one edge of the square to the other (`window_origins`:
    the centre window pads ``pad // 2`` pixels before it, the smaller half first, as fastai's
    centred ``crop_pad``). fastai pads the original image and resizes the padded square;
    resizing first keeps the padding exact (zero rows stay 0) and differs only in the
    resampling of the edge. Antialiased bilinear; an image already of that shape is returned
    as is (uint8 or float, any device).
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"method: expected one of {RESIZE_METHODS}, got {method!r}")
    _, h, w = img.shape
    if method == "crop":
        return _crop_whole(img, size)
    if method == "squish":
        hw = (size, size)
    elif h <= w:
        hw = (max(1, (2 * h * size + w) // (2 * w)), size)
    else:
        hw = (size, max(1, (2 * w * size + h) // (2 * h)))
    if img.shape[1:] != hw:
        img = F.interpolate(img[None], size=hw, mode="bilinear", antialias=True)[0]
    if method.startswith("pad-"):
        return _pad_canvas(img, size, method[len("pad-") :])
    return img


def _resample(region: Tensor, hw: tuple[int, int], scale: float) -> Tensor:
    """``[3, a, b]`` -> ``[3, *hw]``: antialiased bilinear on the grid of `scale` (output
    pixels per input pixel) along both axes, from the region's top-left corner: output pixel
    j samples ``(j + 0.5) / scale`` input pixels in, whatever `hw` (F.interpolate would take
    the scale from the sizes). A region already of that shape at scale 1 is returned as is."""
    if scale == 1 and tuple(region.shape[1:]) == hw:
        return region
    return torch._C._nn._upsample_bilinear2d_aa(region[None], list(hw), False, scale, scale)[0]


def _crop_whole(img: Tensor, size: int) -> Tensor:
    """presize_whole's 'crop'. fastai's ``Resize(size)`` (validation) takes the centre square
    crop of side ``cp = int(short / size * size)`` at ``int((long - cp) / 2)`` along the long
    side (0 along the short one) and resizes it to `size`: the centre window here is that
    resize. The sides continue its pixel grid outwards (the same scale, ``cp / size``
    original pixels per pixel): `c` pixels on each side, as many as the shorter side of the
    crop holds (and MAX_ASPECT allows), each resampled from its own part of the original
    (the filter does not reach across the crop's edges, as in fastai's crop). The window
    origin of the centre, `c` (`window_origins`: half the even slack 2c), is then exactly
    the crop. Rows and columns are filtered in Pillow's order whatever the orientation
    (uint8 rounds between the passes)."""
    _, h, w = img.shape
    axis = 2 if w >= h else 1  # the long side's
    short, long = min(h, w), max(h, w)
    cp = int(short / size * size)  # fastai's crop side: short, or short - 1 when rounded down
    off = int(0.5 * (long - cp))
    scale = size / cp
    room = min(off, long - off - cp)  # original pixels beside the crop, on its shorter side
    c = min(int(room * scale + 1e-9), (MAX_ASPECT - 1) * size // 2)
    reach = min(room, math.ceil((c + 1) / scale) + 1)  # what c pixels' filters read

    def part(start: int, stop: int) -> Tensor:
        """Pixels start:stop of the long side (the short side's first cp)."""
        return img[:, :cp, start:stop] if axis == 2 else img[:, start:stop, :cp]

    centre = _resample(part(off, off + cp), (size, size), scale)
    if not c:
        return centre
    hw = (size, c) if axis == 2 else (c, size)
    left = _resample(part(off - reach, off).flip(axis), hw, scale).flip(axis)  # from the crop
    right = _resample(part(off + cp, off + cp + reach), hw, scale)
    return torch.cat([left, centre, right], dim=axis)


def _pad_index(n: int, pad: int, device: torch.device, mode: str) -> tuple[Tensor, Tensor]:
    """(source index, inside mask) along one axis: `n` pixels with `pad` more on each side,
    the padding read as `mode` says (zeros: masked out)."""
    src = torch.arange(n + 2 * pad, device=device) - pad
    inside = (src >= 0) & (src < n)
    if mode == "reflection" and n > 1:
        period = 2 * (n - 1)
        m = src.remainder(period)
        return torch.where(m < n, m, period - m), inside
    return src.clamp(0, n - 1), inside


def _pad_canvas(img: Tensor, size: int, mode: str) -> Tensor:
    """``[3, h, w]`` with max(h, w) == size -> its short side padded by ``size - short`` on
    each side as `mode` says: ``[3, size, 2 * size - w]`` or ``[3, 2 * size - h, size]``."""
    _, h, w = img.shape
    rows, row_in = _pad_index(h, size - h, img.device, mode)
    cols, col_in = _pad_index(w, size - w, img.device, mode)
    out = img[:, rows][:, :, cols]
    if mode == "zeros":
        out = out * (row_in[:, None] & col_in[None, :]).to(out.dtype)
    return out


def window_origins(shapes: np.ndarray, size: int, u: np.ndarray | None = None) -> np.ndarray:
    """Top-left corners (int64 [B, 2], (top, left)) of the square windows of side `size` cut
    from presized images of `shapes` (int [B, 2], (h, w), each at least `size`).

    u None: the centre window, ``ceil(slack / 2)`` along each axis where slack = ``h - size``
    or ``w - size`` (a 'crop' image's slack is even: its middle; a 'pad' canvas of slack p
    then has ``p // 2`` pixels of padding before the image, the smaller half first). u
    (float [B] in [0, 1)): the random window, ``floor(u * (slack + 1))`` along each axis:
    every position from 0 to slack alike likely; the short side (slack 0) gives 0, and a
    square image always gives (0, 0).
    """
    slack = np.asarray(shapes, dtype=np.int64).reshape(-1, 2) - size
    if u is None:
        return (slack + 1) // 2
    u = np.asarray(u, dtype=np.float64).reshape(-1, 1)
    return np.minimum(np.floor(u * (slack + 1)).astype(np.int64), slack)


class DecodedBatch(NamedTuple):
    """What decoding a batch gives (`loader.decode_readable`, `JpegBatchDecoder.decode`): the
    windows of the readable images, which indices those are and which were skipped, and (with
    ``whole=True``) the whole presized images packed for the cache (`DecodedCache.write`)."""

    x: torch.Tensor  # uint8 [B', P, P, 3]
    kept: list[int]  # [B']
    bad: list[int]
    shapes: torch.Tensor | None  # int64 [B', 2]: (h, w) of each whole presized image
    packed: torch.Tensor | None  # uint8, flat: their [h, w, 3] bytes one after the other


def decoded_batch(
    images: Sequence[torch.Tensor],
    kept: list[int],
    bad: list[int],
    size: int,
    u: np.ndarray | None = None,
    whole: bool = False,
    device: torch.device | None = None,
) -> DecodedBatch:
    """Whole presized images ``uint8 [h, w, 3]`` (those of the items `kept`) -> their
    `DecodedBatch`: the square windows of side `size` that `window_origins` places (u: float
    [len(kept)], or None: centred), cut into ``uint8 [B', size, size, 3]`` on `device`
    (default: the CPU); whole=True also packs the whole images on the CPU for the cache."""
    shapes = np.array([img.shape[:2] for img in images], dtype=np.int64).reshape(-1, 2)
    x = torch.empty((len(images), size, size, 3), dtype=torch.uint8, device=device)
    for k, (top, left) in enumerate(window_origins(shapes, size, u).tolist()):
        x[k].copy_(images[k][top : top + size, left : left + size], non_blocking=True)
    if not whole:
        return DecodedBatch(x, kept, bad, None, None)
    flat = [img.reshape(-1).cpu() for img in images]
    packed = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.uint8)
    return DecodedBatch(x, kept, bad, torch.from_numpy(shapes), packed)


def _centre_window(img: torch.Tensor, size: int) -> torch.Tensor:
    (top, left), *_ = window_origins(np.array([img.shape[1:]]), size)
    return img[:, top : top + size, left : left + size]


def presize(img: torch.Tensor, size: int, method: str = "crop") -> torch.Tensor:
    """``uint8 Tensor[3, H, W]`` -> ``uint8 Tensor[3, size, size]``: the centre window of
    `presize_whole` (crop: short side resized to `size`, the centre square of the long side;
    squish: the whole image resized to the square). What validation and predict see."""
    return _centre_window(presize_whole(img, size, method), size)


def load_whole(
    item: ImageSource, size: int, method: str = "crop", reduced: bool = True
) -> torch.Tensor:
    """Decode and `presize_whole`: what every pass over image files (training, validation,
    the cache, predict) starts from. With `reduced`, a large JPEG file is decoded reduced
    (`to_rgb`'s min_side, `JPEG_REDUCING_GAP`): for a 6 MP photo 1.9x faster presized to
    160, 1.1-1.6x to 460 (bench/README.md), at a difference from the whole decode's presize
    near rounding. The loaders reduce for the training set only (`JPEG_REDUCING_GAP` is
    None for the others)."""
    return presize_whole(to_rgb(item, reduced_min_side(size) if reduced else None), size, method)


def load_image(item: ImageSource, size: int, method: str = "crop") -> torch.Tensor:
    """Decode and presize: ``uint8 Tensor[3, size, size]``, the centre window of
    `load_whole` of the whole decoded image (what predict sees, whatever the item: a path,
    bytes, a PIL image or an array of the same photo give the same pixels)."""
    return _centre_window(load_whole(item, size, method, reduced=False), size)


def _bad_or_none(path: Path) -> tuple[Path, str, bool] | None:
    """None for an image that decodes; else (path, the error, whether the file is broken:
    False for one refused only for the size its header declares)."""
    try:
        with warnings.catch_warnings():  # decoded: not what verify_images reports
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            _decode_file(path)
    except BadImageError as e:
        return path, str(e), not isinstance(e, ImageTooLargeError)
    return None


def _find_bad(
    files: Iterable[str | os.PathLike], num_workers: int | None
) -> list[tuple[Path, str, bool]]:
    paths = [Path(f) for f in files]
    workers = num_workers if num_workers else max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(_bad_or_none, paths, chunksize=16)
        return [b for b in found if b is not None]


def find_bad_images(
    files: Iterable[str | os.PathLike], num_workers: int | None = None
) -> list[Path]:
    """Files among `files` that cannot be decoded (a full decode of each, in threads)."""
    return [p for p, _, _ in _find_bad(files, num_workers)]


def verify_images(
    path: str | os.PathLike | Iterable[str | os.PathLike],
    delete: bool = False,
    max_workers: int = 4,
    recurse: bool = True,
    max_size: int | None = None,
    dest: str | os.PathLike = ".",
) -> L:
    """Find the images that cannot be decoded, under a folder or in a list of files (fastai
    v1's `verify_images(path, delete=..., max_workers=..., max_size=..., dest=...)`).

    Each file is decoded completely (a truncated JPEG is caught, unlike with a header check),
    in `max_workers` threads. Like fastai v1 it prints the error of each unreadable file and,
    with `delete=True`, removes it; not a file refused only for the size its header declares
    (more than twice ``PIL.Image.MAX_IMAGE_PIXELS``: `check_image_size`), which is listed and
    kept. With `max_size` (lesson 2's `max_size=500`), every readable
    image whose longer side exceeds it is resized (aspect kept, EXIF orientation applied,
    bilinear) and written in its own format to ``<its folder>/<dest>/<its name>``: by default
    over itself, through a temporary file renamed into place, so an interruption leaves the
    old file or the new one, never half of one. Returns the unreadable paths, sorted, as an
    `L` (as fastai v2 does: fastbook's `failed.map(Path.unlink)`; v1 returned None).
    Differs from v1: `delete` defaults to False (v1: True, which deletes a user's files
    unasked), `recurse` to True (v1: False, which checks nothing in a folder of class
    folders), and `dest` is taken per file's folder (v1: under `path`, which would flatten
    class folders); v1's n_channels and ext are not offered. `delete` and `recurse` must be
    bools (TypeError otherwise: a string 'False' is not taken as true).
    """
    check_bool("delete", delete)
    check_bool("recurse", recurse)
    check_positive_int("max_workers", max_workers)
    if max_size is not None and (
        isinstance(max_size, bool) or not isinstance(max_size, Integral) or max_size < 1
    ):
        raise ValueError(f"max_size: expected a positive int or None, got {max_size!r}")
    max_workers = int(max_workers)
    max_size = None if max_size is None else int(max_size)
    if not isinstance(dest, str | os.PathLike) or Path(dest).is_absolute():
        raise ValueError(f"dest: expected a folder relative to each image's folder, got {dest!r}")
    if isinstance(path, str | os.PathLike):
        files = get_image_files(path, recurse=recurse)
    else:
        files = [Path(f) for f in path]
    bad = sorted(_find_bad(files, max_workers))
    for p, err, broken in bad:
        if delete and not broken:
            err += " (kept: the file may be a good photo, refused only for its size)"
        print(err)
        if delete and broken:
            p.unlink(missing_ok=True)
    if max_size is not None:
        unreadable = {p for p, _, _ in bad}
        readable = [f for f in files if f not in unreadable]
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            list(pool.map(lambda f: _shrink(f, max_size, Path(dest)), readable))
    return L(p for p, _, _ in bad)


def resize_images(
    path: str | os.PathLike,
    max_workers: int = 2,
    max_size: int | None = None,
    recurse: bool = False,
    dest: str | os.PathLike = ".",
    n_channels: int = 3,
    ext: str | None = None,
    img_format: str | None = None,
    resample: int = Image.BILINEAR,
    resume: bool | None = None,
) -> None:
    """fastai v2's ``resize_images(path, max_size=400, dest=path)`` (the course's "Is it a
    bird?" notebook): each image file under `path` (its sub-folders too with `recurse`) is
    written to ``dest/<its path relative to path>`` (dest=path: in place), resized so that
    its longer side is max_size when it is longer (aspect kept, `resample`), converted to RGB
    when n_channels is 3 and it is not (grayscale, RGBA, palette), else copied as it is
    (nothing is done to a file already in place). A file is turned upright by its EXIF
    orientation before it is resized (this library's loaders apply it when they open a
    file; fastai's resize drops the tag and keeps the pixels as stored). ext: a new
    suffix ('.jpg'); img_format: PIL's format name (default: from the suffix, else the
    file's own); resume: leave a file whose destination exists. Each file is written
    through a temporary file renamed into place: an interruption leaves the old file or
    the new one. Unreadable files are passed over (verify_images names them)."""
    check_bool("recurse", recurse)
    max_workers = check_positive_int("max_workers", max_workers)
    if max_size is not None:
        max_size = check_positive_int("max_size", max_size)
    if n_channels not in (1, 3):
        raise ValueError(f"n_channels: expected 1 or 3, got {n_channels!r}")
    root, out = Path(path).expanduser(), Path(dest).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"path: no such folder: {root}")
    jobs = []
    for f in get_image_files(root, recurse=recurse):
        target = out / f.relative_to(root)
        target = target.with_suffix(ext) if ext is not None else target
        if not (resume and target.exists()):
            jobs.append((f, target))

    def one(job: tuple[Path, Path]) -> None:
        src, target = job
        try:
            with Image.open(src) as img:
                fmt = img_format or Image.registered_extensions().get(target.suffix.lower())
                fmt = fmt or img.format
                too_big = max_size is not None and max(img.size) > max_size
                wrong = (img.mode not in ("L", "1")) if n_channels == 1 else img.mode != "RGB"
                if not (too_big or wrong or fmt != img.format):
                    if src.resolve() != target.resolve():
                        with atomic_write(target, mode_of=src) as f:
                            f.write(src.read_bytes())
                    return
                new = ImageOps.exif_transpose(img)
        except (OSError, ValueError, Image.DecompressionBombError):
            return  # unreadable: left as it is, as fastai's verify_image skips it
        if max_size is not None:
            new = _longer_side_within(new, max_size, resample, int)  # fastai's truncation
        _save_atomically(new.convert("RGB" if n_channels == 3 else "L"), target, fmt, src)

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        list(pool.map(one, jobs))


def _shrink(path: Path, max_size: int, dest: Path) -> None:
    """`verify_images(max_size=...)` for one readable file: resized into `path.parent / dest`
    when its longer side exceeds max_size (atomically: files.atomic_write)."""
    with Image.open(path) as img:
        fmt = img.format
        if max(img.size) <= max_size and dest == Path("."):
            return  # from the header alone: a quarter turn (EXIF) keeps the longer side
        shrunk = ImageOps.exif_transpose(img)  # a decoded copy, upright
    shrunk = _longer_side_within(shrunk, max_size, Image.BILINEAR, round)
    if fmt == "JPEG" and shrunk.mode not in ("RGB", "L", "CMYK"):
        shrunk = shrunk.convert("RGB")
    _save_atomically(shrunk, path.parent / dest / path.name, fmt, path)


def _longer_side_within(
    img: Image.Image, max_size: int, resample: int, to_int: Callable[[float], int]
) -> Image.Image:
    """`img` resized (aspect kept, `resample`) so that its longer side is max_size when it
    is longer, each side `to_int` of its scaled length (at least 1); else `img` itself."""
    w, h = img.size
    if max(w, h) <= max_size:
        return img
    scale = max_size / max(w, h)
    return img.resize((max(1, to_int(w * scale)), max(1, to_int(h * scale))), resample)


def _save_atomically(img: Image.Image, target: Path, fmt: str | None, mode_of: Path) -> None:
    """`img` written to `target` in PIL's format `fmt` (JPEG at quality 95) through a
    temporary file renamed into place (files.atomic_write), with `mode_of`'s permissions."""
    with atomic_write(target, mode_of=mode_of) as f:
        img.save(f, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
