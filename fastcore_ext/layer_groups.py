"""Layer groups: splitting a model's parameters, freezing, per-group lr and wd values.

A splitter maps the model to its layer groups (e.g. a resnet's stem..layer2, layer3..layer4,
head); the Learner's optimizer has one param group per layer group from the start, holding
every parameter, so freezing (requires_grad off, grads None, which the optimizer skips)
never changes its structure or loses its state. `Learner.freeze_to` / `lr_range` and the
learner's checks of `wd` delegate here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "NORM_TYPES",
    "default_splitter",
    "split",
    "norm_param_ids",
    "lr_range",
    "wd_range",
    "freeze_to",
    "check_lr_value",
    "make_optimizer",
    "set_wd",
    "one_cycle_setter",
    "fine_tune_lrs",
]

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
)
"""Layers whose parameters stay trainable in a frozen layer group (fastai's train_bn)."""


def default_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """One layer group holding every parameter of the model."""
    return [list(model.parameters())]


def check_lr_value(name: str, value: Any) -> float:
    """`value` as a float; TypeError unless a number, ValueError unless finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a float, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} should be a finite number > 0, got {value}")
    return value


def _params_of(group: Any, index: int) -> Iterable[nn.Parameter]:
    """The parameters of one layer group as a splitter may return it."""
    if isinstance(group, nn.Parameter):
        yield group
    elif isinstance(group, nn.Module):
        yield from group.parameters()
    elif isinstance(group, Iterable) and not isinstance(group, (str, bytes, torch.Tensor)):
        for item in group:
            if isinstance(item, nn.Module):
                yield from item.parameters()
            elif isinstance(item, nn.Parameter):
                yield item
            else:
                raise TypeError(
                    f"splitter's layer group {index} should hold Parameters or Modules, got "
                    f"{type(item).__name__}"
                )
    else:
        raise TypeError(
            f"splitter's layer group {index} should be a Module or an iterable of Parameters, "
            f"got {type(group).__name__}"
        )


def split(
    model: nn.Module, splitter: Callable[[nn.Module], Iterable[Any]]
) -> list[list[nn.Parameter]]:
    """The layer groups `splitter(model)` returns, as lists of parameters; ValueError unless
    every parameter of the model is in exactly one group and every group holds one."""
    groups = list(splitter(model))
    if not groups:
        raise ValueError("splitter returned no layer group; expected at least one")
    out: list[list[nn.Parameter]] = []
    seen: set[int] = set()
    for i, group in enumerate(groups):
        params = list(_params_of(group, i))
        if not params:
            raise ValueError(f"splitter's layer group {i} holds no parameter")
        for p in params:
            if id(p) in seen:
                raise ValueError(
                    f"splitter put a parameter in two layer groups (again in group {i})"
                )
            seen.add(id(p))
        out.append(params)
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ValueError(
            f"splitter left {len(missing)} model parameters out of every layer group "
            f"(first: {missing[0]!r}); every parameter should be in exactly one group"
        )
    foreign = len(seen) - sum(1 for _ in model.parameters())
    if foreign:
        raise ValueError(f"splitter returned {foreign} parameters that are not in the model")
    return out


def norm_param_ids(model: nn.Module) -> set[int]:
    """ids of the parameters of the model's normalization layers (NORM_TYPES)."""
    return {
        id(p)
        for m in model.modules()
        if isinstance(m, NORM_TYPES)
        for p in m.parameters(recurse=False)
    }


def lr_range(lr: float | slice | Sequence[float], n: int, name: str = "lr") -> list[float]:
    """One learning rate for each of `n` layer groups: a float (every group), slice(a, b)
    (geometric from a to b across the groups), slice(b) (b/10 for all groups but the last, b
    for the last) or one value per group. `name` is the argument named in errors."""
    if isinstance(lr, slice):
        if lr.step is not None:
            raise ValueError(f"{name} as a slice takes no step, got {lr!r}")
        if lr.stop is None:
            raise ValueError(f"{name} as a slice needs a stop (the last group's lr), got {lr!r}")
        stop = check_lr_value(f"{name}.stop", lr.stop)
        if lr.start is None:
            return [stop / 10] * (n - 1) + [stop]
        start = check_lr_value(f"{name}.start", lr.start)
        if n == 1:
            return [stop]
        ratio = (stop / start) ** (1 / (n - 1))
        return [start * ratio**i for i in range(n - 1)] + [stop]
    if isinstance(lr, (list, tuple, np.ndarray, torch.Tensor)):
        values = [float(v) for v in (lr.tolist() if hasattr(lr, "tolist") else lr)]
        if len(values) != n:
            raise ValueError(
                f"{name} should have one value per layer group ({n}), got {len(values)}"
            )
        return [check_lr_value(f"{name}[{i}]", v) for i, v in enumerate(values)]
    return [check_lr_value(name, lr)] * n


def wd_range(wd: float | Sequence[float], n: int) -> list[float]:
    """One weight decay for each of `n` layer groups from a float or one value per group
    (each finite and >= 0)."""
    values = list(wd) if isinstance(wd, (list, tuple)) else [wd] * n
    if len(values) != n:
        raise ValueError(f"wd should be a float or one per layer group ({n}), got {len(values)}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"wd should be a float or floats, got {type(v).__name__} {v!r}")
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"wd should be a finite number >= 0, got {v}")
        out.append(float(v))
    return out


def freeze_to(groups: list[list[nn.Parameter]], n: int, keep_trainable: set[int]) -> None:
    """Freeze the layer groups before index n (negative n counts from the end) and make the
    others trainable; parameters whose id is in `keep_trainable` (normalization layers) stay
    trainable everywhere. Frozen parameters get requires_grad False and no gradient."""
    n_groups = len(groups)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n should be an int, got {type(n).__name__} {n!r}")
    if not -n_groups <= n <= n_groups:
        raise ValueError(f"n should be in [-{n_groups}, {n_groups}] (layer groups), got {n}")
    n_frozen = n if n >= 0 else n_groups + n
    for i, group in enumerate(groups):
        for p in group:
            trainable = i >= n_frozen or id(p) in keep_trainable
            p.requires_grad_(trainable)
            if not trainable:
                p.grad = None


def make_optimizer(
    opt_func: Callable[..., torch.optim.Optimizer],
    groups: list[list[nn.Parameter]],
    wd: list[float] | None,
    lr: float,
) -> torch.optim.Optimizer:
    """opt_func(param_groups, lr=lr) with one param group per layer group (and its wd when
    given); TypeError / ValueError unless it builds such a torch.optim.Optimizer."""
    param_groups: list[dict[str, Any]] = [{"params": g} for g in groups]
    if wd is not None:
        for g, value in zip(param_groups, wd, strict=True):
            g["wd"] = value
    opt = opt_func(param_groups, lr=lr)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(
            f"opt_func should build a torch.optim.Optimizer (e.g. fastcore_ext.optim.Adam), "
            f"got {type(opt).__name__}"
        )
    if len(opt.param_groups) != len(groups):
        raise ValueError(
            f"opt_func should keep one param group per layer group ({len(groups)}), "
            f"got {len(opt.param_groups)}"
        )
    return opt


def set_wd(
    opt: torch.optim.Optimizer, wd: float | Sequence[float] | None, default: list[float] | None
) -> None:
    """Set the weight decay of every param group (one per layer group) to `wd` (a float or
    one per group) or, when wd is None, to `default` (the learner's); both None: unchanged."""
    values = wd_range(wd, len(opt.param_groups)) if wd is not None else default
    if values is None:
        return
    for group, value in zip(opt.param_groups, values, strict=True):
        group["wd"] = value


def one_cycle_setter(opt: torch.optim.Optimizer, moms: Any) -> Callable[..., None]:
    """`opt.set_one_cycle`, after fit_one_cycle's first checks: ValueError unless moms holds
    3 values, TypeError unless the optimizer evaluates a one-cycle schedule itself
    (fastcore_ext.optim.Adam and SGD do)."""
    if not (isinstance(moms, (tuple, list)) and len(moms) == 3):
        raise ValueError(f"moms should be 3 floats (start, middle, end), got {moms!r}")
    setter = getattr(opt, "set_one_cycle", None)
    if setter is None:
        raise TypeError(
            f"fit_one_cycle needs an optimizer with set_one_cycle (fastcore_ext.optim.Adam "
            f"or SGD); opt_func built {type(opt).__name__}"
        )
    return setter


def fine_tune_lrs(base_lr: Any, lr_mult: Any) -> tuple[slice, slice]:
    """fastai v2's fine_tune learning rates: max_lr slice(base_lr) for the frozen epochs and
    slice(base_lr/2/lr_mult, base_lr/2) after unfreezing (base_lr, lr_mult floats > 0)."""
    base_lr = check_lr_value("base_lr", base_lr)
    lr_mult = check_lr_value("lr_mult", lr_mult)
    half = base_lr / 2
    return slice(base_lr), slice(half / lr_mult, half)
