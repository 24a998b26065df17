"""Callbacks: event order, the Cancel*Exception control flow, the Recorder and progress output."""

from __future__ import annotations

import io
import re
import warnings
from types import SimpleNamespace

import pytest
import torch
from fakes import easy_bunch, make_learner, same_params
from torch import nn

from fastcore_ext.callback import (
    CANCEL_EVENTS,
    EVENTS,
    Callback,
    CancelBackwardException,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidateException,
    CancelValidException,
    ProgressCallback,
    Recorder,
)
from fastcore_ext.callback.progress import PassBar, format_header, format_row, format_time
from fastcore_ext.foundation import L
from fastcore_ext.metrics import accuracy, error_rate


# ---- events -------------------------------------------------------------------------------
class EventLog(Callback):
    """Records every event it receives as (event, training flag)."""

    order = 100

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    def __getattribute__(self, name: str):
        if name in EVENTS or name in CANCEL_EVENTS:
            log = object.__getattribute__(self, "log")
            return lambda: log.append(name)
        return object.__getattribute__(self, name)


def test_event_names_are_fastai_v2():
    assert EVENTS == (
        "before_fit", "before_epoch", "before_train", "before_batch", "after_pred",
        "after_loss", "before_backward", "after_backward", "before_step", "after_step",
        "after_batch", "after_train", "before_validate", "after_validate", "after_epoch",
        "after_fit",
    )  # fmt: skip
    for name in EVENTS + CANCEL_EVENTS:
        assert callable(getattr(Callback(), name))
    assert CancelValidateException is CancelValidException


def test_callback_name():
    class SaveModelCallback(Callback):
        pass

    assert SaveModelCallback().name == "save_model"
    assert Recorder().name == "recorder"
    assert ProgressCallback().name == "progress"


TRAIN_BATCH = ["before_batch", "after_pred", "after_loss", "before_backward", "after_backward",
               "before_step", "after_step", "after_batch"]  # fmt: skip
VALID_BATCH = ["before_batch", "after_pred", "after_loss", "after_batch"]


def small_data(n_train_batches=2, n_valid_batches=1, bs=4):
    return easy_bunch(n_train=n_train_batches * bs, n_valid=n_valid_batches * bs, bs=bs)


def test_event_order_of_a_fit():
    learn = make_learner(data=small_data())
    cb = EventLog()
    learn.fit(1, cbs=cb)
    expected = (
        ["before_fit", "before_epoch", "before_train"]
        + TRAIN_BATCH * 2
        + ["after_train", "before_validate"]
        + VALID_BATCH
        + ["after_validate", "after_epoch", "after_fit"]
    )
    assert cb.log == expected
    assert cb not in learn.cbs and cb.learn is None  # fit(cbs=...) is for that fit only


def test_callbacks_run_in_order():
    learn = make_learner(data=small_data(1, 1))
    seen = []

    def cb_with(order):
        class C(Callback):
            def before_fit(self):
                seen.append(self.order)

        c = C()
        c.order = order
        return c

    learn.fit(1, cbs=[cb_with(70), cb_with(-5), cb_with(10)])
    assert seen == [-5, 10, 70]
    assert [c.order for c in learn.cbs] == sorted(c.order for c in learn.cbs)


def test_run_valid_false_skips_validation_batches():
    class TrainOnly(EventLog):
        run_valid = False

    learn = make_learner(data=small_data(1, 1))
    cb = TrainOnly()
    learn.fit(1, cbs=cb)
    assert cb.log.count("after_pred") == 1  # the training batch only
    assert "before_validate" in cb.log and "after_validate" in cb.log


def _raiser(event: str, exc: type[Exception], when=lambda learn: True):
    class Raise(EventLog):
        def __getattribute__(self, name):
            if name == event:
                log = object.__getattribute__(self, "log")
                learn = object.__getattribute__(self, "learn")

                def f():
                    log.append(name)
                    if when(learn):
                        raise exc

                return f
            return super().__getattribute__(name)

    return Raise()


def test_cancel_batch_skips_rest_of_batch():
    learn = make_learner(data=small_data(2, 1))
    before = [p.detach().clone() for p in learn.model.parameters()]
    cb = _raiser("after_loss", CancelBatchException, lambda learn: learn.training)
    learn.fit(1, cbs=cb)
    batch = ["before_batch", "after_pred", "after_loss", "after_cancel_batch", "after_batch"]
    train_part = cb.log[cb.log.index("before_train") + 1 : cb.log.index("after_train")]
    assert train_part == batch * 2
    assert same_params(before, learn.model)
    assert "after_validate" in cb.log and "after_epoch" in cb.log


def test_cancel_step_leaves_params():
    learn = make_learner(data=small_data(2, 1))
    before = [p.detach().clone() for p in learn.model.parameters()]
    cb = _raiser("before_step", CancelStepException)
    learn.fit(1, cbs=cb)
    assert cb.log.count("after_cancel_step") == 2
    assert cb.log.count("after_step") == 2  # after_<level> still fires, as fastai
    assert same_params(before, learn.model)
    assert all(p.grad is None for p in learn.model.parameters())  # grads still cleared


def test_cancel_backward_skips_backward():
    learn = make_learner(data=small_data(1, 1))
    before = [p.detach().clone() for p in learn.model.parameters()]
    cb = _raiser("before_backward", CancelBackwardException)
    learn.fit(1, cbs=cb)
    assert cb.log.count("after_cancel_backward") == 1
    i = cb.log.index("after_cancel_backward")
    after = ["after_cancel_backward", "after_backward", "before_step", "after_step"]
    assert cb.log[i : i + 4] == after
    # no gradients were computed, so the step changed nothing
    assert same_params(before, learn.model)


def test_cancel_train_goes_to_validation():
    learn = make_learner(data=small_data(3, 1))
    cb = _raiser("after_batch", CancelTrainException, lambda learn: learn.training)
    learn.fit(2, cbs=cb)
    assert cb.log.count("after_cancel_train") == 2
    assert cb.log.count("before_step") == 2  # one training batch per epoch
    assert cb.log.count("after_validate") == 2
    assert learn.recorder.valid_losses[-1] is not None


def test_cancel_validate():
    learn = make_learner(data=small_data(1, 2), metrics=error_rate)
    cb = _raiser("before_validate", CancelValidateException)
    learn.fit(1, cbs=cb)
    assert "after_cancel_validate" in cb.log and "after_validate" in cb.log
    assert "after_pred" in cb.log  # the training batch
    assert learn.recorder.valid_losses == [None]
    assert learn.recorder.metrics == [[None]]


def test_cancel_epoch():
    learn = make_learner(data=small_data(2, 1))
    cb = _raiser("after_train", CancelEpochException)
    learn.fit(3, cbs=cb)
    assert cb.log.count("after_cancel_epoch") == 3
    assert cb.log.count("before_validate") == 0
    assert cb.log.count("after_epoch") == 3


def test_cancel_fit():
    learn = make_learner(data=small_data(3, 1))
    cb = _raiser("after_batch", CancelFitException, lambda learn: learn.train_iter == 2)
    learn.fit(5, cbs=cb)
    assert cb.log.count("before_step") == 2
    assert cb.log[-2:] == ["after_cancel_fit", "after_fit"]
    assert cb.log.count("before_epoch") == 1
    assert learn.training is False


def test_exception_in_callback_propagates_and_removes_fit_callbacks():
    learn = make_learner(data=small_data(1, 1))
    cb = _raiser("after_loss", RuntimeError)
    with pytest.raises(RuntimeError):
        learn.fit(1, cbs=cb)
    assert cb not in learn.cbs
    learn.fit(1)  # the learner is still usable


def test_add_remove_callback_errors():
    learn = make_learner(data=small_data(1, 1))
    with pytest.raises(TypeError, match="Callback"):
        learn.add_cb(lambda: None)
    cb = EventLog()
    learn.add_cb(cb)
    learn.remove_cb(cb)
    assert learn.remove_cb(cb) is learn and cb not in learn.cbs  # not attached: as fastai's
    with pytest.raises(TypeError, match="cb should be a Callback or a Callback class"):
        learn.remove_cb("recorder")
    good = EventLog()
    with pytest.raises(TypeError, match="Callback"):
        learn.fit(1, cbs=[good, "not a callback"])
    assert good not in learn.cbs and good.learn is None and good.log == []


def test_one_callback_serves_every_learner_it_is_attached_to():
    """fastai's ensemble loop reuses one cbs list for each new learner; interleaved fits
    and validations each see their own learner."""

    class Seen(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.learners: list[object] = []

        def after_batch(self) -> None:
            self.learners.append(self.learn)

    cb = Seen()
    cbs = [cb]
    first = make_learner(data=small_data(1, 1), cbs=cbs)
    second = make_learner(data=small_data(1, 1), cbs=cbs)
    assert cb in first.cbs and cb in second.cbs
    for learn in (first, second, first):
        cb.learners.clear()
        learn.fit(1)
        learn.validate()
        assert cb.learners and all(seen is learn for seen in cb.learners)


# ---- recorder, driven by hand (no optimizer needed) ---------------------------------------
def _drive_recorder(metrics, train_losses, valid_batches):
    """Run the Recorder through one epoch's events with a stand-in learner object."""
    learn = SimpleNamespace(
        metrics=metrics,
        training=True,
        epoch=0,
        loss=None,
        pred=None,
        yb=None,
        current_hypers=lambda: ([0.1, 0.2], [0.9, 0.9]),
    )
    rec = Recorder()
    rec.learn = learn
    rec.before_fit()
    rec.before_epoch()
    for v in train_losses:
        learn.loss = torch.tensor(v, requires_grad=True) * 1.0  # carries a graph
        rec.after_loss()
        rec.after_batch()
    rec.after_train()
    learn.training = False
    rec.before_validate()
    for pred, targ, loss in valid_batches:
        learn.pred, learn.yb, learn.loss = pred, (targ,), loss
        rec.after_loss()
        rec.after_batch()
    rec.after_validate()
    rec.after_epoch()
    rec.after_fit()
    return rec


def test_recorder_smoothing_is_debiased_ema():
    losses = [2.0, 1.0, 3.0, 0.5, 0.25]
    rec = _drive_recorder([], losses, [])
    avg, expected = 0.0, []
    for i, v in enumerate(losses, start=1):
        avg = 0.98 * avg + 0.02 * v
        expected.append(avg / (1 - 0.98**i))
    assert rec.raw_losses == pytest.approx(losses, rel=1e-6)
    assert rec.losses == pytest.approx(expected, rel=1e-6)
    assert rec.losses[0] == pytest.approx(2.0)  # debiased: the first value is the loss
    assert rec.train_losses == [rec.losses[-1]]
    assert rec.group_lrs == [[0.1, 0.2]] * 5 and rec.group_moms == [[0.9, 0.9]] * 5
    assert rec.lrs == [0.2] * 5 and rec.moms == [0.9] * 5  # fastai's: the last group's
    assert rec.nb_batches == [5] and rec.iters == [5]
    assert rec.smooth_loss == rec.losses[-1]


def test_recorder_keeps_floats_not_graphs():
    g = torch.Generator().manual_seed(1)
    preds = torch.randn(10, 3, generator=g, requires_grad=True)
    targs = torch.randint(0, 3, (10,), generator=g)
    rec = _drive_recorder([accuracy], [1.0, 2.0], [(preds, targs, preds.sum() * 0.0 + 1.0)])
    for name in ("losses", "raw_losses", "train_losses", "valid_losses", "epoch_times"):
        assert all(type(v) is float for v in getattr(rec, name)), name
    assert all(type(v) is float for row in rec.metrics for v in row)
    assert all(type(v) is float for row in rec.group_lrs + rec.group_moms for v in row)
    for value in vars(rec).values():  # nothing left that could hold a graph
        assert not isinstance(value, torch.Tensor)
        if isinstance(value, list):
            assert not any(isinstance(v, torch.Tensor) for v in value)


def test_recorder_metrics_over_whole_set_not_batch_mean():
    g = torch.Generator().manual_seed(2)
    preds = torch.randn(21, 4, generator=g)
    targs = torch.randint(0, 4, (21,), generator=g)
    losses = nn.functional.cross_entropy(preds, targs, reduction="none")
    sizes = [8, 8, 5]  # an uneven last batch
    batches, start = [], 0
    for s in sizes:
        sl = slice(start, start + s)
        batches.append((preds[sl], targs[sl], losses[sl].mean()))
        start += s
    rec = _drive_recorder([accuracy, error_rate], [1.0], batches)
    whole_acc = (preds.argmax(1) == targs).float().mean().item()
    per_batch = sum(((p.argmax(1) == t).float().mean().item() for p, t, _ in batches)) / 3
    assert rec.metrics[0][0] == pytest.approx(whole_acc, abs=1e-7)
    assert rec.metrics[0][1] == pytest.approx(1 - whole_acc, abs=1e-7)
    assert rec.valid_losses[0] == pytest.approx(losses.mean().item(), rel=1e-6)
    assert abs(per_batch - whole_acc) > 1e-3  # the two really differ on this split
    names = ["epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "time"]
    assert rec.metric_names == names
    assert rec.values == [[rec.train_losses[0], rec.valid_losses[0], *rec.metrics[0]]]


def test_recorder_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        Recorder(beta=1.0)


def test_recorder_plots_return_figures():
    from matplotlib.figure import Figure

    rec = _drive_recorder([], [1.0 / (i + 1) for i in range(30)], [])
    rec.group_lrs = [[1e-5 * 1.3**i, 1e-4 * 1.3**i] for i in range(30)]
    assert isinstance(rec.plot(), Figure)
    assert isinstance(rec.plot_losses(), Figure)
    fig = rec.plot_lr(show_moms=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    with pytest.raises(ValueError, match="lr_find"):
        Recorder().plot()


# ---- progress -------------------------------------------------------------------------------
def test_format_time():
    assert format_time(0) == "00:00"
    assert format_time(18.9) == "00:18"
    assert format_time(70) == "01:10"
    assert format_time(3600 + 62) == "1:01:02"


def test_table_layout_is_fastprogress():
    names = ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
    assert format_header(names) == "epoch     train_loss  valid_loss  error_rate  time    "
    row = format_row(names, [0, 1.175709, 0.318438, 0.0998, "00:18"])
    assert row == "0         1.175709    0.318438    0.099800    00:18     "
    assert format_row(names, [12, 1.0, None, None, "00:01"]).split() == [
        "12", "1.000000", "#na#", "#na#", "00:01",
    ]  # fmt: skip


ROW = re.compile(r"^\d+ +\d+\.\d{6} +\d+\.\d{6} +\d+\.\d{6} +\d\d:\d\d +$")


def test_plain_output_one_line_per_epoch():
    learn = make_learner(data=small_data(2, 1), metrics=error_rate)
    out = io.StringIO()  # not a terminal
    learn.progress.stream = out
    learn.fit(2)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "epoch     train_loss  valid_loss  error_rate  time    "
    assert len(lines) == 3 and all(ROW.match(line) for line in lines[1:])
    assert lines[1].startswith("0 ") and lines[2].startswith("1 ")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_bar_and_no_bar():
    learn = make_learner(data=small_data(3, 1), metrics=error_rate)
    tty = FakeTTY()
    learn.progress.stream = tty
    learn.progress.min_interval = 0.0
    learn.fit(1)
    text = tty.getvalue()
    assert "\r|" in text and "100.00% [3/3" in text and "[1/1" in text
    rows = [line.split("\r")[-1] for line in text.split("\n") if line]
    assert ROW.match(rows[-1])

    tty = FakeTTY()
    learn.progress.stream = tty
    with learn.no_bar():
        assert learn.progress.show_bar is False
        learn.fit(1)
    assert learn.progress.show_bar is True
    assert "\r" not in tty.getvalue() and len(tty.getvalue().splitlines()) == 2

    learn.no_bar()  # a plain call turns it off for good
    tty = FakeTTY()
    learn.progress.stream = tty
    learn.fit(1)
    assert "\r" not in tty.getvalue()


def test_progress_bar_values():
    bar = PassBar(10, FakeTTY(), notebook=False, min_interval=0.0)  # the fit's terminal bar
    bar.update(5)
    text = bar.out.getvalue()
    assert text.startswith("\r|" + "-" * 40 + "| 0.00% [0/10 ")  # drawn when the phase starts
    assert text.split("\r")[-1].startswith("|" + "█" * 20 + "-" * 20 + "| 50.00% [5/10 ")


def test_a_callback_reads_the_learners_state_as_its_own():
    """fastai v2's callbacks (GetAttr) write self.epoch, self.training, self.loss: a callback
    ported from there raised AttributeError."""
    from fastcore_ext.vision import Callback as StarCallback

    seen = []

    class Ported(StarCallback):
        def after_batch(self):
            if self.training:
                seen.append(
                    (self.epoch, self.iter, float(self.loss), self.model is self.learn.model)
                )

    learn = make_learner()
    cb = Ported()
    with pytest.raises(AttributeError, match="nor a learner to read it from yet"):
        _ = cb.epoch
    learn.fit(1, cbs=cb)
    assert seen and seen[0][:2] == (0, 0) and all(same for *_, same in seen)
    cb.learn = learn
    with pytest.raises(
        AttributeError, match="'Ported' object has no attribute 'no_such', nor has its learner"
    ):
        _ = cb.no_such
    with pytest.warns(UserWarning, match=r"Ported: you are shadowing an attribute \(epoch\)"):
        cb.epoch = 7  # writing sets the callback's own, warned of as fastai does
    assert cb.epoch == 7 and learn.epoch != 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cb.epoch = 8  # its own now: no second warning
        cb.counted = 1  # not the learner's


def test_run_false_skips_a_callback_until_the_fit_ends_as_fastai():
    """fastai's ``self.run = not hasattr(self.learn, 'lr_finder')``: the callback sat out
    nothing (a CancelBatchException of it then cancelled every batch of a real fit)."""

    class SkipInLrFind(Callback):
        def __init__(self):
            super().__init__()
            self.n = 0

        def before_fit(self):
            self.run = not hasattr(self.learn, "lr_finder")

        def after_batch(self):
            self.n += 1

    learn = make_learner()
    learn.progress.stream = io.StringIO()
    cb = SkipInLrFind()
    learn.add_cb(cb)
    learn.lr_find(num_it=5, show_plot=False)
    assert cb.n == 0 and cb.run  # skipped, and run again at the end
    learn.fit(1)
    assert cb.n == len(learn.data.train_dl) + len(learn.data.valid_dl)


def test_a_callback_class_is_instantiated_as_fastai_does():
    """cbs=SaveModelCallback (the class) raised "'type' object is not iterable"."""
    from fastcore_ext.callback import CSVLogger

    learn = make_learner(cbs=CSVLogger)
    assert any(type(cb) is CSVLogger for cb in learn.cbs)
    seen = []

    class Count(Callback):
        def after_epoch(self):
            seen.append(self.epoch)

    learn.fit(2, cbs=Count)
    learn.fit(1, cbs=[Count])
    assert seen == [0, 1, 0] and not any(type(cb) is Count for cb in learn.cbs)


def test_the_batch_is_held_as_fastai_v2_holds_it_tuples_of_inputs_and_targets():
    """A v2 callback counting items with len(self.yb[0]) got len() of a 0-d tensor, and one
    reading self.xb[0] got one image instead of the batch."""

    class Count(Callback):
        def before_fit(self) -> None:
            self.items, self.shapes = 0, set()

        def after_batch(self) -> None:
            if self.training:
                self.items += len(self.yb[0])
                self.shapes.add(tuple(self.xb[0].shape))

    count = Count()
    learn = make_learner(cbs=[count])
    learn.fit(1)
    bs = learn.data.train_dl.bs
    assert count.items == len(learn.data.train_dl) * bs
    assert {s[0] for s in count.shapes} <= {bs} and all(len(s) == 4 for s in count.shapes)


def test_fastais_callback_management_api():
    """fastbook ch. 16: add_cb of a class, chained; the callback as the learner's attribute
    of its name; remove_cb by class; added_cbs / removed_cbs context managers."""

    class CountCB(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def after_batch(self) -> None:
            self.n += 1

    learn = make_learner(data=small_data(2, 1))
    assert CountCB().name == "count_cb" and Recorder().name == "recorder"
    assert learn.add_cb(CountCB).fit(1) is None  # add_cb returns the learner
    cb = learn.count_cb
    assert isinstance(cb, CountCB) and cb.n > 0
    assert learn.terminate_on_na_n in learn.cbs
    with learn.removed_cbs(CountCB):  # by class
        assert cb not in learn.cbs
        learn.fit(1)
    assert cb in learn.cbs and cb.learn is learn and isinstance(learn.cbs, L)
    n = cb.n
    with pytest.raises(RuntimeError, match="inside"), learn.removed_cbs(cb):
        raise RuntimeError("inside")
    assert cb in learn.cbs and cb.n == n
    assert learn.remove_cb(CountCB) is learn and cb not in learn.cbs
    with pytest.raises(AttributeError, match="has no attribute 'count_cb'"):
        learn.count_cb  # noqa: B018
    assert learn.remove_cb(CountCB) is learn  # none attached: nothing to do, as fastai's
    with learn.removed_cbs(other := CountCB()):  # not attached: not attached afterwards
        pass
    assert other not in learn.cbs
    other = CountCB()
    with learn.added_cbs(other):
        assert other in learn.cbs
        learn.fit(1)
    assert other not in learn.cbs and other.n > 0 and other.learn is None


def test_pct_train_and_a_schedule_of_ones_own_through_set_hyper():
    """fastbook ch. 16's scheduler written by hand: self.opt.set_hyper('lr', f(pct_train)) in
    before_batch of a plain fit; pct_train as fastai's (0 at the start, a batch counted from
    its after_batch on, 1 at the end)."""
    seen: list[float] = []

    class LinearLR(Callback):
        def before_batch(self) -> None:
            if self.training:
                seen.append(self.pct_train)
                self.opt.set_hyper("lr", 1e-3 * (1 - self.pct_train))

    learn = make_learner(data=small_data(4, 1))
    learn.fit(2, cbs=LinearLR())
    n = len(seen)
    assert n == 8 and seen == pytest.approx([k / n for k in range(n)])
    assert learn.pct_train == pytest.approx(1.0)
    lrs = [g[0] for g in learn.recorder.group_lrs]
    assert lrs == pytest.approx([1e-3 * (1 - k / n) for k in range(n)])


def test_an_exception_in_a_callback_names_the_callback_and_the_event():
    """fastai: "Exception occured in `Boom` when calling event `after_batch`"; ours said only
    the exception. The note is added once (the innermost callback); Cancel* pass as they are."""

    class Boom(Callback):
        def after_batch(self):
            raise ValueError("my bug")

    learn = make_learner()
    with pytest.raises(ValueError, match="my bug") as info:
        learn.fit(1, cbs=Boom())
    notes = [n for n in info.value.__notes__ if n.startswith("in callback")]
    assert notes == ["in callback Boom, event after_batch"]
