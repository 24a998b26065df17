"""Accuracy side by side with fastai 2.8: the same image folder, split, image size, batch
size, epochs and seeds, from scratch, each fit in a fresh subprocess; mean and standard
deviation of the final error rate and every epoch's validation loss.

Data sets:
- ``demo``: `fastcore_ext.data.demo_dataset()` (12 classes, 1920 train + 480 valid JPEGs of
  80 px, square).
- ``photos``: real photographs, made by `make_photos` from the photos that scikit-image ships
  in its wheel (`skimage.data`, no download): 6 classes (brick, grass, gravel: grey texture
  photos; coffee, chelsea the cat, rocket: colour; each class the crops of one photo), 80
  train + 20 valid non-square crops per class (aspect 3:4 to 4:3, short side 96 px after
  resizing), train crops from the left 75 % of each photo, valid crops from the right 25 %
  (no overlap).
  Needs the fastai interpreter (FASTAI_PYTHON, see bench_train.py) with scikit-image
  installed there; the project never imports it.

Settings (both libraries): resnet18 from scratch, 64 px from presize 80, bs 64, 3 epochs of
fit_one_cycle; the learning rate is each library's default unless `--lr` says otherwise
(ours: `create_cnn(...).fit_one_cycle(n)`, fastai: `vision_learner(...).fit_one_cycle(n)`).

    python bench/accuracy.py compare --data demo --seeds 0,1,2       # both libraries
    python bench/accuracy.py compare --data photos --libs ours --lr 1e-3 --opt head_bn_bias=1e-3
    python bench/accuracy.py run --lib ours --data DIR --seed 0      # one fit, JSON out
    python bench/accuracy.py pretrain --out body.pt                  # a body trained on the demo
    python bench/accuracy.py compare --data photos --body body.pt    # transfer: frozen, unfreeze
    FASTAI_PYTHON=... python bench/accuracy.py photos --out DIR      # build the photo set

`--lr`: a float, or ``slice(b)`` / ``slice(a,b)`` as fit_one_cycle's max_lr. `--opt k=v`
(repeatable) switches one difference for the ablation; ours: ``head_bn_bias`` (the head's
BatchNorm1d bias init, fastai: 1e-3), ``bf16=1`` (`to_bf16()` + `to_channels_last()`),
``auto=1`` (the Learner's own precision 'auto': on a CPU with native bf16, bf16 +
channels-last after a float32 first epoch, none for a transferred body; else fp32),
``fp32_convs=0|1`` (with bf16 or auto: the weight-bound convolutions in float32 or not;
default: where the CPU has AMX), ``conv_weight_grad=0|1`` (the matrix-product weight
gradients of `ConvWeightGrad` off or on; default where the CPU has AMX),
``jpeg_whole=1`` (every JPEG decoded whole: `images.JPEG_REDUCING_GAP = None`; by default a
JPEG of at least 4x the presize on its short side is decoded at 1/2, 1/4 or 1/8 scale),
``wd_bn_bias=1`` (weight decay on BatchNorm and bias parameters too, as ours before it
followed fastai v2), ``fastai_aug=1`` (the training batches augmented by fastai's
`aug_transforms(size)` pipeline instead of our kernel, drawn from torch's global generator
as fastai does; runs in the fastai interpreter), ``fastai_init=1`` (ours starts from the very
weights fastai's fit of the same seed starts from: fastai's `set_seed`, data loaders and
`vision_learner` run first, in the fastai interpreter, and ours loads that model's state;
the rest is ours); fastai: ``wd_bn_bias=1`` (the same in
fastai), ``head_bn_bias=0`` (torch's default init), ``center_crop=1`` (the training presize
crop centred, as our cache did before it kept whole images), ``ours_aug=1`` (fastai's batch
augmentation replaced by ours: `fastcore_ext.augment.augment_batch` with get_transforms'
defaults, drawn per batch from `epoch_generator(seed, batch number)`, and its centre crop
for validation; the rest is fastai's), ``ours_init=1`` (fastai starts from the weights our
fit of the same seed starts from: `ours_learner` runs first and fastai's model loads its
state; the rest is fastai's).

Transfer learning, offline (`--body FILE`): `pretrain` trains ours (resnet18, the settings
above, `--epochs`, default 6) on the demo and saves the body's state_dict; with `--body` both
libraries build the model from scratch, load that body into it, `freeze()`, fit_one_cycle
(epochs, lr) — the frozen stage, where the default learning rate matters —, then
`unfreeze()` and fit_one_cycle(`--unfreeze-epochs`, default 2; `--lr2`, default the lesson's
``slice(1e-6,1e-4)``; ``default`` = each library's default). The row's error is the final
one; `stage1_error` the frozen stage's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"arch": "resnet18", "size": 64, "presize": 80, "bs": 64, "epochs": 3, "workers": 2}
SETTINGS.update(json.loads(os.environ.get("ACCURACY_SETTINGS", "{}")))
"""The protocol's settings; the environment variable ACCURACY_SETTINGS (JSON, inherited by the
fits' subprocesses) overrides some, e.g. '{"arch": "resnet34", "size": 128, "presize": 160}'."""
PHOTO_CLASSES = ("brick", "grass", "gravel", "coffee", "chelsea", "rocket")
AUG_KNOBS = ("do_flip", "max_rotate", "max_zoom", "max_lighting", "max_warp")
OURS_OPTS = (
    "head_bn_bias", "bf16", "auto", "fp32_convs", "conv_weight_grad", "wd_bn_bias", "no_aug",
    "fastai_aug", "fastai_init", "jpeg_whole", *AUG_KNOBS
)  # fmt: skip
FASTAI_OPTS = ("wd_bn_bias", "head_bn_bias", "center_crop", "no_aug", "ours_aug", "ours_init")


def parse_lr(text: str | None) -> float | slice | None:
    """'3e-3' -> 3e-3; 'slice(3e-3)' -> slice(None, 3e-3); 'slice(1e-4,1e-3)' -> slice(1e-4,
    1e-3); None -> None (the library's default)."""
    if text is None:
        return None
    t = text.replace(" ", "")
    if t.startswith("slice(") and t.endswith(")"):
        parts = [float(p) for p in t[6:-1].split(",")]
        if len(parts) == 1:
            return slice(None, parts[0])
        if len(parts) == 2:
            return slice(parts[0], parts[1])
        raise ValueError(f"--lr: expected slice(b) or slice(a,b), got {text!r}")
    return float(t)


def parse_opts(pairs: list[str], allowed: tuple[str, ...]) -> dict[str, float]:
    """['k=v', ...] -> {k: float(v)}, every k in `allowed`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in allowed:
            raise ValueError(f"--opt: expected k=v with k in {allowed}, got {pair!r}")
        out[key] = float(value)
    return out


# ---- the photo set --------------------------------------------------------------------------
def make_photos(out: Path, n_train: int = 80, n_valid: int = 20, short: int = 96) -> Path:
    """Write the photo set to out/{train,valid}/<class>/*.jpg (see the module docstring)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in PHOTO_CLASSES:
        img = np.asarray(getattr(skimage.data, cls)())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        h, w = img.shape[:2]
        cut = int(w * 0.75)
        for split, n, (x0, x1) in (("train", n_train, (0, cut)), ("valid", n_valid, (cut, w))):
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                ratio = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
                ch = int(rng.uniform(0.35, 0.6) * h)
                cw = min(int(ch * ratio), x1 - x0)
                top = int(rng.integers(0, h - ch + 1))
                left = int(rng.integers(x0, x1 - cw + 1))
                crop = Image.fromarray(img[top : top + ch, left : left + cw])
                scale = short / min(ch, cw)
                crop = crop.resize((round(cw * scale), round(ch * scale)), Image.BICUBIC)
                crop.save(folder / f"{cls}_{i:03d}.jpg", quality=90)
    return out


# The augmentation switched off (`--opt no_aug=1`): only the presize window and the resize.
NO_AUG = dict(do_flip=False, max_rotate=0.0, max_zoom=1.0, max_lighting=0.0, max_warp=0.0)


def aug_knobs(opts: dict) -> dict:
    """get_transforms keyword arguments among `opts` (``--opt max_warp=0`` ...)."""
    return {k: (bool(v) if k == "do_flip" else v) for k, v in opts.items() if k in AUG_KNOBS}


# ---- one fit per library ------------------------------------------------------------------
def ours_learner(data_dir: Path, seed: int, opts: dict):
    """Our data bunch and create_cnn learner of the settings above, with the ablation
    switches of `opts` that concern them (augmentation knobs, wd_bn_bias, head_bn_bias);
    progress output off, precision left to the caller."""
    import torch

    from fastcore_ext.data import ImageDataBunch, imagenet_stats
    from fastcore_ext.data import images as images_mod
    from fastcore_ext.vision import create_cnn, error_rate, get_transforms

    s = SETTINGS
    if opts.get("jpeg_whole"):
        images_mod.JPEG_REDUCING_GAP = None
    data = ImageDataBunch.from_folder(
        data_dir, ds_tfms=get_transforms(**(NO_AUG if opts.get("no_aug") else aug_knobs(opts))),
        size=s["size"], bs=s["bs"],
        num_workers=s["workers"], cache=True, seed=seed, device="cpu",
    ).normalize(imagenet_stats)  # fmt: skip
    learn = create_cnn(
        data, s["arch"], pretrained=False, metrics=error_rate, seed=seed,
        wd_bn_bias=bool(opts.get("wd_bn_bias")),
    )  # fmt: skip
    learn.progress.show_bar = learn.progress.show_table = False
    if "head_bn_bias" in opts:
        for m in learn.model[1].modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                torch.nn.init.constant_(m.bias, opts["head_bn_bias"])
    return learn


def use_fastai_augmentation(train_dl, size: int) -> None:
    """The ablation ``fastai_aug=1``: this training loader's batches augmented by fastai's
    `aug_transforms(size)` (uint8 -> [0, 1] floats -> fastai's affine/warp and lighting ->
    the loader's normalization) instead of our kernel; validation untouched. An instance
    attribute set here, for this experiment only."""
    import torch
    from fastai.vision.all import TensorImage, aug_transforms

    tfms = aug_transforms(size=size)
    ours = train_dl.augment  # the loader's own method, kept for passes without a generator

    def augment(x: torch.Tensor, generator) -> torch.Tensor:
        if generator is None:
            return ours(x, None)
        y = TensorImage(x.float() / 255)
        for t in tfms:
            y = t(y, split_idx=0)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in train_dl.stats)
        out = ((y.as_subclass(torch.Tensor) - mean) / std).contiguous()
        return out.to(memory_format=torch.channels_last) if train_dl.channels_last else out

    train_dl.augment = augment


def run_ours(
    data_dir: Path, seed: int, lr: float | slice | None, opts: dict, transfer: dict | None = None
) -> dict:
    """One fit_one_cycle of ours from scratch, or the transfer stages of `transfer` (body,
    unfreeze_epochs, lr2); the row (error, valid losses, ...)."""
    import torch

    from fastcore_ext.callback.mixed_precision import features_trained

    s = SETTINGS
    # fastai_init: fastai's own seeded model first (its set_seed and data loaders come before
    # its weights are drawn), then ours, which takes those weights
    start_weights = None
    if opts.get("fastai_init"):
        start_weights = fastai_learner(data_dir, seed, {}).model.state_dict()
    learn = ours_learner(data_dir, seed, opts)
    if start_weights is not None:
        learn.model.load_state_dict(start_weights)
    if opts.get("fastai_aug"):
        use_fastai_augmentation(learn.data.train_dl, s["size"])
    if opts.get("bf16"):
        learn.to_bf16()
        learn.to_channels_last()
    elif not opts.get("auto"):  # fp32 unless asked: precision 'auto' picks bf16 where native
        learn.to_fp32()
    if "fp32_convs" in opts and learn.mixed_precision is not None:
        learn.mixed_precision.fp32_convs = bool(opts["fp32_convs"])
    if "conv_weight_grad" in opts:
        learn.conv_weight_grad.enabled = bool(opts["conv_weight_grad"])
    if transfer:
        learn.model[0].load_state_dict(torch.load(transfer["body"], weights_only=True))
        learn.freeze()
        features_trained(learn)  # as create_cnn(pretrained=True) does
    start = time.perf_counter()
    learn.fit_one_cycle(s["epochs"], max_lr=lr)
    stage1 = float(learn.recorder.metrics[-1][0])
    valid, train = list(learn.recorder.valid_losses), list(learn.recorder.train_losses)
    if transfer:
        learn.unfreeze()
        learn.fit_one_cycle(transfer["unfreeze_epochs"], max_lr=transfer["lr2"])
        valid += learn.recorder.valid_losses
        train += learn.recorder.train_losses
    wall = time.perf_counter() - start
    return {
        "lib": "ours", "seed": seed, "wall_s": wall,
        "error_rate": float(learn.recorder.metrics[-1][0]), "stage1_error": stage1,
        "valid_losses": [float(v) for v in valid],
        "train_losses": [float(v) for v in train],
    }  # fmt: skip


def fastai_learner(data_dir: Path, seed: int, opts: dict):
    """fastai 2.8's data loaders and vision_learner of the settings above, with the ablation
    switches of `opts` that concern them; `set_seed(seed)` first, as a fastai user would."""
    import torch
    import torchvision
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        RandTransform,
        Resize,
        Rotate,
        TensorImage,
        aug_transforms,
        error_rate,
        imagenet_stats,
        set_seed,
        vision_learner,
    )

    class CenterResize(Resize):
        """fastai's Resize with the training crop centred (as our presize cache)."""

        def before_call(self, b, split_idx):
            super().before_call(b, 1)

    class OursAugment(RandTransform):
        """Our augmentation kernel as fastai's batch transform: after IntToFloatTensor (the
        floats go back to the exact uint8 values), before Normalize; [0, 1] floats out. A
        RandTransform, as fastai's own: only those are told the split (before_call), and
        split_idx None applies it to both (training: random, validation: centre crop)."""

        order, split_idx = 20, None

        def __init__(self, size: int, seed: int):
            super().__init__(p=1.0)
            self.size, self.seed, self.batches, self.train = size, seed, 0, False

        def before_call(self, b, split_idx):
            self.do, self.train = True, split_idx == 0

        def encodes(self, x):  # annotations are strings here, which fastai cannot resolve
            from fastcore_ext.augment import augment_batch, epoch_generator

            if not isinstance(x, TensorImage):
                return x  # the labels
            u8 = (x.as_subclass(torch.Tensor) * 255).round().clamp(0, 255).to(torch.uint8)
            gen = None
            if self.train:
                gen = epoch_generator(self.seed, self.batches)
                self.batches += 1
            out = augment_batch(u8, self.size, mean=[0.0] * 3, std=[1.0] * 3,
                                generator=gen, train=self.train)  # fmt: skip
            return TensorImage(out)

    s = SETTINGS
    set_seed(seed)
    if opts.get("ours_aug"):
        sys.path.insert(0, str(ROOT))
    resize = CenterResize if opts.get("center_crop") else Resize
    # no_aug: aug_transforms with every knob off adds no transform, so nothing would resize to
    # size; an always-applied rotation by 0 degrees resamples to size as aug_transforms does.
    if opts.get("no_aug"):
        augment = [Rotate(max_deg=0.0, p=1.0, size=s["size"])]
    elif opts.get("ours_aug"):
        augment = [OursAugment(s["size"], seed)]
    else:
        augment = aug_transforms(size=s["size"])
    dls = ImageDataLoaders.from_folder(
        data_dir, train="train", valid="valid", seed=seed,
        item_tfms=resize(s["presize"]),
        batch_tfms=[*augment, Normalize.from_stats(*imagenet_stats)],
        bs=s["bs"], num_workers=s["workers"], device=torch.device("cpu"),
    )  # fmt: skip
    arch = getattr(torchvision.models, s["arch"])
    learn = vision_learner(
        dls, arch, pretrained=False, metrics=error_rate, wd_bn_bias=bool(opts.get("wd_bn_bias"))
    )
    if "head_bn_bias" in opts:
        for m in learn.model[1].modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                torch.nn.init.constant_(m.bias, opts["head_bn_bias"])
    return learn


def run_fastai(
    data_dir: Path, seed: int, lr: float | slice | None, opts: dict, transfer: dict | None = None
) -> dict:
    """One fit_one_cycle of fastai 2.8 from scratch on the same folder and settings (or the
    transfer stages, as run_ours)."""
    import torch

    s = SETTINGS
    start_weights = None
    if opts.get("ours_init"):  # ours' seeded model first, as in its own fit
        sys.path.insert(0, str(ROOT))
        start_weights = ours_learner(data_dir, seed, {}).model.state_dict()
    learn = fastai_learner(data_dir, seed, opts)
    if start_weights is not None:
        learn.model.load_state_dict(start_weights)
    if transfer:
        learn.model[0].load_state_dict(torch.load(transfer["body"], weights_only=True))
        learn.freeze()
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(s["epochs"], *([] if lr is None else [lr]))
        vals = list(learn.recorder.values)  # per epoch [train_loss, valid_loss, error_rate]
        stage1 = float(vals[-1][2])
        if transfer:
            learn.unfreeze()
            lr2 = transfer["lr2"]
            learn.fit_one_cycle(transfer["unfreeze_epochs"], *([] if lr2 is None else [lr2]))
            vals += list(learn.recorder.values)
    wall = time.perf_counter() - start
    return {
        "lib": "fastai", "seed": seed, "wall_s": wall,
        "error_rate": float(vals[-1][2]), "stage1_error": stage1,
        "valid_losses": [float(v[1]) for v in vals],
        "train_losses": [float(v[0]) for v in vals],
    }  # fmt: skip


def pretrain(out: Path, epochs: int, seed: int = 0) -> dict:
    """Train ours on the demo from scratch and save the body's state_dict to `out` (the
    offline stand-in for pretrained weights)."""
    import torch

    learn = ours_learner(data_dir("demo"), seed, {})
    learn.fit_one_cycle(epochs)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(learn.model[0].state_dict(), out)
    return {"body": str(out), "epochs": epochs, "error_rate": float(learn.recorder.metrics[-1][0])}


# ---- the comparison -------------------------------------------------------------------------
def fastai_python() -> str:
    """FASTAI_PYTHON, else this interpreter (which must import fastai then)."""
    return os.environ.get("FASTAI_PYTHON") or sys.executable


def data_dir(name: str) -> Path:
    """The folder of data set `name` ('demo', 'photos' or a path), built when missing."""
    if name == "demo":
        from fastcore_ext.data import demo_dataset

        return demo_dataset()
    if name == "photos":
        from fastcore_ext.data.paths import data_dir as home

        out = home() / "photos_v1"
        if not (out / "valid").is_dir():
            cmd = [fastai_python(), str(Path(__file__).resolve()), "photos", "--out", str(out)]
            subprocess.run(cmd, check=True)
        return out
    return Path(name)


def fit_in_subprocess(
    lib: str, data: Path, seed: int, lr: str | None, opts: list[str], transfer: list[str] = ()
) -> dict:
    in_fastai = lib == "fastai" or any(o.startswith(("fastai_aug=", "fastai_init=")) for o in opts)
    python = fastai_python() if in_fastai else sys.executable
    cmd = [python, str(Path(__file__).resolve()), "run", "--lib", lib, "--data", str(data),
           "--seed", str(seed), *transfer]  # fmt: skip
    if lr is not None:
        cmd += ["--lr", lr]
    for o in opts:
        cmd += ["--opt", o]
    env = dict(os.environ)
    if lib == "ours":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{lib} seed {seed} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.4f} +- {sd:.4f}"


def summary(rows: list[dict]) -> list[str]:
    """Per library: mean +- sd of the final error and of each epoch's validation loss."""
    lines = []
    for lib in dict.fromkeys(r["lib"] for r in rows):
        sel = [r for r in rows if r["lib"] == lib]
        n_ep = len(sel[0]["valid_losses"])
        vl = ", ".join(mean_sd([r["valid_losses"][e] for r in sel]) for e in range(n_ep))
        lines.append(
            f"{lib}: n={len(sel)} error {mean_sd([r['error_rate'] for r in sel])}; "
            f"valid loss per epoch [{vl}]; wall {statistics.fmean(r['wall_s'] for r in sel):.1f} s"
        )
    return lines


def compare(args: argparse.Namespace) -> list[dict]:
    data = data_dir(args.data)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for lib in args.libs.split(","):
            opts = args.opt if lib == "ours" else args.fastai_opt
            row = fit_in_subprocess(lib, data, seed, args.lr, opts, transfer_argv(args))
            row["load"] = os.getloadavg()[0]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.data}: lr {args.lr or 'default'}, ours opts {args.opt}, fastai opts "
          f"{args.fastai_opt}; {SETTINGS}")  # fmt: skip
    if args.body:
        print(f"  transfer: body {args.body}, then unfreeze, {args.unfreeze_epochs} epochs at "
              f"{args.lr2}; stage-1 errors: " + ", ".join(
                  f"{lib} {mean_sd([r['stage1_error'] for r in rows if r['lib'] == lib])}"
                  for lib in dict.fromkeys(r["lib"] for r in rows)))  # fmt: skip
    for line in summary(rows):
        print("  " + line)
    return rows


def test_parse_lr_and_opts():
    """The CLI's lr and switch parsing (fast; `pytest bench/accuracy.py`)."""
    assert parse_lr(None) is None
    assert parse_lr("1e-3") == 1e-3
    assert parse_lr("slice(3e-3)") == slice(None, 3e-3)
    assert parse_lr("slice(1e-4, 1e-3)") == slice(1e-4, 1e-3)
    assert parse_opts(["head_bn_bias=1e-3"], OURS_OPTS) == {"head_bn_bias": 1e-3}
    for bad in (["center_crop=1"], ["head_bn_bias"]):
        try:
            parse_opts(bad, OURS_OPTS)
        except ValueError as e:
            assert "--opt" in str(e)
        else:
            raise AssertionError(f"{bad} accepted")


def test_summary_mean_sd():
    rows = [
        {"lib": "ours", "error_rate": e, "valid_losses": [v, 1.0], "wall_s": 10.0}
        for e, v in ((0.2, 2.0), (0.4, 4.0))
    ]
    (line,) = summary(rows)
    # mean 0.3, sample sd sqrt(0.02) = 0.1414; valid losses 3 +- 1.4142, 1 +- 0
    assert "error 0.3000 +- 0.1414" in line
    assert "[3.0000 +- 1.4142, 1.0000 +- 0.0000]" in line


def add_transfer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--body", type=Path, default=None, help="transfer: a body state_dict file")
    p.add_argument("--unfreeze-epochs", type=int, default=2)
    p.add_argument("--lr2", default="slice(1e-6,1e-4)", help="after unfreeze; 'default'")


def transfer_argv(args: argparse.Namespace) -> list[str]:
    if args.body is None:
        return []
    return ["--body", str(args.body.resolve()), "--unfreeze-epochs", str(args.unfreeze_epochs),
            "--lr2", args.lr2]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="one fit, JSON on the last line")
    p_run.add_argument("--lib", choices=["ours", "fastai"], required=True)
    p_run.add_argument("--data", type=Path, required=True)
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--lr", default=None)
    p_run.add_argument("--opt", action="append", default=[])
    add_transfer_args(p_run)
    p_cmp = sub.add_parser("compare", help="fits over seeds and libraries, mean +- sd")
    p_cmp.add_argument("--data", default="demo", help="demo, photos or a folder")
    p_cmp.add_argument("--seeds", default="0,1,2")
    p_cmp.add_argument("--libs", default="ours,fastai")
    p_cmp.add_argument("--lr", default=None)
    p_cmp.add_argument("--opt", action="append", default=[], help="ours: k=v")
    p_cmp.add_argument("--fastai-opt", action="append", default=[], help="fastai: k=v")
    add_transfer_args(p_cmp)
    p_pre = sub.add_parser("pretrain", help="train ours on the demo, save the body")
    p_pre.add_argument("--out", type=Path, required=True)
    p_pre.add_argument("--epochs", type=int, default=6)
    p_ph = sub.add_parser("photos", help="build the photo set (fastai interpreter)")
    p_ph.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "photos":
        print(make_photos(args.out))
    elif args.cmd == "pretrain":
        print(json.dumps(pretrain(args.out, args.epochs)))
    elif args.cmd == "run":
        allowed = OURS_OPTS if args.lib == "ours" else FASTAI_OPTS
        opts = parse_opts(args.opt, allowed)
        run = run_ours if args.lib == "ours" else run_fastai
        transfer = None
        if args.body is not None:
            lr2 = None if args.lr2 == "default" else parse_lr(args.lr2)
            transfer = {"body": args.body, "unfreeze_epochs": args.unfreeze_epochs, "lr2": lr2}
        print(json.dumps(run(args.data, args.seed, parse_lr(args.lr), opts, transfer)))
    else:
        compare(args)


if __name__ == "__main__":
    main()
