"""Export a trained vision learner for inference, and load it back: `load_learner`.

`Learner.export(fname)` writes one torch file holding two things:

- "description": a JSON string saying how to rebuild the model and its input, e.g.
  ``{"arch": "resnet34", "cut": 8, "head": {"nf": 512, "n_out": 37, "lin_ftrs": [512],
  "ps": [0.25, 0.5], "concat_pool": true}, "classes": [...], "input": {"size": 224,
  "presize": 280, "resize_method": "crop", "channels": 3, "mean": [...], "std": [...]}, ...}``
- "model": the model's state_dict (weights and BatchNorm statistics).

No code is pickled: `load_learner` reads the file with `torch.load(weights_only=True)`,
builds the body with torchvision's builder of that name (no pretrained download: the weights
come from the file) and fastcore_ext's head, and loads the weights. The description is
derived from the model itself: the body must be a torchvision classifier's children up to a
cut (what `create_cnn` builds) and the head a `create_head` head, checked by rebuilding both
and comparing their structure, so a model that cannot be rebuilt is refused at export time,
not at load time.

The loaded learner has no training data; `predict` applies the validation transform of the
original data (presize, center crop to `size`, normalization) through `InferenceData`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models

import fastcore_ext
from fastcore_ext.checkpoint import atomic_save, load_file
from fastcore_ext.learner import Learner

__all__ = ["EXPORT_FORMAT", "InferenceData", "describe_model", "build_model", "load_learner"]

EXPORT_FORMAT = "fastcore_ext.export"
EXPORT_VERSION = 1


# ---- the model's description ------------------------------------------------------------------
# torchvision families whose bodies hold torch.nn layers only (every other family has blocks
# of its own module, e.g. torchvision.models.resnet.BasicBlock, that point to it).
_PLAIN_FAMILIES = frozenset({"torchvision.models.alexnet", "torchvision.models.vgg"})


def _torchvision_modules(body: nn.Module) -> set[str]:
    """The torchvision model modules whose builders may have made `body`: those whose
    building blocks appear in it (e.g. {'torchvision.models.resnet'}), else the families
    made of torch.nn layers only."""
    found = {
        type(m).__module__
        for m in body.modules()
        if type(m).__module__.startswith("torchvision.models.")
    }
    return found or set(_PLAIN_FAMILIES)


def _meta_model(name: str) -> nn.Module | None:
    """torchvision's `name` architecture (weights=None) on the meta device (no memory, no
    weights), or None when it cannot be built there."""
    try:
        with torch.device("meta"):
            return models.get_model(name, weights=None)
    except Exception:  # some builders need real tensors at construction
        return None


@functools.cache
def _meta_children_repr(name: str) -> tuple[int, tuple[str, ...]] | None:
    """(default cut, repr of nn.Sequential(*children[:k]) for k = 0..len) of torchvision's
    `name` architecture, built once per process (0.1 to 0.5 s each on the meta device)."""
    from fastcore_ext.vision import _default_cut

    full = _meta_model(name)
    if full is None:
        return None
    children = list(full.children())
    reprs = tuple(repr(nn.Sequential(*children[:k])) for k in range(len(children) + 1))
    return _default_cut(full), reprs


def _infer_body(body: nn.Module) -> tuple[str, int]:
    """(torchvision arch name, cut) such that nn.Sequential(*arch().children()[:cut]) has the
    structure of `body` (same modules and hyper-parameters, compared through repr)."""
    target = repr(body)
    wanted = _torchvision_modules(body)
    for name in models.list_models(module=models):
        if models.get_model_builder(name).__module__ not in wanted:
            continue
        built = _meta_children_repr(name)
        if built is None:
            continue
        default, reprs = built
        for cut in [default, *(c for c in range(len(reprs) - 1, 0, -1) if c != default)]:
            if reprs[cut] == target:
                return name, cut
    raise ValueError(
        "export rebuilds the model from a description (no pickled code), so its body must be "
        "a torchvision architecture cut as create_cnn does; this body matches no torchvision "
        "builder"
    )


def _infer_head(head: nn.Module) -> dict[str, Any]:
    """create_head's arguments (nf, n_out, lin_ftrs, ps, concat_pool) rebuilding `head`."""
    from fastcore_ext.vision import AdaptiveConcatPool2d, create_head

    layers = list(head.children()) if isinstance(head, nn.Sequential) else []
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if not layers or not linears:
        raise ValueError(
            "export supports create_cnn models, nn.Sequential(body, head) with a create_head "
            f"head; the head here is {type(head).__name__} without Linear layers"
        )
    concat_pool = isinstance(layers[0], AdaptiveConcatPool2d)
    n_in = linears[0].in_features
    ps = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            before = layers[i - 1] if i > 0 else None
            ps.append(float(before.p) if isinstance(before, nn.Dropout) else 0.0)
    config = {
        "nf": n_in // 2 if concat_pool else n_in,
        "n_out": linears[-1].out_features,
        "lin_ftrs": [m.out_features for m in linears[:-1]],
        "ps": ps,
        "concat_pool": concat_pool,
    }
    try:
        with torch.device("meta"):
            rebuilt = create_head(**config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"export: the head is not a create_head head ({e})") from e
    if repr(rebuilt) != repr(head):
        raise ValueError(
            "export supports create_cnn models; the head differs from create_head's "
            f"(rebuilt with {config}):\n{head}"
        )
    return config


def describe_model(model: nn.Module) -> dict[str, Any]:
    """The JSON-able description of a create_cnn model: {"arch", "cut", "head"}; ValueError
    for a model that cannot be rebuilt from one."""
    if not (isinstance(model, nn.Sequential) and len(model) == 2):
        raise ValueError(
            "export supports create_cnn models, nn.Sequential(body, head) of a torchvision "
            f"body and a create_head head; got {type(model).__name__}"
        )
    arch, cut = _infer_body(model[0])
    return {"arch": arch, "cut": cut, "head": _infer_head(model[1])}


def build_model(description: dict[str, Any]) -> nn.Module:
    """The model a description stands for, on the meta device (load weights with
    `load_state_dict(..., assign=True)`)."""
    from fastcore_ext.vision import create_head

    try:
        arch, cut, head = description["arch"], description["cut"], description["head"]
        full = _meta_model(arch) if arch in models.list_models(module=models) else None
        if full is None:
            raise ValueError(f"{arch!r} is not a torchvision architecture this torch can build")
        with torch.device("meta"):
            body = nn.Sequential(*list(full.children())[: int(cut)])
            return nn.Sequential(body, create_head(**head))
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a model description: {description!r} ({e})") from e


# ---- export -------------------------------------------------------------------------------------
def _jsonable(x: Any) -> Any:
    if is_dataclass(x) and not isinstance(x, type):
        return {k: _jsonable(v) for k, v in asdict(x).items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def describe_learner(learn: Learner) -> dict[str, Any]:
    """Everything `load_learner` needs besides the weights (see the module docstring)."""
    model = describe_model(learn.model)
    data = learn.data
    missing = [a for a in ("classes", "size", "presize") if not hasattr(data, a)]
    if missing:
        raise ValueError(
            f"export needs an image bunch (classes, size, presize, stats); "
            f"{type(data).__name__} has no {missing}"
        )
    stats = getattr(data, "stats", None)
    valid_ds = getattr(data, "valid_ds", None)
    spec = getattr(data, "spec", None)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "fastcore_ext_version": fastcore_ext.__version__,
        "torch_version": torch.__version__,
        "model": model,
        "classes": [str(c) for c in data.classes],
        "n_classes": len(data.classes),
        "input": {
            "size": int(data.size),
            "presize": int(data.presize),
            "resize_method": getattr(valid_ds, "method", "crop"),
            "channels": 3,
            "mean": None if stats is None else [float(v) for v in stats[0]],
            "std": None if stats is None else [float(v) for v in stats[1]],
        },
        "augment": _jsonable(spec) if spec is not None else None,
        "precision": learn.precision,
    }


def export_learner(learn: Learner, path: str | os.PathLike) -> Path:
    """Write `learn`'s description and weights to `path` atomically (see Learner.export)."""
    description = describe_learner(learn)
    state = {k: v.detach().cpu() for k, v in learn.model.state_dict().items()}
    return atomic_save({"description": json.dumps(description), "model": state}, path)


# ---- the inference learner ---------------------------------------------------------------------
class InferenceData:
    """The bunch interface of an exported learner, without items: classes, c, size,
    presize, stats, device, path; `preprocess(items)` applies the validation transform.
    train_dl and valid_dl are None (no training)."""

    def __init__(
        self,
        classes: Sequence[str],
        size: int,
        presize: int,
        resize_method: str,
        stats: tuple[list[float], list[float]] | None,
        device: torch.device,
        path: Path,
    ) -> None:
        self.classes = list(classes)
        self.size, self.presize, self.resize_method = size, presize, resize_method
        self.stats = stats
        self.device = torch.device(device)
        self.path = Path(path)
        self.train_dl = None
        self.valid_dl = None

    @property
    def c(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def vocab(self) -> list[str]:
        """fastai v2's name for `classes`."""
        return self.classes

    def preprocess(self, items: Any) -> torch.Tensor:
        """Raw items (paths, PIL images, uint8 arrays/tensors [C, H, W]; one or a list) ->
        float Tensor[B, 3, size, size] normalized on `device`: decode, presize (short side to
        `presize`, center square), then the validation resize + center crop to `size`."""
        from fastcore_ext.augment import augment_batch
        from fastcore_ext.data import load_image

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


def _check_description(d: Any, path: Path) -> dict[str, Any]:
    if not isinstance(d, dict) or d.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path} is not a fastcore_ext export (no '{EXPORT_FORMAT}' description)")
    if d.get("version", 0) > EXPORT_VERSION:
        raise ValueError(
            f"{path} was exported by a newer fastcore_ext (format version {d['version']}, this "
            f"one reads {EXPORT_VERSION}); upgrade fastcore_ext"
        )
    for key in ("model", "classes", "input"):
        if key not in d:
            raise ValueError(f"{path}: the description lacks {key!r}")
    return d


def load_learner(
    path: str | os.PathLike, fname: str | os.PathLike = "export.pth", cpu: bool = True
) -> Learner:
    """Load a learner written by `Learner.export`: path/`fname`, or `path` itself when it is
    a file (fastai v2's `load_learner(file)`). cpu=True puts it on the CPU; cpu=False on the
    GPU when there is one. The file is read with torch.load(weights_only=True); the model is
    rebuilt from its description (no download) and gets the file's weights. The learner is
    in eval mode, has no training data (`fit` refuses) and predicts with `predict`; its
    path is the file's folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path should be a str or Path, got {type(path).__name__}")
    file = Path(path)
    if not file.is_file():
        file = file / fname
    device = torch.device("cuda" if not cpu and torch.cuda.is_available() else "cpu")
    content = load_file(file, map_location="cpu")
    if not isinstance(content, dict) or "description" not in content or "model" not in content:
        raise ValueError(f"{file} is not a fastcore_ext export (written by Learner.export)")
    try:
        description = json.loads(content["description"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{file}: its description is not valid JSON ({e})") from e
    description = _check_description(description, file)
    model = build_model(description["model"])
    try:
        model.load_state_dict(content["model"], strict=True, assign=True)
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
    )
    learn = Learner(data, model, path=file.parent)
    if device.type == "cuda":
        learn.to_channels_last()
    learn.model.eval()
    return learn
