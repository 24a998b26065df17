"""How strong each augmentation component is, ours against fastai's, on the same photos.

For the photo set's training images (every 8th, 60 of them), centre-cropped and resized to
the presize: the mean absolute change, in [0, 1] units, between each augmented output and
the plain resize to the training size, one component at a time (flips off, so that the
flips, equal in both, do not hide the rest) and all but flips together; 30 draws per image.
Ours: `augment_batch` with an `AugmentSpec` of that component; fastai: `aug_transforms` of
the same knobs (lighting alone: applied to our plain resize, since fastai's lighting does
not resize). Prints the mean and quartiles per library; fastai's draws that change nothing
still differ from our plain resize by its own resampling (about 0.002-0.004).

Then, draw by draw: fastai's whole `aug_transforms(size)` pipeline (flips on, align_corners
False as our kernel) on the same batch, 30 times; fastai's drawn parameters (its affine
matrix, its warp's homography, its brightness and contrast) are handed to our kernel
`ops.augment_normalize`, and the two outputs compared pixel by pixel (mean and largest
absolute difference in [0, 1] units). Equal outputs mean the two kernels compute the same
image from the same draws, so any difference between the libraries lies in the draws.
Last, the draws themselves: 20,000 of each library's (our `random_params`, fastai's
pipeline on a batch of that size), compared as distributions: where each maps the output's
centre and corners (10 input coordinates), the brightness and contrast, and how far each
draw moves a grid of points (its whole geometric effect in one number), by the
two-sample Kolmogorov-Smirnov distance (about 0.014 or more is a difference at the 5 %
level for 20,000 against 20,000) and the 5/50/95th percentiles.

Runs in the fastai interpreter (it imports fastai; this repository is put on sys.path):

    $FASTAI_PYTHON bench/augment_strength.py [--size 128] [--presize 160]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastcore_ext.augment import (  # noqa: E402
    AugmentSpec,
    augment_batch,
    epoch_generator,
    random_params,
)
from fastcore_ext.data import data_dir  # noqa: E402
from fastcore_ext.ops import augment_normalize  # noqa: E402

OFF = dict(do_flip=False, max_rotate=0.0, max_zoom=1.0, max_warp=0.0, max_lighting=0.0)
CASES = {
    "rotate": dict(max_rotate=10.0),
    "zoom": dict(max_zoom=1.1),
    "warp": dict(max_warp=0.2),
    "lighting": dict(max_lighting=0.2),
    "all but flip": dict(max_rotate=10.0, max_zoom=1.1, max_warp=0.2, max_lighting=0.2),
}
DRAWS = 30


def load(path: Path, presize: int) -> torch.Tensor:
    """The centre square of a photo resized to presize: uint8 [3, presize, presize]."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
        im = im.crop(box).resize((presize, presize), Image.BILINEAR)
        return torch.from_numpy(np.array(im)).permute(2, 0, 1)


def change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean((1, 2, 3))


def main() -> None:
    from fastai.vision.all import TensorImage, aug_transforms

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--presize", type=int, default=160)
    p.add_argument("--photos", type=Path, default=data_dir() / "photos_v1")
    args = p.parse_args()
    files = sorted((args.photos / "train").rglob("*.jpg"))[::8][:60]
    if not files:
        raise SystemExit(f"no photos under {args.photos / 'train'}: build them first "
                         "(bench/accuracy.py photos)")  # fmt: skip
    x8 = torch.stack([load(f, args.presize) for f in files])
    zero, one = [0.0] * 3, [1.0] * 3
    plain = augment_batch(x8, args.size, mean=zero, std=one, train=False)
    q = torch.tensor([0.25, 0.5, 0.75])
    print(f"{len(files)} photos, {args.presize} px -> {args.size} px, {DRAWS} draws each")
    for name, kw in CASES.items():
        knobs = {**OFF, **kw}
        ours = torch.cat([
            change(augment_batch(x8, args.size, mean=zero, std=one, spec=AugmentSpec(**knobs),
                                 generator=epoch_generator(r, 0)), plain)
            for r in range(DRAWS)
        ])  # fmt: skip
        geometric = any(knobs[k] != OFF[k] for k in ("max_rotate", "max_zoom", "max_warp"))
        tfms = aug_transforms(size=args.size if geometric else None, **knobs)
        src = TensorImage(x8.float() / 255) if geometric else TensorImage(plain.clone())
        torch.manual_seed(0)
        theirs = []
        for _ in range(DRAWS):
            y = src
            for t in tfms:
                y = t(y, split_idx=0)
            theirs.append(change(y.as_subclass(torch.Tensor), plain))
        theirs = torch.cat(theirs)
        row = [f"{name:13s}"]
        for lib, v in (("ours", ours), ("fastai", theirs)):
            row.append(
                f"{lib} {v.mean():.4f} (quartiles {np.round(torch.quantile(v, q).numpy(), 4)})"
            )
        print("  ".join(row))
    same_draws(x8, args.size)
    draw_distributions(args.presize, args.size)


def same_draws(x8: torch.Tensor, size: int) -> None:
    """fastai's draws through both kernels (see the module docstring)."""
    from fastai.vision.all import TensorImage, aug_transforms

    affine, lighting = aug_transforms(size=size, align_corners=False)
    x = TensorImage(x8.float() / 255)
    torch.manual_seed(0)
    diffs = []
    for _ in range(DRAWS):
        theirs = lighting(affine(x, split_idx=0), split_idx=0).as_subclass(torch.Tensor)
        mats, light = _fastai_params(affine, lighting)
        ours = augment_normalize(
            x8, mats.float(), size, mean=[0.0] * 3, std=[1.0] * 3, lighting=light.float()
        )
        diffs.append((ours - theirs).abs().flatten(1))
    d = torch.cat(diffs)
    print(f"fastai's draws through our kernel: mean |ours - fastai| {d.mean():.1e}, "
          f"99.9th percentile {torch.quantile(d.flatten()[::97], 0.999):.1e}, "
          f"largest {d.max():.1e} ([0, 1] units)")  # fmt: skip


def _fastai_params(affine, lighting) -> tuple[torch.Tensor, torch.Tensor]:
    """The parameters fastai's transforms drew last: composed matrices [n, 3, 3] (the warp's
    homography @ the affine matrix, output -> input normalized coordinates, as our kernel takes
    them) and lighting [n, 2] (brightness, contrast)."""
    from fastai.vision.augment import find_coeffs

    (warp,) = affine.coord_fs
    n = len(affine.mat)
    mats = torch.zeros(n, 3, 3)
    mats[:, :2] = affine.mat
    mats[:, 2, 2] = 1
    coeffs = find_coeffs(warp.orig_pts, warp.targ_pts)[..., 0]  # [n, 8]
    homography = torch.cat([coeffs, torch.ones(n, 1)], 1).view(-1, 3, 3)
    light = torch.stack([f.change for f in lighting.fs], 1)
    return (homography @ mats).as_subclass(torch.Tensor), light.as_subclass(torch.Tensor)


def _mapped_points(mats: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] -> [n, 10]: the input coordinates of the output's centre and 4 corners."""
    pts = torch.tensor([[0.0, 0, 1], [-1, -1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, 1]])
    q = mats.double() @ pts.double().T  # [n, 3, 5]
    return (q[:, :2] / q[:, 2:]).permute(0, 2, 1).reshape(len(mats), 10)


def _displacement(mats: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] -> [n, 1]: how far each draw moves the output, one number per sample (the
    joint effect of all its factors): the mean, over a 5 x 5 grid of output points, of the
    distance from each point to the input point it reads or to that point's mirror image,
    whichever is nearer (so a horizontal flip alone counts as no move), normalized units."""
    g = torch.linspace(-1, 1, 5, dtype=torch.float64)
    pts = torch.stack([*torch.meshgrid(g, g, indexing="xy"), torch.ones(5, 5, dtype=g.dtype)])
    pts = pts.reshape(3, 25)
    q = mats.double() @ pts
    q = q[:, :2] / q[:, 2:]
    unflipped = torch.minimum((q - pts[:2]).norm(dim=1), (q * torch.tensor([[-1.0], [1.0]],
                              dtype=q.dtype) - pts[:2]).norm(dim=1))  # fmt: skip
    return unflipped.mean(1, keepdim=True)


def _ks(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov distance, values rounded to 1e-6 first (an exact 0 in one
    library is a float32 round-off in the other, which would split the atoms)."""
    a, b = (torch.round(v * 1e6) / 1e6 for v in (a, b))
    both = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a.sort().values, both, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, both, right=True) / len(b)
    return float((cdf_a - cdf_b).abs().max())


def draw_distributions(presize: int, size: int, n: int = 20_000) -> None:
    """Our random_params against fastai's draws, as distributions (module docstring)."""
    from fastai.vision.all import TensorImage, aug_transforms

    mats, light = random_params(AugmentSpec(), n, presize, size, epoch_generator(0, 0))
    affine, lighting = aug_transforms(size=size, align_corners=False)
    torch.manual_seed(0)
    x = TensorImage(torch.zeros(n, 3, presize, presize))  # the draws do not read the pixels
    affine.before_call(x, 0)
    lighting.before_call(x, 0)
    f_mats, f_light = _fastai_params(affine, lighting)
    names = [f"{p}.{xy}" for p in ("centre", "tl", "bl", "tr", "br") for xy in "xy"]
    ours = torch.cat([_mapped_points(mats), light.double(), _displacement(mats)], 1)
    theirs = torch.cat([_mapped_points(f_mats), f_light.double(), _displacement(f_mats)], 1)
    q = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    print(f"draws, {n} each: KS distance; 5/50/95th percentiles ours | fastai")
    for i, name in enumerate([*names, "brightness", "contrast", "displaced"]):
        a, b = ours[:, i], theirs[:, i]
        pa, pb = (np.round(torch.quantile(v, q).numpy(), 3) for v in (a, b))
        print(f"  {name:10s} KS {_ks(a, b):.4f}   {pa} | {pb}")


if __name__ == "__main__":
    main()
