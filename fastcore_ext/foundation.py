"""`L`, fastcore's list with the methods fastbook uses on file lists, and `first`.

    fns = get_image_files(path)
    failed = verify_images(fns)
    failed.map(Path.unlink)          # fastbook ch. 2
    fns.filter(lambda f: f.suffix == ".png").attrgot("name")

`L` is a real `list` subclass, so whatever takes a list takes it and it equals the list of
the same items (`L([1, 2]) == [1, 2]`). What it adds follows fastcore.foundation.L:
`map`, `filter`, `attrgot`, `itemgot`, `sorted`, `unique`, `shuffle`, indexing by a list
of indices or a bool mask (`fns[[0, 2]]`, `fns[mask]`), and a slice, `+`, `*` and `copy`
that stay `L`s. Its repr is fastbook's: ``(#3) [a, b, c]`` (the first 10 items).
"""

from __future__ import annotations

import operator
import random
import re
from collections.abc import Callable, Iterable
from typing import Any, SupportsIndex, TypeVar, overload

import numpy as np
import torch

__all__ = ["L", "class2attr", "first"]

T = TypeVar("T")

REPR_ITEMS = 10  # items shown by repr (fastbook's `(#N) [...]`)
_MISSING = object()


def class2attr(obj: object, suffix: str) -> str:
    """fastcore's: the snake-case name of `obj`'s class without a final `suffix` ('Callback',
    'Metric'): ShowGraphCallback -> 'show_graph', CountCB -> 'count_cb', ConfusionMetric ->
    'confusion'; the class `suffix` itself -> suffix in lower case."""
    cls = type(obj).__name__
    if cls.endswith(suffix) and cls != suffix:
        cls = cls[: -len(suffix)]
    words = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", words).lower()


def _as_items(items: Any, rest: tuple[Any, ...]) -> list[Any]:
    """fastcore's listify: with `rest`, every argument is one item (``L(1, 2, 3)``, and
    ``L([1, 2], [3])`` holds two lists, as fastai's splitters build their groups); else None
    -> [], a str / bytes / dict / non-iterable -> [items], any other iterable -> its items."""
    if rest:
        return [items, *rest]
    if items is None:
        out: list[Any] = []
    elif isinstance(items, str | bytes | dict) or not isinstance(items, Iterable):
        out = [items]
    else:
        out = list(items)
    return out


def _mask_or_indices(idx: Any, n: int) -> list[int]:
    """A list / array / tensor of indices, or of booleans (a mask of length n), as indices."""
    values = idx.tolist() if isinstance(idx, np.ndarray | torch.Tensor) else list(idx)
    if values and all(isinstance(v, bool | np.bool_) for v in values):
        if len(values) != n:
            raise IndexError(
                f"a boolean mask should have one value per item ({n}), got {len(values)}"
            )
        return [i for i, keep in enumerate(values) if keep]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, SupportsIndex):
            raise TypeError(
                f"L indices should be ints or a boolean mask, got {type(v).__name__} {v!r}"
            )
        out.append(operator.index(v))
    return out


def _nested_attr(o: Any, name: str, default: Any) -> Any:
    """getattr along a dotted name ('parent.name'), `default` where an attribute is missing."""
    for part in name.split("."):
        o = getattr(o, part, _MISSING)
        if o is _MISSING:
            return default
    return o


class L(list):
    """A list with fastcore's L methods (see the module docstring). Every method that makes a
    new collection returns an L; the list itself is never changed by them."""

    def __init__(self, items: Any = None, *rest: Any) -> None:
        super().__init__(_as_items(items, rest))

    @overload
    def __getitem__(self, idx: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, idx: slice | Iterable[Any]) -> L: ...
    def __getitem__(self, idx: Any) -> Any:
        """An item for an int (or a 0-dim array / tensor); an L for a slice, a list (array,
        tensor) of indices or a boolean mask of len(self) values."""
        if isinstance(idx, slice):
            return type(self)(super().__getitem__(idx))
        if isinstance(idx, np.ndarray | torch.Tensor):
            if idx.ndim == 0:
                return super().__getitem__(operator.index(idx.item()))
        elif isinstance(idx, SupportsIndex):
            return super().__getitem__(idx)
        if isinstance(idx, Iterable) and not isinstance(idx, str | bytes):
            items = [super(L, self).__getitem__(i) for i in _mask_or_indices(idx, len(self))]
            return type(self)(items)
        raise TypeError(
            f"L indices should be an int, a slice, a list of ints or a boolean mask, got "
            f"{type(idx).__name__} {idx!r}"
        )

    def __repr__(self) -> str:
        shown = ", ".join(repr(o) for o in list.__getitem__(self, slice(REPR_ITEMS)))
        more = ", ..." if len(self) > REPR_ITEMS else ""
        return f"(#{len(self)}) [{shown}{more}]"

    def __add__(self, other: Iterable[Any]) -> L:  # type: ignore[override]
        return type(self)([*self, *_as_items(other, ())])

    def __radd__(self, other: Iterable[Any]) -> L:
        return type(self)([*_as_items(other, ()), *self])

    def __mul__(self, n: SupportsIndex) -> L:
        return type(self)(list.__mul__(self, n))

    __rmul__ = __mul__

    def copy(self) -> L:
        """A shallow copy, an L."""
        return type(self)(self)

    def map(self, f: Callable[..., Any] | str | Any, *args: Any, **kwargs: Any) -> L:
        """`f(item, *args, **kwargs)` for each item. As fastcore's: a str `f` is a format
        string (``f.format(item)``), anything else not callable is indexed (``f[item]``, e.g.
        a dict)."""
        if callable(f):
            return type(self)(f(o, *args, **kwargs) for o in self)
        if args or kwargs:
            raise TypeError(
                f"map: args and kwargs go to a callable f, got {type(f).__name__} {f!r}"
            )
        if isinstance(f, str):
            return type(self)(f.format(o) for o in self)
        if hasattr(f, "__getitem__"):
            return type(self)(f[o] for o in self)
        raise TypeError(
            f"map: f should be a callable, a format str or something indexable, got "
            f"{type(f).__name__} {f!r}"
        )

    def filter(self, f: Callable[..., Any] | None = None, negate: bool = False, **kwargs: Any) -> L:
        """The items for which `f(item, **kwargs)` is true (false with negate=True); f None:
        the true items (fastcore's default)."""
        if f is None:
            f = bool
        elif not callable(f):
            raise TypeError(f"filter: f should be a callable or None, got {type(f).__name__}")
        if not isinstance(negate, bool):
            raise TypeError(f"filter: negate should be a bool, got {negate!r}")
        return type(self)(o for o in self if bool(f(o, **kwargs)) != negate)

    def attrgot(self, k: str, default: Any = None) -> L:
        """Attribute `k` of each item (a dotted name goes down: 'parent.name'), `default`
        where it is missing; for dict items, the value of key `k`."""
        if not isinstance(k, str):
            raise TypeError(f"attrgot: k should be an attribute name (str), got {k!r}")
        return type(self)(
            o.get(k, default) if isinstance(o, dict) else _nested_attr(o, k, default) for o in self
        )

    def itemgot(self, *idxs: Any) -> L:
        """Item `idx` of each item (``o[idx]``); several idxs go down one after the other."""
        out = self
        for idx in idxs:
            out = type(self)(o[idx] for o in out)
        return out

    def sorted(
        self, key: Callable[[Any], Any] | str | int | None = None, reverse: bool = False
    ) -> L:
        """A sorted L. key: a function, an attribute name (str: ``getattr(o, key, 0)``, as
        fastcore) or an index (int: ``o[key]``), or None for the items themselves."""
        if isinstance(key, str):
            name = key
            key = lambda o: getattr(o, name, 0)  # noqa: E731
        elif isinstance(key, int) and not isinstance(key, bool):
            key = operator.itemgetter(key)
        elif key is not None and not callable(key):
            raise TypeError(
                f"sorted: key should be a callable, an attribute name, an index or None, got "
                f"{key!r}"
            )
        return type(self)(sorted(self, key=key, reverse=reverse))

    def unique(self, sort: bool = False) -> L:
        """The distinct items in the order they first appear (sorted with sort=True)."""
        out = list(dict.fromkeys(self))
        return type(self)(sorted(out) if sort else out)

    def shuffle(self) -> L:
        """The items in a random order (Python's `random`, seeded by set_seed), as a new L."""
        out = list(self)
        random.shuffle(out)
        return type(self)(out)

    def __setitem__(self, idx: Any, value: Any) -> None:
        """As a list for an int or a slice; as fastcore's for indices or a bool mask
        (``l[[0, 2]] = [a, b]``), a value that is not iterable set at each of them."""
        if isinstance(idx, np.ndarray | torch.Tensor) and idx.ndim == 0:
            idx = operator.index(idx.item())
        if isinstance(idx, slice) or (
            isinstance(idx, SupportsIndex) and not isinstance(idx, np.ndarray | torch.Tensor)
        ):
            list.__setitem__(self, idx, value)
            return
        where = _mask_or_indices(idx, len(self))
        values = value if isinstance(value, Iterable) and not isinstance(value, str) else None
        values = [value] * len(where) if values is None else list(values)
        if len(values) != len(where):
            raise ValueError(f"L: {len(where)} indices but {len(values)} values")
        for i, v in zip(where, values, strict=True):
            list.__setitem__(self, i, v)

    def enumerate(self) -> L:
        """(index, item) pairs, an L."""
        return type(self)(enumerate(self))

    def zip(self) -> L:
        """``zip(*items)``, an L of tuples."""
        return type(self)(zip(*self, strict=False))

    def sum(self) -> Any:
        """The sum of the items (0 for none)."""
        return sum(self, 0)

    def concat(self) -> L:
        """The items' items, one L (a non-iterable item counts as one)."""
        return type(self)(o for item in self for o in _as_items(item, ()))

    def argwhere(self, f: Callable[..., Any], negate: bool = False, **kwargs: Any) -> L:
        """The indices of the items `filter` keeps."""
        return type(self)(i for i, o in enumerate(self) if bool(f(o, **kwargs)) != negate)

    def map_dict(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[Any, Any]:
        """{item: f(item, *args, **kwargs)}."""
        return {o: f(o, *args, **kwargs) for o in self}


def first(x: Iterable[T], f: Callable[..., Any] | None = None, negate: bool = False) -> T | None:
    """The first element of `x` (a list, a DataLoader: fastbook's ``first(dls.train)``), or
    the first for which `f` is true (false with negate=True); None when there is none."""
    it = iter(x)
    if f is not None:
        it = (o for o in it if bool(f(o)) != negate)
    return next(it, None)
