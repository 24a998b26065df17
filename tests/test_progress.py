"""The epoch table keeps its columns apart whatever the width of a value (a huge loss once
printed `77954564096.0000000.916667`), and a fit in a log keeps one plain line per epoch. An
inference pass (get_preds, validate, tta) shows a bar where a fit's bar shows, and removes
it when the pass ends, also when it fails."""

from __future__ import annotations

import io

import pytest
import torch
from fakes import easy_bunch, make_learner

from fastcore_ext.callback import Callback
from fastcore_ext.callback import progress as progress_mod
from fastcore_ext.callback.progress import format_header, format_row
from fastcore_ext.metrics import error_rate

NAMES = ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
HUGE = 77954564096.0


def test_a_wide_value_keeps_a_space_before_the_next_column():
    row = format_row(NAMES, [0, 0.5, HUGE, 0.916667, "00:01"])
    assert row.split() == ["0", "0.500000", "77954564096.000000", "0.916667", "00:01"]
    assert "77954564096.000000 0.916667" in row
    # a value exactly as wide as its column plus one keeps fastprogress' single space
    assert format_row(["a"], ["x" * 9]) == "x" * 9 + " "
    # values that fit keep fastprogress' layout, under the header
    fit = format_row(NAMES, [1, 0.5, 0.25, 0.125, "00:01"])
    header = format_header(NAMES)
    assert [header.index(n) for n in NAMES] == [fit.index(c) for c in fit.split()]


class HugeValidLoss(Callback):
    """Replaces the recorded validation loss by a huge one before the table row is printed
    (the Recorder's order is 50, the ProgressCallback's 60)."""

    order = 55

    def after_epoch(self) -> None:
        self.learn.recorder.valid_losses[-1] = HUGE


def test_fit_with_a_huge_validation_loss_in_a_log():
    learn = make_learner(data=easy_bunch(n_train=32, n_valid=16), metrics=error_rate)
    out = io.StringIO()  # a log: not a terminal
    learn.progress.stream = out
    learn.fit(2, cbs=[HugeValidLoss()])
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 3
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == 5 and cells[2] == "77954564096.000000", line
        assert 0.0 <= float(cells[3]) <= 1.0


def test_a_long_phase_in_a_log_says_how_far_it_is():
    """In a log or a pipe a long first epoch or lr_find printed nothing until its row (fastai
    writes its bar there): a line each log_interval seconds, none where phases are short."""
    learn = make_learner(data=easy_bunch(n_train=32, n_valid=64))
    out = io.StringIO()
    learn.progress.stream, learn.progress.log_interval = out, 0.0
    learn.fit(1)
    lines = out.getvalue().splitlines()
    progress = [line for line in lines if line.startswith("  ")]
    assert progress[0].startswith("  train: 1/2 batches (50%), 00:00 elapsed, 00:00 left, loss ")
    assert any(line.startswith("  valid: 1/") for line in progress)
    assert len(lines) == len(progress) + 2  # the header and the epoch's row
    out.seek(0), out.truncate()
    learn.progress.log_interval = 60.0
    learn.fit(1)
    assert len(out.getvalue().splitlines()) == 2


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def bars(text: str) -> list[str]:
    """The bars drawn, in order (each redraw starts with a carriage return)."""
    return [b.strip() for b in text.split("\r") if b.strip()]


def test_an_inference_pass_shows_a_bar_and_removes_it():
    learn = make_learner(data=easy_bunch(n_train=32, n_valid=40, bs=16))  # 3 valid batches
    tty = FakeTTY()
    learn.progress.stream, learn.progress.min_interval = tty, 0.0
    learn.get_preds()
    drawn = bars(tty.getvalue())
    assert [b.split("[")[1].split()[0] for b in drawn] == ["0/3", "1/3", "2/3", "3/3"]
    assert drawn[-1].startswith("|" + "█" * 40 + "| 100.00% [3/3")
    assert tty.getvalue().endswith("\r")  # the line is blanked: only the results stay
    tty.seek(0), tty.truncate()
    learn.validate()
    learn.get_preds(dl=learn.data.train_dl)  # 2 batches
    drawn = bars(tty.getvalue())
    assert [b.split("] ")[0].split("[")[1].split()[0] for b in drawn if "100.00%" in b] == [
        "3/3",
        "2/2",
    ]
    tty.seek(0), tty.truncate()
    with learn.no_bar():  # the fit's switch turns it off too
        learn.get_preds()
    assert tty.getvalue() == ""
    learn.get_preds(dl=iter([(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))]))
    assert tty.getvalue() == ""  # a dl without a length: no total to show


def test_no_inference_bar_in_a_log_and_none_left_by_a_failed_pass():
    learn = make_learner(data=easy_bunch(n_train=32, n_valid=40, bs=16))
    log = io.StringIO()  # not a terminal: as the fit, no bar
    learn.progress.stream = log
    learn.get_preds()
    assert log.getvalue() == ""
    tty = FakeTTY()
    learn.progress.stream, learn.progress.min_interval = tty, 0.0
    bad = [(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)), "not a batch"]
    with pytest.raises(TypeError, match="should yield"):
        learn.get_preds(dl=bad)
    assert bars(tty.getvalue())[-1].startswith("|" + "█" * 20 + "-" * 20 + "| 50.00% [1/2")
    assert tty.getvalue().endswith("\r")  # removed although the pass failed


def test_an_inference_bar_in_a_notebook_is_fastprogress_and_goes(monkeypatch):
    made = []

    class FakeBar:  # fastprogress' NBProgressBar, recorded
        def __init__(self, gen, leave=True):
            self.total, self.leave, self.done, self.ended = len(gen), leave, [], False
            made.append(self)

        def update(self, done):
            self.done.append(done)

        def on_iter_end(self):
            self.ended = True

    monkeypatch.setattr(progress_mod, "NBProgressBar", FakeBar)
    monkeypatch.setattr(progress_mod, "in_notebook", lambda: True)
    learn = make_learner(data=easy_bunch(n_train=32, n_valid=40, bs=16))
    learn.progress.stream = None  # the notebook's display (make_learner captures a stream)
    learn.get_preds()
    (bar,) = made
    assert (bar.total, bar.leave, bar.done, bar.ended) == (3, False, [0, 1, 2, 3], True)
