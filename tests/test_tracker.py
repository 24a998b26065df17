"""Trackers and interruptions: TerminateOnNaN (on by default, last finite weights),
EarlyStoppingCallback, SaveModelCallback, CSVLogger; Ctrl-C (a KeyboardInterrupt from a
callback) and a dying DataLoader worker end the fit cleanly and leave the learner usable."""

from __future__ import annotations

import copy
import io
import multiprocessing
import operator
import os
import signal
import time
import warnings

import pytest
import torch
from fakes import N_BATCHES, make_learner, scripted
from torch import nn

from fastcore_ext.callback import (
    Callback,
    CSVLogger,
    EarlyStoppingCallback,
    ReduceLROnPlateau,
    SaveModelCallback,
    TerminateOnNaN,
)
from fastcore_ext.data import ImageDataBunch, demo_dataset, imagenet_stats
from fastcore_ext.data import loader as loader_mod
from fastcore_ext.learner import Learner


def params_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def assert_params(model: nn.Module, expected: list[torch.Tensor]) -> None:
    got = list(model.parameters())
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


class StepLog(Callback):
    """Copies of the parameters after every optimizer step."""

    order = 100

    def __init__(self):
        super().__init__()
        self.after: list[list[torch.Tensor]] = []

    def after_step(self):
        self.after.append(params_of(self.learn.model))


class EpochStates(Callback):
    """The model's state_dict at the end of each epoch (after every tracker)."""

    order = 100

    def __init__(self):
        super().__init__()
        self.states: list[dict[str, torch.Tensor]] = []

    def after_epoch(self):
        self.states.append(copy.deepcopy(self.learn.model.state_dict()))


def same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- TerminateOnNaN --------------------------------------------------------------------------
def loss_bad_at(k: int, value: float):
    """Cross-entropy, except that the k-th training call (0-based) returns `value`."""
    calls = {"n": 0}
    ce = nn.CrossEntropyLoss()

    def loss(pred, targ):
        out = ce(pred, targ)
        if torch.is_grad_enabled():
            if calls["n"] == k:
                out = out * float(value)
            calls["n"] += 1
        return out

    return loss


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nan_loss_stops_with_the_last_finite_weights(tmp_path, value):
    k = N_BATCHES + 2  # epoch 1, batch 2
    learn = make_learner(loss_func=loss_bad_at(k, value), path=tmp_path)
    guard = [cb for cb in learn.cbs if isinstance(cb, TerminateOnNaN)]
    assert len(guard) == 1  # attached by default
    log = StepLog()
    with pytest.warns(RuntimeWarning, match=r"is (nan|inf) at epoch 1, batch 2 \(0-based, of 8"):
        learn.fit_one_cycle(3, max_lr=1e-2, cbs=log)
    assert guard[0].stopped_at == (1, 2)
    assert len(log.after) == k  # the bad batch took no step
    assert_params(learn.model, log.after[k - 1])
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert learn.recorder.epochs == [0]
    learn.loss_func = nn.CrossEntropyLoss()
    learn.fit(1)  # usable afterwards
    assert learn.recorder.epochs == [0]


def test_a_diverged_model_is_named_by_the_stop_and_by_every_prediction(tmp_path):
    """A trial's lr=1e5: the steps before the NaN loss had already made the weights infinite;
    the warning said the parameters after the previous batch were kept (as if usable), and
    validate / predict / get_preds then gave NaN probabilities and a class (argmax over NaN)
    without a word."""
    learn = make_learner(path=tmp_path)
    learn.fit(1, lr=1e-3)
    with torch.no_grad():
        learn.model[-1].weight.fill_(float("inf"))  # what the diverged steps leave
    with pytest.warns(RuntimeWarning, match=r"batch 0 .* not finite already \(.*weight"):
        learn.fit(1, lr=1e-3)
    with pytest.warns(RuntimeWarning, match=r"^validate: the model's outputs are NaN or inf"):
        learn.validate()
    with pytest.warns(RuntimeWarning, match=r"get_preds: .* for 40 of 40 item\(s\).*diverged"):
        learn.get_preds()
    learn = make_learner(path=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # finite: nothing said
        learn.get_preds()


def test_nan_stop_loads_the_best_saved_model(tmp_path):
    learn = make_learner(loss_func=loss_bad_at(2 * N_BATCHES + 1, float("nan")), path=tmp_path)
    states = EpochStates()
    saver = SaveModelCallback(monitor="my_error")
    learn.metrics = [scripted("my_error", [0.4, 0.5])]
    with pytest.warns(RuntimeWarning, match="epoch 2, batch 1"):
        learn.fit(3, cbs=[saver, states])
    assert same_state(learn.model.state_dict(), states.states[0])


# ---- EarlyStoppingCallback -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "values", "kwargs", "epochs", "since"),
    [
        ("my_error", [0.5, 0.4, 0.45, 0.41, 0.3], {"patience": 2}, 4, 1),
        ("my_error", [0.5, 0.4, 0.45, 0.41, 0.3], {"patience": 0}, 3, 1),  # fastai's 0: as 1
        ("my_error", [0.5, 0.4, 0.45, 0.41, 0.3], {"patience": 1}, 3, 1),
        ("my_error", [0.5, 0.47, 0.3, 0.2], {"min_delta": 0.05}, 2, 0),
        ("my_error", [0.5, 0.47, 0.3, 0.2], {}, 4, None),
        ("acc", [0.1, 0.2, 0.15, 0.3], {}, 3, 1),  # higher is better for a non-loss name
        ("acc", [0.1, 0.2, 0.15, 0.3], {"comp": operator.lt}, 2, 0),
    ],
)
def test_early_stopping(tmp_path, name, values, kwargs, epochs, since):
    learn = make_learner(metrics=[scripted(name, values)], path=tmp_path)
    learn.fit(len(values), cbs=EarlyStoppingCallback(monitor=name, **kwargs))
    assert learn.recorder.epochs == list(range(epochs))
    out = learn.progress.stream.getvalue()
    if since is None:
        assert "early stopping" not in out
    else:
        assert f"No improvement since epoch {since}: early stopping" in out


def test_tracker_argument_errors(tmp_path):
    learn = make_learner(path=tmp_path)
    with pytest.raises(ValueError, match=r"monitor should be one of \['train_loss', 'valid_loss'"):
        learn.fit(1, cbs=EarlyStoppingCallback(monitor="accuracy"))
    with pytest.raises(ValueError, match="patience should be an int >= 0"):
        EarlyStoppingCallback(patience=-1)
    with pytest.raises(ValueError, match="patience should be an int >= 0"):
        ReduceLROnPlateau(patience=-1)
    with pytest.raises(ValueError, match="min_delta should be a finite number >= 0"):
        SaveModelCallback(min_delta=-1)
    with pytest.raises(ValueError, match="every_epoch and at_end"):
        SaveModelCallback(every_epoch=True, at_end=True)
    with pytest.raises(TypeError, match="monitor should be a column name"):
        SaveModelCallback(monitor=3)


# ---- SaveModelCallback -----------------------------------------------------------------------
def test_save_model_keeps_and_reloads_the_best(tmp_path):
    learn = make_learner(metrics=[scripted("my_error", [0.5, 0.3, 0.4, 0.6])], path=tmp_path)
    states = EpochStates()
    saver = SaveModelCallback(monitor="my_error")
    learn.fit(4, cbs=[saver, states])
    assert saver.last_saved_path == tmp_path / "models" / "model.pth"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["model.pth"]
    assert same_state(learn.model.state_dict(), states.states[1])  # the best, loaded back
    assert not same_state(states.states[3], states.states[1])
    out = learn.progress.stream.getvalue()
    assert "Better model found at epoch 1 with my_error value: 0.3." in out
    assert "epoch 2 with" not in out


def test_save_model_without_reset_loads_the_best_of_earlier_fits(tmp_path):
    """reset_on_fit=False: a fit that never beats the best of an earlier one ends with that
    best model loaded back, as fastai's after_fit (it kept the worse, later model)."""
    learn = make_learner(metrics=[scripted("my_error", [0.5, 0.3, 0.6, 0.7])], path=tmp_path)
    states = EpochStates()
    saver = SaveModelCallback(monitor="my_error", reset_on_fit=False)
    learn.fit(2, cbs=[saver, states])
    learn.fit(2, cbs=[saver, states])  # 0.6 and 0.7: no better than 0.3
    assert saver.best == 0.3
    assert same_state(learn.model.state_dict(), states.states[1])
    assert not same_state(states.states[3], states.states[1])


def test_trackers_sit_out_lr_find(tmp_path):
    """An EarlyStoppingCallback or SaveModelCallback attached to the learner did its work in
    lr_find's passes, which skip validation: early stopping cut the sweep to 3 points and
    its suggestions were noise. They sit lr_find out, as fastai's (run = not lr_finder)."""
    plain = make_learner(path=tmp_path)
    want = plain.lr_find(num_it=20)
    stop = EarlyStoppingCallback(monitor="valid_loss", patience=1)
    saver = SaveModelCallback(monitor="valid_loss")
    tracked = make_learner(path=tmp_path, cbs=[stop, saver])
    got = tracked.lr_find(num_it=20)
    assert got == want and len(tracked.recorder.group_lrs) == len(plain.recorder.group_lrs)
    assert not (tmp_path / "models" / "model.pth").exists()
    assert "early stopping" not in tracked.progress.stream.getvalue()


def test_save_model_every_epoch_and_at_end(tmp_path):
    learn = make_learner(path=tmp_path)
    states = EpochStates()
    learn.fit(4, cbs=[SaveModelCallback(every_epoch=2, fname="ckpt"), states])
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["ckpt_0.pth", "ckpt_2.pth"]
    assert same_state(learn.model.state_dict(), states.states[3])  # nothing loaded back

    learn.fit(2, cbs=SaveModelCallback(at_end=True, fname="last", with_opt=True))
    ckpt = torch.load(tmp_path / "models" / "last.pth", weights_only=True)
    assert "opt" in ckpt and ckpt["epoch"] == 2


# ---- CSVLogger -------------------------------------------------------------------------------
class LinesAtEpochEnd(Callback):
    order = 100

    def __init__(self, path):
        super().__init__()
        self.path, self.counts = path, []

    def after_epoch(self):
        self.counts.append(len(self.path.read_text().splitlines()))


def test_csv_logger(tmp_path):
    learn = make_learner(metrics=[scripted("my_error", [0.5, 0.25, 0.125])], path=tmp_path)
    logger = CSVLogger()
    lines = LinesAtEpochEnd(tmp_path / "history.csv")
    learn.fit(3, cbs=[logger, lines])
    assert lines.counts == [2, 3, 4]  # each row on disk at the end of its epoch
    rows = logger.read_log()
    assert list(rows[0]) == ["epoch", "train_loss", "valid_loss", "my_error", "time"]
    rec = learn.recorder
    for row, values in zip(rows, rec.values, strict=True):
        assert [float(row[k]) for k in ("train_loss", "valid_loss", "my_error")] == values
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]

    learn.metrics = [scripted("my_error", [0.1])]
    learn.fit(1, cbs=CSVLogger(append=True))  # same columns: no second header
    text = (tmp_path / "history.csv").read_text().splitlines()
    assert len(text) == 5 and text[0].startswith("epoch,")
    learn.metrics = []
    learn.fit(1, cbs=CSVLogger())  # overwrites, other columns
    text = (tmp_path / "history.csv").read_text().splitlines()
    assert text[0] == "epoch,train_loss,valid_loss,time" and len(text) == 2


# ---- Ctrl-C ----------------------------------------------------------------------------------
class InterruptAt(Callback):
    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.at = (epoch, batch)

    def before_step(self):
        if (self.learn.epoch, self.learn.iter) == self.at:
            raise KeyboardInterrupt


class Terminal(io.StringIO):
    """An interactive stream: the progress bar is drawn on it."""

    def isatty(self):
        return True


def test_ctrl_c_stops_cleanly_and_the_learner_stays_usable(tmp_path, capsys):
    learn = make_learner(path=tmp_path, metrics=[scripted("my_error", [0.5, 0.4, 0.3, 0.2])])
    learn.progress.stream = Terminal()
    logger = CSVLogger()
    saver = SaveModelCallback(monitor="my_error")
    log = StepLog()
    interrupt = InterruptAt(1, 3)
    with pytest.raises(KeyboardInterrupt) as excinfo:
        learn.fit_one_cycle(3, cbs=[logger, saver, log, interrupt])
    where = "epoch 1 (of 0..2), training batch 3 (0-based) of 8"
    assert f"Training interrupted at {where}" in capsys.readouterr().err
    # as fastai's: the weights of the moment stay (the best of epoch 0 was not loaded back),
    # said after the bar was cleared
    bar, _, line = learn.progress.stream.getvalue().partition(
        "SaveModelCallback: the fit was interrupted, so the model is not loaded back from "
    )
    assert bar.endswith("\r") and line.endswith(
        "(the best my_error, 0.5); learn.load('model') does\n"
    )
    saved = torch.load(tmp_path / "models" / "model.pth", weights_only=False)["model"]
    assert any(not torch.equal(v, saved[k]) for k, v in learn.model.state_dict().items())
    assert any(where in note for note in excinfo.value.__notes__)
    assert len(log.after) == N_BATCHES + 3  # batch 3 of epoch 1 took no step
    assert logger._file is None  # closed
    assert len(logger.read_log()) == 1
    assert all(cb not in learn.cbs for cb in (logger, saver, log, interrupt))
    assert learn.training is False and learn.xb is None
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["model.pth"]

    learn.metrics = []
    learn.fit_one_cycle(2)  # the next fit runs normally
    assert learn.recorder.epochs == [0, 1]
    assert all(torch.isfinite(torch.tensor(learn.recorder.raw_losses)))


# ---- worker processes ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return demo_dataset(tmp_path_factory.mktemp("tracker") / "demo", n_per_class=4, size=32)


def image_learner(folder, tmp_path, num_workers=2):
    data = ImageDataBunch.from_folder(folder, size=16, bs=8, num_workers=num_workers, seed=3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 12)
    )
    learn = Learner(data.normalize(imagenet_stats), model, path=tmp_path)
    learn.progress.stream = io.StringIO()
    return learn


def _no_children(timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while multiprocessing.active_children():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_ctrl_c_stops_the_worker_processes(image_folder, tmp_path):
    learn = image_learner(image_folder, tmp_path)
    assert _no_children()
    with pytest.raises(KeyboardInterrupt):
        learn.fit(2, cbs=InterruptAt(1, 1))
    assert _no_children()
    learn.fit(1)  # workers start again
    learn.data.train_dl.close()
    learn.data.valid_dl.close()


def test_an_idle_learner_holds_no_worker_process(image_folder, tmp_path):
    """The decoding workers stayed alive as long as the learner: a notebook keeping several
    learners held 4 processes each (fastai's loaders end theirs with each pass). A fit
    keeps them over its epochs and ends them; any other pass starts and ends its own."""
    learns = [image_learner(image_folder, tmp_path) for _ in range(2)]
    for learn in learns:
        learn.fit(2)
        assert _no_children(timeout=0.5)
    learn = learns[0]
    for call in (
        learn.get_preds,
        lambda: learn.get_preds(ds_idx=0),
        learn.tta,  # trial I: its passes left 2 workers
        learn.data.one_batch,
        lambda: next(iter(learn.data.train_dl)),  # a pass left unfinished
    ):
        call()
        assert _no_children(timeout=2.0), call
    assert learn.validate()[0] == pytest.approx(learn.recorder.values[-1][1])


def _die_in_worker(*args, **kwargs):
    if torch.utils.data.get_worker_info() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("expected to run in a worker")


def test_dying_worker_raises_during_fit(image_folder, tmp_path, monkeypatch):
    learn = image_learner(image_folder, tmp_path)
    monkeypatch.setattr(loader_mod, "decode_readable", _die_in_worker)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="(?i)worker") as excinfo:
        learn.fit(1)
    assert time.monotonic() - start < 30
    assert any("epoch 0" in note for note in excinfo.value.__notes__)
    assert _no_children()
    monkeypatch.undo()
    learn.fit(1)
    learn.data.train_dl.close()
    learn.data.valid_dl.close()
