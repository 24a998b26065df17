"""schedule.py: the one-cycle closed form, the lr_find sweep and fastai's suggestions."""

import math

import pytest

from fastcore_ext.schedule import (
    Suggestions,
    exp_sweep,
    lr_find_window,
    minimum,
    one_cycle,
    sched_cos,
    sched_exp,
    steep,
    suggest_lrs,
    valley,
)


def test_sched_cos_and_exp_endpoints():
    assert sched_cos(2.0, 8.0, 0.0) == 2.0
    assert sched_cos(2.0, 8.0, 1.0) == 8.0
    assert sched_cos(2.0, 8.0, 0.5) == pytest.approx(5.0)
    assert sched_cos(2.0, 8.0, 0.25) == pytest.approx(2.0 + 6.0 * (1 - math.cos(math.pi / 4)) / 2)
    assert sched_exp(1e-4, 1e-2, 0.5) == pytest.approx(1e-3)
    assert sched_exp(1e-4, 1e-2, 0.0) == 1e-4


def test_one_cycle_phases():
    lr_max, div, div_final, pct = 1e-2, 25.0, 1e5, 0.3
    moms = (0.95, 0.85, 0.9)
    args = (lr_max, div, div_final, pct, moms)
    assert one_cycle(0.0, *args) == pytest.approx((lr_max / div, 0.95))
    assert one_cycle(pct, *args) == pytest.approx((lr_max, 0.85))
    assert one_cycle(1.0, *args) == pytest.approx((lr_max / div_final, 0.9))
    # past the end (and before the start) the end values hold
    assert one_cycle(1.7, *args) == one_cycle(1.0, *args)
    assert one_cycle(-0.2, *args) == one_cycle(0.0, *args)
    # the middle of each phase is the middle of its cosine
    lr, mom = one_cycle(pct / 2, *args)
    assert lr == pytest.approx((lr_max / div + lr_max) / 2)
    assert mom == pytest.approx(0.9)
    lr, mom = one_cycle(pct + (1 - pct) / 2, *args)
    assert lr == pytest.approx((lr_max + lr_max / div_final) / 2)
    assert mom == pytest.approx((0.85 + 0.9) / 2)

    # a quarter into each phase: a cosine (fastai's SchedCos), not a line, which has the
    # same ends and middle
    def cos_at(a, b, t):
        return a + (b - a) * (1 - math.cos(math.pi * t)) / 2

    lr, mom = one_cycle(pct / 4, *args)
    assert lr == pytest.approx(cos_at(lr_max / div, lr_max, 0.25))
    assert mom == pytest.approx(cos_at(0.95, 0.85, 0.25))
    lr, mom = one_cycle(pct + (1 - pct) / 4, *args)
    assert lr == pytest.approx(cos_at(lr_max, lr_max / div_final, 0.25))
    assert mom == pytest.approx(cos_at(0.85, 0.9, 0.25))


def test_one_cycle_is_monotone_in_each_phase():
    pct = 0.25
    vals = [one_cycle(k / 100, 1e-3, pct_start=pct) for k in range(101)]
    up = [lr for (lr, _), k in zip(vals, range(101), strict=True) if k / 100 <= pct]
    down = [lr for (lr, _), k in zip(vals, range(101), strict=True) if k / 100 >= pct]
    assert up == sorted(up)
    assert down == sorted(down, reverse=True)
    moms_up = [m for (_, m), k in zip(vals, range(101), strict=True) if k / 100 <= pct]
    assert moms_up == sorted(moms_up, reverse=True)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"div": 0.0}, ValueError, "div should"),
        ({"div_final": -1.0}, ValueError, "div_final should"),
        ({"div": 1e-4}, ValueError, r"div should be a number >= 1 .*lr_max, div, div_final"),
        ({"div_final": 0.5}, ValueError, r"div_final should be a number >= 1 \(the schedule ends"),
        ({"pct_start": 0.0}, ValueError, "pct_start should"),
        ({"pct_start": 1.0}, ValueError, "pct_start should"),
        ({"pct_start": "0.3"}, TypeError, "pct_start should"),
        ({"moms": (0.9, 0.8)}, ValueError, "moms should be 3"),
        ({"moms": (0.9, 1.0, 0.9)}, ValueError, r"moms\[1\] should"),
        ({"moms": (0.9, None, 0.9)}, TypeError, r"moms\[1\] should"),
    ],
)
def test_one_cycle_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        one_cycle(0.5, 1e-3, **kwargs)


def test_exp_sweep_is_fastais_form():
    lrs = exp_sweep(1e-7, 10.0, 100)
    assert len(lrs) == 100
    assert lrs[0] == 1e-7
    ratio = (10.0 / 1e-7) ** (1 / 100)
    for a, b in zip(lrs, lrs[1:], strict=False):
        assert b / a == pytest.approx(ratio)
    # i / num_it, not i / (num_it - 1): the last lr is one ratio step short of end_lr
    assert lrs[-1] == pytest.approx(10.0 / ratio)


@pytest.mark.parametrize(
    "args, match",
    [((1e-7, 10.0, 0), "num_it"), ((0.0, 10.0, 10), "start_lr"), ((1e-7, -1.0, 10), "end_lr")],
)
def test_exp_sweep_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        exp_sweep(*args)


LRS = exp_sweep(1e-7, 10.0, 100)


def test_minimum_is_a_tenth_of_the_lowest_loss_lr():
    losses = [(math.log10(lr) + 2) ** 2 for lr in LRS]  # lowest near lr = 1e-2
    best = min(range(100), key=losses.__getitem__)
    assert abs(math.log10(LRS[best]) + 2) < 0.1
    lr, point = minimum(LRS, losses)
    assert lr == LRS[best] / 10
    assert point == (LRS[best], losses[best])


def test_steep_is_the_steepest_descent_per_log_lr():
    # piecewise linear in log(lr): gentle descent, steeper from 40, steepest from 45 to 46
    losses, loss = [], 3.0
    for i in range(100):
        losses.append(loss)
        loss += -0.01 if i < 40 else (-0.2 if i != 45 and i < 50 else (-0.5 if i == 45 else 0.05))
    lr, point = steep(LRS, losses)
    assert lr == LRS[45]
    assert point == (LRS[45], losses[45])


def test_steep_uses_log_spacing():
    # the same loss drops, but the lrs are closer together (in log) at the second drop
    lrs = [1e-4, 1e-3, 1e-2, 2e-2, 3e-2]
    losses = [2.0, 1.0, 1.0, 0.0, 0.0]
    assert steep(lrs, losses)[0] == 1e-2


def test_valley_follows_fastai():
    # flat-ish start (values below the valley top), a strictly decreasing run over
    # indices 20..60, then a rise: the longest decreasing subsequence ends at 60 with length
    # 41, so fastai's valley is [60 - 41, 60] = [19, 60], sections = 41 / 3, and the
    # suggestion is index 19 + int(13.67) + int(6.83) = 38.
    losses = [1.0 + 0.01 * i for i in range(20)]
    losses += [3.0 - 2.0 * k / 40 for k in range(41)]  # 3.0 down to 1.0 at index 60
    losses += [1.0 + 0.05 * k for k in range(1, 40)]
    assert len(losses) == 100
    lr, point = valley(LRS, losses)
    assert lr == LRS[38]
    assert point == (LRS[38], losses[38])


def test_valley_of_a_decreasing_curve_starts_at_zero():
    losses = [3.0 - 0.01 * i for i in range(4)]
    lr, _ = valley(LRS[:4], losses)
    # lds[3] = 4, max_start = -1, sections = 4/3: fastai's index -1 + 1 + 0 = 0
    assert lr == LRS[0]
    assert valley(LRS[:2], [2.0, 1.0])[0] == LRS[0]  # fastai would wrap to index -1


def test_lr_find_window_drops_ends_and_nans():
    losses = [float(i) for i in range(100)]
    w_lrs, w_losses = lr_find_window(LRS, losses)
    assert w_lrs == LRS[10:-5] and w_losses == losses[10:-5]
    losses[50] = float("nan")
    w_lrs, w_losses = lr_find_window(LRS, losses, num_it=100)
    assert w_lrs == LRS[10:50] and w_losses == losses[10:50]
    # a run stopped early (divergence) keeps num_it // 10 of the requested sweep
    losses = [float(i) for i in range(100)]
    w_lrs, _ = lr_find_window(LRS[:60], losses[:60], num_it=100)
    assert w_lrs == LRS[10:55]


def test_suggest_lrs():
    losses = [(math.log10(lr) + 2) ** 2 for lr in LRS]
    s = suggest_lrs(LRS, losses)
    assert isinstance(s, Suggestions)
    w_lrs, w_losses = lr_find_window(LRS, losses)
    assert s == Suggestions(
        valley(w_lrs, w_losses)[0], steep(w_lrs, w_losses)[0], minimum(w_lrs, w_losses)[0]
    )
    # a parabola in log(lr): steepest at the window's start, lowest near 1e-2, and the
    # valley (the whole descent) in between
    assert s.steep == w_lrs[0]
    assert s.minimum == pytest.approx(1e-3, rel=0.2)
    assert s.steep < s.valley < s.minimum * 10
    # a sweep stop_div ended after 6 of 100 points: fastai's window (drop 10, keep up to the
    # last 5) is empty; the points before the one that ended it are used
    assert lr_find_window(LRS[:6], losses[:6], num_it=100) == (LRS[:5], losses[:5])
    assert suggest_lrs(LRS[:6], losses[:6], num_it=100).steep == LRS[0]
    nan_at_2 = [1.0, 0.9, float("nan"), 3.0]
    assert lr_find_window(LRS[:4], nan_at_2, num_it=8) == (LRS[:2], nan_at_2[:2])
    with pytest.raises(ValueError, match=r"too few usable points \(1 of 2 recorded"):
        suggest_lrs(LRS[:2], losses[:2])
    with pytest.raises(ValueError, match="too few usable points"):
        suggest_lrs(LRS[:4], [1.0, float("nan"), 1.0, 1.0])


@pytest.mark.parametrize(
    "lrs, losses, exc, match",
    [
        ([1e-3, 1e-2], [1.0], ValueError, "same length"),
        ([1e-3, -1.0], [1.0, 2.0], ValueError, "lrs should all be > 0"),
        ([1e-3, 1e-2], ["a", 2.0], TypeError, "losses should be a sequence of numbers"),
        ([1e-3], [1.0], ValueError, "at least 2"),
    ],
)
def test_suggestion_bad_inputs(lrs, losses, exc, match):
    with pytest.raises(exc, match=match):
        steep(lrs, losses)
