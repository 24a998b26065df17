"""Images of more than 8 bits (16-bit PNG, TIFF and PGM, 32-bit integer and float TIFF) give
the same 8-bit pixels by every route: a path (training, predict), a PIL image, the file's
bytes (PILImage.create) and open_image. Pillow's convert('RGB') clipped them: 16-bit white,
float in [0, 1] black, while a 16-bit PNG by path kept its high byte."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fastcore_ext.data import PILImage, open_image, to_rgb
from fastcore_ext.data.images import wide_to_8bit

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

H, W = 24, 40
_ramp = np.linspace(0, 1, H * W).reshape(H, W)  # every level of the range, left to right


def _u16() -> np.ndarray:
    return np.rint(_ramp * 65535).astype(np.uint16)


def _stretched(v: np.ndarray) -> np.ndarray:
    return np.rint((v - v.min()) / (v.max() - v.min()) * 255).astype(np.uint8)


# (file name, array saved by Pillow, the 8-bit gray levels expected, computed here)
CASES = {
    "I;16 png": ("g16.png", _u16(), (_u16() >> 8).astype(np.uint8)),
    "I;16 tiff": ("g16.tif", _u16(), (_u16() >> 8).astype(np.uint8)),
    "I pgm (16-bit)": ("g16.pgm", _u16(), (_u16() >> 8).astype(np.uint8)),
    "I tiff, 16-bit values": (
        "i32.tif", _u16().astype(np.int32), (_u16() >> 8).astype(np.uint8)
    ),
    "I tiff, 32-bit values": (
        "i32w.tif", (_ramp * 4e9 - 2e9).astype(np.int32),
        _stretched((_ramp * 4e9 - 2e9).astype(np.int32).astype(np.float64)),
    ),
    "F tiff in [0, 1]": (
        "f01.tif", _ramp.astype(np.float32),
        np.rint(_ramp.astype(np.float32) * 255.0).astype(np.uint8),
    ),
    "F tiff, another range": (
        "fhdr.tif", (_ramp * 40 - 3).astype(np.float32),
        _stretched((_ramp * 40 - 3).astype(np.float32).astype(np.float64)),
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def wide_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wide")
    out = {}
    for case, (name, arr, _) in CASES.items():
        Image.fromarray(arr).save(folder / name)
        out[case] = folder / name
    return out


def _routes(path):
    """Each route's pixels as ``uint8 [H, W, 3]``."""
    with Image.open(path) as pil:
        pil.load()
        from_pil = to_rgb(pil)
        mode = pil.mode
    return mode, {
        "path": to_rgb(path).permute(1, 2, 0).numpy(),
        "PIL image": from_pil.permute(1, 2, 0).numpy(),
        "open_image": np.asarray(open_image(path)),
        "PILImage.create(path)": np.asarray(PILImage.create(path)),
        "PILImage.create(bytes)": np.asarray(PILImage.create(path.read_bytes())),
        "PILImage.create(PIL)": np.asarray(PILImage.create(Image.open(path))),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_every_route_gives_the_same_8bit_pixels(case, wide_files):
    mode, got = _routes(wide_files[case])
    assert mode == case.split()[0]  # the Pillow mode the case is about
    want = np.repeat(CASES[case][2][..., None], 3, axis=2)
    for route, px in got.items():
        np.testing.assert_array_equal(px, want, err_msg=f"{case}: {route}")


def test_16bit_rgb_png_by_path_and_by_pil_agree(tmp_path):
    """A 16-bit RGB PNG: TorchCodec gives uint16 (its high byte kept), Pillow mode RGB."""
    import struct
    import zlib

    rgb = np.rint(np.stack([_ramp, _ramp[::-1], _ramp[:, ::-1]], -1) * 65535).astype(">u2")
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(H))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path = tmp_path / "rgb48.png"
    ihdr = struct.pack(">IIBBBBB", W, H, 16, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(raw))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b""))
    _, got = _routes(path)
    want = (rgb.astype(np.uint16) >> 8).astype(np.uint8)
    for route, px in got.items():
        np.testing.assert_array_equal(px, want, err_msg=route)


def test_wide_to_8bit_edge_cases():
    f = Image.fromarray(np.array([[np.nan, 0.5], [np.inf, 1.0]], np.float32))
    np.testing.assert_array_equal(np.asarray(wide_to_8bit(f)), [[0, 128], [0, 255]])
    constant = Image.fromarray(np.full((2, 2), 300.5, np.float32))  # stretched: no range
    np.testing.assert_array_equal(np.asarray(wide_to_8bit(constant)), np.zeros((2, 2)))
    big_i = Image.fromarray(np.array([[70000, 70000]], np.int32))  # constant, out of 16 bits
    np.testing.assert_array_equal(np.asarray(wide_to_8bit(big_i)), [[0, 0]])
    rgb = Image.new("RGB", (2, 2), (1, 2, 3))
    assert wide_to_8bit(rgb) is rgb
    assert torch.equal(to_rgb(Image.fromarray(np.array([[65535]], np.uint16))),
                       torch.full((3, 1, 1), 255, dtype=torch.uint8))  # fmt: skip


def test_8bit_values_in_a_wide_mode_are_taken_as_they_are():
    """convert('I') / convert('I;16') / convert('F') of a grayscale photo, or a uint16 array
    of 8-bit values: as Pillow's convert('L') and fastai read them (the 16-bit rule made the
    'I' ones black: a trial's predict was certain of a class from a black image)."""
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    want = torch.from_numpy(gray).expand(3, 16, 16)
    img = Image.fromarray(gray)
    for mode in ("I", "I;16", "F"):
        assert torch.equal(to_rgb(img.convert(mode)), want), mode
    assert torch.equal(to_rgb(gray.astype(np.uint16)), want)
    assert torch.equal(to_rgb(torch.from_numpy(gray.astype(np.int32)).to(torch.uint16)), want)
    deep = Image.fromarray(gray.astype(np.uint16) * 257)  # real 16-bit: its high byte
    assert torch.equal(to_rgb(deep), want)
