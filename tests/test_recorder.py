"""Recorder.plot_loss, fastai v2's name and signature for the loss curves of plot_losses
(fastai v1's): skip_start, with_valid, log, show_epochs, ax. The other recorder plots:
test_plots.py."""

from __future__ import annotations

import pytest
from fakes import N_BATCHES, make_learner
from matplotlib.figure import Figure

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
