"""Mixed precision: to_bf16 (autocast on the CPU and CUDA, float32 weights), to_fp16 (CUDA
autocast + GradScaler driving the fused optimizer; a clear error on the CPU), to_fp32; a
step skipped for overflowed grads leaves the schedule's host mirror equal to the device
counter."""

from __future__ import annotations

import pytest
import torch
from fakes import easy_bunch, make_learner

from fastcore_ext.callback import Callback
from fastcore_ext.schedule import one_cycle


class Dtypes(Callback):
    """The dtype of the model output, per phase."""

    def __init__(self):
        super().__init__()
        self.train: set[torch.dtype] = set()
        self.valid: set[torch.dtype] = set()

    def after_pred(self):
        (self.train if self.learn.training else self.valid).add(self.learn.pred.dtype)


def test_bf16_fit_on_cpu_learns_with_float32_weights():
    learn = make_learner().to_bf16()
    assert learn.precision == "bf16"
    seen = Dtypes()
    learn.fit_one_cycle(4, max_lr=1e-2, cbs=seen)
    assert seen.train == seen.valid == {torch.bfloat16}  # forward passes ran in bfloat16
    losses = learn.recorder.losses
    assert sum(losses[-4:]) < 0.6 * sum(losses[:4])
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    state = learn.opt.state_dict()["state"]
    assert all(v.dtype == torch.float32 for st in state.values() for v in st.values())
    assert learn.scaler is None
    probs, _ = learn.get_preds()
    assert probs.dtype == torch.float32 and torch.allclose(probs.sum(1), torch.ones(len(probs)))


def test_to_fp32_and_precision_names():
    learn = make_learner().to_bf16().to_fp32()
    assert learn.precision == "fp32" and learn.amp_dtype is None and learn.scaler is None
    seen = Dtypes()
    learn.fit(1, cbs=seen)
    assert seen.train == seen.valid == {torch.float32}


def test_fp16_on_the_cpu_names_the_alternative(device):
    learn = make_learner(data=easy_bunch(device=device))
    if device.type == "cpu":
        with pytest.raises(ValueError, match=r"to_fp16 needs a CUDA device.*to_bf16\(\)"):
            learn.to_fp16()
        assert learn.precision == "fp32"
        return
    learn.to_fp16()
    assert learn.precision == "fp16" and learn.scaler is not None
    seen = Dtypes()
    learn.fit_one_cycle(4, max_lr=1e-2, cbs=seen)
    assert seen.train == {torch.float16}
    assert learn._sched_step == learn.opt.schedule_step
    losses = learn.recorder.losses
    assert sum(losses[-4:]) < 0.6 * sum(losses[:4])


def test_lr_find_under_bf16_restores_everything():
    learn = make_learner().to_bf16()
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.lr_find(num_it=12)
    assert all(torch.equal(a, p) for a, p in zip(before, learn.model.parameters(), strict=True))
    assert learn.precision == "bf16"


class InfGrads(Callback):
    """Puts an inf into one gradient at the given training batches (as an fp16 overflow
    would), and keeps a copy of the parameters before every step."""

    order = 100

    def __init__(self, at: set[int]):
        super().__init__()
        self.at = at
        self.params: list[list[torch.Tensor]] = []

    def after_backward(self):
        if self.learn.train_iter - 1 in self.at:
            next(self.learn.model.parameters()).grad.view(-1)[0] = float("inf")

    def before_step(self):
        self.params.append([p.detach().clone() for p in self.learn.model.parameters()])


def test_skipped_steps_keep_the_schedule_mirror_on_the_device_counter():
    """Loss scaling (the fp16 path, driven on the CPU here): a step whose grads hold an inf
    is skipped by the fused optimizer (params and state unchanged) and the scale halves, while
    the schedule position advances, once per batch as fastai's ParamScheduler: the learner's
    host mirror follows the device counter, and the recorded lr of every batch is the one-cycle
    value at that batch."""
    learn = make_learner()
    learn.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=10**6)
    bad = {0, 1, 5}
    probe = InfGrads(bad)
    n = len(learn.data.train_dl)
    learn.fit_one_cycle(2, max_lr=1e-2, cbs=probe)
    counter = learn.opt.schedule_step
    assert counter == 2 * n
    assert learn._sched_step == counter
    assert learn.scaler.get_scale() == 2.0 ** (10 - len(bad))

    def same(i: int, j: int) -> bool:
        pairs = zip(probe.params[i], probe.params[j], strict=True)
        return all(torch.equal(a, b) for a, b in pairs)

    assert all(same(i, i + 1) for i in bad)  # nothing moved at a skipped step
    assert not same(2, 3)
    lrs = [g[0] for g in learn.recorder.lrs]
    assert lrs == [one_cycle(i / (2 * n), 1e-2)[0] for i in range(2 * n)]
