"""A learner loaded from an export file for inference: `load_learner` and the data
stand-in it predicts through, `InferenceData`.

The file (fastcore_ext.export) holds the model's description and weights; `load_learner`
rebuilds the model, loads the weights and wraps it in a Learner without training data.
`predict` applies the validation transform of the original data (presize, center crop to
`size`, normalization) through `InferenceData`; `tta` its training augmentation too (the
export keeps its `AugmentSpec`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from fastcore_ext.augment import AugmentSpec, augment_batch
from fastcore_ext.callback import mixed_precision
from fastcore_ext.checks import check_bool, check_int
from fastcore_ext.data import (
    CategoryMap,
    DataPath,
    DeviceDataLoader,
    ImageDataset,
    check_test_images,
    check_test_items,
    images_of_test_folder,
    load_image,
)
from fastcore_ext.data.items import labeller_from, labels_of
from fastcore_ext.export import (
    DEFAULT_EXPORT,
    OLD_EXPORT,
    build_model,
    metric_from,
    read_export,
)
from fastcore_ext.learner import Learner

__all__ = ["InferenceData", "load_learner"]


def _described(file: Path, key: str, build: Callable[[Any], Any], description: Any) -> Any:
    """`build(description)` (None for None); a description it cannot build is a ValueError
    naming the file and `key`, as the other checks of an export's description."""
    if description is None:
        return None
    try:
        return build(description)
    except (ValueError, TypeError, KeyError, re.error) as e:
        raise ValueError(f"{file}: the description's {key!r} is not readable ({e})") from e


class InferenceData:
    """The bunch interface of an exported learner, without items: classes, c, size,
    presize, stats, spec and seed (the training augmentation and the data seed, which `tta`
    applies as the original learner's), device, path, fastai_version (1, or 2 for data of
    fastai v2's API: plot_top_losses' probabilities follow it);
    `preprocess(items)` applies the validation transform, `test_dl(items)` makes a loader
    of them. train_dl and valid_dl are None (no training)."""

    def __init__(
        self,
        classes: Sequence[str],
        size: int,
        presize: int,
        resize_method: str,
        stats: tuple[list[float], list[float]] | None,
        device: torch.device,
        path: Path,
        spec: AugmentSpec | None = None,
        seed: int = 0,
        labeller: Callable[[Any], object] | None = None,
        fastai_version: int = 1,
    ) -> None:
        self.classes = list(classes)
        self.fastai_version = fastai_version  # the exporting data's (v2's: ImageDataLoaders)
        self.labeller = labeller  # the training files' labelling rule, when exported
        self.size, self.presize, self.resize_method = size, presize, resize_method
        self.stats = stats
        self.spec, self.seed = spec, seed
        self.device = torch.device(device)
        self.path = DataPath(path)  # with fastai's ls(), as a bunch's
        self.train_dl = None
        self.valid_dl = None
        # fastai v1's unlabelled test set (add_test; load_learner's test=)
        self.test_ds: ImageDataset | None = None
        self._test_loader: DeviceDataLoader | None = None

    @property
    def c(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def vocab(self) -> CategoryMap:
        """fastai v2's name for `classes`, with its ``o2i`` (name -> index)."""
        return CategoryMap(self.classes)

    def preprocess(self, items: Any) -> torch.Tensor:
        """Raw items (paths, PIL images, arrays/tensors of uint8 or of floats in [0, 1],
        [C, H, W] or [H, W, C], as `to_rgb` reads them; one or a list) ->
        float Tensor[B, 3, size, size] normalized on `device`: decode, presize (short side to
        `presize`, center square), then the validation resize + center crop to `size`."""
        items = list(items) if isinstance(items, (list, tuple)) else [items]
        if not items:
            raise ValueError("items: expected at least one image, got an empty list")
        p = self.presize
        x = torch.empty((len(items), p, p, 3), dtype=torch.uint8)
        for k, item in enumerate(items):
            x[k].copy_(load_image(item, p, self.resize_method).permute(1, 2, 0))
        x = x.to(self.device).permute(0, 3, 1, 2)
        mean, std = self.stats if self.stats is not None else ((0.0,) * 3, (1.0,) * 3)
        return augment_batch(x, self.size, mean=mean, std=std, train=False)

    def test_dl(self, test_items: Any, with_labels: bool = False, bs: int = 64) -> DeviceDataLoader:
        """fastai v2's ``learn.dls.test_dl(files)`` for a loaded learner: batches ``(x,)`` of
        `bs` files (or PIL images, arrays, tensors) through the validation transform, in the
        order given, for ``learn.get_preds(dl=...)``, ``learn.validate(dl=...)`` and
        ``learn.tta(dl=...)``. Every file is decoded once first (an unreadable one is a
        BadImageError naming it). with_labels=True labels each file by the training files'
        rule where the export kept it (from_folder's parent folder, a pattern, a DataBlock's
        parent_label / RegexLabeller); a label outside the classes, or an export of data
        labelled otherwise (a list, a CSV file, a function of your own), is a ValueError."""
        with_labels = check_bool("with_labels", with_labels)
        items = check_test_items(test_items)
        labels = None
        if with_labels:
            if self.labeller is None:
                raise ValueError(
                    "with_labels: this export does not hold the rule that labelled its "
                    "training images (only a parent folder or a pattern is exported: labels "
                    "from a list, a CSV file or a function of your own are not); pass "
                    "with_labels=False (get_preds returns targets None), or validate with "
                    "the original data's dls.test_dl"
                )
            labels = labels_of(items, self.labeller, self.classes)
        bs = check_int("bs", bs, 1)
        check_test_images([f for f in items if isinstance(f, Path)])
        ds = ImageDataset(items, labels, self.classes, self.presize, self.resize_method)
        return DeviceDataLoader(
            ds,
            bs,
            train=False,
            size=self.size,
            device=self.device,
            seed=self.seed,
            stats=self.stats,
        )

    def add_test(self, items: Any, bs: int = 64) -> None:
        """fastai v1's ``learn.data.add_test(items)`` (and load_learner's ``test=``): image
        files as the unlabelled test set, `test_ds` (its ``items`` in the order given), which
        ``learn.get_preds(ds_type=DatasetType.Test)`` predicts in that order through
        ``dl('test')`` (batches of `bs`). Every file is decoded once here (an unreadable one
        is a BadImageError naming it). A second call replaces the set."""
        loader = self.test_dl(items, bs=bs)
        self.test_ds = loader.dataset
        self._test_loader = loader

    def dl(self, ds_type: str = "valid") -> DeviceDataLoader:
        """fastai v1's ``data.dl(ds_type)``: the loader of the test set ('test'; `add_test`).
        An exported learner has no training or validation set: other ds_types, and 'test'
        before add_test, are a ValueError."""
        if ds_type != "test" or self._test_loader is None:
            raise ValueError(
                f"ds_type {ds_type!r}: a learner from load_learner has "
                + ("no test set yet; " if ds_type == "test" else "only a test set; ")
                + "add one with learn.data.add_test(files) or load_learner(path, test=files "
                "or a folder), or pass get_preds(dl=learn.dls.test_dl(files))"
            )
        return self._test_loader

    def denorm(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalization: float [B, 3, H, W] -> the same in [0, 1]."""
        if self.stats is None:
            return x.clamp(0, 1)
        mean = torch.tensor(self.stats[0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.stats[1], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * std + mean).clamp(0, 1)

    def to(self, device: torch.device | str) -> InferenceData:
        """Preprocess onto `device` from now on. Returns self."""
        self.device = torch.device(device)
        return self

    def __repr__(self) -> str:
        return (
            f"InferenceData({self.c} classes; size {self.size} from presize {self.presize}; "
            f"device {self.device})"
        )


def _export_beside(missing: Path, fname: str | os.PathLike) -> str:
    """The hint of a missing export file: an export in its folder under the asked name, the
    default one or the one this library wrote before (export.pth), else one in the current
    folder (where learn.export() writes when the data's path is '.'), and how to load it."""
    for name in dict.fromkeys((Path(fname).name, DEFAULT_EXPORT, OLD_EXPORT)):
        beside = missing.parent / name
        if beside != missing and beside.is_file():
            call = f"load_learner({str(beside.parent)!r}" + (
                ")" if name == DEFAULT_EXPORT else f", {name!r})"
            )
            written = (
                f"learn.export() writes {DEFAULT_EXPORT}"
                if name != OLD_EXPORT
                else f"versions of this library before 2026-12-06 wrote {OLD_EXPORT}"
            )
            return f" ({beside} is there: {written}, and {call} reads it)"
    here = Path.cwd() / Path(fname).name
    if here.is_file() and here.resolve() != missing.resolve():
        return (
            f" ({here} is there: learn.export() writes into learn.path, the data's path, which "
            f"is the current folder '.' when the data was built without one, as "
            f"DataBlock.dataloaders(source) and fastai's; load_learner({str(here)!r}) reads it)"
        )
    others = sorted(missing.parent.glob("*.pkl")) if missing.parent.is_dir() else []
    if others:
        return (
            f" (the folder holds {', '.join(p.name for p in others[:5])}: give fname=, or the file)"
        )
    return ""


def load_learner(
    path: str | os.PathLike,
    fname: str | os.PathLike = DEFAULT_EXPORT,
    cpu: bool = True,
    test: Any = None,
) -> Learner:
    """Load a learner written by `Learner.export`: path/`fname`, or `path` itself when it is
    a file (fastai v2's `load_learner(file)`). cpu=True puts it on the CPU; cpu=False on the
    GPU when there is one. The file is read with torch.load(weights_only=True); the model is
    rebuilt from its description (no download) and gets the file's weights. The learner is
    in eval mode and predicts with `predict`; it has no training or validation data
    (`fit` refuses; get_preds and validate take a `dl`); its path is the file's folder.
    Precision: that of the exporting learner where this device runs it (an fp32 export
    predicts in fp32; fp16 on a GPU), else 'auto' (bf16 where the device runs it natively:
    a bf16 export loaded on a CPU without bf16 units predicts in fp32).
    test (fastai v1's): image files, or a folder searched for them, added as the unlabelled
    test set (`InferenceData.add_test`): ``learn.get_preds(ds_type=DatasetType.Test)``
    predicts them, in ``learn.data.test_ds.items`` order."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path should be a str or Path, got {type(path).__name__}")
    if not isinstance(fname, (str, os.PathLike)) or not str(fname):
        raise TypeError(f"fname should be a non-empty str or Path, got {fname!r}")
    file = Path(path).expanduser()
    if not file.is_file():
        # a folder (its fname), else the file itself (fastbook's path/'export.pkl')
        if file.is_dir() or not file.suffix:
            file = file / fname
        if not file.is_file():
            raise FileNotFoundError(f"no such file: {file}{_export_beside(file, fname)}")
    device = torch.device("cuda" if not cpu and torch.cuda.is_available() else "cpu")
    description, state = read_export(file)
    model = build_model(description["model"])
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ValueError(f"{file}: the weights do not fit the described model ({e})") from e
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise ValueError(f"{file}: no weights for {leftover[:3]} of the described model")
    inp = description["input"]
    stats = None if inp.get("mean") is None else (list(inp["mean"]), list(inp["std"]))
    data = InferenceData(
        description["classes"],
        int(inp["size"]),
        int(inp["presize"]),
        inp.get("resize_method", "crop"),
        stats,
        device,
        file.parent,
        _augment_spec(file, description.get("augment")),
        int(inp.get("seed", 0)),
        _described(file, "labeller", labeller_from, description.get("labeller")),
        2 if description.get("fastai_version") == 2 else 1,
    )
    metrics = [_described(file, "metrics", metric_from, m) for m in description.get("metrics", [])]
    exported = description.get("precision")  # predict as the exporting learner did
    precision = (
        exported if exported == "fp32" or (exported, device.type) == ("fp16", "cuda") else "auto"
    )
    learn = Learner(data, model, path=file.parent, precision=precision, metrics=metrics)
    mixed_precision.features_trained(learn)  # trained weights: no float32 epochs before bf16
    if device.type == "cuda":
        learn.to_channels_last()
    learn.model.eval()
    if test is not None:
        data.add_test(_test_files(test))
    return learn


def _augment_spec(file: Path, described: Any) -> AugmentSpec | None:
    """The export's training augmentation (`tta` of the loaded learner applies it); None
    when the data had none. A description this version cannot read is a ValueError naming
    the file (unknown keys, from a later version, are left out)."""
    if described is None:
        return None
    names = {f.name for f in dataclasses.fields(AugmentSpec)}
    try:
        known = {k: v for k, v in dict(described).items() if k in names}
        if isinstance(known.get("ratio"), list):
            known["ratio"] = tuple(known["ratio"])
        return AugmentSpec(**known)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{file}: its augmentation description cannot be read ({e})") from e


def _test_files(test: Any) -> Any:
    """load_learner's `test`: the image files under a folder (`images_of_test_folder`, which
    names a missing one), else `test` itself (files, checked by add_test)."""
    if isinstance(test, str | os.PathLike):
        return images_of_test_folder(test)
    return test
