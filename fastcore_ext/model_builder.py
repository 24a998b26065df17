"""Building models from torchvision architectures, as fastai's create_cnn does.

`create_body(arch)` cuts a torchvision classifier at its pooling layer; `create_head(nf, c)`
is fastai's head:

    AdaptiveConcatPool2d -> Flatten -> BatchNorm1d(2nf) -> Dropout(ps/2) -> Linear(2nf, 512)
    -> ReLU -> BatchNorm1d(512) -> Dropout(ps) -> Linear(512, c)

`resnet_split` / `xresnet_split` / `default_split` give the layer groups. Pretrained weights
come through torchvision's weights API and its cache ($TORCH_HOME/hub/checkpoints): when they
are not cached and cannot be downloaded, PretrainedWeightsError says which file to put where,
or to pass `pretrained=False`; `pretrained_weights_cached(arch)` tells whether they are there.
fastai's xresnets (fastcore_ext.xresnet) are taken by name too, without pretrained weights.

Imports torch and torchvision only: the export format (fastcore_ext.export) describes and
rebuilds models with it, below the Learner; `create_cnn` (fastcore_ext.vision) puts a
Learner on top.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision.models as models
from torch import nn
from torchvision.models import WeightsEnum

from fastcore_ext.checks import int_or_none, real_or_none
from fastcore_ext.files import atomic_write
from fastcore_ext.xresnet import XRESNETS, XResNet

__all__ = [
    "AdaptiveConcatPool2d",
    "DOWNLOAD_TIMEOUT",
    "BodyCutError",
    "Flatten",
    "PretrainedWeightsError",
    "apply_init",
    "body_and_model",
    "build_arch",
    "create_body",
    "create_head",
    "alexnet_split",
    "default_cut",
    "default_split",
    "default_splitter_of",
    "densenet_split",
    "num_features",
    "pretrained_weights_cached",
    "resnet_split",
    "resolve_arch",
    "squeezenet_split",
    "vgg_split",
    "weights_cache_file",
    "xresnet_split",
]


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights that are neither in torchvision's cache nor downloadable, or a
    cached file that does not load."""


DOWNLOAD_TIMEOUT = 10.0  # seconds per socket operation when fetching weights


class BodyCutError(ValueError):
    """The body cut from an architecture is no CNN feature extractor (a vision transformer's
    is not): `reason` says what failed; the message adds how to pass cut=."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"{reason}; pass cut= (an index or a function model -> body) for this architecture"
        )
        self.reason = reason


class Flatten(nn.Flatten):
    """fastai's Flatten, for heads written by hand: Tensor[B, ...] -> Tensor[B, rest];
    full=True -> one dimension (torch's nn.Flatten with fastai's argument)."""

    def __init__(self, full: bool = False) -> None:
        super().__init__(start_dim=0 if full else 1)


class AdaptiveConcatPool2d(nn.Module):
    """Concatenation of adaptive max pooling and adaptive average pooling:
    Tensor[B, C, H, W] -> Tensor[B, 2C, size, size] (max first, as fastai)."""

    def __init__(self, size: int = 1) -> None:
        super().__init__()
        self.size = size
        self.mp = nn.AdaptiveMaxPool2d(size)
        self.ap = nn.AdaptiveAvgPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], dim=1)


def create_head(
    nf: int,
    n_out: int,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    concat_pool: bool = True,
    first_bn: bool = True,
    bn_final: bool = False,
    pool: bool = True,
) -> nn.Sequential:
    """fastai's classifier head for a body with `nf` output channels.

    Pooling (AdaptiveConcatPool2d, giving 2*nf features, or average pooling with
    concat_pool=False) and Flatten; pool=False (fastai v2's) leaves both out, for a body
    that gives features [B, nf] itself. Then for each hidden size in lin_ftrs (default [512]):
    BatchNorm1d, Dropout, Linear (no bias: the BatchNorm before it has one), ReLU; and a
    last BatchNorm1d, Dropout, Linear(.., n_out). `ps`: one dropout probability for the last
    layer (the others get ps/2) or one per linear layer. first_bn=False leaves out the first
    BatchNorm1d (that Linear then has a bias, zeroed); bn_final=True appends
    BatchNorm1d(n_out, momentum=0.01) after the last Linear (fastai's). Linear weights are
    initialized with kaiming_normal_. Maps Tensor[B, nf, H, W] (pool=False: [B, nf]) to
    logits Tensor[B, n_out].
    """
    nf, n_out = (_positive_int(name, v) for name, v in (("nf", nf), ("n_out", n_out)))
    for name, value in (
        ("concat_pool", concat_pool),
        ("first_bn", first_bn),
        ("bn_final", bn_final),
        ("pool", pool),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"{name} should be a bool, got {type(value).__name__} {value!r}")
    hidden = [512] if lin_ftrs is None else _hidden_sizes(lin_ftrs)
    sizes = [nf * 2 if pool and concat_pool else nf, *hidden, n_out]
    n_lin = len(sizes) - 1
    p = real_or_none(ps)
    if p is not None:
        probs = [p / 2] * (n_lin - 1) + [p]
    else:
        probs = [float(p) for p in ps]
        if len(probs) != n_lin:
            raise ValueError(
                f"ps should be a float or one value per linear layer ({n_lin}), got {ps!r}"
            )
    for p in probs:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"ps should hold dropout probabilities in [0, 1), got {ps!r}")
    layers: list[nn.Module] = []
    if pool:
        layers += [AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for i, (n_in, n_o, p) in enumerate(zip(sizes[:-1], sizes[1:], probs, strict=True)):
        bn = first_bn or i > 0
        if bn:
            layers.append(nn.BatchNorm1d(n_in))
        if p > 0:
            layers.append(nn.Dropout(p))
        lin = nn.Linear(n_in, n_o, bias=not bn)
        nn.init.kaiming_normal_(lin.weight)
        if lin.bias is not None:
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < n_lin - 1:
            layers.append(nn.ReLU(inplace=True))
    if bn_final:
        layers.append(nn.BatchNorm1d(n_out, momentum=0.01))
    return nn.Sequential(*layers)


def apply_init(
    m: nn.Module, func: Callable[[torch.Tensor], object] = nn.init.kaiming_normal_
) -> None:
    """fastai's `apply_init` (what vision_learner does to a custom_head): each layer of `m`
    with a trainable weight of 2 or more dimensions (Linear, Conv; not the normalization
    layers, whose weights are 1-D) gets func(weight) and a zero bias."""
    with torch.no_grad():
        for module in m.modules():
            weight = getattr(module, "weight", None)
            if not (
                isinstance(weight, nn.Parameter) and weight.requires_grad and weight.dim() >= 2
            ):
                continue
            func(weight)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()


def _positive_int(name: str, value: object) -> int:
    number = int_or_none(value)
    if number is None or number < 1:
        raise ValueError(f"{name} should be a positive int, got {value!r}")
    return number


def _hidden_sizes(lin_ftrs: object) -> list[int]:
    """create_head's lin_ftrs as a list of positive ints."""
    if int_or_none(lin_ftrs) is not None or isinstance(lin_ftrs, (str, bytes)):
        raise TypeError(
            f"lin_ftrs should be a list of ints (the hidden layers' sizes, e.g. [512]), got "
            f"{lin_ftrs!r}"
        )
    try:
        sizes = list(lin_ftrs)
    except TypeError:
        raise TypeError(
            f"lin_ftrs should be a list of ints (the hidden layers' sizes, e.g. [512]), got "
            f"{lin_ftrs!r}"
        ) from None
    out = [int_or_none(h) for h in sizes]
    if any(h is None or h < 1 for h in out):
        raise ValueError(f"lin_ftrs should be positive ints, got {lin_ftrs!r}")
    return out


def weights_cache_file(weights: WeightsEnum) -> Path:
    """Where torchvision's loader looks for (and stores) these weights."""
    name = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _download(url: str, dst: Path, timeout: float) -> None:
    """Fetch url into dst through a temporary file in dst's folder (renamed at the end, so
    an interrupted download leaves nothing behind); check the sha256 prefix that
    torchvision puts in its file names."""
    match = re.search(r"-([a-f0-9]+)\.", dst.name)
    sha = hashlib.sha256()
    opener = urllib.request.build_opener()  # reads the proxy settings of this moment
    print(f"Downloading {url} to {dst}", file=sys.stderr)
    with atomic_write(dst) as f, opener.open(url, timeout=timeout) as r:
        while chunk := r.read(1 << 20):
            f.write(chunk)
            sha.update(chunk)
        if match and not sha.hexdigest().startswith(match.group(1)):
            raise OSError(f"checksum mismatch: sha256 does not start with {match.group(1)}")


def _fetch_weights(weights: WeightsEnum, arch_name: str) -> None:
    """Make sure the weights file is in torchvision's cache, or raise a clear error."""
    path = weights_cache_file(weights)
    if path.is_file():
        return
    try:
        _download(weights.url, path, DOWNLOAD_TIMEOUT)
    except (OSError, urllib.error.URLError) as e:
        raise PretrainedWeightsError(
            f"Pretrained weights for {arch_name} ({weights}) are not in torchvision's cache and "
            f"could not be downloaded ({e}).\n"
            f"Put the file {path.name} (from {weights.url}) at {path} "
            f"(torchvision's cache: $TORCH_HOME/hub/checkpoints, TORCH_HOME defaults to "
            f"~/.cache/torch), or pass pretrained=False to start from random weights."
        ) from None  # the cause is in the message: its urllib traceback was 60 lines of noise


def pretrained_weights_cached(arch: Callable[..., nn.Module] | str) -> Path | None:
    """The file of `arch`'s DEFAULT ImageNet weights when torchvision's cache holds it, else
    None (also for an architecture without pretrained weights). `arch`: a torchvision
    builder or its name (ValueError for an unknown name)."""
    builder = resolve_arch(arch)
    try:
        weights = models.get_model_weights(builder).DEFAULT
    except (ValueError, KeyError, AttributeError, TypeError):
        return None
    path = weights_cache_file(weights)
    return path if path.is_file() else None


def resolve_arch(arch: Callable[..., nn.Module] | str) -> Callable[..., nn.Module]:
    """A torchvision builder (or one of fastai's xresnets) from itself or its name
    (ValueError naming `arch` for an unknown name, TypeError for something not callable)."""
    if isinstance(arch, str):
        if arch in XRESNETS:
            return XRESNETS[arch]
        try:
            return models.get_model_builder(arch)
        except ValueError as e:
            raise ValueError(f"arch {arch!r} is not a torchvision model name ({e})") from e
    if isinstance(arch, nn.Module):
        raise TypeError(
            f"arch should be a model builder such as models.resnet34 (the function, without "
            f"the ()), got a {type(arch).__name__} instance"
        )
    if not callable(arch):
        raise TypeError(f"arch should be a model builder such as models.resnet34, got {arch!r}")
    return arch


def build_arch(arch: Callable[..., nn.Module], pretrained: bool | WeightsEnum) -> nn.Module:
    """The full torchvision classifier `arch` builds: with pretrained=True its DEFAULT
    ImageNet weights (fetched into torchvision's cache first; PretrainedWeightsError when
    they can be neither found nor downloaded), with a Weights those, with False random
    weights."""
    name = getattr(arch, "__name__", repr(arch))
    try:
        weights_enum = models.get_model_weights(arch)
    except (ValueError, KeyError, TypeError):
        weights_enum = None
    if weights_enum is None:
        if pretrained:
            raise ValueError(
                f"pretrained weights come from torchvision's weights API; arch {name} is not a "
                f"torchvision model builder (e.g. models.resnet34): pass pretrained=False"
            )
        try:
            model = arch()
        except TypeError as e:  # nn.Linear: a layer class needing arguments, not a builder
            raise TypeError(
                f"arch should be a model builder callable without arguments, such as "
                f"models.resnet34, got {name}, whose call arch() failed: {e}"
            ) from e
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"arch should build an nn.Module (a classifier to cut, as models.resnet34()), "
                f"got {name}, which returned {type(model).__name__}"
            )
        return model
    if isinstance(pretrained, WeightsEnum):
        weights = pretrained
    elif pretrained is True:
        weights = weights_enum.DEFAULT
    elif pretrained is False:
        return arch(weights=None)
    else:
        raise TypeError(f"pretrained should be a bool or a torchvision Weights, got {pretrained!r}")
    _fetch_weights(weights, name)
    try:
        return arch(weights=weights)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:  # a bad cached file
        path = weights_cache_file(weights)
        raise PretrainedWeightsError(
            f"Could not load the pretrained weights for {name} from {path} ({e}). Delete that "
            f"file to download it again, or pass pretrained=False."
        ) from e


def default_cut(model: nn.Module) -> int:
    """Index of the model's last adaptive pooling child (fastai cuts there); without one,
    the last child (the classifier) is dropped."""
    children = list(model.children())
    for i in range(len(children) - 1, -1, -1):
        if isinstance(children[i], (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return i
    return len(children) - 1


def create_body(
    arch: Callable[..., nn.Module] | str | nn.Module,
    pretrained: bool | WeightsEnum = True,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
) -> nn.Sequential | nn.Module:
    """The feature extractor of a torchvision classifier, as fastai's ``create_body(arch,
    pretrained=, cut=)``: the model's children up to `cut` (default: its final pooling
    layer), or cut(model). ``nn.Sequential(create_body(resnet18), create_head(512, c))``
    is a create_cnn model. fastai v2's form, a model instance (``create_body(resnet18(),
    cut=-2)``), is cut as it is: its weights are its own, `pretrained` is not used."""
    if isinstance(arch, nn.Module):
        return _cut(arch, cut)
    return body_and_model(arch, pretrained, cut)[0]


def body_and_model(
    arch: Callable[..., nn.Module] | str,
    pretrained: bool | WeightsEnum = True,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
) -> tuple[nn.Sequential | nn.Module, nn.Module]:
    """(create_body's body, the whole model it was cut from), which tells the splitter."""
    model = build_arch(resolve_arch(arch), pretrained)
    return _cut(model, cut), model


def _cut(model: nn.Module, cut: int | Callable[[nn.Module], nn.Module] | None) -> nn.Module:
    """The body of `model`: cut(model), or its children before index `cut` (default: its
    last pooling layer, `default_cut`)."""
    if callable(cut):
        return cut(model)
    index = default_cut(model) if cut is None else _check_cut(cut, model)
    return nn.Sequential(*list(model.children())[:index])


def _check_cut(cut: object, model: nn.Module) -> int:
    """`cut` as an int that keeps at least one of the model's children in the body, and one
    with parameters."""
    index = int_or_none(cut)
    if index is None:
        raise TypeError(f"cut should be an int, a callable or None, got {cut!r}")
    children = list(model.children())
    n = len(children)
    if not (1 <= index <= n or -n < index <= -1):
        names = ", ".join(name for name, _ in model.named_children())
        raise ValueError(
            f"cut should keep at least one of the model's {n} children ({names}) in the body: "
            f"an int in [1, {n}] or [-{n - 1}, -1], got {cut!r}"
        )
    if not any(list(c.parameters()) for c in children[:index]):
        raise ValueError(
            f"cut={cut!r} keeps only children without parameters ("
            f"{', '.join(type(c).__name__ for c in children[:index])}); pass a larger cut"
        )
    return index


def num_features(body: nn.Module) -> int:
    """Output channels of the body, from a forward pass on a small dummy image."""
    training = body.training
    body.eval()
    try:
        with torch.no_grad():
            out = body(torch.zeros(1, 3, 64, 64))
    except Exception as e:
        raise BodyCutError(f"could not run the cut body on a [1, 3, 64, 64] image ({e})") from e
    finally:
        body.train(training)
    if out.dim() != 4:
        raise BodyCutError(
            f"the cut body should output a feature map [B, C, H, W], got shape {tuple(out.shape)}"
        )
    return out.shape[1]


def resnet_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """3 layer groups of a create_cnn resnet: stem..layer2, layer3..layer4, head."""
    body, head = model[0], model[1]
    return [list(body[:6].parameters()), list(body[6:].parameters()), list(head.parameters())]


def xresnet_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """3 layer groups of a create_cnn xresnet, as fastai's _xresnet_split: the stem's three
    ConvLayers, the rest of the body, head."""
    body, head = model[0], model[1]
    return [list(body[:3].parameters()), list(body[3:].parameters()), list(head.parameters())]


def _features_split(model: nn.Module, at: int) -> list[list[nn.Parameter]]:
    """3 layer groups of a create_cnn model whose body holds the torchvision model's
    `features` alone: features[:at], features[at:], head."""
    features, head = model[0][0], model[1]
    return [
        list(features[:at].parameters()),
        list(features[at:].parameters()),
        list(head.parameters()),
    ]


def densenet_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """3 layer groups of a create_cnn densenet, as fastai's _densenet_split: features[:7]
    (the stem and the first dense block and transition), features[7:], head."""
    return _features_split(model, 7)


def vgg_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """3 layer groups of a create_cnn vgg*_bn, as fastai's _vgg_split: features[:22],
    features[22:], head."""
    return _features_split(model, 22)


def squeezenet_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """3 layer groups of a create_cnn squeezenet, as fastai's _squeezenet_split:
    features[:5], features[5:], head."""
    return _features_split(model, 5)


def alexnet_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """3 layer groups of a create_cnn alexnet, as fastai's _alexnet_split: features[:6],
    features[6:], head."""
    return _features_split(model, 6)


def default_splitter_of(
    full: nn.Module, body: nn.Module, cut: object
) -> Callable[[nn.Module], list[list[nn.Parameter]]]:
    """The splitter create_cnn gives the model cut from `full` (body: what create_body kept
    with `cut`), as fastai's model_meta: 3 groups for resnets (also resnext and wide_resnet,
    which fastai's model_meta leaves at 2), xresnets, densenets, vgg*_bn, squeezenets and
    alexnet cut at their default place; 2 (body, head) for the others. Another cut keeps
    the resnets' and xresnets' split, as fastai's (its model_meta split ignores the cut),
    when the body still reaches past the first group (resnets: layer2, xresnets: the stem),
    else 2 groups (fastai's would leave one empty)."""
    features = getattr(full, "features", None)
    if isinstance(full, models.ResNet) and (cut is None or len(body) > 6):
        return resnet_split
    if isinstance(full, XResNet) and (cut is None or len(body) > 3):
        return xresnet_split
    if cut is not None:
        return default_split
    if not (isinstance(body, nn.Sequential) and len(body) == 1 and body[0] is features):
        return default_split
    if isinstance(full, models.DenseNet):
        return densenet_split
    if isinstance(full, models.VGG) and any(isinstance(m, nn.BatchNorm2d) for m in features):
        return vgg_split
    if isinstance(full, models.SqueezeNet):
        return squeezenet_split
    if isinstance(full, models.AlexNet):
        return alexnet_split
    return default_split


def default_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """2 layer groups of a create_cnn model: body, head."""
    return [list(model[0].parameters()), list(model[1].parameters())]
