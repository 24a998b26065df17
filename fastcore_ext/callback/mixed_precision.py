"""MixedPrecision: autocast forward passes, and fp16's loss scaling, as a callback.

`Learner.to_bf16()` / `to_fp16()` attach one, `to_fp32()` removes it; the training loop has
no precision branch of its own. The learner runs every forward pass (training, validation,
get_preds, predict) inside `learn.autocast()`, which is this callback's `autocast()` when
one is attached. Parameters, gradients, optimizer state and BatchNorm running statistics
stay float32: autocast only changes the dtype in which the ops it lists compute.

With a GradScaler (fp16), the loss is scaled before backward, and the step is the scaler's:
the fused optimizer unscales the grads itself and skips a step whose grads hold inf/NaN
(its device step counter, and so the one-cycle schedule, does not advance then). The
learner's host mirror of that counter follows the device counter.

`auto_precision(device)` is what `Learner(precision="auto")` picks: "bf16" where the
hardware multiplies bfloat16 natively (fastcore_ext.hardware), else "fp32";
`set_up(learn, precision)` applies `Learner(precision=...)` and keeps the line that says what
"auto" chose as `learn.precision_note`, which `announce(learn)` prints at the start of the
learner's first fit (or lr_find), once per process: the line speaks of training (the first
epoch in fp32, `to_fp32()` to opt out), so a learner only used for inference (load_learner,
the CLI's predict) prints nothing. Changing the precision (to_bf16, to_fp16, to_fp32) drops
the note: the choice it describes is no longer the learner's.

The automatic bf16 trains the learner's first AUTO_FP32_EPOCHS epoch(s) in float32
(`MixedPrecision.fp32_epochs`; `create_cnn` with pretrained weights sets 0): bfloat16's
rounding error, relative to the signal, is largest while a network's features are still
random. From scratch, bf16 from the first batch ended 2 points of error above
fastai's fp32 at equal epochs (16 seeds of the demo on a 2-core Zen 4: 0.697 against 0.676),
with a float32 first epoch 0.682 (bench/README.md, "Precision 'auto' from scratch").

`bf16(device)` / `fp16(device)` build the callback of `Learner.to_bf16` / `to_fp16`
(checking that the device runs it), `attached(cbs)` finds it among a learner's callbacks and
`use(learn, mp)` puts it in place of the attached one.

A known wrong result of the CPU's bfloat16 convolution (torch 2.14; seen on an AMD Zen 4
with AVX512-BF16, and as NaN weights on the project's CI machine): the weight gradient
of a convolution whose input is narrower than its stride (a 1 px wide feature map before a
stride-2 3x3 conv, as resnets make of images of 16 px or less) holds garbage, inf or NaN in
the kernel taps that see only padding; float32 is right, and the forward pass is right in
both. `narrow_strided_convs` finds such layers for a batch; a bf16 fit on the CPU checks at
its first training batch and, where it finds one, trains that fit in float32 with a warning
that names the layer.

Weight-bound convolutions: where a convolution's weights outnumber its input's elements in a
batch (resnet18's layer3 and layer4 on 64 px images: 2x2 and 4x4 maps under 590k-2.4M
weights), a bf16 step spends its time on the weights (the cast to bf16, oneDNN's reorders of
them, the weight gradient), not on the arithmetic bf16 speeds up; on a 2-core Xeon with AMX
those layers were 1.1x-1.7x slower in bf16 than in float32 NCHW. In a bf16 fit on such a CPU
(`fp32_convs`, default: where the CPU has AMX) the fit's first-batch check also picks them
(`weight_bound_convs`) and `Fp32Convs` runs them in float32 NCHW for the fit (a resnet18 64
px step 432 -> 347 ms there; bench/README.md, "Weight-bound convolutions in float32").
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from fastcore_ext.callback.core import Callback, CancelStepException
from fastcore_ext.checks import check_int
from fastcore_ext.hardware import BF16_CPU_FLAGS, has_amx, has_native_bf16, native_bf16_cpu_flags
from fastcore_ext.optim import OptimWrapper
from fastcore_ext.ranks import is_main_process
from fastcore_ext.torch_core import to_float
from fastcore_ext.warn import warn_user

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = [
    "MixedPrecision",
    "PRECISIONS",
    "AUTO_FP32_EPOCHS",
    "auto_precision",
    "narrow_strided_convs",
    "narrow_strided",
    "conv_input_sizes",
    "weight_bound_convs",
    "WEIGHT_BOUND_RATIO",
    "ConvHooks",
    "Fp32Convs",
    "announce",
    "features_trained",
    "set_up",
    "bf16",
    "fp16",
    "attached",
    "use",
]

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
"""The values of Learner(precision=...)."""

AUTO_FP32_EPOCHS = 1
"""Epochs a learner trains in float32 before precision 'auto' turns bfloat16 on."""

_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}

_announced: set[str] = set()  # the automatic precision choices already printed


def auto_precision(device: torch.device | str) -> tuple[str, str]:
    """('bf16', why) where `device` runs bfloat16 matrix math natively, else ('fp32', why):
    the choice and the line that announces it."""
    device = torch.device(device)
    if not has_native_bf16(device):
        return "fp32", f"fastcore_ext: precision auto -> fp32 (no native bfloat16 on {device.type})"
    why = ", ".join(native_bf16_cpu_flags()) if device.type == "cpu" else device.type
    return "bf16", (
        f"fastcore_ext: precision auto -> bf16 autocast + channels-last ({why}; a model "
        f"trained from scratch runs its first epoch in fp32); learn.to_fp32() opts out"
    )


def announce(learn: Learner) -> None:
    """Print `learn.precision_note` (what precision 'auto' chose), if any, to stderr: once per
    process for each distinct line, from the main process only. Called as a fit starts."""
    line = learn.precision_note
    if line is not None and line not in _announced and is_main_process():
        _announced.add(line)
        print(line, file=sys.stderr, flush=True)


def set_up(learn: Learner, precision: str) -> None:
    """What Learner(precision=...) does: to_bf16, float16 (`fp16`: a GPU only), or for
    'auto' the choice of `auto_precision`, bf16 after AUTO_FP32_EPOCHS float32 epochs, with
    channels-last (which to_fp32 undoes), its line kept as `learn.precision_note` for
    `announce`; 'fp32' changes nothing."""
    if precision == "bf16":
        learn.to_bf16()
    elif precision == "fp16":  # refused on the CPU (to_fp16 there only warns)
        use(learn, fp16(learn.data.device))
    elif precision == "auto":
        chosen, line = auto_precision(learn.data.device)
        if chosen == "bf16":
            learn.to_bf16(fp32_epochs=AUTO_FP32_EPOCHS).to_channels_last()
            learn._auto_layout = True
        learn.precision_note = line


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

WEIGHT_BOUND_RATIO = 2.0
"""A 2d convolution whose weights outnumber the elements of its input in a training batch
more than this many times runs in float32 (NCHW) in a bf16 fit on a CPU with AMX."""


def conv_input_sizes(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, tuple]]:
    """(name, module, spatial size of its input) of every convolution of `model` in a forward
    pass of a batch shaped like `x`, in call order. Runs the model on one zero item of `x`'s
    shape in eval mode without gradients (every module's training flag is restored), with
    the forward hooks already on its modules (the user's, `hook_output`'s) set aside for that
    pass, so they see only the batches of the fit; where `model` has no convolution, runs
    nothing."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, _CONVS)]
    if not convs:
        return []
    seen: list[tuple[str, nn.Module, tuple]] = []

    def record(name: str, conv: nn.Module, args: tuple) -> None:
        seen.append((name or "model", conv, tuple(args[0].shape[-len(conv.kernel_size) :])))

    modes = [(m, m.training) for m in model.modules()]
    set_aside = [(m, m._forward_pre_hooks, m._forward_hooks) for m in model.modules()]
    for m, _, _ in set_aside:
        m._forward_pre_hooks, m._forward_hooks = OrderedDict(), OrderedDict()
    handles = [
        m.register_forward_pre_hook(lambda conv, args, name=name: record(name, conv, args))
        for name, m in convs
    ]
    try:
        model.eval()
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else x.dtype
        with torch.no_grad():
            model(x.new_zeros((1, *x.shape[1:]), dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for m, pre_hooks, hooks in set_aside:
            m._forward_pre_hooks, m._forward_hooks = pre_hooks, hooks
        for m, training in modes:
            m.training = training
    return seen


def narrow_strided_convs(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The convolutions of `model` whose input, in a forward pass of a batch shaped like `x`,
    is narrower than the stride in a dimension where the kernel is wider than 1: those whose
    weight gradient the CPU's bfloat16 kernels compute wrong (module docstring), as lines
    'name: input HxW, kernel KxK, stride SxS'. Where `model` has strided convolutions wider
    than 1, runs it on one zero item (`conv_input_sizes`); else runs nothing."""
    if not _has_strided_convs(model):
        return []
    return narrow_strided(conv_input_sizes(model, x))


def _has_strided_convs(model: nn.Module) -> bool:
    """Whether `model` has a strided convolution wider than 1 (what `narrow_strided` checks)."""
    return any(
        any(s > 1 and k > 1 for s, k in zip(m.stride, m.kernel_size, strict=True))
        for m in model.modules()
        if isinstance(m, _CONVS)
    )


def narrow_strided(sizes: list[tuple[str, nn.Module, tuple]]) -> list[str]:
    """`narrow_strided_convs` of the sizes `conv_input_sizes` found."""
    found = []
    for name, conv, size in sizes:
        steps = zip(size, conv.stride, conv.kernel_size, strict=True)
        if any(n < s and k > 1 for n, s, k in steps):
            dims = ("x".join(map(str, v)) for v in (size, conv.kernel_size, conv.stride))
            found.append("{}: input {}, kernel {}, stride {}".format(name, *dims))
    return found


def weight_bound_convs(
    sizes: list[tuple[str, nn.Module, tuple]], batch: int, ratio: float = WEIGHT_BOUND_RATIO
) -> list[tuple[str, nn.Module]]:
    """The 2d convolutions among `sizes` (`conv_input_sizes`) whose weights hold more than
    `ratio` times as many elements as their input in a batch of `batch` items: where a
    step's cost is the weights' (bf16 casts, oneDNN's weight reorders, the weight gradient)
    more than the arithmetic that bfloat16 speeds up. resnet18/34 at 64 px, bs 64: layer3's
    and layer4's 3x3 convolutions (4x4 and 2x2 inputs); at 224 px: none."""
    found, seen = [], set()
    for name, conv, size in sizes:
        if not isinstance(conv, nn.Conv2d) or id(conv) in seen:
            continue
        seen.add(id(conv))
        if conv.weight.numel() > ratio * batch * conv.in_channels * size[0] * size[1]:
            found.append((name, conv))
    return found


class ConvHooks:
    """On each of `convs`, a forward pre-hook (`_enter`) and a forward hook that always runs
    (`_exit`, also when the forward raises): what a subclass does around those modules'
    forward passes. `remove()` takes the hooks off."""

    def __init__(self, convs: list[nn.Module]) -> None:
        self._handles = []
        for conv in convs:
            self._handles.append(conv.register_forward_pre_hook(self._enter))
            self._handles.append(conv.register_forward_hook(self._exit, always_call=True))

    def _enter(self, conv: nn.Module, args: tuple) -> tuple | None:
        raise NotImplementedError

    def _exit(self, conv: nn.Module, args: tuple, out: torch.Tensor) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class Fp32Convs(ConvHooks):
    """Runs `convs`, in training mode (in eval mode they are left as they are), in float32
    with NCHW weights and inputs inside a CPU bfloat16 autocast,
    through a forward pre-hook (autocast off, the input cast to float32 and made contiguous)
    and a forward hook that always runs (autocast back on, also when the forward raises).
    Their outputs are float32; the layers after them cast to bf16 as autocast says. On the
    2-core Xeon with AMX of bench/README.md ("Weight-bound convolutions in float32"), bf16
    was 1.1x-1.7x slower than float32 NCHW for such layers and 0.4x-0.7x for the others.
    `remove()` takes the hooks off (the weights stay NCHW)."""

    def __init__(self, convs: list[nn.Module]) -> None:
        self._open: list[torch.autocast] = []
        for conv in convs:
            conv.to(memory_format=torch.contiguous_format)
        super().__init__(convs)

    def _enter(self, conv: nn.Module, args: tuple) -> tuple:
        if not conv.training:  # inference (the fit's validation too) stays in bf16
            return args
        ctx = torch.autocast("cpu", enabled=False)
        ctx.__enter__()
        self._open.append(ctx)
        return (args[0].float().contiguous(), *args[1:])

    def _exit(self, conv: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if conv.training:
            self._open.pop().__exit__(None, None, None)


class MixedPrecision(Callback):
    """Forward passes and the loss under torch.autocast(`dtype`) on the data's device type;
    with `scaler` (a torch.amp.GradScaler), loss scaling and the scaler's optimizer step.
    What a fit runs in float32 (below) is its training batches' arithmetic: every inference
    pass (the fit's validation, validate, get_preds, predict, a load_learner copy) runs in
    `dtype` alike, so ``learn.validate()`` gives the epoch table's row.

    dtype: torch.bfloat16 or torch.float16.
    fp32_epochs: the learner's first fp32_epochs training epochs, counted over all its fits
        (`learn.epochs_trained`), train in float32; an lr_find before them too.
    fp32_convs: in a bf16 fit on the CPU, train the weight-bound convolutions
        (`weight_bound_convs` for the fit's first batch) in float32 NCHW (`Fp32Convs`), for
        the fit; None (default): where the CPU has AMX (`amx_bf16`), where it was measured.
        Not under learn.compile() or DDP (their graphs and gradient buckets are built for the
        layout the parameters had).
    """

    order = 1000  # last: every other callback's before_step sees the step before it is taken

    def __init__(
        self,
        dtype: torch.dtype,
        scaler: torch.amp.GradScaler | None = None,
        fp32_epochs: int = 0,
        fp32_convs: bool | None = None,
    ) -> None:
        super().__init__()
        if dtype not in _NAMES:
            raise ValueError(f"dtype should be torch.bfloat16 or torch.float16, got {dtype!r}")
        if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
            raise TypeError(
                f"scaler should be a torch.amp.GradScaler or None, got {type(scaler).__name__}"
            )
        self.dtype = dtype
        self.scaler = scaler
        self.fp32_epochs = check_int("fp32_epochs", fp32_epochs, 0)
        self.fp32_fit = False  # this fit trains in float32 (narrow_strided_convs found a layer)
        self.fp32_epoch = False  # this epoch trains in float32 (one of the first fp32_epochs)
        if fp32_convs is not None and not isinstance(fp32_convs, bool):
            raise TypeError(f"fp32_convs should be True, False or None, got {fp32_convs!r}")
        self.fp32_convs = has_amx() if fp32_convs is None else fp32_convs
        self.weight_bound: list[str] = []  # the convolutions this fit runs in float32
        self._hooks: Fp32Convs | None = None
        self._checked = False

    @property
    def name(self) -> str:
        """'bf16' or 'fp16'."""
        return _NAMES[self.dtype]

    def autocast(self) -> torch.autocast:
        """The autocast context of the learner's forward passes: the fit's float32 (its
        first epochs, a fit whose bf16 weight gradients would be wrong) for training batches
        only; every inference pass, the fit's validation included, in `dtype`."""
        device_type = torch.device(self.learn.data.device).type
        enabled = not (self.learn.training and (self.fp32_fit or self.fp32_epoch))
        return torch.autocast(device_type=device_type, dtype=self.dtype, enabled=enabled)

    def before_fit(self) -> None:
        self.fp32_fit = self._checked = False
        self.weight_bound = []
        self._remove_hooks()

    def before_epoch(self) -> None:
        self.fp32_epoch = self.learn.epochs_trained < self.fp32_epochs

    def before_batch(self) -> None:
        """At the fit's first training batch, on the CPU in bf16: float32 for this fit where
        `narrow_strided` finds a layer whose weight gradient bf16 would get wrong; else,
        with `fp32_convs`, the weight-bound convolutions in float32 for this fit."""
        learn = self.learn
        if self._checked or not learn.training:
            return
        self._checked = True
        (xb,) = learn.xb
        if self.dtype != torch.bfloat16 or xb.device.type != "cpu":
            return
        fp32_convs = self.fp32_convs and learn.compiled is None and learn.ddp_model is None
        if not (fp32_convs or _has_strided_convs(learn.model)):
            return  # nothing to check: the model is not run
        sizes = conv_input_sizes(learn.model, xb)
        found = narrow_strided(sizes)
        if found:
            self.fp32_fit = True
            warn_user(
                f"bf16: this fit trains in float32: the CPU's bfloat16 convolution computes "
                f"wrong weight gradients (garbage, inf or NaN) where a strided convolution's "
                f"input is narrower than its stride, as here for items of "
                f"{'x'.join(map(str, xb.shape[2:]))} px: {'; '.join(found)}. Larger "
                f"images avoid it (fastcore_ext.callback.mixed_precision)"
            )
        elif fp32_convs:
            convs = weight_bound_convs(sizes, xb.shape[0])
            self.weight_bound = [name for name, _ in convs]
            if convs:
                self._hooks = Fp32Convs([conv for _, conv in convs])

    def _remove_hooks(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
        self._hooks = None

    def after_pred(self) -> None:
        """The loss sees float32 predictions, as fastai's MixedPrecision.after_pred makes them:
        autocast leaves ops such as log_softmax in bfloat16 on the CPU, so a loss like
        LabelSmoothingCrossEntropy would otherwise be computed (and differentiated) in bf16."""
        self.learn.pred = to_float(self.learn.pred)

    def after_fit(self) -> None:
        self.fp32_fit = self.fp32_epoch = False
        self._remove_hooks()

    def before_backward(self) -> None:
        if self.scaler is not None:
            self.learn.loss_grad = self.scaler.scale(self.learn.loss_grad)

    def before_step(self) -> None:
        """With a scaler: its step (skipped on overflowed grads) and update, then the
        learner's own step is cancelled (after_cancel_step, after_step still fire)."""
        if self.scaler is None:
            return
        learn, opt = self.learn, self.learn.opt
        position = opt.schedule_step if isinstance(opt, OptimWrapper) else None
        self.scaler.step(opt)  # a fused optimizer steps (and skips) on the device itself
        if position is not None and opt.schedule_step == position:  # the scaler skipped it
            opt.skip_step()
        self.scaler.update()
        learn._sched_step += 1  # the schedule advances on a skipped step too
        raise CancelStepException

    def __repr__(self) -> str:
        scaled = ", GradScaler" if self.scaler is not None else ""
        warm = f", fp32_epochs={self.fp32_epochs}" if self.fp32_epochs else ""
        return f"MixedPrecision({self.name}{scaled}{warm})"


def bf16(device: torch.device | str, fp32_epochs: int = 0) -> MixedPrecision:
    """The callback of `Learner.to_bf16` for data on `device` (the first fp32_epochs epochs
    in float32); ValueError on a GPU without bfloat16, a warning where bfloat16 is not native
    (`emulated_bf16_note`)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"to_bf16: the GPU of data.device ({device}) does not support bfloat16; use "
            f"learn.to_fp16() there"
        )
    note = emulated_bf16_note(device)
    if note is not None:
        warn_user(note)
    return MixedPrecision(torch.bfloat16, fp32_epochs=fp32_epochs)


def emulated_bf16_note(device: torch.device) -> str | None:
    """The warning of a bf16 choice where `device` has no native bfloat16 matrix math (a CPU
    without AVX512-BF16 or AMX-BF16, a GPU below compute capability 8.0), else None: torch
    runs bfloat16 there through conversions, many times slower than float32 (a resnet18 64 px
    step 10-29x on a 2-core AMD EPYC Zen 3, AVX2 only: bench/README.md)."""
    if device.type not in ("cpu", "cuda") or has_native_bf16(device):
        return None
    if device.type == "cpu":
        where = f"this CPU has neither of {', '.join(BF16_CPU_FLAGS)}"
    else:
        major, minor = torch.cuda.get_device_capability(device)
        where = f"this GPU's compute capability is {major}.{minor} (native from 8.0)"
    return (
        f"to_bf16: bfloat16 is not native on data.device ({device}): {where}, so torch "
        f"emulates it, many times slower than float32 (a resnet18 step 10-29x on an AVX2-only "
        f"CPU); learn.to_fp32() trains in float32 (precision 'auto' chooses it here)"
    )


def fp16(device: torch.device | str) -> MixedPrecision:
    """The callback of `Learner.to_fp16` and precision='fp16' (float16 and a GradScaler) for
    data on `device`; ValueError unless it is a CUDA device (to_fp16 only warns there)."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(
            f"precision='fp16' needs a CUDA device, data.device is {device}: float16 with loss "
            f"scaling is a GPU recipe; on the CPU use precision 'auto' (bf16 where the CPU "
            f"runs it natively), 'bf16' or 'fp32'"
        )
    return MixedPrecision(torch.float16, torch.amp.GradScaler("cuda"))


def attached(cbs: Iterable[Callback]) -> MixedPrecision | None:
    """The MixedPrecision callback among `cbs`, or None."""
    return next((cb for cb in cbs if isinstance(cb, MixedPrecision)), None)


def features_trained(learn: Learner) -> None:
    """The learner's model starts from trained features (pretrained weights, a body loaded
    from a file): no float32 epochs before bf16, where bf16's rounding costs nothing."""
    mp = attached(learn.cbs)
    if mp is not None:
        mp.fp32_epochs = 0


def use(learn: Learner, mp: MixedPrecision | None) -> None:
    """Detach the learner's MixedPrecision callback, if any, and attach `mp` (None: fp32);
    the learner's precision_note goes (the precision is now the caller's choice)."""
    learn.precision_note = None
    old = attached(learn.cbs)
    if old is not None:
        learn.remove_cb(old)
    if mp is not None:
        learn.add_cb(mp)
