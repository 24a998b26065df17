"""ops.augment_normalize against reference.py (float64), F.grid_sample and torchvision.

Tolerances (TESTING.md: assert_close defaults unless written down here):

* Nearest sampling reads exact pixel values, so the only differences are float32 rounding of
  the normalization and the lighting curve: assert_close defaults. Pixels whose source
  coordinate lies within the coordinate error bound (below) of a rounding tie (x.5) may round
  the other way; they are left out of the comparison (their number is checked to be tiny).
* Bilinear sampling: the kernel computes source coordinates in float32 (per-row terms rounded
  from double, one fma per pixel, the reflection fold), so a coordinate is off by a few ulp of
  its magnitude: |d| <= COORD_ULPS * EPS32 * S with S = 2 max(H, W) bounding the coordinates
  used here. Bilinear interpolation is 1-Lipschitz per coordinate in [0, 1] units (neighbours
  differ by at most 1), so the sampled value moves by at most 2 |d|; normalization multiplies
  that by 1 / std, and lighting by the curve's largest slope (computed per test). That bound
  is the atol (plus the default 1e-5); rtol stays the default. F.grid_sample in float32 has
  the same kind of error, so comparisons with it use twice the bound.
* bfloat16 / float16 outputs: the float32 bound as atol and the dtype's default rtol.
"""

import math
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastcore_ext
from fastcore_ext import checks, ops
from fastcore_ext.reference import augment_normalize_reference, reference_grid

MEAN3 = (0.485, 0.456, 0.406)
STD3 = (0.229, 0.224, 0.225)
MODES = ("bilinear", "nearest")
PADS = ("zeros", "border", "reflection")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
EPS32 = 2.0**-24
COORD_ULPS = 8
DTYPE_RTOL = {torch.float32: 1.3e-6, torch.bfloat16: 1.6e-2, torch.float16: 1e-3}


# ---- inputs ------------------------------------------------------------------------------------


def stats(C: int) -> tuple[list[float], list[float]]:
    return (list(MEAN3[:C]), list(STD3[:C])) if C == 3 else ([0.45], [0.25])


def rand_images(B, C, H, W, layout="nchw", seed=0) -> torch.Tensor:
    """Random uint8 [B, C, H, W]; layout nchw, cl (channels_last) or view (a strided view)."""
    g = torch.Generator().manual_seed(seed)
    if layout == "view":  # every other column of a wider NHWC batch, from the second image on
        base = torch.randint(0, 256, (B + 1, H, 2 * W + 1, C), dtype=torch.uint8, generator=g)
        x = base[1:, :, 1::2, :].permute(0, 3, 1, 2)
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        return x
    x = torch.randint(0, 256, (B, C, H, W), dtype=torch.uint8, generator=g)
    return x.contiguous(memory_format=torch.channels_last) if layout == "cl" else x


def rand_affine(B, seed=0, zoom=(0.6, 1.4), shift=0.5, flip=True) -> torch.Tensor:
    """Random rotation, anisotropic zoom, flips and translation: float32 [B, 3, 3]. The points
    stay within about one image size of the image, so coordinates are bounded by 2 max(H, W)."""
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    ang = (u(B) - 0.5) * 1.2
    sx = zoom[0] + (zoom[1] - zoom[0]) * u(B)
    sy = zoom[0] + (zoom[1] - zoom[0]) * u(B)
    if flip:
        sx = torch.where(u(B) < 0.5, -sx, sx)
    m = torch.zeros(B, 3, 3)
    m[:, 0, 0], m[:, 0, 1] = sx * ang.cos(), -sy * ang.sin()
    m[:, 1, 0], m[:, 1, 1] = sx * ang.sin(), sy * ang.cos()
    m[:, 0, 2], m[:, 1, 2] = (u(B) - 0.5) * 2 * shift, (u(B) - 0.5) * 2 * shift
    m[:, 2, 2] = 1
    return m


def rand_perspective(B, seed=0) -> torch.Tensor:
    """Affine matrices with a last row (p, q, 1), |p|, |q| <= 0.25: the divisor stays >= 0.5."""
    m = rand_affine(B, seed, zoom=(0.7, 1.1), shift=0.3)
    g = torch.Generator().manual_seed(seed + 1000)
    m[:, 2, :2] = (torch.rand(B, 2, generator=g) - 0.5) * 0.5
    return m


def rand_lighting(B, seed=0) -> torch.Tensor:
    """fastai's ranges for max_lighting=0.2: brightness in [0.4, 0.6], contrast in [0.8, 1.25]."""
    g = torch.Generator().manual_seed(seed)
    b = 0.4 + 0.2 * torch.rand(B, generator=g)
    c = torch.exp((torch.rand(B, generator=g) - 0.5) * 2 * math.log(1.25))
    return torch.stack([b, c], 1)


def max_light_slope(lighting: torch.Tensor | None) -> float:
    """Largest |dy/dx| of the lighting curves on [1e-6, 1 - 1e-6] (1 without lighting)."""
    if lighting is None:
        return 1.0
    x = torch.cat([torch.logspace(-6, -0.31, 2000, dtype=torch.float64), torch.tensor([0.5])])
    x = torch.cat([x, 1 - x])
    b, c = lighting.double()[:, :1], lighting.double()[:, 1:]
    y = torch.sigmoid(c * (torch.logit(x) + torch.logit(b)))
    slope = c * y * (1 - y) / (x * (1 - x))
    return max(1.0, float(slope.max()))


def bilinear_atol(H, W, std, lighting=None) -> float:
    coord = COORD_ULPS * EPS32 * 2 * max(H, W)
    return 1e-5 + 2 * coord * max_light_slope(lighting) / min(std)


def padded_coords64(matrices, H, W, out_h, out_w, pad_mode):
    """float64 source pixel coordinates after grid_sample's padding rule (align_corners=False)."""
    g = reference_grid(matrices.double(), out_h, out_w)
    out = []
    for k, size in ((0, W), (1, H)):
        v = ((g[..., k] + 1) * size - 1) / 2
        if pad_mode == "reflection":
            t = (v + 0.5).abs()
            extra = torch.fmod(t, size)
            flips = torch.floor(t / size)
            v = torch.where(flips % 2 == 0, extra - 0.5, size - extra - 0.5)
        if pad_mode != "zeros":
            v = v.clamp(0, size - 1)
        out.append(v)
    return out


def near_tie(matrices, H, W, out_h, out_w, pad_mode) -> torch.Tensor:
    """[B, out_h, out_w] True where nearest rounding may go either way in float32."""
    tol = COORD_ULPS * EPS32 * 2 * max(H, W)
    x, y = padded_coords64(matrices, H, W, out_h, out_w, pad_mode)
    tie = lambda v: ((v - v.floor()) - 0.5).abs() < tol  # noqa: E731
    return tie(x) | tie(y)


def compare(out, ref, *, mode, atol, rtol, skip=None):
    """assert_close, leaving out pixels flagged in skip ([B, H, W]) for nearest."""
    if mode == "nearest" and skip is not None and skip.any():
        assert skip.double().mean() < 0.01, "too many near-tie pixels for a meaningful test"
        keep = ~skip.unsqueeze(1).expand_as(out)
        out, ref = out[keep], ref[keep]
    torch.testing.assert_close(out.double(), ref.double(), atol=atol, rtol=rtol)


def run_both(images, matrices, size, **kw):
    out = ops.augment_normalize(images, matrices, size, **kw)
    kw.pop("out_dtype", None)
    kw.pop("channels_last", None)
    if kw.get("lighting") is not None:
        kw["lighting"] = kw["lighting"].cpu()
    ref = augment_normalize_reference(images.cpu(), matrices.cpu(), size, **kw)
    return out, ref


# ---- against the float64 reference, every combination ------------------------------------------


@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("layout_in", ["nchw", "cl"])
@pytest.mark.parametrize("out_cl", [False, True], ids=["out_nchw", "out_cl"])
@pytest.mark.parametrize("out_dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("pad_mode", PADS)
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference(device, mode, pad_mode, out_dtype, out_cl, layout_in, C):
    B, H, W, out_h, out_w = 3, 21, 26, 17, 19
    seed = zlib.crc32(f"{mode}{pad_mode}{C}{layout_in}".encode()) % 1000
    images = rand_images(B, C, H, W, layout_in, seed).to(device)
    matrices = rand_affine(B, seed)
    lighting = rand_lighting(B, seed) if out_cl else None  # both, across the matrix
    mean, std = stats(C)
    out = ops.augment_normalize(
        images,
        matrices.to(device),
        (out_h, out_w),
        mean=mean,
        std=std,
        lighting=None if lighting is None else lighting.to(device),
        mode=mode,
        pad_mode=pad_mode,
        out_dtype=out_dtype,
        channels_last=out_cl,
    )
    assert out.shape == (B, C, out_h, out_w)
    assert out.dtype == out_dtype and out.device == images.device
    fmt = torch.channels_last if out_cl else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    ref = augment_normalize_reference(
        images.cpu(),
        matrices,
        (out_h, out_w),
        mean=mean,
        std=std,
        lighting=lighting,
        mode=mode,
        pad_mode=pad_mode,
    )
    assert torch.isfinite(out).all()
    atol = 1e-5 if mode == "nearest" else bilinear_atol(H, W, std, lighting)
    skip = near_tie(matrices, H, W, out_h, out_w, pad_mode)
    compare(
        out.cpu(), ref.to(out_dtype), mode=mode, atol=atol, rtol=DTYPE_RTOL[out_dtype], skip=skip
    )


@pytest.mark.parametrize("pad_mode", PADS)
@pytest.mark.parametrize("mode", MODES)
def test_matches_grid_sample(device, mode, pad_mode):
    """The issue's definition for affine matrices, with torch's own float32 ops."""
    B, C, H, W, out_h, out_w = 4, 3, 30, 24, 20, 22
    images = rand_images(B, C, H, W, "cl", seed=7).to(device)
    matrices = rand_affine(B, seed=8).to(device)
    lighting = rand_lighting(B, seed=9).to(device)
    out = ops.augment_normalize(
        images,
        matrices,
        (out_h, out_w),
        mean=MEAN3,
        std=STD3,
        lighting=lighting,
        mode=mode,
        pad_mode=pad_mode,
    )
    grid = F.affine_grid(matrices[:, :2], [B, C, out_h, out_w], align_corners=False)
    y = F.grid_sample(
        images.float() / 255, grid, mode=mode, padding_mode=pad_mode, align_corners=False
    )
    b, c = lighting[:, 0].view(-1, 1, 1, 1), lighting[:, 1].view(-1, 1, 1, 1)
    y = torch.sigmoid(c * (torch.logit(y.clamp(1e-6, 1 - 1e-6)) + torch.logit(b)))
    y = (y - torch.tensor(MEAN3, device=device).view(1, 3, 1, 1)) / torch.tensor(
        STD3, device=device
    ).view(1, 3, 1, 1)
    if mode == "nearest":
        # float32 logit/sigmoid of torch: a few ulp of y, times 1/std
        atol = 1e-5 + 8 * EPS32 * max_light_slope(lighting.cpu()) / min(STD3)
    else:
        atol = 2 * bilinear_atol(H, W, STD3, lighting.cpu())
    skip = near_tie(matrices.cpu(), H, W, out_h, out_w, pad_mode)
    compare(out.cpu(), y.cpu(), mode=mode, atol=atol, rtol=1e-5, skip=skip)


@pytest.mark.parametrize("pad_mode", PADS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("C", [1, 3])
def test_perspective(device, mode, pad_mode, C):
    B, H, W, out_h, out_w = 3, 25, 22, 18, 21
    images = rand_images(B, C, H, W, "cl", seed=11).to(device)
    matrices = rand_perspective(B, seed=12)
    mean, std = stats(C)
    lighting = rand_lighting(B, seed=13)
    out, ref = run_both(
        images,
        matrices.to(device),
        (out_h, out_w),
        mean=mean,
        std=std,
        lighting=lighting.to(device),
        mode=mode,
        pad_mode=pad_mode,
    )
    # the divisor |D| >= 0.5 at most doubles the coordinates' magnitude and error
    atol = 1e-5 if mode == "nearest" else 2 * bilinear_atol(H, W, std, lighting)
    skip = near_tie(matrices, H, W, out_h, out_w, pad_mode)
    compare(out.cpu(), ref, mode=mode, atol=atol, rtol=1.3e-6, skip=skip)


def test_lighting_curve_exact_values(device):
    """Nearest sampling on an identity map reads every pixel exactly: the lighting curve and
    the normalization alone are compared, on all 256 levels and extreme (b, c)."""
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    images = levels.expand(6, 3, 16, 16).contiguous().to(device)
    matrices = torch.eye(3).expand(6, 3, 3).contiguous()
    lighting = torch.tensor(
        [[0.5, 1.0], [0.4, 0.8], [0.6, 1.25], [0.05, 3.0], [0.97, 0.2], [0.5, 40.0]]
    )
    out, ref = run_both(
        images,
        matrices.to(device),
        16,
        mean=MEAN3,
        std=STD3,
        lighting=lighting.to(device),
        mode="nearest",
    )
    torch.testing.assert_close(out.cpu(), ref.float())


# ---- exact cases -------------------------------------------------------------------------------


def crop_matrix(H, W, top, left, h, w, hflip=False, vflip=False) -> torch.Tensor:
    """Output pixel (i, j) of an h x w output -> input pixel (top + i, left + j), flipped."""
    ax, ay = w / W, h / H
    bx, by = (2 * left + w) / W - 1, (2 * top + h) / H - 1
    return torch.tensor(
        [[-ax if hflip else ax, 0, bx], [0, -ay if vflip else ay, by], [0, 0, 1]],
        dtype=torch.float32,
    )


@pytest.mark.parametrize("layout", ["nchw", "cl", "view"])
@pytest.mark.parametrize("pad_mode", PADS)
def test_crops_and_flips_equal_torchvision(device, pad_mode, layout):
    import torchvision.transforms.v2.functional as TF

    B, C, H, W = 6, 3, 23, 31
    images = rand_images(B, C, H, W, layout, seed=3).to(device)
    g = torch.Generator().manual_seed(4)
    for b in range(B):
        h, w = (int(v) for v in torch.randint(1, 12, (2,), generator=g))
        top = int(torch.randint(0, H - h + 1, (1,), generator=g))
        left = int(torch.randint(0, W - w + 1, (1,), generator=g))
        hf, vf = bool(b % 2), bool(b % 3 == 0)
        ref = TF.crop(images[b], top, left, h, w)
        ref = TF.horizontal_flip(ref) if hf else ref
        ref = TF.vertical_flip(ref) if vf else ref
        m = crop_matrix(H, W, top, left, h, w, hf, vf)
        out = ops.augment_normalize(
            images[b : b + 1],
            m.unsqueeze(0).to(device),
            (h, w),
            mean=[0.0] * C,
            std=[1.0] * C,
            mode="nearest",
            pad_mode=pad_mode,
        )
        got = (out[0] * 255).round().to(torch.uint8)
        assert torch.equal(got, ref), f"sample {b}: crop ({top}, {left}, {h}, {w}) hf={hf} vf={vf}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["nchw", "cl", "view"])
def test_identity_matrix_is_exact(device, mode, layout):
    """Same size, identity matrix: every sample point is a pixel centre, bilinear too."""
    images = rand_images(3, 3, 13, 17, layout, seed=5).to(device)
    eye = torch.eye(3).expand(3, 3, 3).contiguous().to(device)
    out = ops.augment_normalize(images, eye, (13, 17), mean=[0, 0, 0], std=[1, 1, 1], mode=mode)
    assert torch.equal((out * 255).round().to(torch.uint8), images.contiguous())


def test_nearest_zoom_out_by_half_is_exact(device):
    """A 2x downscale: every point falls on a half-pixel and nearest rounds half to even,
    exactly as grid_sample in float32 (whose float64 path rounds some of these ties up)."""
    images = rand_images(2, 3, 16, 16, "cl", seed=6).to(device)
    eye = torch.eye(3).expand(2, 3, 3).contiguous().to(device)
    out = ops.augment_normalize(
        images, eye, 8, mean=[0, 0, 0], std=[1, 1, 1], mode="nearest", pad_mode="border"
    )
    grid = F.affine_grid(eye[:, :2], [2, 3, 8, 8], align_corners=False)
    ref = F.grid_sample(images.float(), grid, mode="nearest", align_corners=False)
    assert torch.equal((out * 255).round(), ref)


# ---- shapes, layouts, batching -----------------------------------------------------------------


@pytest.mark.parametrize("out_cl", [False, True])
def test_empty_batch(device, out_cl):
    images = torch.empty(0, 3, 10, 12, dtype=torch.uint8, device=device)
    out = ops.augment_normalize(
        images,
        torch.empty(0, 3, 3, device=device),
        (5, 7),
        mean=MEAN3,
        std=STD3,
        lighting=torch.empty(0, 2, device=device),
        channels_last=out_cl,
    )
    assert out.shape == (0, 3, 5, 7) and out.dtype == torch.float32


@pytest.mark.parametrize("pad_mode", PADS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "shape", [(1, 1, 1, 1), (3, 1, 1, 1), (2, 3, 1, 1), (2, 3, 1, 5), (2, 1, 4, 1)]
)
def test_tiny_images(device, shape, mode, pad_mode):
    """1-pixel (and 1-row / 1-column) inputs, to 1-pixel and small outputs."""
    B, C, H, W = shape
    images = rand_images(B, C, H, W, "nchw", seed=sum(shape)).to(device)
    mean, std = stats(C)
    for size in [(1, 1), (3, 4)]:
        matrices = rand_affine(B, seed=size[1])
        out, ref = run_both(
            images, matrices.to(device), size, mean=mean, std=std, mode=mode, pad_mode=pad_mode
        )
        skip = near_tie(matrices, H, W, *size, pad_mode)
        atol = 1e-5 if mode == "nearest" else bilinear_atol(H, W, std)
        compare(out.cpu(), ref, mode=mode, atol=atol, rtol=1.3e-6, skip=skip)


def test_size_forms(device):
    """size: an int, a tuple or list of two, numpy integers."""
    import numpy as np

    images = rand_images(2, 3, 9, 9, "cl", seed=8).to(device)
    m = rand_affine(2, seed=9).to(device)
    a = ops.augment_normalize(images, m, 5, mean=MEAN3, std=STD3)
    b = ops.augment_normalize(images, m, (5, 5), mean=MEAN3, std=STD3)
    c = ops.augment_normalize(images, m, [np.int64(5), np.int32(5)], mean=MEAN3, std=STD3)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert ops.augment_normalize(images, m, (3, 7), mean=MEAN3, std=STD3).shape == (2, 3, 3, 7)


def test_one_pixel_output_samples_the_centre(device):
    images = rand_images(2, 3, 9, 9, "cl", seed=2).to(device)
    eye = torch.eye(3).expand(2, 3, 3).contiguous().to(device)
    out = ops.augment_normalize(images, eye, 1, mean=[0, 0, 0], std=[1, 1, 1], mode="bilinear")
    assert torch.equal((out[..., 0, 0] * 255).round().to(torch.uint8), images[:, :, 4, 4])


def test_non_contiguous_views(device):
    """Slices and permutes are read through their strides, never copied first."""
    base = rand_images(4, 3, 40, 50, "nchw", seed=21).to(device)
    views = [
        base[1:3, :, 5:30, 7:40],  # cropped NCHW
        base.permute(0, 1, 3, 2),  # transposed H/W
        base[:, :, ::2, ::3],  # strided
        base[:, 1:2],  # one channel of three
        base.expand(4, 3, 40, 50)[:, :, :, 10:].permute(0, 1, 3, 2),  # transposed crop
    ]
    for v in views:
        B, C, H, W = v.shape
        m = rand_affine(B, seed=B * W)
        mean, std = stats(C)
        lt = rand_lighting(B, seed=H)
        out, ref = run_both(v, m.to(device), (11, 13), mean=mean, std=std, lighting=lt.to(device))
        compare(out.cpu(), ref, mode="bilinear", atol=bilinear_atol(H, W, std, lt), rtol=1.3e-6)


def test_input_never_modified(device):
    images = rand_images(3, 3, 20, 20, "cl", seed=31).to(device)
    matrices, lighting = rand_affine(3, seed=32).to(device), rand_lighting(3, seed=33).to(device)
    copies = [t.clone() for t in (images, matrices, lighting)]
    ops.augment_normalize(images, matrices, 15, mean=MEAN3, std=STD3, lighting=lighting)
    for t, c in zip((images, matrices, lighting), copies, strict=True):
        assert torch.equal(t, c)


@pytest.mark.parametrize("mode", MODES)
def test_batched_equals_per_sample(device, mode):
    images = rand_images(5, 3, 19, 23, "cl", seed=41).to(device)
    matrices = torch.cat([rand_affine(3, seed=42), rand_perspective(2, seed=43)]).to(device)
    lighting = rand_lighting(5, seed=44).to(device)
    kw = dict(mean=MEAN3, std=STD3, mode=mode, pad_mode="reflection")
    batch = ops.augment_normalize(images, matrices, (14, 9), lighting=lighting, **kw)
    for b in range(5):
        one = ops.augment_normalize(
            images[b : b + 1], matrices[b : b + 1], (14, 9), lighting=lighting[b : b + 1], **kw
        )
        assert torch.equal(batch[b : b + 1], one)


@pytest.mark.parametrize("pad_mode", PADS)
def test_non_finite_matrices_stay_in_bounds(device, pad_mode):
    """NaN/inf coordinates read no memory outside the image: padding or the clamped edge."""
    images = rand_images(4, 3, 12, 12, "cl", seed=51).to(device)
    m = rand_affine(4, seed=52)
    m[0, 0, 0] = float("nan")
    m[1, 1, 2] = float("inf")
    m[2, 0, 1] = -float("inf")
    m[3, 2, 2] = 0.0  # perspective divisor 0
    for mode in MODES:
        out = ops.augment_normalize(
            images, m.to(device), 9, mean=MEAN3, std=STD3, mode=mode, pad_mode=pad_mode
        )
        assert torch.isfinite(out).all()


# ---- implementations agree ---------------------------------------------------------------------


def _cpu_has_avx2() -> bool:
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@pytest.mark.skipif(not _cpu_has_avx2(), reason="the CPU has no AVX2")
@pytest.mark.parametrize("pad_mode", PADS)
@pytest.mark.parametrize("mode", MODES)
def test_avx2_path_equals_portable_path(monkeypatch, mode, pad_mode):
    """The row kernel is one text compiled twice; every operation is the same IEEE operation,
    so the two paths agree bit for bit (layouts, dtypes, lighting, perspective, tails)."""
    cases = []
    for k, (C, layout) in enumerate([(3, "cl"), (3, "nchw"), (1, "nchw"), (3, "view")]):
        images = rand_images(3, C, 17, 29, layout, seed=60 + k)
        m = torch.cat([rand_affine(2, seed=70 + k), rand_perspective(1, seed=80 + k)])
        m[0] *= 1.6  # reaches the padding on every side
        m[0, 2] = torch.tensor([0.0, 0.0, 1.0])
        for out_dtype, out_cl in [
            (torch.float32, False),
            (torch.bfloat16, True),
            (torch.float16, C == 3),
        ]:
            cases.append(
                (images, m, out_dtype, out_cl, rand_lighting(3, seed=k) if k % 2 else None)
            )
    results = {}
    for path in ("avx2", "portable"):
        monkeypatch.setenv("FASTCORE_EXT_AUGMENT_CPU", path)
        results[path] = [
            ops.augment_normalize(
                im,
                m,
                (13, 21),
                mean=stats(im.shape[1])[0],
                std=stats(im.shape[1])[1],
                lighting=lt,
                mode=mode,
                pad_mode=pad_mode,
                out_dtype=dt,
                channels_last=cl,
            )
            for im, m, dt, cl, lt in cases
        ]
    for a, p in zip(results["avx2"], results["portable"], strict=True):
        assert torch.equal(a, p)


def test_cpu_path_env_var_is_checked(monkeypatch):
    monkeypatch.setenv("FASTCORE_EXT_AUGMENT_CPU", "fastest")
    with pytest.raises(ValueError, match="FASTCORE_EXT_AUGMENT_CPU should be"):
        ops.augment_normalize(rand_images(1, 3, 4, 4), torch.eye(3)[None], 3, mean=MEAN3, std=STD3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("pad_mode", PADS)
@pytest.mark.parametrize("mode", MODES)
def test_cpu_equals_cuda(mode, pad_mode):
    images = rand_images(6, 3, 33, 41, "cl", seed=90)
    m = torch.cat([rand_affine(4, seed=91), rand_perspective(2, seed=92)])
    lt = rand_lighting(6, seed=93)
    kw = dict(mean=MEAN3, std=STD3, mode=mode, pad_mode=pad_mode)
    cpu = ops.augment_normalize(images, m, (27, 30), lighting=lt, **kw)
    gpu = ops.augment_normalize(images.cuda(), m.cuda(), (27, 30), lighting=lt.cuda(), **kw)
    atol = 1e-5 if mode == "nearest" else 4 * bilinear_atol(33, 41, STD3, lt)
    compare(
        gpu.cpu(), cpu, mode=mode, atol=atol, rtol=1e-5, skip=near_tie(m, 33, 41, 27, 30, pad_mode)
    )


_GUARD_PAGE_SCRIPT = textwrap.dedent(
    """
    import ctypes, mmap, os, sys, torch
    from fastcore_ext import ops
    PAGE = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    mem = mmap.mmap(-1, 2 * PAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    assert libc.mprotect(addr + PAGE, PAGE, 0) == 0  # PROT_NONE: reading past the end faults
    for path in sys.argv[1:]:
        os.environ["FASTCORE_EXT_AUGMENT_CPU"] = path
        for B, C, H, W in [(2, 3, 7, 9), (1, 3, 2, 2), (3, 1, 5, 3), (1, 1, 3, 3)]:
            n = B * C * H * W
            buf = (ctypes.c_uint8 * n).from_address(addr + PAGE - n)
            flat = torch.frombuffer(buf, dtype=torch.uint8)
            flat.copy_(torch.randint(0, 256, (n,), dtype=torch.uint8))
            for images in (flat.view(B, H, W, C).permute(0, 3, 1, 2), flat.view(B, C, H, W)):
                m = torch.eye(3).repeat(B, 1, 1) * 1.3
                m[:, 2, 2] = 1
                m[:, :2, 2] = 0.2
                for mode in ("bilinear", "nearest"):
                    for pad in ("zeros", "border", "reflection"):
                        out = ops.augment_normalize(images, m, (H + 2, W + 3), mean=[0.5] * C,
                                                    std=[0.25] * C, mode=mode, pad_mode=pad)
                        assert torch.isfinite(out).all()
    print("ok")
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="uses mmap + mprotect")
def test_reads_stay_inside_the_tensor():
    """Images that end exactly at a protected page: any read past their last byte crashes the
    (child) process. The AVX2 path reads 8-byte words and must clamp them at the end."""
    paths = ["portable"] + (["avx2"] if _cpu_has_avx2() else [])
    root = Path(fastcore_ext.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-c", _GUARD_PAGE_SCRIPT, *paths],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# ---- registration: opcheck, compile ------------------------------------------------------------


def test_opcheck():
    images = rand_images(2, 3, 10, 12, "cl", seed=100)
    args = (
        images,
        rand_affine(2, seed=101),
        7,
        9,
        list(MEAN3),
        list(STD3),
        rand_lighting(2),
        "bilinear",
        "reflection",
        torch.float32,
        False,
    )
    torch.library.opcheck(torch.ops.fastcore_ext.augment_normalize.default, args)
    args_cl = args[:6] + (None, "nearest", "zeros", torch.bfloat16, True)
    torch.library.opcheck(torch.ops.fastcore_ext.augment_normalize.default, args_cl)


def test_torch_compile_fullgraph():
    def pipeline(images, matrices, lighting):
        x = ops.augment_normalize(images, matrices, 12, mean=MEAN3, std=STD3, lighting=lighting)
        return x * 2 + 1

    images = rand_images(2, 3, 16, 16, "cl", seed=110)
    m, lt = rand_affine(2, seed=111), rand_lighting(2, seed=112)
    compiled = torch.compile(pipeline, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(images, m, lt), pipeline(images, m, lt), rtol=0, atol=0)


# ---- properties --------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 3),
    C=st.sampled_from([1, 3]),
    H=st.integers(1, 20),
    W=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_flip_twice_is_identity(B, C, H, W, seed):
    images = rand_images(B, C, H, W, "cl", seed)
    flip = crop_matrix(H, W, 0, 0, H, W, hflip=True).expand(B, 3, 3).contiguous()
    z = dict(mean=[0.0] * C, std=[1.0] * C, mode="nearest")
    once = (ops.augment_normalize(images, flip, (H, W), **z) * 255).round().to(torch.uint8)
    twice = (ops.augment_normalize(once, flip, (H, W), **z) * 255).round().to(torch.uint8)
    assert torch.equal(twice, images.contiguous())
    assert torch.equal(once, images.flip(-1).contiguous())


@settings(max_examples=25, deadline=None)
@given(
    C=st.sampled_from([1, 3]),
    H=st.integers(1, 24),
    W=st.integers(1, 24),
    out_h=st.integers(1, 24),
    out_w=st.integers(1, 24),
    mode=st.sampled_from(MODES),
    pad_mode=st.sampled_from(PADS),
    out_dtype=st.sampled_from(DTYPES),
    out_cl=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_shape_is_finite_and_matches(
    C, H, W, out_h, out_w, mode, pad_mode, out_dtype, out_cl, seed
):
    images = rand_images(2, C, H, W, "cl", seed)
    m = rand_affine(2, seed)
    mean, std = stats(C)
    lt = rand_lighting(2, seed)
    out = ops.augment_normalize(
        images,
        m,
        (out_h, out_w),
        mean=mean,
        std=std,
        lighting=lt,
        mode=mode,
        pad_mode=pad_mode,
        out_dtype=out_dtype,
        channels_last=out_cl,
    )
    assert out.shape == (2, C, out_h, out_w) and torch.isfinite(out).all()
    ref = augment_normalize_reference(
        images, m, (out_h, out_w), mean=mean, std=std, lighting=lt, mode=mode, pad_mode=pad_mode
    )
    atol = 1e-5 if mode == "nearest" else bilinear_atol(H, W, std, lt)
    skip = near_tie(m, H, W, out_h, out_w, pad_mode)
    # A tiny output whose few pixels sit on rounding ties says nothing about nearest: drawn
    # again (compare refuses more than 1 % of ties, which a 1 x 2 output reaches with one).
    assume(mode != "nearest" or skip.double().mean() < 0.01)
    compare(out, ref.to(out_dtype), mode=mode, atol=atol, rtol=DTYPE_RTOL[out_dtype], skip=skip)


# ---- bad input: a clear error naming the argument ----------------------------------------------


def _good():
    return dict(
        images=rand_images(2, 3, 8, 8),
        matrices=rand_affine(2),
        size=(5, 6),
        mean=MEAN3,
        std=STD3,
        lighting=rand_lighting(2),
        mode="bilinear",
        pad_mode="reflection",
        out_dtype=torch.float32,
        channels_last=False,
    )


def _call(**over):
    """The public wrapper, ops.augment_normalize."""
    kw = _good()
    kw.update(over)
    return ops.augment_normalize(kw.pop("images"), kw.pop("matrices"), kw.pop("size"), **kw)


def _call_op(**over):
    """The op itself, torch.ops.fastcore_ext.augment_normalize, with the same arguments."""
    kw = _good()
    kw.update(over)
    size = kw["size"]
    h, w = (size, size) if isinstance(size, int) else size
    return torch.ops.fastcore_ext.augment_normalize(
        kw["images"], kw["matrices"], h, w, list(kw["mean"]), list(kw["std"]), kw["lighting"],
        kw["mode"], kw["pad_mode"], kw["out_dtype"], kw["channels_last"],
    )  # fmt: skip


_U8 = torch.uint8
# Mistakes both paths can be given: the same exception type and the same whole message.
BAD_FOR_BOTH = [
    (dict(images=torch.rand(2, 3, 8, 8)), TypeError,
     "images should be a uint8 tensor, got torch.float32"),
    (dict(images=torch.zeros(3, 8, 8, dtype=_U8)), ValueError,
     "images should be a 4d tensor [B, C, H, W], got 3d of shape [3, 8, 8]"),
    (dict(images=torch.zeros(2, 2, 8, 8, dtype=_U8)), ValueError,
     "images should have 1 or 3 channels, got 2 (shape [2, 2, 8, 8])"),
    (dict(images=torch.zeros(2, 3, 0, 8, dtype=_U8)), ValueError,
     "images should have a positive height and width, got 0x8"),
    (dict(size=0), ValueError, "size should be positive, got (0, 0)"),
    (dict(size=(5, -1)), ValueError, "size should be positive, got (5, -1)"),
    (dict(matrices=torch.eye(3)), ValueError, "matrices should have shape [B, 3, 3], got [3, 3]"),
    (dict(matrices=torch.zeros(2, 2, 3)), ValueError,
     "matrices should have shape [B, 3, 3], got [2, 2, 3]"),
    (dict(matrices=torch.zeros(3, 3, 3)), ValueError,
     "matrices should have one matrix per image (2), got 3"),
    (dict(matrices=torch.zeros(2, 3, 3, dtype=torch.float64)), TypeError,
     "matrices should be a float32 tensor, got torch.float64"),
    (dict(mean=(0.5, 0.5)), ValueError, "mean should have one value per channel (3), got 2"),
    (dict(std=(0.5,)), ValueError, "std should have one value per channel (3), got 1"),
    (dict(std=(0.2, 0.0, 0.2)), ValueError,
     "std should be positive and finite, got 0 for channel 1"),
    (dict(std=(0.2, -1.0, 0.2)), ValueError,
     "std should be positive and finite, got -1 for channel 1"),
    (dict(std=(0.2, 0.2, math.inf)), ValueError,
     "std should be positive and finite, got inf for channel 2"),
    (dict(mean=(0.2, math.nan, 0.2)), ValueError, "mean should be finite, got nan for channel 1"),
    (dict(out_dtype=torch.float64), ValueError,
     "out_dtype should be torch.float32, torch.bfloat16 or torch.float16, got torch.float64"),
    (dict(out_dtype=torch.uint8), ValueError,
     "out_dtype should be torch.float32, torch.bfloat16 or torch.float16, got torch.uint8"),
    (dict(mode="bicubic"), ValueError, "mode should be 'bilinear' or 'nearest', got 'bicubic'"),
    (dict(pad_mode="wrap"), ValueError,
     "pad_mode should be 'zeros', 'border' or 'reflection', got 'wrap'"),
    (dict(lighting=torch.zeros(2, 3)), ValueError,
     "lighting should have shape [B, 2] = [2, 2] (brightness, contrast), got [2, 3]"),
    (dict(lighting=torch.zeros(3, 2)), ValueError,
     "lighting should have shape [B, 2] = [2, 2] (brightness, contrast), got [3, 2]"),
    (dict(lighting=torch.full((2, 2), 0.5, dtype=torch.float64)), TypeError,
     "lighting should be a float32 tensor, got torch.float64"),
    (dict(lighting=torch.tensor([[0.5, 1.0], [1.0, 1.0]])), ValueError,
     "lighting brightness (column 0) should be in (0, 1), got 1 for image 1"),
    (dict(lighting=torch.tensor([[0.0, 1.0], [0.5, 1.0]])), ValueError,
     "lighting brightness (column 0) should be in (0, 1), got 0 for image 0"),
    (dict(lighting=torch.tensor([[math.nan, 1.0], [0.5, 1.0]])), ValueError,
     "lighting brightness (column 0) should be in (0, 1), got nan for image 0"),
    (dict(lighting=torch.tensor([[0.5, math.inf], [0.5, 1]])), ValueError,
     "lighting contrast (column 1) should be positive and finite, got inf for image 0"),
    (dict(lighting=torch.tensor([[0.5, 1.0], [0.25, 0.0]])), ValueError,
     "lighting contrast (column 1) should be positive and finite, got 0 for image 1"),
]  # fmt: skip


@pytest.mark.parametrize("call", [_call, _call_op], ids=["wrapper", "torch.ops"])
@pytest.mark.parametrize("over, exc, message", BAD_FOR_BOTH)
def test_bad_input_same_error_from_wrapper_and_op(call, over, exc, message):
    """One rule, one message: the Python wrapper checks first (the error is raised in Python,
    before the op is called: a C++ exception crashed one toolchain's build); the C++ guard of
    the op, called directly, raises the same exception type with the same words."""
    with pytest.raises(exc) as info:
        call(**over)
    assert str(info.value) == message
    if call is _call:
        raised_in = Path(str(info.traceback[-1].path)).resolve()
        assert raised_in in (Path(ops.__file__).resolve(), Path(checks.__file__).resolve())


@pytest.mark.parametrize(
    "over, exc, match",
    [
        (dict(images=[[1, 2]]), TypeError, "images should be a torch.Tensor, got list"),
        (dict(matrices="eye"), TypeError, "matrices should be a torch.Tensor, got str"),
        (
            dict(matrices=torch.zeros(2, 3, 3, device="meta")),
            ValueError,
            r"matrices should be on the device of images \(cpu\), got meta",
        ),
        (dict(size=(5.0, 6)), TypeError, "size should be an int or a pair"),
        (dict(size=(1, 2, 3)), TypeError, "size should be an int or a pair"),
        (dict(size=True), TypeError, "size should be an int or a pair"),
        (dict(mean="abc"), TypeError, "mean should be a sequence of 3 floats"),
        (dict(lighting=[[0.5, 1.0]] * 2), TypeError, "lighting should be a torch.Tensor or None"),
        (
            dict(lighting=torch.full((2, 2), 0.5, device="meta")),
            ValueError,
            r"lighting should be on the device of images \(cpu\), got meta",
        ),
        (dict(channels_last=1), TypeError, "channels_last should be a bool, got int 1"),
    ],
)
def test_bad_input_the_op_cannot_receive(over, exc, match):
    """Mistakes the op's schema (or the dispatcher, for a meta tensor) stops before C++: the
    wrapper names them."""
    with pytest.raises(exc, match=match):
        _call(**over)


@pytest.mark.parametrize("B", [1, 64])
def test_cpu_lighting_check_passes_good_values(B):
    """The wrapper's aminmax check of CPU lighting lets any in-range batch through, extremes
    included."""
    lighting = torch.tensor([[1e-6, 1e-3], [1 - 1e-6, 50.0]]).repeat(B, 1)[:B]
    images, m = rand_images(B, 3, 8, 8), rand_affine(B)
    out = ops.augment_normalize(images, m, 4, mean=MEAN3, std=STD3, lighting=lighting)
    assert torch.isfinite(out).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.slow
def test_cuda_output_over_2_31_elements():
    """Index arithmetic past 2^31 output elements: 2 x 3 x 27000 x 27000 float16 (8.7 GB)
    from small images; the last rows of the last sample equal the reference."""
    B, C, S = 2, 3, 27_000
    assert B * C * S * S > 2**31
    free, _ = torch.cuda.mem_get_info()
    if free < B * C * S * S * 2 * 1.5:
        pytest.skip("not enough GPU memory")
    mean, std = stats(C)
    im = rand_images(B, C, 16, 16, seed=7)
    m = rand_affine(B, seed=7)
    out = ops.augment_normalize(
        im.cuda(), m.cuda(), S, mean=mean, std=std, mode="nearest", out_dtype=torch.float16
    )
    torch.cuda.synchronize()
    # the last 4 rows of the last sample (the highest indices) against grid_sample in float64
    tail = out[-1:, :, S - 4 :, :].float().cpu()
    assert torch.isfinite(tail).all()
    rows = torch.arange(S - 4, S, dtype=torch.float64)
    ys = (2 * rows + 1) / S - 1  # align_corners=False pixel centres
    xs = (2 * torch.arange(S, dtype=torch.float64) + 1) / S - 1
    mat = m[-1].double()
    gx = mat[0, 0] * xs[None, :] + mat[0, 1] * ys[:, None] + mat[0, 2]
    gy = mat[1, 0] * xs[None, :] + mat[1, 1] * ys[:, None] + mat[1, 2]
    grid = torch.stack([gx, gy], -1)[None]  # [1, 4, S, 2]
    ref = F.grid_sample(
        im[-1:].double() / 255,
        grid,
        mode="nearest",
        padding_mode="reflection",
        align_corners=False,
    )
    ref = (ref - torch.tensor(mean, dtype=torch.float64)[None, :, None, None]) / torch.tensor(
        std, dtype=torch.float64
    )[None, :, None, None]
    close = (tail.double() - ref).abs() <= 1e-2 + 1e-3 * ref.abs()
    assert close.float().mean() > 0.999  # rounding ties may differ at a handful of pixels
