"""optim.OptimWrapper: a torch optimizer as opt_func follows the one-cycle schedules
(fit_one_cycle, fit_flat_cos, fine_tune) as this library's fused optimizers do."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from fakes import make_learner

from fastcore_ext.optim import SGD, Adam, OptimWrapper


def _pair(opt_func, **kwargs):
    """A learner with `opt_func` and one with this library's Adam, same model and data."""
    return make_learner(opt_func=opt_func, **kwargs), make_learner(opt_func=Adam, **kwargs)


def test_torch_adamw_in_fit_one_cycle_trains_as_our_adam():
    """Our Adam is torch's AdamW(betas=(mom, 0.99), eps=1e-5) step for step: under the same
    schedule the two learners end with the same weights (it refused fit_one_cycle)."""
    adamw = partial(torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-5)
    theirs, ours = _pair(adamw, wd=0.01)
    assert isinstance(theirs.opt, OptimWrapper) and isinstance(theirs.opt.opt, torch.optim.AdamW)
    for learn in (theirs, ours):
        torch.manual_seed(1)  # the same batches and dropout masks
        learn.fit_one_cycle(2, 1e-2)
    assert (
        theirs.recorder.group_lrs == ours.recorder.group_lrs
        and theirs.recorder.group_moms == ours.recorder.group_moms
    )
    for a, b in zip(theirs.model.parameters(), ours.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert theirs.validate() == pytest.approx(ours.validate(), rel=1e-4)


def test_the_schedule_reaches_the_groups_and_is_put_back():
    seen = []
    learn = make_learner(opt_func=partial(torch.optim.SGD, momentum=0.5), wd=0.0)

    def record(self=None):
        g = learn.opt.param_groups[-1]
        seen.append((g["lr"], g["momentum"]))

    learn.opt.opt.register_step_post_hook(lambda *_: record())
    learn.fit_one_cycle(1, 1e-2, moms=(0.95, 0.85, 0.95))
    lrs, moms = zip(*seen, strict=True)
    n = len(seen)
    want = [learn.opt.hypers_at(k) for k in range(n)]
    assert list(lrs) == [w[0][-1] for w in want] and list(moms) == [w[1][-1] for w in want]
    assert lrs[0] == pytest.approx(1e-2 / 25) and max(lrs) == pytest.approx(1e-2, rel=0.05)
    assert moms[0] == pytest.approx(0.95) and min(moms) < 0.9
    learn.fit(1, 3e-3)  # a plain fit: fit's lr, and the schedule's last momentum, as fastai's
    assert [g["lr"] for g in learn.opt.param_groups] == [3e-3] * len(learn.opt.param_groups)
    assert [g["momentum"] for g in learn.opt.param_groups] == pytest.approx(
        [moms[-1]] * len(learn.opt.param_groups)
    )
    learn.fine_tune(1)
    learn.fit_flat_cos(1)


def test_save_and_load_after_a_scheduled_fit(tmp_path):
    learn = make_learner(opt_func=torch.optim.AdamW, path=tmp_path)
    learn.fit_one_cycle(1, 1e-2)
    learn.save("stage")
    other = make_learner(opt_func=torch.optim.AdamW, path=tmp_path)
    other.load("stage")
    assert other.opt.state_dict()["state"].keys() == learn.opt.state_dict()["state"].keys()
    assert other.validate() == learn.validate()
    other.fit_one_cycle(1, 1e-3)


def test_fastais_form_and_refusals():
    learn = make_learner(opt_func=partial(OptimWrapper, opt=torch.optim.Adam))
    assert type(learn.opt.opt) is torch.optim.Adam and "OptimWrapper(Adam)" in str(learn.summary())
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(TypeError, match="opt should be a torch optimizer class"):
        OptimWrapper(params, opt=lambda p, **kw: 3)
    with pytest.raises(TypeError, match="Adam runs the one-cycle schedule itself"):
        OptimWrapper(params, opt=Adam)
    with pytest.raises(TypeError, match="SGD runs the one-cycle schedule itself"):
        OptimWrapper.of(SGD(params))
    wrapped = OptimWrapper.of(torch.optim.SGD(params, lr=0.1))
    copied = copy.deepcopy(wrapped)  # Optimizer's own __setstate__ would set the properties
    assert copied.param_groups[0]["lr"] == 0.1 and copied.opt is not wrapped.opt
    with pytest.raises(ValueError, match="set_lr_max needs a one-cycle schedule"):
        wrapped.set_lr_max(1.0)
    with pytest.raises(ValueError, match=r"lr_max should be one number or one per param group"):
        wrapped.set_one_cycle(10, [1.0, 2.0])


def test_hypers_and_set_hyper_by_fastais_names():
    """fastai's opt.hypers / opt.set_hyper(k, v) on the fused optimizers and OptimWrapper;
    under a one-cycle schedule hypers give its values and set_hyper of lr / mom is refused."""
    p, q = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    adam = Adam([[p], [q]], lr=1e-3, wd=0.01)
    assert adam.hypers == [{"lr": 1e-3, "mom": 0.9, "sqr_mom": 0.99, "eps": 1e-5, "wd": 0.01}] * 2
    adam.set_hyper("lr", [0.1, 0.2])
    adam.set_hyper("wd", 0.0)
    assert [h["lr"] for h in adam.hypers] == [0.1, 0.2] and {h["wd"] for h in adam.hypers} == {0}
    for g in (p, q):
        g.grad = torch.ones_like(g)
    adam.step()  # the fused kernel reads the new values: Adam's first step moves by lr
    assert torch.allclose(p, torch.full((2,), -0.1), atol=1e-4)
    assert torch.allclose(q, torch.full((3,), -0.2), atol=1e-4)
    with pytest.raises(ValueError, match=r"set_hyper: v should be one number or one per param"):
        adam.set_hyper("lr", [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"set_hyper: k should be one of \['eps', 'lr', 'mom'"):
        adam.set_hyper("momentum", 0.9)
    adam.set_one_cycle(10, 1e-2)
    lrs, moms = adam.hypers_at(adam.schedule_step)
    assert [h["lr"] for h in adam.hypers] == lrs and [h["mom"] for h in adam.hypers] == moms
    with pytest.raises(ValueError, match=r"set_hyper\('lr'\): the one-cycle schedule"):
        adam.set_hyper("lr", 0.1)
    adam.set_hyper("eps", 1e-6)  # not scheduled
    wrapped = OptimWrapper([p], opt=torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.1)
    assert wrapped.hypers == [{"lr": 0.1, "mom": 0.9, "wd": 0.1}]
    wrapped.set_hyper("mom", 0.5)
    wrapped.set_hyper("wd", 0.0)
    assert wrapped.param_groups[0]["momentum"] == 0.5
    assert wrapped.param_groups[0]["weight_decay"] == 0.0
    torch_adam = OptimWrapper([p], opt=torch.optim.AdamW)
    torch_adam.set_hyper("sqr_mom", 0.9)
    assert torch_adam.param_groups[0]["betas"] == (0.9, 0.9)
    assert torch_adam.hypers[0]["sqr_mom"] == 0.9 and torch_adam.hypers[0]["mom"] == 0.9
