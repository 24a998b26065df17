"""Classification metrics, computed once over the whole validation set.

Each metric is a function `metric(preds, targs) -> Tensor` (0-dim) with preds
`Tensor[N, C]` (logits or probabilities; only their order matters) and targs int64
`Tensor[N]`. The Recorder gathers the predictions of every validation batch and calls each
metric once on all of them, so a smaller last batch counts for what it holds (averaging
per-batch values would weight it as much as a full batch).

Beyond accuracy: fastai v2's metric factories, each computing in torch what scikit-learn's
function of the same column name computes (fastai wraps scikit-learn; this library does not
depend on it): Precision, Recall, F1Score, FBeta, Jaccard (of the predicted classes),
MatthewsCorrCoef, BalancedAccuracy, CohenKappa (of the confusion matrix) and RocAuc,
RocAucBinary (of the softmax probabilities, ties counted as scikit-learn's trapezoid does).

fastai v2's metric classes for metrics of your own: `Metric` (reset / accumulate(learn) after
each validation batch / value), `AvgMetric(func)` (func per batch, averaged over items, as
fastai wraps a plain function), `AccumMetric(func, ...)` (predictions gathered, func on all of
them at the end) and `skm_to_fastai(sklearn_func)`. These are computed on each process's
batches (fastai's too); the functions above see every process's predictions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from itertools import combinations
from typing import Any

import torch

from fastcore_ext.checks import check_bool, int_or_none, real_or_none, short_repr
from fastcore_ext.foundation import class2attr
from fastcore_ext.warn import warn_user

__all__ = [
    "AccumMetric",
    "ActivationType",
    "AvgMetric",
    "BalancedAccuracy",
    "CohenKappa",
    "F1Score",
    "FBeta",
    "Jaccard",
    "MatthewsCorrCoef",
    "Metric",
    "Precision",
    "Recall",
    "RocAuc",
    "RocAucBinary",
    "accuracy",
    "accuracy_multi",
    "check_metric",
    "error_rate",
    "metric_name",
    "metric_value",
    "skm_to_fastai",
    "top_k_accuracy",
]


class Metric:
    """fastai v2's base class of a metric computed over a validation pass: `reset()` before
    it, `accumulate(learn)` after each batch (``learn.pred``, ``learn.yb``, ``learn.y``,
    ``learn.loss`` hold the batch), `value` after it (a number, or a one-element tensor);
    `name` is the table's column, as fastai's: the class name in snake case without a final
    "Metric" (ConfusionMetric: 'confusion'). Subclass it and pass an instance in
    ``metrics=``."""

    def reset(self) -> None:
        """Before a validation pass."""

    def accumulate(self, learn: Any) -> None:
        """After each validation batch."""

    @property
    def value(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} should define the property value")

    @property
    def name(self) -> str:
        return class2attr(self, "Metric")


class AvgMetric(Metric):
    """fastai v2's AvgMetric: ``func(pred, *yb)`` of each batch, averaged weighted by the
    batch's items (how fastai computes a plain function given as a metric; this library calls
    a plain function once on the whole set instead: the same for a mean, not for a median)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        if not callable(func):
            raise TypeError(f"func should be a function f(preds, targs), got {func!r}")
        self.func = func
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def accumulate(self, learn: Any) -> None:
        bs = len(learn.yb[0])
        self.total += float(self.func(learn.pred, *learn.yb)) * bs
        self.count += bs

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def name(self) -> str:
        return metric_name(self.func)


class ActivationType:
    """fastai's names of the activation an AccumMetric applies to the predictions."""

    No = "no"
    Sigmoid = "sigmoid"
    Softmax = "softmax"
    BinarySoftmax = "binarysoftmax"


class AccumMetric(Metric):
    """fastai v2's AccumMetric: the predictions and targets of every batch gathered, then
    ``func(preds, targs)`` once (``func(targs, preds)`` with invert_arg, scikit-learn's
    order): `activation` ('softmax', 'sigmoid', 'binarysoftmax' or 'no'), then the argmax
    over `dim_argmax`, or ``>= thresh``; `flatten` flattens both, `to_np` passes numpy
    arrays; other keyword arguments go to func. ``m(preds, targs)`` computes it on those
    alone (preds as func takes them: no activation, argmax or threshold), as fastai's;
    `name` can be set."""

    def __init__(
        self,
        func: Callable[..., Any],
        dim_argmax: int | None = None,
        activation: str = ActivationType.No,
        thresh: float | None = None,
        to_np: bool = False,
        invert_arg: bool = False,
        flatten: bool = True,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not callable(func):
            raise TypeError(f"func should be a function f(preds, targs), got {func!r}")
        acts = (ActivationType.No, ActivationType.Sigmoid, ActivationType.Softmax,
                ActivationType.BinarySoftmax)  # fmt: skip
        if activation not in acts:
            raise ValueError(f"activation should be one of {acts}, got {activation!r}")
        self.func, self.dim_argmax, self.activation, self.thresh = (
            func, dim_argmax, activation, thresh
        )  # fmt: skip
        self.to_np, self.invert_arg, self.flatten = to_np, invert_arg, flatten
        self.kwargs, self._name = kwargs, name
        self.reset()

    def reset(self) -> None:
        self.preds: list[torch.Tensor] = []
        self.targs: list[torch.Tensor] = []

    def __call__(self, preds: torch.Tensor, targs: torch.Tensor) -> Any:
        self.reset()
        self.preds.append(preds.detach().cpu())
        self.targs.append(targs.detach().cpu())
        return self.value

    def accumulate(self, learn: Any) -> None:
        pred = learn.pred.detach().float()
        if self.activation in (ActivationType.Softmax, ActivationType.BinarySoftmax):
            pred = torch.softmax(pred, dim=self.dim_argmax if self.dim_argmax is not None else -1)
            if self.activation == ActivationType.BinarySoftmax:
                pred = pred[:, -1]
        elif self.activation == ActivationType.Sigmoid:
            pred = torch.sigmoid(pred)
        elif self.dim_argmax is not None:
            pred = pred.argmax(dim=self.dim_argmax)
        if self.thresh is not None:
            pred = pred >= self.thresh
        self.preds.append(pred.cpu())
        self.targs.append(learn.yb[0].detach().cpu())

    @property
    def value(self) -> Any:
        if not self.preds:
            return None
        preds, targs = torch.cat(self.preds), torch.cat(self.targs)
        if self.flatten:
            preds, targs = preds.reshape(-1), targs.reshape(-1)
        if self.to_np:
            preds, targs = preds.numpy(), targs.numpy()
        args = (targs, preds) if self.invert_arg else (preds, targs)
        return self.func(*args, **self.kwargs)

    @property
    def name(self) -> str:
        return self._name if self._name is not None else metric_name(self.func)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value


def skm_to_fastai(
    func: Callable[..., Any],
    is_class: bool = True,
    thresh: float | None = None,
    axis: int = -1,
    activation: str | None = None,
    **kwargs: Any,
) -> AccumMetric:
    """fastai v2's: a scikit-learn metric function (``sklearn.metrics.f1_score``, ...) as an
    AccumMetric: for a classification the predicted class (argmax over `axis`, or sigmoid
    ``>= thresh``), numpy arrays, targets first; kwargs go to func."""
    if activation is None:
        sigmoid = is_class and thresh is not None
        activation = ActivationType.Sigmoid if sigmoid else ActivationType.No
    return AccumMetric(
        func, dim_argmax=axis if is_class and thresh is None else None, activation=activation,
        thresh=thresh, to_np=True, invert_arg=True, **kwargs,
    )  # fmt: skip


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
        classes = (
            " (preds has the targets' shape: predicted classes? This metric takes the model's "
            "scores [N, C] and their argmax itself; fastai's F1Score etc. called directly take "
            "the classes)"
            if preds.shape == targs.shape
            else ""
        )
        raise ValueError(
            f"targs should have shape {tuple(expected)} (preds {tuple(preds.shape)} without "
            f"the class dimension {axis}), got {tuple(targs.shape)}{classes}"
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


def accuracy_multi(
    inp: torch.Tensor, targ: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True
) -> torch.Tensor:
    """fastai's accuracy_multi, for multi-label outputs of your own data (a model with one
    output per label under BCEWithLogitsLossFlat): the fraction of (item, label) pairs whose
    prediction, `inp.sigmoid() > thresh` (without the sigmoid when sigmoid=False), equals
    the 0/1 target. inp and targ hold the same number of elements (compared flattened).
    Returns a 0-dim float32 tensor; `partial(accuracy_multi, thresh=0.2)` as a metric."""
    if not isinstance(inp, torch.Tensor) or not isinstance(targ, torch.Tensor):
        raise TypeError(
            f"accuracy_multi: inp and targ should be Tensors, got {type(inp).__name__} and "
            f"{type(targ).__name__}"
        )
    if inp.numel() != targ.numel():
        raise ValueError(
            f"accuracy_multi: inp {tuple(inp.shape)} and targ {tuple(targ.shape)} should hold "
            "one prediction per target (0/1 per label, as BCEWithLogitsLossFlat takes)"
        )
    inp, targ = inp.reshape(-1), targ.reshape(-1)
    if sigmoid:
        inp = inp.float().sigmoid()
    return ((inp > thresh) == targ.bool()).float().mean()


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
    """Precision, recall, F-beta or Jaccard index of the predicted classes (argmax over
    `axis`), as scikit-learn's precision_score / recall_score / fbeta_score / jaccard_score
    compute them and fastai v2's Precision / Recall / F1Score / FBeta / Jaccard wrap them
    (Jaccard: tp / (tp + fp + fn)): average 'binary' (the score of
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
        positive = int_or_none(pos_label)
        if positive is None:
            raise TypeError(f"pos_label should be an int (a class index), got {pos_label!r}")
        self.kind, self.__name__ = kind, name
        self.axis, self.labels = _check_axis(axis), _check_labels(labels)
        self.pos_label, self.average, self.beta = positive, average, number

    def check_classes(self, c: int) -> None:
        """ValueError, when the learner is built (not after an epoch), for average='binary'
        on data of more than 2 classes."""
        if self.average == "binary" and c > 2:
            raise ValueError(
                f"metrics: {self.__name__} with average='binary' scores one class of two, and "
                f"the data has {c} classes: pass average='macro', 'weighted' or 'micro'"
            )
        if self.average == "binary" and not 0 <= self.pos_label < c:
            raise ValueError(
                f"metrics: {self.__name__}'s pos_label should be a class index of the data, "
                f"in [0, {c}), got {self.pos_label}"
            )

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
            if len(present) == 2 and self.pos_label not in present:  # sklearn's rule
                raise ValueError(
                    f"pos_label={self.pos_label} is not one of the classes of the targets and "
                    f"predictions, {present}: its score would be 0 whatever the model does"
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
        if self.kind == "jaccard":
            return _ratio(tp, tp + fp + fn)
        b2 = self.beta**2
        return _ratio((1 + b2) * precision * recall, b2 * precision + recall)


def _check_axis(axis: object) -> int:
    """The class dimension `axis` as a Python int (its range is checked against preds)."""
    number = int_or_none(axis)
    if number is None:
        raise TypeError(f"axis should be an int (the class dimension of preds), got {axis!r}")
    return number


def _check_labels(labels: object) -> list[int] | None:
    """None, or `labels` as a list of distinct ints (class indices), at least one."""
    if labels is None:
        return None
    try:
        out = None if isinstance(labels, (str, bytes)) else [int_or_none(x) for x in labels]
    except TypeError:  # not iterable
        out = None
    if out is None or None in out:
        raise TypeError(
            f"labels should be None or a list of int class indices, got {short_repr(labels)}"
        )
    if not out or len(set(out)) != len(out):
        raise ValueError(f"labels should hold at least one class, each once, got {out}")
    return out


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


def Jaccard(  # noqa: N802
    axis: int = -1, labels: list[int] | None = None, pos_label: int = 1, average: str = "binary"
) -> _ClassScore:
    """fastai v2's Jaccard metric (column 'jaccard_score'): tp / (tp + fp + fn) of the predicted
    classes; see `_ClassScore`."""
    return _ClassScore("jaccard", "jaccard_score", axis, labels, pos_label, average)


def _confusion(targ: torch.Tensor, pred: torch.Tensor, labels: list[int] | None) -> torch.Tensor:
    """Float64 `Tensor[K, K]` of counts, rows the targets and columns the predictions, as
    scikit-learn's confusion_matrix: the classes are `labels` in their order (items whose
    target or prediction is not among them are left out), else those present in targ or pred,
    sorted. targ, pred: int `Tensor[N]`."""
    if labels is None:
        classes, index = torch.unique(torch.cat([targ, pred]), return_inverse=True)
        k = len(classes)
        t, p = index[: len(targ)], index[len(targ) :]
    else:
        k = len(labels)
        lab = torch.tensor(labels, device=targ.device)
        t_match, p_match = targ.unsqueeze(1) == lab, pred.unsqueeze(1) == lab  # (N, K)
        keep = t_match.any(1) & p_match.any(1)
        t, p = t_match[keep].float().argmax(1), p_match[keep].float().argmax(1)
    return torch.bincount(t * k + p, minlength=k * k).view(k, k).double()


def _matthews(cm: torch.Tensor) -> torch.Tensor:
    """scikit-learn's matthews_corrcoef of a confusion matrix (its multi-class form, which is
    the phi coefficient for two classes); 0.0 where it is undefined (a constant prediction or
    a single target class), as scikit-learn returns."""
    t_sum, p_sum, n = cm.sum(1), cm.sum(0), cm.sum()
    cov_tp = cm.trace() * n - t_sum @ p_sum
    cov_pp_tt = (n * n - p_sum @ p_sum) * (n * n - t_sum @ t_sum)
    return torch.where(cov_pp_tt > 0, cov_tp / cov_pp_tt.clamp(min=1).sqrt(), 0.0)


def _balanced_accuracy(cm: torch.Tensor, adjusted: bool) -> torch.Tensor:
    """scikit-learn's balanced_accuracy_score: the mean recall of the classes present among
    the targets (a class only predicted counts in none); adjusted, rescaled so that chance
    scores 0 and a perfect prediction 1 (undefined, nan or -inf, with one target class)."""
    support = cm.sum(1)
    present = support > 0
    score = (cm.diagonal()[present] / support[present]).mean()
    if adjusted:
        chance = 1 / int(present.sum())
        score = (score - chance) / (1 - chance)
    return score


def _kappa(cm: torch.Tensor, weights: str | None) -> torch.Tensor:
    """scikit-learn's cohen_kappa_score: 1 - sum(w * observed) / sum(w * expected by chance),
    w 1 off the diagonal (weights None), |i - j| ('linear') or (i - j)^2 ('quadratic') for the
    classes' positions i, j in the confusion matrix; nan with a warning where undefined (one
    class in all), as scikit-learn's default returns."""
    k, total = cm.shape[0], cm.sum()
    i = torch.arange(k, device=cm.device, dtype=torch.float64)
    distance = (i.unsqueeze(1) - i).abs()
    w = {None: (distance > 0).double(), "linear": distance, "quadratic": distance**2}[weights]
    expected = torch.outer(cm.sum(1), cm.sum(0)) / total.clamp(min=1)
    den = (w * expected).sum()
    if den == 0:
        warn_user(
            f"cohen_kappa_score (CohenKappa) is undefined with fewer than two classes among the "
            f"targets and predictions counted ({int(total)} items): nan, as scikit-learn gives"
        )
        return torch.full_like(den, torch.nan)
    return 1 - (w * cm).sum() / den


class _ConfusionScore:
    """A score of the confusion matrix between the targets and the predicted classes (argmax
    over `axis`): `score(Tensor[K, K] float64) -> 0-dim tensor`, `labels` as in
    `_confusion`. Called as metric(preds[N, C], targs[N]) -> 0-dim float32 tensor."""

    def __init__(
        self,
        name: str,
        score: Callable[[torch.Tensor], torch.Tensor],
        axis: int = -1,
        labels: list[int] | None = None,
    ) -> None:
        self.__name__, self.score = name, score
        self.axis, self.labels = _check_axis(axis), _check_labels(labels)

    def __call__(self, preds: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
        _check(preds, targs, self.axis, self.__name__)
        pred, targ = preds.argmax(dim=self.axis).reshape(-1), targs.reshape(-1)
        if self.labels is not None:
            known = torch.tensor(self.labels, device=targ.device)
            if not bool(torch.isin(targ, known).any()):
                raise ValueError(
                    f"{self.__name__}: at least one of labels {self.labels} should be among "
                    f"the targets, which hold classes {torch.unique(targ).tolist()}"
                )
        return self.score(_confusion(targ, pred, self.labels)).float()


def MatthewsCorrCoef(axis: int = -1) -> _ConfusionScore:  # noqa: N802
    """fastai v2's MatthewsCorrCoef metric (column 'matthews_corrcoef'): scikit-learn's
    matthews_corrcoef of the predicted classes, in [-1, 1]; 0.0 for a constant prediction."""
    return _ConfusionScore("matthews_corrcoef", _matthews, axis)


def BalancedAccuracy(axis: int = -1, adjusted: bool = False) -> _ConfusionScore:  # noqa: N802
    """fastai v2's BalancedAccuracy metric (column 'balanced_accuracy_score'): the mean over
    the target classes of their recall; `adjusted=True` maps chance to 0."""
    adjusted = check_bool("adjusted", adjusted)
    return _ConfusionScore(
        "balanced_accuracy_score", partial(_balanced_accuracy, adjusted=adjusted), axis
    )


_KAPPA_WEIGHTS = (None, "linear", "quadratic")


def CohenKappa(  # noqa: N802
    axis: int = -1, labels: list[int] | None = None, weights: str | None = None
) -> _ConfusionScore:
    """fastai v2's CohenKappa metric (column 'cohen_kappa_score'): scikit-learn's
    cohen_kappa_score between the targets and the predicted classes, unweighted or with
    'linear' / 'quadratic' weights (quadratic: the usual score of ordered classes)."""
    if weights not in _KAPPA_WEIGHTS:
        raise ValueError(f"weights should be None, 'linear' or 'quadratic', got {weights!r}")
    return _ConfusionScore("cohen_kappa_score", partial(_kappa, weights=weights), axis, labels)


def _auc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """The ROC AUC of each column: scores `Tensor[M, K]`, positive bool `Tensor[M, K]` (each
    column holding both kinds) -> float64 `Tensor[K]`. The Mann-Whitney statistic with tied
    scores at their average rank, which equals the trapezoid area under scikit-learn's
    roc_curve (a tie between a positive and a negative counts one half)."""
    m, k = scores.shape
    ordered, order = scores.sort(dim=0)
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[1:] = ordered[1:] != ordered[:-1]
    # the tied groups of column j get the ids j * m, j * m + 1, ... in ascending order
    group = new.cumsum(0) - 1 + torch.arange(k, device=scores.device) * m  # (M, K)
    count = torch.bincount(group.reshape(-1), minlength=k * m).view(k, m).double()
    last = count.cumsum(1)  # 1-based rank of each group's last item within its column
    mean_rank = (last - (count - 1) / 2).view(-1)[group]  # (M, K), in sorted order
    pos = positive.gather(0, order)
    n_pos = pos.sum(0).double()
    n_neg = m - n_pos
    return ((mean_rank * pos).sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


_ROC_AVERAGES = {"ovr": ("macro", "weighted", "micro"), "ovo": ("macro", "weighted")}
_BINARY_ROC_AVERAGES = ("macro", "micro", "samples", "weighted", None)


class _RocAuc:
    """The area under the ROC curve of the softmax probabilities of preds along `axis`, as
    scikit-learn's roc_auc_score computes it and fastai v2's RocAuc (multi_class 'ovr': each
    class against the rest, averaged 'macro', 'weighted' by the class's number of targets or
    'micro' over all (item, class) pairs; 'ovo': Hand & Till's mean over pairs of classes,
    'weighted' by the pair's share of the items) and RocAucBinary (multi_class None: the
    probability of class 1 of 2) wrap it. Softmax in float32 (float64 for float64 preds), as
    fastai's probabilities, so that ties are those scikit-learn sees there."""

    __name__ = "roc_auc_score"

    def __init__(self, factory: str, axis: int, average: str | None, multi_class: str | None):
        self.factory, self.axis = factory, _check_axis(axis)
        if multi_class is not None and multi_class not in ("ovr", "ovo"):
            raise ValueError(f"multi_class should be 'ovr' or 'ovo', got {multi_class!r}")
        choices = _ROC_AVERAGES[multi_class] if multi_class else _BINARY_ROC_AVERAGES
        if average not in choices:
            named = [repr(c) for c in choices]
            called = f"{factory}(multi_class={multi_class!r})" if multi_class else f"{factory}()"
            raise ValueError(
                f"average should be {', '.join(named[:-1])} or {named[-1]} for {called}, "
                f"got {average!r}"
            )
        self.average, self.multi_class = average, multi_class

    def _takes(self, n_classes: int) -> bool:
        """Whether this score takes `n_classes` classes (RocAucBinary: 2; RocAuc: 3 or
        more)."""
        return n_classes == 2 if self.multi_class is None else n_classes >= 3

    def check_classes(self, c: int) -> None:
        """ValueError, when the learner is built, for data whose number of classes this
        score does not take (`_takes`)."""
        if self._takes(c):
            return
        if self.multi_class is None:
            raise ValueError(
                f"metrics: RocAucBinary scores the probability of class 1 of 2, and the data "
                f"has {c} classes: pass RocAuc()"
            )
        raise ValueError(
            f"metrics: RocAuc is the ROC AUC of 3 classes or more, and the data has {c}: "
            f"pass RocAucBinary()"
        )

    def __call__(self, preds: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
        _check(preds, targs, self.axis, self.__name__)
        if not preds.dtype.is_floating_point:
            raise TypeError(
                f"{self.factory}: preds should be float scores (logits or probabilities), "
                f"got dtype {preds.dtype}"
            )
        dtype = torch.float64 if preds.dtype == torch.float64 else torch.float32
        probs = preds.softmax(dim=self.axis, dtype=dtype).movedim(self.axis, -1)
        probs = probs.reshape(-1, probs.shape[-1])  # (N, C)
        targ = targs.reshape(-1).long()
        n_classes = probs.shape[1]
        if not self._takes(n_classes):
            if self.multi_class is None:
                raise ValueError(
                    f"RocAucBinary scores the probability of class 1 of 2: preds should have 2 "
                    f"classes along axis {self.axis}, got {n_classes} (RocAuc() for more)"
                )
            raise ValueError(
                f"RocAuc is the ROC AUC of 3 classes or more, one against the rest or pairs: "
                f"preds have {n_classes} along axis {self.axis} (RocAucBinary() for two "
                f"classes, as fastai, whose RocAuc fails on them)"
            )
        low, high = int(targ.min()), int(targ.max())
        if low < 0 or high >= n_classes:
            raise ValueError(
                f"{self.factory}: targs should be class indices in [0, {n_classes}) (the "
                f"columns of preds), got values from {low} to {high}"
            )
        if not bool(torch.isfinite(probs).all()):
            raise ValueError(
                f"{self.factory}: preds hold NaN or infinite values, whose probabilities and "
                f"ROC AUC are undefined"
            )
        support = torch.bincount(targ, minlength=n_classes)
        if bool((support == 0).any()):  # nan, not an error: a fit goes on (its column nan)
            found = (support > 0).nonzero().flatten().tolist()
            warn_user(
                f"{self.factory}: ROC AUC is undefined unless every class of preds is among "
                f"the targets, but the {len(targ)} targets hold only class "
                f"{', '.join(map(str, found))} of the {n_classes}: nan (scikit-learn gives nan "
                f"for two classes, an error for more)"
            )
            return torch.tensor(torch.nan, device=probs.device)
        return self._score(probs, targ, support).float()

    def _score(
        self, probs: torch.Tensor, targ: torch.Tensor, support: torch.Tensor
    ) -> torch.Tensor:
        if self.multi_class is None:
            return _auc(probs[:, 1:], (targ == 1).unsqueeze(1))[0]
        onehot = torch.nn.functional.one_hot(targ, probs.shape[1]).bool()  # (N, C)
        if self.multi_class == "ovr":
            if self.average == "micro":
                return _auc(probs.reshape(-1, 1), onehot.reshape(-1, 1))[0]
            per_class = _auc(probs, onehot)
            if self.average == "weighted":
                return (per_class * support).sum() / support.sum()
            return per_class.mean()
        pairs, shares = [], []
        for a, b in combinations(range(probs.shape[1]), 2):
            rows = onehot[:, a] | onehot[:, b]
            pairs.append(_auc(probs[rows][:, [a, b]], onehot[rows][:, [a, b]]).mean())
            shares.append(rows.double().mean())
        pair, share = torch.stack(pairs), torch.stack(shares)
        if self.average == "weighted":
            return (pair * share).sum() / share.sum()
        return pair.mean()


def RocAuc(  # noqa: N802
    axis: int = -1, average: str = "macro", multi_class: str = "ovr"
) -> _RocAuc:
    """fastai v2's RocAuc metric (column 'roc_auc_score'): the ROC AUC of the softmax
    probabilities of 3 classes or more, one-vs-rest ('ovr') or one-vs-one ('ovo'); every class
    must be among the targets. See `_RocAuc`."""
    return _RocAuc("RocAuc", axis, average, multi_class)


def RocAucBinary(axis: int = -1, average: str | None = "macro") -> _RocAuc:  # noqa: N802
    """fastai v2's RocAucBinary metric (column 'roc_auc_score'): the ROC AUC of the softmax
    probability of class 1 of 2 (both classes must be among the targets). See `_RocAuc`."""
    return _RocAuc("RocAucBinary", axis, average, None)


# The metric factories, each with an example of its arguments, for the message when one is
# passed uncalled (metrics=[Precision]).
_FACTORIES = (
    (Precision, "average='macro'"),
    (Recall, "average='macro'"),
    (F1Score, "average='macro'"),
    (FBeta, "2, average='macro'"),
    (Jaccard, "average='macro'"),
    (MatthewsCorrCoef, ""),
    (BalancedAccuracy, "adjusted=True"),
    (CohenKappa, "weights='quadratic'"),
    (RocAuc, "multi_class='ovo'"),
    (RocAucBinary, ""),
)


def metric_name(metric: Callable[..., Any]) -> str:
    """The column name of a metric: its `__name__`, its function's for a partial, a Metric's
    `name`."""
    if isinstance(metric, Metric):
        return metric.name
    if isinstance(metric, partial):
        return metric_name(metric.func)
    name = getattr(metric, "__name__", None)
    return name if name is not None else type(metric).__name__


def check_metric(metric: object, n_classes: int | None = None) -> None:
    """A TypeError, when the learner is built rather than after the first epoch, for a metric
    that cannot be called as ``metric(preds, targs)``: not callable, a class or one of the
    factories (Precision, RocAuc, ...) not called, a function of another signature; and a
    ValueError for a score that cannot take `n_classes` (when known) classes (Precision()'s
    average='binary' on 10 classes)."""
    if isinstance(metric, Metric):
        return
    if isinstance(metric, type) and issubclass(metric, Metric):
        raise TypeError(
            f"metrics: {metric.__name__} is a Metric class: pass an instance, "
            f"{metric.__name__}(...)"
        )
    if not callable(metric):
        raise TypeError(f"metrics should be callables f(preds, targs), got {metric!r}")
    example = next((args for factory, args in _FACTORIES if factory is metric), None)
    if isinstance(metric, type) or example is not None:
        name = metric.__name__
        hint = f", e.g. {name}({example})" if example else ""
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
    check_classes = getattr(metric, "check_classes", None)
    if n_classes is not None and check_classes is not None:
        check_classes(int(n_classes))


def metric_value(
    metric: Callable[..., Any], preds: torch.Tensor | None, targs: torch.Tensor | None
) -> float | None:
    """``float(metric(preds, targs))`` (a `Metric`'s `value`: it accumulated the batches
    itself), or a TypeError naming the metric when what it returned is not a number (a float,
    or a tensor of one element)."""
    out = metric.value if isinstance(metric, Metric) else metric(preds, targs)
    if out is None and isinstance(metric, Metric):
        return None  # no batch accumulated
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
