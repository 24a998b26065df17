"""fastai v1's Learner spellings: fit_one_cycle's two momentums, div_factor and final_div,
validate(dl) given first, learn.interpret(), purge() and destroy()."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch
from fakes import N_BATCHES, make_learner

from fastcore_ext.interpret import ClassificationInterpretation


def one_cycle(step: int, total: int, lo: float, hi: float, end: float, pct: float) -> float:
    """fastai's cosine one-cycle value at step `step` (0-based) of `total`, written out: lo ->
    hi while step / total < pct, then hi -> end."""
    pos = step / total
    if pos < pct:
        t, a, b = pos / pct, lo, hi
    else:
        t, a, b = (pos - pct) / (1 - pct), hi, end
    return b + (a - b) * (1 + math.cos(math.pi * t)) / 2


def test_fit_one_cycle_takes_v1s_moms_div_factor_and_final_div(tmp_path):
    learn = make_learner(path=tmp_path)
    learn.fit_one_cycle(
        2, max_lr=1e-2, moms=(0.95, 0.85), div_factor=10.0, final_div=100.0, pct_start=0.3
    )
    lrs = learn.recorder.lrs
    moms = learn.recorder.moms
    total = 2 * N_BATCHES
    want_lr = [one_cycle(i, total, 1e-3, 1e-2, 1e-4, 0.3) for i in range(total)]
    want_mom = [one_cycle(i, total, 0.95, 0.85, 0.95, 0.3) for i in range(total)]
    assert lrs == pytest.approx(want_lr, rel=1e-5)
    assert moms == pytest.approx(want_mom, rel=1e-5)


def test_fit_one_cycle_v1_names_conflict_with_v2s(tmp_path):
    learn = make_learner(path=tmp_path)
    with pytest.raises(TypeError, match="give div or div_factor"):
        learn.fit_one_cycle(1, div=10.0, div_factor=5.0)
    with pytest.raises(TypeError, match="give div_final or final_div"):
        learn.fit_one_cycle(1, div_final=1e4, final_div=1e3)
    with pytest.raises(ValueError, match=r"^div_factor \(fastai v1's name of div\): div should"):
        learn.fit_one_cycle(1, div_factor=0)  # the error named div, which the user never typed
    with pytest.raises(ValueError, match=r"^final_div \(fastai v1's name of div_final\): "):
        learn.fit_one_cycle(1, final_div=0.5)
    with pytest.raises(ValueError, match="moms should be 3 floats"):
        learn.fit_one_cycle(1, moms=(0.9,))
    with pytest.raises(TypeError, match=r"third positional argument was moms.*moms=\(0.95, 0.85\)"):
        learn.fit_one_cycle(1, 1e-3, (0.95, 0.85))  # v1's positional order


def test_validate_takes_a_loader_first_as_v1(tmp_path):
    learn = make_learner(path=tmp_path, metrics=[])
    dl = learn.data.valid_dl
    assert learn.validate(dl) == learn.validate(dl=dl) == learn.validate()
    part = [next(iter(dl))]
    assert learn.validate(part) == learn.validate(dl=part) != learn.validate()


def test_interpret_is_from_learner(tmp_path):
    learn = make_learner(path=tmp_path)
    interp = learn.interpret()
    assert isinstance(interp, ClassificationInterpretation)
    probs, targets, losses = learn.get_preds(with_loss=True)
    assert torch.equal(interp.probs, probs) and torch.equal(interp.losses, losses)
    assert torch.equal(interp.targets, targets)
    with pytest.raises(TypeError, match="DeviceDataLoader"):
        learn.interpret(tta=True)  # TTA needs image loaders (tests/test_tta_v1.py)


def test_purge_releases_grads_and_optimizer_state(tmp_path):
    learn = make_learner(path=tmp_path)
    learn.freeze()
    learn.fit(1, lr=1e-2)
    learn.model[0].weight.grad = torch.ones_like(learn.model[0].weight)
    weights = [p.detach().clone() for p in learn.model.parameters()]
    assert any(len(s) for s in learn.opt.state.values())
    frozen = [p.requires_grad for p in learn.model.parameters()]
    assert learn.purge() is learn
    assert all(p.grad is None for p in learn.model.parameters())
    assert not any(len(s) for s in learn.opt.state.values())
    assert all(torch.equal(a, p) for a, p in zip(weights, learn.model.parameters(), strict=True))
    assert [p.requires_grad for p in learn.model.parameters()] == frozen
    learn.fit(1)  # still trains
    kept = make_learner(path=tmp_path)
    kept.fit(1)
    kept.purge(clear_opt=False)
    assert any(len(s) for s in kept.opt.state.values())
    with pytest.raises(TypeError, match="clear_opt"):
        kept.purge(clear_opt="yes")


def test_destroy_frees_the_model_and_says_so(tmp_path, capsys):
    learn = make_learner(path=tmp_path)
    learn.fit(1)
    weight = weakref.ref(learn.model[0].weight)
    learn.destroy()
    gc.collect()
    assert weight() is None
    assert "self-destroyed" in capsys.readouterr().out
    assert list(learn.model.parameters()) == []
    with pytest.raises(RuntimeError, match=r"destroyed \(learn.destroy\(\)\)"):
        learn.fit(1)
    with pytest.raises(RuntimeError, match="destroyed"):
        learn.get_preds()
    with pytest.raises(RuntimeError, match="destroyed"):
        learn.model(torch.zeros(1, 3, 8, 8))
    assert learn.recorder.epochs == [0]  # the history stays
