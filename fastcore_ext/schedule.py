"""Training schedules and learning-rate-finder suggestions: pure functions of progress.

- `one_cycle(pos, lr_max, ...)`: the one-cycle lr and momentum at position `pos` in [0, 1]
  (`pos = k / total_steps` for the k-th step, k from 0). The fused optimizers evaluate the same
  closed form on the device (`csrc/fused_optim.h: group_lr_mom`); the Recorder uses this one.
- `exp_sweep(start_lr, end_lr, num_it)`: the lr_find sweep, fastai v2's exact form
  `lr_i = start_lr * (end_lr / start_lr) ** (i / num_it)` for i = 0 .. num_it - 1 (so the last
  lr is one ratio step short of end_lr, as in fastai's `SchedExp` at `train_iter / num_it`).
- `valley`, `steep`, `minimum`, `slide`, `suggest_lrs`: fastai v2's lr_find suggestions,
  computed from the recorded (lr, smoothed loss) pairs; `suggestion_window` is the part of
  the record they look at.
- `check_epochs`, `batches_per_epoch`: the length of a fit in epochs and steps, as
  Learner.fit / fit_one_cycle / lr_find check and count it.
- `sgdr_cycles`: the cycles of fastai v2's `fit_sgdr` (first epoch and length of each);
  `NO_WARMUP`, the pct_start that makes a one-cycle start at its peak (each SGDR cycle).
- fastai v2's schedule functions of `fastai.callback.schedule`, what a `ParamScheduler`
  (`callback.param_scheduler`) calls with the learner's pct_train: `SchedLin`, `SchedCos`,
  `SchedNo`, `SchedExp`, `SchedPoly` (`f = SchedCos(1e-2, 1e-4)`; `f(pos)`, a float, or
  one per param group when start or end is a sequence), `combine_scheds(pcts, scheds)`,
  `combined_cos(pct, start, middle, end)`, `Annealer` / `annealer` (fastai's `_Annealer`
  and its decorator) and the plain `sched_lin`, `sched_cos`, `sched_no`, `sched_exp`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from fastcore_ext.checks import check_int, check_number, int_or_none, real_or_none

__all__ = [
    "sched_cos",
    "sched_exp",
    "one_cycle",
    "exp_sweep",
    "Suggestions",
    "lr_find_window",
    "suggestion_window",
    "valley",
    "steep",
    "minimum",
    "slide",
    "suggest_lrs",
    "check_epochs",
    "batches_per_epoch",
    "sgdr_cycles",
    "NO_WARMUP",
    "sched_lin",
    "sched_no",
    "Annealer",
    "annealer",
    "SchedLin",
    "SchedCos",
    "SchedNo",
    "SchedExp",
    "SchedPoly",
    "CombinedScheds",
    "combine_scheds",
    "combined_cos",
]

NO_WARMUP = 1e-300
"""A one-cycle's pct_start for no warm-up: only pos 0 lies before it, where div=1 gives lr_max
exactly as the cosine phase would, and for pos > 0 `(pos - pct_start) / (1 - pct_start)` is
pos itself in float64. With div=1 and div_final=inf the one-cycle is then fastai's
SchedCos(lr_max, 0) (SGDR's cycle), the same formula to the last bit."""

Point = tuple[float, float]  # (lr, loss): where a plot marks a suggestion


def sched_cos(start: float, end: float, pos: float) -> float:
    """Cosine from `start` (pos 0) to `end` (pos 1).

    `start + (1 + cos(pi * (1 - pos))) * (end - start) / 2`
    """
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def sched_exp(start: float, end: float, pos: float) -> float:
    """Exponential from `start` (pos 0) to `end` (pos 1): `start * (end / start) ** pos`."""
    return start * (end / start) ** pos


def _check_fraction(name: str, value: Any, low: float, high: float, *, closed: bool) -> float:
    """`value` (a number, checked by the caller) as a float in [low, high) (closed) or
    (low, high)."""
    number = real_or_none(value)
    ok = number is not None and (low <= number < high if closed else low < number < high)
    if not ok:
        interval = f"[{low}, {high})" if closed else f"({low}, {high})"
        raise ValueError(f"{name} should be a number in {interval}, got {value!r}")
    return number


def check_one_cycle_args(
    div: float, div_final: float, pct_start: float, moms: Sequence[float]
) -> tuple[float, float, float, tuple[float, float, float]]:
    """Validate the shared one-cycle arguments; returns them as floats (moms as a 3-tuple).
    div and div_final below 1 are refused (fastai takes them): the lr would rise above
    lr_max."""
    div, div_final = (_positive(name, v) for name, v in (("div", div), ("div_final", div_final)))
    for name, value, where in (("div", div, "starts"), ("div_final", div_final, "ends")):
        if value < 1:  # fastai takes it; the lr would rise above lr_max (fit_one_cycle(1, 1e-3,
            raise ValueError(  # 1e-4) makes 1e-4 the div and the first lr 10)
                f"{name} should be a number >= 1 (the schedule {where} at lr_max / {name}), "
                f"got {value!r}: {name} < 1 would take the lr above lr_max. fit_one_cycle's "
                f"positional arguments are (n_epoch, lr_max, div, div_final, pct_start, wd, "
                f"moms); give the others by name"
            )
    if real_or_none(pct_start) is None:
        raise TypeError(f"pct_start should be a number in (0, 1), got {type(pct_start).__name__}")
    pct_start = _check_fraction("pct_start", pct_start, 0.0, 1.0, closed=False)
    if isinstance(moms, np.ndarray):
        moms = moms.tolist()
    if isinstance(moms, (str, bytes)) or not isinstance(moms, Sequence) or len(moms) != 3:
        raise ValueError(f"moms should be 3 numbers (start, middle, end), got {moms!r}")
    for i, m in enumerate(moms):
        if real_or_none(m) is None:
            raise TypeError(f"moms[{i}] should be a number in [0, 1), got {type(m).__name__}")
    m0, m1, m2 = (
        _check_fraction(f"moms[{i}]", m, 0.0, 1.0, closed=True) for i, m in enumerate(moms)
    )
    return div, div_final, pct_start, (m0, m1, m2)


def _positive(name: str, value: Any) -> float:
    """`value` as a float; ValueError unless a number > 0."""
    number = real_or_none(value)
    if number is None or not number > 0:
        raise ValueError(f"{name} should be a number > 0, got {value!r}")
    return number


def one_cycle(
    pos: float,
    lr_max: float,
    div: float = 25.0,
    div_final: float = 1e5,
    pct_start: float = 0.25,
    moms: Sequence[float] = (0.95, 0.85, 0.95),
) -> tuple[float, float]:
    """(lr, mom) of fastai's one-cycle policy at `pos` (clamped to [0, 1]).

    lr: cosine from lr_max/div to lr_max over the first `pct_start` of training, then cosine
    to lr_max/div_final; mom: cosine from moms[0] to moms[1], then to moms[2], on the same
    phases. `pos = k / total_steps` for the k-th step (k from 0); past the end the final values
    hold.
    """
    div, div_final, pct_start, (m0, m1, m2) = check_one_cycle_args(div, div_final, pct_start, moms)
    pos = min(max(float(pos), 0.0), 1.0)
    if pos < pct_start:
        t = pos / pct_start
        return sched_cos(lr_max / div, lr_max, t), sched_cos(m0, m1, t)
    t = (pos - pct_start) / (1 - pct_start)
    return sched_cos(lr_max, lr_max / div_final, t), sched_cos(m1, m2, t)


def exp_sweep(start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100) -> list[float]:
    """The `num_it` learning rates of lr_find: `start_lr * (end_lr/start_lr) ** (i / num_it)`.

    fastai v2's exact form (`SchedExp` evaluated at `train_iter / num_it`), i = 0 .. num_it-1.
    """
    num_it = _positive_int("num_it", num_it)
    start_lr, end_lr = _positive("start_lr", start_lr), _positive("end_lr", end_lr)
    return [sched_exp(start_lr, end_lr, i / num_it) for i in range(num_it)]


def _positive_int(name: str, value: Any) -> int:
    """`value` as an int; ValueError unless an integer > 0."""
    number = int_or_none(value)
    if number is None or number <= 0:
        raise ValueError(f"{name} should be an int > 0, got {value!r}")
    return number


class Suggestions(NamedTuple):
    """lr_find's suggested learning rates."""

    valley: float
    steep: float
    minimum: float


def _floats(name: str, values) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} should be a sequence of numbers, got {values!r}") from e
    return out


def _pair(lrs, losses, min_len: int) -> tuple[list[float], list[float]]:
    lrs, losses = _floats("lrs", lrs), _floats("losses", losses)
    if len(lrs) != len(losses):
        raise ValueError(
            f"lrs and losses should have the same length, got {len(lrs)} and {len(losses)}"
        )
    if len(lrs) < min_len:
        raise ValueError(f"need at least {min_len} (lr, loss) points, got {len(lrs)}")
    if any(not lr > 0 for lr in lrs):
        raise ValueError("lrs should all be > 0")
    return lrs, losses


def lr_find_window(lrs, losses, num_it: int | None = None) -> tuple[list[float], list[float]]:
    """fastai's window of the lr_find record that the suggestions look at.

    Drops the first `num_it // 10` points (num_it: the sweep's requested iterations, by default
    `len(lrs)`) and the last 5, then cuts at the first NaN loss. Where that leaves fewer than 2
    points (a short sweep, or one that stop_div ended after a few noisy batches on little
    data, where fastai's window is empty and its suggestions fail), the window is every
    recorded point but the last (the one that ended the sweep), cut at the first NaN loss.
    """
    lrs, losses = _floats("lrs", lrs), _floats("losses", losses)
    if len(lrs) != len(losses):
        raise ValueError(
            f"lrs and losses should have the same length, got {len(lrs)} and {len(losses)}"
        )
    num_it = len(lrs) if num_it is None else _positive_int("num_it", num_it)
    w_lrs, w_losses = _before_nan(lrs[num_it // 10 : -5], losses[num_it // 10 : -5])
    if len(w_lrs) >= 2:
        return w_lrs, w_losses
    return _before_nan(lrs[:-1], losses[:-1])


def _before_nan(lrs: list[float], losses: list[float]) -> tuple[list[float], list[float]]:
    for i, loss in enumerate(losses):
        if math.isnan(loss):
            return lrs[:i], losses[:i]
    return lrs, losses


# Every suggestion function has fastai's signature f(lrs, losses, num_it) -> (suggested lr,
# (lr, loss) to mark on a plot), the one `Learner.lr_find(suggest_funcs=...)` calls; num_it
# (the sweep's requested iterations) is there for functions of a user's that need it.
def valley(lrs, losses, num_it: int | None = None) -> tuple[float, Point]:
    """fastai's `valley`: an lr a little past the middle of the longest valley of the loss.

    lds[i] is the length of the longest strictly decreasing subsequence of losses ending at i
    (fastai's O(n^2) scan); the valley is [max_end - lds[max_end], max_end] for the first i
    reaching the largest lds, and the suggestion is the lr at `start + int(len / 3) +
    int(len / 6)` of it. Returns (suggested lr, (lr, loss) to mark on a plot).
    """
    lrs, losses = _pair(lrs, losses, 1)
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    # fastai indexes with max_start + ...; a decreasing run from the first point gives
    # max_start = -1, which fastai would wrap to the last point: start at 0 instead.
    idx = max(0, max_start + int(sections) + int(sections / 2))
    return lrs[idx], (lrs[idx], losses[idx])


def steep(lrs, losses, num_it: int | None = None) -> tuple[float, Point]:
    """fastai's `steep`: the lr where the loss falls fastest per unit of log(lr).

    slope_i = (loss[i+1] - loss[i]) / (log lr[i+1] - log lr[i]); the suggestion is lr[argmin].
    """
    lrs, losses = _pair(lrs, losses, 2)
    slopes = [
        (losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i]))
        for i in range(len(lrs) - 1)
    ]
    idx = min(range(len(slopes)), key=slopes.__getitem__)
    return lrs[idx], (lrs[idx], losses[idx])


def minimum(lrs, losses, num_it: int | None = None) -> tuple[float, Point]:
    """fastai's `minimum`: a tenth of the lr at the lowest loss (marked at that lowest loss)."""
    lrs, losses = _pair(lrs, losses, 1)
    idx = min(range(len(losses)), key=losses.__getitem__)
    return lrs[idx] / 10, (lrs[idx], losses[idx])


def slide(
    lrs,
    losses,
    num_it: int | None = None,
    lr_diff: int = 15,
    thresh: float = 0.005,
    adjust_value: float = 1.0,
) -> tuple[float, Point]:
    """fastai's `slide`: the interval slide rule, from the end of the curve backwards.

    With g = numpy.gradient(losses) (per point, not per log(lr)), a right index r from the
    last point and l = r - lr_diff slide left together while |g[r] - g[l]| > thresh; the
    suggestion is the lr at the last l where that held (lrs[-1 - lr_diff] when it never did;
    lrs[0] when it held up to the first point) times adjust_value, marked at the loss
    interpolated there in log10(lr). Needs lr_diff + 1 points, as fastai's index does.
    """
    lr_diff = check_int("lr_diff", lr_diff, 1)
    thresh = check_number("thresh", thresh, 0.0)
    adjust_value = check_number("adjust_value", adjust_value, 0.0)
    if adjust_value == 0:
        raise ValueError("adjust_value should be > 0, got 0")
    lrs, losses = _pair(lrs, losses, lr_diff + 1)
    loss_grad = np.gradient(np.array(losses, dtype=np.float64))
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while l_idx >= -len(losses) and abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh:
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    suggestion = local_min_lr * adjust_value
    loss = float(np.interp(np.log10(suggestion), np.log10(lrs), losses))
    return suggestion, (suggestion, loss)


def suggestion_window(lrs, losses, num_it: int | None = None) -> tuple[list[float], list[float]]:
    """`lr_find_window(lrs, losses, num_it)`, the points every suggestion is computed from;
    ValueError when it holds fewer than 2 (too few for a slope)."""
    w_lrs, w_losses = lr_find_window(lrs, losses, num_it)
    if len(w_lrs) < 2:
        raise ValueError(
            f"lr_find recorded too few usable points ({len(w_lrs)} of {len(lrs)} recorded, "
            "without the last one and everything from the first NaN loss): run more "
            "iterations, or lr_find(stop_div=False) if the sweep stopped early"
        )
    return w_lrs, w_losses


def suggest_lrs(lrs, losses, num_it: int | None = None) -> Suggestions:
    """The three suggestions of fastai v2's lr_find from a recorded sweep.

    `lrs`, `losses`: the lr and the smoothed loss of every recorded iteration; the window of
    `suggestion_window(lrs, losses, num_it)` is used.
    """
    w_lrs, w_losses = suggestion_window(lrs, losses, num_it)
    return Suggestions(
        valley(w_lrs, w_losses)[0], steep(w_lrs, w_losses)[0], minimum(w_lrs, w_losses)[0]
    )


def check_epochs(n_epoch: Any, start_epoch: Any) -> tuple[int, int]:
    """(n_epoch, start_epoch) of a fit: n_epoch an int >= 1, start_epoch an int in
    [0, n_epoch) (the epochs before it are skipped)."""
    n_epoch = check_int("n_epoch", n_epoch, 1)
    start_epoch = check_int("start_epoch", start_epoch, 0)
    if start_epoch >= n_epoch:
        raise ValueError(f"start_epoch should be < n_epoch ({n_epoch}), got {start_epoch}")
    return n_epoch, start_epoch


def batches_per_epoch(train_dl: Any) -> int:
    """len(train_dl), the optimizer steps of one epoch; ValueError when it has no batch."""
    n = len(train_dl)
    if n == 0:
        raise ValueError(
            "data.train_dl has no batches (len 0): fewer training items than the batch "
            "size with drop_last; lower bs or add items"
        )
    return n


def sgdr_cycles(n_cycles: Any, cycle_len: Any, cycle_mult: Any) -> list[tuple[int, int]]:
    """(first epoch, epochs) of each cycle of fastai v2's fit_sgdr: cycle i lasts
    cycle_len * cycle_mult**i epochs and starts where the one before ended; the fit lasts
    their sum (fastai's `cycle_len * (cycle_mult**n_cycles - 1) // (cycle_mult - 1)`, which
    divides by zero for cycle_mult=1: here n_cycles * cycle_len). Integers only (fastai would
    take fractional epochs)."""
    n_cycles = check_int("n_cycles", n_cycles, 1)
    cycle_len = check_int("cycle_len", cycle_len, 1)
    cycle_mult = check_int("cycle_mult", cycle_mult, 1)
    cycles, start = [], 0
    for i in range(n_cycles):
        length = cycle_len * cycle_mult**i
        cycles.append((start, length))
        start += length
    return cycles


# ---- fastai v2's schedule functions (fastai.callback.schedule) ------------------------------
#
# fastai's SchedLin, SchedCos, SchedNo and SchedExp are functions returning an `_Annealer`
# (f, start, end) whose call is f(start, end, pos); SchedPoly and combine_scheds return
# closures. Here each is a class whose instances are those callables, with the same values
# (picklable, which fastai's notebook lists as a to-do, and with a repr). They are what
# `callback.param_scheduler.ParamScheduler` calls with the learner's pct_train.


def sched_lin(start: float, end: float, pos: float) -> float:
    """Linear from `start` (pos 0) to `end` (pos 1): `start + pos * (end - start)` (fastai's
    `sched_lin`)."""
    return start + pos * (end - start)


def sched_no(start: float, end: float, pos: float) -> float:
    """Constant at `start` (fastai's `sched_no`; `end` and `pos` are not used)."""
    return start


def _sched_pos(owner: str, pos: Any) -> float:
    """`pos` (a Python or numpy number, a one-element tensor) as a float; TypeError unless a
    real number, ValueError unless finite."""
    number = real_or_none(pos)
    if number is None:
        raise TypeError(
            f"{owner}: pos should be a number (the position in the schedule, 0 to 1), got "
            f"{type(pos).__name__} {pos!r}"
        )
    if not math.isfinite(number):
        raise ValueError(f"{owner}: pos should be a finite number, got {number}")
    return number


def _sched_bound(owner: str, name: str, value: Any) -> float | list[float]:
    """A schedule's start or end: one finite number (a float), or one per param group (a
    non-empty list, tuple, 1-d numpy array or 1-d tensor of finite numbers: a list of
    floats)."""
    number = real_or_none(value)
    if number is None and isinstance(value, np.ndarray) and value.ndim == 0:
        number = real_or_none(value.item())
    if number is not None:
        if not math.isfinite(number):
            raise ValueError(f"{owner}: {name} should be a finite number, got {number}")
        return number
    expected = f"{owner}: {name} should be a number or a sequence of numbers (one per param group)"
    if isinstance(value, (np.ndarray, torch.Tensor)):
        if value.ndim != 1:
            raise ValueError(
                f"{expected}, got a {value.ndim}-d array of shape {tuple(value.shape)}"
            )
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{expected}, got {type(value).__name__} {value!r}")
    if len(value) == 0:
        raise ValueError(f"{expected}, got an empty {type(value).__name__}")
    out = []
    for i, v in enumerate(value):
        item = real_or_none(v)
        if item is None:
            raise TypeError(
                f"{owner}: {name}[{i}] should be a number, got {type(v).__name__} {v!r}"
            )
        if not math.isfinite(item):
            raise ValueError(f"{owner}: {name}[{i}] should be a finite number, got {item}")
        out.append(item)
    return out


def _sched_pairs(
    owner: str, start: float | list[float], end: float | list[float]
) -> list[tuple[float, float]] | None:
    """(start, end) per param group when either is a sequence (a number goes with every
    value of the other), None when both are numbers."""
    if not isinstance(start, list) and not isinstance(end, list):
        return None
    starts = start if isinstance(start, list) else None
    ends = end if isinstance(end, list) else None
    if starts is not None and ends is not None and len(starts) != len(ends):
        raise ValueError(
            f"{owner}: start and end should have the same length (one value per param "
            f"group), got {len(starts)} and {len(ends)}"
        )
    n = len(starts if starts is not None else ends)
    starts = starts if starts is not None else [start] * n
    ends = ends if ends is not None else [end] * n
    return list(zip(starts, ends, strict=True))


class _BoundedSched:
    """A schedule from `start` (pos 0) to `end` (pos 1), each a number or one per param
    group. Called with `pos`, a number (fastai passes the learner's pct_train): a float when
    start and end are numbers, else a list of floats, one per param group, each computed
    with the float formula. fastai computes with whatever start and end are: numpy arrays
    give the same float64 values in an array; float32 tensors give float32 values (here
    float64); lists fail (here they work)."""

    def __init__(self, start: Any, end: Any) -> None:
        owner = type(self).__name__
        self.start = _sched_bound(owner, "start", start)
        self.end = _sched_bound(owner, "end", end)
        self._pairs = _sched_pairs(owner, self.start, self.end)

    def _value(self, start: float, end: float, pos: float) -> float:
        raise NotImplementedError

    def _check_pos(self, pos: Any) -> float:
        return _sched_pos(type(self).__name__, pos)

    def __call__(self, pos: Any) -> float | list[float]:
        pos = self._check_pos(pos)
        if self._pairs is None:
            return self._value(self.start, self.end, pos)
        return [self._value(s, e, pos) for s, e in self._pairs]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.start!r}, {self.end!r})"


class Annealer(_BoundedSched):
    """fastai's `_Annealer`: `f(start, end, pos)` with `start` and `end` bound, called as
    `annealer(pos)`; `f` is a function of three numbers returning a number (fastai's
    `annealer(f)` decorator makes a schedule class of it). With start or end a sequence, f
    is called once per param group."""

    def __init__(self, f: Any, start: Any, end: Any) -> None:
        if not callable(f):
            raise TypeError(
                f"Annealer: f should be a function f(start, end, pos), got {type(f).__name__}"
            )
        self.f = f
        super().__init__(start, end)

    def _value(self, start: float, end: float, pos: float) -> float:
        out = self.f(start, end, pos)
        number = real_or_none(out)
        if number is None:
            name = getattr(self.f, "__name__", repr(self.f))
            raise TypeError(
                f"Annealer: {name}(start, end, pos) should return a number, got {out!r}"
            )
        return number

    def __repr__(self) -> str:
        name = getattr(self.f, "__name__", repr(self.f))
        return f"Annealer({name}, {self.start!r}, {self.end!r})"


def annealer(f: Any) -> Any:
    """fastai's `annealer` decorator: `f(start, end, pos)` becomes a function `(start, end)`
    returning the `Annealer` of f with them bound."""
    if not callable(f):
        raise TypeError(
            f"annealer: f should be a function f(start, end, pos), got {type(f).__name__}"
        )

    def make(start: Any, end: Any) -> Annealer:
        return Annealer(f, start, end)

    make.__name__ = getattr(f, "__name__", "annealer")
    make.__doc__ = getattr(f, "__doc__", None)
    return make


class SchedLin(_BoundedSched):
    """fastai's `SchedLin(start, end)`: linear, `start + pos * (end - start)`."""

    def _value(self, start: float, end: float, pos: float) -> float:
        return sched_lin(start, end, pos)


class SchedCos(_BoundedSched):
    """fastai's `SchedCos(start, end)`: cosine, `start + (1 + cos(pi * (1 - pos))) * (end -
    start) / 2` (flat at both ends)."""

    def _value(self, start: float, end: float, pos: float) -> float:
        return sched_cos(start, end, pos)


class SchedNo(_BoundedSched):
    """fastai's `SchedNo(start, end)`: constant at `start` (`end` is kept, not used)."""

    def _value(self, start: float, end: float, pos: float) -> float:
        return sched_no(start, end, pos)


class SchedExp(_BoundedSched):
    """fastai's `SchedExp(start, end)`: exponential, `start * (end / start) ** pos`. start
    and end should be nonzero numbers of one sign (fastai gives nan, a complex number or a
    ZeroDivisionError otherwise; here a ValueError when built)."""

    def __init__(self, start: Any, end: Any) -> None:
        super().__init__(start, end)
        pairs = self._pairs if self._pairs is not None else [(self.start, self.end)]
        for s, e in pairs:
            if s == 0 or e == 0 or (s > 0) != (e > 0):
                raise ValueError(
                    f"SchedExp: start and end should be nonzero numbers of one sign (the "
                    f"schedule is start * (end / start) ** pos), got start={s!r}, end={e!r}"
                )

    def _value(self, start: float, end: float, pos: float) -> float:
        return sched_exp(start, end, pos)


class SchedPoly(_BoundedSched):
    """fastai's `SchedPoly(start, end, power)`: `start + (end - start) * pos ** power`.
    power should be a finite number > 0, and pos >= 0 (a negative pos to a fractional power
    is complex; fastai returns that complex number)."""

    def __init__(self, start: Any, end: Any, power: Any) -> None:
        super().__init__(start, end)
        number = real_or_none(power)
        if number is None:
            raise TypeError(
                f"SchedPoly: power should be a number, got {type(power).__name__} {power!r}"
            )
        if not (math.isfinite(number) and number > 0):
            raise ValueError(f"SchedPoly: power should be a finite number > 0, got {number}")
        self.power = number

    def _check_pos(self, pos: Any) -> float:
        pos = super()._check_pos(pos)
        if pos < 0:
            raise ValueError(f"SchedPoly: pos should be >= 0, got {pos}")
        return pos

    def _value(self, start: float, end: float, pos: float) -> float:
        return start + (end - start) * pos**self.power

    def __repr__(self) -> str:
        return f"SchedPoly({self.start!r}, {self.end!r}, {self.power!r})"


PCTS_TOLERANCE = 1e-9
"""How far from 1 the sum of combine_scheds' pcts may be (fastai asserts `sum(pcts) == 1.`
exactly, so [0.1] * 10, which sums to 0.9999999999999999, fails there)."""


class CombinedScheds:
    """fastai's `combine_scheds(pcts, scheds)`: schedule i runs over the i-th share `pcts[i]`
    of the positions, from its own pos 0 to its pos 1.

    At pos, the phase is the last one whose start (`sum(pcts[:i])`) is <= pos, and
    `scheds[i]((pos - start_i) / pcts[i])` is returned; past 1 the last phase goes on
    (extrapolates), as fastai's. Phases of zero width are skipped (fastai divides by their
    zero width where one is last). pos below 0 is a ValueError (fastai fails too).

    fastai computes the phase boundaries and the position inside a phase in float32 (a torch
    tensor; pos is rounded to float32 first), so its values differ from the exact formula,
    by up to ~1e-8 for a momentum of 0.9 and up to ~3e-5 relative near the end of a
    one-cycle lr (measured, fastai 2.8.12); here they are computed in float64, the formula
    of `one_cycle` (what the fused optimizers evaluate) to the last bits or so.
    """

    def __init__(self, pcts: Any, scheds: Any) -> None:
        if isinstance(pcts, (np.ndarray, torch.Tensor)):
            pcts = pcts.tolist()
        if isinstance(pcts, (str, bytes)) or not isinstance(pcts, Sequence) or not pcts:
            raise TypeError(
                f"combine_scheds: pcts should be a non-empty sequence of numbers (the share of "
                f"each schedule), got {pcts!r}"
            )
        values = []
        for i, p in enumerate(pcts):
            number = real_or_none(p)
            if number is None:
                raise TypeError(f"combine_scheds: pcts[{i}] should be a number, got {p!r}")
            if not (math.isfinite(number) and number >= 0):
                raise ValueError(f"combine_scheds: pcts[{i}] should be a number >= 0, got {number}")
            values.append(number)
        total = math.fsum(values)
        if abs(total - 1) > PCTS_TOLERANCE:
            raise ValueError(f"combine_scheds: pcts should sum to 1, got {total!r} (pcts={values})")
        if isinstance(scheds, (str, bytes)) or not isinstance(scheds, Sequence):
            raise TypeError(
                f"combine_scheds: scheds should be a sequence of schedule functions (one per "
                f"pct), got {type(scheds).__name__}"
            )
        if len(scheds) != len(values):
            raise ValueError(
                f"combine_scheds: scheds should have one schedule per pct ({len(values)}), got "
                f"{len(scheds)}"
            )
        for i, s in enumerate(scheds):
            if not callable(s):
                raise TypeError(
                    f"combine_scheds: scheds[{i}] should be a function of pos (SchedCos(...), "
                    f"...), got {type(s).__name__} {s!r}"
                )
        self.pcts = values
        self.scheds = list(scheds)
        self.bounds = [0.0]
        for p in values:
            self.bounds.append(self.bounds[-1] + p)

    def __call__(self, pos: Any) -> Any:
        pos = _sched_pos("combine_scheds", pos)
        if pos < 0:
            raise ValueError(f"combine_scheds: pos should be >= 0, got {pos}")
        idx = max(
            i
            for i, (lo, p) in enumerate(zip(self.bounds, self.pcts, strict=False))
            if p > 0 and pos >= lo
        )
        lo, hi = self.bounds[idx], self.bounds[idx + 1]
        return self.scheds[idx]((pos - lo) / (hi - lo))

    def __repr__(self) -> str:
        return f"combine_scheds({self.pcts!r}, {self.scheds!r})"


def combine_scheds(pcts: Any, scheds: Any) -> CombinedScheds:
    """fastai's `combine_scheds(pcts, scheds)`: one schedule running `scheds[i]` over the share
    `pcts[i]` of the positions (pcts >= 0, summing to 1); see `CombinedScheds`."""
    return CombinedScheds(pcts, scheds)


def combined_cos(pct: Any, start: Any, middle: Any, end: Any) -> CombinedScheds:
    """fastai's `combined_cos(pct, start, middle, end)`: a cosine from start to middle over
    the first `pct` of the positions, then from middle to end (fit_one_cycle's lr is
    `combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final)`, its momentum
    `combined_cos(pct_start, *moms)`). pct in [0, 1]; start, middle and end numbers or one
    per param group."""
    number = real_or_none(pct)
    if number is None:
        raise TypeError(f"combined_cos: pct should be a number in [0, 1], got {pct!r}")
    if not 0 <= number <= 1:
        raise ValueError(f"combined_cos: pct should be a number in [0, 1], got {number}")
    return CombinedScheds([number, 1 - number], [SchedCos(start, middle), SchedCos(middle, end)])
