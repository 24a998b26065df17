"""JPEG decoding on the GPU: batches of JPEG files decoded by nvJPEG through TorchCodec.

On a GPU the first epoch is bound by decoding (later epochs read the decoded cache). What
TorchCodec 0.17 offers for it: ``torchcodec.decoders.decode_jpeg(sources, device="cuda")``,
where `sources` may be a list of encoded JPEGs (bytes on the CPU), decoded in one nvJPEG call
into ``uint8 Tensor[3, H, W]`` on the device, EXIF orientation applied (the same function
decodes on the CPU with libjpeg-turbo). Its other image decoders (PNG, WebP, GIF, AVIF,
HEIC) run on the CPU only.

A batch travels like this::

    read_batch (CPU: a DataLoader worker, or this process)
      each file read; a complete JPEG (SOI first, EOI last) stays encoded, anything else is
      decoded and presized whole on the CPU as the workers do (PNG, WebP, ..., and a truncated
      JPEG, found unreadable there)
    JpegBatchDecoder.decode (this process)
      the encoded JPEGs in one call on the device; a call the decoder rejects is retried file
      by file, and a file it still rejects is decoded on the CPU (an unreadable one is then
      reported as such); each image presized whole on the device (`presize_whole` in
      float32, rounded: within 1 of the CPU's uint8 resize); the windows of the batch's draws
      (`window_origins`) cut into ``uint8 Tensor[B', P, P, 3]`` on the device, in the
      batch's order, without the unreadable files (`DecodedBatch`)

`resolve_decode_device` picks the device for a bunch (``decode_device=None|'cpu'|'cuda'``).
The function that decodes a list of JPEGs is a parameter of `JpegBatchDecoder` (default
TorchCodec's), so everything but nvJPEG itself is tested on the CPU.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .images import (
    BadImageError,
    DecodedBatch,
    check_image_size,
    decoded_batch,
    load_whole,
    presize_whole,
)

__all__ = [
    "DecodeJpegs",
    "EncodedBatch",
    "JpegBatchDecoder",
    "cuda_jpeg_support",
    "read_batch",
    "resolve_decode_device",
]

DecodeJpegs = Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]
"""(encoded JPEGs: uint8 [n_bytes] each, on the CPU; device) -> ``uint8 [3, H, W]`` each on
the device. Raises (RuntimeError or ValueError) when it cannot decode one of them."""


def torchcodec_decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """TorchCodec's batched JPEG decoder (nvJPEG on a CUDA device), RGB."""
    from torchcodec.decoders import decode_jpeg

    return decode_jpeg(data, mode="RGB", device=device)


def _with_index(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


@functools.cache
def _probe_jpeg() -> torch.Tensor:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 90)).save(buf, format="JPEG")
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


@functools.cache
def cuda_jpeg_support(device: torch.device | None = None) -> str:
    """'' when TorchCodec decodes JPEG on the CUDA `device` (default: the current one) here,
    else why not (one sentence). Decodes a small JPEG there once per device and process."""
    device = torch.device("cuda") if device is None else device
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception as e:  # ImportError, or OSError / RuntimeError from its native libraries
        return f"torchcodec cannot be imported ({type(e).__name__}: {e})"
    try:
        (img,) = torchcodec_decode_jpegs([_probe_jpeg()], _with_index(device))
    except Exception as e:  # a build without CUDA, no nvJPEG, an old torchcodec, ...
        msg = (str(e).strip().splitlines() or [""])[-1][:200]
        return f"torchcodec's decode_jpeg failed on {device} ({type(e).__name__}: {msg})"
    if img.device.type != "cuda" or tuple(img.shape) != (3, 8, 16):
        return f"torchcodec's decode_jpeg gave {tuple(img.shape)} on {img.device}"
    return ""


def resolve_decode_device(
    decode_device: torch.device | str | None,
    device: torch.device,
    support: Callable[[torch.device], str] = cuda_jpeg_support,
) -> torch.device:
    """Where a bunch whose batches go to `device` decodes its JPEG files.

    decode_device None: the CUDA `device` when `support` says JPEG decoding works there, else
    the CPU. 'cpu': the CPU. 'cuda' (or 'cuda:k'): that GPU, ValueError when `support` gives
    a reason it cannot (no GPU, no torchcodec, a build without nvJPEG). Without an index it is
    `device` when that is a GPU. `support(device) -> ''` or the reason (default:
    `cuda_jpeg_support`)."""
    if decode_device is None:
        if device.type == "cuda" and not support(device):
            return _with_index(device)
        return torch.device("cpu")
    if not isinstance(decode_device, str | torch.device):
        raise TypeError(
            "decode_device: expected None, 'cpu', 'cuda' or a torch.device, got "
            f"{type(decode_device).__name__} {decode_device!r}"
        )
    try:
        dev = torch.device(decode_device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"decode_device: expected None, 'cpu' or 'cuda', got {decode_device!r}")
    if dev.type == "cpu":
        return dev
    if dev.index is None and device.type == "cuda":
        dev = device
    why = support(dev)
    if why:
        raise ValueError(
            f"decode_device: {str(decode_device)!r} requested, but JPEG decoding on {dev} is not "
            f"available: {why}; pass decode_device='cpu', or None to choose"
        )
    return _with_index(dev)


class EncodedBatch(NamedTuple):
    """A batch as `read_batch` leaves it: JPEGs still encoded, the rest decoded."""

    idx: list[int]  # every index of the batch, in order
    u: np.ndarray | None  # float64 [len(idx)]: the window draw of each (None: centre windows)
    jpeg_idx: list[int]  # the indices kept encoded ...
    jpeg_data: list[torch.Tensor]  # ... and their bytes, uint8 [n_bytes] each
    cpu_idx: list[int]  # the indices decoded on the CPU ...
    cpu_images: list[torch.Tensor]  # ... into whole presized images, uint8 [h, w, 3] each
    bad: list[int]  # the indices of unreadable files


def _complete_jpeg(data: bytes) -> bool:
    """A JPEG's start-of-image marker first and its end-of-image marker last (a truncated
    file lacks it; nvJPEG is not relied on to notice)."""
    return data[:3] == b"\xff\xd8\xff" and data[-64:].rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9")


def read_batch(
    items: Sequence[Path],
    idx: Sequence[int],
    size: int,
    method: str,
    u: np.ndarray | None = None,
) -> EncodedBatch:
    """Read the files `items[i]` for i in `idx`: complete JPEGs stay encoded; the others are
    decoded and presized whole (`presize_whole`) on the CPU, or listed as unreadable. `u`:
    the window draws of `idx` (None: centre windows), carried along. Runs on the CPU only
    (DataLoader workers call it)."""
    jpeg_idx, jpeg_data, cpu_idx, cpu_images, bad = [], [], [], [], []
    for i in idx:
        try:
            data = Path(items[i]).read_bytes()
        except OSError:
            data = b""  # load_whole below names the file and the error
        try:
            check_image_size(data, items[i])  # a decompression bomb is not sent to nvJPEG
        except BadImageError:
            bad.append(i)
            continue
        if _complete_jpeg(data):
            jpeg_idx.append(i)
            jpeg_data.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            continue
        try:
            img = load_whole(items[i], size, method)
        except BadImageError:
            bad.append(i)
            continue
        cpu_images.append(img.permute(1, 2, 0))
        cpu_idx.append(i)
    u = None if u is None else np.asarray(u, dtype=np.float64)
    return EncodedBatch(list(idx), u, jpeg_idx, jpeg_data, cpu_idx, cpu_images, bad)


class JpegBatchDecoder:
    """Decodes the JPEGs of `EncodedBatch`es on `device` with `decode_jpegs` (default:
    TorchCodec's nvJPEG decoder) and presizes them there (see the module doc)."""

    def __init__(self, device: torch.device | str, decode_jpegs: DecodeJpegs | None = None) -> None:
        self.device = torch.device(device)
        self.decode_jpegs = decode_jpegs if decode_jpegs is not None else torchcodec_decode_jpegs

    def __repr__(self) -> str:
        name = getattr(self.decode_jpegs, "__name__", type(self.decode_jpegs).__name__)
        return f"{type(self).__name__}({self.device}, {name})"

    def _decode_all(self, data: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """Decoded images, None where the decoder rejects the file."""
        if not data:
            return []
        try:
            return list(self.decode_jpegs(data, self.device))
        except (RuntimeError, ValueError):
            if len(data) == 1:
                return [None]
        out: list[torch.Tensor | None] = []
        for d in data:  # one file spoilt the batch call: find it
            try:
                out.append(self.decode_jpegs([d], self.device)[0])
            except (RuntimeError, ValueError):
                out.append(None)
        return out

    def decode(
        self,
        batch: EncodedBatch,
        items: Sequence[Path],
        size: int,
        method: str,
        whole: bool = False,
    ) -> DecodedBatch:
        """`batch` -> its `DecodedBatch`: the windows (``uint8 [B', size, size, 3]`` on the
        device, cut as `images.window_origins` says from the batch's draws), the B' indices
        decoded in the batch's order, the indices of unreadable files; whole=True also packs
        the whole presized images on the CPU for the cache."""
        images: dict[int, torch.Tensor] = {}  # index -> whole [h, w, 3], device or CPU
        bad = list(batch.bad)
        for i, img in zip(batch.jpeg_idx, self._decode_all(batch.jpeg_data), strict=True):
            if img is not None:
                img = presize_whole(img.float(), size, method).round_().clamp_(0, 255)
                images[i] = img.to(torch.uint8).permute(1, 2, 0)
                continue
            try:  # rejected by the device decoder: the CPU's, which names unreadable files
                images[i] = load_whole(items[i], size, method).permute(1, 2, 0)
            except BadImageError:
                bad.append(i)
        images.update(zip(batch.cpu_idx, batch.cpu_images, strict=True))
        keep = [k for k, i in enumerate(batch.idx) if i in images]
        kept = [batch.idx[k] for k in keep]
        u = None if batch.u is None else batch.u[keep]
        bad = sorted(bad, key=batch.idx.index)
        return decoded_batch([images[i] for i in kept], kept, bad, size, u, whole, self.device)

    def decode_files(
        self,
        items: Sequence[Path],
        idx: Sequence[int],
        size: int,
        method: str,
        u: np.ndarray | None = None,
        whole: bool = False,
    ) -> DecodedBatch:
        """`read_batch` then `decode`, in this process."""
        return self.decode(read_batch(items, idx, size, method, u), items, size, method, whole)
