"""fastai's small layers for writing models by hand (fastbook chapters 13-14): `Lambda`, a
function as a module, and `sequential`, nn.Sequential that takes functions too.

    simple_cnn = sequential(conv(1, 4), conv(4, 8), conv(8, 2, act=False), Flatten())
    sequential(nn.Linear(28 * 28, 30), F.relu, nn.Linear(30, 1))

The model head's layers (Flatten, AdaptiveConcatPool2d) are in fastcore_ext.model_builder.
A Lambda of a lambda or a local function cannot be pickled (learn.export), as in fastai: give
it a function defined at a module's top level.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["Lambda", "sequential"]


class Lambda(nn.Module):
    """A module whose forward is `func(x)` (fastai's Lambda); it has no parameters."""

    def __init__(self, func: Callable[..., Any]) -> None:
        super().__init__()
        if not callable(func) or isinstance(func, type):
            raise TypeError(f"func should be a function of the input, got {func!r}")
        self.func = func

    def forward(self, x: Any) -> Any:
        return self.func(x)

    def __repr__(self) -> str:
        return f"Lambda({getattr(self.func, '__name__', repr(self.func))})"


def sequential(*args: nn.Module | Callable[..., Any]) -> nn.Sequential:
    """nn.Sequential of `args`, each function that is not a module wrapped in a Lambda
    (fastai's `sequential`: ``sequential(nn.Linear(784, 30), F.relu, nn.Linear(30, 1))``);
    one OrderedDict of named layers (nn.Sequential's form) keeps the names."""
    if len(args) == 1 and isinstance(args[0], OrderedDict):
        named = sequential(*args[0].values())
        return nn.Sequential(OrderedDict(zip(args[0].keys(), named, strict=True)))
    layers = []
    for k, arg in enumerate(args):
        if isinstance(arg, nn.Module):
            layers.append(arg)
        elif callable(arg) and not isinstance(arg, type):
            layers.append(Lambda(arg))
        else:
            raise TypeError(
                f"sequential: argument {k} should be an nn.Module or a function, got {arg!r}"
                + (" (a class: pass an instance, e.g. nn.ReLU())" if isinstance(arg, type) else "")
            )
    return nn.Sequential(*layers)
