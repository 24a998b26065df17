"""fastai v2's lr_find API (fastbook chapter 5) on top of v1's: lr_find(suggest_funcs=...)
returning SuggestedLRs named after the functions, the suggestion functions in fastai's form
f(lrs, losses, num_it) (slide included), show_plot marking them, recorder.plot_lr_find and
recorder.plot_sched. Tiny models on the fake bunch of test_callback."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from fakes import make_learner

from fastcore_ext.callback.lr_finder import suggest
from fastcore_ext.schedule import (
    Suggestions,
    exp_sweep,
    lr_find_window,
    minimum,
    slide,
    steep,
    suggest_lrs,
    valley,
)

LRS = exp_sweep(1e-7, 10.0, 100)


def _noisy_curve(seed: int) -> list[float]:
    """A random walk of 100 losses, fresh per seed (not a constant, not a clean shape)."""
    g = np.random.default_rng(seed)
    return list(2.0 + np.cumsum(g.normal(-0.01, 0.03, 100)))


@pytest.fixture(scope="module")
def swept():
    """A learner after lr_find(num_it=30) and what that v1 call returned. (lr_find puts the
    RNG back, so back-to-back sweeps record the same curve; a test that compares two calls
    makes both, as other tests may draw from the global RNG in between.)"""
    learn = make_learner(model_seed=7)
    return learn, learn.lr_find(num_it=30)


# ---- the suggestion functions in fastai's form --------------------------------------------
@pytest.mark.parametrize("func", [valley, steep, minimum, slide])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_suggestion_functions_take_fastais_arguments(func, seed):
    """f(lrs, losses, num_it) on float64 tensors (what lr_find passes, as fastai passes
    tensors) gives what f(lrs, losses) gives on the lists."""
    losses = _noisy_curve(seed)
    expected = func(LRS, losses)
    lr, (point_lr, point_loss) = func(
        torch.tensor(LRS, dtype=torch.float64), torch.tensor(losses, dtype=torch.float64), 100
    )
    assert (lr, (point_lr, point_loss)) == expected
    assert all(type(v) is float for v in (lr, point_lr, point_loss))


def test_slide_follows_fastai():
    """fastai's slide on curves whose numpy.gradient is known: from the end, r and l =
    r - lr_diff slide left while |g[r] - g[l]| > thresh; the suggestion is lrs[l] of the
    last l where that held, marked at the loss interpolated in log10(lr)."""
    lrs = LRS[:40]
    # slope -0.01 up to index 25, then +0.1: g = -0.01 (to 24), 0.045 (25), 0.1 (26 on).
    # (r, l) = (39, 24) ... (25, 10) differ by >= 0.055; (24, 9) both -0.01: stop at l = 10
    losses = [1.0 - 0.01 * min(i, 25) + 0.1 * max(i - 25, 0) for i in range(40)]
    lr, (point_lr, point_loss) = slide(lrs, losses)
    assert lr == point_lr == lrs[10]
    assert point_loss == pytest.approx(losses[10], rel=1e-12)
    assert slide(lrs, losses, 40, adjust_value=0.5)[0] == lrs[10] * 0.5
    # lr_diff 20: (39, 19) ... (25, 5) differ, (24, 4) do not: l = 5; lr_diff 3: (39, 36)
    # do not differ (0.1 both), lrs[-4]
    assert slide(lrs, losses, lr_diff=20)[0] == lrs[5]
    assert slide(lrs, losses, lr_diff=3)[0] == lrs[36]
    # a threshold above every difference: it never held, lrs[-1 - lr_diff]
    assert slide(lrs, losses, thresh=1.0)[0] == lrs[-16]
    # slopes -1 then +2 (exact in binary): g = -1 (to 24), 1.5 (25), 2 (26 on); a
    # difference equal to thresh stops the slide (fastai's strict >)
    exact = [30.0 - min(i, 25) + 2 * max(i - 25, 0) for i in range(40)]
    assert slide(lrs, exact, thresh=3.0)[0] == lrs[24]
    assert slide(lrs, exact, thresh=2.99)[0] == lrs[11]
    # g = 0.02 i (0.01 and 0.77 at the ends): every pair 15 apart differs, down to lrs[0]
    assert slide(lrs, [0.01 * i * i for i in range(40)])[0] == lrs[0]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"lr_diff": 0}, ValueError, "lr_diff should be >= 1, got 0"),
        ({"lr_diff": 2.0}, TypeError, "lr_diff should be an int"),
        ({"thresh": -0.1}, ValueError, "thresh should be a finite number >= 0"),
        ({"adjust_value": 0.0}, ValueError, "adjust_value should be > 0"),
        ({"adjust_value": "x"}, TypeError, "adjust_value should be a number"),
    ],
)
def test_slide_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        slide(LRS, _noisy_curve(0), **kwargs)


def test_slide_needs_lr_diff_plus_one_points():
    with pytest.raises(ValueError, match=r"need at least 16 \(lr, loss\) points, got 15"):
        slide(LRS[:15], _noisy_curve(0)[:15])
    assert slide(LRS[:6], _noisy_curve(0)[:6], lr_diff=5)[0] > 0


# ---- suggest: the functions applied to a recorded sweep ---------------------------------------
@pytest.mark.parametrize("seed", [3, 4])
def test_suggest_equals_suggestions_on_the_same_curve(seed):
    losses = _noisy_curve(seed)
    expected = suggest_lrs(LRS, losses, 100)
    got, points = suggest((minimum, valley, steep), LRS, losses, 100)
    assert got._fields == ("minimum", "valley", "steep")
    assert (got.valley, got.steep, got.minimum) == expected
    w_lrs, w_losses = lr_find_window(LRS, losses, 100)
    assert points == [f(w_lrs, w_losses)[1] for f in (minimum, valley, steep)]


def test_suggest_names_fields_after_the_functions():
    losses = _noisy_curve(5)
    got, _ = suggest(
        (partial(slide, lr_diff=5), lambda lrs, losses, n: (1.0, (1.0, 2.0))), LRS, losses, 100
    )
    assert got._fields == ("slide", "_1")  # a partial's function; a lambda by position
    got, _ = suggest((steep, steep), LRS, losses, 100)
    assert got._fields == ("steep", "_1") and got[0] == got[1]


def test_suggest_says_which_function_returned_what():
    def half(lrs, losses, num_it):
        return 1e-3  # no (lr, loss) point

    with pytest.raises(TypeError, match=r"suggest_funcs: half should return \(lr, \(lr, loss\)\)"):
        suggest((valley, half), LRS, _noisy_curve(0), 100)


# ---- Learner.lr_find(suggest_funcs=...) ---------------------------------------------------
def test_lr_find_without_suggest_funcs_is_v1(swept):
    learn, sugg = swept
    rec = learn.recorder
    assert type(sugg) is Suggestions and rec.suggestions == sugg
    assert sugg == suggest_lrs(rec.lrs, rec.losses, 30)


def test_lr_find_suggest_funcs_unpacks_as_in_the_fastbook(swept):
    learn, _ = swept
    sugg = learn.lr_find(num_it=30)
    curve = (list(learn.recorder.group_lrs), list(learn.recorder.losses))
    lr_min, lr_steep = learn.lr_find(num_it=30, suggest_funcs=(minimum, steep))
    # lr_find puts the learner back, so the second sweep records the same curve
    assert (learn.recorder.group_lrs, learn.recorder.losses) == curve
    assert (lr_min, lr_steep) == (sugg.minimum, sugg.steep)
    res = learn.lr_find(num_it=30, suggest_funcs=[valley, minimum, steep])
    assert type(res).__name__ == "SuggestedLRs" and res._fields == ("valley", "minimum", "steep")
    assert (res.valley, res.minimum, res.steep) == (sugg.valley, sugg.minimum, sugg.steep)
    assert learn.recorder.suggestions == sugg  # v1's, for recorder.plot()
    res = learn.lr_find(num_it=30, suggest_funcs=valley)  # fastai's default: one function
    assert res._fields == ("valley",) and res.valley == sugg.valley


def test_lr_find_calls_a_users_function_as_fastai_does(swept):
    learn, _ = swept
    calls = []

    def at_lowest(lrs, losses, num_it):  # written for fastai: tensor methods
        calls.append((lrs.clone(), losses.clone(), num_it))
        i = int(losses.argmin())
        return lrs[i].item(), (lrs[i].item(), losses[i].item())

    res = learn.lr_find(num_it=30, suggest_funcs=(at_lowest, minimum))
    rec = learn.recorder
    w_lrs, w_losses = lr_find_window(rec.lrs, rec.losses, 30)
    ((lrs, losses, num_it),) = calls
    assert lrs.tolist() == w_lrs and losses.tolist() == w_losses and num_it == 30
    assert res._fields == ("at_lowest", "minimum")
    assert res.at_lowest == w_lrs[int(np.argmin(w_losses))] == res.minimum * 10


@pytest.mark.parametrize(
    "value, exc, match",
    [
        ("valley", TypeError, "suggest_funcs should be a sequence of suggestion functions"),
        ([valley, 3], TypeError, r"suggest_funcs should be .*got \[<function valley"),
        (5, TypeError, "suggest_funcs should be a sequence of suggestion functions"),
        ((), ValueError, "suggest_funcs should hold at least one suggestion function"),
        ([], ValueError, "got an empty sequence"),
    ],
)
def test_lr_find_bad_suggest_funcs(value, exc, match):
    learn = make_learner()
    with pytest.raises(exc, match=match):
        learn.lr_find(num_it=30, suggest_funcs=value)
    assert learn.recorder.group_lrs == []  # refused before any sweep


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"start_lr": 1e-3, "end_lr": 1e-3}, ValueError, "start_lr should be below end_lr"),
        ({"start_lr": 1, "end_lr": 1e-5}, ValueError, r"end_lr: .*got start_lr=1 and end_lr=1e-05"),
        (
            {"start_lr": slice(1e-2, 1.0), "end_lr": 0.5},
            ValueError,
            r"below end_lr \(layer group 1\).*got start_lr=1 and end_lr=0.5",
        ),
        ({"start_lr": 0.0}, ValueError, "start_lr should be a finite number > 0"),
        ({"end_lr": math.inf}, ValueError, "end_lr should be a finite number > 0"),
        ({"start_lr": np.float32(-1.0)}, ValueError, "start_lr should be a finite number > 0"),
        ({"num_it": 1}, ValueError, "num_it should be >= 2"),
        ({"num_it": 2.0}, TypeError, "num_it should be an int"),
    ],
)
def test_lr_find_checks_its_range_before_any_batch(kwargs, exc, match):
    """start_lr == end_lr ran every batch, then ZeroDivisionError in `steep`; start_lr above
    end_lr swept downwards and suggested start_lr."""
    learn = make_learner()
    with pytest.raises(exc, match=match):
        learn.lr_find(**kwargs)
    assert learn.recorder.group_lrs == []  # refused before any sweep


def test_lr_find_show_plot_marks_the_suggestions(swept, monkeypatch, capsys):
    learn, _ = swept
    shown = []
    monkeypatch.setattr(learn.recorder, "show", shown.append)
    capsys.readouterr()
    sugg = learn.lr_find(num_it=30)
    assert "LR Finder is complete, type learn.recorder.plot() to see" in capsys.readouterr().out
    res = learn.lr_find(num_it=30, suggest_funcs=(minimum, steep), show_plot=False)
    assert shown == []  # a call in v1's form draws nothing, as v1's (it says how to)
    learn.lr_find(num_it=30, show_plot=False)
    assert "LR Finder" not in capsys.readouterr().out  # asked for no plot: no hint either
    assert learn.lr_find(num_it=30, suggest_funcs=(minimum, steep)) == res
    (fig,) = shown  # suggest_funcs, v2's argument: v2's default, show_plot=True
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["minimum", "steep"]
    marks = [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in ax.get_lines()[1:]]
    w_lrs, w_losses = lr_find_window(learn.recorder.lrs, learn.recorder.losses, 30)
    assert marks == [minimum(w_lrs, w_losses)[1], steep(w_lrs, w_losses)[1]]
    assert marks[0][0] == sugg.minimum * 10  # minimum's point: the lowest loss itself
    learn.lr_find(num_it=30, show_plot=True)  # v1: recorder.plot() with its three marks
    texts = [t.get_text() for t in shown[1].axes[0].get_legend().get_texts()]
    assert texts == [f"{n}: {v:.2e}" for n, v in sugg._asdict().items()]
    # marked where v2's plot marks them: minimum at the lowest loss (its marker was at a
    # tenth of that lr, off the curve when the lowest loss came early)
    v1_marks = [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in shown[1].axes[0].get_lines()[1:]]
    assert v1_marks == [f(w_lrs, w_losses)[1] for f in (valley, steep, minimum)]


# ---- recorder.plot_lr_find ------------------------------------------------------------------
def test_plot_lr_find_is_plots_curve_from_the_first_batch(swept):
    learn, _ = swept
    rec = learn.recorder
    fig = rec.plot_lr_find()
    ax = fig.axes[0]
    assert list(ax.get_lines()[0].get_xdata()) == rec.lrs[:-5]
    assert list(ax.get_lines()[0].get_ydata()) == rec.losses[:-5]
    assert ax.get_legend() is None and len(ax.get_lines()) == 1  # no suggestions given
    v1 = rec.plot(skip_start=0, suggestions=False).axes[0]  # the same drawing
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale()) == (
        v1.get_title(),
        v1.get_xlabel(),
        v1.get_ylabel(),
        v1.get_xscale(),
    )
    assert list(v1.get_lines()[0].get_xdata()) == list(ax.get_lines()[0].get_xdata())
    fig = rec.plot_lr_find(skip_end=0, suggestions=[(1e-3, 0.5)], nms=["mine"])
    ax = fig.axes[0]
    assert len(ax.get_lines()[0].get_xdata()) == len(rec.group_lrs)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mine"]
    assert (ax.get_lines()[1].get_xdata()[0], ax.get_lines()[1].get_ydata()[0]) == (1e-3, 0.5)
    assert rec.plot_lr_find(return_fig=False) is None


def test_plot_lr_find_errors(swept):
    learn, _ = swept
    rec = learn.recorder
    with pytest.raises(TypeError, match="return_fig should be a bool"):
        rec.plot_lr_find(return_fig=1)
    with pytest.raises(ValueError, match="nms should be a sequence of 2 names"):
        rec.plot_lr_find(suggestions=[(1e-3, 0.5), (1e-2, 0.4)], nms=["a"])
    with pytest.raises(ValueError, match="give suggestions too"):
        rec.plot_lr_find(nms=["a"])
    with pytest.raises(TypeError, match=r"suggestions should be a sequence of \(lr, loss\)"):
        rec.plot_lr_find(suggestions=[1e-3], nms=["a"])
    with pytest.raises(ValueError, match="skip_end should be an int >= 0"):
        rec.plot_lr_find(skip_end=-1)
    with pytest.raises(ValueError, match=r"recorder.plot_lr_find\(\) needs a recorded run"):
        make_learner().recorder.plot_lr_find()


# ---- recorder.plot_sched --------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    learn = make_learner(model_seed=3)
    learn.fit_one_cycle(2, max_lr=slice(1e-4, 1e-2))
    return learn


def test_plot_sched_draws_lr_and_mom_as_plot_lr(fitted):
    rec = fitted.recorder
    fig = rec.plot_sched()
    assert [ax.get_ylabel() for ax in fig.axes] == ["Learning rate", "Momentum"]
    assert tuple(fig.get_size_inches()) == (12, 4)  # fastai v2's 6 x 4 per panel
    for ax, values in zip(fig.axes, (rec.group_lrs, rec.group_moms), strict=True):
        for g, line in enumerate(ax.get_lines()):
            assert list(line.get_ydata()) == [v[g] for v in values]
    assert fig.axes[0].get_yscale() == "log"  # groups 100x apart, as plot_lr draws them
    same = rec.plot_lr(show_moms=True)
    for a, b in zip(fig.axes, same.axes, strict=True):
        assert [list(ln.get_ydata()) for ln in a.get_lines()] == [
            list(ln.get_ydata()) for ln in b.get_lines()
        ]
    (ax,) = rec.plot_sched("mom", figsize=(5, 3)).axes
    assert ax.get_ylabel() == "Momentum" and len(ax.get_lines()) == 2
    assert [ax.get_ylabel() for ax in rec.plot_sched(keys=["lr"]).axes] == ["Learning rate"]


@pytest.mark.parametrize("keys", ["wd", ["lr", "sqr_mom"], [], ("lr", "lr"), 3])
def test_plot_sched_bad_keys(fitted, keys):
    with pytest.raises(ValueError, match=r"keys should be one of \['lr', 'mom'\] or a sequence"):
        fitted.recorder.plot_sched(keys)


def test_plot_sched_needs_a_fit_and_a_good_figsize(fitted):
    with pytest.raises(ValueError, match=r"recorder.plot_sched\(\) needs a recorded fit"):
        make_learner().recorder.plot_sched()
    with pytest.raises(ValueError, match="figsize"):
        fitted.recorder.plot_sched(figsize=(0, 1))


def test_star_import_gives_the_suggestion_functions():
    namespace: dict = {}
    exec("from fastcore_ext.vision import *", namespace)
    for f in (valley, steep, minimum, slide):
        assert namespace[f.__name__] is f
    assert math.isfinite(namespace["valley"](LRS, _noisy_curve(0), 100)[0])


def test_lr_find_wd_decays_the_sweep_and_is_put_back():
    """fastai v1's lr_find(wd=): the sweep's weight decay; the optimizer's after it as before."""
    learn = make_learner(model_seed=7)
    before = [g["wd"] for g in learn.opt.param_groups]
    learn.lr_find(num_it=8)
    plain = list(learn.recorder.raw_losses)
    learn.lr_find(num_it=8)
    assert list(learn.recorder.raw_losses) == plain  # the sweep is repeatable
    learn.lr_find(num_it=8, wd=0.5)
    decayed = list(learn.recorder.raw_losses)
    assert decayed[0] == plain[0] and decayed != plain
    assert [g["wd"] for g in learn.opt.param_groups] == before
    with pytest.raises(ValueError, match="wd"):
        learn.lr_find(num_it=8, wd=-1.0)


def test_a_plain_lr_find_on_v2_data_draws_as_fastai_v2(tmp_path, capsys):
    """`ImageDataLoaders` (fastai v2's data): a plain `learn.lr_find()` draws the curve with
    valley marked and returns SuggestedLRs(valley=...), as fastai v2's; on `ImageDataBunch`
    (v1's) it draws nothing and prints v1's line."""
    from fastcore_ext.data import ImageDataBunch, ImageDataLoaders, demo_dataset
    from fastcore_ext.plots import saved_file
    from fastcore_ext.vision import vision_learner

    root = demo_dataset(tmp_path / "demo", n_per_class=4, size=32)
    v2 = ImageDataLoaders.from_folder(root, valid_pct=0.25, seed=0, bs=8, num_workers=0)
    v1 = ImageDataBunch.from_folder(root, size=32, bs=8, num_workers=0)
    assert (v2.fastai_version, v1.fastai_version) == (2, 1)
    learn = vision_learner(v2, "resnet18", pretrained=False, path=tmp_path)
    res = learn.lr_find(num_it=12)
    assert type(res).__name__ == "SuggestedLRs" and res._fields == ("valley",)
    out = capsys.readouterr().out
    assert "LR Finder is complete" not in out and "Plot saved: " in out
    import matplotlib.pyplot as plt

    fig = plt.gcf()
    assert saved_file(fig) is not None and fig.axes[0].get_legend() is not None
    learn = vision_learner(v1, "resnet18", pretrained=False, path=tmp_path)
    learn.lr_find(num_it=12)
    out = capsys.readouterr().out
    assert "LR Finder is complete" in out and "Plot saved" not in out


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"num_it": 3}, r"only 2 points of the sweep \(num_it=3\): too few"),
        (
            {"num_it": 100, "start_lr": 100.0, "end_lr": 1e9},  # diverges at once
            r"sweep, which stopped after 3 of its 100 iterations as the loss diverged: too few",
        ),
    ],
)
def test_lr_find_warns_when_its_suggestions_come_from_few_points(kwargs, said):
    """lr_find(num_it=3) suggested from 2 points silently (fastai's fail or do the same)."""
    learn = make_learner(model_seed=7)
    with pytest.warns(UserWarning, match=said + " for the loss's slope to be more than noise"):
        learn.lr_find(**kwargs)


def test_lr_find_of_enough_points_does_not_warn(recwarn):
    make_learner(model_seed=7).lr_find(num_it=30)
    assert not [w for w in recwarn if "lr_find" in str(w.message)]
