"""Classification metrics, computed once over the whole validation set.

Each metric is a function `metric(preds, targs) -> Tensor` (0-dim) with preds
`Tensor[N, C]` (logits or probabilities; only their order matters) and targs int64
`Tensor[N]`. The Recorder gathers the predictions of every validation batch and calls each
metric once on all of them, so a smaller last batch counts for what it holds (averaging
per-batch values would weight it as much as a full batch).
"""

from __future__ import annotations

import torch

__all__ = ["accuracy", "error_rate", "top_k_accuracy"]


def _check(preds: torch.Tensor, targs: torch.Tensor, axis: int) -> None:
    if not isinstance(preds, torch.Tensor):
        raise TypeError(f"preds should be a Tensor, got {type(preds).__name__}")
    if not isinstance(targs, torch.Tensor):
        raise TypeError(f"targs should be a Tensor, got {type(targs).__name__}")
    if preds.dim() < 1:
        raise ValueError("preds should have a class dimension, got a 0-dim tensor")
    if not -preds.dim() <= axis < preds.dim():
        raise ValueError(f"axis should index a dimension of preds {tuple(preds.shape)}, got {axis}")
    a = axis % preds.dim()
    expected = preds.shape[:a] + preds.shape[a + 1 :]
    if targs.shape != expected:
        raise ValueError(
            f"targs should have shape {tuple(expected)} (preds {tuple(preds.shape)} without "
            f"the class dimension {axis}), got {tuple(targs.shape)}"
        )
    if targs.dtype.is_floating_point or targs.dtype.is_complex or targs.dtype == torch.bool:
        raise TypeError(f"targs should hold integer class indices, got dtype {targs.dtype}")
    if targs.numel() == 0:
        raise ValueError("accuracy of an empty set is undefined: preds and targs hold no items")


def accuracy(preds: torch.Tensor, targs: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Fraction of items whose highest-scoring class is the target.

    preds: Tensor[N, C]; targs: int Tensor[N]. Returns a 0-dim float32 tensor.
    """
    _check(preds, targs, axis)
    return (preds.argmax(dim=axis) == targs).float().mean()


def error_rate(preds: torch.Tensor, targs: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """1 - accuracy: fraction of items whose highest-scoring class is not the target.

    preds: Tensor[N, C]; targs: int Tensor[N]. Returns a 0-dim float32 tensor.
    """
    return 1 - accuracy(preds, targs, axis=axis)


def top_k_accuracy(
    preds: torch.Tensor, targs: torch.Tensor, k: int = 5, axis: int = -1
) -> torch.Tensor:
    """Fraction of items whose target is among the k highest-scoring classes.

    preds: Tensor[N, C] with C >= k; targs: int Tensor[N]. Returns a 0-dim float32 tensor.
    Use `functools.partial(top_k_accuracy, k=3)` to pass another k as a Learner metric.
    """
    _check(preds, targs, axis)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k should be a positive int, got {k!r}")
    n_classes = preds.shape[axis]
    if k > n_classes:
        raise ValueError(f"k should be at most the number of classes ({n_classes}), got {k}")
    top = preds.topk(k, dim=axis).indices  # (N, k) when axis is the last dimension
    return (top == targs.unsqueeze(axis)).any(dim=axis).float().mean()
