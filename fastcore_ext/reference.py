"""Readable pure-torch versions of every op: the specification and the test oracle.

Nothing here is called on a hot path; the tests compare the kernels with these.
"""

import torch

# ---- Kernel 1: fused augmentation + normalization ----------------------------------------

# (augment_normalize_reference goes here)


# ---- Kernel 2: fused optimizer step -------------------------------------------------------


def _lr_mom_reference(
    hyper: torch.Tensor, sched: torch.Tensor, step: int, group: int
) -> tuple[float, float]:
    """A group's (lr, mom): the one-cycle values at step / total_steps, or its own values."""
    from fastcore_ext.schedule import one_cycle

    lr, mom, _, _, _, lr_max = hyper[group].tolist()
    total, div, div_final, pct_start, *moms = sched.tolist()
    if not total > 0:
        return lr, mom
    return one_cycle(step / total, lr_max, div, div_final, pct_start, moms)


def fused_adam_reference(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    steps,
    groups,
    hyper,
    sched,
    counter,
    grad_scale=None,
    found_inf=None,
) -> None:
    """What `ops.fused_adam_` does, in float64, one tensor at a time (same arguments).

    For each tensor (group g, t = steps[i] + 1, lr and mom from `_lr_mom_reference`):
        grad = grad / grad_scale
        p = p * (1 - lr * wd)                               # decoupled weight decay
        exp_avg = exp_avg + (1 - mom) * (grad - exp_avg)
        exp_avg_sq = sqr_mom * exp_avg_sq + (1 - sqr_mom) * grad**2
        p = p - lr / (1 - mom**t) * exp_avg / (sqrt(exp_avg_sq / (1 - sqr_mom**t)) + eps)
    then steps[i] += 1 and counter[0] += 1; nothing at all when found_inf is nonzero.
    """
    if found_inf is not None and found_inf.item() != 0:
        return
    step = int(counter[0])
    scale = 1.0 if grad_scale is None else grad_scale.item()
    for p, g, m, v, st, gi in zip(params, grads, exp_avgs, exp_avg_sqs, steps, groups, strict=True):
        lr, mom = _lr_mom_reference(hyper, sched, step, gi)
        _, _, sqr_mom, eps, wd, _ = hyper[gi].tolist()
        t = st.item() + 1
        g64 = g.double() / scale
        m64 = m.double() + (1 - mom) * (g64 - m.double())
        v64 = sqr_mom * v.double() + (1 - sqr_mom) * g64 * g64
        den = (v64 / (1 - sqr_mom**t)).sqrt() + eps
        p.copy_(p.double() * (1 - lr * wd) - lr / (1 - mom**t) * m64 / den)
        m.copy_(m64)
        v.copy_(v64)
        st.add_(1)
    counter[0] += 1


def fused_sgd_reference(
    params,
    grads,
    momentum_buffers,
    groups,
    hyper,
    sched,
    counter,
    grad_scale=None,
    found_inf=None,
) -> None:
    """What `ops.fused_sgd_` does, in float64, one tensor at a time (same arguments).

    For each tensor: grad = grad / grad_scale; p = p * (1 - lr * wd);
    buf = mom * buf + grad; p = p - lr * buf. Then counter[0] += 1; nothing when found_inf.
    """
    if found_inf is not None and found_inf.item() != 0:
        return
    step = int(counter[0])
    scale = 1.0 if grad_scale is None else grad_scale.item()
    for p, g, b, gi in zip(params, grads, momentum_buffers, groups, strict=True):
        lr, mom = _lr_mom_reference(hyper, sched, step, gi)
        wd = hyper[gi, 4].item()
        b64 = mom * b.double() + g.double() / scale
        p.copy_(p.double() * (1 - lr * wd) - lr * b64)
        b.copy_(b64)
    counter[0] += 1
