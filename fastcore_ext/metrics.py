"""Classification metrics, computed once over the whole validation set.

Each metric is a function `metric(preds, targs) -> Tensor` (0-dim) with preds
`Tensor[N, C]` (logits or probabilities; only their order matters) and targs int64
`Tensor[N]`. The Recorder gathers the predictions of every validation batch and calls each
metric once on all of them, so a smaller last batch counts for what it holds (averaging
per-batch values would weight it as much as a full batch).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from fastcore_ext.checks import int_or_none, real_or_none, short_repr

__all__ = [
    "F1Score",
    "FBeta",
    "Precision",
    "Recall",
    "accuracy",
    "check_metric",
    "error_rate",
    "metric_name",
    "metric_value",
    "top_k_accuracy",
]


def _check(preds: torch.Tensor, targs: torch.Tensor, axis: int, metric: str) -> None:
    """The checks of every metric's arguments; `metric` is the metric's name in messages."""
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
        raise ValueError(f"{metric} of an empty set is undefined: preds and targs hold no items")


def accuracy(preds: torch.Tensor, targs: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Fraction of items whose highest-scoring class is the target.

    preds: Tensor[N, C]; targs: int Tensor[N]. Returns a 0-dim float32 tensor.
    """
    _check(preds, targs, axis, "accuracy")
    return (preds.argmax(dim=axis) == targs).float().mean()


def error_rate(preds: torch.Tensor, targs: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """1 - accuracy: fraction of items whose highest-scoring class is not the target.

    preds: Tensor[N, C]; targs: int Tensor[N]. Returns a 0-dim float32 tensor.
    """
    _check(preds, targs, axis, "error_rate")
    return 1 - accuracy(preds, targs, axis=axis)


def top_k_accuracy(
    preds: torch.Tensor, targs: torch.Tensor, k: int = 5, axis: int = -1
) -> torch.Tensor:
    """Fraction of items whose target is among the k highest-scoring classes.

    preds: Tensor[N, C] with C >= k; targs: int Tensor[N]. Returns a 0-dim float32 tensor.
    Use `functools.partial(top_k_accuracy, k=3)` to pass another k as a Learner metric.
    """
    _check(preds, targs, axis, "top_k_accuracy")
    number = int_or_none(k)
    if number is None or number < 1:
        raise ValueError(f"k should be a positive int, got {k!r}")
    k = number
    n_classes = preds.shape[axis]
    if k > n_classes:
        raise ValueError(f"k should be at most the number of classes ({n_classes}), got {k}")
    top = preds.topk(k, dim=axis).indices  # (N, k) when axis is the last dimension
    return (top == targs.unsqueeze(axis)).any(dim=axis).float().mean()


_AVERAGES = ("binary", "macro", "micro", "weighted")


class _ClassScore:
    """Precision, recall or F-beta of the predicted classes (argmax over `axis`), as
    scikit-learn's precision_score / recall_score / fbeta_score compute them and fastai v2's
    Precision / Recall / F1Score / FBeta wrap them: average 'binary' (the score of
    `pos_label`; two classes at most), 'macro' (the mean over the classes), 'weighted' (that
    mean weighted by each class's number of targets) or 'micro' (over all items pooled); the
    classes are `labels`, else those present in the targets or the predictions; a score
    whose denominator is 0 counts 0 (scikit-learn's zero_division default)."""

    def __init__(
        self,
        kind: str,
        name: str,
        axis: int = -1,
        labels: list[int] | None = None,
        pos_label: int = 1,
        average: str = "binary",
        beta: float = 1.0,
    ) -> None:
        if average not in _AVERAGES:
            raise ValueError(f"average should be one of {_AVERAGES}, got {average!r}")
        number = real_or_none(beta)
        if number is None or not number > 0:
            raise ValueError(f"beta should be a number > 0, got {beta!r}")
        self.kind, self.__name__ = kind, name
        self.axis, self.labels, self.pos_label = axis, labels, pos_label
        self.average, self.beta = average, number

    def __call__(self, preds: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
        _check(preds, targs, self.axis, self.__name__)
        pred, targ = preds.argmax(dim=self.axis).reshape(-1), targs.reshape(-1)
        present = torch.unique(torch.cat([pred, targ])).tolist()
        if self.average == "binary":
            if len(set(present) - {0, 1, self.pos_label}) or len(present) > 2:
                raise ValueError(
                    f"average='binary' scores one class of two, but the targets and "
                    f"predictions hold {len(present)} classes {present}: pass average='macro', "
                    f"'weighted' or 'micro'"
                )
            classes = [self.pos_label]
        else:
            classes = list(self.labels) if self.labels is not None else present
        c = torch.tensor(classes, device=pred.device).view(-1, 1)
        tp = ((pred == c) & (targ == c)).sum(1).double()
        fp = ((pred == c) & (targ != c)).sum(1).double()
        fn = ((pred != c) & (targ == c)).sum(1).double()
        if self.average == "micro":
            tp, fp, fn = tp.sum(0, keepdim=True), fp.sum(0, keepdim=True), fn.sum(0, keepdim=True)
        score = self._score(tp, fp, fn)
        if self.average == "weighted":
            support = tp + fn
            total = support.sum()
            return (score * support).sum().div(total).float() if total > 0 else score.sum() * 0
        return score.mean().float()

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        if self.kind == "precision":
            return precision
        if self.kind == "recall":
            return recall
        b2 = self.beta**2
        return _ratio((1 + b2) * precision * recall, b2 * precision + recall)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, 0 where den is 0 (float64 tensors of counts or scores >= 0)."""
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), den)


def Precision(  # noqa: N802  (fastai's name for a metric factory)
    axis: int = -1, labels: list[int] | None = None, pos_label: int = 1, average: str = "binary"
) -> _ClassScore:
    """fastai v2's Precision metric (column 'precision_score'); see `_ClassScore`."""
    return _ClassScore("precision", "precision_score", axis, labels, pos_label, average)


def Recall(  # noqa: N802
    axis: int = -1, labels: list[int] | None = None, pos_label: int = 1, average: str = "binary"
) -> _ClassScore:
    """fastai v2's Recall metric (column 'recall_score'); see `_ClassScore`."""
    return _ClassScore("recall", "recall_score", axis, labels, pos_label, average)


def F1Score(  # noqa: N802
    axis: int = -1, labels: list[int] | None = None, pos_label: int = 1, average: str = "binary"
) -> _ClassScore:
    """fastai v2's F1Score metric (column 'f1_score'); see `_ClassScore`."""
    return _ClassScore("fbeta", "f1_score", axis, labels, pos_label, average, 1.0)


def FBeta(  # noqa: N802
    beta: float,
    axis: int = -1,
    labels: list[int] | None = None,
    pos_label: int = 1,
    average: str = "binary",
) -> _ClassScore:
    """fastai v2's FBeta metric (column 'fbeta_score'); see `_ClassScore`."""
    return _ClassScore("fbeta", "fbeta_score", axis, labels, pos_label, average, beta)


_FACTORIES = (Precision, Recall, F1Score, FBeta)


def metric_name(metric: Callable[..., Any]) -> str:
    """The column name of a metric: its `__name__`, or its function's for a partial."""
    if isinstance(metric, partial):
        return metric_name(metric.func)
    name = getattr(metric, "__name__", None)
    return name if name is not None else type(metric).__name__


def check_metric(metric: object) -> None:
    """A TypeError, when the learner is built rather than after the first epoch, for a metric
    that cannot be called as ``metric(preds, targs)``: not callable, a class or one of the
    factories (Precision, Recall, F1Score, FBeta) not called, a function of another
    signature."""
    if not callable(metric):
        raise TypeError(f"metrics should be callables f(preds, targs), got {metric!r}")
    if isinstance(metric, type) or metric in _FACTORIES:
        name = metric.__name__
        hint = f", e.g. {name}(average='macro')" if metric in _FACTORIES else ""
        raise TypeError(f"metrics: {name} makes a metric: pass {name}(){hint}, not {name} itself")
    try:
        signature = inspect.signature(metric)
    except (TypeError, ValueError):  # a builtin without a signature: tried at the first use
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise TypeError(
            f"metrics: {metric_name(metric)}{signature} cannot be called as "
            "metric(preds, targs) (the validation set's outputs and targets): expected a "
            "function of two arguments"
        ) from None


def metric_value(metric: Callable[..., Any], preds: torch.Tensor, targs: torch.Tensor) -> float:
    """``float(metric(preds, targs))``, or a TypeError naming the metric when what it returned
    is not a number (a float, or a tensor of one element)."""
    out = metric(preds, targs)
    try:
        return float(out)
    except (TypeError, ValueError, RuntimeError) as e:
        what = (
            f"a tensor of shape {tuple(out.shape)}"
            if isinstance(out, torch.Tensor)
            else f"{type(out).__name__} {short_repr(out)}"
        )
        raise TypeError(
            f"metrics: {metric_name(metric)} returned {what}, expected a number (a float or a "
            "one-element tensor)"
        ) from e
