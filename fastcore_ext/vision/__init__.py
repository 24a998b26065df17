"""Vision learners and the public API: `from fastcore_ext.vision import *`.

`create_cnn(data, models.resnet34, metrics=error_rate)` (also spelled `cnn_learner` and
`vision_learner`) cuts a torchvision classifier at its pooling layer, keeps the body and
puts fastai's head on it (fastcore_ext.model_builder: create_body, create_head, the
splitters and the pretrained weights), then makes a Learner of it. `models` is
torchvision's model namespace.
"""

from __future__ import annotations

import inspect
import re
import shutil  # fastai's star import gives it: fastbook's cleaner loop moves files
from collections.abc import Callable, Sequence
from functools import partial
from numbers import Integral
from typing import Any

import matplotlib.pyplot as plt  # a script without a display gets Agg (matplotlib's fallback)
import numpy as np
import torch
import torchvision.models as models
from PIL import Image  # fastai v2's star import gives PIL's module: Image.open(fn)
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader  # fastbook ch. 4: DataLoader(dset, batch_size=256)
from torchvision.models import (  # the builders fastai v2's star import gives, by bare name
    WeightsEnum,
    alexnet,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    squeezenet1_0,
    squeezenet1_1,
    vgg11_bn,
    vgg13_bn,
    vgg16_bn,
    vgg19_bn,
)

from fastcore_ext.augment import (
    Brightness,
    Contrast,
    CropPad,
    Dihedral,
    Flip,
    Hue,
    RandomErasing,
    Rotate,
    Saturation,
    Warp,
    Zoom,
    aug_transforms,
    get_transforms,
)
from fastcore_ext.callback import (
    ActivationStats,
    BnFreeze,
    Callback,
    CancelBackwardException,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidException,
    CSVLogger,
    CutMix,
    EarlyStoppingCallback,
    GradientAccumulation,
    GradientClip,
    MixedPrecision,
    MixHandler,
    MixUp,
    ParamScheduler,
    ProgressCallback,
    Recorder,
    ReduceLROnPlateau,
    SaveModelCallback,
    ShowGraph,
    ShowGraphCallback,
    TerminateOnNaN,
    TerminateOnNaNCallback,
    mixed_precision,
)
from fastcore_ext.callback.mixup import reduce_loss
from fastcore_ext.checks import check_bool
from fastcore_ext.data import (
    DEMO_CLASSES,
    BBoxBlock,
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    DataLoaders,
    Datasets,
    DatasetType,
    EndSplitter,
    FileGetter,
    FileSplitter,
    FuncSplitter,
    GrandparentSplitter,
    ImageBlock,
    ImageDataBunch,
    ImageDataLoaders,
    ImageGetter,
    IndexSplitter,
    IntToFloatTensor,
    MaskBlock,
    MaskSplitter,
    MultiCategoryBlock,
    Normalize,
    PadMode,
    PILImage,
    PILImageBW,
    PointBlock,
    RandomResizedCrop,
    RandomSplitter,
    RandomSubsetSplitter,
    RegexLabeller,
    RegressionBlock,
    Resize,
    ResizeMethod,
    TensorCategory,
    TensorImage,
    ToTensor,
    TrainTestSplitter,
    URLs,
    cifar_stats,
    demo_dataset,
    download_images,
    get_image_files,
    imagenet_stats,
    mnist_stats,
    open_image,
    parent_label,
    resize_images,
    untar_data,
    using_attr,
    verify_images,
)
from fastcore_ext.data import DataPath as Path  # pathlib's Path with fastai's ls()
from fastcore_ext.exported import load_learner
from fastcore_ext.foundation import L, first
from fastcore_ext.hooks import (
    Hook,
    Hooks,
    dummy_eval,
    flatten_model,
    has_params,
    hook_output,
    hook_outputs,
    model_sizes,
    num_features_model,
)
from fastcore_ext.interpret import ClassificationInterpretation, Interpretation
from fastcore_ext.layers import Lambda, sequential
from fastcore_ext.learner import Learner, check_data, set_seed
from fastcore_ext.losses import (
    BCELossFlat,
    BCEWithLogitsLossFlat,
    CrossEntropyLossFlat,
    L1LossFlat,
    LabelSmoothingCrossEntropy,
    LabelSmoothingCrossEntropyFlat,
    MSELossFlat,
)
from fastcore_ext.metrics import (
    AccumMetric,
    ActivationType,
    AvgMetric,
    BalancedAccuracy,
    CohenKappa,
    F1Score,
    FBeta,
    Jaccard,
    MatthewsCorrCoef,
    Metric,
    Precision,
    Recall,
    RocAuc,
    RocAucBinary,
    accuracy,
    accuracy_multi,
    error_rate,
    skm_to_fastai,
    top_k_accuracy,
)
from fastcore_ext.model_builder import (
    AdaptiveConcatPool2d,
    Flatten,
    alexnet_split,
    apply_init,
    body_and_model,
    create_body,
    create_head,
    default_split,
    default_splitter_of,
    densenet_split,
    num_features,
    resnet_split,
    squeezenet_split,
    vgg_split,
    xresnet_split,
)
from fastcore_ext.optim import SGD, Adam, OptimWrapper, RMSProp
from fastcore_ext.plots import show_image, show_images, subplots
from fastcore_ext.schedule import (  # lr_find(suggest_funcs=...); ParamScheduler's schedules
    SchedCos,
    SchedExp,
    SchedLin,
    SchedNo,
    SchedPoly,
    annealer,
    combine_scheds,
    combined_cos,
    minimum,
    sched_cos,
    sched_exp,
    sched_lin,
    sched_no,
    slide,
    steep,
    valley,
)
from fastcore_ext.torch_core import (
    Module,
    noop,
    params,
    tensor,
    to_float,
    to_np,
    trainable_params,
)
from fastcore_ext.widgets import ImageClassifierCleaner, ImagesCleaner  # (need ipywidgets)
from fastcore_ext.xresnet import (
    ConvLayer,
    NormType,
    ResBlock,
    XResNet,
    xresnet18,
    xresnet18_deep,
    xresnet18_deeper,
    xresnet34,
    xresnet34_deep,
    xresnet34_deeper,
    xresnet50,
    xresnet50_deep,
    xresnet50_deeper,
    xresnet101,
    xresnet152,
)

try:  # fastai's star import gives pandas as pd; pandas is optional here (from_df, DataBlock)
    import pandas as pd
except ImportError:
    pd = None

# The public API of `from fastcore_ext.vision import *`: every name the lesson-1 notes use
# (untar_data, URLs, get_image_files, ImageDataBunch, get_transforms, imagenet_stats,
# create_cnn, models, error_rate, ClassificationInterpretation, doc, Path), fastai v2's
# spellings (ImageDataLoaders, Resize, Normalize, aug_transforms, vision_learner), and the
# rest a training script needs (load_learner, callbacks, optimizers, metrics, lr_find's
# suggestion functions for suggest_funcs, the demo data),
# and what fastai v1's star import also gave the notebooks: np, plt, torch, nn, F, partial,
# open_image; as fastai v2's, torchvision's builders by bare name (`vision_learner(dls,
# resnet34)`). `Path` here is `DataPath`: a pathlib Path with fastai's `path.ls()` (fastai
# patches pathlib.Path itself; this library patches nothing). Also fastai v2's names that
# fastbook's chapters use as they are: re, shutil, pd (when pandas is installed), Image (PIL's
# module), tensor, L, first, to_np, to_float, params, trainable_params, noop, Module, show_image,
# show_images, subplots (chapter 5),
# Interpretation, torch's DataLoader (chapter 4), ConvLayer / ResBlock / NormType (chapter
# 14), Lambda and sequential (chapter 13), the splitters (chapter 15), ParamScheduler and its
# schedules (chapter 16), the Flat losses, the hooks and ActivationStats (chapters 13 and
# 18), and chapter 2's ImageClassifierCleaner and ImagesCleaner (they need ipywidgets).
__all__ = [
    "Image",
    "ImageClassifierCleaner",
    "ImagesCleaner",
    "Interpretation",
    "L",
    "first",
    "re",
    "shutil",
    "show_image",
    "show_images",
    "subplots",
    "tensor",
    "to_np",
    "trainable_params",
    "to_float",
    "params",
    "noop",
    "Module",
    "Lambda",
    "sequential",
    "ParamScheduler",
    "SchedLin",
    "SchedCos",
    "SchedNo",
    "SchedExp",
    "SchedPoly",
    "combine_scheds",
    "combined_cos",
    "annealer",
    "sched_lin",
    "sched_cos",
    "sched_no",
    "sched_exp",
    "DataLoader",
    "Recorder",
    "ConvLayer",
    "NormType",
    "ResBlock",
    "default_split",
    "apply_init",
    "resnet_split",
    "xresnet_split",
    "densenet_split",
    "vgg_split",
    "squeezenet_split",
    "alexnet_split",
    "MSELossFlat",
    "L1LossFlat",
    "BCEWithLogitsLossFlat",
    "BCELossFlat",
    "ActivationStats",
    "Hook",
    "Hooks",
    "dummy_eval",
    "flatten_model",
    "has_params",
    "hook_output",
    "hook_outputs",
    "model_sizes",
    "num_features_model",
    "BBoxBlock",
    "CategoryBlock",
    "ColReader",
    "ColSplitter",
    "DataBlock",
    "Datasets",
    "EndSplitter",
    "FileGetter",
    "FileSplitter",
    "ImageGetter",
    "MaskSplitter",
    "RandomSubsetSplitter",
    "TrainTestSplitter",
    "Brightness",
    "Contrast",
    "CropPad",
    "Dihedral",
    "Flip",
    "Hue",
    "RandomErasing",
    "Rotate",
    "Saturation",
    "Warp",
    "Zoom",
    "IntToFloatTensor",
    "ToTensor",
    "FuncSplitter",
    "GrandparentSplitter",
    "ImageBlock",
    "IndexSplitter",
    "MaskBlock",
    "MultiCategoryBlock",
    "PadMode",
    "PointBlock",
    "RandomResizedCrop",
    "RandomSplitter",
    "RegexLabeller",
    "RegressionBlock",
    "ResizeMethod",
    "TensorCategory",
    "TensorImage",
    "parent_label",
    "using_attr",
    "Adam",
    "OptimWrapper",
    "RMSProp",
    "CSVLogger",
    "Callback",
    "CancelBackwardException",
    "CancelBatchException",
    "CancelEpochException",
    "CancelFitException",
    "CancelStepException",
    "CancelTrainException",
    "CancelValidException",
    "ShowGraph",
    "ShowGraphCallback",
    "MixHandler",
    "MixUp",
    "CutMix",
    "GradientAccumulation",
    "GradientClip",
    "BnFreeze",
    "MixedPrecision",
    "ProgressCallback",
    "reduce_loss",
    "ReduceLROnPlateau",
    "CrossEntropyLossFlat",
    "F1Score",
    "FBeta",
    "LabelSmoothingCrossEntropy",
    "LabelSmoothingCrossEntropyFlat",
    "Precision",
    "Recall",
    "AccumMetric",
    "ActivationType",
    "AvgMetric",
    "BalancedAccuracy",
    "CohenKappa",
    "Jaccard",
    "MatthewsCorrCoef",
    "Metric",
    "RocAuc",
    "RocAucBinary",
    "ClassificationInterpretation",
    "DEMO_CLASSES",
    "DatasetType",
    "EarlyStoppingCallback",
    "F",
    "ImageDataBunch",
    "DataLoaders",
    "ImageDataLoaders",
    "PILImage",
    "PILImageBW",
    "Learner",
    "Normalize",
    "Path",
    "Resize",
    "SGD",
    "SaveModelCallback",
    "TerminateOnNaN",
    "TerminateOnNaNCallback",
    "URLs",
    "accuracy",
    "accuracy_multi",
    "alexnet",
    "aug_transforms",
    "cnn_learner",
    "create_body",
    "create_cnn",
    "create_head",
    "AdaptiveConcatPool2d",
    "Flatten",
    "demo_dataset",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "doc",
    "download_images",
    "error_rate",
    "get_image_files",
    "get_transforms",
    "imagenet_stats",
    "cifar_stats",
    "mnist_stats",
    "load_learner",
    "minimum",
    "models",
    "nn",
    "np",
    "open_image",
    "partial",
    "plt",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "XResNet",
    "xresnet18",
    "xresnet34",
    "xresnet50",
    "xresnet101",
    "xresnet152",
    "xresnet18_deep",
    "xresnet34_deep",
    "xresnet50_deep",
    "xresnet18_deeper",
    "xresnet34_deeper",
    "xresnet50_deeper",
    "set_seed",
    "slide",
    "squeezenet1_0",
    "squeezenet1_1",
    "steep",
    "skm_to_fastai",
    "top_k_accuracy",
    "torch",
    "untar_data",
    "valley",
    "resize_images",
    "verify_images",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "vision_learner",
]
if pd is not None:
    __all__.append("pd")

array = np.array  # fastbook ch. 4: array(im3), numpy's array by bare name as fastai's
__all__.append("array")

# Every torchvision classification builder by its bare name (convnext_tiny, efficientnet_b0,
# resnext50_32x4d, ...), as fastai v2's star import gives them all; the common ones are
# imported by name above.
for _name in models.list_models(module=models):
    if _name not in globals():
        globals()[_name] = getattr(models, _name)
        __all__.append(_name)
del _name


# fastai v2's vision_learner arguments this library does not offer: the value that is what
# it does anyway (accepted and dropped), and why the others are not.
_NOT_OFFERED: dict[str, tuple[Any, str]] = {
    "y_range": (
        None,
        "a regression head (SigmoidRange) is not offered: this library does single-label "
        "classification only",
    ),
    "pool": (
        True,
        "the head always pools the body's output (concat_pool=False for average pooling only)",
    ),
    "lin_first": (False, "the head's blocks are BatchNorm -> Dropout -> Linear (fastai's default)"),
    "n_in": (3, "the images are 3-channel RGB"),
    "init": (
        nn.init.kaiming_normal_,
        "the head is initialized with nn.init.kaiming_normal_ (fastai's default)",
    ),
}
_CALLER = "vision_learner (create_cnn, cnn_learner)"
_HEAD_ARGS = {"lin_ftrs": None, "ps": 0.5, "concat_pool": True, "first_bn": True, "bn_final": False}


def _check_vision_kwargs(kwargs: dict[str, Any]) -> None:
    """Drop fastai's arguments given at the value this library uses anyway; refuse the others
    of _NOT_OFFERED, and any name neither create_cnn nor Learner takes, naming the caller."""
    for name in [n for n in kwargs if n in _NOT_OFFERED]:
        accepted, why = _NOT_OFFERED[name]
        value = kwargs.pop(name)
        if value != accepted:
            raise TypeError(f"{_CALLER}: {name}={value!r} is not supported: {why}")
    params = inspect.signature(Learner.__init__).parameters
    learner_args = [p for p in params if p not in ("self", "data", "model")]
    unknown = [n for n in kwargs if n not in learner_args]
    if unknown:
        raise TypeError(
            f"{_CALLER} got an unexpected keyword argument {unknown[0]!r}: it takes "
            f"create_cnn's own (n_out, lin_ftrs, ps, concat_pool, custom_head, first_bn, "
            f"bn_final, weights, ...) and the Learner's ({', '.join(learner_args)})"
        )


def create_cnn(
    data: Any,
    arch: Callable[..., nn.Module] | str,
    pretrained: bool | WeightsEnum = True,
    metrics: Any = None,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    normalize: bool = True,
    *,
    n_out: int | None = None,
    concat_pool: bool = True,
    custom_head: nn.Module | None = None,
    first_bn: bool = True,
    bn_final: bool = False,
    weights: WeightsEnum | None = None,
    **kwargs: Any,
) -> Learner:
    """A Learner for image classification from a torchvision architecture (fastai's
    create_cnn / cnn_learner / vision_learner).

    data: the bunch (its `c` classes size the head). arch: a torchvision builder such as
    models.resnet34 (or its name). pretrained: load the ImageNet weights (torchvision's
    DEFAULT, or the given Weights) and freeze the body except its BatchNorm layers; precision
    'auto' then runs bf16 from the first epoch (a random model's first epoch is float32).
    weights (fastai v2's): a torchvision Weights to load instead of the DEFAULT ones.
    cut: see create_body. The head (create_head): lin_ftrs, ps, concat_pool, first_bn,
    bn_final as fastai's; n_out: its outputs (data.c, the default; other values refused);
    custom_head: your own head module instead (its layers with 2-D or larger weights are
    re-initialized with kaiming_normal_, as fastai's apply_init; the head arguments then do
    not apply; `learn.export()` refuses a custom head). normalize (fastai v2's): with
    pretrained weights, data that is not normalized yet is normalized with ImageNet's
    statistics, those the weights were trained with (`data.normalize(imagenet_stats)`, on
    `data` itself, as fastai adds Normalize to the loaders). kwargs go to Learner (loss_func,
    opt_func, wd, wd_bn_bias, path, model_dir, splitter, seed, cbs, precision; fastai v1's
    callbacks and callback_fns; lr, moms, train_bn). fastai v2's y_range, pool=False,
    lin_first=True, n_in other than 3 and other inits are refused with the reason
    (TypeError). The layer groups are fastai's model_meta splits (`default_splitter_of`):
    resnets 3 (stem..layer2, layer3..layer4, head), xresnets 3 (stem, the rest of the body,
    head), densenets, vgg*_bn, squeezenets and alexnet 3 (their features cut in two, head),
    other architectures or another cut 2 (body, head; a resnet or xresnet cut elsewhere
    keeps its 3 while its body reaches past the first group, as fastai's). On CUDA the
    model and its inputs are channels-last.
    """
    _check_vision_kwargs(kwargs)
    check_data(data)  # None, a path: said before data.c is looked for
    c = getattr(data, "c", None)
    if isinstance(c, bool) or not isinstance(c, Integral) or c < 1:
        raise ValueError(f"data.c should be the number of classes (a positive int), got {c!r}")
    if n_out is None:
        n_out = int(c)
    elif isinstance(n_out, bool) or not isinstance(n_out, Integral) or n_out != c:
        raise ValueError(
            f"n_out should be data.c ({c}, the number of classes: a single-label classifier "
            f"has one output per class, which predict and the metrics name), got {n_out!r}"
        )
    check_bool("normalize", normalize)
    if custom_head is not None:
        if not isinstance(custom_head, nn.Module):
            raise TypeError(f"custom_head should be an nn.Module, got {type(custom_head).__name__}")
        given = dict(lin_ftrs=lin_ftrs, ps=ps, concat_pool=concat_pool, first_bn=first_bn)
        given["bn_final"] = bn_final
        changed = [k for k, v in given.items() if v != _HEAD_ARGS[k]]
        if changed:
            raise ValueError(
                f"custom_head replaces create_head, so {', '.join(changed)} would not apply: "
                f"give one or the other"
            )
    if weights is not None:
        if not isinstance(weights, WeightsEnum):
            raise TypeError(f"weights should be a torchvision Weights, got {weights!r}")
        if pretrained is False:
            raise ValueError(
                f"weights={weights} with pretrained=False: pass pretrained=True (or leave it "
                f"out) to load them, or weights=None for random weights"
            )
        pretrained = weights
    seed = kwargs.get("seed")
    if seed is not None:
        set_seed(seed)  # the head's random initialization is part of the run
    body, full = body_and_model(arch, pretrained, cut)
    if custom_head is None:
        head = create_head(
            num_features(body), n_out, lin_ftrs=lin_ftrs, ps=ps, concat_pool=concat_pool,
            first_bn=first_bn, bn_final=bn_final,
        )  # fmt: skip
    else:
        head = custom_head
        apply_init(head)
    model = nn.Sequential(body, head)
    if "splitter" not in kwargs:
        kwargs["splitter"] = default_splitter_of(full, body, cut)
    if (
        pretrained is not False
        and normalize
        and getattr(data, "stats", False) is None
        and hasattr(data, "normalize")
    ):
        data.normalize(imagenet_stats)  # fastai v2's _add_norm: the weights' input statistics
    learn = Learner(data, model, metrics=metrics, **kwargs)
    if pretrained is not False:
        learn.freeze()
        mixed_precision.features_trained(learn)  # bf16 from the first epoch ('auto')
    if torch.device(data.device).type == "cuda":
        learn.to_channels_last()
    return learn


cnn_learner = create_cnn
vision_learner = create_cnn


def doc(obj: Any) -> None:
    """Print an object's signature, the first paragraph of its docstring and the module
    that defines it (fastai's `doc`)."""
    target = getattr(obj, "__func__", obj)
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    if name is None:
        target = type(obj)
        name = target.__qualname__
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = ""
    text = inspect.getdoc(obj) or "(no docstring)"
    first = text.strip().split("\n\n")[0]
    module = getattr(target, "__module__", None) or "(unknown module)"
    print(f"{name}{sig}\n\n{first}\n\nDefined in {module}")
