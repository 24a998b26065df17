"""Recorder.plot_loss, fastai v2's name and signature for the loss curves of plot_losses
(fastai v1's): skip_start, with_valid, log, show_epochs, ax. The other recorder plots:
test_plots.py."""

from __future__ import annotations

import math

import pytest
import torch
from fakes import N_BATCHES, make_learner
from matplotlib.figure import Figure

from fastcore_ext.callback import Callback
from fastcore_ext.plots import plot_dir, saved_file


@pytest.fixture(scope="module")
def fitted():
    learn = make_learner()
    learn.fit(2)
    return learn


def test_plot_loss_with_fastai_v2_arguments(fitted):
    rec = fitted.recorder
    fig = rec.plot_loss(skip_start=5, with_valid=True)
    png = saved_file(fig)  # losses.png, or losses-2.png after an earlier losses plot
    assert isinstance(fig, Figure) and png.parent == plot_dir() and png.is_file()
    assert png.name.startswith("losses")
    train, valid = fig.axes[0].get_lines()
    assert (train.get_label(), valid.get_label()) == ("Train", "Validation")
    assert list(train.get_xdata()) == list(range(6, 2 * N_BATCHES + 1))  # batches processed
    assert list(train.get_ydata()) == rec.losses[5:]
    assert list(valid.get_xdata()) == [N_BATCHES, 2 * N_BATCHES]  # the ends of the epochs
    assert list(valid.get_ydata()) == rec.valid_losses
    assert fig.axes[0].get_xscale() == "linear"

    default = rec.plot_loss()  # v2's default skip_start=5
    assert list(default.axes[0].get_lines()[0].get_ydata()) == rec.losses[5:]


def test_plot_loss_skip_start_drops_validation_points_before_it(fitted):
    rec = fitted.recorder
    train, valid = rec.plot_loss(skip_start=N_BATCHES).axes[0].get_lines()
    assert list(train.get_ydata()) == rec.losses[N_BATCHES:]
    assert list(valid.get_xdata()) == [2 * N_BATCHES]
    lines = rec.plot_loss(skip_start=0, with_valid=False).axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["Train"]
    assert list(lines[0].get_ydata()) == rec.losses


def test_plot_loss_log_and_show_epochs(fitted):
    ax = fitted.recorder.plot_loss(log=True, show_epochs=True).axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    epoch_lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert [ln.get_xdata()[0] for ln in epoch_lines] == [N_BATCHES, 2 * N_BATCHES]


def test_plot_loss_into_an_axes(fitted):
    fig = Figure()
    left, right = fig.subplots(1, 2)
    png = plot_dir() / "losses.png"
    png.unlink(missing_ok=True)
    assert fitted.recorder.plot_loss(ax=right) is None and right.get_lines()
    assert not left.get_lines() and len(right.get_lines()) == 2
    assert not png.exists()  # the caller's figure: not saved


def test_plot_loss_errors(fitted):
    rec = fitted.recorder
    with pytest.raises(ValueError, match="skip_start should be an int >= 0, got -1"):
        rec.plot_loss(skip_start=-1)
    with pytest.raises(TypeError, match="with_valid should be a bool"):
        rec.plot_loss(with_valid="yes")
    with pytest.raises(TypeError, match="show_epochs should be a bool"):
        rec.plot_loss(show_epochs=1)
    with pytest.raises(TypeError, match="ax should be a matplotlib Axes or None, got Figure"):
        rec.plot_loss(ax=Figure())
    with pytest.raises(ValueError, match=r"plot_loss\(\) needs a recorded fit"):
        make_learner().recorder.plot_loss()


class _AddFiveAfterBatch(Callback):
    """Before the Recorder (order 50): changes the loss in after_batch, and notes what the
    recorder's smoothed loss is at after_loss of each training batch."""

    order = 40

    def __init__(self):
        super().__init__()
        self.seen = []

    def after_loss(self):
        if self.learn.training:
            self.seen.append(self.learn.recorder.smooth_loss)

    def after_batch(self):
        if self.learn.training:
            self.learn.loss = self.learn.loss + 5


def test_the_recorder_reads_the_loss_at_after_batch_as_fastais():
    """fastai's Recorder records learn.loss in after_batch: a callback before it that changes
    the loss there is recorded (ours read it at after_loss: the change was lost, silently), and
    the smoothed loss read at after_loss is still the previous batch's (nan at the first)."""
    plain = make_learner()
    plain.fit(1)
    cb = _AddFiveAfterBatch()
    learn = make_learner()
    learn.fit(1, cbs=cb)
    raw, raw_plain = learn.recorder._raw_losses, plain.recorder._raw_losses
    assert len(raw) == len(raw_plain) == N_BATCHES
    assert raw == pytest.approx([v + 5 for v in raw_plain], abs=1e-5)
    assert math.isnan(cb.seen[0])
    assert cb.seen[1:] == learn.recorder.losses[:-1]  # each batch sees the one before
    assert len(learn.recorder.group_lrs) == N_BATCHES


def test_recorder_log_is_the_last_row_as_printed(fitted):
    """fastai v2's recorder.log after a fit: [epoch, train_loss, valid_loss, *metrics,
    'mm:ss']."""
    log = fitted.recorder.log
    assert log[0] == 1 and log[1:-1] == fitted.recorder.values[-1]
    assert isinstance(log[-1], str) and len(log[-1]) == 5 and log[-1][2] == ":"
    assert make_learner().recorder.log == []


def test_a_batch_cancelled_before_its_loss_records_nothing():
    """CancelBatchException in before_batch: no loss, no rates recorded for that batch (fastai
    records the previous batch's loss again)."""
    from fastcore_ext.callback import CancelBatchException

    class SkipSecond(Callback):
        def before_batch(self):
            if self.learn.training and self.learn.train_iter == 1:
                raise CancelBatchException

    learn = make_learner()
    learn.fit(1, cbs=SkipSecond())
    rec = learn.recorder
    assert len(rec.losses) == len(rec.group_lrs) == N_BATCHES - 1
    assert torch.isfinite(torch.tensor(rec.losses)).all()


def test_a_phase_cancelled_between_after_loss_and_after_batch_leaves_no_stale_batch():
    """The review's case: an epoch cancelled after a batch's loss (CancelEpochException in
    after_step), then the next epoch's first batch cancelled in before_batch by a callback
    before the Recorder: the old batch's loss was recorded again as a new batch."""
    from fastcore_ext.callback import CancelBatchException, CancelEpochException

    class Cancels(Callback):
        order = 10

        def after_step(self):
            if self.learn.epoch == 0 and self.learn.iter == 1:
                raise CancelEpochException

        def before_batch(self):
            if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 0:
                raise CancelBatchException

    learn = make_learner()
    learn.fit(2, cbs=Cancels())
    rec = learn.recorder
    # epoch 0: its first batch only (the second was cancelled between loss and after_batch);
    # epoch 1: every batch but its first
    assert len(rec.raw_losses) == len(rec.group_lrs) == 1 + (N_BATCHES - 1)
