"""Typed Python wrappers of the custom ops (torch.ops.fastcore_ext.*), with their argument
checks and their fake (meta) implementations for torch.compile."""

import math
from collections.abc import Sequence

import torch

from fastcore_ext import _ext
from fastcore_ext.checks import (
    check_bool,
    check_choice,
    check_hw,
    check_per_channel,
    check_tensor,
)

_ext.load()

# ---- Kernel 1: fused augmentation + normalization ----------------------------------------

_MODES = ("bilinear", "nearest")
_PAD_MODES = ("zeros", "border", "reflection")
_OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_CUDA_MAX_OUT_H = 65535 * 8  # CUDA grid rows of 8-pixel blocks (csrc/cuda/augment_normalize.cu)


def _check_lighting_values(lighting: torch.Tensor) -> None:
    """Brightness in (0, 1) and contrast positive and finite, for a CPU `lighting` [B, 2]: the
    column minima and maxima (two small reductions, about 5-13 us at B = 64 on a 2-core EPYC,
    where `torch.aminmax(dim=0)` took 20-100 us); the row-by-row scan that names the first bad
    image runs only when they show a value out of range (NaN included)."""
    (b_lo, c_lo), (b_hi, c_hi) = lighting.amin(0).tolist(), lighting.amax(0).tolist()
    if b_lo > 0.0 and b_hi < 1.0 and c_lo > 0.0 and math.isfinite(c_hi):
        return
    for i, (b, c) in enumerate(lighting.tolist()):
        if not 0.0 < b < 1.0:
            raise ValueError(
                f"lighting brightness (column 0) should be in (0, 1), got {b:g} for image {i}"
            )
        if not (c > 0.0 and math.isfinite(c)):
            raise ValueError(
                "lighting contrast (column 1) should be positive and finite, got "
                f"{c:g} for image {i}"
            )


def augment_normalize(
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
) -> torch.Tensor:
    """Warp, light and normalize a batch of uint8 images in one pass (fused kernel).

    Per sample b, output pixel (i, j) samples the input at `matrices[b] @ [xn, yn, 1]`
    (normalized coordinates, align_corners=False, divided by the third coordinate when the
    last row is not (0, 0, 1)); then `lighting` (fastai's logit-space brightness/contrast)
    and `(y - mean) / std`. For affine matrices this equals
    `F.grid_sample(images.float() / 255, F.affine_grid(matrices[:, :2], ...), mode, pad_mode,
    align_corners=False)` followed by the lighting and the normalization;
    `reference.augment_normalize_reference` is the specification.

    Args:
        images: uint8 Tensor[B, C, H, W], C 1 or 3, any strides (channels_last storage is
            read as it is, never copied).
        matrices: float32 Tensor[B, 3, 3] on images' device, output -> input.
        size: (out_h, out_w), or one int for a square output.
        mean, std: C floats each in [0, 1] units; std > 0.
        lighting: float32 Tensor[B, 2] of (brightness in (0, 1), contrast > 0) on images'
            device, or None. (0.5, 1.0) leaves a sample unchanged (up to the clamp of x to
            [1e-6, 1 - 1e-6]). On the CPU the values are checked (ValueError; under
            torch.compile by the op itself); CUDA values are not read back to the host (that
            would synchronize).
        mode: "bilinear" or "nearest" (rounds half to even, as grid_sample).
        pad_mode: "reflection", "border" or "zeros", as grid_sample's padding_mode.
        out_dtype: torch.float32, torch.bfloat16 or torch.float16.
        channels_last: return channels_last memory format instead of NCHW-contiguous.

    Returns:
        Tensor[B, C, out_h, out_w] of out_dtype on images' device.
    """
    check_tensor("images", images)
    if images.dtype != torch.uint8:
        raise TypeError(f"images should be a uint8 tensor, got {images.dtype}")
    if images.dim() != 4:
        raise ValueError(
            f"images should be a 4d tensor [B, C, H, W], got {images.dim()}d of shape "
            f"{list(images.shape)}"
        )
    B, C, H, W = images.shape
    if C not in (1, 3):
        raise ValueError(
            f"images should have 1 or 3 channels, got {C} (shape {list(images.shape)})"
        )
    if H == 0 or W == 0:
        raise ValueError(f"images should have a positive height and width, got {H}x{W}")
    out_h, out_w = check_hw("size", size)
    check_tensor("matrices", matrices)
    if matrices.dim() != 3 or tuple(matrices.shape[1:]) != (3, 3):
        raise ValueError(f"matrices should have shape [B, 3, 3], got {list(matrices.shape)}")
    if matrices.shape[0] != B:
        raise ValueError(
            f"matrices should have one matrix per image ({B}), got {matrices.shape[0]}"
        )
    if matrices.dtype != torch.float32:
        raise TypeError(f"matrices should be a float32 tensor, got {matrices.dtype}")
    if matrices.device != images.device:
        raise ValueError(
            f"matrices should be on the device of images ({images.device}), got {matrices.device}"
        )
    mean_l = check_per_channel("mean", mean, C)
    std_l = check_per_channel("std", std, C)
    for c in range(C):
        if not (std_l[c] > 0 and math.isfinite(std_l[c])):
            raise ValueError(f"std should be positive and finite, got {std_l[c]:g} for channel {c}")
        if not math.isfinite(mean_l[c]):
            raise ValueError(f"mean should be finite, got {mean_l[c]:g} for channel {c}")
    if out_dtype not in _OUT_DTYPES:
        raise ValueError(
            f"out_dtype should be torch.float32, torch.bfloat16 or torch.float16, got {out_dtype}"
        )
    check_choice("mode", mode, _MODES)
    check_choice("pad_mode", pad_mode, _PAD_MODES)
    check_bool("channels_last", channels_last)
    if lighting is not None:
        if not isinstance(lighting, torch.Tensor):
            raise TypeError(
                f"lighting should be a torch.Tensor or None, got {type(lighting).__name__}"
            )
        if tuple(lighting.shape) != (B, 2):
            raise ValueError(
                f"lighting should have shape [B, 2] = [{B}, 2] (brightness, contrast), "
                f"got {list(lighting.shape)}"
            )
        if lighting.dtype != torch.float32:
            raise TypeError(f"lighting should be a float32 tensor, got {lighting.dtype}")
        if lighting.device != images.device:
            raise ValueError(
                f"lighting should be on the device of images ({images.device}), "
                f"got {lighting.device}"
            )
        if lighting.device.type == "cpu" and B > 0 and not torch.compiler.is_compiling():
            _check_lighting_values(lighting)  # (traced by torch.compile: the C++ guard checks)
    if images.device.type == "cuda" and out_h > _CUDA_MAX_OUT_H:
        raise ValueError(f"size should have out_h at most {_CUDA_MAX_OUT_H} on CUDA, got {out_h}")
    return torch.ops.fastcore_ext.augment_normalize(
        images,
        matrices,
        out_h,
        out_w,
        mean_l,
        std_l,
        lighting,
        mode,
        pad_mode,
        out_dtype,
        channels_last,
    )


@torch.library.register_fake("fastcore_ext::augment_normalize")
def _augment_normalize_fake(
    images, matrices, out_h, out_w, mean, std, lighting, mode, pad_mode, out_dtype, channels_last
):
    B, C = images.shape[:2]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(
        (B, C, out_h, out_w), dtype=out_dtype, device=images.device, memory_format=fmt
    )


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

    params: float32/bfloat16/float16 tensors (non-overlapping and dense); grads: same dtype
    and sizes, read only (one strided unlike its param is copied to its layout); exp_avgs,
    exp_avg_sqs: float32, the params' sizes and strides; steps: float32 one-element step
    counts; groups[i]: the row of params[i] in `hyper` (float64 [G, 6], columns HYPER_COLS);
    sched: float64 [7] (SCHED_FIELDS, total_steps <= 0: no schedule); counter: int64 [2],
    counter[0] the schedule position, advanced at every call (found_inf nonzero included).
    Spec: `reference.fused_adam_reference`.
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
