"""The export file of a trained vision model: written by `Learner.export`, read back by
`load_learner` (fastcore_ext.exported).

The file is one torch file holding two things:

- "description": a JSON string saying how to rebuild the model and its input, e.g.
  ``{"arch": "resnet34", "cut": 8, "head": {"nf": 512, "n_out": 37, "lin_ftrs": [512],
  "ps": [0.25, 0.5], "concat_pool": true}, "classes": [...], "input": {"size": 224,
  "presize": 280, "resize_method": "crop", "channels": 3, "mean": [...], "std": [...],
  "seed": 42}, "augment": {"max_rotate": 10.0, ...}, "labeller": {"rule": "parent_label"},
  "metrics": [{"name": "error_rate"}], ...}`` (the labelling rule and the metrics where
  they are the library's: `describe_labeller`, `describe_metric`)
- "model": the model's state_dict (weights and BatchNorm statistics).

No code is pickled: `read_export` reads the file with `torch.load(weights_only=True)` and
`build_model` builds the body with torchvision's builder of that name (no pretrained
download: the weights come from the file) and fastcore_ext's head. The description is
derived from the model itself: the body must be a torchvision classifier's (or a fastai
xresnet's) children up to a cut (what `create_cnn` builds) and the head a `create_head` head,
or the model a whole `XResNet` (``{"xresnet": its config}``), checked by rebuilding and
comparing the structure, so a model that cannot be rebuilt is refused at export time,
not at load time.

This module needs no Learner (it sits below it: `Learner.export` calls `export_model`);
`load_learner`, which builds one, is in fastcore_ext.exported.
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
from torch.overrides import TorchFunctionMode
from torchvision import models

import fastcore_ext
from fastcore_ext import metrics as library_metrics
from fastcore_ext.checkpoint import CHECKPOINT_FORMAT, atomic_save, load_file, pickled_packages
from fastcore_ext.data.items import describe_labeller
from fastcore_ext.model_builder import AdaptiveConcatPool2d, create_head, default_cut
from fastcore_ext.xresnet import XRESNETS, ResBlock, XResNet

__all__ = [
    "DEFAULT_EXPORT",
    "OLD_EXPORT",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "build_model",
    "describe_export",
    "describe_metric",
    "describe_model",
    "export_model",
    "metric_from",
    "read_export",
]

EXPORT_FORMAT = "fastcore_ext.export"
# Learner.export's file name: fastai's (v1 and v2), so that fastbook's
# ``load_learner(path/'export.pkl')`` and ``path.ls(file_exts='.pkl')`` find it. A torch file
# as fastai's, but read with weights_only=True: no code in it.
DEFAULT_EXPORT = "export.pkl"
OLD_EXPORT = "export.pth"  # the name this library wrote before 2026-12-06
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


class _MetaParameters(TorchFunctionMode):
    """Puts the tensors `torch.empty` makes without a device (torch.nn layers allocate their
    weights with it) on the meta device, and nothing else: a builder that computes its
    layout from real tensors at construction (torchvision's regnets: `.tolist()` of an
    arange) builds, its weights taking no memory and no initialization time; only the small
    buffers made with zeros / ones (BatchNorm's running statistics) are real."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.empty and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _meta_model(name: str) -> nn.Module | None:
    """torchvision's `name` architecture (weights=None) on the meta device (no memory, no
    weights), or None when it cannot be built there. A builder that needs real tensors at
    construction (the 15 regnets) is built with only its `torch.empty` tensors on the meta
    device (`_MetaParameters`: 0.2-0.6 s and under 2 MB each, where building regnet_y_128gf
    on the CPU takes 20 s and 2.6 GB). fastai's xresnets (`XRESNETS`) by their names too."""
    if name in XRESNETS:
        with torch.device("meta"):
            return XRESNETS[name]()
    for context in (lambda: torch.device("meta"), _MetaParameters):
        try:
            with context():
                return models.get_model(name, weights=None)
        except Exception:  # some builders need real tensors at construction
            continue
    return None


@functools.cache
def _meta_children_repr(name: str) -> tuple[int, tuple[str, ...]] | None:
    """(default cut, repr of nn.Sequential(*children[:k]) for k = 0..len) of torchvision's
    `name` architecture, built once per process (0.1 to 0.5 s each on the meta device)."""
    full = _meta_model(name)
    if full is None:
        return None
    children = list(full.children())
    reprs = tuple(repr(nn.Sequential(*children[:k])) for k in range(len(children) + 1))
    return default_cut(full), reprs


def _infer_body(body: nn.Module) -> tuple[str, int]:
    """(torchvision arch name, cut) such that nn.Sequential(*arch().children()[:cut]) has the
    structure of `body` (same modules and hyper-parameters, compared through repr)."""
    target = repr(body)
    if any(isinstance(m, ResBlock) for m in body.modules()):  # fastai's xresnets
        names = list(XRESNETS)
    else:
        wanted = _torchvision_modules(body)
        names = [
            name
            for name in models.list_models(module=models)
            if models.get_model_builder(name).__module__ in wanted
        ]
    for name in names:
        built = _meta_children_repr(name)
        if built is None:
            continue
        default, reprs = built
        for cut in [default, *(c for c in range(len(reprs) - 1, 0, -1) if c != default)]:
            if reprs[cut] == target:
                return name, cut
    raise ValueError(
        "export rebuilds the model from a description (no pickled code), so its body must be "
        "a torchvision architecture (or a fastai xresnet) cut as create_cnn does; this body "
        "matches no such builder"
    )


def _infer_head(head: nn.Module) -> dict[str, Any]:
    """create_head's arguments (nf, n_out, lin_ftrs, ps, concat_pool, first_bn, bn_final)
    rebuilding `head` (exports without first_bn / bn_final have create_head's defaults)."""
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
        "first_bn": any(isinstance(m, nn.BatchNorm1d) for m in layers[: layers.index(linears[0])]),
        "bn_final": isinstance(layers[-1], nn.BatchNorm1d),
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
    """The JSON-able description of a create_cnn model: {"arch", "cut", "head"}, or of a
    whole XResNet: {"xresnet": its config}; ValueError for a model that cannot be rebuilt
    from one."""
    if type(model) is XResNet:
        if not isinstance(model.config["act_cls"], str):
            raise ValueError(
                f"export: this XResNet's activation {model.config['act_cls']!r} is not a "
                f"torch.nn class, so its description cannot name it"
            )
        with torch.device("meta"):
            rebuilt = XResNet(**model.config)
        if repr(rebuilt) != repr(model):
            raise ValueError(
                "export: this XResNet was changed after it was built (its layers differ from "
                f"those of XResNet(**{model.config})), so its description would not rebuild it"
            )
        return {"xresnet": _jsonable(model.config)}
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
    try:
        if "xresnet" in description:
            with torch.device("meta"):
                return XResNet(**description["xresnet"])
        arch, cut, head = description["arch"], description["cut"], description["head"]
        known = arch in XRESNETS or arch in models.list_models(module=models)
        full = _meta_model(arch) if known else None
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


def describe_export(
    model: nn.Module, data: Any, precision: str, metrics: Sequence[Any] = ()
) -> dict[str, Any]:
    """Everything `load_learner` needs besides the weights (see the module docstring): the
    model's description, and from `data` (an image bunch: classes, size, presize, stats,
    valid_ds.method, spec) the classes and the input transform, and its labelling rule
    where `describe_labeller` describes it (so that a loaded learner's test_dl labels new
    files: from_folder's parent folder, a pattern); `metrics` as `describe_metric` describes
    them. precision: the learner's ('fp32', 'bf16' or 'fp16'), recorded for information."""
    try:
        described = describe_model(model)
    except ValueError as e:  # what to do instead, in the message itself (str(e) shows it)
        raise ValueError(
            f"{e}. An export is the model's description and its weights, no pickled code, so "
            "it holds the models it can rebuild: create_cnn / vision_learner's, and fastai's "
            "xresnets (xresnet50(n_out=...)) whole. For another model keep its weights: "
            "learn.save('name') (learn.load('name') into a learner with the same model), or "
            "torch.save(learn.model.state_dict(), file)"
        ) from e
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
        "model": described,
        "classes": [str(c) for c in data.classes],
        "n_classes": len(data.classes),
        "input": {
            "size": int(data.size),
            "presize": int(data.presize),
            "resize_method": getattr(valid_ds, "method", "crop"),
            "channels": 3,
            "mean": None if stats is None else [float(v) for v in stats[0]],
            "std": None if stats is None else [float(v) for v in stats[1]],
            "seed": int(getattr(data, "seed", None) or 0),  # tta's draws
        },
        "augment": _jsonable(spec) if spec is not None else None,
        "precision": precision,
        "labeller": describe_labeller(getattr(data, "labeller", None)),
        "fastai_version": int(getattr(data, "fastai_version", 1)),  # v1's or v2's defaults
        "metrics": [d for d in map(describe_metric, metrics) if d is not None],
    }


def describe_metric(metric: Any) -> dict[str, Any] | None:
    """A JSON description of a metric that `metric_from` rebuilds: a metric function of
    fastcore_ext.metrics by name (error_rate, accuracy, top_k_accuracy...), also as a
    functools.partial with keyword arguments of numbers, strings and bools
    (``partial(top_k_accuracy, k=3)``); None for another (code is not exported)."""
    func, kwargs = metric, {}
    if isinstance(metric, functools.partial) and not metric.args:
        func, kwargs = metric.func, dict(metric.keywords)
    name = getattr(func, "__name__", None)
    if not (
        isinstance(name, str)
        and getattr(library_metrics, name, None) is func
        and name in library_metrics.__all__
        and all(isinstance(v, bool | int | float | str) for v in kwargs.values())
    ):
        return None
    return {"name": name, "kwargs": kwargs} if kwargs else {"name": name}


def metric_from(description: Any) -> Any:
    """The metric `description` (`describe_metric`'s) describes; ValueError for another."""
    name = description.get("name") if isinstance(description, dict) else None
    func = getattr(library_metrics, name, None) if isinstance(name, str) else None
    if func is None or name not in library_metrics.__all__:
        raise ValueError(f"metrics: not a metric this library describes: {description!r}")
    kwargs = description.get("kwargs") or {}
    return functools.partial(func, **kwargs) if kwargs else func


def export_model(
    model: nn.Module,
    data: Any,
    precision: str,
    path: str | os.PathLike,
    metrics: Sequence[Any] = (),
) -> Path:
    """Write the export file of `model` trained on `data` (and its `metrics`) to `path`
    atomically: the description (`describe_export`) as JSON and the weights on the CPU
    (what Learner.export does). Returns the path."""
    description = describe_export(model, data, precision, metrics)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_save({"description": json.dumps(description), "model": state}, path)


def _check_description(d: Any, path: Path) -> dict[str, Any]:
    if not isinstance(d, dict) or d.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path} is not a fastcore_ext export (no '{EXPORT_FORMAT}' description)")
    version = d.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(
            f"{path}: the description's format version should be an int, got {version!r}"
        )
    if version > EXPORT_VERSION:
        raise ValueError(
            f"{path} was exported by a newer fastcore_ext (format version {d['version']}, this "
            f"one reads {EXPORT_VERSION}); upgrade fastcore_ext"
        )
    for key in ("model", "classes", "input"):
        if key not in d:
            raise ValueError(f"{path}: the description lacks {key!r}")
    return d


def read_export(file: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(description, state_dict on the CPU) of an export file, read with
    torch.load(weights_only=True); ValueError naming the file when it is not a
    fastcore_ext export, its description is not valid JSON or comes from a newer format."""
    file = Path(file)
    try:
        content = load_file(file, map_location="cpu")
    except ValueError as e:
        if "fastai" in pickled_packages(file):  # fastai's export.pkl, under our file name
            raise ValueError(
                f"{file} is fastai's export (a pickled fastai Learner): load_learner reads "
                f"the exports of fastcore_ext's Learner.export (weights and a description) "
                f"and never unpickles code; export the model from fastcore_ext"
            ) from e
        raise
    if not isinstance(content, dict) or "description" not in content or "model" not in content:
        if isinstance(content, dict) and content.get("format") == CHECKPOINT_FORMAT:
            what = ": it is a checkpoint of learn.save, which learn.load reads into a learner"
        elif isinstance(content, dict) and all(
            isinstance(v, torch.Tensor) for v in content.values()
        ):
            what = ": it is a model state_dict (learn.model.load_state_dict takes it)"
        else:
            what = ""
        raise ValueError(f"{file} is not a fastcore_ext export (written by Learner.export){what}")
    try:
        description = json.loads(content["description"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{file}: its description is not valid JSON ({e})") from e
    return _check_description(description, file), content["model"]
