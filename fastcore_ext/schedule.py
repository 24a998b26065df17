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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

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
    """Validate the shared one-cycle arguments; returns them as floats (moms as a 3-tuple)."""
    div, div_final = (_positive(name, v) for name, v in (("div", div), ("div_final", div_final)))
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
