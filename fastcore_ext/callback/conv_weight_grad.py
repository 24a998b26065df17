"""ConvWeightGrad: on the CPU, the weight gradient of a weight-heavy convolution as one matrix
product, for a fit.

oneDNN's float32 convolution backward computes the weight gradient of a 3x3 convolution on a
tiny feature map slowly: on the 2-core Xeon with AMX of bench/README.md ("Convolution weight
gradients as one matrix product"), resnet18's layer4 at 64 px (512 channels on 2x2 maps, bs
64) took 23-25 ms for a weight gradient whose arithmetic is the forward pass's (about 8 ms),
while the same sum written as one matrix product over the batch's output positions,
``grad_out[N*Ho*Wo, O]^T @ patches[N*Ho*Wo, kh*kw*C]`` (the patches a strided view of the
padded NHWC input, copied once), took 8-9 ms and gave the same values. On 4x4 outputs and
larger oneDNN was the faster (1.15x-1.5x, also at bs 32), so only convolutions whose weights
outnumber their input's elements in a training batch at least MATMUL_GRAD_RATIO times and
whose output maps hold at most MAX_OUTPUT_POSITIONS positions (2x2) take the matrix product:
resnet18/34 at 64 px: layer4's 3x3 convolutions; at 224 px: none. A
training step: 1.08x faster in float32, 1.11x in bf16 (where those convs run in float32).
Measured on that CPU only; where the matrix product is slower the cost is a few layers'.

`ConvWeightGrad` (a default callback of every Learner, `learn.conv_weight_grad`) finds those
convolutions at each fit's first training batch on the CPU (`conv_input_sizes`: one item, no
gradients) and, for the fit, sends their float32 forward passes through `MatmulGradConv2d`:
the forward is F.conv2d itself, the weight gradient the product, the input gradient a product
too where the stride is above 1 (`conv2d_input_grad`), else oneDNN's.
It acts only where the convolution runs in float32 with gradients on: a float32 fit, the
float32 first epoch of precision 'auto', and in a bf16 fit the weight-bound convolutions that
`MixedPrecision` runs in float32; under a bf16 autocast nothing changes. Not under
learn.compile() or DDP (as Fp32Convs). `enabled = False` turns it off, True on.

On by default only where the CPU has AMX (the CPU it was measured faster on, as Fp32Convs'
default): on a 2-core AMD EPYC Zen 4 (avx512_bf16, no AMX; session 22, bench/README.md) the
bare step took the same time with it or without (432 and 434 ms) and so did the demo fits
(25.6-29.8 s and 28.2-31.2 s), and the demo's error over 15 seeds was 0.015 lower without it
(standard error 0.010, lower on 8 of 15: no clear difference; its arithmetic is another
summation order of the same sums). Without it that CPU reproduces session 11's fits to the
bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from fastcore_ext.callback.core import Callback
from fastcore_ext.callback.mixed_precision import ConvHooks, conv_input_sizes
from fastcore_ext.hardware import has_amx

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = [
    "MATMUL_GRAD_RATIO",
    "MAX_OUTPUT_POSITIONS",
    "ConvWeightGrad",
    "MatmulGradConv2d",
    "MatmulGrads",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "matmul_grad_convs",
]

MATMUL_GRAD_RATIO = 4.0
"""A 2d convolution whose weights hold at least this many times the elements of its input in
a training batch, and whose output has at most MAX_OUTPUT_POSITIONS positions an item, gets
its weight gradient as one matrix product (module docstring)."""

MAX_OUTPUT_POSITIONS = 4
"""At most 2x2 output maps: on 4x4 outputs the product lost at batches 32 and 64 (0.72x,
0.87x of torch's speed) even where the weights held 4.5x the input's elements (bs 32)."""


def conv2d_weight_grad(
    x: torch.Tensor,
    grad_out: torch.Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """The gradient of a 2d convolution's weight (groups 1, zero padding) for input `x` [N, C,
    H, W] and output gradient `grad_out` [N, O, Ho, Wo], as one matrix product: [O, C, kh, kw]
    in channels-last layout (the product's own)."""
    n, c = x.shape[:2]
    o, ho, wo = grad_out.shape[1:]
    kh, kw = kernel_size
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    xp = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1).contiguous()  # [N, H+2ph, W+2pw, C]
    s_n, s_h, s_w, s_c = xp.stride()
    patches = xp.as_strided(
        (n, ho, wo, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c)
    ).reshape(n * ho * wo, kh * kw * c)
    g = grad_out.permute(0, 2, 3, 1).reshape(n * ho * wo, o)
    return (g.t() @ patches).view(o, kh, kw, c).permute(0, 3, 1, 2)


def conv2d_input_grad(
    grad_out: torch.Tensor,
    weight: torch.Tensor,
    input_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """The gradient of a 2d convolution's input (groups 1, zero padding) of spatial size
    `input_size` for `grad_out` [N, O, Ho, Wo] and `weight` [O, C, kh, kw], as one matrix
    product (the patches' gradients) and one strided add per kernel tap: [N, C, H, W] in
    channels-last layout."""
    n, o, ho, wo = grad_out.shape
    c, kh, kw = weight.shape[1:]
    (h, w), (sh, sw), (ph, pw), (dh, dw) = input_size, stride, padding, dilation
    g = grad_out.permute(0, 2, 3, 1).reshape(n * ho * wo, o)
    patches = (g @ weight.permute(0, 2, 3, 1).reshape(o, kh * kw * c)).view(n, ho, wo, kh, kw, c)
    grad = grad_out.new_zeros(n, h + 2 * ph, w + 2 * pw, c)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
            grad[:, rows, cols] += patches[:, :, :, i, j]
    return grad[:, ph : ph + h, pw : pw + w].permute(0, 3, 1, 2)


class MatmulGradConv2d(torch.autograd.Function):
    """F.conv2d (groups 1, numeric padding) whose backward takes the weight gradient from
    `conv2d_weight_grad` and the input gradient from `conv2d_input_grad` where the stride is
    above 1 (resnet18's layer4.0.conv1 at 64 px: about 1.5x faster than torch's), else from
    torch's convolution backward (1.5x faster than the product on layer4's 2x2 maps). The
    backward is made of differentiable torch ops, so a second derivative (create_graph=True)
    works too."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        stride, padding, dilation, has_bias = ctx.conv
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0] and max(stride) > 1:
            grad_x = conv2d_input_grad(grad_out, weight, x.shape[2:], stride, padding, dilation)
            if x.is_contiguous():  # the input's own layout
                grad_x = grad_x.contiguous()
        elif ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, list(stride), list(padding), list(dilation),
                False, [0, 0], 1, [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            grad_w = conv2d_weight_grad(
                x, grad_out, tuple(weight.shape[2:]), stride, padding, dilation
            )
            if weight.is_contiguous():  # the weight's own layout
                grad_w = grad_w.contiguous()
        if has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


def _pair(v: Any) -> tuple[int, int] | None:
    """(a, b) from an int or a pair of ints, else None (a padding string, say)."""
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return (v[0], v[1])
    return None


class _Mode(TorchFunctionMode):
    """Routes F.conv2d on one of `weights` (by identity) through MatmulGradConv2d where it
    qualifies: float32 input and weight on the CPU, gradients on, no autocast, groups 1,
    numeric padding; every other call runs as it was."""

    def __init__(self, weights: set[int]) -> None:
        super().__init__()
        self.weights = weights

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is F.conv2d and len(args) >= 2 and id(args[1]) in self.weights:
            call = _conv_call(*args, **kwargs)
            if call is not None:
                return MatmulGradConv2d.apply(*call)
        return func(*args, **kwargs)


def _conv_call(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> tuple | None:
    """MatmulGradConv2d's arguments for this F.conv2d call, or None where it does not apply."""
    conv = (_pair(stride), _pair(padding), _pair(dilation))
    if (
        groups != 1
        or None in conv
        or x.dim() != 4
        or x.dtype != torch.float32
        or weight.dtype != torch.float32
        or x.device.type != "cpu"
        or not torch.is_grad_enabled()
        or torch.is_autocast_enabled("cpu")
    ):
        return None
    return (x, weight, bias, *conv)


class MatmulGrads(ConvHooks):
    """Hooks on `convs` (2d convolutions) that, around each one's forward, route its F.conv2d
    through MatmulGradConv2d (`_Mode`: float32 on the CPU with gradients on only). The
    forward hook always runs (also when the forward raises). `remove()` takes them off."""

    def __init__(self, convs: list[nn.Module]) -> None:
        self._mode = _Mode({id(conv.weight) for conv in convs})
        super().__init__(convs)

    def _enter(self, conv: nn.Module, args: tuple) -> None:
        self._mode.__enter__()

    def _exit(self, conv: nn.Module, args: tuple, out: torch.Tensor) -> None:
        self._mode.__exit__(None, None, None)


def matmul_grad_convs(
    sizes: list[tuple[str, nn.Module, tuple]],
    batch: int,
    ratio: float = MATMUL_GRAD_RATIO,
    max_positions: int = MAX_OUTPUT_POSITIONS,
) -> list[tuple[str, nn.Module]]:
    """The 2d convolutions (groups 1) among `sizes` (`conv_input_sizes`) whose weights hold at
    least `ratio` times as many elements as their input in a batch of `batch` items and whose
    output has at most `max_positions` positions (h x w) per item."""
    found, seen = [], set()
    for name, conv, size in sizes:
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or id(conv) in seen:
            continue
        seen.add(id(conv))
        heavy = conv.weight.numel() >= ratio * batch * conv.in_channels * size[0] * size[1]
        if heavy and _output_positions(conv, size) <= max_positions:
            found.append((name, conv))
    return found


def _output_positions(conv: nn.Conv2d, size: tuple) -> int:
    """Output positions (h x w) of `conv` for an input of spatial `size`; a padding string
    ('same', 'valid') counts as the input's own size, an upper bound."""
    if isinstance(conv.padding, str):
        return size[0] * size[1]
    n = 1
    for i in range(2):
        k, s, p, d = conv.kernel_size[i], conv.stride[i], conv.padding[i], conv.dilation[i]
        n *= max(0, (size[i] + 2 * p - d * (k - 1) - 1) // s + 1)
    return n


def _may_qualify(model: nn.Module, batch: int, ratio: float = MATMUL_GRAD_RATIO) -> bool:
    """Whether a 2d convolution of `model` could pass `matmul_grad_convs` for a batch of
    `batch` items: at 1x1 inputs (the fewest input elements it can have)."""
    return any(
        isinstance(m, nn.Conv2d)
        and m.groups == 1
        and m.weight.numel() >= ratio * batch * m.in_channels
        for m in model.modules()
    )


class ConvWeightGrad(Callback):
    """At each fit's first training batch on the CPU, the convolutions `matmul_grad_convs`
    picks take their weight gradient as one matrix product in float32 for that fit (module
    docstring). `convs` names them (from the fit's first batch on, kept after the fit; empty
    where none qualifies); `enabled = False` turns it off."""

    order = -20  # its hooks are in place before any other callback's before_batch runs
    run_valid = False

    def __init__(self, enabled: bool | None = None) -> None:
        super().__init__()
        if enabled is not None and not isinstance(enabled, bool):
            raise TypeError(f"enabled should be True, False or None, got {enabled!r}")
        # None: where the CPU has AMX (module docstring)
        self.enabled = has_amx() if enabled is None else enabled
        self.convs: list[str] = []
        self._hooks: MatmulGrads | None = None
        self._checked = False

    def before_fit(self) -> None:
        self._remove()
        self.convs = []
        self._checked = False

    def before_batch(self) -> None:
        learn: Learner = self.learn
        if self._checked or not learn.training:
            return
        self._checked = True
        (xb,) = learn.xb
        if not self.enabled or xb.device.type != "cpu" or xb.dim() != 4:
            return
        if learn.compiled is not None or learn.ddp_model is not None:
            return
        if not _may_qualify(learn.model, xb.shape[0]):
            return  # no probe pass where no convolution can qualify
        try:
            sizes = conv_input_sizes(learn.model, xb)
        except Exception:  # noqa: BLE001
            # the model does not take the batch as it is yet: a later callback's before_batch
            # changes it (fewer channels, another size); this fit keeps torch's gradients
            return
        found = matmul_grad_convs(sizes, xb.shape[0])
        self.convs = [name for name, _ in found]
        if found:
            self._hooks = MatmulGrads([conv for _, conv in found])

    def after_fit(self) -> None:
        self._remove()

    def _remove(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
        self._hooks = None

    def __repr__(self) -> str:
        return f"ConvWeightGrad(enabled={self.enabled})"
