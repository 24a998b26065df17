"""fastcore_ext.interrupt: where an exception stopped a fit (the phase boundaries named as
such, not as a batch of the previous phase), and lr_find's own report of an interrupted sweep
(after how many of its iterations, the learner put back as it was before lr_find); on a
terminal, the Ctrl-C message is not printed onto the progress bar."""

from __future__ import annotations

import copy
import io
import re
import sys

import pytest
import torch
from fakes import make_learner

from fastcore_ext.callback import Callback
from fastcore_ext.checkpoint import rng_state

N_TRAIN, N_VALID = 8, 3  # batches of the fake bunch: 128 training items, 40 valid, bs 16


def raising_at(event: str, epoch: int, exc: type[BaseException] = KeyboardInterrupt, **when):
    """A callback raising `exc` at `event` of `epoch` (and, for batch events, when the
    learner's attributes equal `when`, e.g. training=False, iter=1)."""

    def handler(self) -> None:
        learn = self.learn
        if learn.epoch == epoch and all(getattr(learn, k) == v for k, v in when.items()):
            raise exc

    return type(f"RaiseAt_{event}", (Callback,), {event: handler})()


# ---- where the fit stopped -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "epoch", "expected"),
    [
        ("before_validate", 0, "the start of the validation phase of epoch 0 (of 0..1)"),
        ("after_validate", 0, "the end of the validation phase of epoch 0 (of 0..1)"),
        ("after_train", 0, "the end of the training phase of epoch 0 (of 0..1)"),
        ("before_epoch", 1, "the start of epoch 1 (of 0..1)"),
        ("before_train", 1, "the start of the training phase of epoch 1 (of 0..1)"),
        ("after_epoch", 0, "the end of epoch 0 (of 0..1)"),
    ],
)
def test_ctrl_c_between_batches_names_the_phase_boundary(event, epoch, expected, capsys):
    learn = make_learner()
    with pytest.raises(KeyboardInterrupt) as excinfo:
        learn.fit(2, cbs=raising_at(event, epoch))
    err = capsys.readouterr().err
    assert f"Training interrupted at {expected}. The learner is usable" in err
    assert excinfo.value.__notes__ == [f"fastcore_ext: the fit stopped at {expected}."]
    assert "batch" not in err  # no batch of the previous phase (it said 'validation batch 7 of 8')


@pytest.mark.parametrize(
    ("training", "it", "expected"),
    [
        (True, 5, f"epoch 1 (of 0..1), training batch 5 (0-based) of {N_TRAIN}"),
        (False, 1, f"epoch 1 (of 0..1), validation batch 1 (0-based) of {N_VALID}"),
    ],
)
def test_ctrl_c_in_a_batch_names_the_batch_of_its_phase(training, it, expected, capsys):
    learn = make_learner()
    with pytest.raises(KeyboardInterrupt) as excinfo:
        learn.fit(2, cbs=raising_at("after_batch", 1, training=training, iter=it))
    assert f"Training interrupted at {expected}." in capsys.readouterr().err
    assert excinfo.value.__notes__ == [f"fastcore_ext: the fit stopped at {expected}."]


# ---- lr_find -------------------------------------------------------------------------------
def state_of(learn) -> dict:
    return {
        "model": {k: v.detach().clone() for k, v in learn.model.state_dict().items()},
        "opt": copy.deepcopy(learn.opt.state_dict()),
        "rng": rng_state()["torch"].clone(),
        "modes": [m.training for m in learn.model.modules()],
    }


def assert_same_state(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    opt_a, opt_b = a["opt"], b["opt"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for i, s in opt_a["state"].items():
        for k, v in s.items():
            other = opt_b["state"][i][k]
            assert torch.equal(v, other) if isinstance(v, torch.Tensor) else v == other, (i, k)
    assert torch.equal(a["rng"], b["rng"])
    assert a["modes"] == b["modes"]


def trained_learner():
    learn = make_learner()
    learn.fit(1)  # optimizer moments to put back
    return learn


def test_ctrl_c_during_lr_find_reports_its_iterations_and_the_put_back_learner(capsys):
    learn = trained_learner()
    before = state_of(learn)
    stop = raising_at("after_batch", 2, training=True, train_iter=21)  # lr_find's 3rd epoch
    learn.add_cb(stop)
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt) as excinfo:
        learn.lr_find(num_it=30)
    learn.remove_cb(stop)
    err = capsys.readouterr().err
    assert err.startswith(
        "lr_find interrupted after 21 of 30 iterations. The learner is usable: its parameters, "
        "optimizer state, BatchNorm statistics and RNG states are those from before lr_find"
    )
    assert "Training interrupted" not in err and "epoch" not in err  # lr_find's, not the user's
    assert excinfo.value.__notes__ == [
        "fastcore_ext: lr_find stopped after 21 of 30 iterations; the learner's parameters, "
        "optimizer state, BatchNorm statistics and RNG states were put back."
    ]
    assert_same_state(state_of(learn), before)  # what the message says is true
    # the recorder keeps the sweep so far: the 21st batch stepped, but the Ctrl-C came in an
    # after_batch before the Recorder's (order 50), which records a batch there, as fastai's
    assert len(learn.recorder.group_lrs) == 20

    learn.lr_find(num_it=10)  # usable: a full sweep runs next
    assert len(learn.recorder.group_lrs) == 10 and learn.recorder.suggestions is not None


def test_other_error_during_lr_find_is_noted_not_printed(capsys):
    learn = trained_learner()
    before = state_of(learn)
    fail = raising_at("before_step", 0, RuntimeError, train_iter=3)  # its 4th batch
    learn.add_cb(fail)
    capsys.readouterr()
    with pytest.raises(RuntimeError) as excinfo:
        learn.lr_find(num_it=30)
    learn.remove_cb(fail)
    assert capsys.readouterr().err == ""
    assert excinfo.value.__notes__ == [
        "in callback RaiseAt_before_step, event before_step",  # which callback raised it
        "fastcore_ext: lr_find stopped after 3 of 30 iterations; the learner's parameters, "
        "optimizer state, BatchNorm statistics and RNG states were put back.",
    ]
    assert_same_state(state_of(learn), before)


# ---- the message on a terminal -----------------------------------------------------------------
class Terminal(io.StringIO):
    """What a terminal receives (stdout and stderr together), as a tty."""

    def isatty(self) -> bool:
        return True


def test_ctrl_c_message_starts_a_line_of_its_own_on_a_terminal(monkeypatch):
    """It was printed onto the half-drawn bar: '|-----| 0.00% [0/8 ...]Training interrupted
    at epoch 1 ...'. The bar is cleared first, as after a fit."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    learn = make_learner()
    learn.progress.stream = terminal
    with pytest.raises(KeyboardInterrupt):
        learn.fit(2, cbs=raising_at("after_batch", 0, training=True, iter=2))
    out = terminal.getvalue()
    assert "|" in out  # the bar was drawn
    before, sep, _ = out.partition("Training interrupted at epoch 0")
    assert sep
    assert re.split(r"[\r\n]", before)[-1] == ""  # nothing drawn before it on its line


def test_the_epoch_of_a_one_epoch_fit_is_named_the_only_one(capsys):
    """An interrupted fit(1) said "epoch 0 (of 0..0)"."""
    learn = make_learner()
    with pytest.raises(KeyboardInterrupt):
        learn.fit(1, cbs=raising_at("after_batch", 0, training=True, iter=2))
    expected = f"epoch 0 (the only one), training batch 2 (0-based) of {N_TRAIN}"
    assert f"Training interrupted at {expected}." in capsys.readouterr().err
