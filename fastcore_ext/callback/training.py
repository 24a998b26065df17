"""fastai v2's training-loop callbacks of ``fastai.callback.training``: gradient accumulation,
gradient clipping and BatchNorm statistics frozen with their layers.

    learn.fit_one_cycle(3, 1e-3, cbs=GradientAccumulation(n_acc=64))  # a step per 64 images
    learn.fit_one_cycle(3, 1e-3, cbs=GradientClip(max_norm=1.0))

As fastai 2.8.12's: `GradientAccumulation` counts images (not batches): each batch's gradient
is scaled by its size / `n_acc` and added to the previous ones, and the optimizer steps (and
the gradients are cleared) once `n_acc` images were seen since the last step; the losses shown
and recorded stay each batch's own. The one-cycle schedule still advances at every batch (the
Learner advances it for a batch without a step), so a fit's last steps reach its final lr.
`GradientClip` scales the gradients so that their global norm is at most `max_norm` before
each step (after gradient accumulation, on unscaled gradients under a float16 GradScaler).
`BnFreeze` keeps the running statistics of BatchNorm layers whose parameters are frozen
(``Learner(train_bn=False)`` and `freeze()`) as they are: those layers run in eval mode
during training.
"""

from __future__ import annotations

from numbers import Real
from typing import TYPE_CHECKING

from torch import nn

from fastcore_ext.callback.core import Callback, CancelBatchException
from fastcore_ext.callback.mixed_precision import MixedPrecision
from fastcore_ext.checks import check_int

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = ["BnFreeze", "GradientAccumulation", "GradientClip", "set_bn_eval"]

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def set_bn_eval(m: nn.Module, use_eval: bool = True) -> None:
    """fastai's: every BatchNorm layer under `m` whose parameters are frozen to eval mode
    (its running statistics stay), or back to train mode with use_eval=False. A BatchNorm
    without parameters (affine=False) is left as it is."""
    for layer in m.modules():
        if isinstance(layer, _BN_TYPES):
            first = next(layer.parameters(), None)
            if first is not None and not first.requires_grad:
                layer.train(not use_eval)


class BnFreeze(Callback):
    """fastai's: before each training phase, the BatchNorm layers whose parameters are
    frozen go to eval mode, so their running mean and variance stay those of the body they
    came with (transfer learning with ``Learner(train_bn=False)``)."""

    run_valid = False

    def before_train(self) -> None:
        set_bn_eval(self.learn.model)


def _batch_size(learn: Learner) -> int:
    """The number of items of the current training batch (fastai's ``find_bs(learn.yb)``;
    the Recorder counts validation items so too)."""
    return int(learn.yb[0].shape[0])


class GradientAccumulation(Callback):
    """Accumulate the gradients of several batches before each optimizer step: a step once
    `n_acc` images (counted over batches, as fastai's) were seen since the last one. With
    batch size bs, a step every ceil(n_acc / bs) batches; n_acc <= bs steps at every batch."""

    order = MixedPrecision.order - 4  # before the step that MixedPrecision's scaler takes
    run_valid = False

    def __init__(self, n_acc: int = 32) -> None:
        super().__init__()
        self.n_acc = check_int("n_acc", n_acc, 1)
        self.count = 0

    def before_fit(self) -> None:
        self.count = 0

    def after_loss(self) -> None:
        # out of place: learn.loss (what is recorded and shown) shares loss_grad's storage
        self.learn.loss_grad = self.learn.loss_grad * (_batch_size(self.learn) / self.n_acc)

    def before_step(self) -> None:
        self.count += _batch_size(self.learn)
        if self.count < self.n_acc:
            raise CancelBatchException  # no step, and the gradients stay for the next batch
        self.count = 0

    def __repr__(self) -> str:
        return f"GradientAccumulation(n_acc={self.n_acc})"


class GradientClip(Callback):
    """Clip the global norm of the gradients to `max_norm` before each optimizer step
    (``torch.nn.utils.clip_grad_norm_`` over the model's parameters, `norm_type` its p)."""

    order = MixedPrecision.order - 3  # after GradientAccumulation, before the scaler's step

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        super().__init__()
        for name, value in (("max_norm", max_norm), ("norm_type", norm_type)):
            if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        self.max_norm, self.norm_type = float(max_norm), float(norm_type)

    def before_step(self) -> None:
        learn = self.learn
        mp = learn.mixed_precision
        if mp is not None and mp.scaler is not None:
            mp.scaler.unscale_(learn.opt)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(learn.model.parameters(), self.max_norm, self.norm_type)

    def __repr__(self) -> str:
        return f"GradientClip(max_norm={self.max_norm}, norm_type={self.norm_type})"
