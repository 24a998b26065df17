"""How strong each augmentation component is, ours against fastai's, on the same photos.

For the photo set's training images (every 8th, 60 of them), centre-cropped and resized to
the presize: the mean absolute change, in [0, 1] units, between each augmented output and
the plain resize to the training size, one component at a time (flips off, so that the
flips, equal in both, do not hide the rest) and all but flips together; 30 draws per image.
Ours: `augment_batch` with an `AugmentSpec` of that component; fastai: `aug_transforms` of
the same knobs (lighting alone: applied to our plain resize, since fastai's lighting does
not resize). Prints the mean and quartiles per library; fastai's draws that change nothing
still differ from our plain resize by its own resampling (about 0.002-0.004).

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

from fastcore_ext.augment import AugmentSpec, augment_batch, epoch_generator  # noqa: E402
from fastcore_ext.data import data_dir  # noqa: E402

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


if __name__ == "__main__":
    main()
