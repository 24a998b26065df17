"""Checks of user input shared by the public wrappers (layer 0: imports only torch).

Every check raises `TypeError` for a value of the wrong kind and `ValueError` for a value of
the right kind out of its range, with one spelling: "<name> should be ..., got ...". The C++
guards of the same rules (csrc/augment_normalize.h, csrc/fused_optim.cpp) use the same words,
so a wrong call reads the same through `fastcore_ext.ops` and through `torch.ops.fastcore_ext`.
Numbers in messages use the `g` format, as C++ streams print them (0.2, 1e-07, nan, inf).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from numbers import Integral, Real
from typing import NoReturn

import torch

__all__ = [
    "NotOffered",
    "alternatives",
    "check_bool",
    "check_choice",
    "check_cpu_generator",
    "check_hw",
    "check_int",
    "check_number",
    "check_per_channel",
    "check_positive_int",
    "check_prob",
    "check_real",
    "check_tensor",
    "int_or_none",
    "real_or_none",
    "short_repr",
]


def alternatives(choices: Sequence[str]) -> str:
    """ "'a' or 'b'", "'a', 'b' or 'c'": the choices as a message names them."""
    quoted = [f"'{c}'" for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def short_repr(value: object) -> str:
    """A one-line repr of at most 80 characters, for messages (a DataFrame row's or a
    tensor's repr is several lines)."""
    r = " ".join(repr(value).split())
    return r if len(r) <= 80 else r[:77] + "..."


def int_or_none(value: object) -> int | None:
    """value as a Python int (a Python or numpy integer, a one-element integer tensor), None
    for anything else (bools and boolean tensors included)."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def real_or_none(value: object) -> float | None:
    """value as a Python float (Python, numpy and one-element real torch numbers: int or
    floating), None for anything else (bool, complex, boolean tensors included); finiteness
    is the caller's rule."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex():
            return None
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    return float(value)


def _kind(value: object) -> str:
    """How a message names a received value: its type and repr."""
    return f"{type(value).__name__} {value!r}"


def check_real(name: str, value: object) -> float:
    """A finite real number (not a bool; numpy scalars and one-element tensors too) as a
    Python float."""
    number = real_or_none(value)
    if number is None:
        raise TypeError(f"{name} should be a real number, got {_kind(value)}")
    value = number
    if not math.isfinite(value):
        raise ValueError(f"{name} should be finite, got {value:g}")
    return value


def check_prob(name: str, value: object) -> float:
    """A probability in [0, 1] as a float."""
    value = check_real(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} should be a probability in [0, 1], got {value:g}")
    return value


def check_number(name: str, value: object, low: float, high: float | None = None) -> float:
    """A number in [low, high) (high None: finite and >= low) as a Python float; numpy
    scalars and one-element tensors are read as their value."""
    number = real_or_none(value)
    if number is None:
        raise TypeError(f"{name} should be a number, got {type(value).__name__}")
    value = number
    if high is None:
        if not (math.isfinite(value) and value >= low):
            raise ValueError(f"{name} should be a finite number >= {low:g}, got {value:g}")
    elif not low <= value < high:
        raise ValueError(f"{name} should be in [{low:g}, {high:g}), got {value:g}")
    return value


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be a bool, got {_kind(value)}")
    return value


def check_int(name: str, value: object, minimum: int, rule: str | None = None) -> int:
    """An integer (not a bool; Python, numpy or a 0-dim integer tensor) >= minimum, as a
    Python int; `rule` words the minimum in the message (default '>= minimum')."""
    number = int_or_none(value)
    if number is None:
        raise TypeError(f"{name} should be an int, got {_kind(value)}")
    if number < minimum:
        raise ValueError(f"{name} should be {rule or f'>= {minimum}'}, got {number}")
    return number


def check_positive_int(name: str, value: object) -> int:
    """A Python or numpy integer >= 1 (not a bool) as a Python int; ValueError naming `name`
    otherwise."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def check_hw(name: str, value: object) -> tuple[int, int]:
    """An int n (meaning (n, n)) or a pair (height, width) of ints, both positive -> (h, w)."""
    one = int_or_none(value)
    if one is not None:
        hw = (one, one)
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and None not in map(int_or_none, value)
    ):
        hw = (int_or_none(value[0]), int_or_none(value[1]))
    else:
        raise TypeError(f"{name} should be an int or a pair (height, width) of ints, got {value!r}")
    if hw[0] <= 0 or hw[1] <= 0:
        raise ValueError(f"{name} should be positive, got ({hw[0]}, {hw[1]})")
    return hw


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} should be {alternatives(choices)}, got {value!r}")
    return value


def check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} should be a torch.Tensor, got {type(value).__name__}")
    return value


def check_per_channel(name: str, values: object, channels: int) -> list[float]:
    """One float per channel (a sequence or a 1d tensor) as a list; finiteness is the
    caller's rule."""
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise TypeError(f"{name} should be a sequence of {channels} floats, got {values!r}")
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} should be a sequence of {channels} floats, got {values!r}"
        ) from None
    if len(out) != channels:
        raise ValueError(f"{name} should have one value per channel ({channels}), got {len(out)}")
    return out


def check_cpu_generator(name: str, value: object) -> torch.Generator:
    """A torch.Generator on the CPU (random parameters are drawn there)."""
    if not isinstance(value, torch.Generator):
        raise TypeError(
            f"{name} should be a torch.Generator on the CPU (e.g. epoch_generator(seed, epoch)), "
            f"got {type(value).__name__}"
        )
    if value.device.type != "cpu":
        raise ValueError(
            f"{name} should live on the CPU (parameters are drawn there), got {value.device}"
        )
    return value


class NotOffered:
    """A fastai name this library does not offer (e.g. a single augmentation transform):
    calling it raises a ValueError that says so and what to use instead."""

    def __init__(self, name: str, instead: str) -> None:
        self.__name__ = self.name = name
        self.instead = instead

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        raise ValueError(f"{self.name}: fastai's {self.name} is not offered: {self.instead}")

    def __repr__(self) -> str:
        return f"NotOffered({self.name!r})"
