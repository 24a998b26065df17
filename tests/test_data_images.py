"""Decoding (TorchCodec, torchvision.io where it is missing, Pillow fallback), color modes,
EXIF orientation, presizing, bad files and verify_images."""

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.io as tvio
from PIL import Image, ImageOps

from fastcore_ext.data import BadImageError, load_image, presize, to_rgb, verify_images
from fastcore_ext.data import images as images_mod
from fastcore_ext.data.images import presize_whole, resize_method, window_origins


@pytest.fixture
def rgb():
    """A random (H=30, W=20) RGB image as a numpy array."""
    return np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)


def _hwc(t: torch.Tensor) -> np.ndarray:
    assert t.dtype == torch.uint8 and t.ndim == 3 and t.shape[0] == 3
    return t.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("ext", ["png", "bmp", "tiff", "webp"])
def test_lossless_formats_decode_exactly(tmp_path, rgb, ext):
    """PNG and WebP through torchvision, BMP and TIFF through the Pillow fallback."""
    p = tmp_path / f"x.{ext}"
    Image.fromarray(rgb).save(p, **({"lossless": True} if ext == "webp" else {}))
    np.testing.assert_array_equal(_hwc(to_rgb(p)), rgb)
    np.testing.assert_array_equal(_hwc(to_rgb(str(p))), rgb)


def test_jpeg_agrees_with_pillow(tmp_path, rgb):
    p = tmp_path / "x.jpg"
    Image.fromarray(rgb).save(p, quality=90)
    got = _hwc(to_rgb(p)).astype(int)
    expect = np.asarray(Image.open(p).convert("RGB")).astype(int)
    assert got.shape == rgb.shape
    assert np.abs(got - expect).mean() < 2  # two libjpeg builds: the same picture


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_grayscale_becomes_rgb(tmp_path, rgb, ext):
    p = tmp_path / f"g.{ext}"
    Image.fromarray(rgb[..., 0]).save(p)
    got = _hwc(to_rgb(p))
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    if ext == "png":
        np.testing.assert_array_equal(got[..., 0], rgb[..., 0])


def test_rgba_drops_alpha(tmp_path, rgb):
    p = tmp_path / "a.png"
    alpha = np.random.default_rng(1).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(p)
    np.testing.assert_array_equal(_hwc(to_rgb(p)), rgb)


@pytest.mark.parametrize("ext", ["png", "gif"])
def test_palette_becomes_rgb(tmp_path, rgb, ext):
    p = tmp_path / f"p.{ext}"
    pal = Image.fromarray(rgb).convert("P")
    pal.save(p)
    expect = np.asarray(Image.open(p).convert("RGB"))
    np.testing.assert_array_equal(_hwc(to_rgb(p)), expect)


def test_palette_with_transparency_through_pillow(rgb):
    pal = Image.fromarray(rgb).convert("P")
    pal.info["transparency"] = 0
    np.testing.assert_array_equal(_hwc(to_rgb(pal)), np.asarray(pal.convert("RGBA"))[..., :3])


@pytest.mark.parametrize("orientation,rot", [(3, 2), (6, -1), (8, 1)])
@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")
def test_exif_orientation_applied(tmp_path, rgb, orientation, rot):
    """EXIF 3/6/8 = rotate 180 / 90 clockwise / 90 counter-clockwise for display."""
    p = tmp_path / "e.jpg"
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(p, exif=exif, quality=95)
    raw = tvio.decode_jpeg(tvio.read_file(str(p)), mode=tvio.ImageReadMode.RGB)  # stored pixels
    expect = torch.rot90(raw, rot, dims=(1, 2))
    torch.testing.assert_close(to_rgb(p), expect, rtol=0, atol=0)
    # the Pillow path (PIL image given directly) agrees with Pillow's own transpose
    with Image.open(p) as im:
        got = to_rgb(im)
        assert got.shape == expect.shape


def test_sixteen_bit_png(tmp_path):
    p = tmp_path / "deep.png"
    v = np.random.default_rng(2).integers(0, 65536, (9, 7), dtype=np.uint16)
    Image.fromarray(v).save(p)
    got = to_rgb(p)
    assert got.dtype == torch.uint8 and got.shape == (3, 9, 7)


def test_tensor_array_and_pil_sources(rgb):
    t = torch.from_numpy(rgb).permute(2, 0, 1)
    np.testing.assert_array_equal(_hwc(to_rgb(t)), rgb)
    np.testing.assert_array_equal(_hwc(to_rgb(rgb)), rgb)
    np.testing.assert_array_equal(_hwc(to_rgb(Image.fromarray(rgb))), rgb)
    rgba = torch.cat([t, t[:1]])
    np.testing.assert_array_equal(_hwc(to_rgb(rgba)), rgb)
    gray = to_rgb(t[0])
    assert gray.shape == (3, 30, 20) and (gray[0] == gray[2]).all()
    np.testing.assert_array_equal(_hwc(to_rgb(torch.from_numpy(rgb))), rgb)  # [H, W, C]
    with pytest.raises(TypeError, match=r"item: expected a uint8, uint16, bool \(or float in"):
        to_rgb(t.int())
    with pytest.raises(TypeError, match=r"item: expected a uint8, uint16, bool .* got int64"):
        to_rgb(rgb.astype(np.int64))
    with pytest.raises(
        TypeError, match=r"expected 1, 3 or 4 channels, got 2 \(shape \(2, 30, 20\)\)"
    ):
        to_rgb(t[:2])
    with pytest.raises(TypeError, match="item: expected a file path"):
        to_rgb(3)


def test_sixteen_bit_and_bool_arrays_read_as_their_files(tmp_path, rgb):
    """np.array(Image.open(16-bit PNG)) is uint16, of a mode '1' image bool: read as the file
    (the high byte; 0 / 255), not refused."""
    wide = rgb[..., 0].astype(np.uint16) * 257 + 3
    p = tmp_path / "wide.png"
    Image.fromarray(wide).save(p)
    from_file = to_rgb(p)
    for item in (np.asarray(Image.open(p)), wide, torch.from_numpy(wide.astype(np.int32)).to(
        torch.uint16
    )):  # fmt: skip
        np.testing.assert_array_equal(to_rgb(item), from_file)
    mask = rgb[..., 1] > 127
    p1 = tmp_path / "mask.png"
    Image.fromarray(mask).save(p1)  # mode '1'
    assert np.asarray(Image.open(p1)).dtype == np.bool_
    np.testing.assert_array_equal(to_rgb(np.asarray(Image.open(p1))), to_rgb(p1))
    np.testing.assert_array_equal(to_rgb(torch.from_numpy(mask)), to_rgb(p1))
    assert set(np.unique(to_rgb(mask).numpy())) == {0, 255}


def test_float_sources_in_0_1(rgb):
    """Floats in [0, 1] (open_image's Image.data, uint8 / 255) read as round(x * 255): the
    uint8 image back exactly, for every layout, dtype and channel count uint8 takes."""
    t = torch.from_numpy(rgb).permute(2, 0, 1)
    x = t / 255
    for item in (x, x.double(), x.half(), x.permute(1, 2, 0), x.permute(1, 2, 0).numpy()):
        np.testing.assert_array_equal(_hwc(to_rgb(item)), rgb)
    np.testing.assert_array_equal(_hwc(to_rgb(torch.cat([x, x[:1]]))), rgb)  # alpha dropped
    np.testing.assert_array_equal(_hwc(to_rgb(x[0])), rgb[..., [0, 0, 0]])  # gray
    gen = torch.Generator().manual_seed(0)
    noisy = (x + (torch.rand(x.shape, generator=gen) - 0.5) / 300).clamp(0, 1)  # < half a level
    np.testing.assert_array_equal(_hwc(to_rgb(noisy)), rgb)
    assert to_rgb(torch.tensor([[0.0, 1.0]])).tolist() == [[[0, 255]]] * 3


@pytest.mark.parametrize(
    "item, seen, shape",
    [
        (torch.full((30, 20, 3), 2.0), r"\[2, 2\]", r"\(30, 20, 3\)"),  # the shape passed
        (np.full((30, 20, 3), -0.5, dtype=np.float32), r"\[-0.5, -0.5\]", r"\(30, 20, 3\)"),
        (torch.tensor([[0.5, float("nan")]]), r"\[nan, nan\]", r"\(1, 2\)"),
    ],
)
def test_float_sources_outside_0_1_are_refused(item, seen, shape):
    """A normalized image (or 0..255 as float) is not an image in [0, 1]: the error says so,
    with the range seen and the shape passed."""
    with pytest.raises(
        ValueError, match=rf"values in \[0, 1\].*got values in {seen} \(shape {shape}\)"
    ):
        to_rgb(item)


def test_float_sources_of_bad_shape_name_the_shape_passed():
    with pytest.raises(TypeError, match=r"got 2 \(shape \(30, 20, 2\)\)"):
        to_rgb(np.zeros((30, 20, 2), dtype=np.float32))
    with pytest.raises(TypeError, match=r"got 5 \(shape \(5, 30, 20\)\)"):
        to_rgb(torch.zeros(5, 30, 20))
    with pytest.raises(TypeError, match=r"got int64 with shape \(30, 20, 3\)"):
        to_rgb(np.zeros((30, 20, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"at least 1x1 pixel, got shape \(3, 0, 20\)"):
        to_rgb(torch.zeros(3, 0, 20))


def test_truncated_jpeg_names_its_file(tmp_path, rgb):
    p = tmp_path / "broken_photo.jpg"
    Image.fromarray(rgb).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="broken_photo.jpg: cannot decode image"):
        to_rgb(p)
    p.write_bytes(data[: len(data) * 4 // 5])  # its header whole: Pillow opens it lazily
    with Image.open(p) as img:  # opened by the user (learn.predict(PILImage.create(...)))
        with pytest.raises(BadImageError, match=r"item: cannot read '.*broken_photo.jpg' \("):
            to_rgb(img)


def test_non_image_and_missing_file(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is text")
    with pytest.raises(BadImageError, match=r"notes.png: cannot decode image \(.*Pillow: .*\)$"):
        to_rgb(p)
    with pytest.raises(BadImageError, match="gone.jpg: cannot read file"):
        to_rgb(tmp_path / "gone.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadImageError, match=r"empty.jpg: cannot decode image \(the file is empty"):
        to_rgb(tmp_path / "empty.jpg")


def test_decoder_errors_leave_out_where_in_its_source_they_were_raised(tmp_path, rgb):
    """TorchCodec's messages begin 'decode_rows, /__w/torchcodec/.../DecodeJpeg.cpp:287, ':
    a path on the machine that built its wheel."""
    p = tmp_path / "cut.jpg"
    Image.fromarray(rgb).save(p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(BadImageError) as err:
        to_rgb(p)
    assert ".cpp:" not in str(err.value) and "/__w/" not in str(err.value), str(err.value)
    assert images_mod._SOURCE_PLACE.sub("", "decode_rows, /a/b/DecodeJpeg.cpp:287, Bad.") == "Bad."


def test_presize_crop_takes_the_center_square():
    # a wide image: left and right thirds red, the center square green
    img = torch.zeros(3, 30, 90, dtype=torch.uint8)
    img[0, :, :30] = img[0, :, 60:] = 255
    img[1, :, 30:60] = 255
    out = presize(img, 30)
    assert out.shape == (3, 30, 30) and out.dtype == torch.uint8
    assert (out[1] == 255).all() and (out[0] == 0).all()
    # the centre window is the centre square resized, as fastai's: the filter does not reach
    # across its edges (resizing the whole image first bled red into its edge pixels)
    small = presize(img, 10)
    assert small.shape == (3, 10, 10) and (small[1] == 255).all() and (small[0] == 0).all()
    tall = presize(img.transpose(1, 2), 12)
    assert tall.shape == (3, 12, 12) and (tall[1] == 255).all() and (tall[0] == 0).all()


def test_presize_squish_keeps_everything():
    img = torch.zeros(3, 30, 90, dtype=torch.uint8)
    img[0, :, :30] = 255
    out = presize(img, 30, method="squish")
    assert out.shape == (3, 30, 30)
    assert (out[0, :, :9] == 255).all() and (out[0, :, 12:] == 0).all()
    with pytest.raises(ValueError, match="method: expected one of"):
        presize(img, 30, method="pad")


def _resized(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return torch.nn.functional.interpolate(img[None], hw, mode="bilinear", antialias=True)[0]


def test_presize_pad_zeros_fits_the_long_side_and_pads_with_zero_rows():
    rng = np.random.default_rng(3)
    img = torch.from_numpy(rng.integers(1, 256, (3, 20, 40), dtype=np.uint8))  # 2:1, landscape
    out = presize(img, 32, method="pad-zeros")  # resized to 16 x 32, 8 rows of zeros each side
    assert out.shape == (3, 32, 32)
    assert (out[:, :8] == 0).all() and (out[:, 24:] == 0).all()
    torch.testing.assert_close(out[:, 8:24], _resized(img, (16, 32)), rtol=0, atol=0)
    tall = presize(img.transpose(1, 2).contiguous(), 32, "pad-zeros")  # zero columns
    assert (tall[:, :, :8] == 0).all() and (tall[:, :, 24:] == 0).all()
    torch.testing.assert_close(
        tall[:, :, 8:24], _resized(img.transpose(1, 2).contiguous(), (32, 16)), rtol=0, atol=0
    )
    odd = torch.from_numpy(rng.integers(1, 256, (3, 10, 31), dtype=np.uint8))
    padded = presize(odd, 31, "pad-zeros")  # 21 rows of padding: 10 above, 11 below
    assert (padded[:, :10] == 0).all() and (padded[:, 20:] == 0).all()
    assert torch.equal(padded[:, 10:20], odd)
    floats = presize_whole(img.float(), 32, "pad-zeros")  # the GPU decoder's float path
    assert floats.dtype == torch.float32 and floats.shape == (3, 48, 32)  # 16 rows each side
    assert (floats[:, :16] == 0).all() and (floats[:, 32:] == 0).all()
    torch.testing.assert_close(floats[:, 16:32], _resized(img.float(), (16, 32)))


def test_presize_pad_whole_holds_the_image_at_every_place_of_the_square():
    """The whole 'pad' image is padded by the missing rows on both sides, so the window at
    origin t holds the image t rows higher: t = 0 puts it at the bottom, t = pad at the top,
    the centre window (what validation sees) pads pad // 2 rows above, as fastai's
    Resize(method='pad') at pcts 0.5 (checked against fastai 2.8.12: a 30 x 44 image at 32
    px lands in columns 5-26 of the square, 4-24 and 7-27 at random pcts)."""
    img = torch.from_numpy(np.random.default_rng(5).integers(1, 256, (3, 10, 31), dtype=np.uint8))
    whole = presize_whole(img, 31, "pad-zeros")  # 21 rows lacking: 21 + 10 + 21 rows
    assert whole.shape == (3, 52, 31)
    for t in (0, 7, 21):
        window = whole[:, t : t + 31]
        rows = torch.nonzero(window.amax(dim=(0, 2))).flatten()
        assert (rows.min().item(), rows.max().item()) == (21 - t, 30 - t)
    (top, left), *_ = window_origins(np.array([whole.shape[1:]]), 31)
    assert (top, left) == (11, 0)  # 21 - 11 = 10 rows of padding above: the smaller half
    assert torch.equal(whole[:, top : top + 31], presize(img, 31, "pad-zeros"))


@pytest.mark.parametrize("mode, np_mode", [("reflection", "reflect"), ("border", "edge")])
def test_presize_pad_reflection_and_border_read_the_image(mode, np_mode):
    """numpy's 'reflect' (the edge pixel not repeated, as torchvision's pad for fastai's
    PadMode.Reflection) and 'edge' (PadMode.Border), after the resize."""
    rng = np.random.default_rng(4)
    img = torch.from_numpy(rng.integers(0, 256, (3, 12, 20), dtype=np.uint8))
    out = presize(img, 16, f"pad-{mode}")  # resized to 10 x 16 (9.6 rounded), 3 + 3 rows
    small = _resized(img, (10, 16)).numpy()
    np.testing.assert_array_equal(out.numpy(), np.pad(small, ((0, 0), (3, 3), (0, 0)), np_mode))
    whole = presize_whole(img, 16, f"pad-{mode}")  # 6 rows lacking: 6 + 10 + 6 rows
    np.testing.assert_array_equal(whole.numpy(), np.pad(small, ((0, 0), (6, 6), (0, 0)), np_mode))
    thin = torch.from_numpy(rng.integers(0, 256, (3, 2, 9), dtype=np.uint8))
    far = presize(thin, 9, f"pad-{mode}")  # 7 rows of padding around 2: reflected again
    np.testing.assert_array_equal(
        far.numpy(), np.pad(thin.numpy(), ((0, 0), (3, 4), (0, 0)), np_mode)
    )


def test_resize_method_names_the_pad_mode():
    assert resize_method("pad", "zeros") == "pad-zeros"
    assert resize_method("crop", "zeros") == "crop"
    assert resize_method("squish") == "squish"
    with pytest.raises(ValueError, match="pad_mode: expected one of"):
        resize_method("pad", "constant")
    with pytest.raises(ValueError, match="method: expected one of"):
        resize_method("fit")


def test_presize_matches_torch_resize_and_upsamples(rgb):
    img = torch.from_numpy(rgb).permute(2, 0, 1)  # (3, 30, 20)
    out = presize(img, 16)  # the centre 20 x 20 square (rows 5..24) resized to 16 x 16
    ref = torch.nn.functional.interpolate(
        img[None, :, 5:25].contiguous(), size=(16, 16), mode="bilinear", antialias=True
    )
    torch.testing.assert_close(out, ref[0], rtol=0, atol=0)
    assert presize(img, 64).shape == (3, 64, 64)
    assert presize(img[:, :20, :], 20) is not None


def _smooth(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random image ``uint8 [3, h, w]``: a plane wave per channel, 1-4 periods."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    waves = [
        127.5 + 100 * np.sin(np.pi * (a * x + b * y) + phase)
        for a, b, phase in rng.uniform(1, 4, (3, 3))
    ]
    return torch.from_numpy(np.stack(waves).round().astype(np.uint8))


def _fastai_crop(hw: tuple[int, int], size: int) -> tuple[int, int, int]:
    """fastai 2.8's Resize(size) crop, from its source: (top, left, side) of the square that
    it resizes to size x size (m = the smaller of w / size and h / size; side int(m * size);
    its corner int(0.5 * (w - side)), int(0.5 * (h - side)))."""
    h, w = hw
    m = w / size if w / size < h / size else h / size
    side = int(m * size)
    return int(0.5 * (h - side)), int(0.5 * (w - side)), side


@pytest.mark.parametrize(
    "hw, size, whole",
    [
        ((30, 40), 20, (20, 26)),  # landscape: crop 30 at 5, 3 px (5 * 2/3) on each side
        ((40, 30), 20, (26, 20)),  # portrait
        ((25, 100), 20, (20, 78)),  # 4:1: crop 25 at 37, 29 px (37 * 0.8) on each side
        ((100, 25), 20, (78, 20)),  # 1:4
        ((33, 33), 20, (20, 20)),  # square
        ((20, 50), 20, (20, 50)),  # already presized: 15 px on each side, as they are
        ((20, 51), 20, (20, 50)),  # odd slack: the crop at 15, 15 px on each side
        ((9, 12), 30, (30, 36)),  # upsampled: crop 9 at 1, 3 px (1 * 30/9) on each side
    ],
)
def test_presize_whole_keeps_the_aspect(hw, size, whole):
    """The whole presized image continues the pixel grid of fastai's centre crop resized:
    its centre window is that resize, and equally many pixels lie on each side."""
    img = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, *hw), dtype=np.uint8))
    out = presize_whole(img, size)
    assert out.shape == (3, *whole) and out.dtype == torch.uint8
    top, left, side = _fastai_crop(hw, size)
    crop = img[:, top : top + side, left : left + side].contiguous()
    ref = torch.nn.functional.interpolate(crop[None], (size, size), mode="bilinear",
                                          antialias=True)[0]  # fmt: skip
    (wt, wl), *_ = window_origins(np.array([whole]), size)
    torch.testing.assert_close(out[:, wt : wt + size, wl : wl + size], ref, rtol=0, atol=0)
    if hw[0] <= hw[1] and hw[1] - 2 * left == side:  # the sides, at scale 1: the image itself
        if size == side:
            torch.testing.assert_close(out, img[:, :, :], rtol=0, atol=0)
    assert presize_whole(img, size, "squish").shape == (3, size, size)
    with pytest.raises(ValueError, match="method: expected one of"):
        presize_whole(img, size, "pad")


def test_window_origins_centre_random_and_both_ends():
    shapes = np.array([[20, 27], [27, 20], [20, 80], [20, 20]])
    # the centre: ceil(slack / 2) (a 'crop' image's slack is even; an odd one is a 'pad' image)
    np.testing.assert_array_equal(window_origins(shapes, 20), [[0, 4], [4, 0], [0, 30], [0, 0]])
    np.testing.assert_array_equal(window_origins(shapes, 20, np.zeros(4)), np.zeros((4, 2)))
    last = np.full(4, np.nextafter(1.0, 0.0))
    np.testing.assert_array_equal(
        window_origins(shapes, 20, last), [[0, 7], [7, 0], [0, 60], [0, 0]]
    )
    # every position of the long side alike likely: u in the k-th of 61 equal bins gives k
    u = (np.arange(61) + 0.5) / 61
    got = window_origins(np.tile([20, 80], (61, 1)), 20, u)
    np.testing.assert_array_equal(got, np.stack([np.zeros(61), np.arange(61)], 1))


@pytest.mark.parametrize(
    "hw, size",
    [((100, 200), 50), ((480, 120), 60), ((300, 400), 80), ((480, 640), 64), ((131, 97), 50),
     ((375, 500), 224), ((21, 400), 16), ((500, 224), 224)],
)  # fmt: skip
def test_centre_window_is_fastais_resize(hw, size):
    """The validation / predict window is fastai's Resize(size): its centre crop (in the
    original's pixels) resized with Pillow's bilinear filter. It was the centre of the whole
    image resized with its long side rounded: for 4:3 photos half a pixel off centre and
    0.4 % off in scale (a mean difference of 4-5 levels at 64 px). Torch's filter and
    Pillow's round a few values differently (by 1)."""
    img = _smooth(*hw)
    top, left, side = _fastai_crop(hw, size)
    crop = img[:, top : top + side, left : left + side].permute(1, 2, 0).numpy()
    fastai = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR)).astype(int)
    diff = np.abs(presize(img, size).permute(1, 2, 0).numpy().astype(int) - fastai)
    assert diff.max() <= 1 and diff.mean() < 0.05
    assert load_image(Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy())),
                      size).shape == (3, size, size)  # fmt: skip


def test_training_windows_continue_the_centre_grid():
    """Every training window of the whole presized image samples the original on the grid of
    the centre crop: a horizontal ramp (value = original column) reads, in every column j of
    the whole image, the original column its pixel centre maps to."""
    h, w, size = 60, 200, 20
    ramp = torch.arange(w, dtype=torch.float32).expand(3, h, w).contiguous()
    out = presize_whole(ramp, size)
    top, left, side = _fastai_crop((h, w), size)
    c = (out.shape[2] - size) // 2
    j = torch.arange(out.shape[2], dtype=torch.float32)
    centres = left + (j - c + 0.5) * side / size - 0.5  # original column under output pixel j
    assert out.shape == (3, size, size + 2 * c) and c == int(left * size / side)
    # at the crop's edges (and the image's) the filter is cut short, as in fastai's crop
    edges = [0, c - 1, c, c + size - 1, c + size, out.shape[2] - 1]
    inner = torch.ones(out.shape[2], dtype=torch.bool)
    inner[edges] = False
    torch.testing.assert_close(out[0, 10, inner], centres[inner], atol=1e-3, rtol=0)
    assert (out[0, 10, edges] - centres[edges]).abs().max() < 0.5


def test_load_image(tmp_path, rgb):
    p = tmp_path / "x.png"
    Image.fromarray(rgb).save(p)
    torch.testing.assert_close(load_image(p, 12), presize(to_rgb(p), 12), rtol=0, atol=0)


def test_verify_images_lists_prints_and_deletes(tmp_path, rgb, capsys):
    good = [tmp_path / "a" / f"{i}.png" for i in range(3)]
    for g in good:
        g.parent.mkdir(exist_ok=True)
        Image.fromarray(rgb).save(g)
    trunc = tmp_path / "a" / "t.jpg"
    Image.fromarray(rgb).save(trunc)
    trunc.write_bytes(trunc.read_bytes()[:100])
    text = tmp_path / "b" / "x.png"
    text.parent.mkdir()
    text.write_text("nope")
    empty = tmp_path / "b" / "zero.jpg"
    empty.write_bytes(b"")
    bad = verify_images(tmp_path)
    assert bad == sorted([trunc, text, empty])
    printed = capsys.readouterr().out.splitlines()  # one line per file, as fastai v1
    assert len(printed) == 3 and all(str(p) in line for p, line in zip(bad, printed, strict=True))
    assert verify_images(tmp_path / "b", recurse=False) == sorted([text, empty])
    assert verify_images(tmp_path, recurse=False) == []
    assert verify_images(good + [text], max_workers=1) == [text]
    with pytest.raises(ValueError, match="max_workers: expected a positive int, got 0"):
        verify_images(tmp_path, max_workers=0)
    with pytest.raises(TypeError, match="delete should be a bool, got str 'False'"):
        verify_images(tmp_path, delete="False")  # a non-empty string is true: it deleted them
    with pytest.raises(TypeError, match="recurse should be a bool, got int 0"):
        verify_images(tmp_path, recurse=0)
    assert all(p.exists() for p in bad)
    assert verify_images(tmp_path, delete=True) == bad
    assert not any(p.exists() for p in bad) and all(g.exists() for g in good)
    assert verify_images(tmp_path) == []


def test_verify_images_max_size_shrinks_in_place_or_into_dest(tmp_path, capsys):
    """Lesson 2's verify_images(path, delete=True, max_size=500): large images are resized
    (aspect kept, EXIF orientation applied) in their own format, small ones left alone."""
    rng = np.random.default_rng(0)
    big = tmp_path / "cats" / "big.jpg"
    big.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (300, 120, 3), dtype=np.uint8)).save(big)
    rotated = tmp_path / "cats" / "rotated.jpg"  # stored 200 x 80, shown 80 x 200 (EXIF 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (80, 200, 3), dtype=np.uint8)).save(rotated, exif=exif)
    rgba = tmp_path / "dogs" / "rgba.png"
    rgba.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (90, 150, 4), dtype=np.uint8)).save(rgba)
    small = tmp_path / "dogs" / "small.png"
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(small)
    small_bytes = small.read_bytes()
    broken = tmp_path / "dogs" / "broken.jpg"
    broken.write_bytes(b"")
    assert verify_images(tmp_path, max_size=100) == [broken]
    sizes = {}
    for p in (big, rotated, rgba, small):
        with Image.open(p) as im:
            sizes[p.name] = (im.format, im.mode, im.size)
    assert sizes == {
        "big.jpg": ("JPEG", "RGB", (40, 100)),
        "rotated.jpg": ("JPEG", "RGB", (40, 100)),  # upright: EXIF applied, then shrunk
        "rgba.png": ("PNG", "RGBA", (100, 60)),
        "small.png": ("PNG", "RGB", (50, 40)),
    }
    assert small.read_bytes() == small_bytes  # not rewritten
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary file left
    # dest: next to each image's folder, the originals untouched
    assert verify_images(tmp_path, max_size=50, dest="small") == [broken]
    with Image.open(tmp_path / "cats" / "small" / "big.jpg") as im:
        assert im.size == (20, 50)
    with Image.open(tmp_path / "dogs" / "small" / "small.png") as im:
        assert im.size == (50, 40)  # within max_size: copied as it is
    with Image.open(big) as im:
        assert im.size == (40, 100)
    capsys.readouterr()
    with pytest.raises(ValueError, match="max_size: expected a positive int or None, got 0"):
        verify_images(tmp_path, max_size=0)
    with pytest.raises(ValueError, match="dest: expected a folder relative"):
        verify_images(tmp_path, max_size=10, dest=tmp_path)


# -- TorchCodec against the previous decoders (torchvision.io, Pillow) ---------------------------


def _encoded_cases() -> dict[str, bytes]:
    """Generated images in every mode the decoders must agree on."""
    base = np.random.default_rng(5).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    im = Image.fromarray(base)
    pal = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)

    def enc(img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, format=fmt, **kw)
        return b.getvalue()

    cases = {
        "jpeg_rgb": enc(im, "JPEG", quality=90),
        "jpeg_gray": enc(im.convert("L"), "JPEG"),
        "jpeg_cmyk": enc(im.convert("CMYK"), "JPEG"),
        "png_rgb": enc(im, "PNG"),
        "png_gray": enc(im.convert("L"), "PNG"),
        "png_gray_alpha": enc(im.convert("LA"), "PNG"),
        "png_rgba": enc(im.convert("RGBA"), "PNG"),
        "png_palette": enc(pal, "PNG"),
        "png_palette_transparency": enc(pal, "PNG", transparency=3),
        "png_16bit": enc(Image.fromarray(base[..., 0].astype(np.uint16) * 257 + 3), "PNG"),
        "webp_lossy": enc(im, "WEBP", quality=80),
        "webp_lossless": enc(im, "WEBP", lossless=True),
        "webp_rgba": enc(im.convert("RGBA"), "WEBP", lossless=True),
        "gif": enc(pal, "GIF"),
    }
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        cases[f"jpeg_exif{o}"] = enc(im, "JPEG", exif=exif.tobytes())
        cases[f"png_exif{o}"] = enc(im, "PNG", exif=exif.tobytes())
    return cases


CASES = _encoded_cases()


@pytest.fixture
def without_torchcodec(monkeypatch):
    """This process as one where TorchCodec cannot be imported."""
    monkeypatch.setattr(images_mod, "_torchcodec_decode", None)
    monkeypatch.setattr(images_mod, "_TORCHCODEC_ERROR", "ImportError: (simulated)")
    monkeypatch.setattr(images_mod, "_fallback_warned", False)


def test_torchcodec_decodes_here():
    assert images_mod.image_decoder() == "torchcodec"


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")
@pytest.mark.parametrize("case", sorted(CASES))
def test_torchcodec_gives_the_pixels_of_the_previous_decoders(tmp_path, case, monkeypatch):
    p = tmp_path / f"{case}.img"
    p.write_bytes(CASES[case])
    new = to_rgb(p)
    assert new.dtype == torch.uint8 and new.ndim == 3 and new.shape[0] == 3
    monkeypatch.setattr(images_mod, "_torchcodec_decode", None)
    monkeypatch.setattr(images_mod, "_fallback_warned", True)
    old = to_rgb(p)
    torch.testing.assert_close(new, old, rtol=0, atol=0)
    assert new.stride() == old.stride()  # HWC storage (transposed by EXIF 5 to 8), as before
    with Image.open(p) as im:  # and Pillow's own reading, orientation applied
        if im.mode != "I;16":  # Pillow clips 16-bit values in convert('RGB')
            pil = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
            np.testing.assert_array_equal(new.permute(1, 2, 0).numpy(), pil)


def test_sixteen_bit_png_keeps_the_high_byte(tmp_path):
    v = np.random.default_rng(2).integers(0, 65536, (9, 7), dtype=np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(v).save(p)
    np.testing.assert_array_equal(to_rgb(p)[0].numpy(), (v >> 8).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_an_animation_gives_its_first_frame(tmp_path, fmt):
    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)) for _ in range(3)]
    if fmt == "GIF":
        frames = [f.convert("P", palette=Image.Palette.ADAPTIVE, colors=8) for f in frames]
    p = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0,
                   **({"lossless": True} if fmt == "WEBP" else {}))  # fmt: skip
    with Image.open(p) as im:
        first = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(to_rgb(p).permute(1, 2, 0).numpy(), first)


def test_torchcodec_path_raises_no_deprecation_warning(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(CASES["jpeg_rgb"])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        to_rgb(p)
    assert [str(w.message) for w in rec] == []


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")
def test_without_torchcodec_one_warning_per_process(tmp_path, without_torchcodec):
    p = tmp_path / "x.png"
    p.write_bytes(CASES["png_rgb"])
    with pytest.warns(UserWarning, match=r"TorchCodec cannot be imported \(ImportError") as rec:
        for _ in range(3):
            to_rgb(p)
    assert len([w for w in rec if "cannot be imported" in str(w.message)]) == 1
    assert images_mod.image_decoder() == "torchvision"


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")
@pytest.mark.parametrize("torchcodec", [True, False])
def test_broken_files_name_themselves_with_either_decoder(tmp_path, monkeypatch, torchcodec):
    if not torchcodec:
        monkeypatch.setattr(images_mod, "_torchcodec_decode", None)
        monkeypatch.setattr(images_mod, "_fallback_warned", True)
    data = CASES["jpeg_rgb"]
    for name, content in [("cut.jpg", data[: len(data) // 3]), ("zero.jpg", b""),
                          ("text.jpg", b"not an image")]:  # fmt: skip
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(BadImageError, match=f"{name}: cannot decode image") as e:
            to_rgb(p)
        assert "decode_jpeg" not in str(e.value)  # torchcodec's advice for valid images


@pytest.mark.parametrize("fmt", ["gif", "avif"])
def test_transparent_gif_and_avif_give_the_same_pixels_from_every_route(tmp_path, fmt):
    """From a path a transparent pixel took a GIF's background colour (green here) or an
    AVIF's black; from a PIL image or bytes (a web app's upload) and in fastai, the colour
    under it (red): a trained model saw other pixels than the served one."""
    f = tmp_path / f"t.{fmt}"
    if fmt == "gif":
        a = np.zeros((16, 16), np.uint8)
        a[8:] = 1  # index 1 (red) transparent, the background index 0 (green)
        g = Image.fromarray(a, "P")
        g.putpalette([0, 255, 0, 255, 0, 0] + [0] * 762)
        g.save(f, transparency=1, background=0)
    else:
        if "AVIF" not in Image.registered_extensions().values():
            pytest.skip("this Pillow writes no AVIF")
        r = np.zeros((16, 16, 4), np.uint8)
        r[..., 0] = r[..., 3] = 255
        r[8:, :, 3] = 0
        Image.fromarray(r).save(f)
    from_path = to_rgb(f)
    with Image.open(f) as im:
        assert torch.equal(from_path, to_rgb(im))
        pillow = np.asarray(im.convert("RGBA").convert("RGB"))
    assert torch.equal(from_path, to_rgb(Image.open(io.BytesIO(f.read_bytes()))))
    assert from_path[:, -1, 0].tolist() == pillow[-1, 0].tolist()
    assert from_path[0, -1, 0] >= 250  # red, the colour under the transparent pixels


def test_a_process_that_cannot_import_torchcodec_falls_back(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(CASES["jpeg_rgb"])
    code = (
        "import sys; sys.modules['torchcodec'] = None\n"  # import torchcodec -> ImportError
        "from fastcore_ext.data import images\n"
        f"imgs = [images.to_rgb({str(p)!r}) for _ in range(3)]\n"
        "print(images.image_decoder(), tuple(imgs[0].shape))\n"
    )
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["torchvision", "(3,", "37,", "53)"]
    assert res.stderr.count("TorchCodec cannot be imported (ModuleNotFoundError") == 1
    assert "DeprecationWarning" not in res.stderr


@pytest.mark.parametrize("hw", [(2, 100), (100, 2), (1, 30000)])
def test_presize_whole_keeps_at_most_max_aspect_short_sides(hw):
    """A banner of 30000 x 1 px became 280 x 8.4 million px (gigabytes, per image, in memory
    and in the cache): the long side keeps MAX_ASPECT times the presize, centred."""
    size, short = 16, min(hw)
    img = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (3, *hw), dtype=np.uint8))
    out = presize_whole(img, size)
    long = images_mod.MAX_ASPECT * size
    assert out.shape == ((3, size, long) if hw[0] < hw[1] else (3, long, size))
    start = (max(hw) - short) // 2  # fastai's centre crop: the short side's square
    centre = img[:, :, start : start + short] if hw[0] < hw[1] else img[:, start : start + short]
    ref = torch.nn.functional.interpolate(centre[None], (size, size), mode="bilinear",
                                          antialias=True)[0]  # fmt: skip
    torch.testing.assert_close(presize(img, size), ref, rtol=0, atol=0)


# -- decompression bombs: the header's size against PIL.Image.MAX_IMAGE_PIXELS -----------------

BOMB_FORMATS = {
    "jpeg": ("JPEG", {}),
    "jpeg_progressive": ("JPEG", {"progressive": True}),
    "png": ("PNG", {}),
    "gif": ("GIF", {}),
    "webp_lossy": ("WEBP", {"quality": 80}),
    "webp_lossless": ("WEBP", {"lossless": True}),
    "bmp": ("BMP", {}),
    "tiff": ("TIFF", {}),
    "avif": ("AVIF", {}),
    "ppm": ("PPM", {}),
}


def _encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(BOMB_FORMATS))
def test_image_size_reads_the_header_of_every_format(case):
    fmt, kw = BOMB_FORMATS[case]
    h, w = 31, 47
    arr = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    data = _encode(arr, fmt, **kw)
    assert images_mod.image_size(data) == (w, h)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (w, h)


def test_image_size_of_an_extended_webp_a_jpeg_with_exif_and_a_top_down_bmp():
    arr = np.random.default_rng(2).integers(0, 256, (21, 34, 4), dtype=np.uint8)
    webp = _encode(arr, "WEBP", quality=70)  # alpha: the VP8X header
    assert webp[12:16] == b"VP8X" and images_mod.image_size(webp) == (34, 21)
    exif = Image.Exif()
    exif[0x0112] = 6
    assert images_mod.image_size(_encode(arr[..., :3], "JPEG", exif=exif.tobytes())) == (34, 21)
    bmp = bytearray(_encode(arr[..., :3], "BMP"))
    bmp[22:26] = (-21).to_bytes(4, "little", signed=True)  # rows stored top-down
    assert images_mod.image_size(bytes(bmp)) == (34, 21)
    for garbage in (b"", b"\xff\xd8\xff", b"not an image", b"\x89PNG\r\n\x1a\n"):
        assert images_mod.image_size(garbage) is None


@pytest.mark.parametrize("case", sorted(BOMB_FORMATS))
def test_an_image_over_max_image_pixels_is_refused_before_decoding(tmp_path, monkeypatch, case):
    fmt, kw = BOMB_FORMATS[case]
    h, w = 30, 40
    p = tmp_path / f"big.{case}"
    p.write_bytes(_encode(np.zeros((h, w, 3), np.uint8), fmt, **kw))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", w * h)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert to_rgb(p).shape == (3, h, w)  # at the limit: decoded
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", w * h // 2)  # up to twice: as Pillow
    with pytest.warns(Image.DecompressionBombWarning, match=rf"{p.name}: its header declares"):
        assert to_rgb(p).shape == (3, h, w)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", w * h // 2 - 1)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(images_mod, "_decode_bytes", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with warnings.catch_warnings():  # Pillow's header reader (TIFF, AVIF, PPM) warns too
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(BadImageError) as err:
            to_rgb(p)
    msg = str(err.value)
    if fmt in ("TIFF", "AVIF", "PPM"):  # Pillow's header reader refuses it first
        assert msg.startswith(f"{p}: refused before decoding (Image size (1200 pixels)")
        assert "raise PIL.Image.MAX_IMAGE_PIXELS" in msg
    else:
        assert msg.startswith(f"{p}: its header declares 40 x 30 = 1,200 pixels")
        assert "more than twice PIL.Image.MAX_IMAGE_PIXELS (599)" in msg
        assert "PIL.Image.MAX_IMAGE_PIXELS = 1200" in msg
    monkeypatch.undo()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # no limit, as in Pillow
    assert to_rgb(p).shape == (3, h, w)


def _bomb(path: Path, side: int) -> Path:
    """A valid PNG of side x side black pixels, written row by row (zlib shrinks a row of
    zeros ~1000x: 2000 x 2000 is ~12 KB), never held decoded in memory."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)  # filter byte 0, RGB zeros
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_a_decompression_bomb_is_refused_where_images_are_decoded(tmp_path, monkeypatch, capsys):
    """open_image, load_image (preprocess, predict), the training loader's decode (skipped
    and named) and verify_images: all read the header first. The bomb is 2000 x 2000 with the
    limit lowered to a million pixels (a 60000 x 60000 one is the same header, 10 MB)."""
    from fastcore_ext.data import open_image
    from fastcore_ext.data.loader import decode_readable

    bomb = _bomb(tmp_path / "bomb.png", 2000)
    assert bomb.stat().st_size < 100_000
    with Image.open(bomb) as im:
        assert im.size == (2000, 2000)
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    match = r"bomb.png: its header declares 2000 x 2000 = 4,000,000 pixels, more than twice PIL"
    for read in (open_image, to_rgb, lambda f: load_image(f, 16)):
        with pytest.raises(BadImageError, match=match):
            read(bomb)
    d = decode_readable([good, bomb], [0, 1], 8, "crop")
    assert d.kept == [0] and d.bad == [1]
    assert verify_images([good, bomb]) == [bomb]
    assert "4,000,000 pixels" in capsys.readouterr().out
    assert verify_images([good, bomb], delete=True) == [bomb] and bomb.exists()  # not broken
    assert "(kept: the file may be a good photo" in capsys.readouterr().out
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_500_000)  # up to twice: decoded, warned
    with pytest.warns(Image.DecompressionBombWarning, match="bomb.png"):
        assert to_rgb(bomb).shape == (3, 2000, 2000)
    assert verify_images([good, bomb], delete=True) == [] and bomb.exists()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000_000)
    assert to_rgb(bomb).shape == (3, 2000, 2000)


def _large_jpeg(path: Path, h: int = 1350, w: int = 1800, mode: str = "RGB", **save) -> Path:
    """A smooth photo-sized JPEG (the size where reduced decoding starts for small presizes)."""
    img = Image.fromarray(_hwc(_smooth(h, w, seed=3)))
    img.convert(mode).save(path, quality=92, **save)
    return path


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def test_a_large_jpeg_is_decoded_reduced_by_the_largest_factor_that_keeps_min_side(tmp_path):
    p = _large_jpeg(tmp_path / "big.jpg")  # 1800 x 1350
    assert to_rgb(p).shape == (3, 1350, 1800)  # no min_side: whole
    assert to_rgb(p, min_side=128).shape == (3, 169, 225)  # 1/8: 169 >= 128
    assert to_rgb(p, min_side=200).shape == (3, 338, 450)  # 1/4 (1/8 would give 169)
    assert to_rgb(p, min_side=600).shape == (3, 675, 900)  # 1/2
    assert to_rgb(p, min_side=700).shape == (3, 1350, 1800)  # 1350 < 2 * 700: whole
    whole = to_rgb(p)
    np.testing.assert_array_equal(to_rgb(p, min_side=700), whole)  # the same decoder


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("size", [64, 160])
def test_load_whole_of_a_reduced_jpeg_is_the_whole_decodes_presize_near_rounding(
    tmp_path, mode, size
):
    p = _large_jpeg(tmp_path / f"big_{mode}.jpg", mode=mode)
    reduced = images_mod.load_whole(p, size)
    whole = presize_whole(to_rgb(p), size)
    assert reduced.shape == whole.shape and whole.shape[1] == size
    assert _psnr(reduced, whole) > 40, _psnr(reduced, whole)
    assert load_image(p, size).shape == (3, size, size)


def test_jpeg_reducing_gap_none_decodes_whole_and_a_bad_value_is_named(tmp_path, monkeypatch):
    p = _large_jpeg(tmp_path / "big.jpg")
    whole = presize_whole(to_rgb(p), 64)
    assert not torch.equal(images_mod.load_whole(p, 64), whole)  # reduced by default
    monkeypatch.setattr(images_mod, "JPEG_REDUCING_GAP", None)
    np.testing.assert_array_equal(images_mod.load_whole(p, 64), whole)
    np.testing.assert_array_equal(load_image(p, 64), presize(to_rgb(p), 64))
    monkeypatch.setattr(images_mod, "JPEG_REDUCING_GAP", 4)  # 1350 // 256 = 5 -> 1/4
    assert images_mod.reduced_min_side(64) == 256
    for bad in (0.5, "2", True):
        monkeypatch.setattr(images_mod, "JPEG_REDUCING_GAP", bad)
        with pytest.raises(ValueError, match="JPEG_REDUCING_GAP: expected a number >= 1 or None"):
            images_mod.load_whole(p, 64)


@pytest.mark.parametrize("orientation,rot", [(3, 2), (6, -1), (8, 1)])
def test_a_reduced_jpeg_is_turned_by_its_exif_orientation(tmp_path, orientation, rot):
    img = Image.fromarray(_hwc(_smooth(1350, 1800, seed=4)))
    exif = img.getexif()
    exif[0x0112] = orientation
    p = tmp_path / "turned.jpg"
    img.save(p, exif=exif, quality=92)
    whole = to_rgb(p)  # TorchCodec applies the orientation
    reduced = to_rgb(p, min_side=128)
    assert reduced.shape[1:] == (whole.shape[1] // 8 + (whole.shape[1] % 8 > 0),) + (
        whole.shape[2] // 8 + (whole.shape[2] % 8 > 0),
    )
    assert _psnr(presize_whole(reduced, 64), presize_whole(whole, 64)) > 40


def test_a_truncated_large_jpeg_is_read_as_the_whole_decode_reads_it(tmp_path, monkeypatch):
    """Pillow refuses the truncated file in the reduced decode; the whole decode then says
    what it says of it (here: the file named as unreadable)."""
    p = _large_jpeg(tmp_path / "cut_photo.jpg")
    p.write_bytes(p.read_bytes()[:20000])
    with pytest.raises(BadImageError, match="cut_photo.jpg: cannot decode image"):
        images_mod.load_whole(p, 64)
    monkeypatch.setattr(images_mod, "JPEG_REDUCING_GAP", None)
    with pytest.raises(BadImageError, match="cut_photo.jpg: cannot decode image"):
        images_mod.load_whole(p, 64)


def test_resize_images_as_the_courses_bird_notebook(tmp_path):
    """fastai v2's resize_images(path, max_size=400, dest=path) was missing (NameError)."""
    from fastcore_ext.vision import resize_images

    src = tmp_path / "birds"
    (src / "sub").mkdir(parents=True)
    Image.new("RGB", (800, 400), (10, 200, 30)).save(src / "big.jpg")
    Image.new("RGB", (100, 50), (1, 2, 3)).save(src / "small.png")
    Image.new("L", (60, 60), 128).save(src / "gray.png")
    Image.new("RGB", (900, 300)).save(src / "sub" / "deep.jpg")
    small_before = (src / "small.png").read_bytes()
    resize_images(src, max_size=400, dest=src)  # in place, as the notebook does
    with Image.open(src / "big.jpg") as im:
        assert im.size == (400, 200) and im.format == "JPEG"
    assert (src / "small.png").read_bytes() == small_before  # small enough, RGB: untouched
    with Image.open(src / "gray.png") as im:
        assert im.mode == "RGB" and im.size == (60, 60)  # n_channels=3
    with Image.open(src / "sub" / "deep.jpg") as im:
        assert im.size == (900, 300)  # recurse=False, as fastai's
    out = tmp_path / "out"
    resize_images(src, max_size=300, dest=out, recurse=True, ext=".png")
    with Image.open(out / "sub" / "deep.png") as im:
        assert im.size == (300, 100) and im.format == "PNG"
    assert sorted(p.name for p in out.rglob("*.png")) == [
        "big.png",
        "deep.png",
        "gray.png",
        "small.png",
    ]
    with pytest.raises(FileNotFoundError, match="path: no such folder"):
        resize_images(tmp_path / "nowhere", max_size=10)
    with pytest.raises(ValueError, match="max_size: expected a positive int"):
        resize_images(src, max_size=0)
