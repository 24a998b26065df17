"""fastai's loss functions by their names (layer 0: torch only).

`LabelSmoothingCrossEntropy` (fastai v1 and v2), `CrossEntropyLossFlat` and
`LabelSmoothingCrossEntropyFlat` (v2) are torch loss modules with a `reduction` attribute, so
`get_preds(with_loss=True)` and `ClassificationInterpretation` compute one loss per item with
them, as with `nn.CrossEntropyLoss`; each has fastai v2's ``activation(out)`` (softmax over the
classes) and ``decodes(out)`` (the class index).

fastai v2's element-wise losses `MSELossFlat`, `L1LossFlat`, `BCEWithLogitsLossFlat` (with
``activation``: sigmoid, ``decodes``: above ``thresh``) and `BCELossFlat` flatten predictions
and targets to one value per element, targets as floats (fastai's ``floatify``): a model of one
output [B, 1] against targets [B] compares B pairs (the plain torch losses would broadcast them
to [B, B]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastcore_ext.checks import real_or_none

__all__ = [
    "BCELossFlat",
    "BCEWithLogitsLossFlat",
    "CrossEntropyLossFlat",
    "FlatLoss",
    "L1LossFlat",
    "LabelSmoothingCrossEntropy",
    "LabelSmoothingCrossEntropyFlat",
    "MSELossFlat",
    "is_class_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


class _ClassActivation:
    """fastai v2's `activation` / `decodes` of a classification loss."""

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """The probabilities the loss implies: softmax over the last (class) dimension."""
        return F.softmax(out, dim=-1)

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """The predicted class index: argmax over the last (class) dimension."""
        return out.argmax(dim=-1)


class LabelSmoothingCrossEntropy(_ClassActivation, nn.Module):
    """fastai's label-smoothing cross entropy: (1 - eps) * nll(log_softmax) + eps * the mean
    over the classes of -log_softmax, per item, then `reduction` (fastai's formula; without
    weight it equals nn.CrossEntropyLoss(label_smoothing=eps))."""

    def __init__(
        self, eps: float = 0.1, weight: torch.Tensor | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        number = real_or_none(eps)
        if number is None or not 0 <= number <= 1:
            raise ValueError(f"eps should be a number in [0, 1], got {eps!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction should be one of {_REDUCTIONS}, got {reduction!r}")
        self.eps, self.weight, self.reduction = number, weight, reduction

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = output.shape[-1]
        log_preds = F.log_softmax(output, dim=-1)
        smooth = -log_preds.sum(dim=-1)
        if self.reduction == "sum":
            smooth = smooth.sum()
        elif self.reduction == "mean":
            smooth = smooth.mean()
        nll = F.nll_loss(log_preds, target.long(), weight=self.weight, reduction=self.reduction)
        return smooth * self.eps / c + (1 - self.eps) * nll


class CrossEntropyLossFlat(_ClassActivation, nn.CrossEntropyLoss):
    """fastai v2's CrossEntropyLossFlat: nn.CrossEntropyLoss with the class dimension `axis`
    moved last and every other dimension flattened into the items (for [N, C] outputs, the
    plain cross entropy). Other arguments as nn.CrossEntropyLoss's. `func` is the
    nn.CrossEntropyLoss it applies (itself: fastai's idiom ``learn.loss_func.func.weight``)."""

    def __init__(self, *args: object, axis: int = -1, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.axis = axis

    @property
    def func(self) -> nn.CrossEntropyLoss:
        """fastai's BaseLoss.func, the loss it flattens for: this nn.CrossEntropyLoss."""
        return self

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat = input.movedim(self.axis, -1)
        return super().forward(flat.reshape(-1, flat.shape[-1]), target.reshape(-1).long())


class LabelSmoothingCrossEntropyFlat(LabelSmoothingCrossEntropy):
    """fastai v2's LabelSmoothingCrossEntropyFlat: `LabelSmoothingCrossEntropy` with the
    class dimension `axis` moved last and every other dimension flattened into the items."""

    def __init__(
        self,
        eps: float = 0.1,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
        axis: int = -1,
    ) -> None:
        super().__init__(eps, weight, reduction)
        self.axis = axis

    @property
    def func(self) -> LabelSmoothingCrossEntropy:
        """fastai's BaseLoss.func: the LabelSmoothingCrossEntropy it flattens for (itself)."""
        return self

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat = output.movedim(self.axis, -1)
        return super().forward(flat.reshape(-1, flat.shape[-1]), target.reshape(-1))


def is_class_loss(loss_func: object) -> bool:
    """Whether `loss_func` is a classifier's loss over class indices (cross-entropy, NLL,
    label smoothing; module or function): its model gives one output per class."""
    return isinstance(
        loss_func, (nn.CrossEntropyLoss, nn.NLLLoss, LabelSmoothingCrossEntropy)
    ) or any(loss_func is f for f in (F.cross_entropy, F.nll_loss))


class FlatLoss:
    """fastai's BaseLoss(..., flatten=True, floatify=True, is_2d=False): predictions with
    `axis` moved last and both flattened to one value per element, targets as float."""

    axis: int

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat = input.movedim(self.axis, -1).reshape(-1)
        return super().forward(flat, target.reshape(-1).to(flat.dtype))  # type: ignore[misc]


class MSELossFlat(FlatLoss, nn.MSELoss):
    """fastai v2's MSELossFlat: nn.MSELoss on flattened predictions and float targets."""

    def __init__(self, *args: object, axis: int = -1, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.axis = axis


class L1LossFlat(FlatLoss, nn.L1Loss):
    """fastai v2's L1LossFlat: nn.L1Loss on flattened predictions and float targets."""

    def __init__(self, *args: object, axis: int = -1, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.axis = axis


class BCELossFlat(FlatLoss, nn.BCELoss):
    """fastai v2's BCELossFlat: nn.BCELoss on flattened probabilities and float targets."""

    def __init__(self, *args: object, axis: int = -1, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.axis = axis


class BCEWithLogitsLossFlat(FlatLoss, nn.BCEWithLogitsLoss):
    """fastai v2's BCEWithLogitsLossFlat: nn.BCEWithLogitsLoss on flattened logits and float
    targets; ``activation`` the sigmoid, ``decodes`` whether it is above `thresh`."""

    def __init__(
        self, *args: object, axis: int = -1, thresh: float = 0.5, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)
        number = real_or_none(thresh)
        if number is None or not 0 <= number <= 1:
            raise ValueError(f"thresh should be a probability in [0, 1], got {thresh!r}")
        self.axis, self.thresh = axis, number

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """The probabilities: the sigmoid of the logits."""
        return torch.sigmoid(out)

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """Whether each probability is above `thresh` (fastai's: out > thresh)."""
        return out > self.thresh
