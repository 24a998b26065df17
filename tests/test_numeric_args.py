"""Every numeric argument of the learner's API takes numpy and one-element torch numbers as
it takes Python numbers (fastai accepts numpy ints for bs, fit_one_cycle, freeze_to): a user
whose epochs or learning rate come out of numpy gets the same fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import make_learner, tiny_model

from fastcore_ext.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastcore_ext.interpret import ClassificationInterpretation
from fastcore_ext.losses import LabelSmoothingCrossEntropy
from fastcore_ext.metrics import FBeta, top_k_accuracy
from fastcore_ext.model_builder import create_body, create_head
from fastcore_ext.optim import Adam
from fastcore_ext.schedule import exp_sweep, one_cycle


def recorded_lrs(learn) -> list[float]:
    return learn.recorder.lrs


@pytest.mark.parametrize(
    "max_lr", [np.float32(2e-3), np.float64(2e-3), torch.tensor(2e-3), torch.tensor([2e-3])]
)
def test_fit_one_cycle_takes_numpy_and_tensor_numbers(max_lr):
    """np.float32 was refused and torch.tensor(1e-3) failed with "'float' object is not
    iterable"; np.int64 epochs were refused."""
    expected = make_learner()
    expected.fit_one_cycle(1, max_lr=float(max_lr.item() if hasattr(max_lr, "item") else max_lr))
    learn = make_learner()
    learn.fit_one_cycle(
        np.int64(1), max_lr=max_lr, div=np.float32(25), pct_start=np.float64(0.25),
        moms=(np.float32(0.95), np.float32(0.85), np.float32(0.95)),
    )  # fmt: skip
    assert learn.epochs_trained == 1 and type(learn.n_epoch) is int
    assert recorded_lrs(learn) == pytest.approx(recorded_lrs(expected))


def test_fit_freeze_and_lr_find_take_numpy_numbers():
    learn = make_learner()
    learn.freeze_to(np.int64(1))
    assert not any(p.requires_grad for p in learn.model[0].parameters())
    learn.fit(np.int64(1), lr=np.float32(1e-3), wd=np.float32(0.0))
    assert recorded_lrs(learn)[0] == pytest.approx(1e-3)
    learn.lr_find(start_lr=np.float32(1e-5), end_lr=np.float64(1.0), num_it=np.int64(5))
    assert len(learn.recorder.group_lrs) <= 5
    learn.fine_tune(np.int64(1), base_lr=np.float32(2e-3), freeze_epochs=np.int64(0))


def test_interpretation_and_plots_take_numpy_ints():
    learn = make_learner()
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.most_confused(min_val=np.int64(1)) == interp.most_confused(min_val=1)
    losses, idxs = interp.top_losses(np.int64(3))
    assert len(losses) == 3
    interp.plot_confusion_matrix(dpi=np.float32(50), norm_dec=np.int64(2), top=np.int64(2))
    learn.fit(1)
    learn.recorder.plot_loss(skip_start=np.int64(0))


def test_model_metric_loss_and_callback_arguments_take_numpy_numbers():
    head = create_head(np.int64(16), np.int64(3), lin_ftrs=[np.int64(8)], ps=np.float32(0.5))
    assert head(torch.randn(2, 16, 4, 4)).shape == (2, 3)
    body = create_body(lambda weights=None: tiny_model(), False, cut=np.int64(3))
    assert len(body) == 3
    preds, targs = torch.randn(8, 3), torch.randint(0, 3, (8,))
    assert top_k_accuracy(preds, targs, k=np.int64(2)) == top_k_accuracy(preds, targs, k=2)
    assert FBeta(np.float32(0.5), average="macro").beta == 0.5
    assert LabelSmoothingCrossEntropy(np.float32(0.25)).eps == 0.25
    assert EarlyStoppingCallback(patience=np.int64(2)).patience == 2
    assert SaveModelCallback(every_epoch=np.int64(2)).every_epoch == 2
    assert exp_sweep(np.float32(1e-3), np.float64(1.0), np.int64(3))[0] == pytest.approx(1e-3)
    assert one_cycle(0.5, 1e-3, pct_start=np.float32(0.5)) == one_cycle(0.5, 1e-3, pct_start=0.5)
    opt = Adam(tiny_model().parameters(), lr=np.float32(1e-3))
    opt.set_one_cycle(np.int64(10), torch.tensor(1e-3), start_step=np.int64(2))
    assert opt.one_cycle["total_steps"] == 10 and opt.one_cycle["lr_max"] == [pytest.approx(1e-3)]
