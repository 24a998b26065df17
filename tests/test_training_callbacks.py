"""GradientAccumulation and GradientClip (fastai.callback.training), and the one-cycle schedule
counting every training batch, also one without an optimizer step."""

from __future__ import annotations

import math

import pytest
import torch
from fakes import N_BATCHES, easy_bunch, make_learner
from torch import nn

from fastcore_ext.callback import Callback, CancelStepException
from fastcore_ext.callback.training import GradientAccumulation, GradientClip
from fastcore_ext.schedule import one_cycle


def linear_model() -> nn.Sequential:
    """No BatchNorm, no dropout: a batch of 16 and two of 8 give the same mean gradient."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))


def linear_learner(bs: int, **kwargs):
    torch.manual_seed(0)  # the same initial weights in every learner
    return make_learner(
        data=easy_bunch(bs=bs), model=linear_model(), splitter=lambda m: [m], **kwargs
    )


def test_accumulating_two_half_batches_equals_the_full_batch():
    full = linear_learner(bs=16)
    full.fit(2, lr=1e-2)
    halves = linear_learner(bs=8)
    halves.fit(2, lr=1e-2, cbs=GradientAccumulation(n_acc=16))
    for a, b in zip(full.model.parameters(), halves.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # one step per two batches: Adam's per-parameter step count says so
    assert {int(s["step"]) for s in halves.opt.state.values()} == {2 * N_BATCHES}
    assert len(halves.recorder.raw_losses) == 2 * 2 * N_BATCHES  # every batch's loss recorded


def test_accumulation_changes_the_training_and_records_each_batch_loss():
    plain = linear_learner(bs=8)
    plain.fit(1, lr=1e-2)
    acc = linear_learner(bs=8)
    acc.fit(1, lr=1e-2, cbs=GradientAccumulation(n_acc=32))
    # the same first batch and weights: the recorded loss is the batch's own, unscaled
    assert acc.recorder.raw_losses[0] == pytest.approx(plain.recorder.raw_losses[0], rel=1e-6)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(plain.model.parameters(), acc.model.parameters(), strict=True)
    )


def test_n_acc_at_most_the_batch_size_steps_every_batch():
    plain = linear_learner(bs=16)
    plain.fit(1, lr=1e-2)
    acc = linear_learner(bs=16)
    acc.fit(1, lr=1e-2, cbs=GradientAccumulation(n_acc=16))
    for a, b in zip(plain.model.parameters(), acc.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("opt", ["fused", "torch"])
def test_one_cycle_advances_at_every_batch_under_accumulation(opt):
    kwargs = {} if opt == "fused" else {"opt_func": torch.optim.AdamW}
    learn = linear_learner(bs=16, **kwargs)
    learn.fit_one_cycle(2, max_lr=1e-2, cbs=GradientAccumulation(n_acc=64))  # a step per 4
    total = 2 * N_BATCHES
    assert learn.opt.schedule_step == total
    assert learn._sched_step == total
    rec = learn.recorder
    assert len(rec.group_lrs) == total
    for k, lrs in enumerate(rec.group_lrs):
        assert lrs[0] == pytest.approx(one_cycle(k / total, 1e-2)[0], rel=1e-12)


def test_a_cancelled_step_still_advances_the_schedule():
    class SkipOdd(Callback):
        def before_step(self):
            if self.learn.train_iter % 2:
                raise CancelStepException

    learn = linear_learner(bs=16)
    learn.fit_one_cycle(1, max_lr=1e-2, cbs=SkipOdd())
    assert learn.opt.schedule_step == N_BATCHES == learn._sched_step


def grad_norm(model: nn.Module) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))


class NormSpy(Callback):
    order = GradientClip.order + 1  # sees the gradients the step will use

    def __init__(self):
        super().__init__()
        self.norms = []

    def before_step(self):
        self.norms.append(grad_norm(self.learn.model))


def test_gradient_clip_bounds_the_norm_of_every_step():
    spy = NormSpy()
    learn = linear_learner(
        bs=16, loss_func=lambda out, y: 100 * nn.functional.cross_entropy(out, y)
    )
    learn.fit(1, lr=1e-3, cbs=[spy])
    assert max(spy.norms) > 1.0  # large gradients without clipping
    spy = NormSpy()
    learn = linear_learner(
        bs=16, loss_func=lambda out, y: 100 * nn.functional.cross_entropy(out, y)
    )
    learn.fit(1, lr=1e-3, cbs=[GradientClip(max_norm=0.5), spy])
    assert len(spy.norms) == N_BATCHES
    assert max(spy.norms) == pytest.approx(0.5, rel=1e-5)


def test_gradient_clip_leaves_small_gradients_alone():
    spy_plain, spy_clip = NormSpy(), NormSpy()
    linear_learner(bs=16).fit(1, lr=1e-3, cbs=[spy_plain])
    linear_learner(bs=16).fit(1, lr=1e-3, cbs=[GradientClip(max_norm=1e6), spy_clip])
    assert spy_clip.norms == spy_plain.norms


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: GradientAccumulation(0), ValueError, "n_acc should be >= 1, got 0"),
        (lambda: GradientAccumulation(2.5), TypeError, "n_acc should be an int"),
        (lambda: GradientClip(max_norm=0), ValueError, "max_norm: expected a positive number"),
        (lambda: GradientClip(norm_type="2"), ValueError, "norm_type: expected a positive"),
    ],
)
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_exported_by_vision():
    from fastcore_ext import vision

    assert vision.GradientAccumulation is GradientAccumulation
    assert vision.GradientClip is GradientClip


class SmoothLossReader(Callback):
    """fastai's idiom: a callback reading the learner's smoothed loss after each batch."""

    def before_fit(self):
        self.seen = []

    def after_batch(self):
        if self.training:
            self.seen.append(self.smooth_loss)


def test_callbacks_read_the_smoothed_loss_as_fastai_records_it():
    learn = linear_learner(bs=8)
    assert torch.isnan(learn.smooth_loss)  # nan before any batch (a tensor, as fastai's)
    reader = SmoothLossReader()
    learn.fit(2, lr=1e-2, cbs=reader)
    rec, n = learn.recorder, len(learn.data.train_dl)
    # fastai's recorder.losses are the smoothed losses, the ones callbacks read; the Recorder
    # (order 50) records a batch in its after_batch, so a callback of order 0 reads there the
    # value up to the batch before (nan at the first), one of order > 50 this batch's
    seen = [v.item() for v in reader.seen]
    assert math.isnan(seen[0]) and seen[1:] == pytest.approx(rec.losses[:-1], rel=1e-6)
    assert learn.smooth_loss.item() == pytest.approx(rec.losses[-1], rel=1e-6)
    assert len(rec.losses) == len(rec.raw_losses) == 2 * n and rec.iters == [n, 2 * n]
    assert rec.losses[0] == rec.raw_losses[0] and rec.losses[1:] != rec.raw_losses[1:]
    assert rec.train_losses == [rec.losses[n - 1], rec.losses[-1]]
    late = SmoothLossReader()
    late.order = 51
    learn.fit(1, lr=1e-2, cbs=late)
    assert [v.item() for v in late.seen] == pytest.approx(learn.recorder.losses, rel=1e-6)
