"""fastai v2's scheduling API: the schedule functions of `fastcore_ext.schedule` (SchedLin,
SchedCos, SchedNo, SchedExp, SchedPoly, combine_scheds, combined_cos) checked against their
formulas written out here, and the `ParamScheduler` callback in real fits: what it records,
what the optimizer steps with (the weights move as the scheduled lr says), discriminative
values, weight decay groups, the fused optimizers and OptimWrapper, and its refusals."""

from __future__ import annotations

import math
import pickle
from functools import partial

import numpy as np
import pytest
import torch
from fakes import N_BATCHES, easy_bunch, make_learner, tiny_model, two_groups
from torch import nn

from fastcore_ext.callback.core import Callback
from fastcore_ext.callback.param_scheduler import ParamScheduler
from fastcore_ext.optim import SGD, Adam, OptimWrapper
from fastcore_ext.schedule import (
    Annealer,
    CombinedScheds,
    SchedCos,
    SchedExp,
    SchedLin,
    SchedNo,
    SchedPoly,
    annealer,
    combine_scheds,
    combined_cos,
    one_cycle,
    sched_lin,
)

TOL = 1e-12  # the brief's: fastai's values to 1e-12
POSITIONS = [k / 37 for k in range(38)] + [0.5, 0.25, 1e-9, 1 - 1e-9]

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


# ---- the formulas, written out (fastai.callback.schedule) ------------------------------------
def lin(a, b, p):
    return a + p * (b - a)


def cos_(a, b, p):
    return a + (1 + math.cos(math.pi * (1 - p))) * (b - a) / 2


def exp_(a, b, p):
    return a * (b / a) ** p


def poly(a, b, k, p):
    return a + (b - a) * p**k


def close(x, y, tol=TOL):
    return abs(x - y) <= tol * max(1.0, abs(y))


# ---- schedule functions --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "formula"),
    [
        (lambda a, b: SchedLin(a, b), lin),
        (lambda a, b: SchedCos(a, b), cos_),
        (lambda a, b: SchedNo(a, b), lambda a, b, p: a),
        (lambda a, b: SchedExp(a, b), exp_),
        (lambda a, b: SchedPoly(a, b, 0.5), lambda a, b, p: poly(a, b, 0.5, p)),
        (lambda a, b: SchedPoly(a, b, 2), lambda a, b, p: poly(a, b, 2, p)),
    ],
    ids=["lin", "cos", "no", "exp", "poly0.5", "poly2"],
)
@pytest.mark.parametrize(("a", "b"), [(1e-2, 1e-4), (2.0, 1e-2), (0.85, 0.95)])
def test_schedules_are_fastais_formulas(make, formula, a, b):
    f = make(a, b)
    for p in POSITIONS:
        got = f(p)
        assert isinstance(got, float)
        assert close(got, formula(a, b, p)), (p, got, formula(a, b, p))
    assert f(0.0) == a  # every schedule starts at start
    assert f(torch.tensor(0.25)) == f(0.25) == f(np.float32(0.25))  # fastai's plot: f(o), o in p


def test_schedule_shapes_independently_of_the_formulas():
    """Values a formula bug would change: midpoints, ends, monotony, constancy."""
    assert SchedLin(2.0, 4.0)(0.5) == 3.0 and SchedLin(2.0, 4.0)(1.0) == 4.0
    assert SchedCos(2.0, 4.0)(0.5) == pytest.approx(3.0, abs=TOL)
    assert SchedCos(2.0, 4.0)(1.0) == pytest.approx(4.0, abs=TOL)
    assert SchedCos(2.0, 4.0)(0.1) < SchedLin(2.0, 4.0)(0.1)  # cosine: flat at the start
    assert SchedExp(1e-4, 1e-2)(0.5) == pytest.approx(1e-3, rel=TOL)
    assert SchedExp(1e-4, 1e-2)(1.0) == pytest.approx(1e-2, rel=TOL)
    assert {SchedNo(3.0, 7.0)(p) for p in POSITIONS} == {3.0}
    assert SchedPoly(0.0, 1.0, 2)(0.5) == 0.25 and SchedPoly(0.0, 1.0, 0.5)(0.25) == 0.5
    values = [SchedCos(1e-2, 1e-4)(p) for p in POSITIONS[:38]]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize(
    "kind",
    [list, tuple, np.array, partial(torch.tensor, dtype=torch.float64)],
    ids=["list", "tuple", "ndarray", "tensor"],
)
def test_schedules_take_one_value_per_param_group(kind):
    starts, ends = [1e-3, 1e-2, 1e-1], [1e-5, 1e-4, 1e-3]
    f = SchedCos(kind(starts), kind(ends))
    g = SchedExp(kind(starts), 1e-6)  # a number goes with every value of the other
    for p in POSITIONS:
        assert f(p) == [cos_(a, b, p) for a, b in zip(starts, ends, strict=True)]
        assert g(p) == [exp_(a, 1e-6, p) for a in starts]
    assert SchedNo(kind(starts), 0.0)(0.7) == starts
    assert SchedPoly(1.0, kind(ends), 2)(0.5) == [poly(1.0, b, 2, 0.5) for b in ends]


def test_combine_scheds_runs_each_schedule_over_its_share():
    f = combine_scheds([0.3, 0.2, 0.5], [SchedLin(0.0, 1.0), SchedNo(5.0, 0.0), SchedCos(1.0, 0.0)])
    assert isinstance(f, CombinedScheds)
    for p in POSITIONS:
        if p < 0.3:
            want = lin(0.0, 1.0, p / 0.3)
        elif p < 0.5:
            want = 5.0
        else:
            want = cos_(1.0, 0.0, (p - 0.5) / 0.5)
        assert close(f(p), want), p
    assert f(0.3) == 5.0 and f(0.5) == 1.0  # a boundary starts the next phase, at its pos 0
    assert close(f(1.2), cos_(1.0, 0.0, 0.7 / 0.5))  # past 1 the last phase goes on
    # a phase of zero width is skipped, also a last one (fastai divides by its zero width)
    g = combine_scheds(
        [0.5, 0.0, 0.5, 0.0], [SchedLin(0, 1), SchedNo(9, 9), SchedLin(1, 2), SchedNo(9, 9)]
    )
    assert g(0.5) == 1.0 and g(1.0) == 2.0 and g(0.75) == 1.5
    assert (
        combine_scheds([0.1] * 10, [SchedNo(i, i) for i in range(10)])(0.95) == 9
    )  # sums 1 - 1e-16
    assert combine_scheds(np.array([0.25, 0.75]), [SchedNo(1, 1), SchedNo(2, 2)])(0.5) == 2


def test_combined_cos_is_the_one_cycle_schedule():
    """fit_one_cycle's lr and mom as fastai writes them: combined_cos(pct_start, lr_max/div,
    lr_max, lr_max/div_final) and combined_cos(pct_start, *moms); equal to the closed form
    the fused optimizers evaluate (schedule.one_cycle) and to the cosines written out."""
    for pct in (0.25, 0.3, 0.75):
        lr_f = combined_cos(pct, 1e-2 / 25, 1e-2, 1e-2 / 1e5)
        mom_f = combined_cos(pct, 0.95, 0.85, 0.95)
        for p in POSITIONS:
            lr, mom = one_cycle(p, 1e-2, pct_start=pct)
            assert close(lr_f(p), lr, 1e-15) and close(mom_f(p), mom, 1e-15)
            if p < pct:
                assert close(mom_f(p), cos_(0.95, 0.85, p / pct))
            else:
                assert close(mom_f(p), cos_(0.85, 0.95, (p - pct) / (1 - pct)))
    per_group = combined_cos(0.25, [1e-4, 1e-3], [1e-3, 1e-2], 0.0)
    assert per_group(0.1) == [
        combined_cos(0.25, a, b, 0.0)(0.1) for a, b in ((1e-4, 1e-3), (1e-3, 1e-2))
    ]
    assert combined_cos(1.0, 1.0, 2.0, 3.0)(1.0) == 2.0  # pct 1: the second phase is empty


def test_annealer_pickle_and_repr():
    twice = annealer(lambda start, end, pos: 2 * sched_lin(start, end, pos))
    assert twice(1.0, 3.0)(0.5) == 4.0 and isinstance(twice(1.0, 3.0), Annealer)
    assert Annealer(sched_lin, [0.0, 1.0], 2.0)(0.5) == [1.0, 1.5]
    for f in (SchedCos(1e-2, [1e-4, 1e-5]), SchedPoly(1, 2, 3), combined_cos(0.3, 1, 2, 3)):
        assert pickle.loads(pickle.dumps(f))(0.4) == f(0.4)
    assert repr(SchedCos(0.01, 0.0001)) == "SchedCos(0.01, 0.0001)"
    assert "SchedCos(0.95, 0.85)" in repr(combined_cos(0.25, 0.95, 0.85, 0.95))


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: SchedLin("a", 1), TypeError, r"SchedLin: start should be a number or a sequence"),
        (lambda: SchedCos(1, None), TypeError, r"SchedCos: end should be a number"),
        (lambda: SchedLin([1, "x"], 1), TypeError, r"start\[1\] should be a number"),
        (lambda: SchedLin(math.nan, 1), ValueError, r"start should be a finite number, got nan"),
        (lambda: SchedLin([], 1), ValueError, r"got an empty list"),
        (lambda: SchedLin(np.zeros((2, 2)), 1), ValueError, r"got a 2-d array"),
        (lambda: SchedLin([1, 2], [1, 2, 3]), ValueError, r"same length .* got 2 and 3"),
        (lambda: SchedExp(0, 1), ValueError, r"SchedExp: start and end should be nonzero"),
        (lambda: SchedExp([1, 2], -1), ValueError, r"one sign .* end=-1.0"),
        (lambda: SchedPoly(1, 2, 0), ValueError, r"power should be a finite number > 0, got 0"),
        (lambda: SchedPoly(1, 2, "2"), TypeError, r"power should be a number"),
        (lambda: SchedPoly(1, 2, 2)(-0.5), ValueError, r"SchedPoly: pos should be >= 0"),
        (lambda: SchedLin(1, 2)("half"), TypeError, r"SchedLin: pos should be a number"),
        (lambda: SchedLin(1, 2)(math.inf), ValueError, r"pos should be a finite number"),
        (lambda: SchedCos(1, 2)(torch.ones(3)), TypeError, r"pos should be a number"),
        (
            lambda: combine_scheds([0.3, 0.6], [SchedNo(1, 1)] * 2),
            ValueError,
            r"pcts should sum to 1, got 0.89",
        ),
        (
            lambda: combine_scheds([1.5, -0.5], [SchedNo(1, 1)] * 2),
            ValueError,
            r"pcts\[1\] should be a number >= 0",
        ),
        (
            lambda: combine_scheds([0.5, "a"], [SchedNo(1, 1)] * 2),
            TypeError,
            r"pcts\[1\] should be a number",
        ),
        (
            lambda: combine_scheds(1.0, [SchedNo(1, 1)]),
            TypeError,
            r"pcts should be a non-empty sequence",
        ),
        (
            lambda: combine_scheds([0.5, 0.5], [SchedNo(1, 1)]),
            ValueError,
            r"one schedule per pct \(2\), got 1",
        ),
        (
            lambda: combine_scheds([0.5, 0.5], [SchedNo(1, 1), 3]),
            TypeError,
            r"scheds\[1\] should be a function",
        ),
        (lambda: combine_scheds([1.0], SchedNo(1, 1)), TypeError, r"scheds should be a sequence"),
        (lambda: combine_scheds([1.0], [SchedNo(1, 1)])(-0.1), ValueError, r"pos should be >= 0"),
        (
            lambda: combined_cos(1.5, 1, 2, 3),
            ValueError,
            r"combined_cos: pct should be a number in \[0, 1\]",
        ),
        (lambda: combined_cos("a", 1, 2, 3), TypeError, r"combined_cos: pct should be a number"),
        (lambda: Annealer(3, 1, 2), TypeError, r"Annealer: f should be a function"),
        (
            lambda: Annealer(lambda s, e, p: "x", 1, 2)(0.5),
            TypeError,
            r"should return a number, got 'x'",
        ),
        (lambda: annealer(None), TypeError, r"annealer: f should be a function"),
    ],
)
def test_bad_schedule_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---- ParamScheduler: arguments -------------------------------------------------------------
@pytest.mark.parametrize(
    ("scheds", "exc", "match"),
    [
        ([("lr", SchedNo(1, 1))], TypeError, r"scheds should be a dict of hyper-parameter names"),
        ({}, ValueError, r"scheds should name at least one hyper-parameter"),
        ({1: SchedNo(1, 1)}, TypeError, r"keys of scheds should be hyper-parameter names"),
        (
            {"momentum": SchedNo(1, 1)},
            ValueError,
            r"torch's 'momentum'; set_hyper takes fastai's name 'mom'",
        ),
        ({"weight_decay": SchedNo(1, 1)}, ValueError, r"fastai's name 'wd'"),
        ({"betas": SchedNo(1, 1)}, ValueError, r"fastai's names 'mom' and 'sqr_mom'"),
        ({"lr": 1e-3}, TypeError, r"scheds\['lr'\] should be a function of pos"),
        ({"lr": []}, ValueError, r"scheds\['lr'\] is an empty list of functions"),
        ({"lr": [SchedNo(1, 1), "x"]}, TypeError, r"scheds\['lr'\]\[1\] should be a function"),
    ],
)
def test_bad_scheds(scheds, exc, match):
    with pytest.raises(exc, match=match):
        ParamScheduler(scheds)


# ---- ParamScheduler: fits ------------------------------------------------------------------
def linear_model() -> nn.Sequential:
    """Two linear layers, no dropout or normalization: a step is `p -= lr * grad` exactly."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 8), nn.Linear(8, 2))


def two_linear_groups(m: nn.Module) -> list[nn.Module]:
    return [m[:2], m[2:]]


class StepProbe(Callback):
    """Per training step: (each param before the step, its grad, its layer group, the change
    the step made)."""

    order = 90

    def __init__(self, layer_of: dict[int, int]) -> None:
        super().__init__()
        self.layer_of, self.steps = layer_of, []

    def before_step(self) -> None:
        params = [p for p in self.learn.model.parameters() if p.grad is not None]
        self._before = [(p, p.detach().clone(), p.grad.detach().clone()) for p in params]

    def after_step(self) -> None:
        self.steps.append(
            [(b, g, self.layer_of[id(p)], p.detach() - b) for p, b, g in self._before]
        )


def assert_step(delta: torch.Tensor, want: torch.Tensor, before: torch.Tensor) -> None:
    """delta (after - before, float32) equals `want` to 1e-3 of it, plus the float32 rounding
    of the updated param (2 ulps of the param's magnitude)."""
    slack = 1e-3 * want.abs() + 2 * torch.finfo(torch.float32).eps * before.abs() + 1e-12
    bad = (delta - want).abs() > slack
    assert not bad.any(), (delta[bad], want[bad])


def layer_ids(model: nn.Module, splitter) -> dict[int, int]:
    return {id(p): i for i, group in enumerate(splitter(model)) for p in group.parameters()}


def per_layer_lrs(scheds_form: str):
    """(the scheds['lr'] of `form`, the lr of each layer group at pos written out): one lr
    for both layer groups, or a cosine per layer group (5e-2 -> 1e-3 and 1e-1 -> 1e-2) given
    as one schedule of per-layer values or as one function per layer group."""
    starts, ends = (5e-2, 1e-1), (1e-3, 1e-2)
    if scheds_form == "one lr":
        return SchedCos(1e-1, 1e-3), lambda p: [cos_(1e-1, 1e-3, p)] * 2
    if scheds_form == "values per layer":
        f = SchedCos(list(starts), list(ends))
    else:
        f = [SchedCos(a, b) for a, b in zip(starts, ends, strict=True)]
    return f, lambda p: [cos_(a, b, p) for a, b in zip(starts, ends, strict=True)]


@pytest.mark.parametrize("opt_func", [SGD, torch.optim.SGD], ids=["fused", "torch"])
@pytest.mark.parametrize("form", ["one lr", "values per layer", "functions per layer"])
def test_the_weights_move_as_the_scheduled_lr_says(opt_func, form, device):
    """SGD without momentum on linear layers: each batch's step is -lr_k * grad with lr_k the
    schedule at k / n (n the fit's training batches), per layer group; the recorder, the
    scheduler's hps and learn.recorder.hps hold lr_k."""
    f, want = per_layer_lrs(form)
    model = linear_model()
    learn = make_learner(
        data=easy_bunch(device=device), model=model, splitter=two_linear_groups, opt_func=opt_func
    )
    probe = StepProbe(layer_ids(model, two_linear_groups))
    sched = ParamScheduler({"lr": f})
    learn.fit(2, cbs=[sched, probe])
    n = 2 * N_BATCHES
    assert len(probe.steps) == len(learn.recorder.group_lrs) == len(sched.hps["lr"]) == n
    for k, step in enumerate(probe.steps):
        lrs = want(k / n)
        assert all(close(a, b) for a, b in zip(learn.recorder.group_lrs[k], lrs, strict=True))
        assert all(close(a, b) for a, b in zip(sched.group_hps["lr"][k], lrs, strict=True))
        assert close(sched.hps["lr"][k], lrs[-1]) and close(learn.recorder.lrs[k], lrs[-1])
        for before, grad, layer, delta in step:
            assert_step(delta, -lrs[layer] * grad, before)
    assert learn.recorder.hps is sched.hps and set(learn.recorder.hps) == {"lr"}
    assert [g["lr"] for g in learn.opt.param_groups][-1] == pytest.approx(want((n - 1) / n)[-1])


@pytest.mark.filterwarnings("ignore:start_epoch=")  # the schedule alone, no checkpoint
def test_a_resumed_fit_starts_at_its_share():
    """fit(n, start_epoch=k): pct_train starts at k / n, and so does the schedule."""
    learn = make_learner()
    sched = ParamScheduler({"lr": SchedLin(1e-2, 0.0)})
    learn.fit(4, cbs=sched, start_epoch=1)
    n = 4 * N_BATCHES
    assert len(sched.hps["lr"]) == 3 * N_BATCHES
    want = [lin(1e-2, 0.0, (k + N_BATCHES) / n) for k in range(3 * N_BATCHES)]
    assert all(close(a, b) for a, b in zip(sched.hps["lr"], want, strict=True))


def test_our_adam_and_torch_adamw_follow_the_same_schedule():
    """lr, mom and sqr_mom scheduled: the fused Adam and torch's AdamW (in OptimWrapper, mom
    its betas[0], sqr_mom betas[1]) take the same values and end with the same weights."""
    scheds = {
        "lr": combined_cos(0.3, 4e-4, 1e-2, 1e-6),
        "mom": SchedLin(0.95, 0.85),
        "sqr_mom": SchedCos(0.999, 0.99),
    }
    adamw = partial(torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-5)
    learners = [make_learner(opt_func=o, wd=0.01) for o in (Adam, adamw)]
    scheds_used = []
    for learn in learners:
        torch.manual_seed(1)  # the same dropout masks
        sched = ParamScheduler(scheds)
        learn.fit(2, cbs=sched)
        scheds_used.append(sched)
    ours, theirs = learners
    assert isinstance(theirs.opt, OptimWrapper)
    assert ours.recorder.group_lrs == theirs.recorder.group_lrs
    assert scheds_used[0].group_hps == scheds_used[1].group_hps
    n = 2 * N_BATCHES
    assert all(close(m, lin(0.95, 0.85, k / n)) for k, m in enumerate(scheds_used[0].hps["mom"]))
    assert all(
        close(m, cos_(0.999, 0.99, k / n)) for k, m in enumerate(scheds_used[1].hps["sqr_mom"])
    )
    assert ours.recorder.moms == scheds_used[0].hps["mom"]  # the recorder shows the mom used
    assert theirs.recorder.moms == scheds_used[1].hps["mom"]  # a torch optimizer's betas[0]
    assert theirs.opt.param_groups[0]["betas"] == pytest.approx(
        (lin(0.95, 0.85, (n - 1) / n), cos_(0.999, 0.99, (n - 1) / n)), abs=TOL
    )
    for a, b in zip(ours.model.parameters(), theirs.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "opt_func", [Adam, SGD, partial(SGD, mom=0.9)], ids=["adam", "sgd", "sgd_mom"]
)
def test_fastais_one_cycle_scheds_in_a_plain_fit_train_as_fit_one_cycle(opt_func):
    """fastai's fit_one_cycle is fit(cbs=ParamScheduler({'lr': combined_cos(...), 'mom':
    combined_cos(...)})): written so, it records the lrs and moms of our fit_one_cycle (its
    schedule in the fused kernel) and ends with its weights; also for an SGD without
    momentum, which applies neither's moms (as fastai's)."""
    lr_max, pct, moms = 1e-2, 0.25, (0.95, 0.85, 0.95)
    scheds = {
        "lr": combined_cos(pct, lr_max / 25, lr_max, lr_max / 1e5),
        "mom": combined_cos(pct, *moms),
    }
    by_sched, by_cycle = make_learner(opt_func=opt_func), make_learner(opt_func=opt_func)
    torch.manual_seed(1)
    by_sched.fit(2, cbs=ParamScheduler(scheds))
    torch.manual_seed(1)
    by_cycle.fit_one_cycle(2, lr_max, pct_start=pct, moms=moms)
    for a, b in zip(by_sched.recorder.group_lrs, by_cycle.recorder.group_lrs, strict=True):
        assert all(close(x, y, 1e-12) for x, y in zip(a, b, strict=True))
    if by_cycle.opt.momentum:  # (an SGD without keeps the scheduled moms it does not apply)
        recorded = zip(by_sched.recorder.group_moms, by_cycle.recorder.group_moms, strict=True)
        for a, b in recorded:
            assert all(close(x, y, 1e-12) for x, y in zip(a, b, strict=True))
    for a, b in zip(by_sched.model.parameters(), by_cycle.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opt_func", [Adam, torch.optim.AdamW], ids=["fused", "torch"])
def test_scheduled_wd_spares_the_groups_without_decay(opt_func):
    """wd_bn_bias=False: each layer group has a decayed param group and one (BatchNorm,
    biases) without decay; a scheduled wd goes to the decayed one only, per layer group."""
    learn = make_learner(opt_func=opt_func)  # tiny_model: BatchNorm and biases in both groups
    assert learn.group_map.decay == (True, False, True, False)
    sched = ParamScheduler({"wd": SchedLin([0.1, 0.2], 0.0), "lr": lambda p: slice(1e-4, 1e-2)})
    learn.fit(1, cbs=sched)
    n = N_BATCHES
    for k, (wds, lrs) in enumerate(
        zip(sched.group_hps["wd"], learn.recorder.group_lrs, strict=True)
    ):
        assert all(close(w, lin(s, 0.0, k / n)) for w, s in zip(wds, (0.1, 0.2), strict=True))
        assert lrs == pytest.approx([1e-4, 1e-2], rel=TOL)  # the slice: geometric over groups
    held = [g["wd" if "wd" in g else "weight_decay"] for g in learn.opt.param_groups]
    last = (n - 1) / n
    assert held == pytest.approx([lin(0.1, 0, last), 0.0, lin(0.2, 0, last), 0.0], abs=TOL)


def test_scheduled_wd_inside_fit_one_cycle_reaches_the_kernel():
    """In fit_one_cycle the optimizer schedules lr and mom; a ParamScheduler of wd runs beside
    it, and the fused kernel steps with both: p <- p * (1 - lr_k * wd_k) - lr_k * grad."""
    model = linear_model()
    learn = make_learner(model=model, splitter=two_linear_groups, opt_func=SGD, wd_bn_bias=True)
    probe = StepProbe(layer_ids(model, two_linear_groups))
    sched = ParamScheduler({"wd": SchedLin(0.5, 0.1)})
    learn.fit_one_cycle(1, 1e-2, cbs=[sched, probe])
    n = N_BATCHES
    assert len(probe.steps) == len(sched.hps["wd"]) == n
    for k, step in enumerate(probe.steps):
        lr, _ = one_cycle(k / n, 1e-2)
        wd = lin(0.5, 0.1, k / n)
        assert close(sched.hps["wd"][k], wd) and close(learn.recorder.lrs[k], lr)
        for before, grad, _layer, delta in step:
            assert_step(delta, -lr * wd * before - lr * grad, before)


@pytest.mark.parametrize("name", ["lr", "mom"])
@pytest.mark.parametrize("fit", ["fit_one_cycle", "fit_flat_cos", "fit_sgdr", "fine_tune"])
def test_lr_or_mom_in_a_one_cycle_fit_is_refused(name, fit):
    learn = make_learner()
    sched = ParamScheduler({name: SchedNo(0.5, 0.5)})
    args = (1, 1) if fit == "fit_sgdr" else (1,)
    with pytest.raises(
        ValueError, match=rf"schedules '{name}', which the one-cycle schedule of this fit"
    ):
        getattr(learn, fit)(*args, cbs=sched)
    learn.fit(1, cbs=sched)  # the learner and the scheduler go on in a plain fit
    assert len(sched.hps[name]) == N_BATCHES


def test_refusals_when_the_fit_starts_or_at_a_batch():
    learn = make_learner(opt_func=SGD)
    bad = [
        (
            {"sqr_mom": SchedNo(0.9, 0.9)},
            ValueError,
            r"scheds names 'sqr_mom', which learn.opt \(SGD\) does not have; "
            r"its hyper-parameters: \['lr', 'mom', 'wd'\]",
        ),
        (
            {"lr": [SchedNo(1, 1)] * 3},
            ValueError,
            r"list of 3 functions, this learner has 2 layer groups",
        ),
        (
            {"lr": lambda p: [1e-3, 1e-3, 1e-3]},
            ValueError,
            r"scheds\['lr'\] at pct_train 0 gave 3 values, this learner has 2 layer groups",
        ),
        (
            {"lr": SchedLin(1e-3, -1e-3)},
            ValueError,
            r"scheds\['lr'\] at pct_train 0.5625 gave -0.000125\d* \(layer group 0\): "
            r"lr should be finite and >= 0",
        ),
        (
            {"mom": SchedNo(1.0, 1.0)},
            ValueError,
            r"scheds\['mom'\] at pct_train 0 gave 1.0 \(layer group 0\): mom should be in \[0, 1\)",
        ),
        (
            {"lr": lambda p: "fast"},
            TypeError,
            r"scheds\['lr'\] at pct_train 0 gave str 'fast': expected a number",
        ),
        ({"lr": lambda p: [1e-3, None]}, TypeError, r"gave NoneType None for layer group 1"),
        (
            {"lr": lambda p: slice(1e-3, -1.0)},
            ValueError,
            r"the slice.stop should be a finite number > 0",
        ),
    ]
    for scheds, exc, match in bad:
        with pytest.raises(exc, match=match):
            learn.fit(2, cbs=ParamScheduler(scheds))
    torch_sgd = make_learner(opt_func=torch.optim.SGD)
    with pytest.raises(ValueError, match=r"learn.opt \(OptimWrapper\(SGD\)\) does not have"):
        torch_sgd.fit(1, cbs=ParamScheduler({"eps": SchedNo(1e-8, 1e-8)}))
    learn.fit(1, cbs=ParamScheduler({"lr": SchedNo(1e-3, 1e-3)}))  # usable after each
    bare = make_learner()
    groups = [{"params": g["params"]} for g in bare.opt.param_groups]
    bare.opt = torch.optim.SGD(groups, lr=0.1)  # not wrapped: no set_hyper
    with pytest.raises(
        TypeError, match=r"learn.opt is a bare SGD: set learn.opt = OptimWrapper.of"
    ):
        bare.fit(1, cbs=ParamScheduler({"lr": SchedNo(1e-3, 1e-3)}))


def test_an_attached_scheduler_runs_every_fit_but_not_lr_finds_sweep():
    learn = make_learner()
    sched = ParamScheduler({"lr": SchedExp(1e-2, 1e-4)})
    learn.add_cb(sched)
    learn.fit(1)
    assert all(close(a, exp_(1e-2, 1e-4, k / N_BATCHES)) for k, a in enumerate(learn.recorder.lrs))
    with pytest.raises(ValueError, match=r"schedules 'lr', which lr_find sweeps"):
        learn.lr_find(num_it=5)
    learn.remove_cb(sched)
    learn.lr_find(num_it=5)
    learn.add_cb(ParamScheduler({"wd": SchedNo(0.0, 0.0)}))
    learn.lr_find(num_it=5)  # a schedule of another name does not touch the sweep
    lrs = learn.recorder.lrs
    assert len(lrs) >= 3 and lrs == pytest.approx([1e-7 * 1e8 ** (i / 5) for i in range(len(lrs))])


def test_one_scheduler_serves_several_fits_and_learners():
    sched = ParamScheduler({"lr": SchedNo(2e-3, 0.0)})
    a, b = make_learner(), make_learner(model=tiny_model(), splitter=two_groups)
    a.fit(1, cbs=sched)
    first = a.recorder.hps
    b.fit(2, cbs=sched)
    assert len(first["lr"]) == N_BATCHES and len(b.recorder.hps["lr"]) == 2 * N_BATCHES
    assert b.recorder.hps is sched.hps and a.recorder.hps is first


# ---- CUDA: no device synchronisation per batch ---------------------------------------------
@cuda_only
def test_set_hyper_every_step_waits_for_nothing_on_cuda():
    params = [torch.zeros(64, device="cuda", requires_grad=True) for _ in range(2)]
    opt = Adam([[params[0]], [params[1]]])
    f = SchedCos([1e-3, 1e-2], 1e-5)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()  # states allocated
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for k in range(10):
            opt.set_hyper("lr", f(k / 10))
            opt.set_hyper("wd", 0.01 * k)
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert opt.hypers[0]["lr"] == f(0.9)[0]


class _Strict(Callback):
    """Turns CUDA's sync debug mode to 'error' at its event and back at the matching one of a
    twin with another order."""

    def __init__(self, order: int, mode: str) -> None:
        super().__init__()
        self.order, self.mode = order, mode

    def before_batch(self) -> None:
        torch.cuda.set_sync_debug_mode(self.mode)


class _StrictStep(Callback):
    order = 95

    def before_step(self) -> None:
        torch.cuda.set_sync_debug_mode("error")

    def after_step(self) -> None:
        torch.cuda.set_sync_debug_mode("default")


@cuda_only
@pytest.mark.parametrize("opt_func", [Adam, SGD, torch.optim.AdamW], ids=["adam", "sgd", "torch"])
def test_a_scheduled_fit_on_cuda_syncs_neither_in_before_batch_nor_in_the_step(opt_func):
    learn = make_learner(data=easy_bunch(device="cuda"), opt_func=opt_func)
    sched = ParamScheduler({"lr": SchedCos([1e-3, 1e-2], 1e-5), "wd": SchedLin(0.1, 0.0)})
    cbs = [
        sched,
        _Strict(ParamScheduler.order - 1, "error"),
        _Strict(ParamScheduler.order + 1, "default"),
        _StrictStep(),
    ]
    try:
        learn.fit(1, cbs=cbs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(sched.hps["lr"]) == N_BATCHES
    assert learn.recorder.group_lrs[-1] == pytest.approx(
        SchedCos([1e-3, 1e-2], 1e-5)((N_BATCHES - 1) / N_BATCHES)
    )


def test_recorder_hps_describe_the_last_fit_and_plot_sched_draws_them():
    """fastai's recorder.hps after fit_one_cycle are its lr and mom per batch (ours: also
    after any fit); after a ParamScheduler, its names, and never a previous fit's."""
    learn = make_learner()
    learn.fit(1, cbs=ParamScheduler({"wd": SchedLin(0.0, 0.1)}))
    rec = learn.recorder
    assert list(rec.hps) == ["wd"] and len(rec.hps["wd"]) == N_BATCHES
    (ax,) = rec.plot_sched().axes  # fastai's default: the scheduled names
    assert ax.get_ylabel() == "wd" and list(ax.get_lines()[0].get_ydata()) == rec.hps["wd"]
    assert [a.get_ylabel() for a in rec.plot_sched(["lr", "wd"]).axes] == ["Learning rate", "wd"]
    learn.fit_one_cycle(1, 1e-3)
    assert list(rec.hps) == ["lr", "mom"]  # not the earlier fit's wd
    assert rec.hps["lr"] == rec.lrs and rec.hps["mom"] == rec.moms and len(rec.lrs) == N_BATCHES
    with pytest.raises(ValueError, match=r"keys should be one of \['lr', 'mom'\]"):
        rec.plot_sched("wd")
