"""fastcore_ext.optim.RMSProp: fastai's RMSProp step for step, against fastai's formula written
out below (per param, in the order of fastai's callbacks), under the one-cycle schedule and
GradScaler, through state_dict, and in the Learner (fit, fit_one_cycle, fine_tune's
freeze / unfreeze, discriminative lrs, lr_find, save / load, bf16 and loss scaling)."""

from __future__ import annotations

import copy
import io
from functools import partial

import pytest
import torch
from fakes import InfGrads, clone_params, make_learner, make_params, tiny_arch
from torch import nn

from fastcore_ext.callback import Callback
from fastcore_ext.callback.mixed_precision import MixedPrecision
from fastcore_ext.data import ImageDataBunch, demo_dataset, imagenet_stats
from fastcore_ext.optim import RMSProp
from fastcore_ext.schedule import one_cycle
from fastcore_ext.vision import create_cnn

# per group: (shapes, lr, sqr_mom, eps, wd); the last param of the last group is empty
GROUPS = [
    ([(7, 13), (7,)], 1e-3, 0.99, 1e-8, 0.01),
    ([(5, 7), (5,), (5, 5, 3)], 3e-3, 0.9, 1e-6, 0.1),
    ([(3, 5), (3,), (0,)], 1e-2, 0.999, 1e-5, 0.0),
]
SHAPES = [shapes for shapes, *_ in GROUPS]
TOTAL = 16  # schedule length: the 20-step runs go past its end
STEPS = 20


def fastai_rmsprop_step(groups, hypers, state, momentum, decouple_wd):
    """One step of fastai.optimizer.RMSProp, written out: for every param with a grad, its
    callbacks in order, [weight_decay] (decouple_wd) or [l2_reg], then [average_grad] when
    built with mom != 0, [average_sqr_grad], [rms_prop_step]. `hypers`: per group (lr, mom,
    sqr_mom, eps, wd)."""
    for ps, (lr, mom, sqr_mom, eps, wd) in zip(groups, hypers, strict=True):
        for p in ps:
            if p.grad is None:
                continue
            st = state.setdefault(p, {})
            grad = p.grad.clone()  # (fastai's l2_reg adds wd * p into p.grad itself)
            if decouple_wd:
                if wd != 0:  # weight_decay
                    p.data.mul_(1 - lr * wd)
            elif wd != 0:  # l2_reg
                grad.add_(p.data, alpha=wd)
            if momentum:  # average_grad(dampening=False)
                grad_avg = st.setdefault("grad_avg", torch.zeros_like(grad))
                grad_avg.mul_(mom).add_(grad, alpha=1.0)
            sqr_avg = st.setdefault("sqr_avg", torch.zeros_like(grad))  # average_sqr_grad
            sqr_avg.mul_(sqr_mom).addcmul_(grad, grad, value=1 - sqr_mom)
            denom = sqr_avg.sqrt().add_(eps)  # rms_prop_step
            p.data.addcdiv_(st["grad_avg"] if momentum else grad, denom, value=-lr)


def flat(groups):
    return [p for ps in groups for p in ps]


def set_grads(groups_a, groups_b, k, device):
    """Grads for step k, the same in both: none at step 4; group 1's first two params frozen
    at steps 8 to 11. True when some param has a grad."""
    gen = torch.Generator().manual_seed(1000 + k)
    any_grad = False
    for gi, (pa, pb) in enumerate(zip(groups_a, groups_b, strict=True)):
        for i, (a, b) in enumerate(zip(pa, pb, strict=True)):
            if k == 4 or (gi == 1 and i < 2 and 8 <= k < 12):
                a.grad = b.grad = None
                continue
            grad = torch.randn(a.shape, generator=gen).to(device, a.dtype)
            a.grad, b.grad = grad.clone(), grad.clone()
            any_grad = True
    return any_grad


def ours_for(groups, mom, wd_mode, **kwargs):
    wds = [wd if wd_mode != "none" else 0.0 for *_, wd in GROUPS]
    return RMSProp(
        [
            {"params": ps, "lr": lr, "sqr_mom": sm, "eps": eps, "wd": wd}
            for ps, (_, lr, sm, eps, _), wd in zip(groups, GROUPS, wds, strict=True)
        ],
        mom=mom,
        decouple_wd=wd_mode != "l2",
        **kwargs,
    )


def assert_same(a, b, device):
    if device.type == "cpu":  # the same torch ops on the same values: bit for bit
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sched", [False, True], ids=["constant", "one_cycle"])
@pytest.mark.parametrize("wd_mode", ["none", "decoupled", "l2"])
@pytest.mark.parametrize("mom", [0.0, 0.9])
def test_equals_fastais_rmsprop_each_step(device, mom, wd_mode, sched):
    """Params and state after each of 20 steps (3 param groups with their own lr, sqr_mom,
    eps and wd; a batch without grads; frozen params) equal fastai's formula; under a
    one-cycle schedule each batch k uses lr and mom = one_cycle(k / total) as fastai's
    ParamScheduler sets them, the moms applying only with momentum."""
    ours_p = make_params(SHAPES, device)
    ref_p = clone_params(ours_p)
    opt = ours_for(ours_p, mom, wd_mode)
    assert opt.momentum == (mom != 0) and opt.decouple_wd == (wd_mode != "l2")
    lr_maxes = [lr for _, lr, *_ in GROUPS]
    if sched:
        opt.set_one_cycle(TOTAL, lr_maxes)
        want_moms = (0.95, 0.85, 0.95) if mom else (0.0, 0.0, 0.0)
        assert opt.one_cycle["moms"] == want_moms
    state: dict = {}
    for k in range(STEPS):
        stepped = set_grads(ours_p, ref_p, k, device)
        hypers = []
        for (_, lr, sm, eps, wd), lr_max in zip(GROUPS, lr_maxes, strict=True):
            m = mom
            if sched:
                lr, m = one_cycle(k / TOTAL, lr_max)
            hypers.append((lr, m, sm, eps, wd if wd_mode != "none" else 0.0))
        if sched:
            assert [h["lr"] for h in opt.hypers] == [h[0] for h in hypers]
            assert [h["mom"] for h in opt.hypers] == [h[1] if mom else 0.0 for h in hypers]
        before = [p.detach().clone() for p in flat(ours_p)]
        opt.step()
        fastai_rmsprop_step(ref_p, hypers, state, mom != 0, wd_mode != "l2")
        assert opt.schedule_step == k + 1
        for a, b in zip(flat(ours_p), flat(ref_p), strict=True):
            assert_same(a, b, device)
            assert (a in opt.state) == (b in state)
            if b in state:
                assert set(opt.state[a]) == set(state[b])
                for key, value in state[b].items():
                    assert_same(opt.state[a][key], value, device)
        if not stepped:
            assert all(torch.equal(x, y) for x, y in zip(before, flat(ours_p), strict=True))
    assert any(
        not torch.equal(a, b)
        for a, b in zip(flat(ours_p), flat(make_params(SHAPES, device)), strict=True)
    )


def test_equals_torch_rmsprop_without_momentum_and_weight_decay(device):
    """Without momentum and weight decay fastai's RMSProp is torch's RMSprop(alpha=sqr_mom);
    with momentum they differ (torch's buffer averages the normalized steps)."""
    for mom in (0.0, 0.9):
        ours_p = make_params(SHAPES, device)
        ref_p = clone_params(ours_p)
        opt = RMSProp([{"params": ps} for ps in ours_p], lr=1e-2, mom=mom, sqr_mom=0.9)
        ref = torch.optim.RMSprop(
            [{"params": ps} for ps in ref_p], lr=1e-2, alpha=0.9, eps=1e-8, momentum=mom
        )
        for k in range(6):
            set_grads(ours_p, ref_p, k, device)
            opt.step()
            ref.step()
        same = all(
            torch.allclose(a, b, rtol=1e-6, atol=1e-7)
            for a, b in zip(flat(ours_p), flat(ref_p), strict=True)
        )
        assert same == (mom == 0.0)


def test_built_without_momentum_stays_without():
    """fastai's RMSProp decides at construction: built with mom 0 it has no average_grad, and
    a mom set later is not applied; mom != 0 anywhere (argument or a group's own) gives one."""
    p = torch.randn(4, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    opt, plain = RMSProp([p], lr=1e-2), RMSProp([q], lr=1e-2)
    assert not opt.momentum and opt.param_groups[0]["mom"] == 0.0
    opt.set_hyper("mom", 0.9)
    for k in range(3):
        p.grad = torch.full_like(p, k + 1.0)
        q.grad = p.grad.clone()
        opt.step()
        plain.step()
    assert torch.equal(p, q) and set(opt.state[p]) == {"sqr_avg"}
    with pytest.raises(ValueError, match=r"param group 1\) has mom 0.9, but this RMSProp was"):
        opt.add_param_group({"params": [torch.zeros(2)], "mom": 0.9})
    opt.add_param_group({"params": [torch.zeros(2)]})  # mom 0: fine
    assert partial(RMSProp, mom=0.9)([torch.zeros(1)]).momentum
    grouped = RMSProp([{"params": [torch.zeros(1)], "mom": 0.5}, {"params": [torch.zeros(1)]}])
    assert grouped.momentum and grouped.param_groups[1]["mom"] == 0.0
    grouped.set_one_cycle(10, 1e-3)
    assert grouped.one_cycle["moms"] == (0.95, 0.85, 0.95)


def test_found_inf_and_grad_scale(device):
    """GradScaler's tensors: found_inf nonzero changes no param and no state and advances the
    schedule position; grad_scale divides the grads (a power of two: the same step exactly)."""
    groups = make_params(SHAPES, device)
    twin_groups = clone_params(groups)
    opt, twin = ours_for(groups, 0.9, "decoupled"), ours_for(twin_groups, 0.9, "decoupled")
    for o in (opt, twin):
        o.set_one_cycle(TOTAL, 1e-2)
    for k in range(5):
        set_grads(groups, twin_groups, 5, device)  # (5: every param has a grad)
        for p in flat(groups):
            p.grad *= 1024
        opt.grad_scale = torch.tensor([1024.0], device=device)
        if k == 2:
            before = [t.clone() for p in flat(groups) for t in (p, *opt.state[p].values())]
            opt.found_inf = torch.ones(1, device=device)
            opt.step()
            after = [t for p in flat(groups) for t in (p, *opt.state[p].values())]
            assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
            twin.skip_step()
        else:
            opt.found_inf = torch.zeros(1, device=device)
            opt.step()
            twin.step()
        del opt.grad_scale, opt.found_inf
        assert opt.schedule_step == twin.schedule_step == k + 1
        for a, b in zip(flat(groups), flat(twin_groups), strict=True):
            assert torch.equal(a, b)


def test_grads_are_never_written():
    groups = make_params(SHAPES, "cpu")
    opt = ours_for(groups, 0.9, "l2")
    set_grads(groups, clone_params(groups), 0, torch.device("cpu"))
    grads = [p.grad.clone() for p in flat(groups)]
    opt.step()
    assert all(torch.equal(p.grad, g) for p, g in zip(flat(groups), grads, strict=True))


@pytest.mark.parametrize("mom", [0.0, 0.9])
def test_state_dict_mid_cycle_resumes_exactly(device, mom):
    groups = make_params(SHAPES, device)
    opt = ours_for(groups, mom, "decoupled")
    opt.set_one_cycle(12, [1e-3, 2e-3, 4e-3], pct_start=0.3)
    twin_groups = clone_params(groups)
    for k in range(5):
        set_grads(groups, twin_groups, k, device)
        opt.step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": clone_params(groups)}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed_groups = saved["params"]
    resumed = RMSProp([{"params": ps, "lr": 0.5} for ps in resumed_groups], mom=mom)
    resumed.load_state_dict(saved["opt"])
    assert resumed.schedule_step == opt.schedule_step == 5
    assert resumed.one_cycle == opt.one_cycle
    assert [g["wd"] for g in resumed.param_groups] == [g["wd"] for g in opt.param_groups]
    for k in range(5, 15):
        set_grads(groups, resumed_groups, k, device)
        opt.step()
        resumed.step()
        for a, b in zip(flat(groups), flat(resumed_groups), strict=True):
            assert torch.equal(a, b)
            for key, value in opt.state.get(a, {}).items():
                assert torch.equal(value, resumed.state[b][key])


def test_load_state_dict_errors():
    groups = make_params(SHAPES, "cpu")
    plain = RMSProp([{"params": ps} for ps in groups])
    set_grads(groups, clone_params(groups), 0, torch.device("cpu"))
    plain.step()
    with_mom = RMSProp([{"params": ps} for ps in clone_params(groups)], mom=0.9)
    with pytest.raises(ValueError, match="lacks the tensor 'grad_avg'"):
        with_mom.load_state_dict(plain.state_dict())
    sd = plain.state_dict()
    sd["state"][0]["sqr_avg"] = torch.zeros(2)
    with pytest.raises(ValueError, match="'sqr_avg' has shape"):
        RMSProp([{"params": ps} for ps in clone_params(groups)]).load_state_dict(sd)
    adam_like = torch.optim.RMSprop([{"params": ps} for ps in clone_params(groups)])
    with pytest.raises(ValueError, match=r"lacks \['mom'"):
        plain.load_state_dict(adam_like.state_dict())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_params_keep_float32_state(device, dtype):
    """A bf16 / fp16 param: float32 state, the step computed in float32 from the param's value
    and rounded into the param once."""
    (ps, *_) = make_params(SHAPES, device, dtype=dtype)
    ref = [p.detach().float().requires_grad_() for p in ps]
    opt = RMSProp(ps, lr=1e-2, mom=0.9, wd=0.1)
    state: dict = {}
    for k in range(4):
        gen = torch.Generator().manual_seed(k)
        for p, r in zip(ps, ref, strict=True):
            p.grad = torch.randn(p.shape, generator=gen).to(device, dtype)
            r.grad = p.grad.float()
        opt.step()
        fastai_rmsprop_step([ref], [(1e-2, 0.9, 0.99, 1e-8, 0.1)], state, True, True)
        for p, r in zip(ps, ref, strict=True):
            assert p.dtype == dtype and opt.state[p]["sqr_avg"].dtype == torch.float32
            assert_same(opt.state[p]["grad_avg"], state[r]["grad_avg"], device)
            assert torch.equal(p, r.detach().to(dtype))
            with torch.no_grad():
                r.copy_(p)  # the next step starts from the rounded value, as ours


def test_non_contiguous_params_and_grads():
    """A transposed grad and channels_last params (state in the param's layout) step as
    contiguous ones."""
    w = torch.randn(4, 6, requires_grad=True)
    conv = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    conv.requires_grad_()
    twin_w, twin_conv = w.detach().clone(), conv.detach().contiguous()
    opt, twin = RMSProp([w, conv], mom=0.9), RMSProp([twin_w, twin_conv], mom=0.9)
    for _ in range(2):
        w.grad = torch.randn(6, 4).t()
        conv.grad = torch.randn(2, 3, 4, 5)
        twin_w.grad, twin_conv.grad = w.grad.contiguous(), conv.grad.clone()
        opt.step()
        twin.step()
    assert torch.equal(w, twin_w) and torch.equal(conv, twin_conv)
    assert opt.state[conv]["sqr_avg"].stride() == conv.stride()


def test_deepcopy_keeps_momentum_and_decouple_wd():
    opt = RMSProp([torch.zeros(2, requires_grad=True)], mom=0.0, decouple_wd=False)
    copied = copy.deepcopy(opt)
    assert copied.momentum is False and copied.decouple_wd is False
    assert copied._state_keys == ("sqr_avg",)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda p: RMSProp(p, mom=1.0), ValueError, r"mom should be in \[0, 1\), got 1"),
        (lambda p: RMSProp(p, sqr_mom=-0.1), ValueError, r"sqr_mom should be in \[0, 1\)"),
        (lambda p: RMSProp(p, eps=-1e-8), ValueError, "eps should be a finite number >= 0"),
        (lambda p: RMSProp(p, lr="1e-3"), TypeError, "lr should be a number, got str"),
        (lambda p: RMSProp(p, wd=float("nan")), ValueError, "wd should be a finite number"),
        (lambda p: RMSProp(p, decouple_wd=1), TypeError, "decouple_wd should be a bool"),
        (
            lambda p: RMSProp([{"params": p, "alpha": 0.9}]),
            ValueError,
            r"param group 0\) has torch's 'alpha': RMSProp takes fastai's name 'sqr_mom'",
        ),
        (
            lambda p: RMSProp([{"params": p, "momentum": 0.9}]),
            ValueError,
            "torch's 'momentum': RMSProp takes fastai's name 'mom'",
        ),
        (
            lambda p: RMSProp([{"params": p, "weight_decay": 0.1}]),
            ValueError,
            "torch's 'weight_decay': RMSProp takes fastai's name 'wd'",
        ),
        (lambda p: RMSProp(p[0]), TypeError, "got a single torch.FloatTensor"),
        (lambda p: RMSProp([p[0].int()]), TypeError, "float32, bfloat16 or float16"),
    ],
)
def test_argument_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make([torch.randn(3, requires_grad=True)])


def test_step_time_errors():
    emb = nn.Embedding(10, 3, sparse=True)
    opt = RMSProp(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(TypeError, match="RMSProp does not support sparse gradients"):
        opt.step()
    p = torch.randn(3, requires_grad=True)
    opt = RMSProp([p])
    p.grad = torch.randn(3)
    opt.param_groups[0]["sqr_mom"] = 1.5
    with pytest.raises(ValueError, match=r"sqr_mom \(param group 0\) should be in \[0, 1\)"):
        opt.step()


# ---- in the Learner -------------------------------------------------------------------------


def test_fit_trains_as_torch_rmsprop():
    """opt_func=RMSProp (mom 0) in a plain fit without weight decay ends with the weights of
    torch's RMSprop(alpha=0.99, eps=1e-8) (wrapped by the learner), batch for batch."""
    ours = make_learner(opt_func=RMSProp, wd=0.0)
    theirs = make_learner(opt_func=partial(torch.optim.RMSprop, alpha=0.99, eps=1e-8), wd=0.0)
    assert isinstance(ours.opt, RMSProp) and len(ours.opt.param_groups) == 4
    for learn in (ours, theirs):
        torch.manual_seed(1)  # the same batches and dropout masks
        learn.fit(2, 1e-3)
    for a, b in zip(ours.model.parameters(), theirs.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mom", [0.0, 0.9])
def test_fit_one_cycle_with_discriminative_lrs(mom):
    """fit_one_cycle(slice(...)): one lr_max per layer group; every batch's recorded lr and mom
    are the schedule's (mom 0 throughout without momentum); the loss falls."""
    learn = make_learner(opt_func=partial(RMSProp, mom=mom), wd=0.01)
    learn.fit_one_cycle(3, slice(1e-3, 1e-2))
    n = 3 * len(learn.data.train_dl)
    assert learn.opt.schedule_step == learn._sched_step == n
    assert learn.opt.one_cycle["lr_max"] == pytest.approx([1e-3, 1e-3, 1e-2, 1e-2])
    want = [learn.opt.hypers_at(k) for k in range(n)]
    assert learn.recorder.group_lrs == [[w[0][0], w[0][2]] for w in want]
    moms = [m for ms in learn.recorder.group_moms for m in ms]
    assert (set(moms) == {0.0}) == (mom == 0.0)
    assert {g["wd"] for g in learn.opt.param_groups} == {0.0, 0.01}  # no wd on BN and biases
    losses = learn.recorder.raw_losses
    assert sum(losses[-4:]) < sum(losses[:4])


def test_create_cnn_fine_tune_freezes_and_unfreezes(tmp_path):
    """create_cnn(opt_func=RMSProp) and fine_tune: the frozen epoch leaves the body's conv
    untouched (no grad, no state), the unfrozen one moves it, each with its own schedule."""
    folder = demo_dataset(tmp_path / "demo", n_per_class=4, size=32)
    data = ImageDataBunch.from_folder(folder, size=16, bs=8, num_workers=0, seed=11)
    learn = create_cnn(
        data.normalize(imagenet_stats),
        tiny_arch,
        pretrained=False,
        lin_ftrs=[16],
        seed=0,
        path=tmp_path,
        opt_func=partial(RMSProp, mom=0.9),
    )
    learn.progress.stream = io.StringIO()
    assert isinstance(learn.opt, RMSProp) and learn.opt.momentum
    conv = learn.model[0][0].weight
    start = conv.detach().clone()

    class Probe(Callback):
        def after_epoch(self):
            seen.append((torch.equal(conv, start), conv in learn.opt.state))

    seen: list = []
    learn.fine_tune(1, base_lr=1e-2, cbs=Probe())
    assert seen == [(True, False), (False, True)]


def test_lr_find_restores_and_save_load_resumes(tmp_path):
    learn = make_learner(opt_func=partial(RMSProp, mom=0.9), path=tmp_path)
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.lr_find(num_it=10)
    assert all(torch.equal(a, p) for a, p in zip(before, learn.model.parameters(), strict=True))
    assert len(learn.opt.state) == 0 and learn.opt.one_cycle is None
    learn.fit_one_cycle(1, 1e-2)
    learn.save("stage")
    other = make_learner(opt_func=partial(RMSProp, mom=0.9), path=tmp_path, model_seed=5)
    other.load("stage")
    assert other.opt.schedule_step == learn.opt.schedule_step
    assert other.opt.one_cycle == learn.opt.one_cycle
    mine, theirs = learn.opt.state_dict()["state"], other.opt.state_dict()["state"]
    assert mine.keys() == theirs.keys() and mine
    for sid, st in mine.items():
        assert set(st) == {"grad_avg", "sqr_avg"}
        for key, value in st.items():
            assert torch.equal(value, theirs[sid][key])
    assert other.validate() == learn.validate()
    other.fit_one_cycle(1, 1e-3)


def test_mixed_precision_bf16_and_loss_scaling():
    """bf16 autocast keeps float32 weights and state; with a GradScaler (fp16's path, driven
    on the CPU) a step with an inf grad moves nothing while the schedule counts the batch."""
    learn = make_learner(opt_func=partial(RMSProp, mom=0.9), precision="bf16")
    learn.fit_one_cycle(1, 1e-2)
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    state = learn.opt.state_dict()["state"]
    assert state and all(v.dtype == torch.float32 for st in state.values() for v in st.values())

    learn = make_learner(opt_func=partial(RMSProp, mom=0.9))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=10**6)
    learn.add_cb(MixedPrecision(torch.bfloat16, scaler))
    bad = {0, 1, 5}
    probe = InfGrads(bad)
    n = len(learn.data.train_dl)
    learn.fit_one_cycle(2, max_lr=1e-2, cbs=probe)
    assert learn.opt.schedule_step == learn._sched_step == 2 * n
    assert learn.scaler.get_scale() == 2.0 ** (10 - len(bad))

    def same(i: int, j: int) -> bool:
        pairs = zip(probe.params[i], probe.params[j], strict=True)
        return all(torch.equal(a, b) for a, b in pairs)

    assert all(same(i, i + 1) for i in bad) and not same(2, 3)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
