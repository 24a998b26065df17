"""Typed Python wrappers of the custom ops (torch.ops.fastcore_ext.*), with their argument
checks and their fake (meta) implementations for torch.compile."""

import torch

from fastcore_ext import _ext

_ext.load()

# ---- Kernel 1: fused augmentation + normalization ----------------------------------------

# (augment_normalize and its fake kernel go here)


# ---- Kernel 2: fused optimizer step -------------------------------------------------------

# Layout of the device tensors the optimizer kernels read (csrc/fused_optim.h).
HYPER_COLS = ("lr", "mom", "sqr_mom", "eps", "wd", "lr_max")  # hyper: float64 [groups, 6]
SCHED_FIELDS = ("total_steps", "div", "div_final", "pct_start", "mom0", "mom1", "mom2")  # [7]
COUNTER_LEN = 2  # counter: int64 [2] = (schedule step, scratch word kept at 0)


def fused_adam_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[torch.Tensor],
    groups: list[int],
    hyper: torch.Tensor,
    sched: torch.Tensor,
    counter: torch.Tensor,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
) -> None:
    """One fused AdamW step of every listed tensor, in place (one launch on CUDA).

    params: float32/bfloat16/float16 tensors (non-overlapping and dense); grads: same dtype,
    sizes and strides (read only); exp_avgs, exp_avg_sqs: float32, same sizes and strides;
    steps: float32 one-element step counts; groups[i]: the row of params[i] in `hyper`
    (float64 [G, 6], columns HYPER_COLS); sched: float64 [7] (SCHED_FIELDS, total_steps <= 0:
    no schedule); counter: int64 [2]. Spec: `reference.fused_adam_reference`.
    """
    torch.ops.fastcore_ext.fused_adam_(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        steps,
        groups,
        hyper,
        sched,
        counter,
        grad_scale,
        found_inf,
    )


def fused_sgd_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    groups: list[int],
    hyper: torch.Tensor,
    sched: torch.Tensor,
    counter: torch.Tensor,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
) -> None:
    """One fused SGD-with-momentum step of every listed tensor, in place (one launch on CUDA).

    Arguments as in `fused_adam_`, with one float32 momentum buffer per param (zeros before the
    first step). Spec: `reference.fused_sgd_reference`.
    """
    torch.ops.fastcore_ext.fused_sgd_(
        params, grads, momentum_buffers, groups, hyper, sched, counter, grad_scale, found_inf
    )


@torch.library.register_fake("fastcore_ext::fused_adam_")
def _fused_adam_fake(
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
    return None


@torch.library.register_fake("fastcore_ext::fused_sgd_")
def _fused_sgd_fake(
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
    return None
