"""fastai v2's hooks (``fastai.callback.hook``): what a module's forward pass outputs, or the
gradient of that output, kept in `.stored` (fastbook chapters 13 and 18); and the model
probes built on them, `dummy_eval`, `model_sizes`, `num_features_model` (layer 0: torch only).

    with hook_output(learn.model[0]) as h:       # the body's activations
        preds = learn.model(xb)
    acts = h.stored                               # Tensor[B, C, H, W], detached
    with hook_output(learn.model[0], grad=True) as hg:
        learn.model(xb)[0, cls].backward()        # Grad-CAM
    grad = hg.stored[0]                           # Tensor[B, C, H, W]: d(output)/d(acts)
    model_sizes(body, size=(64, 64))              # [torch.Size([1, 64, 32, 32]), ...]

Stored tensors have the dtype of the module's output, as fastai's: bfloat16 under this
library's default autocast on CPUs with native bfloat16 (see `hook_output`): call
``.float()`` on them before numpy or statistics.

As fastai's, except:
- gradient hooks (`is_forward=False`, `grad=True`) store the gradient with respect to the
  module's outputs through tensor hooks placed during the forward pass, where fastai calls
  torch's deprecated `register_backward_hook`: that one warns, and gives only part of the
  input gradients, for a module of several operations (a model's body), and torch's
  `register_full_backward_hook` fails on a model that changes an output in place afterwards
  (torchvision's resnets, `ReLU(inplace=True)`). So `hook_func` gets None for the input
  gradients (see `Hook`);
- no `gather` argument: fastai's gathers the activations of every process of a
  DistributedDataParallel run; here each process keeps its own;
- `dummy_eval` puts back each module's train/eval mode (fastai's leaves the model in eval
  mode) and draws its input from a fixed seed, not from torch's global generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from fastcore_ext.checks import check_bool, check_hw
from fastcore_ext.foundation import L

__all__ = [
    "Hook",
    "Hooks",
    "check_modules",
    "dummy_eval",
    "flatten_model",
    "has_params",
    "hook_output",
    "hook_outputs",
    "model_sizes",
    "num_features_model",
]

HookFunc = Callable[[nn.Module, Any, Any], Any]
"""hook_func(module, input, output) -> what the hook stores."""

DEFAULT_CHANNELS = 3  # dummy_eval's input channels for a model without a 2d convolution
MAX_PROBE_SIZE = 2048  # num_features_model tries sizes 32, 64, ... up to this one


def _check_module(name: str, value: object) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} should be a torch.nn.Module, got {type(value).__name__}")
    return value


def _check_hook_func(hook_func: object) -> HookFunc:
    if not callable(hook_func):
        raise TypeError(
            f"hook_func should be a callable (module, input, output) -> stored, got "
            f"{type(hook_func).__name__}"
        )
    return hook_func


def _detach(x: Any, cpu: bool) -> Any:
    """fastai's `to_detach`: every tensor in `x` (nested lists, tuples, dicts) detached and,
    with cpu, moved to the CPU; anything else as it is."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        return x.cpu() if cpu else x
    if isinstance(x, list | tuple):
        items = [_detach(o, cpu) for o in x]
        return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)  # a namedtuple
    if isinstance(x, Mapping):
        return {k: _detach(v, cpu) for k, v in x.items()}
    return x


def _tensors(x: Any) -> list[torch.Tensor]:
    """The tensors in `x` (nested lists, tuples, dicts), in order."""
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, list | tuple):
        return [t for o in x for t in _tensors(o)]
    if isinstance(x, Mapping):
        return [t for o in x.values() for t in _tensors(o)]
    return []


class Hook:
    """A hook on module `m` that stores ``hook_func(module, input, output)`` in `.stored` at
    each forward pass (None before the first). `remove()` takes it off the module (again:
    nothing); as a context manager, it is removed at the end of the block.

    is_forward: True, a forward hook: `input` is the tuple of the forward's positional
    arguments, `output` what the module returned. False, a gradient hook: at each backward
    pass through the outputs of a forward made with gradients on, `output` is the tuple of
    the gradients with respect to each tensor the module output that requires a gradient
    (None for one the backward did not reach) and `input` is None. fastai's
    (torch's deprecated register_backward_hook) passes the gradients of the last operation's
    inputs there: for a module of several operations, only some of them (module docstring).
    detach: detach every tensor of input and output before hook_func sees them (fastai's
    default). cpu: also move them to the CPU.
    fastai's `gather` (for DistributedDataParallel: the tensors of every process) is left
    out: each process stores its own.
    """

    def __init__(
        self,
        m: nn.Module,
        hook_func: HookFunc,
        is_forward: bool = True,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        _check_module("m", m)
        self.hook_func = _check_hook_func(hook_func)
        self.is_forward = check_bool("is_forward", is_forward)
        self.detach = check_bool("detach", detach)
        self.cpu = check_bool("cpu", cpu)
        self.stored: Any = None
        self.removed = False
        self.hook = m.register_forward_hook(self.hook_fn if is_forward else self._watch_grads)

    def hook_fn(self, module: nn.Module, input: Any, output: Any) -> None:
        """Apply `hook_func` to module, input, output (detached as asked) and store it."""
        if self.detach:
            input, output = _detach(input, self.cpu), _detach(output, self.cpu)
        self.stored = self.hook_func(module, input, output)

    def _watch_grads(self, module: nn.Module, args: tuple, output: Any) -> None:
        """A forward hook (returning None: the output stays): on the output tensors that take
        part in the backward, one hook that gets their gradients once all are computed."""
        outputs = [t for t in _tensors(output) if t.requires_grad]
        if outputs:
            torch.autograd.graph.register_multi_grad_hook(
                outputs, partial(self._grads_ready, module), mode="all"
            )

    def _grads_ready(self, module: nn.Module, grads: Sequence[torch.Tensor | None]) -> None:
        if not self.removed:  # a graph built before remove() may still run its backward
            self.hook_fn(module, None, tuple(grads))

    def remove(self) -> None:
        """Remove the hook from the module (a second call does nothing)."""
        if not self.removed:
            self.hook.remove()
            self.removed = True

    def __enter__(self) -> Hook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        kind = "forward" if self.is_forward else "gradient"
        state = "removed" if self.removed else "active"
        return f"Hook({kind}, {state}, stored={type(self.stored).__name__})"


def _store_output(module: nn.Module, input: Any, output: Any) -> Any:
    return output


def hook_output(
    module: nn.Module, detach: bool = True, cpu: bool = False, grad: bool = False
) -> Hook:
    """A `Hook` whose `.stored` is `module`'s output at its last forward pass: a Tensor (or
    what the module returns), detached unless detach=False, on the CPU with cpu=True.
    grad=True: the gradient with respect to that output at the last backward pass instead,
    as a tuple (one tensor per output tensor: ``.stored[0]`` for a module returning one).
    As fastai's, the stored output is the output itself, detached, not a copy: a later
    operation in place on it (the ``ReLU(inplace=True)`` after a BatchNorm in torchvision's
    resnets) changes it too; hook the module after it, or ``.clone()`` it in a hook_func.

    The stored tensor has the output's dtype, as fastai's: bfloat16 (or float16) where the
    forward ran under an autocast, which is this library's default for inference and
    training on CPUs with native bfloat16 (AMX) and in a learner with to_bf16 / to_fp16.
    Call ``.float()`` on it before statistics, numpy (which has no bfloat16) or a comparison
    with float32 values; nothing converts it for you."""
    return Hook(module, _store_output, is_forward=not grad, detach=detach, cpu=cpu)


def check_modules(name: str, ms: object) -> list[nn.Module]:
    """`ms` (an iterable of modules; an nn.Sequential / ModuleList gives its children) as a
    list, every item checked; TypeError naming `name` otherwise."""
    if isinstance(ms, nn.Module) and not isinstance(ms, Iterable):
        raise TypeError(
            f"{name} should be an iterable of modules (a list, an nn.Sequential), got the "
            f"module {type(ms).__name__}: pass [module], or use hook_output for one module"
        )
    if not isinstance(ms, Iterable) or isinstance(ms, str | bytes):
        raise TypeError(f"{name} should be an iterable of modules, got {type(ms).__name__}")
    modules = list(ms)
    for i, m in enumerate(modules):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{name}[{i}] should be a torch.nn.Module, got {type(m).__name__}")
    return modules


class Hooks:
    """A `Hook` with `hook_func` on each module of `ms` (an iterable of modules; an
    nn.Sequential gives its children), in that order. A list of Hooks: ``len(hooks)``,
    ``hooks[i]``, iteration; `.stored` the L of what each stores; `remove()` removes all;
    as a context manager, all are removed at the end of the block. Arguments as `Hook`'s."""

    def __init__(
        self,
        ms: Iterable[nn.Module],
        hook_func: HookFunc,
        is_forward: bool = True,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        modules = check_modules("ms", ms)
        _check_hook_func(hook_func)  # the arguments are checked before any hook is placed
        for name, value in (("is_forward", is_forward), ("detach", detach), ("cpu", cpu)):
            check_bool(name, value)
        self.hooks = [Hook(m, hook_func, is_forward, detach, cpu) for m in modules]

    def __getitem__(self, i: int) -> Hook:
        return self.hooks[i]

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    @property
    def stored(self) -> L:
        """What each hook stores, in the order of the modules."""
        return L(h.stored for h in self.hooks)

    def remove(self) -> None:
        """Remove every hook from its module."""
        for h in self.hooks:
            h.remove()

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Hooks({len(self.hooks)} hooks)"


def hook_outputs(
    modules: Iterable[nn.Module], detach: bool = True, cpu: bool = False, grad: bool = False
) -> Hooks:
    """`Hooks` storing the output (grad=True: the output's gradients) of each of `modules`,
    as `hook_output` does for one: bfloat16 / float16 tensors under an autocast, as fastai's;
    call ``.float()`` on them."""
    return Hooks(modules, _store_output, is_forward=not grad, detach=detach, cpu=cpu)


def has_params(m: nn.Module) -> bool:
    """True when `m` has at least one parameter (trainable or frozen), as fastai's."""
    return next(_check_module("m", m).parameters(), None) is not None


def flatten_model(m: nn.Module) -> list[nn.Module]:
    """The leaf modules of `m` (those without children), depth first in registration order.
    fastai's also lists, wrapped as modules, the parameters a module holds beside its
    children; a forward pass never calls those, so a hook on them would store nothing."""
    children = list(_check_module("m", m).children())
    return [leaf for c in children for leaf in flatten_model(c)] if children else [m]


def _in_channels(m: nn.Module) -> int:
    """Input channels of the first layer with a 4d weight (a 2d convolution), as fastai's
    `in_channels`; DEFAULT_CHANNELS where there is none."""
    for layer in flatten_model(m):
        weight = getattr(layer, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim == 4:
            return int(getattr(layer, "in_channels", weight.shape[1]))
    return DEFAULT_CHANNELS


def dummy_eval(m: nn.Module, size: int | tuple[int, int] = (64, 64)) -> Any:
    """`m`'s output, in eval mode without gradients, for a batch of one image [1, C, H, W] of
    values uniform in [-1, 1] (a fixed seed: torch's global generator is left alone), on the
    device and in the dtype of m's first floating parameter (the CPU, float32, for a model
    without one). C: the input channels of m's first 2d convolution (3 without one); size:
    (H, W), or one int for both. Each module's train/eval mode is put back afterwards."""
    _check_module("m", m)
    h, w = check_hw("size", size)
    param = next((p for p in m.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    g = torch.Generator().manual_seed(0)
    x = torch.empty(1, _in_channels(m), h, w).uniform_(-1.0, 1.0, generator=g)
    x = x.to(device=device, dtype=dtype)
    modes = [(mod, mod.training) for mod in m.modules()]
    try:
        m.eval()
        with torch.no_grad():
            return m(x)
    finally:
        for mod, training in modes:
            mod.training = training


def model_sizes(m: nn.Module, size: int | tuple[int, int] = (64, 64)) -> list[torch.Size]:
    """The output shape of each child of `m` (m itself when it has none), in order, for the
    input of `dummy_eval` (one image of `size`): ``[torch.Size([1, C, H, W]), ...]``."""
    _check_module("m", m)
    children = list(m.children()) or [m]
    with hook_outputs(children) as hooks:
        dummy_eval(m, size=size)
        shapes = []
        for i, (child, out) in enumerate(zip(children, hooks.stored, strict=True)):
            if not isinstance(out, torch.Tensor):
                what = "did not run" if out is None else f"returned {type(out).__name__}"
                raise ValueError(
                    f"model_sizes: child {i} of m ({type(child).__name__}) {what} in the "
                    f"forward pass: expected it to output a tensor"
                )
            shapes.append(out.shape)
    return shapes


def num_features_model(m: nn.Module) -> int:
    """The number of features (dim 1) of `m`'s last child's output, found with `model_sizes`
    on images of 32 pixels a side, then 64, 128... up to 2048 while the model fails on smaller
    ones (the last failure is raised)."""
    _check_module("m", m)
    sz = 32
    while True:
        try:
            return int(model_sizes(m, (sz, sz))[-1][1])
        except Exception:
            sz *= 2
            if sz > MAX_PROBE_SIZE:
                raise
