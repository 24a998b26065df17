"""fastai.torch_core's small helpers that fastbook code calls by bare name: `tensor`, `to_np`,
`to_float`, `params`, `trainable_params`, `noop` and `Module` (all in
`from fastcore_ext.vision import *`).

    targ = tensor([0, 1, 0, 1, 1, 0])        # fastbook ch. 5: an int64 tensor
    acts = tensor(1.0, 2.0, 3.0)             # several numbers at once
    to_np(preds)                              # a numpy array on the CPU
    len(trainable_params(learn.model))       # what a frozen model still trains
    L(m[0], m[1]).map(params)                 # a splitter's layer groups (fastbook ch. 15)

    class ResBlock(Module):                   # fastbook ch. 14: no super().__init__() needed
        def __init__(self, ni, nf):
            self.convs = nn.Conv2d(ni, nf, 3, padding=1)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from numbers import Number
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["Module", "noop", "params", "tensor", "to_float", "to_np", "trainable_params"]


def tensor(
    x: Any,
    *rest: Any,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    requires_grad: bool = False,
) -> torch.Tensor:
    """fastai's `tensor`: ``torch.tensor`` that also takes several values (``tensor(1, 2)``),
    a numpy array (shared, as ``torch.as_tensor``; uint16 becomes float32), and anything numpy
    can read, copied (a PIL image gives uint8 [H, W, C], a pandas Series its values). A tensor is
    returned as it is. float64 results become float32, as fastai's (numpy's and Python's
    floats are float64)."""
    if rest:
        x = (x, *rest)
    if isinstance(x, torch.Tensor):
        return x
    kwargs = {"dtype": dtype, "device": device}
    if isinstance(x, list | tuple | Number):
        res = torch.tensor(x, **kwargs)
    else:
        array = x if isinstance(x, np.ndarray) else np.array(x)  # a copy: PIL's is read-only
        if array.dtype == np.uint16:
            array = array.astype(np.float32)
        if array.dtype == object:
            raise TypeError(f"tensor: x should hold numbers, got {type(x).__name__} {x!r}")
        res = torch.as_tensor(array, **kwargs)
    if res.dtype == torch.float64 and dtype is None:
        res = res.float()
    return res.requires_grad_(requires_grad) if requires_grad else res


def map_nested(x: Any, leaf: Callable[[Any], Any]) -> Any:
    """`leaf` applied to everything in `x` that is not a list, tuple (a namedtuple stays
    one) or dict, whose structure is kept (a model's output: a tensor, or a tuple or dict
    of them)."""
    if isinstance(x, list | tuple):
        items = [map_nested(o, leaf) for o in x]
        return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)  # a namedtuple
    if isinstance(x, Mapping):
        return {k: map_nested(v, leaf) for k, v in x.items()}
    return leaf(x)


def leaves(x: Any) -> list[Any]:
    """The leaves of `x` (see `map_nested`), in order."""
    found: list[Any] = []
    map_nested(x, found.append)
    return found


def cat_nested(xs: Sequence[Any]) -> Any:
    """The outputs of several batches joined along the batch dimension: torch.cat of a list
    of tensors, or of tuples / lists / dicts of tensors of one structure, leaf by leaf (the
    predictions of a pass over a model that returns a tuple or a dict, as fastai's)."""
    first = xs[0]
    if isinstance(first, list | tuple):
        if any(not isinstance(x, list | tuple) or len(x) != len(first) for x in xs):
            raise TypeError("the model's outputs should have one structure in every batch")
        items = [cat_nested([x[i] for x in xs]) for i in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    if isinstance(first, Mapping):
        if any(not isinstance(x, Mapping) or x.keys() != first.keys() for x in xs):
            raise TypeError("the model's outputs should have one structure in every batch")
        return {k: cat_nested([x[k] for x in xs]) for k in first}
    if not all(isinstance(x, torch.Tensor) and x.dim() > 0 for x in xs):
        raise TypeError(
            "the model's outputs should be tensors of one row per item (or tuples, lists or "
            f"dicts of them), got {type(first).__name__}"
        )
    return torch.cat(list(xs))


def _np_leaf(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(
        f"to_np: x should be a tensor (or a list, tuple or dict of them), got {type(x).__name__}"
    )


def to_np(x: Any) -> Any:
    """A tensor as a numpy array on the CPU (detached; bfloat16, which numpy lacks, as
    float32); lists, tuples and dicts of tensors converted item by item; numpy arrays as they
    are."""
    return map_nested(x, _np_leaf)


def to_float(x: Any) -> Any:
    """fastai's `to_float`: the floating-point tensors in `x` (a tensor, or lists, tuples and
    dicts of them, nested) as float32; everything else as it is. What the loss of a fit under
    mixed precision sees of the model's output, also of one that returns a tuple."""
    return map_nested(
        x, lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t
    )


def trainable_params(m: nn.Module) -> list[nn.Parameter]:
    """The parameters of `m` that require a gradient (what a frozen model still trains)."""
    if not isinstance(m, nn.Module):
        raise TypeError(f"trainable_params: m should be an nn.Module, got {type(m).__name__}")
    return [p for p in m.parameters() if p.requires_grad]


def params(m: nn.Module) -> list[nn.Parameter]:
    """fastai's ``params(m)``: every parameter of `m`, as a list (a splitter's layer group)."""
    if not isinstance(m, nn.Module):
        raise TypeError(f"params: m should be an nn.Module, got {type(m).__name__}")
    return list(m.parameters())


def non_finite_tensors(m: nn.Module) -> list[str]:
    """The names of `m`'s floating-point parameters and buffers (BatchNorm statistics) that
    hold a NaN or an infinity: what a diverged fit leaves."""
    return [
        name
        for name, t in m.state_dict().items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


def noop(x: Any = None, *args: Any, **kwargs: Any) -> Any:
    """fastai's ``noop``: returns `x` unchanged (an identity where a function is expected)."""
    return x


class _PreInit(type(nn.Module)):  # type: ignore[misc]
    """Runs nn.Module.__init__ before the class's own __init__ (fastai's PrePostInitMeta)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = cls.__new__(cls)
        nn.Module.__init__(obj)
        obj.__init__(*args, **kwargs)
        return obj


class Module(nn.Module, metaclass=_PreInit):
    """fastai's ``Module``: an nn.Module whose subclasses need not call super().__init__()
    (it runs before their __init__; calling it anyway does nothing more)."""

    def __init__(self) -> None:
        pass
