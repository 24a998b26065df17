"""Learner: fits that learn, one-cycle hyper-parameters, discriminative lrs, freezing,
lr_find's exact restore, argument checks. Tiny models on the fake bunch of test_callback."""

from __future__ import annotations

import copy
import io
import math
import random
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fakes import easy_bunch, make_learner, tiny_model
from torch import nn

import fastcore_ext.learner as learner_mod
from fastcore_ext.callback import Callback, CancelFitException
from fastcore_ext.learner import Learner
from fastcore_ext.losses import BCEWithLogitsLossFlat, MSELossFlat
from fastcore_ext.metrics import accuracy, error_rate
from fastcore_ext.optim import SGD, Adam
from fastcore_ext.schedule import Suggestions, exp_sweep, one_cycle


def three_group_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # group 0
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),  # group 1
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),  # group 2
        nn.Flatten(),
        nn.Dropout(0.2),  # draws from torch's RNG
        nn.Linear(8, 2),
    )


def three_groups(m: nn.Module) -> list[nn.Module]:
    return [m[:3], m[3:6], m[6:]]


def three_group_learner(**kwargs):
    return make_learner(model=three_group_model(), splitter=three_groups, **kwargs)


# ---- fits that learn ---------------------------------------------------------------------------
def test_fit_one_cycle_learns():
    learn = make_learner(metrics=[error_rate, accuracy])
    learn.fit_one_cycle(4, max_lr=1e-2)
    rec = learn.recorder
    assert len(rec.raw_losses) == 4 * len(learn.data.train_dl)
    first, last = np.mean(rec.raw_losses[:4]), np.mean(rec.raw_losses[-4:])
    assert last < 0.6 * first
    assert rec.valid_losses[-1] < rec.valid_losses[0]
    assert rec.metrics[-1][0] <= 0.15  # error_rate on the easy split
    assert rec.metrics[-1][0] + rec.metrics[-1][1] == pytest.approx(1.0)
    assert rec.epochs == [0, 1, 2, 3]


def test_fit_flat_cos_is_fastais_flat_then_cosine_schedule():
    """fastai v2's fit_flat_cos(n, lr): lr flat for the first 75 % of the steps, then a cosine
    to lr / 1e5 (combined_cos(0.75, lr, lr, lr / 1e5)); momentum constant 0.9."""
    learn = make_learner()
    learn.fit_flat_cos(2, slice(1e-3, 1e-2))
    lrs, moms = learn.recorder.group_lrs, learn.recorder.group_moms
    total = len(lrs)
    for k, (got, m) in enumerate(zip(lrs, moms, strict=True)):
        pos = k / total
        if pos < 0.75:
            want = 1e-2
        else:
            want = 1e-2 / 1e5 + (1e-2 - 1e-2 / 1e5) / 2 * (
                1 + math.cos(math.pi * (pos - 0.75) / 0.25)
            )
        assert got[-1] == pytest.approx(want, rel=1e-6) and got[0] == pytest.approx(want / 10)
        assert m == [pytest.approx(0.9)] * len(m)
    assert lrs[0][-1] == pytest.approx(1e-2) and lrs[-1][-1] < 2e-3  # annealing at the end


def test_fit_learns_with_sgd():
    learn = make_learner(opt_func=SGD, metrics=error_rate)
    learn.fit(3, lr=0.1)
    assert learn.recorder.metrics[-1][0] <= 0.2
    assert learn.recorder.valid_losses[-1] < math.log(2)
    assert all(lrs == [0.1, 0.1] for lrs in learn.recorder.group_lrs)
    assert all(moms == [0.0, 0.0] for moms in learn.recorder.group_moms)  # fastai's SGD: mom=0


def test_default_loss_and_optimizer():
    learn = make_learner()
    assert isinstance(learn.loss_func, nn.CrossEntropyLoss)
    assert isinstance(learn.opt, Adam)
    # two layer groups, each a decayed param group (Adam's default wd) and one without decay
    # (BatchNorm and biases: wd_bn_bias=False)
    assert [g["wd"] for g in learn.opt.param_groups] == [0.01, 0.0, 0.01, 0.0]
    assert learn.group_map.layer == (0, 0, 1, 1) and len(learn.layer_groups) == 2
    assert learn.dls is learn.data


def test_metrics_over_whole_validation_set():
    learn = make_learner(metrics=accuracy)  # valid batches of 16, 16 and 8
    learn.fit(1, lr=1e-2)
    learn.model.eval()
    with torch.no_grad():
        preds = torch.cat([learn.model(x) for x, _ in learn.data.valid_dl])
        targs = torch.cat([y for _, y in learn.data.valid_dl])
    assert learn.recorder.metrics[0][0] == pytest.approx(accuracy(preds, targs).item())
    whole_loss = nn.functional.cross_entropy(preds, targs).item()
    assert learn.recorder.valid_losses[0] == pytest.approx(whole_loss, rel=1e-5)


# ---- one-cycle -----------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:start_epoch=")  # the schedule alone, no checkpoint
@pytest.mark.parametrize("start_epoch", [0, 1])
def test_recorded_hypers_equal_closed_form(start_epoch):
    learn = three_group_learner()
    lr_max = learn.lr_range(slice(1e-4, 1e-2))
    kw = dict(div=10.0, div_final=1e4, pct_start=0.3, moms=(0.9, 0.8, 0.9))
    learn.fit_one_cycle(3, max_lr=slice(1e-4, 1e-2), start_epoch=start_epoch, **kw)
    n = len(learn.data.train_dl)
    total = 3 * n
    rec = learn.recorder
    assert len(rec.group_lrs) == (3 - start_epoch) * n
    for i, (lrs, moms) in enumerate(zip(rec.group_lrs, rec.group_moms, strict=True)):
        k = start_epoch * n + i
        expected = [
            one_cycle(k / total, lr, kw["div"], kw["div_final"], kw["pct_start"], kw["moms"])
            for lr in lr_max
        ]
        assert lrs == [e[0] for e in expected]
        assert moms == [e[1] for e in expected]
    assert learn.opt.schedule_step == total  # the optimizer's own counter agrees
    assert rec.epochs == list(range(start_epoch, 3))


def test_optimizer_answers_its_schedule_at_a_step():
    learn = three_group_learner()
    with pytest.raises(ValueError, match="hypers_at needs a one-cycle schedule"):
        learn.opt.hypers_at(0)
    kw = dict(div=10.0, div_final=1e4, pct_start=0.3, moms=(0.9, 0.8, 0.9))
    per_layer = [1e-4, 1e-3, 1e-2]
    learn.opt.set_one_cycle(20, learn.group_map.expand(per_layer), **kw)
    for k in (0, 5, 6, 19, 20, 25):  # past the end the final values hold
        lrs, moms = learn.opt.hypers_at(k)  # one per param group, two per layer group here
        expected = learn.group_map.expand([one_cycle(min(k / 20, 1), lr, **kw) for lr in per_layer])
        assert lrs == [e[0] for e in expected] and moms == [e[1] for e in expected]


def test_fit_one_cycle_defaults():
    learn = make_learner()
    learn.fit_one_cycle(1)
    rec = learn.recorder
    peak = max(lrs[-1] for lrs in rec.group_lrs)
    assert peak <= 1e-3 and peak > 1e-3 * 0.9  # fastai v2's default max_lr
    assert rec.group_lrs[0] == [1e-3 / 25, 1e-3 / 25]
    assert rec.group_moms[0] == [0.95, 0.95]


def test_fit_one_cycle_takes_fastai_v2s_lr_max():
    a, b = make_learner(), make_learner()
    a.fit_one_cycle(1, max_lr=2e-3)
    b.fit_one_cycle(1, lr_max=2e-3)
    assert (
        a.recorder.group_lrs == b.recorder.group_lrs
        and max(lrs[-1] for lrs in b.recorder.group_lrs) <= 2e-3
    )
    with pytest.raises(TypeError, match="give max_lr .* or lr_max .*, not both"):
        b.fit_one_cycle(1, 1e-3, lr_max=1e-3)
    for name in ("max_lr", "lr_max"):  # the error names the argument given
        with pytest.raises(TypeError, match=f"^{name} should be a float, got str '3e-3'"):
            b.fit_one_cycle(1, **{name: "3e-3"})


def data_epochs_of(learn: Learner) -> list[int]:
    """The list the learner's training loader appends every set_epoch(e) to."""
    seen: list[int] = []
    dl = learn.data.train_dl
    original = dl.set_epoch

    def spy(e):
        seen.append(e)
        original(e)

    dl.set_epoch = spy
    return seen


def test_set_epoch_called_each_epoch():
    learn = make_learner()
    seen = data_epochs_of(learn)
    with pytest.warns(UserWarning, match=r"start_epoch=2, but this learner has trained 0 epoch"):
        learn.fit_one_cycle(4, start_epoch=2)  # a resume without its checkpoint: said
    assert seen == [2, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.fit_one_cycle(4, start_epoch=2)  # 4 epochs trained now: silent


def test_each_fit_draws_new_data_epochs():
    """A fit continues the data epochs of the learner's earlier fits (fastai's loaders
    shuffle and augment anew every epoch), an lr_find leaves them as they were, and a fit
    cut short counts only its finished epochs."""
    learn = make_learner()
    seen = data_epochs_of(learn)
    learn.fit(2, lr=1e-3)
    assert seen == [0, 1] and learn.epochs_trained == 2 and learn.epochs_done == 2
    learn.lr_find(num_it=3, show_plot=False)
    assert learn.epochs_trained == 2
    seen.clear()
    learn.fit_one_cycle(2)
    learn.fit(1, lr=1e-3)
    assert seen == [2, 3, 4] and learn.epochs_trained == 5 and learn.epochs_done == 1

    class StopAfterFirstBatch(Callback):
        def after_batch(self):
            raise CancelFitException

    seen.clear()
    learn.fit(3, lr=1e-3, cbs=StopAfterFirstBatch())
    assert seen == [5] and learn.epochs_trained == 5


# ---- learning rates per layer group --------------------------------------------------------
def test_lr_range_semantics():
    learn = three_group_learner()
    assert learn.lr_range(1e-3) == [1e-3] * 3
    assert learn.lr_range(slice(1e-3)) == [1e-4, 1e-4, 1e-3]
    got = learn.lr_range(slice(1e-6, 1e-4))
    assert got == pytest.approx([1e-6, 1e-5, 1e-4], rel=1e-12)
    assert got[0] == 1e-6 and got[-1] == 1e-4
    assert learn.lr_range([1e-3, 2e-3, 3e-3]) == [1e-3, 2e-3, 3e-3]
    assert learn.lr_range([1e-3]) == learn.lr_range((1e-3,)) == [1e-3] * 3  # fastai's listify
    with pytest.raises(ValueError, match=r"should have one value per layer group \(3\), got 2"):
        learn.lr_range([1e-3, 1e-2])
    assert learn.lr_range(np.array([1e-3, 2e-3, 3e-3])) == [1e-3, 2e-3, 3e-3]
    one = make_learner(splitter=None)
    assert one.lr_range(slice(1e-6, 1e-4)) == [1e-4] and one.lr_range(slice(1e-4)) == [1e-4]


def test_a_reversed_slice_is_warned_of():
    """fit_one_cycle(1, max_lr=slice(1e-3, 1e-6)) gave the head the smallest rate and the
    body the largest without a word."""
    learn = three_group_learner()
    down = r"lr_max: slice\(0.001, 1e-06\) goes down, so the first layer group gets 0.001 "
    with pytest.warns(UserWarning, match=down + r".* slice\(1e-06, 0.001\) gives the head"):
        assert learn.lr_range(slice(1e-3, 1e-6), "lr_max") == pytest.approx(
            [1e-3, 3.16e-5, 1e-6], rel=1e-2
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.lr_range(slice(1e-6, 1e-3)), learn.lr_range([0.0, 0.0, 1e-3])
        make_learner(splitter=None).lr_range(slice(1e-3, 1e-6))  # one group: nothing goes down


def test_fit_sets_group_lrs_from_slice():
    learn = three_group_learner()
    learn.fit(1, lr=slice(1e-5, 1e-3))
    expected = learn.lr_range(slice(1e-5, 1e-3))
    assert all(lrs == expected for lrs in learn.recorder.group_lrs)
    assert [g["lr"] for g in learn.opt.param_groups] == learn.group_map.expand(expected)


@pytest.mark.parametrize(
    ("lr", "exc", "match"),
    [
        ([1e-3, 1e-3], ValueError, r"lr should have one value per layer group \(3\), got 2"),
        (-1e-3, ValueError, "lr should be a finite number >= 0, got -0.001"),
        (float("nan"), ValueError, "finite"),
        ("1e-3", TypeError, "lr should be a float, got str"),
        (slice(1e-5, 1e-3, 2), ValueError, "takes no step"),
        (slice(None), ValueError, "needs a stop"),
        (slice(0.0, 1e-3), ValueError, r"lr\.start should be a finite number > 0"),
    ],
)
def test_lr_errors(lr, exc, match):
    learn = three_group_learner()
    with pytest.raises(exc, match=match):
        learn.fit(1, lr=lr)


def test_a_learning_rate_of_0_refreshes_batchnorm_statistics_only():
    """fastai's ``learn.fit(1, 0.)``: the weights stay, BatchNorm's running statistics move
    (also fit_one_cycle(lr_max=0.)); 0 in a slice (geometric) stays an error."""
    for fit in (lambda lrn: lrn.fit(1, 0.0), lambda lrn: lrn.fit_one_cycle(1, lr_max=0)):
        learn = three_group_learner()
        before = {k: v.clone() for k, v in learn.model.state_dict().items()}
        fit(learn)
        after = learn.model.state_dict()
        stats = [k for k in before if "running" in k or "num_batches" in k]
        assert stats and any(not torch.equal(before[k], after[k]) for k in stats)
        for k in set(before) - set(stats):
            assert torch.equal(before[k], after[k]), k


def test_weight_decay_per_group():
    learn = three_group_learner(wd=[0.0, 0.1, 0.2])  # each layer group: decayed, not decayed
    assert [g["wd"] for g in learn.opt.param_groups] == [0.0, 0.0, 0.1, 0.0, 0.2, 0.0]
    learn.fit(1, wd=0.05)
    assert [g["wd"] for g in learn.opt.param_groups] == [0.05, 0.0] * 3
    learn = three_group_learner(wd=[0.0, 0.1, 0.2], wd_bn_bias=True)
    assert [g["wd"] for g in learn.opt.param_groups] == [0.0, 0.1, 0.2]
    learn.fit(1, wd=0.05)
    assert [g["wd"] for g in learn.opt.param_groups] == [0.05] * 3
    with pytest.raises(ValueError, match="wd should be a float or one per layer group"):
        learn.fit(1, wd=[0.1, 0.1])
    with pytest.raises(ValueError, match="wd should be a finite number >= 0"):
        three_group_learner(wd=-1.0)


# ---- freezing ---------------------------------------------------------------------------------
def _trainable(learn):
    return [name for name, p in learn.model.named_parameters() if p.requires_grad]


def test_freeze_keeps_head_and_batchnorm():
    learn = three_group_learner()
    learn.freeze()
    assert _trainable(learn) == ["1.weight", "1.bias", "4.weight", "4.bias", "9.weight", "9.bias"]
    to_1 = ["1.weight", "1.bias", "3.weight", "3.bias", "4.weight", "4.bias", "9.weight", "9.bias"]
    learn.freeze_to(1)
    assert _trainable(learn) == to_1
    learn.freeze_to(-2)
    assert _trainable(learn) == to_1
    learn.unfreeze()
    assert len(_trainable(learn)) == len(list(learn.model.parameters()))
    with pytest.raises(ValueError, match=r"n should be in \[-3, 3\]"):
        learn.freeze_to(4)
    with pytest.raises(TypeError, match="n should be an int"):
        learn.freeze_to(1.0)


def test_frozen_params_bit_identical_after_fit_and_freezing_clears_the_state():
    learn = three_group_learner(wd=0.5)  # large weight decay: any decay would show
    learn.fit(1, lr=1e-2)
    assert len(learn.opt.state) == len(list(learn.model.parameters()))
    learn.freeze()
    assert not learn.opt.state  # fastai's freeze_to: opt.clear_state()
    frozen = {
        n: p.detach().clone() for n, p in learn.model.named_parameters() if not p.requires_grad
    }
    others = {n: p.detach().clone() for n, p in learn.model.named_parameters() if p.requires_grad}
    learn.fit_one_cycle(2, max_lr=1e-2)
    params = dict(learn.model.named_parameters())
    for name, before in frozen.items():
        assert torch.equal(params[name], before), name
    for name, before in others.items():
        assert not torch.equal(params[name], before), name  # BN and head trained
    assert len(learn.opt.param_groups) == 6  # 3 layer groups x (decayed, not decayed)
    assert {id(p) for p in learn.opt.state} == {id(p) for p in params.values() if p.requires_grad}
    head = learn.model[9].weight
    assert learn.opt.state[head]["step"] == 2 * len(learn.data.train_dl)  # counted afresh
    learn.unfreeze()
    assert not learn.opt.state
    learn.fit(1, lr=1e-2)
    assert not torch.equal(learn.model[0].weight, frozen["0.weight"])
    assert learn.opt.state[head]["step"] == len(learn.data.train_dl)


def test_fine_tune():
    learn = three_group_learner(metrics=error_rate)
    learn.progress.show_table = False
    learn.fine_tune(1, freeze_epochs=1)
    assert len(_trainable(learn)) == len(list(learn.model.parameters()))
    rec = learn.recorder  # the second (unfrozen) cycle
    base = 2e-3 / 2
    expected = learn.lr_range(slice(base / 100, base))
    assert rec.group_lrs[0] == pytest.approx([lr / 5.0 for lr in expected])  # div=5
    assert max(lrs[-1] for lrs in rec.group_lrs) <= base


# ---- lr_find ------------------------------------------------------------------------------------
def _full_state(learn):
    model = learn.model
    return dict(
        model={k: v.clone() for k, v in model.state_dict().items()},
        requires_grad=[p.requires_grad for p in model.parameters()],
        grads=[None if p.grad is None else p.grad.clone() for p in model.parameters()],
        modes=[m.training for m in model.modules()],
        opt=copy.deepcopy(learn.opt.state_dict()),
        torch_rng=torch.get_rng_state(),
        random=random.getstate(),
        numpy=np.random.get_state(),
    )


def _assert_same(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    else:
        assert a == b, path


def test_lr_find_restores_everything_exactly():
    learn = three_group_learner()
    learn.fit(1, lr=1e-2)  # non-empty optimizer state, moved BN statistics
    learn.freeze_to(1)
    learn.model[4].eval()  # a mixed train/eval state to restore
    learn.model[9].weight.grad = torch.ones_like(learn.model[9].weight)

    class DrawRandom(Callback):  # uses Python's and numpy's generators, unfreezes
        def before_fit(self):
            self.learn.unfreeze()

        def before_batch(self):
            random.random()
            np.random.rand()

    learn.add_cb(DrawRandom())
    before = _full_state(learn)
    sugg = learn.lr_find(num_it=30)
    assert isinstance(sugg, Suggestions)
    assert 2 <= len(learn.recorder.group_lrs) <= 30
    _assert_same(before, _full_state(learn))


def test_fit_after_lr_find_equals_fit_without():
    def run(with_lr_find: bool):
        learn = make_learner(seed=123)
        if with_lr_find:
            learn.lr_find(num_it=20)
        learn.fit_one_cycle(2, max_lr=1e-2)
        return [p.detach().clone() for p in learn.model.parameters()], learn.recorder.raw_losses

    params_a, losses_a = run(False)
    params_b, losses_b = run(True)
    assert losses_a == losses_b
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))


def test_lr_find_sweep_keeps_group_ratios_and_runs_no_validation():
    learn = three_group_learner(metrics=error_rate)
    out = io.StringIO()
    learn.progress.stream = out
    learn.lr_find(start_lr=slice(1e-7), end_lr=slice(1.0), num_it=12, stop_div=False)
    rec = learn.recorder
    assert len(rec.group_lrs) == 12  # across two epochs of 8 batches
    assert rec.valid_losses == [None]  # validation was skipped (the first epoch ends)
    for lrs in rec.group_lrs:
        assert lrs[0] / lrs[2] == pytest.approx(0.1) and lrs[1] / lrs[2] == pytest.approx(0.1)
    assert rec.lrs == exp_sweep(1e-7, 1.0, 12)
    assert out.getvalue() == ""  # no epoch table for lr_find


def test_lr_find_stops_when_loss_diverges():
    learn = make_learner(opt_func=SGD)
    learn.lr_find(start_lr=1e-3, end_lr=1e6, num_it=100)
    rec = learn.recorder
    assert len(rec.group_lrs) < 100
    best = min(rec.losses)
    assert rec.losses[-1] > 4 * best or not math.isfinite(rec.losses[-1])


class ScriptedLoss(Callback):
    """Replaces each training batch's recorded loss by the next of `losses` (before the
    Recorder, order 50, smooths it; the gradients still come from the real loss)."""

    order = 40

    def __init__(self, losses):
        super().__init__()
        self.losses = list(losses)

    def after_loss(self):
        if self.learn.training:
            self.learn.loss = torch.tensor(self.losses[self.learn.train_iter])


@pytest.mark.parametrize(
    "losses, points",
    [
        ([0.1] * 6, 6),
        # a 30x batch-noise jump at the 2nd point: before, the sweep ended there with one usable
        # point and lr_find raised; the smoothed loss is still 4x the best at the 3rd: ended
        ([0.1, 3.0, 0.1, 0.1, 0.1, 0.1], 3),
        # fastai's threshold, 4x the best smoothed loss: a rise to 1.0 smooths to 3.3x the
        # best at the 4th point, 4.7x at the 5th (ended there; a 10x rule would run on) ...
        ([0.1] * 3 + [1.0] * 5, 5),
        # ... and a rise to 0.6 peaks at 3.94x within 7 points: not ended
        ([0.1] * 3 + [0.6] * 4, 7),
    ],
)
def test_lr_find_divergence_counts_from_the_third_point(losses, points):
    learn = make_learner()
    learn.add_cb(ScriptedLoss(losses))
    sugg = learn.lr_find(num_it=len(losses), show_plot=False)
    assert len(learn.recorder.group_lrs) == points and math.isfinite(sugg.valley)


def test_lr_find_stops_at_once_on_a_nan_loss():
    learn = make_learner()
    learn.add_cb(ScriptedLoss([0.1, math.nan, 0.1, 0.1, 0.1, 0.1]))
    with pytest.raises(ValueError, match="too few usable points"):
        learn.lr_find(num_it=6, show_plot=False)
    assert len(learn.recorder.group_lrs) == 2


def test_lr_find_hands_smoothed_curve_to_suggest_lrs(monkeypatch):
    calls = []

    def fake_suggest(lrs, losses, num_it):
        calls.append((list(lrs), list(losses), num_it))
        return Suggestions(1.0, 2.0, 3.0)

    monkeypatch.setattr(learner_mod, "suggest_lrs", fake_suggest)
    learn = three_group_learner()
    sugg = learn.lr_find(num_it=40, stop_div=False)
    assert sugg == Suggestions(1.0, 2.0, 3.0) and learn.recorder.suggestions == sugg
    lrs, losses, num_it = calls[0]
    rec = learn.recorder
    assert lrs == rec.lrs and len(lrs) == 40  # the last group's sweep
    assert losses == rec.losses
    assert num_it == 40


def test_lr_find_suggestions_on_synthetic_curve():
    """A model whose loss is a fixed function of the lr it is trained at: the loss falls
    from 2 at small lrs to a valley near lr=1e-2, then blows up. The suggestions must lie
    in the descending part."""

    class LRShaped(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))
            self.lr = 1e-7

        def forward(self, x):
            t = math.log10(self.lr)
            loss = 2.0 - 1.5 / (1 + math.exp(-2.5 * (t + 4))) + (max(0.0, t + 2) ** 2) * 3
            return (self.w * 0 + loss).expand(x.shape[0], 1)

    class LossIsOutput(nn.Module):
        def forward(self, pred, y):
            return pred.mean()

    class FeedLR(Callback):
        order = 56

        def before_batch(self):
            self.learn.model.lr = self.learn.opt.param_groups[0]["lr"]

    torch.manual_seed(0)
    learn = Learner(easy_bunch(), LRShaped(), loss_func=LossIsOutput(), opt_func=SGD, cbs=FeedLR())
    learn.progress.stream = io.StringIO()
    sugg = learn.lr_find(num_it=100)
    for lr in (sugg.valley, sugg.steep, sugg.minimum):
        assert 1e-6 < lr < 1e-2
    fig = learn.recorder.plot()
    assert len(fig.axes[0].get_legend().get_texts()) == 3


def test_lr_find_errors():
    learn = make_learner()
    with pytest.raises(ValueError, match="num_it should be >= 2"):
        learn.lr_find(num_it=1)
    with pytest.raises(ValueError, match="start_lr should be a finite number > 0"):
        learn.lr_find(start_lr=0.0)


# ---- construction and argument checks --------------------------------------------------------
def test_learner_argument_errors():
    data = easy_bunch()
    with pytest.raises(TypeError, match="model should be a torch.nn.Module"):
        Learner(data, lambda x: x)
    with pytest.raises(TypeError, match="data should be a bunch"):
        Learner(object(), tiny_model())
    with pytest.raises(TypeError, match="metrics should be callables"):
        Learner(data, tiny_model(), metrics=["error_rate"])
    with pytest.raises(TypeError, match="opt_func should build a torch.optim.Optimizer"):
        Learner(data, tiny_model(), opt_func=lambda groups, lr: object())
    m = tiny_model()
    with pytest.raises(ValueError, match="left 2 model parameters out"):
        Learner(data, m, splitter=lambda m: [m[:3]])
    with pytest.raises(ValueError, match="two layer groups"):
        Learner(data, m, splitter=lambda m: [m, m[6]])
    with pytest.raises(ValueError, match="holds no parameter"):
        Learner(data, m, splitter=lambda m: [m, m[2]])
    learn = Learner(data, m, opt_func=torch.optim.SGD)
    learn.opt = torch.optim.SGD(m.parameters(), lr=0.1)  # set by hand, not wrapped
    with pytest.raises(TypeError, match="set_one_cycle"):
        learn.fit_one_cycle(1)
    with pytest.raises(
        TypeError, match=r"fit_flat_cos, fine_tune .* bare SGD: set learn.opt = OptimWrapper"
    ):
        learn.fit_flat_cos(1)  # it named fit_one_cycle alone
    learn = make_learner()
    with pytest.raises(ValueError, match="n_epoch should be >= 1"):
        learn.fit(0)
    with pytest.raises(TypeError, match="n_epoch should be an int"):
        learn.fit(1.5)
    with pytest.raises(ValueError, match=r"start_epoch should be < n_epoch \(2\), got 2"):
        learn.fit_one_cycle(2, start_epoch=2)
    with pytest.raises(ValueError, match="moms should be 3"):
        learn.fit_one_cycle(1, moms=(0.9, 0.8, 0.9, 0.8))


def test_empty_train_dl_is_a_clear_error():
    learn = make_learner(data=easy_bunch(n_train=8, bs=16))
    with pytest.raises(ValueError, match="train_dl has no batches"):
        learn.fit_one_cycle(1)


def test_plots_after_fit():
    from matplotlib.figure import Figure

    learn = three_group_learner()
    learn.fit_one_cycle(2)
    assert isinstance(learn.recorder.plot_losses(), Figure)
    fig = learn.recorder.plot_lr(show_moms=True)
    assert len(fig.axes[0].get_lines()) == 3  # one line per layer group


# ---- fastai v2's final_record and no_logging ---------------------------------------------------
def test_final_record_is_the_last_epochs_values():
    learn = make_learner(metrics=[accuracy, error_rate])
    assert learn.recorder.final_record is None  # no epoch yet
    learn.fit(2)
    rec = learn.recorder
    assert rec.final_record == [
        rec.train_losses[-1],
        rec.valid_losses[-1],
        *rec.metrics[-1],
    ]
    assert len(rec.final_record) == 4
    learn.validate()
    assert rec.final_record == rec.values[-1]  # validate returns its values, changes nothing


@pytest.mark.parametrize("toggle", ["no_logging", "no_mbar"])
def test_no_logging_hides_the_epoch_table_inside_the_block(toggle):
    """no_mbar too: fastai's, without the master bar, writes no epoch table either."""
    learn = make_learner()
    with getattr(learn, toggle)():
        learn.fit(1)
    assert learn.progress.stream.getvalue() == ""
    assert len(learn.recorder.values) == 1  # still recorded
    learn.fit(1)
    assert "train_loss" in learn.progress.stream.getvalue()  # back after the block


def test_fastai_v1_callback_methods_are_refused_with_their_v2_names():
    """A v1 callback's on_batch_end was silently never called."""

    class V1(Callback):
        def on_batch_end(self, **kwargs):
            pass

        def on_epoch_end(self, epoch=None, **kwargs):
            pass

    learn = make_learner()
    with pytest.raises(TypeError, match=r"cb: V1 defines fastai v1's callback method\(s\) "
                       r"\['on_batch_end', 'on_epoch_end'\].*on_batch_end -> after_batch, "
                       r"on_epoch_end -> after_epoch"):  # fmt: skip
        learn.fit(1, cbs=V1())
    with pytest.raises(TypeError, match="on_batch_end -> after_batch"):
        make_learner(cbs=[V1()])
    assert learn.fit(1) is None  # the learner is fine


def test_a_loss_class_is_refused_when_the_learner_is_built():
    """loss_func=nn.CrossEntropyLoss failed at batch 0 inside torch ("Boolean value of Tensor
    with more than one value is ambiguous")."""
    with pytest.raises(TypeError, match=r"loss_func: pass an instance, CrossEntropyLoss\(\)"):
        make_learner(loss_func=nn.CrossEntropyLoss)


def test_fastai_v2_and_v1_spellings_of_the_learner():
    """fastai v2's Learner(dls=dls, model=model) (its first parameter is dls), v1's
    recorder.val_losses, the star import's Flatten for a head written by hand."""
    from fastcore_ext.vision import AdaptiveConcatPool2d, Flatten

    data = easy_bunch()
    learn = Learner(dls=data, model=tiny_model(), precision="fp32")
    assert learn.data is data
    with pytest.raises(TypeError, match="give dls or data .fastai v1's name for it., not both"):
        Learner(data, tiny_model(), dls=data)
    with pytest.raises(TypeError, match="model should be a torch.nn.Module, got NoneType"):
        Learner(dls=data)
    learn.progress.stream = io.StringIO()
    learn.fit(2)
    assert (
        learn.recorder.val_losses == learn.recorder.valid_losses
        and len(learn.recorder.val_losses) == 2
    )
    x = torch.randn(2, 3, 4, 4)
    assert Flatten()(AdaptiveConcatPool2d()(x)).shape == (2, 6)
    assert Flatten(full=True)(x).shape == (96,)


def test_a_model_whose_outputs_do_not_number_the_classes_is_named_at_the_first_batch():
    """A model of unknown structure with 5 outputs on 2 classes: torch's 'Target out of bounds'
    (fewer) or a silent fit (more, as torchvision's resnet18() with its 1000)."""

    class Net(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.body, self.out = nn.Flatten(), nn.Linear(3 * 8 * 8, n)

        def forward(self, x):
            return self.out(self.body(x))

    for n in (1, 5):
        learn = make_learner(model=Net(n), splitter=None)
        with pytest.raises(ValueError, match=rf"gives {n} outputs per item and the data has 2"):
            learn.fit(1)
    make_learner(model=Net(2), splitter=None).fit(1)
    # a loss of other outputs (a custom one, a regression's) is the user's to check
    make_learner(model=Net(1), splitter=None, loss_func=lambda p, y: p.mean()).fit(1)


def test_an_elementwise_loss_of_other_shapes_is_named_at_the_first_batch():
    """MSE / L1 / BCE compare element by element: on class indices [B] against [B, c] torch
    fails inside the loss, and [B, 1] against [B] broadcasts silently to [B, B]."""

    class Net(nn.Module):
        def __init__(self, n: int, flat: bool = False) -> None:
            super().__init__()
            self.out, self.flat = nn.Linear(3 * 8 * 8, n), flat

        def forward(self, x):
            p = self.out(x.flatten(1))
            return p.view(-1) if self.flat else p

    # the Flat losses too (single-label data: a raw torch error about target sizes before)
    for loss in (nn.BCEWithLogitsLoss(), nn.MSELoss(), F.l1_loss, BCEWithLogitsLossFlat()):
        learn = make_learner(model=Net(2), splitter=None, loss_func=loss)
        with pytest.raises(ValueError, match=r"loss_func: .* the targets are \[\d+\] .*Flat\(\)"):
            learn.fit(1)
    learn = make_learner(model=Net(1), splitter=None, loss_func=nn.MSELoss())
    with pytest.raises(ValueError, match=r"gives \[\d+, 1\] and the targets are \[\d+\]; torch"):
        learn.fit(1)

    def mse_of_floats(p, y):  # a custom loss is the user's to check
        return F.mse_loss(p, y.float())

    make_learner(model=Net(1, flat=True), splitter=None, loss_func=mse_of_floats).fit(1)
    # fastai's Flat losses flatten both sides: [B, 1] against [B] is B pairs
    make_learner(model=Net(1), splitter=None, loss_func=MSELossFlat()).fit(1)
    make_learner(model=Net(1), splitter=None, loss_func=BCEWithLogitsLossFlat()).fit(1)
    # same shapes pass (a regression on the class index: the user's choice)
    make_learner(model=Net(1, flat=True), splitter=None, loss_func=nn.MSELoss()).fit(1)
    # float targets of another number of elements than a Flat loss's predictions
    with pytest.raises(
        ValueError,
        match=r"MSELossFlat compares the flattened predictions .* "
        r"\[4, 3\] and the targets are \[4\]: 12 against 4 elements",
    ):
        learner_mod._check_elementwise_loss(torch.zeros(4, 3), [torch.zeros(4)], MSELossFlat())


def test_current_hypers_after_a_one_cycle_fit_are_its_last_steps():
    """fastai's opt.hypers keep the values of the schedule's last batch after fit_one_cycle
    (its ParamScheduler sets them before each batch); ours showed the param groups' own lr
    (1e-3), then the schedule's end (lr_max / 1e5), which no step used. A plain fit clears
    the schedule."""
    learn = make_learner()
    learn.fit_one_cycle(1, slice(1e-5, 1e-3))
    lrs, moms = learn.current_hypers()
    assert lrs == learn.recorder.group_lrs[-1] and moms == learn.recorder.group_moms[-1]
    assert lrs[-1] > 1e-3 / 1e5 and 0.9 < moms[-1] < 0.95
    learn.fit(1, lr=3e-3)
    assert learn.current_hypers()[0] == [3e-3] * len(lrs)


def test_learner_lr_is_the_default_of_fits_called_without_one():
    """fastai's Learner(lr=...): fit, fit_one_cycle (and fit_flat_cos, fit_sgdr) called
    without a learning rate use it; checked against the layer groups when given."""
    learn = make_learner(lr=0.05)
    assert learn.lr == 0.05
    learn.fit(1)
    assert set(learn.recorder.lrs) == {0.05}
    learn.fit_one_cycle(1)
    assert max(learn.recorder.lrs) == pytest.approx(0.05, rel=0.05)
    learn.fit(1, lr=1e-4)  # given: wins
    assert set(learn.recorder.lrs) == {1e-4}
    assert make_learner().lr is None
    with pytest.raises(ValueError, match="lr"):
        make_learner(lr=[1e-3, 1e-2, 1e-1])  # three rates for two layer groups


def _torch_learner(y: torch.Tensor, model: nn.Module, **kwargs) -> Learner:
    """A Learner of `model` on torch DataLoaders of random 8x8 images with targets `y` (the
    same set trains and validates), batches of 8, fp32 unless `precision` is given."""
    from torch.utils.data import DataLoader, TensorDataset

    from fastcore_ext.data import DataLoaders

    x = torch.randn(len(y), 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ds = TensorDataset(x, y)
    dls = DataLoaders(DataLoader(ds, batch_size=8, shuffle=True), DataLoader(ds, batch_size=8))
    kwargs.setdefault("precision", "fp32")
    learn = Learner(dls, model, **kwargs)
    learn.progress.stream = io.StringIO()
    return learn


class _BodyHead(nn.Module):
    def __init__(self, n: int = 3, features: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head, self.features = nn.Linear(4, n), features

    def forward(self, x):
        f = self.body(x).flatten(1)
        return (self.head(f), f) if self.features else self.head(f)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_model_returning_a_tuple_is_named_at_the_first_batch(precision):
    """Under mixed precision it failed in the library's own `.float()` of the predictions
    ("'tuple' object has no attribute 'float'"), in fp32 inside torch's loss; summary()
    crashed the same way. A callback picking the logits (fastai's way) trains."""
    learn = _torch_learner(
        torch.arange(24) % 3, _BodyHead(features=True), loss_func=nn.CrossEntropyLoss(),
        precision=precision,
    )  # fmt: skip
    with pytest.raises(
        ValueError,
        match=r"model: it returned a tuple of 2 \(Tensor \[8, 3\], "
        r"Tensor \[8, 4\]\), and loss_func CrossEntropyLoss takes one tensor",
    ):
        learn.fit(1)
    assert "Linear" in learn.summary()

    class PickLogits(Callback):
        def after_pred(self):
            self.learn.pred = self.pred[0]

    learn.fit(1, cbs=PickLogits())
    # a loss of the user's own takes the tuple as it is, each tensor float32
    learn.loss_func = lambda p, y: F.cross_entropy(p[0], y) + 0 * p[1].mean()
    learn.fit(1)


def test_a_loss_that_is_not_one_number_is_named_at_the_first_batch():
    """reduction='none' gave "shape '[]' is invalid for input of size 8" from the recorder."""
    learn = _torch_learner(
        torch.arange(24) % 3, _BodyHead(), loss_func=nn.CrossEntropyLoss(reduction="none")
    )
    with pytest.raises(
        ValueError,
        match=r"loss_func: CrossEntropyLoss returned Tensor \[8\]; "
        r"a fit needs one number .*reduction='none': use 'mean' or 'sum'",
    ):
        learn.fit(1)
    with pytest.raises(ValueError, match=r"returned a list of 1 \(Tensor \[\]\)"):
        learn.loss_func = lambda p, y: [F.cross_entropy(p, y)]
        learn.fit(1)
    # validate averages the items' losses, as fastai's AvgLoss
    learn.loss_func = nn.CrossEntropyLoss(reduction="none")
    (none,) = learn.validate()
    learn.loss_func = nn.CrossEntropyLoss()
    assert learn.validate() == pytest.approx([none], rel=1e-6)


def test_float_targets_without_a_loss_func_ask_for_one():
    """With no loss_func the learner's cross-entropy met regression targets: torch's "expected
    target dtype to be Long" (fastai: "Could not infer loss function from the data"); a
    one-output model on [B, 1] floats would train on a loss that is always 0. Class
    probabilities (soft labels) are cross-entropy's targets: they train, validate and
    predict."""
    g = torch.Generator().manual_seed(1)
    for y, n in ((torch.randn(24, 1, generator=g), 1), (torch.randn(24, generator=g), 1),
                 (torch.rand(24, 3, generator=g), 3)):  # fmt: skip
        learn = _torch_learner(y, _BodyHead(n))
        with pytest.raises(
            ValueError,
            match=r"loss_func: none was given, so the learner "
            r"trains with nn.CrossEntropyLoss\(\) .*torch.float32 \[8",
        ):
            learn.fit(1)
    learn.loss_func = MSELossFlat()  # set after construction: the user's choice
    learn.fit(1)
    soft = torch.softmax(torch.randn(24, 3, generator=g), 1)
    learn = _torch_learner(soft, _BodyHead(3))
    learn.fit(1)
    preds, targs = learn.get_preds()
    assert preds.shape == targs.shape == (24, 3) and torch.equal(targs, soft)
    assert learn.validate()[0] > 0


def test_metrics_set_after_construction_are_checked_as_by_the_constructor():
    """`learn.metrics = None` crashed the next fit inside the recorder ('NoneType' object is
    not iterable); fastai takes it as no metrics."""
    from fastcore_ext.foundation import L

    learn = make_learner(metrics=[accuracy])
    learn.metrics = None
    assert learn.metrics == []
    learn.fit(1)
    learn.metrics = error_rate
    assert learn.metrics == [error_rate]
    learn.metrics = L([accuracy, error_rate])
    assert learn.metrics == [accuracy, error_rate]
    learn.fit(1)
    assert len(learn.recorder.values[-1]) == 4  # epoch's train, valid loss and two metrics
    with pytest.raises(TypeError, match="metrics should be callables f\\(preds, targs\\)"):
        learn.metrics = "accuracy"


def test_class_weights_torch_would_refuse_are_named_at_the_first_batch():
    """float64 weights (numpy's, compute_class_weight's) failed at the first batch with a bare
    "expected scalar type Float but found Double"; a wrong count with torch's message."""
    from fastcore_ext.losses import CrossEntropyLossFlat

    for weight, message in (
        (torch.tensor([1.0, 2.0], dtype=torch.float64), r"weight is torch.float64 and the "
         r"predictions are torch.float32: make it float32"),
        (torch.ones(3), r"weight should hold one value per class \(2, the model's outputs\), "
         r"got shape \[3\]"),
    ):  # fmt: skip
        for loss in (nn.CrossEntropyLoss(weight=weight), CrossEntropyLossFlat(weight=weight)):
            with pytest.raises(ValueError, match=message):
                make_learner(loss_func=loss).fit(1)
    make_learner(loss_func=CrossEntropyLossFlat(weight=torch.tensor([1.0, 2.0]))).fit(1)


def test_a_model_with_every_parameter_frozen_is_named_before_the_fit():
    """torch's "element 0 of tensors does not require grad" at the first backward (fastai: an
    IndexError)."""
    learn = make_learner(splitter=None)
    learn.model.requires_grad_(False)
    for run in (lambda: learn.fit(1), lambda: learn.lr_find(num_it=3)):
        with pytest.raises(ValueError, match=r"model: every parameter is frozen"):
            run()
    learn.unfreeze()  # the user's freeze stays: no splitter
    with pytest.raises(ValueError, match=r"model.requires_grad_\(True\) what you froze"):
        learn.fit(1)
    learn.model.requires_grad_(True)
    learn.fit(1)
