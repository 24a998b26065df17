"""fastcore_ext.augment: random per-sample homographies and lighting, and augment_batch.

Geometry is checked by applying the matrices with F.grid_sample (through F.affine_grid, or a
homography grid for warps) to synthetic images with known content: markers, round blobs and
linear ramps. augment_batch runs the kernel; its tests skip while the kernel is not built.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcore_ext.augment import (
    MAX_WARP,
    MAX_WARP_LIMIT,
    AugmentSpec,
    aug_transforms,
    augment_batch,
    center_crop_matrices,
    epoch_generator,
    get_transforms,
    random_params,
)

F64 = torch.float64
EYE = torch.eye(3)
# The output square's corners in homogeneous normalized coordinates: a matrix's last row
# times these gives w there (positive: the corner maps to a finite point).
CORNERS = torch.tensor([[-1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0]])

# Every random component off: the matrices are the plain (resize + centre crop) ones.
NO_AUG = dict(do_flip=False, p_affine=0.0, p_lighting=0.0)


def only(**kwargs) -> AugmentSpec:
    """A spec with every component off but the ones given."""
    base = dict(do_flip=False, max_rotate=0.0, max_zoom=1.0, max_lighting=0.0, max_warp=0.0)
    return AugmentSpec(**{**base, **kwargs})


def draw(spec, batch=64, in_hw=(64, 64), out_hw=(64, 64), seed=0, epoch=0):
    return random_params(spec, batch, in_hw, out_hw, epoch_generator(seed, epoch))


# ---- oracles: sampling through the matrices -----------------------------------------------


def homography_grid(matrices: torch.Tensor, out_hw) -> torch.Tensor:
    """Matrices [B, 3, 3] -> grid [B, h, w, 2] (float64) of input coordinates, divided by w."""
    out_h, out_w = out_hw
    xs = (2 * torch.arange(out_w, dtype=F64) + 1) / out_w - 1
    ys = (2 * torch.arange(out_h, dtype=F64) + 1) / out_h - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], -1)  # (h, w, 3)
    mapped = torch.einsum("bij,hwj->bhwi", matrices.to(F64), points)
    return mapped[..., :2] / mapped[..., 2:]


def sample(images, matrices, out_hw, mode="bilinear", pad_mode="zeros") -> torch.Tensor:
    """float images [B, C, H, W] seen through the matrices, [B, C, h, w] float64."""
    grid = homography_grid(matrices, out_hw)
    return F.grid_sample(images.to(F64), grid, mode, pad_mode, align_corners=False)


def blob(h, w, cx, cy, sigma) -> torch.Tensor:
    """A Gaussian marker [h, w] centred at pixel (cx, cy)."""
    y, x = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    return torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


def centroid(img: torch.Tensor) -> torch.Tensor:
    """[..., h, w] -> [..., 2] intensity-weighted (x, y) in pixels."""
    h, w = img.shape[-2:]
    y, x = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    mass = img.sum((-2, -1))
    return torch.stack([(img * x).sum((-2, -1)) / mass, (img * y).sum((-2, -1)) / mass], -1)


def ramps(h, w) -> torch.Tensor:
    """[1, 2, h, w]: channel 0 = normalized x of each pixel centre, channel 1 = normalized y."""
    xs = (2 * torch.arange(w, dtype=F64) + 1) / w - 1
    ys = (2 * torch.arange(h, dtype=F64) + 1) / h - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])[None]


def test_homography_grid_equals_affine_grid():
    matrices, _ = draw(AugmentSpec(max_warp=0.0), batch=8, in_hw=(40, 60), out_hw=(24, 36))
    expected = F.affine_grid(matrices[:, :2].to(F64), (8, 1, 24, 36), align_corners=False)
    torch.testing.assert_close(homography_grid(matrices, (24, 36)), expected)


# ---- specs and their knobs ----------------------------------------------------------------


def test_defaults_are_fastais():
    spec = AugmentSpec()
    assert (spec.do_flip, spec.flip_vert, spec.max_rotate) == (True, False, 10.0)
    assert (spec.min_zoom, spec.max_zoom, spec.max_lighting, spec.max_warp) == (1.0, 1.1, 0.2, 0.2)
    assert (spec.p_affine, spec.p_lighting, spec.min_scale) == (0.75, 0.75, 1.0)
    assert (spec.mode, spec.pad_mode, spec.size) == ("bilinear", "reflection", None)
    assert get_transforms() == spec
    assert get_transforms(max_zoom=1.5, flip_vert=True).max_zoom == 1.5
    specs = aug_transforms(size=224, min_scale=0.35)
    assert isinstance(specs, list) and len(specs) == 1
    assert (specs[0].size, specs[0].min_scale, specs[0].ratio) == (224, 0.35, (1.0, 1.0))
    assert aug_transforms(min_zoom=0.8, pad_mode="zeros")[0].min_zoom == 0.8
    # fastbook's aug_transforms(mult=2): rotation, lighting and warp doubled; v2's order
    doubled = aug_transforms(2, max_warp=0.1)[0]
    assert (doubled.max_rotate, doubled.max_lighting, doubled.max_warp) == (20.0, 0.4, 0.2)
    assert (doubled.max_zoom, doubled.p_affine) == (1.1, 0.75)
    assert aug_transforms(mult=2, max_warp=0.1)[0] == doubled
    assert aug_transforms(mult=1.5)[0].max_warp == pytest.approx(0.3)
    with pytest.raises(ValueError, match="mult: expected a number >= 0, got -1"):
        aug_transforms(mult=-1)
    # as fastbook writes it: fastai's max_warp 0.2 doubled, past MAX_WARP_LIMIT (the draws
    # that cross the horizon keep no warp: test_warp_past_the_horizon_limit)
    fastbook = aug_transforms(mult=2)[0]
    assert (fastbook.max_rotate, fastbook.max_lighting, fastbook.max_warp) == (20.0, 0.4, 0.4)
    with pytest.raises(ValueError, match=r"mult: 5 makes max_warp 0.2 x 5 = 1, not below 1"):
        aug_transforms(mult=5)


def test_spec_normalizes_and_is_hashable():
    spec = AugmentSpec(max_rotate=30, ratio=[1, 2], size=[32, 48])
    assert spec.max_rotate == 30.0 and isinstance(spec.max_rotate, float)
    assert spec.ratio == (1.0, 2.0) and spec.size == (32, 48)
    assert hash(spec) == hash(AugmentSpec(max_rotate=30.0, ratio=(1.0, 2.0), size=(32, 48)))


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(p_affine=1.5), ValueError, "p_affine"),
        (dict(p_affine=-0.1), ValueError, "p_affine"),
        (dict(p_lighting=2), ValueError, "p_lighting"),
        (dict(p_lighting=float("nan")), ValueError, "p_lighting"),
        (dict(max_zoom=0.9, min_zoom=1.0), ValueError, "max_zoom"),
        (dict(min_zoom=0.0, max_zoom=1.0), ValueError, "min_zoom"),
        (dict(min_scale=0.0), ValueError, "min_scale"),
        (dict(min_scale=1.2), ValueError, "min_scale"),
        (dict(max_rotate=-1), ValueError, "max_rotate"),
        (dict(max_rotate="10"), TypeError, "max_rotate"),
        (dict(max_warp=-0.1), ValueError, "max_warp"),
        (dict(max_warp=1.0), ValueError, "max_warp"),
        (dict(max_lighting=1.0), ValueError, "max_lighting"),
        (dict(max_lighting=-0.1), ValueError, "max_lighting"),
        (dict(ratio=(4 / 3, 3 / 4)), ValueError, "ratio"),
        (dict(ratio=(0.0, 1.0)), ValueError, "ratio"),
        (dict(ratio=(1.0,)), TypeError, "ratio"),
        (dict(ratio=1.0), TypeError, "ratio"),
        (dict(size=0), ValueError, "size"),
        (dict(size=(32, -1)), ValueError, "size"),
        (dict(size=32.0), TypeError, "size"),
        (dict(size=(1, 2, 3)), TypeError, "size"),
        (dict(do_flip=1), TypeError, "do_flip"),
        (dict(flip_vert="yes"), TypeError, "flip_vert"),
        (dict(mode="bicubic"), ValueError, "mode"),
        (dict(pad_mode="constant"), ValueError, "pad_mode"),
        (dict(p_affine=True), TypeError, "p_affine"),
    ],
)
def test_bad_knobs_raise(kwargs, error, name):
    with pytest.raises(error, match=name):
        AugmentSpec(**kwargs)
    if set(kwargs) <= {"p_affine", "p_lighting", "max_rotate", "max_warp", "max_lighting"}:
        with pytest.raises(error, match=name):
            get_transforms(**kwargs)


def test_bad_arguments_of_the_functions_raise():
    g = epoch_generator(0, 0)
    with pytest.raises(TypeError, match="spec"):
        random_params(aug_transforms(), 2, (8, 8), (8, 8), g)
    with pytest.raises(ValueError, match="batch_size"):
        random_params(AugmentSpec(), -1, (8, 8), (8, 8), g)
    with pytest.raises(TypeError, match="batch_size"):
        random_params(AugmentSpec(), 2.0, (8, 8), (8, 8), g)
    with pytest.raises(ValueError, match="in_hw"):
        random_params(AugmentSpec(), 2, (0, 8), (8, 8), g)
    with pytest.raises(TypeError, match="out_hw"):
        random_params(AugmentSpec(), 2, (8, 8), "8", g)
    with pytest.raises(TypeError, match="generator"):
        random_params(AugmentSpec(), 2, (8, 8), (8, 8), 0)
    with pytest.raises(ValueError, match="out_hw"):
        center_crop_matrices(2, (8, 8), (8, 0))
    with pytest.raises(TypeError, match="seed"):
        epoch_generator("0", 0)
    with pytest.raises(ValueError, match="epoch"):
        epoch_generator(0, -1)
    with pytest.raises(TypeError, match="epoch"):
        epoch_generator(0, 1.0)


# ---- randomness ---------------------------------------------------------------------------


def test_epoch_generator_is_deterministic_and_mixes_seed_and_epoch():
    g = epoch_generator(42, 3)
    assert isinstance(g, torch.Generator) and g.device.type == "cpu"
    first = torch.rand(8, generator=g)
    torch.testing.assert_close(
        torch.rand(8, generator=epoch_generator(42, 3)), first, rtol=0, atol=0
    )
    others = [epoch_generator(42, 4), epoch_generator(43, 3), epoch_generator(3, 42)]
    for other in others:
        assert not torch.equal(torch.rand(8, generator=other), first)
    assert epoch_generator(-1, 0).initial_seed() != epoch_generator(1, 0).initial_seed()


def test_same_seed_and_epoch_same_params_different_epochs_differ():
    spec = AugmentSpec(min_scale=0.5, flip_vert=True)
    m1, l1 = draw(spec, batch=32, in_hw=(48, 64), out_hw=(32, 32), seed=7, epoch=2)
    m2, l2 = draw(spec, batch=32, in_hw=(48, 64), out_hw=(32, 32), seed=7, epoch=2)
    assert torch.equal(m1, m2) and torch.equal(l1, l2)
    m3, l3 = draw(spec, batch=32, in_hw=(48, 64), out_hw=(32, 32), seed=7, epoch=3)
    assert not torch.equal(m1, m3) and not torch.equal(l1, l3)
    # consecutive batches from one generator differ too
    g = epoch_generator(7, 2)
    a, _ = random_params(spec, 32, (48, 64), (32, 32), g)
    b, _ = random_params(spec, 32, (48, 64), (32, 32), g)
    assert torch.equal(a, m1) and not torch.equal(a, b)


def test_samples_in_a_batch_differ():
    matrices, lighting = draw(AugmentSpec(p_affine=1.0, p_lighting=1.0), batch=64)
    assert matrices.dtype == torch.float32 and matrices.shape == (64, 3, 3)
    assert lighting.dtype == torch.float32 and lighting.shape == (64, 2)
    assert matrices.device.type == lighting.device.type == "cpu"
    assert torch.unique(matrices.reshape(64, 9), dim=0).shape[0] == 64
    assert torch.unique(lighting, dim=0).shape[0] == 64


def test_empty_batch():
    matrices, lighting = draw(AugmentSpec(), batch=0)
    assert matrices.shape == (0, 3, 3) and lighting.shape == (0, 2)
    assert center_crop_matrices(0, (8, 8), 4).shape == (0, 3, 3)


# ---- identities ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_hw, out_hw", [((64, 64), (64, 64)), ((40, 60), (40, 60)), ((64, 96), (32, 48))]
)
def test_identity_when_nothing_is_random_and_aspects_match(in_hw, out_hw):
    matrices, lighting = draw(AugmentSpec(**NO_AUG), batch=16, in_hw=in_hw, out_hw=out_hw)
    assert lighting is None
    assert torch.equal(matrices, EYE.expand(16, 3, 3))
    if in_hw == out_hw:
        images = torch.rand(16, 3, *in_hw, dtype=F64)
        torch.testing.assert_close(sample(images, matrices, out_hw), images)


def test_p_affine_zero_leaves_only_flips():
    spec = AugmentSpec(p_affine=0.0, max_rotate=45, max_zoom=2.0, max_warp=0.3)
    matrices, _ = draw(spec, batch=256)
    flipped = matrices[:, 0, 0] < 0
    expected = EYE.repeat(256, 1, 1)
    expected[flipped, 0, 0] = -1
    assert torch.equal(matrices, expected)
    assert 0.35 < flipped.double().mean() < 0.65


@pytest.mark.parametrize("kwargs", [dict(p_lighting=0.0), dict(max_lighting=0.0)])
def test_no_lighting_gives_none(kwargs):
    assert not AugmentSpec(**kwargs).has_lighting
    assert draw(AugmentSpec(**kwargs))[1] is None


def test_lighting_off_for_a_sample_is_the_identity_pair():
    _, lighting = draw(AugmentSpec(p_lighting=0.5), batch=512)
    b_off, c_off = lighting[:, 0] == 0.5, lighting[:, 1] == 1.0
    assert 0.4 < b_off.double().mean() < 0.6 and 0.4 < c_off.double().mean() < 0.6
    assert 0.15 < (b_off & c_off).double().mean() < 0.35  # drawn independently: ~ 1/4


# ---- validation matrices ------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_hw, out_hw, resized",
    [
        ((40, 60), (20, 20), (20, 30)),  # downscale, landscape
        ((60, 40), (20, 20), (30, 20)),  # portrait
        ((16, 24), (32, 32), (32, 48)),  # upscale
        ((40, 40), (20, 30), (30, 30)),  # non-square output
        ((48, 48), (48, 48), (48, 48)),  # nothing to do
    ],
)
def test_center_crop_equals_torchvision_resize_and_center_crop(in_hw, out_hw, resized):
    images = torch.rand(2, 3, *in_hw, dtype=F64)
    expected = TF.center_crop(TF.resize(images, list(resized), antialias=False), list(out_hw))
    matrices = center_crop_matrices(2, in_hw, out_hw)
    assert matrices.dtype == torch.float32 and matrices.shape == (2, 3, 3)
    # border padding = the edge clamp of interpolate; no antialias on either side. The
    # matrices are float32, so the sampling positions carry float32 rounding: fp32 tolerances.
    got = sample(images, matrices, out_hw, pad_mode="border")
    torch.testing.assert_close(got, expected, rtol=1.3e-6, atol=1e-5)


def test_center_crop_with_fractional_scale_is_close_to_torchvision():
    """torchvision rounds the resized size to whole pixels (50 x 70 -> 32 x 44, not 32 x 44.8),
    so its sampling positions differ from the exact ones by up to half an input pixel: on a
    smooth image, the difference is bounded by half a pixel times the steepest gradient."""
    low = torch.rand(1, 3, 6, 8, dtype=F64, generator=torch.Generator().manual_seed(0))
    images = F.interpolate(low, size=(50, 70), mode="bilinear", align_corners=False)
    expected = TF.center_crop(TF.resize(images, [32], antialias=False), [32, 32])
    got = sample(images, center_crop_matrices(1, (50, 70), 32), (32, 32), pad_mode="border")
    steepest = max(images.diff(dim=2).abs().max(), images.diff(dim=3).abs().max())
    assert 0 < (got - expected).abs().max() <= 0.5 * math.sqrt(2) * steepest


def test_min_scale_one_is_the_center_crop_for_any_aspect():
    for in_hw, out_hw in [((64, 96), (32, 32)), ((96, 64), (24, 48)), ((30, 30), (20, 40))]:
        matrices, _ = draw(AugmentSpec(**NO_AUG), batch=4, in_hw=in_hw, out_hw=out_hw)
        assert torch.equal(matrices, center_crop_matrices(4, in_hw, out_hw))


# ---- geometry of each component -----------------------------------------------------------


def test_flip_moves_a_left_marker_to_the_right():
    h, w = 40, 64
    images = blob(h, w, cx=10.0, cy=20.0, sigma=2.0)[None, None].expand(64, 1, h, w)
    matrices, _ = draw(only(do_flip=True), batch=64, in_hw=(h, w), out_hw=(h, w))
    flipped = matrices[:, 0, 0] < 0
    assert 0 < flipped.sum() < 64
    got = centroid(sample(images, matrices, (h, w))[:, 0])
    expected = torch.tensor([[10.0, 20.0]], dtype=F64).repeat(64, 1)
    expected[flipped, 0] = w - 1 - 10.0
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=0)


def test_flip_vert_draws_the_eight_dihedral_symmetries_exactly():
    n = 16
    image = torch.rand(1, 1, n, n, dtype=F64)
    matrices, _ = draw(only(do_flip=True, flip_vert=True), batch=512, in_hw=(n, n), out_hw=(n, n))
    out = sample(image.expand(512, 1, n, n), matrices, (n, n))[:, 0]
    x = image[0, 0]
    symmetries = [
        x,
        x.flip(1),
        x.flip(0),
        x.rot90(1),
        x.flip((0, 1)),
        x.rot90(-1),
        x.T,
        x.flip((0, 1)).T,
    ]
    counts = torch.zeros(8)
    for i in range(512):
        matches = [k for k, s in enumerate(symmetries) if torch.allclose(out[i], s, atol=1e-9)]
        assert len(matches) == 1
        counts[matches[0]] += 1
    assert (counts > 0).all()
    assert 0.45 < counts[0] / 512 < 0.68  # p=0.5 of drawing, then 1/8 of the draws are identity


def test_rotation_is_in_pixel_space_circles_stay_round():
    h, w = 48, 96
    centre = ((w - 1) / 2, (h - 1) / 2)
    round_blob = blob(h, w, *centre, sigma=4.0)
    marker = blob(h, w, centre[0] + 20.0, centre[1], sigma=1.5)
    images = torch.stack([round_blob, marker])[None].expand(32, 2, h, w)
    matrices, _ = draw(only(max_rotate=60.0, p_affine=1.0), batch=32, in_hw=(h, w), out_hw=(h, w))
    # the angle, read back from the matrix: [[c, s h/w], [-s w/h, c]]
    theta = torch.atan2(matrices[:, 0, 1].to(F64) * w / h, matrices[:, 0, 0].to(F64))
    assert theta.abs().max() <= math.radians(60) + 1e-6 and theta.abs().max() > math.radians(30)
    out = sample(images, matrices, (h, w))
    # the round blob stays round: equal second moments along every axis
    img = out[:, 0]
    y, x = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    mass = img.sum((1, 2))
    dx, dy = x - centre[0], y - centre[1]
    cov = (
        torch.stack(
            [
                torch.stack([(img * dx * dx).sum((1, 2)), (img * dx * dy).sum((1, 2))], -1),
                torch.stack([(img * dx * dy).sum((1, 2)), (img * dy * dy).sum((1, 2))], -1),
            ],
            -2,
        )
        / mass[:, None, None]
    )
    eig = torch.linalg.eigvalsh(cov)
    assert (eig[:, 1] / eig[:, 0]).max() < 1.02
    # the marker 20 px right of the centre turns by theta, clockwise on screen, at 20 px
    offset = centroid(out[:, 1]) - torch.tensor(centre, dtype=F64)
    expected = 20.0 * torch.stack([torch.cos(theta), torch.sin(theta)], -1)
    torch.testing.assert_close(offset, expected, atol=0.05, rtol=0)


def test_zoom_scales_the_ramp_around_a_random_centre():
    n = 64
    spec = only(min_zoom=1.2, max_zoom=2.0, p_affine=1.0)
    matrices, _ = draw(spec, batch=64, in_hw=(n, n), out_hw=(n, n))
    out = sample(ramps(n, n).expand(64, 2, n, n), matrices, (n, n), pad_mode="border")
    coords = ramps(n, n)[0, 0, 0]  # normalized x of the output columns
    inner = slice(4, n - 4)  # the outermost output pixels may sample past the last centres
    centres = []
    for profile in (out[:, 0].mean(1), out[:, 1].mean(2)):
        slope, intercept = (
            torch.linalg.lstsq(
                torch.stack([coords[inner], torch.ones(n - 8, dtype=F64)], 1).expand(64, -1, -1),
                profile[:, inner, None],
            )
            .solution[:, :, 0]
            .T
        )
        zoom = 1 / slope
        assert zoom.min() >= 1.2 - 1e-6 and zoom.max() <= 2.0 + 1e-6
        assert zoom.min() < 1.35 and zoom.max() > 1.85
        # the window stays inside the image and its centre is spread over the allowed range
        rel = intercept / (1 - slope)
        assert rel.abs().max() <= 1 + 1e-6 and rel.min() < -0.6 and rel.max() > 0.6
        centres.append(rel)
    assert not torch.allclose(*centres)  # independent centre coordinates


def test_random_resized_crop_area_ratio_and_position():
    in_hw, out_hw = (64, 96), (32, 32)
    spec = only(min_scale=0.3, ratio=(3 / 4, 4 / 3))
    matrices, _ = draw(spec, batch=4000, in_hw=in_hw, out_hw=out_hw)
    m = matrices.to(F64)
    assert torch.equal(m[:, 0, 1], torch.zeros(4000)) and torch.equal(
        m[:, 2], EYE[2].expand(4000, 3)
    )
    box_w, box_h = m[:, 0, 0] * in_hw[1], m[:, 1, 1] * in_hw[0]  # pixels
    area = box_w * box_h / (64 * 64)  # fraction of the centre-crop box (64 x 64 here)
    aspect = box_w / box_h  # output is square
    assert area.min() >= 0.3 - 1e-5 and area.max() <= 1 + 1e-5
    assert area.min() < 0.32 and area.max() > 0.97
    assert aspect.min() >= 3 / 4 - 1e-5 and aspect.max() <= 4 / 3 + 1e-5
    assert aspect.min() < 0.76 and aspect.max() > 1.31
    # inside the input, positions spread over it
    assert (m[:, 0, 2].abs() + m[:, 0, 0]).max() <= 1 + 1e-6
    assert (m[:, 1, 2].abs() + m[:, 1, 1]).max() <= 1 + 1e-6
    assert m[:, 0, 2].min() < -0.5 and m[:, 0, 2].max() > 0.5
    # and geometrically: the output ramp spans the box
    few = matrices[:8]
    out = sample(ramps(*in_hw).expand(8, 2, *in_hw), few, out_hw, pad_mode="border")
    centres = ramps(*out_hw)[0, 0, 0]
    expected = few[:, 0, 0:1].to(F64) * centres + few[:, 0, 2:3].to(F64)
    torch.testing.assert_close(out[:, 0, 16], expected, atol=1e-6, rtol=0)


def test_random_resized_crop_keeps_the_output_aspect_with_ratio_one():
    matrices, _ = draw(
        only(min_scale=0.25, ratio=(1.0, 1.0)), batch=256, in_hw=(60, 120), out_hw=(30, 40)
    )
    box_w, box_h = matrices[:, 0, 0].to(F64) * 120, matrices[:, 1, 1].to(F64) * 60
    torch.testing.assert_close(box_w / box_h, torch.full((256,), 40 / 30, dtype=F64))
    assert (box_w * box_h / (60 * 80)).min() >= 0.25 - 1e-5  # centre box: 60 x 80


def fastai_warp_magnitudes(
    matrices: torch.Tensor, atol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, y_t) of warp-only matrices, after checking that each is fastai's corner map: its
    inverse takes the square's corners to (-1-y_t, -1-x_t), (-1+y_t, 1+x_t), (1+y_t, -1+x_t),
    (1-y_t, 1-x_t)."""
    src = torch.einsum("bij,kj->bki", torch.linalg.inv(matrices.to(F64)), CORNERS.to(F64))
    src = src[..., :2] / src[..., 2:]  # (B, 4, 2): where the square's corners show
    y_t, x_t = -1 - src[:, 0, 0], -1 - src[:, 0, 1]
    expected = torch.stack(
        [
            torch.stack([-1 - y_t, -1 - x_t], 1),
            torch.stack([-1 + y_t, 1 + x_t], 1),
            torch.stack([1 + y_t, -1 + x_t], 1),
            torch.stack([1 - y_t, 1 - x_t], 1),
        ],
        1,
    )
    torch.testing.assert_close(src, expected, atol=atol, rtol=0)
    return x_t, y_t


def test_warp_moves_fastais_corners():
    spec = only(max_warp=0.3, p_affine=1.0)
    matrices, _ = draw(spec, batch=256)
    x_t, y_t = fastai_warp_magnitudes(matrices, atol=1e-5)
    for t in (x_t, y_t):
        assert t.abs().max() <= 0.3 + 1e-5 and t.min() < -0.25 and t.max() > 0.25


def test_perspective_rows_only_with_warp():
    spec = AugmentSpec(p_affine=1.0, max_rotate=30.0, min_zoom=0.8, max_zoom=1.5)
    affine, _ = draw(AugmentSpec(max_warp=0.0, p_affine=1.0), batch=256)
    assert torch.equal(affine[:, 2], EYE[2].expand(256, 3))
    warped, _ = draw(spec, batch=256)
    non_affine = (warped[:, 2] != EYE[2]).any(1)
    assert non_affine.all()


def test_warp_never_crosses_the_horizon():
    spec = AugmentSpec(p_affine=1.0, max_warp=0.36, min_zoom=0.3, max_zoom=0.5, max_rotate=180)
    matrices, _ = draw(spec, batch=2048, in_hw=(20, 200), out_hw=(10, 200))
    w = matrices[:, 2] @ CORNERS.T
    assert (w > 0).all()
    # zoomed out 2-3x and turned on a 1:20 output, the warp's domain reaches far outside the
    # square: samples whose corners would cross the horizon keep no warp, the others keep it
    kept = (matrices[:, 2] != EYE[2]).any(1).double().mean()
    assert 0.05 < kept < 0.95


@pytest.mark.parametrize(
    "max_warp, dropped",
    [(MAX_WARP_LIMIT * 0.999, (0, 0)), (0.4, (0.010, 0.019)), (0.6, (0.27, 0.32))],
)
def test_warp_past_the_horizon_limit(max_warp, dropped):
    """Past MAX_WARP_LIMIT a draw with both magnitudes large would send a corner of the output
    beyond the horizon: that sample keeps no warp, every other keeps its warp unchanged (the
    share dropped as augment.py documents it)."""
    spec = only(max_warp=max_warp, p_affine=1.0)
    matrices, _ = draw(spec, batch=N)
    assert torch.isfinite(matrices).all() and (matrices[:, 2] @ CORNERS.T > 0).all()
    share = (matrices[:, 2] == EYE[2]).all(1).double().mean().item()
    assert dropped[0] <= share <= dropped[1]
    # each kept one is fastai's warp, magnitudes within max_warp, reaching out to it
    x_t, y_t = fastai_warp_magnitudes(matrices[(matrices[:, 2] != EYE[2]).any(1)], atol=1e-4)
    assert x_t.abs().max() <= max_warp + 1e-4 and y_t.abs().max() <= max_warp + 1e-4
    assert x_t.abs().max() > 0.99 * max_warp and y_t.abs().max() > 0.99 * max_warp


# ---- parameter distributions --------------------------------------------------------------

N = 20000


def test_rotation_distribution():
    matrices, _ = draw(
        only(max_rotate=10.0, p_affine=0.75), batch=N, in_hw=(32, 48), out_hw=(32, 48)
    )
    theta = torch.rad2deg(
        torch.atan2(matrices[:, 0, 1].to(F64) * 48 / 32, matrices[:, 0, 0].to(F64))
    )
    on = theta != 0
    assert abs(on.double().mean() - 0.75) < 0.015
    t = theta[on]
    assert t.min() >= -10 - 1e-4 and t.max() <= 10 + 1e-4
    assert abs(t.mean()) < 0.15 and abs(t.std() - 10 / math.sqrt(3)) < 0.1


def test_zoom_distribution():
    matrices, _ = draw(only(min_zoom=0.8, max_zoom=1.4, p_affine=0.5), batch=N)
    scale = matrices[:, 0, 0].to(F64)
    assert torch.equal(matrices[:, 0, 0], matrices[:, 1, 1])
    on = scale != 1
    assert abs(on.double().mean() - 0.5) < 0.015
    zoom = 1 / scale[on]
    assert zoom.min() >= 0.8 - 1e-5 and zoom.max() <= 1.4 + 1e-5
    assert abs(zoom.mean() - 1.1) < 0.005 and abs(zoom.std() - 0.6 / math.sqrt(12)) < 0.005
    rel = matrices[on, :2, 2].to(F64) / (1 - scale[on, None])  # uniform in [-1, 1] per axis
    assert rel.abs().max() <= 1 + 1e-4 and rel.mean(0).abs().max() < 0.03


def test_flip_distribution_ignores_p_affine():
    for p in (0.0, 1.0):
        matrices, _ = draw(only(do_flip=True, p_affine=p), batch=N)
        assert abs((matrices[:, 0, 0] < 0).double().mean() - 0.5) < 0.015


def test_lighting_distribution_is_fastai_v1():
    ml = 0.4
    _, lighting = draw(AugmentSpec(max_lighting=ml, p_lighting=0.75), batch=N)
    b, c = lighting[:, 0].to(F64), lighting[:, 1].to(F64)
    b_on, c_on = b != 0.5, c != 1.0
    assert abs(b_on.double().mean() - 0.75) < 0.015 and abs(c_on.double().mean() - 0.75) < 0.015
    assert abs((b_on & c_on).double().mean() - 0.75**2) < 0.015
    assert b.min() >= 0.5 * (1 - ml) - 1e-6 and b.max() <= 0.5 * (1 + ml) + 1e-6
    assert abs(b[b_on].mean() - 0.5) < 0.003 and abs(b[b_on].std() - ml / math.sqrt(12)) < 0.003
    log_c = torch.log(c[c_on])  # log-uniform in [log(1 - ml), -log(1 - ml)]
    bound = -math.log(1 - ml)
    assert log_c.min() >= -bound - 1e-6 and log_c.max() <= bound + 1e-6
    assert abs(log_c.mean()) < 0.01 and abs(log_c.std() - 2 * bound / math.sqrt(12)) < 0.01


def test_warp_distribution():
    matrices, _ = draw(only(max_warp=0.2, p_affine=0.75), batch=N)
    non_affine = (matrices[:, 2] != EYE[2]).any(1)
    # x and y warps are each drawn with p_affine, as fastai: warped unless both are off
    assert abs(non_affine.double().mean() - (1 - 0.25**2)) < 0.01


# ---- properties ---------------------------------------------------------------------------

hw = st.tuples(st.integers(1, 300), st.integers(1, 300))


@settings(max_examples=60, deadline=None)
@given(
    in_hw=hw,
    out_hw=hw,
    seed=st.integers(-(2**63), 2**64 - 1),
    epoch=st.integers(0, 10**6),
    do_flip=st.booleans(),
    flip_vert=st.booleans(),
    max_rotate=st.floats(0, 360),
    zooms=st.tuples(st.floats(0.1, 4), st.floats(0.1, 4)).map(sorted),
    max_lighting=st.floats(0, 0.99),
    max_warp=st.floats(0, MAX_WARP * 0.999),
    p_affine=st.floats(0, 1),
    p_lighting=st.floats(0, 1),
    min_scale=st.floats(0.01, 1),
    ratios=st.tuples(st.floats(0.2, 5), st.floats(0.2, 5)).map(sorted),
)
def test_any_valid_spec_gives_finite_well_formed_params(
    in_hw, out_hw, seed, epoch, zooms, ratios, **knobs
):
    spec = AugmentSpec(min_zoom=zooms[0], max_zoom=zooms[1], ratio=tuple(ratios), **knobs)
    g = epoch_generator(seed, epoch)
    matrices, lighting = random_params(spec, 8, in_hw, out_hw, g)
    again, _ = random_params(spec, 8, in_hw, out_hw, epoch_generator(seed, epoch))
    assert torch.equal(matrices, again)
    assert matrices.shape == (8, 3, 3) and torch.isfinite(matrices).all()
    assert (matrices[:, 2] @ CORNERS.T > 0).all()
    if lighting is None:
        assert not spec.has_lighting
    else:
        ml = spec.max_lighting
        assert (
            (lighting[:, 0] >= 0.5 * (1 - ml) - 1e-6) & (lighting[:, 0] <= 0.5 * (1 + ml) + 1e-6)
        ).all()
        assert ((lighting[:, 1] >= (1 - ml) - 1e-5) & (lighting[:, 1] <= 1 / (1 - ml) + 1e-4)).all()
    # the crop alone stays inside the input
    crop, _ = random_params(
        AugmentSpec(min_scale=spec.min_scale, ratio=spec.ratio, **NO_AUG), 8, in_hw, out_hw, g
    )
    assert (
        crop[:, :2, 2].abs() + torch.diagonal(crop[:, :2, :2], dim1=1, dim2=2)
    ).max() <= 1 + 1e-5


# ---- augment_batch ------------------------------------------------------------------------


def _kernel_missing() -> str | None:
    try:
        from fastcore_ext import _ext

        _ext.load()
    except ImportError as e:
        return f"fastcore_ext._C is not built: {e}"
    if not torch._C._dispatch_has_kernel_for_dispatch_key("fastcore_ext::augment_normalize", "CPU"):
        return "torch.ops.fastcore_ext.augment_normalize has no CPU kernel yet (kernel branch)"
    return None


needs_kernel = pytest.mark.skipif(_kernel_missing() is not None, reason=str(_kernel_missing()))

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def expected_batch(images, matrices, lighting, out_hw, mean, std, mode, pad_mode):
    """The float64 oracle: sampling through the matrices, fastai's lighting, normalization."""
    y = sample(images.cpu().to(F64) / 255, matrices.cpu(), out_hw, mode, pad_mode)
    if lighting is not None:
        b, c = lighting.cpu().to(F64).T[:, :, None, None, None]
        y = torch.sigmoid(c * (torch.logit(y.clamp(1e-6, 1 - 1e-6)) + torch.logit(b)))
    mean = torch.tensor(mean, dtype=F64)[:, None, None]
    std = torch.tensor(std, dtype=F64)[:, None, None]
    return (y - mean) / std


def one_level(std) -> float:
    """Tolerance: one uint8 intensity level in normalized units. The kernel may compute the
    bilinear weights in fixed point and the lighting curve from a per-sample table (DESIGN.md);
    these tests check that augment_batch feeds it the right parameters, and a wrong matrix,
    axis or lighting value is off by far more than one level."""
    return 1 / 255 / min(std)


@needs_kernel
@pytest.mark.parametrize(
    "spec, in_hw, out_hw",
    [
        (AugmentSpec(max_warp=0.0), (48, 48), (32, 32)),  # affine: grid_sample + affine_grid
        (AugmentSpec(), (48, 48), (32, 32)),  # with perspective warps
        (AugmentSpec(min_scale=0.4, flip_vert=True, pad_mode="zeros"), (40, 60), (24, 36)),
        (AugmentSpec(max_rotate=30.0, pad_mode="border", p_lighting=1.0), (50, 30), (20, 20)),
    ],
)
def test_augment_batch_train_matches_grid_sample(device, spec, in_hw, out_hw):
    images = torch.randint(0, 256, (6, 3, *in_hw), dtype=torch.uint8).to(device)
    before = images.clone()
    out = augment_batch(
        images, out_hw, mean=MEAN, std=STD, spec=spec, generator=epoch_generator(5, 1)
    )
    matrices, lighting = random_params(spec, 6, in_hw, out_hw, epoch_generator(5, 1))
    expected = expected_batch(
        images, matrices, lighting, out_hw, MEAN, STD, "bilinear", spec.pad_mode
    )
    assert out.shape == (6, 3, *out_hw) and out.dtype == torch.float32
    assert out.device == images.device and torch.equal(images, before)
    torch.testing.assert_close(out.cpu().to(F64), expected, atol=one_level(STD), rtol=0)


@needs_kernel
@pytest.mark.parametrize("in_hw, out_hw", [((48, 72), (24, 24)), ((30, 30), (30, 30))])
def test_augment_batch_valid_is_resize_and_center_crop(device, in_hw, out_hw):
    images = torch.randint(0, 256, (4, 1, *in_hw), dtype=torch.uint8).to(device)
    out = augment_batch(images, out_hw, mean=(0.5,), std=(0.25,), train=False)
    expected = expected_batch(
        images,
        center_crop_matrices(4, in_hw, out_hw),
        None,
        out_hw,
        (0.5,),
        (0.25,),
        "bilinear",
        "reflection",
    )
    torch.testing.assert_close(out.cpu().to(F64), expected, atol=one_level((0.25,)), rtol=0)


@needs_kernel
def test_augment_batch_nearest_valid_is_exact_subsampling(device):
    images = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8).to(device)
    spec = AugmentSpec(mode="nearest")
    out = augment_batch(images, 16, mean=(0.0,) * 3, std=(1.0,) * 3, spec=spec, train=False)
    expected = images[:, :, 1::3, 1::3].cpu().float() / 255  # pixel centres land on centres
    torch.testing.assert_close(out.cpu(), expected)


@needs_kernel
def test_augment_batch_dtype_layout_and_spec_size(device):
    images = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8).to(device)
    images = images.contiguous(memory_format=torch.channels_last)
    spec = aug_transforms(size=(24, 32))[0]
    out = augment_batch(
        images,
        None,
        mean=MEAN,
        std=STD,
        spec=spec,
        generator=epoch_generator(1, 0),
        out_dtype=torch.bfloat16,
        channels_last=True,
    )
    assert out.shape == (3, 3, 24, 32) and out.dtype == torch.bfloat16
    assert out.is_contiguous(memory_format=torch.channels_last)
    matrices, lighting = random_params(spec, 3, (40, 40), (24, 32), epoch_generator(1, 0))
    expected = expected_batch(
        images, matrices, lighting, (24, 32), MEAN, STD, "bilinear", "reflection"
    )
    # bf16 keeps 8 significant bits: half an ulp of |values| <= 2.7 is below 0.008
    torch.testing.assert_close(out.cpu().to(F64), expected, atol=one_level(STD) + 0.008, rtol=0)


def test_augment_batch_bad_arguments_raise():
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    kw = dict(mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="generator"):
        augment_batch(images, 8, **kw)
    with pytest.raises(TypeError, match="generator"):
        augment_batch(images, 8, generator=0, **kw)
    with pytest.raises(TypeError, match="spec"):
        augment_batch(images, 8, spec=aug_transforms(), generator=epoch_generator(0, 0), **kw)
    with pytest.raises(ValueError, match="spec.size"):
        augment_batch(images, 8, spec=AugmentSpec(size=12), generator=epoch_generator(0, 0), **kw)
    with pytest.raises(ValueError, match="size"):
        augment_batch(images, None, train=False, **kw)
    with pytest.raises(ValueError, match="size"):
        augment_batch(images, 0, train=False, **kw)
    with pytest.raises(TypeError, match="images"):
        augment_batch(images.numpy(), 8, train=False, **kw)
    with pytest.raises(ValueError, match="images"):
        augment_batch(images[0], 8, train=False, **kw)
    with pytest.raises(TypeError, match="train"):
        augment_batch(images, 8, train=0, **kw)


def test_fastai_arguments_of_aug_transforms_name_what_they_are():
    """Trial E: align_corners, batch and xtra_tfms were bare 'unexpected keyword' errors;
    max_warp=1.2 blamed mult (not passed); get_transforms(max_zoom=0.9) named a min_zoom
    it does not take; a non-square size named the internal AugmentSpec."""
    from fastcore_ext.augment import aug_transforms, get_transforms

    assert aug_transforms(align_corners=True)[0] == aug_transforms(align_corners=False)[0]
    with pytest.raises(ValueError, match=r"batch=True \(one set of random draws for the whole"):
        aug_transforms(batch=True)
    with pytest.raises(ValueError, match="xtra_tfms: extra transforms are not offered"):
        aug_transforms(xtra_tfms=[lambda x: x])
    assert aug_transforms(xtra_tfms=[])[0] == aug_transforms()[0]
    with pytest.raises(ValueError, match=r"max_warp: expected a number below 1 .*got 1.2"):
        aug_transforms(max_warp=1.2)
    with pytest.raises(ValueError, match=r"mult: 3 makes max_warp 0.4 x 3 = 1.2"):
        aug_transforms(mult=3, max_warp=0.4)
    with pytest.raises(ValueError, match=r"max_zoom: fastai v1's get_transforms zooms in only"):
        get_transforms(max_zoom=0.9)
