"""fastai v1's callback spellings: `callback_fns=` (each called with the learner at the start
of every fit), fit's / fit_one_cycle's `callbacks=`, the trackers and CSVLogger with the
learner first (`SaveModelCallback(learn, every=, monitor=, mode=, name=)`,
`EarlyStoppingCallback(learn, monitor=, min_delta=, patience=)`), and ShowGraph."""

from __future__ import annotations

import operator
from functools import partial

import numpy as np
import pytest
import torch
from fakes import N_BATCHES, make_learner, scripted

from fastcore_ext import plots
from fastcore_ext.callback import (
    Callback,
    CSVLogger,
    EarlyStoppingCallback,
    SaveModelCallback,
    ShowGraph,
    ShowGraphCallback,
)
from fastcore_ext.callback import show_graph as show_graph_mod
from fastcore_ext.files import PLOTS_MARKER


class Counter(Callback):
    """Counts the epochs it saw; remembers the learner it was made with (v1's form)."""

    made: list[Counter] = []

    def __init__(self, learn=None, step: int = 1) -> None:
        super().__init__()
        self.made_with, self.step, self.epochs = learn, step, 0
        Counter.made.append(self)

    def after_epoch(self) -> None:
        self.epochs += self.step


# ---- callback_fns and callbacks= -------------------------------------------------------------
def test_callback_fns_are_called_with_the_learner_at_each_fit(tmp_path):
    Counter.made = []
    learn = make_learner(path=tmp_path, callback_fns=[partial(Counter, step=2)])
    assert learn.callback_fns and Counter.made == []  # made when a fit starts
    learn.fit(2)
    learn.fit(1)
    assert [c.made_with for c in Counter.made] == [learn, learn]
    assert [c.epochs for c in Counter.made] == [4, 2]  # a fresh one per fit, step 2
    assert not any(isinstance(cb, Counter) for cb in learn.cbs)  # gone after its fit
    learn.callback_fns.append(Counter)  # v1 notebooks append to the list
    learn.fit(1)
    assert len(Counter.made) == 4


def test_callback_fns_errors(tmp_path):
    with pytest.raises(TypeError, match="callback_fns should hold functions"):
        make_learner(path=tmp_path, callback_fns=[3])

    class NoLearner(Callback):
        def __init__(self) -> None:
            super().__init__()

    learn = make_learner(path=tmp_path, callback_fns=[NoLearner])
    with pytest.raises(TypeError, match="cannot be called with the learner.*cbs= instead"):
        learn.fit(1)
    learn = make_learner(path=tmp_path, callback_fns=[lambda learn: "not a callback"])
    with pytest.raises(TypeError, match="should return a fastcore_ext Callback, got str"):
        learn.fit(1)


def test_callbacks_is_v1s_name_for_cbs(tmp_path):
    Counter.made = []
    learn = make_learner(path=tmp_path)
    learn.fit(2, callbacks=[Counter()])
    learn.fit_one_cycle(1, callbacks=Counter())
    assert [c.epochs for c in Counter.made] == [2, 1]
    built = make_learner(path=tmp_path, callbacks=[Counter()])
    assert Counter.made[-1] in built.cbs
    with pytest.raises(TypeError, match="give cbs or callbacks"):
        learn.fit(1, cbs=[Counter()], callbacks=[Counter()])
    with pytest.raises(TypeError, match="give cbs or callbacks"):
        make_learner(path=tmp_path, cbs=[Counter()], callbacks=[Counter()])


# ---- the trackers in v1's form ---------------------------------------------------------------
def test_save_model_callback_v1_form_keeps_the_best(tmp_path):
    learn = make_learner(metrics=[scripted("accuracy", [0.5, 0.8, 0.7])], path=tmp_path)
    saver = SaveModelCallback(learn, every="improvement", monitor="accuracy", mode="auto")
    assert (saver.learn, saver.fname, saver.monitor, saver.every_epoch) == (
        learn,
        "bestmodel",
        "accuracy",
        0,
    )
    learn.fit(3, callbacks=[saver])
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["bestmodel.pth"]
    assert saver.best == 0.8  # accuracy: higher is better
    assert "Better model found at epoch 1 with accuracy value: 0.8." in (
        learn.progress.stream.getvalue()
    )


def test_save_model_callback_v1_every_epoch_through_callback_fns(tmp_path):
    learn = make_learner(
        path=tmp_path,
        callback_fns=[partial(SaveModelCallback, every="epoch", monitor="valid_loss", name="m")],
    )
    learn.fit(2)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m_0.pth", "m_1.pth"]


@pytest.mark.parametrize(
    "mode, values, best", [("min", [0.5, 0.3, 0.4], 0.3), ("max", [0.5, 0.3, 0.6], 0.6)]
)
def test_mode_sets_the_direction(tmp_path, mode, values, best):
    learn = make_learner(metrics=[scripted("score", values)], path=tmp_path)
    saver = SaveModelCallback(learn, monitor="score", mode=mode)
    learn.fit(3, callbacks=saver)
    assert saver.best == best


def test_early_stopping_v1_patience_counts_as_v1s(tmp_path):
    """v1 stopped once more than `patience` epochs went without improvement: v1's 0 stops
    after the first epoch that did not improve, v1's 1 after the second."""
    for patience, epochs in ((0, 2), (1, 3)):
        learn = make_learner(metrics=[scripted("my_error", [0.5, 0.6, 0.7, 0.8])], path=tmp_path)
        stop = EarlyStoppingCallback(learn, monitor="my_error", patience=patience)
        learn.fit(4, callbacks=stop)
        assert learn.recorder.epochs == list(range(epochs))
    v2 = EarlyStoppingCallback("my_error", patience=2)
    assert v2.patience == 2 and v2.learn is None
    assert EarlyStoppingCallback(learn).patience == 1  # v1's default 0


def test_early_stopping_v1_min_delta(tmp_path):
    learn = make_learner(metrics=[scripted("my_error", [0.5, 0.49, 0.3])], path=tmp_path)
    learn.fit(3, callbacks=EarlyStoppingCallback(learn, monitor="my_error", min_delta=0.05))
    assert learn.recorder.epochs == [0, 1]  # 0.49 is not better by more than 0.05


def test_csv_logger_v1_form(tmp_path):
    learn = make_learner(path=tmp_path, callback_fns=[partial(CSVLogger, filename="hist")])
    learn.fit(1)
    assert (tmp_path / "hist.csv").read_text().startswith("epoch,train_loss,valid_loss")
    assert CSVLogger("a.csv").fname.name == "a.csv" and CSVLogger(fname="b.csv").fname.name == (
        "b.csv"
    )
    with pytest.raises(TypeError, match="give the file name once"):
        CSVLogger("a.csv", filename="b")


def test_tracker_forms_are_never_ambiguous(tmp_path):
    learn = make_learner(path=tmp_path)
    assert SaveModelCallback("accuracy").monitor == "accuracy"  # v2, positional
    assert SaveModelCallback(monitor="accuracy").fname == "model"
    assert SaveModelCallback(mode="max").comp is np.greater
    assert SaveModelCallback(comp=operator.lt).comp is operator.lt
    with pytest.raises(TypeError, match="give the other arguments by keyword"):
        SaveModelCallback(learn, "accuracy")
    with pytest.raises(TypeError, match="give the other arguments by keyword"):
        EarlyStoppingCallback(learn, "valid_loss", "min")
    with pytest.raises(TypeError, match="the monitored column was given twice"):
        SaveModelCallback("accuracy", monitor="valid_loss")
    with pytest.raises(TypeError, match="the first argument should be the monitored column"):
        EarlyStoppingCallback(3)
    with pytest.raises(ValueError, match=r"mode should be one of \('auto', 'min', 'max'\)"):
        SaveModelCallback(learn, mode="lowest")
    with pytest.raises(TypeError, match="give comp .* or mode"):
        EarlyStoppingCallback(comp=np.less, mode="min")
    with pytest.raises(TypeError, match="give fname .* or name"):
        SaveModelCallback(fname="a", name="b")
    with pytest.raises(ValueError, match="every should be 'improvement' or 'epoch'"):
        SaveModelCallback(learn, every="batch")
    with pytest.raises(TypeError, match="give every_epoch .* or every"):
        SaveModelCallback(every_epoch=True, every="epoch")
    with pytest.raises(ValueError, match="patience should be an int >= 0"):
        EarlyStoppingCallback(learn, patience=-1)
    other = make_learner(path=tmp_path)
    cb = SaveModelCallback(learn, every="epoch", name="other")
    other.fit(1, callbacks=cb)  # serves the learner that fits (fastai's cbs rebind too)
    assert (tmp_path / "models" / "other_0.pth").is_file() and cb.learn is None


# ---- ShowGraph -------------------------------------------------------------------------------
def test_show_graph_draws_the_losses_after_each_epoch(tmp_path):
    plots.set_plot_dir(tmp_path / "plots")
    learn = make_learner(path=tmp_path, callback_fns=[ShowGraph])
    seen = []

    class Peek(Callback):
        order = 70

        def after_epoch(self) -> None:
            graph = next(cb for cb in self.learn.cbs if isinstance(cb, ShowGraph))
            seen.append(graph.fig)

    learn.fit(3, cbs=Peek())
    assert len(seen) == 3 and len({id(f) for f in seen}) == 3
    ax = seen[-1].axes[0]
    assert ax.get_xlim() == (0, 3 * N_BATCHES)
    train, valid = ax.get_lines()[:2]
    assert len(train.get_xdata()) == 3 * N_BATCHES
    assert list(valid.get_ydata()) == learn.recorder.valid_losses
    first = seen[0].axes[0]
    assert first.get_xlim() == (0, 3 * N_BATCHES) and len(first.get_lines()[0].get_xdata()) == 8
    assert [p.name for p in (tmp_path / "plots").iterdir() if p.name != PLOTS_MARKER] == [
        "show_graph.png"
    ]  # updated
    learn.fit(1)  # a later fit: its graph in a file of its own
    assert sorted(p.name for p in (tmp_path / "plots").iterdir() if p.name != PLOTS_MARKER) == [
        "show_graph-2.png",
        "show_graph.png",
    ]


def test_show_graph_sits_out_lr_find_and_has_v2s_name(tmp_path):
    graph = ShowGraphCallback()
    assert isinstance(graph, ShowGraph)
    learn = make_learner(path=tmp_path, cbs=graph)
    learn.lr_find(num_it=10)
    assert graph.fig is None


def test_show_graph_updates_one_notebook_output(tmp_path, monkeypatch):
    shown = []

    class Handle:
        def update(self, data, raw):
            shown.append(("update", data["image/png"][:8]))

    def display(data, raw, display_id):
        shown.append(("display", data["image/png"][:8]))
        return Handle()

    monkeypatch.setattr(show_graph_mod, "in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", display)
    learn = make_learner(path=tmp_path, cbs=ShowGraph())
    learn.fit(3)
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert all(png == b"\x89PNG\r\n\x1a\n" for _, png in shown)
    learn.fit(1)  # a new fit: a new output
    assert shown[-1][0] == "display"


def test_show_graph_v1_form(tmp_path):
    learn = make_learner(path=tmp_path)
    graph = ShowGraph(learn)
    assert graph.learn is learn
    learn.fit(1, callbacks=[graph])
    assert graph.fig is not None and torch.isfinite(torch.tensor(learn.recorder.raw_losses)).all()


def test_an_object_that_is_no_callback_is_named(tmp_path):
    """One object that is no Callback in cbs said "'V1' object is not iterable"."""

    class V1:
        def on_batch_end(self, **kwargs):
            pass

    class Plain:
        pass

    learn = make_learner()
    with pytest.raises(TypeError, match=r"got .*V1.* \(it defines fastai v1's \['on_batch_end'\]"):
        learn.fit(1, cbs=V1())
    with pytest.raises(TypeError, match=r"got .*Plain.* \(class MyCallback\(Callback\)"):
        learn.fit(1, cbs=[Plain()])
