"""Fused Adam / SGD (fastcore_ext.optim, ops.fused_adam_ / fused_sgd_) against torch.optim
and against reference.py, following the pattern of torch's own optimizer tests."""

import copy
import io
import math
import random

import pytest
import torch
from fakes import clone_params, make_params

from fastcore_ext import ops, reference
from fastcore_ext.optim import SGD, Adam
from fastcore_ext.schedule import one_cycle

# csrc: the CPU work unit, the CUDA chunk and the number of tensors per CUDA launch.
CPU_UNIT, CUDA_CHUNK, CUDA_MAX_TENSORS = 65536, 8192, 384

# per group: (shapes, lr_max, wd, eps, sqr_mom); the last param of the last group is empty
GROUPS = [
    ([(7, 13), (7,)], 1e-3, 0.01, 1e-5, 0.99),
    ([(5, 7), (5,), (5, 5, 3)], 3e-3, 0.1, 1e-6, 0.999),
    ([(3, 5), (3,), (0,)], 1e-2, 0.0, 1e-8, 0.99),
]
SHAPES = [shapes for shapes, *_ in GROUPS]
TOTAL = 16  # schedule length: the 20-step runs go past its end


def state_of(opt, p, keys):
    return [opt.state[p][k] for k in keys]


def scenario(k):
    """Which params get a grad at step k: none at step 4; the first layer of group 1 frozen
    at steps 8 to 11; everything otherwise."""
    if k == 4:
        return lambda gi, i: False
    return lambda gi, i: not (gi == 1 and i < 2 and 8 <= k < 12)


def set_grads(groups_a, groups_b, k, device):
    has_grad = scenario(k)
    gen = torch.Generator().manual_seed(1000 + k)
    for gi, (pa, pb) in enumerate(zip(groups_a, groups_b, strict=True)):
        for i, (a, b) in enumerate(zip(pa, pb, strict=True)):
            if has_grad(gi, i):
                grad = torch.randn(a.shape, generator=gen).to(device, a.dtype)
                a.grad, b.grad = grad.clone(), grad.clone()
            else:
                a.grad = b.grad = None
    return any(has_grad(gi, i) for gi, ps in enumerate(groups_a) for i in range(len(ps)))


def run_against_torch(device, ours_cls, torch_factory, set_torch_group, keys, ref_keys):
    ours_p = make_params(SHAPES, device)
    ref_p = clone_params(ours_p)
    opt = ours_cls(ours_p)
    ref = torch_factory(ref_p)
    opt.set_one_cycle(TOTAL, [lr for _, lr, *_ in GROUPS])
    for k in range(20):
        stepped = set_grads(ours_p, ref_p, k, device)
        for gi, group in enumerate(ref.param_groups):  # batch k is at position k/TOTAL
            lr, mom = one_cycle(k / TOTAL, GROUPS[gi][1])
            set_torch_group(group, lr, mom)
        before = [p.detach().clone() for ps in ours_p for p in ps]
        opt.step()
        ref.step()
        assert opt.schedule_step == k + 1  # one per batch, the all-None batch included
        for pa, pb in zip(ours_p, ref_p, strict=True):
            for a, b in zip(pa, pb, strict=True):
                torch.testing.assert_close(a, b)
                assert (a in opt.state) == (b in ref.state)
                if a in opt.state:
                    for sa, sb in zip(
                        state_of(opt, a, keys), state_of(ref, b, ref_keys), strict=True
                    ):
                        torch.testing.assert_close(sa, sb.to(sa.device))
        if not stepped:  # the all-None step changes nothing
            after = [p.detach() for ps in ours_p for p in ps]
            assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))
    return opt


def test_adam_equals_torch_adamw_each_step(device):
    def factory(groups):
        return torch.optim.AdamW(
            [
                {"params": ps, "weight_decay": wd, "eps": eps, "betas": (0.9, sm)}
                for ps, (_, _, wd, eps, sm) in zip(groups, GROUPS, strict=True)
            ]
        )

    def ours(groups):
        return Adam(
            [
                {"params": ps, "wd": wd, "eps": eps, "sqr_mom": sm}
                for ps, (_, _, wd, eps, sm) in zip(groups, GROUPS, strict=True)
            ]
        )

    def set_group(group, lr, mom):
        group["lr"], group["betas"] = lr, (mom, group["betas"][1])

    run_against_torch(
        device,
        ours,
        factory,
        set_group,
        ("exp_avg", "exp_avg_sq", "step"),
        ("exp_avg", "exp_avg_sq", "step"),
    )


def test_sgd_equals_torch_sgd_each_step(device):
    def factory(groups):
        return torch.optim.SGD([{"params": ps} for ps in groups], lr=1e-3, momentum=0.9)

    def set_group(group, lr, mom):
        group["lr"], group["momentum"] = lr, mom

    run_against_torch(
        device,
        lambda groups: SGD([{"params": ps} for ps in groups], mom=0.9),
        factory,
        set_group,
        ("momentum_buffer",),
        ("momentum_buffer",),
    )


def test_sgd_without_momentum_stays_plain_sgd_under_one_cycle(device):
    """fastai's SGD defaults to mom=0 and then has no momentum step: the one-cycle moms are
    not applied (torch's SGD(momentum=0) with the scheduled lrs, step after step; ours keeps
    a buffer, which then holds the last grad)."""
    assert SGD([torch.zeros(1)]).param_groups[0]["mom"] == 0.0
    ours_p = make_params(SHAPES, device)
    ref_p = clone_params(ours_p)
    opt = SGD([{"params": ps} for ps in ours_p])
    ref = torch.optim.SGD([{"params": ps} for ps in ref_p], lr=1e-3, momentum=0.0)
    assert not opt.momentum
    opt.set_one_cycle(TOTAL, [lr for _, lr, *_ in GROUPS])
    assert opt.one_cycle["moms"] == (0.0, 0.0, 0.0) and set(opt.hypers_at(3)[1]) == {0.0}
    for k in range(20):
        set_grads(ours_p, ref_p, k, device)
        for gi, group in enumerate(ref.param_groups):
            group["lr"] = one_cycle(k / TOTAL, GROUPS[gi][1])[0]
        opt.step()
        ref.step()
        for a, b in zip(sum(ours_p, []), sum(ref_p, []), strict=True):
            torch.testing.assert_close(a, b)
    grouped = SGD([{"params": [torch.zeros(1)], "mom": 0.9}, {"params": [torch.zeros(1)]}])
    grouped.set_one_cycle(10, 1e-3)  # a group with momentum: the schedule's moms apply
    assert grouped.momentum and grouped.one_cycle["moms"] == (0.95, 0.85, 0.95)


def test_torch_lr_scheduler_drives_group_lr(device):
    ours_p = make_params(SHAPES, device)
    ref_p = clone_params(ours_p)
    opt = Adam([{"params": ps} for ps in ours_p], lr=1e-2, wd=0.0)
    ref = torch.optim.AdamW(
        [{"params": ps} for ps in ref_p], lr=1e-2, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.0
    )
    sched_a = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=10, cycle_momentum=False)
    sched_b = torch.optim.lr_scheduler.OneCycleLR(ref, 1e-2, total_steps=10, cycle_momentum=False)
    for k in range(8):
        set_grads(ours_p, ref_p, 5 if k == 4 else k, device)  # (5: every param has a grad)
        opt.step(), ref.step(), sched_a.step(), sched_b.step()
        for a, b in zip(sum(ours_p, []), sum(ref_p, []), strict=True):
            torch.testing.assert_close(a, b)
    assert opt.schedule_step == 8  # the counter counts steps even without a device schedule


def test_all_none_grads_advance_only_the_schedule_position(device):
    (ps,) = make_params(SHAPES, device)[:1]
    opt = Adam(ps)
    opt.set_one_cycle(10, 1e-3, start_step=3)
    before = [p.detach().clone() for p in ps]
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ps, before, strict=True))
    assert len(opt.state) == 0 and opt.schedule_step == 4


def test_lr_of_every_batch_is_the_one_cycle_value(device):
    """The lr each batch's update used, read back from the update (SGD without momentum or
    weight decay from p = 0 with grad 1: p becomes -lr), equals schedule.one_cycle(k / total)
    at batch k, also after batches that GradScaler skipped (found_inf) and batches without any
    grad: the schedule position advances once per batch, as fastai's ParamScheduler."""
    p = torch.zeros(3, device=device, requires_grad=True)
    opt = SGD([p], mom=0.0, wd=0.0)
    total, lr_max = 12, 1e-2
    opt.set_one_cycle(total, lr_max, moms=(0.0, 0.0, 0.0))
    skipped_by_scaler, without_grads = {2, 3, 7}, {5, 10}
    for k in range(total + 2):  # past the end: the final value holds
        with torch.no_grad():
            p.zero_()
        p.grad = None if k in without_grads else torch.ones_like(p)
        if k in skipped_by_scaler:
            opt.found_inf = torch.ones((), device=device)
        opt.step()
        opt.found_inf = None
        if k in skipped_by_scaler or k in without_grads:
            assert torch.equal(p, torch.zeros_like(p)), k
        else:
            expected = one_cycle(k / total, lr_max, moms=(0.0, 0.0, 0.0))[0]
            torch.testing.assert_close(-p.detach(), torch.full_like(p, expected))
        assert opt.schedule_step == k + 1


def test_found_inf_leaves_adam_state_and_step_counts(device):
    """Through the optimizer: a step GradScaler skipped changes no param and no state tensor
    (Adam's bias-correction step included) and advances the schedule position; the next
    steps equal those of an optimizer that saw only the other batches at the same positions."""
    groups = make_params(SHAPES, device)
    twin_groups = clone_params(groups)
    opt = Adam([{"params": ps} for ps in groups])
    twin = Adam([{"params": ps} for ps in twin_groups])
    for o in (opt, twin):
        o.set_one_cycle(TOTAL, [lr for _, lr, *_ in GROUPS])
    for k in range(6):
        set_grads(groups, twin_groups, 5, device)  # (5: every param has a grad)
        if k == 2:
            before = [t.clone() for p in sum(groups, []) for t in (p, *opt.state[p].values())]
            opt.found_inf = torch.ones((), device=device)
            opt.step()
            opt.found_inf = None
            after = [t for p in sum(groups, []) for t in (p, *opt.state[p].values())]
            assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
            for p in sum(twin_groups, []):  # the twin sees the batch without grads
                p.grad = None
        else:
            opt.step()
        twin.step()
        assert opt.schedule_step == twin.schedule_step == k + 1
        for a, b in zip(sum(groups, []), sum(twin_groups, []), strict=True):
            assert torch.equal(a, b)
            for key, value in opt.state[a].items():
                assert torch.equal(value, twin.state[b][key])
    assert float(opt.state[groups[0][0]]["step"]) == 5.0  # 6 batches, one skipped


def zero_size_lists(device, n_before=3):
    g = torch.Generator().manual_seed(3)
    shapes = [(37,), (8, 9), (1,)][:n_before] + [(0,), (0, 4)]
    params = [torch.randn(s, generator=g).to(device) for s in shapes]
    grads = [torch.randn(s, generator=g).to(device) for s in shapes]
    return params, grads


def adam_args(params, grads, hyper_rows, groups, sched=None, step=0):
    dev = params[0].device if params else torch.device("cpu")
    rows = torch.tensor(hyper_rows, dtype=torch.float64, device=dev)
    sched = torch.tensor(sched or [0.0] * 7, dtype=torch.float64, device=dev)
    counter = torch.tensor([step, 0], dtype=torch.int64, device=dev)
    g = torch.Generator().manual_seed(9)
    m = [torch.randn(p.shape, generator=g).to(dev) * 0.1 for p in params]
    v = [torch.rand(p.shape, generator=g).to(dev) * 0.1 for p in params]
    steps = [torch.tensor(float(i % 3), device=dev) for i in range(len(params))]
    return [params, grads, m, v, steps, groups, rows, sched, counter]


def clone_args(args):
    def c(x):
        if isinstance(x, torch.Tensor):
            return x.clone()
        if isinstance(x, list):
            return [c(y) for y in x]
        return x

    return [c(a) for a in args]


ROW = [2e-3, 0.9, 0.99, 1e-5, 0.01, 5e-3]
SCHED = [20.0, 25.0, 1e5, 0.25, 0.95, 0.85, 0.95]


def assert_args_close(a, b, **tol):
    for x, y in zip(a, b, strict=True):
        if isinstance(x, list):
            assert_args_close(x, y, **tol)
        elif isinstance(x, torch.Tensor):
            torch.testing.assert_close(x, y.to(x.device), **tol)


@pytest.mark.parametrize("sched", [None, SCHED], ids=["plain", "one_cycle"])
def test_zero_size_params_last(device, sched):
    params, grads = zero_size_lists(device)
    args = adam_args(params, grads, [ROW], [0] * len(params), sched, step=5)
    expected = clone_args(args)
    for _ in range(3):
        ops.fused_adam_(*args)
        reference.fused_adam_reference(*expected)
    assert_args_close(args, expected)
    assert [float(s) for s in args[4]] == [float(s) for s in expected[4]]
    assert int(args[8][0]) == 8 and int(args[8][1]) == 0


def boundary_sizes(n=4000, seed=0):
    """Sizes of n small tensors with empty ones right after every CUDA chunk boundary (hence
    every CPU unit boundary), around the CUDA launch boundaries and at the end."""
    rng = random.Random(seed)
    sizes, total = [], 0
    while len(sizes) < n - 1:
        if len(sizes) in (CUDA_MAX_TENSORS - 1, CUDA_MAX_TENSORS, 2 * CUDA_MAX_TENSORS):
            sizes.append(0)
            continue
        size = rng.randint(1, 40)
        boundary = (total // CUDA_CHUNK + 1) * CUDA_CHUNK
        size = min(size, boundary - total)
        sizes.append(size)
        total += size
        if total % CUDA_CHUNK == 0:
            sizes.append(0)
    return sizes[: n - 1] + [0]


@pytest.mark.parametrize("algo", ["adam", "sgd"])
def test_thousands_of_small_tensors(device, algo):
    sizes = boundary_sizes()
    assert sum(sizes) > CPU_UNIT + CUDA_CHUNK  # several CPU units and CUDA chunks
    g = torch.Generator().manual_seed(4)
    params = [torch.randn(s, generator=g).to(device) for s in sizes]
    grads = [torch.randn(s, generator=g).to(device) for s in sizes]
    groups = [min(2, i // 1500) for i in range(len(sizes))]
    rows = [ROW, [1e-2, 0.8, 0.999, 1e-6, 0.1, 2e-2], [5e-4, 0.0, 0.9, 1e-8, 0.0, 1e-3]]
    args = adam_args(params, grads, rows, groups, SCHED, step=3)
    if algo == "sgd":
        args = [args[0], args[1], args[2], *args[5:]]
    op = ops.fused_adam_ if algo == "adam" else ops.fused_sgd_
    ref = reference.fused_adam_reference if algo == "adam" else reference.fused_sgd_reference
    expected = clone_args(args)
    for _ in range(2):
        op(*args)
        ref(*expected)
    assert_args_close(args, expected)


@pytest.mark.parametrize("cls", [Adam, SGD])
def test_tiny_lr_group_stays_bit_identical(device, cls):
    groups = make_params(SHAPES, device)
    opt = cls([{"params": groups[0], "lr": 1e-28}, {"params": groups[1] + groups[2]}], wd=0.01)
    frozen = [p.detach().clone() for p in groups[0]]
    moving = [p.detach().clone() for p in groups[1]]
    for k in range(3):
        set_grads(groups, clone_params(groups), 5 + k, device)
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(groups[0], frozen, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(groups[1], moving, strict=True))
    opt.set_one_cycle(10, [1e-28, 1e-3])
    for k in range(3):
        set_grads(groups, clone_params(groups), 5 + k, device)
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(groups[0], frozen, strict=True))


@pytest.mark.parametrize("cls", [Adam, SGD])
def test_grads_never_written(device, cls):
    groups = make_params(SHAPES, device)
    opt = cls([{"params": ps} for ps in groups])
    opt.set_one_cycle(5, 1e-2)
    set_grads(groups, clone_params(groups), 5, device)
    grads = [p.grad for ps in groups for p in ps]
    versions = [g._version for g in grads]
    values = [g.clone() for g in grads]
    for _ in range(3):
        opt.step()
    opt.grad_scale = torch.tensor(4.0, device=device)  # the AMP path reads them too
    opt.step()
    assert [g._version for g in grads] == versions
    assert all(torch.equal(g, v) for g, v in zip(grads, values, strict=True))


@pytest.mark.parametrize("cls", [Adam, SGD])
def test_steps_reuse_every_buffer(device, cls):
    """No per-step copies: params and state keep their storage from the first step on."""
    groups = make_params(SHAPES, device)
    opt = cls([{"params": ps} for ps in groups])
    set_grads(groups, clone_params(groups), 5, device)
    opt.step()
    ptrs = [t.data_ptr() for ps in groups for p in ps for t in (p, *opt.state[p].values())]
    for _ in range(3):
        opt.step()
    assert [t.data_ptr() for ps in groups for p in ps for t in (p, *opt.state[p].values())] == ptrs


@pytest.mark.parametrize("algo", ["adam", "sgd"])
def test_found_inf_advances_only_the_schedule_position(device, algo):
    params, grads = zero_size_lists(device)
    args = adam_args(params, grads, [ROW], [0] * len(params), SCHED, step=2)
    if algo == "sgd":
        args = [args[0], args[1], args[2], *args[5:]]
    op = ops.fused_adam_ if algo == "adam" else ops.fused_sgd_
    before = clone_args(args)
    op(*args, None, torch.ones(1, device=device))
    # params, state and Adam's step counts unchanged; the counter is the last argument
    assert_args_close(args[:-1], before[:-1], rtol=0, atol=0)
    assert args[-1].tolist() == [3, 0]
    op(*args, None, torch.zeros(1, device=device))  # found_inf = 0: a normal step
    assert args[-1].tolist() == [4, 0]


def test_grad_scale_divides_the_grads(device):
    params, grads = zero_size_lists(device)
    args = adam_args(params, grads, [ROW], [0] * len(params), SCHED)
    scaled = clone_args(args)
    scaled[1] = [g * 1024 for g in grads]
    ops.fused_adam_(*args)
    ops.fused_adam_(*scaled, torch.tensor([1024.0], device=device))
    # a power of two: exactly the same step (grads aside)
    assert_args_close([args[0], *args[2:]], [scaled[0], *scaled[2:]], rtol=0, atol=0)


def test_grad_scaler_cpu_end_to_end():
    ours_p = make_params(SHAPES, "cpu")
    ref_p = clone_params(ours_p)
    opt = Adam([{"params": ps} for ps in ours_p])
    ref = Adam([{"params": ps} for ps in ref_p])
    for o in (opt, ref):
        o.set_one_cycle(10, 1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for k in range(5):
        for p in sum(ours_p, []):
            p.grad = None
        loss = sum((p.sum() * (k + 1) + (p * p).sum()) for p in sum(ours_p, []) if p.numel())
        scaler.scale(loss).backward()
        if k == 2:  # an overflow: the step must change nothing
            ours_p[0][0].grad[0, 0] = math.inf
            before = [p.detach().clone() for p in sum(ours_p, [])]
            state = copy.deepcopy(opt.state_dict())
        scaler.step(opt)
        scaler.update()
        if k == 2:  # nothing changed, but the schedule position counts the batch
            assert all(torch.equal(a, b) for a, b in zip(sum(ours_p, []), before, strict=True))
            assert opt.schedule_step == 3
            after = opt.state_dict()
            for pid, st in state["state"].items():
                for key, value in st.items():
                    assert torch.equal(value, after["state"][pid][key])
        for p, q in zip(sum(ours_p, []), sum(ref_p, []), strict=True):  # k == 2: no grads
            q.grad = None if p.grad is None or k == 2 else p.grad / scaler.get_scale()
        ref.step()
        for p, q in zip(sum(ours_p, []), sum(ref_p, []), strict=True):
            assert torch.equal(p, q)
    assert scaler.get_scale() == 2.0**11  # the overflow halved it
    assert opt.schedule_step == ref.schedule_step == 5 and not hasattr(opt, "found_inf")


@pytest.mark.parametrize("cls", [Adam, SGD])
def test_state_dict_mid_cycle_resumes_exactly(device, cls):
    groups = make_params(SHAPES, device)
    opt = cls([{"params": ps} for ps in groups])
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
    resumed = cls([{"params": ps, "lr": 0.5} for ps in resumed_groups])
    resumed.load_state_dict(saved["opt"])
    assert resumed.schedule_step == opt.schedule_step == 5
    assert resumed.one_cycle == opt.one_cycle
    assert resumed.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for k in range(5, 15):
        set_grads(groups, resumed_groups, k, device)
        opt.step()
        resumed.step()
        for a, b in zip(sum(groups, []), sum(resumed_groups, []), strict=True):
            assert torch.equal(a, b)
            if a in opt.state:
                for key, value in opt.state[a].items():
                    assert torch.equal(value, resumed.state[b][key])
    assert resumed.schedule_step == opt.schedule_step


def test_state_dict_without_schedule_clears_it():
    groups = make_params(SHAPES, "cpu")
    a = Adam([{"params": ps} for ps in groups])
    b = Adam([{"params": ps} for ps in clone_params(groups)])
    b.set_one_cycle(10, 1e-3, start_step=4)
    b.load_state_dict(a.state_dict())
    assert b.one_cycle is None and b.schedule_step == 0


def test_bf16_params_keep_fp32_state_through_state_dict():
    p = torch.randn(40, dtype=torch.bfloat16, requires_grad=True)
    opt = Adam([p])
    p.grad = torch.randn(40, dtype=torch.bfloat16)
    opt.step()
    q = p.detach().clone().requires_grad_()
    opt2 = Adam([q])
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[q]["exp_avg"].dtype == torch.float32
    assert torch.equal(opt2.state[q]["exp_avg_sq"], opt.state[p]["exp_avg_sq"])


def test_host_and_device_schedules_agree_every_step(device):
    """Read the kernel's lr and mom back through two SGD probe params per group (wd = 0):
    p = 0, buf = 0, grad = 1 gives p = -lr; buf = 1, grad = 0 gives buf = mom. (Adam's use of
    the same schedule is compared with torch's AdamW above.)"""
    lr_maxes = [1e-3, 1e-2, 0.3]
    probes = [
        [torch.zeros(1, device=device, requires_grad=True) for _ in range(2)] for _ in lr_maxes
    ]
    opt = SGD([{"params": ps} for ps in probes], mom=0.9)
    kw = {"div": 10.0, "div_final": 1e4, "pct_start": 0.3, "moms": (0.9, 0.8, 0.95)}
    opt.set_one_cycle(20, lr_maxes, **kw)
    for k in range(24):  # past the end: the final values hold
        for a, b in probes:
            a.grad, b.grad = torch.ones(1, device=device), torch.zeros(1, device=device)
            with torch.no_grad():
                a.zero_(), b.zero_()
            if a in opt.state:
                opt.state[a]["momentum_buffer"].zero_()
                opt.state[b]["momentum_buffer"].fill_(1.0)
        opt.step()
        for gi, (a, b) in enumerate(probes):
            lr, mom = one_cycle(min(k / 20, 1.0), lr_maxes[gi], **kw)
            # (at k = 0 the buffers start at 0, so only lr can be seen)
            got_mom = opt.state[b]["momentum_buffer"].item() if k else mom
            got = torch.tensor([-a.item(), got_mom], dtype=torch.float32)
            expected = torch.tensor([lr, mom], dtype=torch.float32)
            if device.type == "cpu":  # the same double arithmetic and libm as Python's
                assert torch.equal(got, expected), (k, gi, got, expected)
            else:
                torch.testing.assert_close(got, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("algo", ["adam", "sgd"])
def test_cpu_equals_cuda(algo):
    sizes = boundary_sizes(600)
    g = torch.Generator().manual_seed(5)
    params = [torch.randn(s, generator=g) for s in sizes] + [torch.randn(100003, generator=g)]
    grads = [torch.randn(p.shape, generator=g) for p in params]
    groups = [i % 2 for i in range(len(params))]
    rows = [ROW, [1e-2, 0.8, 0.999, 1e-6, 0.1, 2e-2]]
    cpu = adam_args(params, grads, rows, groups, SCHED, step=3)
    if algo == "sgd":
        cpu = [cpu[0], cpu[1], cpu[2], *cpu[5:]]
    cuda = [
        [t.cuda() for t in a]
        if isinstance(a, list) and a and isinstance(a[0], torch.Tensor)
        else a.cuda()
        if isinstance(a, torch.Tensor)
        else a
        for a in cpu
    ]
    op = ops.fused_adam_ if algo == "adam" else ops.fused_sgd_
    for _ in range(3):
        op(*cpu)
        op(*cuda)
    assert_args_close(cpu, cuda)


def test_vector_and_scalar_paths_agree_bitwise():
    """The same elements as one tensor (8-wide loop) and as 1-element tensors (scalar tail)."""
    n = 1003
    params, grads = [torch.randn(n)], [torch.randn(n)]
    whole = adam_args(params, grads, [ROW], [0], SCHED, step=1)
    split = [
        list(whole[0][0].clone().split(1)),
        list(whole[1][0].clone().split(1)),
        list(whole[2][0].clone().split(1)),
        list(whole[3][0].clone().split(1)),
        [whole[4][0].clone() for _ in range(n)],
        [0] * n,
        *clone_args(whole[6:]),
    ]
    for _ in range(3):
        ops.fused_adam_(*whole)
        ops.fused_adam_(*split)
    assert torch.equal(whole[0][0], torch.cat(split[0]))
    assert torch.equal(whole[3][0], torch.cat(split[3]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("algo", ["adam", "sgd"])
def test_half_precision_params_with_fp32_state(device, dtype, algo):
    g = torch.Generator().manual_seed(6)
    shapes = [(1001,), (16, 3), (5,)]
    params = [torch.randn(s, generator=g).to(device, dtype) for s in shapes]
    params.append(torch.randn(7, generator=g).to(device))  # a float32 param in the same call
    grads = [torch.randn(p.shape, generator=g).to(device, p.dtype) for p in params]
    args = adam_args(params, grads, [ROW], [0] * len(params), SCHED, step=1)
    if algo == "sgd":
        args = [args[0], args[1], args[2], *args[5:]]
    op = ops.fused_adam_ if algo == "adam" else ops.fused_sgd_
    ref = reference.fused_adam_reference if algo == "adam" else reference.fused_sgd_reference
    expected = clone_args(args)
    for _ in range(3):
        op(*args)
        ref(*expected)
    tol = {
        torch.bfloat16: {"rtol": 1.6e-2, "atol": 1e-5},
        torch.float16: {"rtol": 1e-3, "atol": 1e-5},
    }
    for a, b in zip(args[0], expected[0], strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, **(tol[dtype] if a.dtype == dtype else {}))
    assert_args_close(args[2:], expected[2:], rtol=2e-5, atol=1e-6)


def test_non_contiguous_params(device):
    dense = [
        torch.randn(13, 7, device=device).t(),  # transposed
        torch.randn(4, 3, 5, 5, device=device).to(memory_format=torch.channels_last),
        torch.randn(6, 9, device=device),
    ]
    ours = [p.clone().requires_grad_() for p in dense]
    ours[0] = dense[0].clone().t().contiguous().t().requires_grad_()  # keep transposed strides
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt = Adam(ours)
    ref = torch.optim.AdamW(theirs, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    assert not ours[0].is_contiguous() and not ours[1].is_contiguous()
    for _ in range(3):
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            grad = torch.randn(a.shape, device=device)
            if i == 2:  # a grad whose strides differ from its param's
                grad = grad.t().contiguous().t()
            a.grad, b.grad = grad, grad.clone()
        opt.step()
        ref.step()
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b)
            assert opt.state[a]["exp_avg"].stride() == a.stride()
    with pytest.raises(ValueError, match="non-overlapping and dense"):
        Adam([torch.randn(4, 6, device=device)[:, ::2]])


@pytest.mark.parametrize("cls", [Adam, SGD])
def test_state_follows_a_param_that_changes_layout(device, cls):
    """model.to(memory_format=...) between steps (to_channels_last / to_fp32 after a fit)
    re-strides the params in place: the state follows, values kept, and the steps equal
    those of an optimizer whose params never changed layout (elementwise: bit for bit)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3).to(device)
    same = torch.nn.Conv2d(3, 8, 3).to(device)
    same.load_state_dict(conv.state_dict())
    opt, ref = cls(conv.parameters()), cls(same.parameters())
    for step in range(4):
        if step == 1:
            conv.to(memory_format=torch.channels_last)
        if step == 3:
            conv.to(memory_format=torch.contiguous_format)
        for a, b in zip(conv.parameters(), same.parameters(), strict=True):
            grad = torch.randn(a.shape, device=device)
            a.grad, b.grad = grad.contiguous(memory_format=torch.preserve_format), grad.clone()
        opt.step()
        ref.step()
        for a, b in zip(conv.parameters(), same.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
            for key, value in opt.state[a].items():
                if value.dim():
                    assert value.stride() == a.stride(), key
                    torch.testing.assert_close(value, ref.state[b][key], rtol=0, atol=0)
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_add_param_group_and_deepcopy():
    groups = make_params(SHAPES, "cpu")
    opt = Adam([{"params": groups[0]}], lr=1e-3)
    opt.set_one_cycle(10, 2e-3)
    opt.add_param_group({"params": groups[1], "lr": 5e-3})
    assert opt.one_cycle["lr_max"] == [2e-3, 5e-3]
    twin = copy.deepcopy(opt)
    assert twin.one_cycle == opt.one_cycle and twin.schedule_step == 0
    for p in groups[0] + groups[1]:
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt.schedule_step == 1 and twin.schedule_step == 0
    plain = SGD(make_params(SHAPES, "cpu")[0], lr=0.1)  # fastai's default: no momentum
    assert plain.momentum is False and copy.deepcopy(plain).momentum is False


def test_fastai_list_of_lists_makes_groups():
    groups = make_params(SHAPES, "cpu")
    opt = SGD(groups, lr=0.1)
    assert [g["params"] for g in opt.param_groups] == groups
    opt.set_one_cycle(4, [1e-3, 1e-2, 1e-1])
    assert opt.one_cycle["lr_max"] == [1e-3, 1e-2, 1e-1]


def test_closure_and_zero_grad():
    p = torch.randn(5, requires_grad=True)
    opt = SGD([p], lr=0.1, mom=0.0)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    before = p.detach().clone()
    loss = opt.step(closure)
    torch.testing.assert_close(loss, (before * before).sum())
    torch.testing.assert_close(p.detach(), before * 0.8)
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("algo", ["adam", "sgd"])
def test_opcheck(device, algo):
    params, grads = zero_size_lists(device)
    args = adam_args(params, grads, [ROW], [0] * len(params), SCHED)
    if algo == "sgd":
        op = torch.ops.fastcore_ext.fused_sgd_.default
        args = [args[0], args[1], args[2], *args[5:]]
    else:
        op = torch.ops.fastcore_ext.fused_adam_.default
    torch.library.opcheck(op, args)
    torch.library.opcheck(
        op, [*args, torch.tensor([8.0], device=device), torch.zeros(1, device=device)]
    )


# ---- bad input: every one a ValueError/TypeError naming the argument --------------------


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: Adam(torch.randn(3)), TypeError, "params should be an iterable"),
        (lambda: Adam(5), TypeError, "params should be an iterable"),
        (lambda: Adam([torch.randn(3), "w"]), TypeError, "params should be Tensors, got str"),
        (lambda: Adam([]), ValueError, "empty parameter list"),
        (lambda: Adam([torch.randn(3, dtype=torch.cfloat)]), TypeError, "float32, bfloat16"),
        (lambda: Adam([torch.zeros(3, dtype=torch.int64)]), TypeError, "float32, bfloat16"),
        (lambda: Adam([torch.zeros(3, dtype=torch.float64)]), TypeError, "float32, bfloat16"),
        (lambda: Adam([torch.randn(3).to_sparse()]), TypeError, "dense tensors"),
        (lambda: Adam([torch.randn(3), torch.empty(3, device="meta")]), ValueError, "one device"),
        (lambda: Adam([torch.randn(3, requires_grad=True) * 2]), ValueError, "non-leaf"),
        (lambda: Adam([torch.randn(3)], lr=-1.0), ValueError, "lr should"),
        (lambda: Adam([torch.randn(3)], lr=math.nan), ValueError, "lr should"),
        (lambda: Adam([torch.randn(3)], lr="1e-3"), TypeError, "lr should be a number"),
        (lambda: Adam([torch.randn(3)], eps=-1e-8), ValueError, "eps should"),
        (lambda: Adam([torch.randn(3)], wd=-0.1), ValueError, "wd should"),
        (lambda: Adam([torch.randn(3)], mom=1.0), ValueError, r"mom should be in \[0"),
        (lambda: Adam([torch.randn(3)], mom=-0.1), ValueError, r"mom should be in \[0"),
        (lambda: Adam([torch.randn(3)], sqr_mom=1.0), ValueError, "sqr_mom should"),
        (lambda: Adam([torch.randn(3)], sqr_mom=-0.1), ValueError, "sqr_mom should"),
        (lambda: Adam([torch.randn(3)], sqr_mom=math.nan), ValueError, "sqr_mom should"),
        (lambda: Adam([torch.randn(3)], mom=math.nan), ValueError, "mom should"),
        (lambda: SGD([torch.randn(3)], mom=math.inf), ValueError, "mom should"),
        (lambda: Adam([torch.randn(3)], eps=math.nan), ValueError, "eps should"),
        (lambda: Adam([torch.randn(3)], eps=math.inf), ValueError, "eps should"),
        (lambda: Adam([torch.randn(3)], wd=math.nan), ValueError, "wd should"),
        (lambda: SGD([torch.randn(3)], wd=math.inf), ValueError, "wd should"),
        (lambda: SGD([torch.randn(3)], mom=1.5), ValueError, "mom should"),
        (lambda: SGD([{"params": [torch.randn(3)], "sqr_mom": 0.9}]), ValueError, "does not use"),
        (
            lambda: Adam([{"params": [torch.randn(3)], "lr": -2.0}]),
            ValueError,
            r"lr \(param group 0\)",
        ),
        (lambda: Adam([{"lr": 1.0}]), ValueError, "'params' entry"),
        (
            lambda: Adam([{"params": [torch.randn(3)], "weight_decay": 0.1}]),
            ValueError,
            "torch's 'weight_decay'.*fastai's name 'wd'",
        ),
        (
            lambda: Adam([{"params": [torch.randn(3)], "betas": (0.9, 0.99)}]),
            ValueError,
            "fastai's names 'mom' and 'sqr_mom'",
        ),
        (lambda: Adam([{"params": {torch.randn(3)}}]), TypeError, "got a set"),
    ],
)
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_duplicate_params_rejected():
    p = torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match="more than once"):
        Adam([p, p])
    with pytest.raises(ValueError, match="more than once"):
        SGD([{"params": [p]}, {"params": [p]}])


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"total_steps": 0}, ValueError, "total_steps should be > 0"),
        ({"total_steps": -5}, ValueError, "total_steps should be > 0"),
        ({"total_steps": 10.0}, TypeError, "total_steps should be an int"),
        ({"pct_start": 0.0}, ValueError, "pct_start"),
        ({"pct_start": 1.0}, ValueError, "pct_start"),
        ({"lr_max": [1e-3, 1e-3]}, ValueError, r"one per param group \(3\), got 2"),
        ({"lr_max": -1e-3}, ValueError, "lr_max of param group 0"),
        ({"lr_max": "big"}, TypeError, "lr_max should be a number"),
        ({"div": 0.0}, ValueError, "div should"),
        ({"div_final": -1.0}, ValueError, "div_final should"),
        ({"moms": (0.9, 0.8)}, ValueError, "moms should"),
        ({"start_step": -1}, ValueError, "start_step should be >= 0"),
    ],
)
def test_set_one_cycle_errors(kwargs, exc, match):
    opt = Adam([{"params": ps} for ps in make_params(SHAPES, "cpu")])
    args = {"total_steps": 10, "lr_max": 1e-3, **kwargs}
    with pytest.raises(exc, match=match):
        opt.set_one_cycle(**args)
    assert opt.one_cycle is None


def test_load_state_dict_errors():
    groups = make_params(SHAPES, "cpu")
    opt = Adam([{"params": ps} for ps in groups])
    two = Adam([{"params": ps} for ps in clone_params(groups)[:2]])
    with pytest.raises(ValueError, match="state_dict has 2 param groups, this optimizer has 3"):
        opt.load_state_dict(two.state_dict())
    other = Adam([{"params": ps[:1]} for ps in clone_params(groups)])
    with pytest.raises(ValueError, match="param group 0 has 1 params"):
        opt.load_state_dict(other.state_dict())
    adamw = torch.optim.AdamW([{"params": ps} for ps in clone_params(groups)])
    with pytest.raises(ValueError, match=r"lacks \['mom'"):
        opt.load_state_dict(adamw.state_dict())
    with pytest.raises(TypeError, match="state_dict should be a dict"):
        opt.load_state_dict([1, 2])
    for p in groups[0]:
        p.grad = torch.randn_like(p)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = torch.zeros(2)
    fresh = Adam([{"params": ps} for ps in clone_params(groups)])
    with pytest.raises(ValueError, match="'exp_avg' has shape"):
        fresh.load_state_dict(sd)
    del sd["state"][0]["exp_avg"]
    with pytest.raises(ValueError, match="lacks the tensor 'exp_avg'"):
        fresh.load_state_dict(sd)
    assert len(fresh.state) == 0  # nothing loaded


@pytest.mark.parametrize("cls", [Adam, SGD])
def test_no_step_relies_on_a_cpp_exception(monkeypatch, cls):
    """A C++ exception crashed the process on one toolchain, so no step may need one: grads
    strided unlike their params (a transposed grad, a channels_last grad of a contiguous param)
    take one op call that steps them like contiguous grads; a sparse grad raises in Python
    before the op."""
    name = "fused_adam_" if cls is Adam else "fused_sgd_"
    calls = []
    real = getattr(ops, name)

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(ops, name, spy)
    w = torch.randn(4, 6, requires_grad=True)
    conv = torch.randn(2, 3, 4, 5, requires_grad=True)
    twin_w, twin_conv = w.detach().clone(), conv.detach().clone()
    opt, twin = cls([w, conv]), cls([twin_w, twin_conv])
    for _ in range(2):
        w.grad = torch.randn(6, 4).t()
        conv.grad = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
        twin_w.grad, twin_conv.grad = w.grad.contiguous(), conv.grad.contiguous()
        n = len(calls)
        opt.step()
        assert len(calls) == n + 1
        twin.step()
    assert torch.equal(w, twin_w) and torch.equal(conv, twin_conv)
    for a, b in ((w, twin_w), (conv, twin_conv)):
        for key, value in opt.state[a].items():
            assert torch.equal(value, twin.state[b][key])
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = cls(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    n = len(calls)
    with pytest.raises(TypeError, match="sparse gradients"):
        opt.step()
    assert len(calls) == n


def test_step_time_errors():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = Adam(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(TypeError, match="sparse gradients"):
        opt.step()
    p = torch.randn(3, requires_grad=True)
    opt = SGD([p])
    p.grad = torch.randn(3)
    opt.param_groups[0]["lr"] = -0.5
    with pytest.raises(ValueError, match=r"lr \(param group 0\) should"):
        opt.step()


@pytest.mark.parametrize(
    "edit, exc, match",
    [
        (lambda a: a.__setitem__(1, a[1][:-1]), ValueError, "grads should have 5 tensors"),
        (lambda a: a.__setitem__(5, [0, 0, 0, 0, 1]), ValueError, r"groups\[4\] should be in"),
        (lambda a: a.__setitem__(6, a[6].float()), TypeError, "hyper should be float64"),
        (lambda a: a.__setitem__(7, a[7][:5]), ValueError, "sched should be a contiguous"),
        (
            lambda a: a[2].__setitem__(1, a[2][1].double()),
            TypeError,
            r"exp_avgs\[1\] should be float32",
        ),
        (
            lambda a: a[1].__setitem__(0, a[1][0][:5]),
            ValueError,
            r"grads\[0\] should have its param",
        ),
        (lambda a: a[4].__setitem__(0, torch.zeros(2)), ValueError, r"steps\[0\] should be one"),
    ],
)
def test_op_argument_errors(edit, exc, match):
    params, grads = zero_size_lists("cpu")
    args = adam_args(params, grads, [ROW], [0] * len(params))
    edit(args)
    with pytest.raises(exc, match=match):
        ops.fused_adam_(*args)


# ---- CUDA only: graphs and memory -----------------------------------------------------------

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda_only
@pytest.mark.parametrize("cls", [Adam, SGD])
def test_cuda_graph_replays_follow_the_schedule(cls):
    groups = make_params(SHAPES, "cuda")
    twin_groups = clone_params(groups)
    opt = cls([{"params": ps} for ps in groups])
    twin = cls([{"params": ps} for ps in twin_groups])
    for o in (opt, twin):
        o.set_one_cycle(10, [1e-3, 1e-2, 3e-2])
    for p, q in zip(sum(groups, []), sum(twin_groups, []), strict=True):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for _ in range(2):
        twin.step()
    deltas = []
    for _ in range(12):  # past the end of the schedule
        before = groups[0][0].detach().clone()
        graph.replay()
        twin.step()
        deltas.append((groups[0][0] - before).abs().max().item())
        for a, b in zip(sum(groups, []), sum(twin_groups, []), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert opt.schedule_step == twin.schedule_step == 14
    assert len(set(deltas)) > 5  # the lr changed from replay to replay


@cuda_only
def test_cuda_steps_allocate_nothing():
    groups = make_params(SHAPES, "cuda")
    opt = Adam([{"params": ps} for ps in groups])
    opt.set_one_cycle(10, 1e-3)
    for p in sum(groups, []):
        p.grad = torch.randn_like(p)
    opt.step()
    torch.cuda.synchronize()
    allocated = torch.cuda.memory_allocated()
    for _ in range(5):
        opt.step()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == allocated


@cuda_only
@pytest.mark.slow
def test_cuda_tensor_over_2_31_elements():
    """Index arithmetic past 2^31 elements: (2^31 + 5) fp16 params, SGD (17 GB in all)."""
    free, _ = torch.cuda.mem_get_info()
    n = 2**31 + 5
    if free < n * 10:
        pytest.skip("not enough GPU memory")
    p = torch.zeros(n, dtype=torch.float16, device="cuda")
    g = torch.ones(n, dtype=torch.float16, device="cuda")
    buf = torch.zeros(n, device="cuda")
    hyper = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64, device="cuda")
    sched = torch.zeros(7, dtype=torch.float64, device="cuda")
    counter = torch.zeros(2, dtype=torch.int64, device="cuda")
    ops.fused_sgd_([p], [g], [buf], [0], hyper, sched, counter)
    torch.cuda.synchronize()
    # every element written once (an unwritten one stays 0), the ones past 2^31 included
    assert bool((p == -0.5).all()) and bool((buf == 1.0).all())
    assert p[n - 1].item() == -0.5 and int(counter[0]) == 1


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_decouple_wd_false_is_refused_saying_where_l2_is(name):
    """fastai's partial(Adam, decouple_wd=False) failed with "unexpected keyword argument"
    from inside the Learner; True (what the kernels do) is accepted."""
    from fastcore_ext import optim

    params = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match=rf"{name}\(decouple_wd=False\): L2 regularization .*"
                       rf"RMSProp\(decouple_wd=False\) has it.*torch.optim.{name}"):  # fmt: skip
        getattr(optim, name)(params, decouple_wd=False)
    assert getattr(optim, name)(params, decouple_wd=True).param_groups[0]["lr"] == 1e-3
