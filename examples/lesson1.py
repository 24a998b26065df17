# ruff: noqa: F405
"""Lesson 1 of fastai (the seed notes' flow), written with the fastai v1 names the notes use.

    python examples/lesson1.py            # the embedded demo dataset, on a CPU in minutes
    python examples/lesson1.py --pets     # Oxford-IIIT Pets (downloads 800 MB: needs network)
    python examples/lesson1.py --fast     # a tiny run that checks the flow (seconds; tests)
    python examples/lesson1.py --images DIR   # your own Pets-style files: <class>_<number>.jpg

Every plot is written as a PNG under ./plots (--out DIR: under DIR/plots), never into the
data set; checkpoints go to <data path>/models as in fastai. Pretrained ImageNet weights are
used when torchvision's cache has them (or, with --pets, when they can be downloaded); otherwise the
model starts from scratch (`pretrained=False`, as the notes' "too few epochs" example does)
and the script says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from fastcore_ext.model_builder import pretrained_weights_cached  # noqa: E402
from fastcore_ext.plots import set_plot_dir  # noqa: E402
from fastcore_ext.vision import *  # noqa: E402, F403  (the lesson's public API)

# Per dataset: image size, batch size, architecture, epochs of each fit, lr_find iterations,
# loader workers (None: the data layer's default).
SETTINGS = {
    "pets": dict(
        size=224, bs=64, arch=models.resnet34, epochs=(4, 1, 2), lr_find=100, workers=None
    ),
    "demo": dict(size=64, bs=32, arch=models.resnet18, epochs=(4, 1, 2), lr_find=100, workers=None),
    "fast": dict(size=32, bs=8, arch=models.resnet18, epochs=(1, 1, 1), lr_find=8, workers=0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--pets", action="store_true", help="Oxford-IIIT Pets (needs network)")
    which.add_argument("--fast", action="store_true", help="a tiny run (for tests)")
    parser.add_argument("--out", help="plots go to OUT/plots (default: ./plots)")
    parser.add_argument("--images", help="a folder of Pets-style files: <class>_<number>.jpg")
    args = parser.parse_args(argv)
    kind = "pets" if args.pets else "fast" if args.fast else "demo"
    cfg = SETTINGS[kind]
    if args.out is not None:
        set_plot_dir(Path(args.out) / "plots")

    # ---- Looking at the data -----------------------------------------------------------------
    if args.images is not None:
        path = path_img = Path(args.images)
    elif kind == "pets":
        path = untar_data(URLs.PETS)
        path_img = path / "images"
    else:  # the demo dataset's files are named like the pets': <class>_<number>.jpg
        path = demo_dataset(n_per_class=6, size=32) if kind == "fast" else demo_dataset()
        path_img = path
    print(path)
    fnames = get_image_files(path_img)
    print(fnames[:5])
    pat = r"/([^/]+)_\d+.jpg$"
    data = ImageDataBunch.from_name_re(
        path_img, fnames, pat, ds_tfms=get_transforms(), size=cfg["size"], bs=cfg["bs"],
        num_workers=cfg["workers"],
    ).normalize(imagenet_stats)  # fmt: skip
    data.show_batch(rows=3, figsize=(7, 6))
    print(data.classes)
    print(len(data.classes), data.c)

    # ---- Training: resnet34 as the notes (resnet18 on the demo, which trains from scratch) ---
    pretrained = pretrained_weights_cached(cfg["arch"]) is not None or kind == "pets"
    if not pretrained:
        print("No pretrained weights in torchvision's cache: training from scratch.")
    learn = create_cnn(data, cfg["arch"], metrics=error_rate, pretrained=pretrained)
    first, second, third = cfg["epochs"]
    learn.fit_one_cycle(first)
    learn.save("stage-1")

    # ---- Results ---------------------------------------------------------------------------
    interp = ClassificationInterpretation.from_learner(learn)
    interp.plot_top_losses(9, figsize=(15, 11))
    interp.plot_confusion_matrix()
    print(interp.most_confused(min_val=2))

    # ---- Unfreezing, fine-tuning, and learning rates -----------------------------------------
    learn.unfreeze()
    learn.fit_one_cycle(second)
    learn.load("stage-1")
    learn.lr_find(num_it=cfg["lr_find"])
    learn.recorder.plot()
    learn.unfreeze()
    learn.fit_one_cycle(third, max_lr=slice(1e-6, 1e-4))
    print(f"final error rate: {learn.recorder.metrics[-1][0]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
