"""Layer groups: splitting a model's parameters, freezing, per-group lr and wd values, and
the optimizer's param groups built from them.

A splitter maps the model to its layer groups (e.g. a resnet's stem..layer2, layer3..layer4,
head). The Learner's optimizer holds every parameter from the start, so freezing
(requires_grad off, grads None, which the optimizer skips) never changes its structure or
loses its state. Each layer group becomes one optimizer param group, or two when some of its
parameters take no weight decay (`Learner(wd_bn_bias=False)`, the default, as fastai v2:
the parameters of normalization layers and every bias, `norm_bias_param_ids`): first the
decayed ones, then the others with wd 0. Both share the layer group's lr and momentum;
`GroupMap` records which layer group each param group belongs to, and every value given per
layer group (lrs, one-cycle lr_max, wd) goes through it. `Learner.freeze_to` / `lr_range`,
the learner's checks of `wd` and the regrouping of checkpoints saved with another grouping
(`regroup_state_dict`) delegate here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from fastcore_ext.checks import int_or_none, real_or_none
from fastcore_ext.optim import OptimWrapper, slice_values
from fastcore_ext.warn import warn_user

__all__ = [
    "NORM_TYPES",
    "default_splitter",
    "split",
    "norm_param_ids",
    "norm_bias_param_ids",
    "GroupMap",
    "group_params",
    "lr_range",
    "wd_range",
    "freeze_to",
    "check_lr_value",
    "make_optimizer",
    "set_lrs",
    "set_wd",
    "regroup_state_dict",
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
"""Normalization layers, fastai's `norm_types` (GroupNorm is not one): their parameters stay
trainable in a frozen layer group (fastai's train_bn) and, with wd_bn_bias=False, take no
weight decay."""

_DECAY_KEYS = ("wd", "weight_decay")  # the weight decay of a param group: ours, torch's
T = TypeVar("T")


def default_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """One layer group holding every parameter of the model."""
    return [list(model.parameters())]


def check_lr_value(name: str, value: Any, zero: bool = False) -> float:
    """`value` as a float; TypeError unless a number, ValueError unless finite and > 0 (>= 0
    with `zero`: a learning rate of 0, as fastai's ``fit(1, 0.)`` refreshing BatchNorm
    statistics without a weight changing)."""
    number = real_or_none(value)
    if number is None:
        raise TypeError(f"{name} should be a float, got {type(value).__name__} {value!r}")
    value = number
    if not (math.isfinite(value) and (value > 0 or (zero and value == 0))):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} should be a finite number {bound}, got {value}")
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


def norm_bias_param_ids(model: nn.Module) -> set[int]:
    """ids of fastai v2's `norm_bias_params(model)`, the parameters that wd_bn_bias=False
    keeps out of weight decay: every parameter of a normalization layer (NORM_TYPES) and the
    `bias` of every other module that has one (Conv, Linear, ...)."""
    out: set[int] = set()
    for m in model.modules():
        if isinstance(m, NORM_TYPES):
            out.update(id(p) for p in m.parameters())
        elif isinstance(getattr(m, "bias", None), torch.Tensor):
            out.add(id(m.bias))
    return out


@dataclass(frozen=True)
class GroupMap:
    """Where the optimizer's param groups sit: param group g holds parameters of layer group
    `layer[g]` and takes weight decay when `decay[g]` (else its wd is 0). The param groups of
    a layer group are adjacent, the decayed one first; layer groups come in order."""

    layer: tuple[int, ...]
    decay: tuple[bool, ...]

    @classmethod
    def of(cls, groups: list[list[nn.Parameter]], no_wd: set[int]) -> GroupMap:
        """One param group per layer group, or two where the layer group holds parameters
        whose id is in `no_wd` and others: the others first (decayed), then those."""
        layer, decay = [], []
        for i, group in enumerate(groups):
            kinds = {id(p) not in no_wd for p in group}
            for d in (True, False):
                if d in kinds:
                    layer.append(i)
                    decay.append(d)
        return cls(tuple(layer), tuple(decay))

    @classmethod
    def from_dict(cls, value: Any) -> GroupMap:
        """The map `to_dict` wrote; ValueError unless it is one."""
        ok = isinstance(value, dict) and set(value) == {"layer", "decay"}
        layer, decay = (list(value["layer"]), list(value["decay"])) if ok else ([], [])
        ok = ok and len(layer) == len(decay) > 0
        ok = ok and all(isinstance(i, int) and not isinstance(i, bool) for i in layer)
        ok = ok and all(isinstance(d, bool) for d in decay)
        if not (ok and sorted(set(layer)) == list(range(layer[-1] + 1)) and layer == sorted(layer)):
            raise ValueError(f"opt_groups should be a GroupMap.to_dict(), got {value!r}")
        return cls(tuple(layer), tuple(decay))

    def to_dict(self) -> dict[str, list]:
        """{'layer': [...], 'decay': [...]}: plain lists, for a checkpoint."""
        return {"layer": list(self.layer), "decay": list(self.decay)}

    @property
    def n_layers(self) -> int:
        """The number of layer groups."""
        return self.layer[-1] + 1

    def expand(self, per_layer: Sequence[T]) -> list[T]:
        """One value per param group from one per layer group."""
        if len(per_layer) != self.n_layers:
            raise ValueError(
                f"expected one value per layer group ({self.n_layers}), got {len(per_layer)}"
            )
        return [per_layer[i] for i in self.layer]

    def per_layer(self, per_group: Sequence[T]) -> list[T]:
        """One value per layer group (its first param group's) from one per param group."""
        first: dict[int, T] = {}
        for i, value in zip(self.layer, per_group, strict=True):
            first.setdefault(i, value)
        return list(first.values())


def group_params(
    groups: list[list[nn.Parameter]], group_map: GroupMap, norm_bias: set[int]
) -> list[list[nn.Parameter]]:
    """The parameters of each param group of `group_map`, in order: a layer group that has a
    param group without decay is split into its parameters outside `norm_bias` (decayed) and
    those in it; a layer group with a single param group keeps all its parameters."""
    split = {i for i, d in zip(group_map.layer, group_map.decay, strict=True) if not d}
    return [
        [p for p in groups[i] if i not in split or (id(p) not in norm_bias) == d]
        for i, d in zip(group_map.layer, group_map.decay, strict=True)
    ]


def lr_range(
    lr: float | slice | Sequence[float], n: int, name: str = "lr", zero: bool = True
) -> list[float]:
    """One learning rate for each of `n` layer groups: a float (every group), slice(a, b)
    (geometric from a to b across the groups), slice(b) (b/10 for all groups but the last, b
    for the last) or one value per group (a list of one: every group, as fastai's listify /
    set_hyper spread it); 0 is a learning rate (unless `zero` is False), except in a slice
    (geometric). `name` is the argument named in errors."""
    if isinstance(lr, slice):
        if lr.step is not None:
            raise ValueError(f"{name} as a slice takes no step, got {lr!r}")
        if lr.stop is None:
            raise ValueError(f"{name} as a slice needs a stop (the last group's lr), got {lr!r}")
        stop = check_lr_value(f"{name}.stop", lr.stop)
        start = None if lr.start is None else check_lr_value(f"{name}.start", lr.start)
        if start is not None and start > stop and n > 1:
            warn_user(
                f"{name}: slice({start:g}, {stop:g}) goes down, so the first layer group gets "
                f"{start:g} and the last (the head) {stop:g}: the reverse of discriminative "
                f"learning rates (early layers learn slowest); slice({stop:g}, {start:g}) "
                "gives the head the highest"
            )
        return slice_values(start, stop, n)
    if isinstance(lr, (np.ndarray, torch.Tensor)) and np.prod(lr.shape, dtype=np.int64) == 1:
        return [check_lr_value(name, lr.item(), zero=zero)] * n  # one number: every group
    if isinstance(lr, (list, tuple, np.ndarray, torch.Tensor)):
        values = list(lr.tolist() if hasattr(lr, "tolist") else lr)
        fields = getattr(lr, "_fields", None)  # lr_find's suggestions: one lr per method
        if fields is not None and len(values) > 1:
            shown = ", ".join(f"{k}={v:.3g}" for k, v in zip(fields, values, strict=True))
            raise ValueError(
                f"{name}: got lr_find's suggestions ({shown}), one learning rate per method, "
                f"not one per layer group; pass one of them, e.g. {name}="
                f"learn.lr_find().{fields[0]} (or slice(lr / 100, lr) for discriminative rates)"
            )
        if len(values) == 1:
            return [check_lr_value(f"{name}[0]", values[0], zero=zero)] * n
        if len(values) != n:
            raise ValueError(
                f"{name} should have one value per layer group ({n}), got {len(values)}"
            )
        return [check_lr_value(f"{name}[{i}]", v, zero=zero) for i, v in enumerate(values)]
    return [check_lr_value(name, lr, zero=zero)] * n


def wd_range(wd: float | Sequence[float], n: int) -> list[float]:
    """One weight decay for each of `n` layer groups from a float or one value per group
    (each finite and >= 0)."""
    values = list(wd) if isinstance(wd, (list, tuple)) else [wd] * n
    if len(values) != n:
        raise ValueError(f"wd should be a float or one per layer group ({n}), got {len(values)}")
    out = []
    for v in values:
        number = real_or_none(v)
        if number is None:
            raise TypeError(f"wd should be a float or floats, got {type(v).__name__} {v!r}")
        if not (math.isfinite(number) and number >= 0):
            raise ValueError(f"wd should be a finite number >= 0, got {number}")
        out.append(number)
    return out


def freeze_to(
    groups: list[list[nn.Parameter]],
    n: int,
    keep_trainable: set[int],
    leave: set[int] | frozenset[int] = frozenset(),
) -> set[int]:
    """Freeze the layer groups before index n (negative n counts from the end) and make the
    others trainable; parameters whose id is in `keep_trainable` (normalization layers) stay
    trainable everywhere, those in `leave` keep their requires_grad as it is. Frozen
    parameters get requires_grad False and no gradient. Returns the ids of those it froze."""
    n_groups = len(groups)
    number = int_or_none(n)
    if number is None:
        raise TypeError(f"n should be an int, got {type(n).__name__} {n!r}")
    n = number
    if not -n_groups <= n <= n_groups:
        raise ValueError(f"n should be in [-{n_groups}, {n_groups}] (layer groups), got {n}")
    n_frozen = n if n >= 0 else n_groups + n
    frozen: set[int] = set()
    for i, group in enumerate(groups):
        for p in group:
            if id(p) in leave:
                continue
            trainable = i >= n_frozen or id(p) in keep_trainable
            p.requires_grad_(trainable)
            if not trainable:
                p.grad = None
                frozen.add(id(p))
    return frozen


def make_optimizer(
    opt_func: Callable[..., torch.optim.Optimizer],
    groups: list[list[nn.Parameter]],
    wd: list[float] | None,
    lr: float,
    no_wd: set[int],
) -> tuple[torch.optim.Optimizer, GroupMap]:
    """opt_func(param_groups, lr=lr) with the param groups of `GroupMap.of(groups, no_wd)`,
    and that map: the decayed groups get their layer group's `wd` when given (else the
    optimizer's default), the others 0 (`set_wd`: ours 'wd', a torch optimizer's
    'weight_decay'). A torch optimizer comes wrapped in `optim.OptimWrapper` (its one-cycle
    schedule evaluated on the host). TypeError / ValueError unless it builds a
    torch.optim.Optimizer keeping these groups."""
    group_map = GroupMap.of(groups, no_wd)
    param_groups: list[dict[str, Any]] = [
        {"params": ps} for ps in group_params(groups, group_map, no_wd)
    ]
    opt = opt_func(param_groups, lr=lr)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(
            f"opt_func should build a torch.optim.Optimizer (e.g. fastcore_ext.optim.Adam), "
            f"got {type(opt).__name__}"
        )
    if not hasattr(opt, "set_one_cycle"):  # a torch optimizer: one-cycle schedules on the host
        opt = OptimWrapper.of(opt)
    if len(opt.param_groups) != len(param_groups):
        raise ValueError(
            f"opt_func should keep the param groups it is given ({len(param_groups)}: one or "
            f"two per layer group), got {len(opt.param_groups)}"
        )
    _write_wd(opt, group_map, wd)
    opt.group_map = group_map
    return opt, group_map


def _write_wd(
    opt: torch.optim.Optimizer, group_map: GroupMap, values: Sequence[float] | None
) -> None:
    """Each param group's weight decay, under the key its optimizer reads ('wd' for this
    library's, 'weight_decay' for torch's): its layer group's value in `values` (None: the
    optimizer's own, unchanged) for a decayed group, 0 for the others."""
    expanded = [None] * len(opt.param_groups) if values is None else group_map.expand(values)
    for group, value, decay in zip(opt.param_groups, expanded, group_map.decay, strict=True):
        for key in _DECAY_KEYS:
            if key in group and (value is not None or not decay):
                group[key] = value if decay else 0.0


def set_lrs(opt: torch.optim.Optimizer, group_map: GroupMap, lrs: Sequence[float]) -> None:
    """Set the lr of every param group to its layer group's value in `lrs`."""
    for group, value in zip(opt.param_groups, group_map.expand(lrs), strict=True):
        group["lr"] = value


def set_wd(
    opt: torch.optim.Optimizer,
    group_map: GroupMap,
    wd: float | Sequence[float] | None,
    default: list[float] | None,
) -> None:
    """Set the weight decay of every decayed param group to `wd` (a float or one per layer
    group) or, when wd is None, to `default` (the learner's); both None: unchanged. Param
    groups without decay keep wd 0."""
    values = wd_range(wd, group_map.n_layers) if wd is not None else default
    if values is not None:
        _write_wd(opt, group_map, values)


def regroup_state_dict(
    state: dict[str, Any],
    saved: dict[str, list] | None,
    group_map: GroupMap,
    groups: list[list[nn.Parameter]],
    norm_bias: set[int],
    current: list[dict[str, Any]],
) -> dict[str, Any]:
    """`state`, an optimizer state_dict saved with the param groups `saved` (the saving
    learner's `GroupMap.to_dict()`; None: a file from before wd_bn_bias, one param group per
    layer group), rearranged for the param groups of `group_map` over the same layer groups
    (`norm_bias`: the model's `norm_bias_param_ids`). Each parameter keeps its state; each
    param group takes its layer group's saved hyperparameters, with weight decay 0 if it has
    none, else the saved decayed group's, else (none was saved for that layer group) its own
    in `current` (the optimizer's param groups now). Returned unchanged when the groupings
    are the same; ValueError naming what differs when the file's groups do not fit."""
    saved_groups = state.get("param_groups")
    if not isinstance(saved_groups, list) or not saved_groups:
        raise ValueError("the optimizer state should have a non-empty 'param_groups' list")
    old = (
        GroupMap(tuple(range(len(saved_groups))), (True,) * len(saved_groups))
        if saved is None
        else GroupMap.from_dict(saved)
    )
    if old == group_map:
        return state
    if len(old.layer) != len(saved_groups):
        raise ValueError(
            f"opt_groups describes {len(old.layer)} param groups, the optimizer state has "
            f"{len(saved_groups)}"
        )
    if old.n_layers != group_map.n_layers:
        raise ValueError(
            f"it was saved for {old.n_layers} layer groups ({len(saved_groups)} param "
            f"groups), this learner has {group_map.n_layers}"
        )
    old_params = group_params(groups, old, norm_bias)
    for g, (sg, ps) in enumerate(zip(saved_groups, old_params, strict=True)):
        if len(sg["params"]) != len(ps):
            kind = "decayed" if old.decay[g] else "not decayed"
            raise ValueError(
                f"its param group {g} holds {len(sg['params'])} params, layer group "
                f"{old.layer[g]}'s {kind} params here number {len(ps)}"
            )
    by_param = {
        id(p): state["state"][sid]
        for sg, ps in zip(saved_groups, old_params, strict=True)
        for sid, p in zip(sg["params"], ps, strict=True)
        if sid in state["state"]
    }
    first: dict[int, dict[str, Any]] = {}
    decayed: dict[int, dict[str, Any]] = {}
    for sg, i, d in zip(saved_groups, old.layer, old.decay, strict=True):
        first.setdefault(i, sg)
        if d:
            decayed.setdefault(i, sg)
    new_groups, new_state = [], {}
    new_params = group_params(groups, group_map, norm_bias)
    sids = itertools.count()  # a state_dict numbers the params across its groups
    for g, (ps, i, d) in enumerate(zip(new_params, group_map.layer, group_map.decay, strict=True)):
        hypers = {k: v for k, v in first[i].items() if k not in ("params", "param_names")}
        source = decayed.get(i, current[g])
        for key in _DECAY_KEYS:
            if key in hypers:
                hypers[key] = source.get(key, hypers[key]) if d else 0.0
        ids = [next(sids) for _ in ps]
        new_groups.append({**hypers, "params": ids})
        for sid, p in zip(ids, ps, strict=True):
            if id(p) in by_param:
                new_state[sid] = by_param[id(p)]
    out = {**state, "param_groups": new_groups, "state": new_state}
    one_cycle = state.get("one_cycle")
    if one_cycle is not None:
        lr_max = list(one_cycle["lr_max"])
        if len(lr_max) != len(saved_groups):
            raise ValueError(
                f"its one_cycle has {len(lr_max)} lr_max values for {len(saved_groups)} "
                f"param groups"
            )
        out["one_cycle"] = {**one_cycle, "lr_max": group_map.expand(old.per_layer(lr_max))}
    return out


def one_cycle_setter(opt: torch.optim.Optimizer, moms: Any) -> Callable[..., None]:
    """`opt.set_one_cycle`, after fit_one_cycle's first checks: ValueError unless moms holds
    3 values, TypeError unless the optimizer evaluates a one-cycle schedule itself
    (fastcore_ext.optim.Adam and SGD do)."""
    if not (isinstance(moms, (tuple, list)) and len(moms) == 3):
        raise ValueError(
            f"moms should be 3 floats (start, middle, end), or fastai v1's 2 (start and end, "
            f"middle), got {moms!r}"
        )
    setter = getattr(opt, "set_one_cycle", None)
    if setter is None:
        raise TypeError(
            f"a one-cycle schedule (fit_one_cycle, and fit_flat_cos, fine_tune and fit_sgdr, "
            f"which run one) needs an optimizer with set_one_cycle (fastcore_ext.optim.Adam or "
            f"SGD, or a torch optimizer in optim.OptimWrapper, as the learner wraps one that "
            f"opt_func builds); learn.opt is a bare {type(opt).__name__}: set "
            f"learn.opt = OptimWrapper.of(learn.opt), or train with fit(n_epoch, lr)"
        )
    return setter


def fine_tune_lrs(base_lr: Any, lr_mult: Any) -> tuple[slice, slice]:
    """fastai v2's fine_tune learning rates: max_lr slice(base_lr) for the frozen epochs and
    slice(base_lr/2/lr_mult, base_lr/2) after unfreezing (base_lr, lr_mult floats > 0)."""
    base_lr = check_lr_value("base_lr", base_lr)
    lr_mult = check_lr_value("lr_mult", lr_mult)
    half = base_lr / 2
    return slice(base_lr), slice(half / lr_mult, half)
