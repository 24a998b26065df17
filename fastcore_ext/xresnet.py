"""fastai's XResNet: the ResNet of "Bag of Tricks for Image Classification" (He et al., 2019),
as fastbook chapter 7 and fastai's imagenette examples train it from scratch.

    model = xresnet50(n_out=dls.c)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    learn = vision_learner(dls, xresnet34, pretrained=False)     # its body, fastai's head

The same modules, parameter names and initialisation as fastai 2.8.12's
``fastai.vision.models.xresnet`` (checked: every builder's state_dict has fastai's keys, shapes
and parameter count), so a state_dict saved by one loads into the other:

- the stem: three 3x3 ConvLayers (conv, BatchNorm, ReLU), c_in -> 32 (stride 2) -> 32 -> 64,
  then a 3x3 max pool of stride 2;
- four stages of ResBlocks (two 3x3 convolutions with expansion 1, a 1x1 / 3x3 / 1x1
  bottleneck with expansion 4), the first block of stages 2-4 with stride 2, its shortcut
  an average pool (2x2, ceil mode) and, where the width changes, a 1x1 ConvLayer; the last
  BatchNorm of each block's residual path starts at weight 0 (the block starts as the
  identity);
- adaptive average pool, flatten, dropout `p`, a linear layer to `n_out`;
- every conv and linear weight kaiming-normal, every bias (BatchNorm's too) 0.

Also fastai's ``*_deep`` / ``*_deeper`` builders (more stages, 256 wide) and its `act_cls`
(``xresnet50(n_out=10, act_cls=nn.Mish)``; checked the same way), and its self-attention
(``xresnet50(sa=True)``: a `SimpleSelfAttention` closing the last block of the first stage,
checked the same way). Not offered: the squeeze-excitation variants (xse_resnet*,
xresnext*). Pretrained
weights are not offered (fastai downloads them for xresnet50 only): pretrained=True raises
ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from numbers import Real

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from fastcore_ext.checks import check_bool, check_positive_int

__all__ = [
    "ConvLayer",
    "NormType",
    "ResBlock",
    "SimpleSelfAttention",
    "XResNet",
    "XRESNETS",
    "init_cnn",
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
]


def init_cnn(m: nn.Module) -> None:
    """fastai's init_cnn: kaiming-normal weights of every conv and linear layer, every bias
    0 (BatchNorm's included), recursively."""
    if getattr(m, "bias", None) is not None:
        nn.init.constant_(m.bias, 0)
    if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
        nn.init.kaiming_normal_(m.weight)
    for child in m.children():
        init_cnn(child)


class NormType(Enum):
    """fastai's NormType: the normalization of a ConvLayer. This library builds Batch and
    BatchZero (BatchNorm, its weight starting at 1 or 0); the others are refused."""

    Batch = 1
    BatchZero = 2
    Weight = 3
    Spectral = 4
    Instance = 5
    InstanceZero = 6


class ConvLayer(nn.Sequential):
    """conv -> BatchNorm -> activation (fastai's ConvLayer with its defaults: ReLU, padding
    ks // 2, no conv bias before a BatchNorm); act_cls None leaves the activation out;
    norm_type NormType.BatchZero (or zero_bn=True) starts the BatchNorm's weight at 0, None
    leaves the BatchNorm out (the conv then has a bias, as fastai's)."""

    def __init__(
        self, ni: int, nf: int, ks: int = 3, stride: int = 1, padding: int | None = None,
        bias: bool | None = None, norm_type: NormType | None = NormType.Batch,
        act_cls: type[nn.Module] | None = nn.ReLU, zero_bn: bool = False,
    ) -> None:  # fmt: skip
        if norm_type is not None and norm_type not in (NormType.Batch, NormType.BatchZero):
            raise ValueError(
                f"norm_type: this library's ConvLayer builds NormType.Batch, NormType.BatchZero "
                f"or None (no normalization), got {norm_type!r}"
            )
        padding = (ks - 1) // 2 if padding is None else padding
        bias = norm_type is None if bias is None else bias
        layers: list[nn.Module] = [
            nn.Conv2d(ni, nf, kernel_size=ks, stride=stride, padding=padding, bias=bias)
        ]
        if norm_type is not None:
            bn = nn.BatchNorm2d(nf)
            nn.init.constant_(bn.bias, 1e-3)
            zero = zero_bn or norm_type is NormType.BatchZero
            nn.init.constant_(bn.weight, 0.0 if zero else 1.0)
            layers.append(bn)
        if act_cls is not None:
            layers.append(act_cls())
        super().__init__(*layers)


class SimpleSelfAttention(nn.Module):
    """fastai's SimpleSelfAttention (its layers.py): ``x + gamma * (x x^T) conv(x)`` over the
    flattened positions, conv a 1x1 Conv1d with spectral normalization (kaiming-normal),
    gamma a learned scalar starting at 0 (the layer starts as the identity). sym: fastai's
    symmetric-weight option, kept as fastai runs it."""

    def __init__(self, n_in: int, ks: int = 1, sym: bool = False) -> None:
        super().__init__()
        self.sym, self.n_in = check_bool("sym", sym), check_positive_int("n_in", n_in)
        conv = nn.Conv1d(n_in, n_in, ks, padding=ks // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight)
        self.conv = spectral_norm(conv)
        self.gamma = nn.Parameter(torch.tensor([0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sym:  # as fastai's: the spectral norm's hook recomputes the weight anyway
            c = self.conv.weight.view(self.n_in, self.n_in)
            self.conv.weight = ((c + c.t()) / 2).view(self.n_in, self.n_in, 1)
        size = x.size()
        x = x.view(*size[:2], -1)
        convx = self.conv(x)
        xxt = torch.bmm(x, x.permute(0, 2, 1).contiguous())
        o = self.gamma * torch.bmm(xxt, convx) + x
        return o.view(*size).contiguous()


class ResBlock(nn.Module):
    """fastai's ResBlock: ``relu(convpath(x) + idpath(x))``, from `ni` * expansion to `nf` *
    expansion channels; sa: a `SimpleSelfAttention` ends the conv path."""

    def __init__(
        self, expansion: int, ni: int, nf: int, stride: int = 1, ks: int = 3,
        act_cls: type[nn.Module] = nn.ReLU, sa: bool = False, sym: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        nh, nf, ni = nf, nf * expansion, ni * expansion  # nh: the bottleneck's inner width
        if expansion == 1:
            path = [
                ConvLayer(ni, nf, ks, stride=stride, act_cls=act_cls),
                ConvLayer(nf, nf, ks, act_cls=None, zero_bn=True),
            ]
        else:
            path = [
                ConvLayer(ni, nh, 1, act_cls=act_cls),
                ConvLayer(nh, nh, ks, stride=stride, act_cls=act_cls),
                ConvLayer(nh, nf, 1, act_cls=None, zero_bn=True),
            ]
        if sa:
            path.append(SimpleSelfAttention(nf, ks=1, sym=sym))
        self.convpath = nn.Sequential(*path)
        idpath: list[nn.Module] = []
        if ni != nf:
            idpath.append(ConvLayer(ni, nf, 1, act_cls=None))
        if stride != 1:
            idpath.insert(0, nn.AvgPool2d(stride, ceil_mode=True))
        self.idpath = nn.Sequential(*idpath)
        self.act = nn.ReLU(inplace=True) if act_cls is nn.ReLU else act_cls()

    def forward(self, x):
        return self.act(self.convpath(x) + self.idpath(x))


def _activation(act_cls: object) -> tuple[type[nn.Module], str | type[nn.Module]]:
    """(the activation class, what `config` keeps of it: its name when torch.nn has it, so
    that the export format can name it, else the class)."""
    if isinstance(act_cls, str):
        found = getattr(nn, act_cls, None)
        if not (isinstance(found, type) and issubclass(found, nn.Module)):
            raise ValueError(f"act_cls: expected a torch.nn activation name, got {act_cls!r}")
        act_cls = found
    if not (isinstance(act_cls, type) and issubclass(act_cls, nn.Module)):
        raise TypeError(f"act_cls: expected an nn.Module class such as nn.ReLU, got {act_cls!r}")
    named = getattr(nn, act_cls.__name__, None) is act_cls
    return act_cls, act_cls.__name__ if named else act_cls


class XResNet(nn.Sequential):
    """fastai's XResNet (module doc). expansion: 1 (basic blocks) or 4 (bottlenecks); layers:
    the number of blocks of each stage (4 stages or more: the extra ones 256 wide, as
    fastai's *_deep); p: the dropout before the last linear layer; c_in: input channels;
    n_out: outputs; stem_szs: the stem's widths; widen: a factor on the stage widths; ks:
    the convolutions' kernel size (odd); act_cls: the activation (an nn.Module class, or the
    name of one of torch.nn, e.g. nn.Mish or 'Mish'; fastai's default ReLU); sa: a
    `SimpleSelfAttention` at the end of the first stage's last block (fastai's; with more
    than 4 stages, of stage len(layers) - 4), sym its option. `config`: these
    arguments (a dict that rebuilds the model: ``XResNet(**m.config)``)."""

    def __init__(
        self,
        expansion: int,
        layers: Sequence[int],
        p: float = 0.0,
        c_in: int = 3,
        n_out: int = 1000,
        stem_szs: Sequence[int] = (32, 32, 64),
        widen: float = 1.0,
        ks: int = 3,
        stride: int = 2,
        act_cls: type[nn.Module] | str = nn.ReLU,
        sa: bool = False,
        sym: bool = False,
    ) -> None:
        act_cls, act_name = _activation(act_cls)
        sa, sym = check_bool("sa", sa), check_bool("sym", sym)
        if expansion not in (1, 4):
            raise ValueError(f"expansion: expected 1 or 4, got {expansion!r}")
        layers = [check_positive_int("layers", n) for n in layers]
        if len(layers) < 4:
            raise ValueError(f"layers: expected 4 stages or more, got {len(layers)}")
        c_in, n_out = check_positive_int("c_in", c_in), check_positive_int("n_out", n_out)
        ks, stride = check_positive_int("ks", ks), check_positive_int("stride", stride)
        if ks % 2 == 0:
            raise ValueError(f"ks: the kernel size should be odd, got {ks}")
        if isinstance(p, bool) or not isinstance(p, Real) or not 0 <= p < 1:
            raise ValueError(f"p: expected a dropout probability in [0, 1), got {p!r}")
        if isinstance(widen, bool) or not isinstance(widen, Real) or not widen > 0:
            raise ValueError(f"widen: expected a positive number, got {widen!r}")
        szs = [c_in, *(check_positive_int("stem_szs", s) for s in stem_szs)]
        # the constructor's arguments, as they rebuild this model (the export format's)
        config = dict(expansion=expansion, layers=layers, p=float(p), c_in=c_in, n_out=n_out)
        config.update(stem_szs=szs[1:], widen=float(widen), ks=ks, stride=stride)
        config["act_cls"] = act_name
        if sa:  # only then: an exported model without it keeps its description
            config.update(sa=True, sym=sym)
        if len(szs) != 4:
            raise ValueError(f"stem_szs: expected 3 widths, got {len(szs) - 1}")
        stem = [
            ConvLayer(szs[i], szs[i + 1], ks, stride=stride if i == 0 else 1, act_cls=act_cls)
            for i in range(3)
        ]
        widths = [int(o * widen) for o in [64, 128, 256, 512] + [256] * (len(layers) - 4)]
        widths = [64 // expansion, *widths]
        stages = [
            nn.Sequential(
                *(
                    ResBlock(
                        expansion,
                        widths[i] if j == 0 else widths[i + 1],
                        widths[i + 1],
                        stride=(1 if i == 0 else stride) if j == 0 else 1,
                        ks=ks,
                        act_cls=act_cls,
                        sa=sa and i == len(layers) - 4 and j == n - 1,
                        sym=sym,
                    )
                    for j in range(n)
                )
            )
            for i, n in enumerate(layers)
        ]
        super().__init__(
            *stem,
            nn.MaxPool2d(ks, stride=stride, padding=ks // 2),
            *stages,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(float(p)),
            nn.Linear(widths[-1] * expansion, n_out),
        )
        self.config: dict = config
        init_cnn(self)


def _builder(name: str, expansion: int, layers: list[int]) -> Callable[..., XResNet]:
    def build(pretrained: bool = False, **kwargs) -> XResNet:
        if pretrained:
            raise ValueError(
                f"pretrained: no pretrained weights are available for {name} (fastai "
                f"downloads them for xresnet50 only): pass pretrained=False"
            )
        return XResNet(expansion, layers, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"fastai's {name}: XResNet(expansion={expansion}, layers={layers}, **kwargs) (n_out, "
        f"p, c_in, widen, ...); pretrained=True raises ValueError (no weights offered)."
    )
    return build


xresnet18 = _builder("xresnet18", 1, [2, 2, 2, 2])
xresnet34 = _builder("xresnet34", 1, [3, 4, 6, 3])
xresnet50 = _builder("xresnet50", 4, [3, 4, 6, 3])
xresnet101 = _builder("xresnet101", 4, [3, 4, 23, 3])
xresnet152 = _builder("xresnet152", 4, [3, 8, 36, 3])
xresnet18_deep = _builder("xresnet18_deep", 1, [2, 2, 2, 2, 1, 1])
xresnet34_deep = _builder("xresnet34_deep", 1, [3, 4, 6, 3, 1, 1])
xresnet50_deep = _builder("xresnet50_deep", 4, [3, 4, 6, 3, 1, 1])
xresnet18_deeper = _builder("xresnet18_deeper", 1, [2, 2, 1, 1, 1, 1, 1, 1])
xresnet34_deeper = _builder("xresnet34_deeper", 1, [3, 4, 6, 3, 1, 1, 1, 1])
xresnet50_deeper = _builder("xresnet50_deeper", 4, [3, 4, 6, 3, 1, 1, 1, 1])

XRESNETS: dict[str, Callable[..., XResNet]] = {
    f.__name__: f
    for f in (
        xresnet18, xresnet34, xresnet50, xresnet101, xresnet152, xresnet18_deep,
        xresnet34_deep, xresnet50_deep, xresnet18_deeper, xresnet34_deeper, xresnet50_deeper,
    )
}  # fmt: skip
"""The builders by name (the export format names an xresnet so)."""
