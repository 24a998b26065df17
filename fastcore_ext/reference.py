"""Readable pure-torch versions of every op: the specification and the test oracle.

Nothing here is called on a hot path; the tests compare the kernels with these.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fastcore_ext.schedule import one_cycle

# ---- Kernel 1: fused augmentation + normalization ----------------------------------------


def reference_grid(matrices: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """The sampling grid of `augment_normalize`, in grid_sample's normalized coordinates.

    Output pixel (i, j) has the normalized coordinates xn = (2j + 1) / out_w - 1,
    yn = (2i + 1) / out_h - 1 (align_corners=False, as F.affine_grid); the input point is
    [X, Y, D] = M [xn, yn, 1], divided by D (D == 1 for an affine matrix, whose last row is
    0, 0, 1; any other last row is a perspective warp).

    Args:
        matrices: Tensor[B, 3, 3], output -> input; the grid has its dtype.
        out_h, out_w: output size.

    Returns:
        Tensor[B, out_h, out_w, 2]: (x, y) per output pixel, as `F.grid_sample` takes it.
    """
    dt, dev = matrices.dtype, matrices.device
    xn = (2 * torch.arange(out_w, dtype=dt, device=dev) + 1) / out_w - 1  # (W,)
    yn = (2 * torch.arange(out_h, dtype=dt, device=dev) + 1) / out_h - 1  # (H,)
    yy, xx = torch.meshgrid(yn, xn, indexing="ij")  # (H, W) each
    base = torch.stack([xx, yy, torch.ones_like(xx)], dim=-1)  # (H, W, 3)
    pts = torch.einsum("bkl,hwl->bhwk", matrices, base)  # (B, H, W, 3)
    return pts[..., :2] / pts[..., 2:]


def apply_lighting(x: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
    """fastai's lighting in logit space: y = sigmoid(c * (logit(x) + logit(b))).

    Args:
        x: Tensor[B, C, H, W] in [0, 1]; clamped to [1e-6, 1 - 1e-6] first.
        lighting: Tensor[B, 2] of (brightness b, contrast c); (0.5, 1) is the identity.
    """
    eps = 1e-6
    b = lighting[:, 0].to(x.dtype).view(-1, 1, 1, 1)
    c = lighting[:, 1].to(x.dtype).view(-1, 1, 1, 1)
    return torch.sigmoid(c * (torch.logit(x.clamp(eps, 1 - eps)) + torch.logit(b)))


def augment_normalize_reference(
    images: torch.Tensor,
    matrices: torch.Tensor,
    size: int | tuple[int, int],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    lighting: torch.Tensor | None = None,
    mode: str = "bilinear",
    pad_mode: str = "reflection",
    out_dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The specification of `ops.augment_normalize`, step by step in `compute_dtype`.

    images / 255 -> grid_sample on `reference_grid(matrices)` (align_corners=False, `mode`,
    `pad_mode` as padding_mode) -> `apply_lighting` when given -> (y - mean) / std -> out_dtype.

    Args:
        images: uint8 Tensor[B, C, H, W].
        matrices: Tensor[B, 3, 3], output -> input in normalized coordinates.
        size: (out_h, out_w) or one int for both.
        mean, std: C values each, in [0, 1] units.
        lighting: Tensor[B, 2] (brightness, contrast) or None.
        mode: "bilinear" or "nearest"; pad_mode: "zeros", "border" or "reflection".
        out_dtype: dtype of the result; channels_last: its memory format.
        compute_dtype: float64 (the test oracle) or float32.

    Returns:
        Tensor[B, C, out_h, out_w] of out_dtype.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    B, C = images.shape[:2]
    x = images.to(compute_dtype) / 255
    if B == 0:
        y = x.new_empty((0, C, out_h, out_w))
    else:
        grid = reference_grid(matrices.to(compute_dtype), out_h, out_w)
        y = F.grid_sample(x, grid, mode=mode, padding_mode=pad_mode, align_corners=False)
    if lighting is not None:
        y = apply_lighting(y, lighting)
    m = torch.tensor(mean, dtype=compute_dtype, device=y.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=compute_dtype, device=y.device).view(1, -1, 1, 1)
    y = ((y - m) / s).to(out_dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return y.contiguous(memory_format=fmt)


# ---- Kernel 2: fused optimizer step -------------------------------------------------------


def _lr_mom_reference(
    hyper: torch.Tensor, sched: torch.Tensor, step: int, group: int
) -> tuple[float, float]:
    """A group's (lr, mom): the one-cycle values at step / total_steps, or its own values."""
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
    then steps[i] += 1 and counter[0] += 1. When found_inf is nonzero, only counter[0] (the
    schedule position, one per training batch) advances.
    """
    if found_inf is not None and found_inf.item() != 0:
        counter[0] += 1
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
    buf = mom * buf + grad; p = p - lr * buf. Then counter[0] += 1, which alone happens when
    found_inf is nonzero.
    """
    if found_inf is not None and found_inf.item() != 0:
        counter[0] += 1
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
