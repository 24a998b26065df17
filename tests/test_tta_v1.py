"""fastai v1's `learn.TTA`: 8 fixed passes (zoom by `scale` at each corner, mirrored or not)
with the training augmentation's random rotation, warp and lighting, blended with the plain
pass as beta * plain + (1 - beta) * mean(passes)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fakes import make_learner
from torch import nn
from torch.nn import functional as F

from fastcore_ext import ops
from fastcore_ext.augment import AugmentSpec, epoch_generator
from fastcore_ext.data import DatasetType, ImageDataBunch, demo_dataset, imagenet_stats
from fastcore_ext.inference import TTA_V1_PASSES, tta_v1_params
from fastcore_ext.learner import Learner

SCALE = 1.35


def v1_theta(index: int, scale: float) -> torch.Tensor:
    """fastai v1's pass `index`, written out from its tta.py: row_pct = 1 if i & 1, col_pct =
    1 if i & 2, zoom(scale, row_pct, col_pct) = [[1/s, 0, c], [0, 1/s, r]] with c = (1 - 1/s)
    (2 col_pct - 1), r likewise, and flip_lr (x -> -x on the output) for i & 4."""
    row = 1 if index & 1 else 0
    col = 1 if index & 2 else 0
    s = 1 - 1 / scale
    theta = torch.tensor(
        [[1 / scale, 0.0, s * (2 * col - 1)], [0.0, 1 / scale, s * (2 * row - 1)]],
        dtype=torch.float64,
    )
    if index & 4:
        theta[:, 0] = -theta[:, 0]
    return theta


def sample(images: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """images uint8 [B, C, H, W] through the affine `theta` [2, 3] (every sample) by
    grid_sample, in [0, 1] float64."""
    b, c = images.shape[:2]
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, size, size], align_corners=False)
    return F.grid_sample(images.double() / 255, grid, "bilinear", "reflection", align_corners=False)


def marked_corner() -> torch.Tensor:
    """uint8 [1, 3, 40, 40]: dark noise, the top-left 10 x 10 pixels white."""
    gen = torch.Generator().manual_seed(0)
    img = torch.randint(0, 30, (1, 3, 40, 40), generator=gen, dtype=torch.uint8)
    img[..., :10, :10] = 255
    return img


def run_pass(img: torch.Tensor, index: int, spec: AugmentSpec | None = None) -> torch.Tensor:
    matrices, lighting = tta_v1_params(
        spec, img.shape[0], (40, 40), (40, 40), epoch_generator(0, index), index, SCALE
    )
    return ops.augment_normalize(
        img, matrices, 40, mean=(0.0,) * 3, std=(1.0,) * 3, lighting=lighting
    ).double()


# ---- the passes' geometry ----------------------------------------------------------------------
def test_the_top_left_pass_zooms_into_the_marked_corner():
    img = marked_corner()
    out = run_pass(img, 0)  # row_pct 0, col_pct 0: the top-left corner, zoomed 1.35x
    white = 10 * SCALE  # the 10 px square fills 13.5 px of the output
    assert out[..., : int(white) - 1, : int(white) - 1].min() > 0.99
    assert out[..., int(white) + 1 :, :].max() < 0.15 and out[..., :, int(white) + 1 :].max() < 0.15


@pytest.mark.parametrize("index", [1, 2, 3, 5, 6, 7])
def test_the_other_corners_do_not_show_the_top_left_square(index):
    out = run_pass(marked_corner(), index)
    assert out.max() < 0.15  # the 1/1.35 of the image each of them sees leaves that corner out


def test_the_flip_pass_mirrors_its_corner():
    img = marked_corner()
    plain, mirrored = run_pass(img, 0), run_pass(img, 4)
    torch.testing.assert_close(mirrored, plain.flip(-1), atol=1 / 255, rtol=0)
    assert mirrored[..., :12, -12:].min() > 0.99 and mirrored[..., :, :-15].max() < 0.15


@pytest.mark.parametrize("index", range(TTA_V1_PASSES))
def test_each_pass_is_v1s_zoom_and_flip(index):
    images = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    out = run_pass(images, index)
    torch.testing.assert_close(
        out, sample(images, v1_theta(index, SCALE), 40), atol=1 / 255, rtol=0
    )


def test_the_training_flip_and_zoom_are_replaced_by_the_fixed_ones():
    """A spec with only a flip and a zoom left (both certain): nothing random remains."""
    spec = AugmentSpec(max_rotate=0.0, max_warp=0.0, max_lighting=0.0, max_zoom=2.0, p_affine=1.0)
    for index in range(TTA_V1_PASSES):
        matrices, lighting = tta_v1_params(
            spec, 5, (40, 40), (40, 40), epoch_generator(3, index), index, SCALE
        )
        assert lighting is None
        expected = torch.cat([v1_theta(index, SCALE), torch.tensor([[0.0, 0.0, 1.0]])])
        torch.testing.assert_close(matrices, expected.float().expand(5, 3, 3))


def test_the_training_rotation_and_lighting_stay_random():
    spec = AugmentSpec(max_rotate=30.0, max_warp=0.0, p_affine=1.0, p_lighting=1.0)
    matrices, lighting = tta_v1_params(
        spec, 64, (40, 40), (40, 40), epoch_generator(3, 0), 0, SCALE
    )
    linear = matrices[:, :2, :2].double()
    # a rotation times the fixed zoom: determinant 1/s^2 for every sample, angles differ
    torch.testing.assert_close(
        torch.linalg.det(linear), torch.full((64,), SCALE**-2, dtype=torch.float64)
    )
    assert linear[:, 0, 1].abs().max() > 0.1 and linear[:, 0, 1].std() > 0.05
    assert lighting is not None and lighting.shape == (64, 2) and lighting[:, 0].std() > 0.01


# ---- the Learner method ------------------------------------------------------------------------
class PooledLinear(nn.Module):
    """Logits from the 4 x 4 average-pooled image: the passes' geometry shows in the output."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 16, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(F.adaptive_avg_pool2d(x, 4).flatten(1)) * 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return demo_dataset(tmp_path_factory.mktemp("tta_v1") / "demo", n_per_class=3, size=32)


def plain_learner(folder, ds_tfms=None) -> Learner:
    data = ImageDataBunch.from_folder(folder, ds_tfms=ds_tfms, size=24, bs=8, num_workers=0, seed=2)
    torch.manual_seed(0)
    learn = Learner(data.normalize(imagenet_stats), PooledLinear(data.c), precision="fp32")
    learn.progress.stream = io.StringIO()
    return learn


def test_tta_averages_the_8_passes_and_blends_them_with_the_plain_one(folder):
    learn = plain_learner(folder)  # no training augmentation: the passes are deterministic
    plain, augmented, targets = learn.TTA(beta=None)
    probs, targs = learn.get_preds()
    torch.testing.assert_close(plain, probs, rtol=0, atol=0)
    assert torch.equal(targets, targs)
    dl = learn.data.valid_dl
    mean, std = (torch.tensor(s, dtype=torch.float64).view(1, 3, 1, 1) for s in dl.stats)
    passes = []
    for index in range(8):
        out = []
        for x, _ in dl.uint8_batches(0):
            xb = (sample(x, v1_theta(index, SCALE), 24) - mean) / std
            with torch.no_grad():
                out.append(torch.softmax(learn.model(xb.float()), 1))
        passes.append(torch.cat(out))
    expected = torch.stack(passes).mean(0)
    torch.testing.assert_close(augmented, expected, atol=2e-3, rtol=0)
    assert (augmented - plain).abs().max() > 0.01  # the passes see other pixels
    preds, targets2 = learn.TTA()
    torch.testing.assert_close(preds, 0.4 * plain + 0.6 * augmented)
    assert torch.equal(targets2, targs)
    preds, _ = learn.TTA(beta=0.0, scale=1.0)  # no zoom: 4 plain passes + 4 mirrored
    flipped = (learn.get_preds(dl=[(x.flip(-1), y) for x, y in dl])[0] + probs) / 2
    torch.testing.assert_close(preds, flipped, atol=2e-3, rtol=0)


def test_tta_returns_v1s_shapes_and_losses(folder):
    learn = plain_learner(folder, ds_tfms=AugmentSpec())
    n, c = len(learn.data.valid_ds), learn.data.c
    preds, targets = learn.TTA()
    assert preds.shape == (n, c) and preds.dtype == torch.float32 and targets.shape == (n,)
    torch.testing.assert_close(preds.sum(1), torch.ones(n))
    again, _ = learn.TTA()
    assert torch.equal(again, preds)  # the random part is seeded per pass
    preds2, targets2, losses = learn.TTA(with_loss=True)
    assert torch.equal(preds2, preds) and torch.equal(targets2, targets)
    expected = -preds.double()[torch.arange(n), targets].log()
    torch.testing.assert_close(losses.double(), expected, rtol=1e-5, atol=1e-6)
    assert losses.shape == (n,) and losses.dtype == torch.float32


@pytest.mark.parametrize("ds_type", ["train", DatasetType.Train])
def test_tta_on_the_training_set_reads_it_in_order(folder, ds_type):
    learn = plain_learner(folder, ds_tfms=AugmentSpec())
    epoch = learn.data.train_dl.epoch
    preds, targets = learn.TTA(ds_type=ds_type)
    assert preds.shape == (len(learn.data.train_ds), learn.data.c)
    assert targets.tolist() == learn.data.train_ds.labels
    assert learn.data.train_dl.epoch == epoch


def test_tta_errors(folder):
    learn = plain_learner(folder)
    with pytest.raises(ValueError, match="beta should be a float in"):
        learn.TTA(beta=1.5)
    with pytest.raises(ValueError, match="scale should be a zoom factor >= 1"):
        learn.TTA(scale=0.8)
    with pytest.raises(ValueError, match="with_loss needs the blended predictions"):
        learn.TTA(beta=None, with_loss=True)
    with pytest.raises(ValueError, match="ds_type should be 'train' or 'valid'"):
        learn.TTA(ds_type="fix")
    with pytest.raises(ValueError, match="ds_type 'test': this data has no test set"):
        learn.TTA(ds_type="test")
    with pytest.raises(TypeError, match="DeviceDataLoader"):
        make_learner().TTA()
    assert np.isfinite(learn.TTA(scale=2)[0].numpy()).all()
