"""The epoch table keeps its columns apart whatever the width of a value (a huge loss once
printed `77954564096.0000000.916667`), and a fit in a log keeps one plain line per epoch."""

from __future__ import annotations

import io

from fakes import easy_bunch, make_learner

from fastcore_ext.callback import Callback
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
