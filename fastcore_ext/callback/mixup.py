"""MixUp and CutMix: fastai v2's mixing augmentations (fastai/callback/mixup.py), as callbacks.

During training each batch is mixed with a shuffled copy of itself: MixUp blends whole images
(`lerp(x[perm], x, lam)`, one lam per item, lam >= 0.5 weighting the original), CutMix pastes
a random box of the shuffled images into the originals (lam = the share of the image left
uncovered). With class-index targets (this library's: int64) the loss is mixed with the same
weights, `lerp(loss(pred, y[perm]), loss(pred, y), lam)` per item, then reduced as the loss
function reduces; with float targets (one-hot or soft labels) the targets are mixed instead
and the loss function sees them. Validation sees the plain batches, the plain loss and the
plain targets, so the metrics are those of the unmixed data.

lam, the permutation and CutMix's box are drawn on the CPU from torch's global generator
(`set_seed` seeds it, as fastai's draws do), then moved to the batch's device: a seeded fit
repeats, and a checkpoint's RNG state resumes the same draws. The draws are fastai's, in its
order: on a fixed batch after torch.manual_seed(5), fastai 2.8.12's MixUp and CutMix
before_batch (same torch, 2.14.1) gave bit-identical mixed inputs, lam and shuffled targets.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial

import torch
from torch.distributions.beta import Beta

from fastcore_ext.callback.core import Callback
from fastcore_ext.checks import real_or_none

__all__ = ["MixHandler", "MixUp", "CutMix", "reduce_loss"]


def reduce_loss(loss: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """`loss` (one value per item) reduced as `reduction` says: 'mean', 'sum' or 'none'."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction should be 'mean', 'sum' or 'none', got {reduction!r}")


def _per_item(lf: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`lf` giving one loss per item: a copy with reduction='none' for a loss module with a
    `reduction` attribute, else lf called with reduction='none' (fastai's NoneReduce)."""
    if isinstance(getattr(lf, "reduction", None), str):
        per_item = copy.copy(lf)
        per_item.reduction = "none"
        return per_item
    return partial(lf, reduction="none")


class MixHandler(Callback):
    """The part MixUp and CutMix share: the Beta(alpha, alpha) distribution of lam, and the
    mixed loss that stands in for the learner's loss function during training (put back
    after training, also when the fit was cancelled or interrupted)."""

    run_valid = False

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        number = real_or_none(alpha)
        if number is None or not (math.isfinite(number) and number > 0):
            raise ValueError(f"alpha should be a finite number > 0, got {alpha!r}")
        self.alpha = number
        self.distrib = Beta(torch.tensor(number), torch.tensor(number))
        self.lam: torch.Tensor | None = None  # the current batch's weights of the originals
        self.yb1: tuple[torch.Tensor, ...] | None = None  # the shuffled targets
        self.stack_y = True  # the current batch's targets are class indices: mix the loss
        self._old_lf: Callable[..., torch.Tensor] | None = None
        self._per_item_lf: Callable[..., torch.Tensor] | None = None  # _per_item(_old_lf)

    def before_fit(self) -> None:
        others = [cb for cb in self.learn.cbs if isinstance(cb, MixHandler) and cb is not self]
        if others:
            names = sorted(type(cb).__name__ for cb in [self, *others])
            raise ValueError(
                f"cbs: one mixing callback at a time, got {names} attached together (each "
                f"would mix the batches the other mixed); remove one with learn.remove_cb"
            )

    def before_train(self) -> None:
        self._old_lf, self.learn.loss_func = self.learn.loss_func, self.lf
        self._per_item_lf = _per_item(self._old_lf)

    def after_train(self) -> None:
        if self._old_lf is not None:
            self.learn.loss_func, self._old_lf = self._old_lf, None
            self._per_item_lf = None

    def after_fit(self) -> None:
        self.after_train()  # a fit cancelled or interrupted in training skipped after_train

    def _mix_targets(self, y: torch.Tensor, y1: torch.Tensor, lam: torch.Tensor) -> None:
        """Class indices: keep them (the loss is mixed); float targets: learn.yb becomes
        lerp(y1, y, lam), lam broadcast over the target's trailing dimensions."""
        self.yb1 = (y1,)
        self.stack_y = not y.is_floating_point()
        if not self.stack_y:
            weight = lam.to(y.dtype)
            if weight.dim():  # MixUp's lam, one per item
                weight = weight.reshape(-1, *[1] * (y.dim() - 1))
            self.learn.yb = (torch.lerp(y1, y, weight),)

    def lf(self, pred: torch.Tensor, *yb: torch.Tensor) -> torch.Tensor:
        """The loss during training: the original loss of the mixed prediction against both
        targets, lerp-ed per item with lam and reduced as the original reduces (class
        indices); the original loss on the mixed targets (float targets)."""
        old = self._old_lf
        if not self.training or not self.stack_y:
            return old(pred, *yb)
        per_item = self._per_item_lf
        loss = torch.lerp(per_item(pred, *self.yb1), per_item(pred, *yb), self.lam)
        return reduce_loss(loss, getattr(old, "reduction", "mean"))


class MixUp(MixHandler):
    """fastai v2's MixUp (Zhang et al., https://arxiv.org/abs/1710.09412): each training
    image becomes lerp(x[perm], x, lam), lam = max(l, 1 - l) for l ~ Beta(alpha, alpha),
    one per item; the loss is mixed with the same lam (see the module's docstring).
    `learn = vision_learner(dls, resnet18, cbs=MixUp())`."""

    def __init__(self, alpha: float = 0.4) -> None:
        super().__init__(alpha)

    def before_batch(self) -> None:
        (x,), (y,) = self.learn.xb, self.learn.yb
        bs = y.size(0)
        lam = self.distrib.sample((bs,))
        lam = torch.stack([lam, 1 - lam], 1).max(1)[0].to(x.device)
        perm = torch.randperm(bs).to(x.device)
        self.lam = lam
        weight = lam.to(x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        self.learn.xb = (torch.lerp(x[perm], x, weight),)
        self._mix_targets(y, y[perm], lam)


class CutMix(MixHandler):
    """fastai v2's CutMix (Yun et al., https://arxiv.org/abs/1905.04899): one lam ~
    Beta(alpha, alpha) per batch sizes a box (sides W and H times sqrt(1 - lam), rounded)
    centred at a uniform random pixel and clipped to the image; the box of every image is
    replaced by the same box of the shuffled images (in a copy: the loader's batch is not
    written), and lam becomes the share of the image outside the box, the loss's weight of
    the original targets. `learn.fit_one_cycle(1, cbs=CutMix())`."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)

    def before_batch(self) -> None:
        (x,), (y,) = self.learn.xb, self.learn.yb
        if x.dim() != 4:
            raise ValueError(
                f"CutMix needs image batches [B, C, H, W], got a batch of shape {tuple(x.shape)}"
            )
        bs, _, height, width = x.shape
        lam = self.distrib.sample((1,))
        perm = torch.randperm(bs).to(x.device)
        x1, y1, x2, y2 = self.rand_bbox(width, height, lam)
        mixed = x.clone()
        mixed[..., y1:y2, x1:x2] = x[perm][..., y1:y2, x1:x2]
        self.learn.xb = (mixed,)
        area = torch.tensor((x2 - x1) * (y2 - y1), device=x.device)
        self.lam = 1 - area / float(width * height)  # float32, as fastai's
        self._mix_targets(y, y[perm], self.lam)

    def rand_bbox(self, width: int, height: int, lam: torch.Tensor) -> tuple[int, int, int, int]:
        """(x1, y1, x2, y2), the box of fastai's rand_bbox: sides round(W * sqrt(1 - lam)) and
        round(H * sqrt(1 - lam)), centre uniform in the image (CPU draws), clipped."""
        cut_rat = torch.sqrt(1.0 - lam)
        cut_w = int(torch.round(width * cut_rat))
        cut_h = int(torch.round(height * cut_rat))
        cx = int(torch.randint(0, width, (1,)))
        cy = int(torch.randint(0, height, (1,)))
        x1 = min(max(cx - cut_w // 2, 0), width)
        y1 = min(max(cy - cut_h // 2, 0), height)
        x2 = min(max(cx + cut_w // 2, 0), width)
        y2 = min(max(cy + cut_h // 2, 0), height)
        return x1, y1, x2, y2
