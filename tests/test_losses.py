"""fastai's loss functions by name: LabelSmoothingCrossEntropy (fastai's formula) and
CrossEntropyLossFlat, usable by get_preds(with_loss=True) and the interpretation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fakes import make_learner
from torch import nn

from fastcore_ext.vision import (
    CrossEntropyLossFlat,
    LabelSmoothingCrossEntropy,
    LabelSmoothingCrossEntropyFlat,
)


def test_label_smoothing_is_fastais_formula_and_torchs_without_weight():
    g = torch.Generator().manual_seed(0)
    out, targ = torch.randn(16, 5, generator=g), torch.randint(0, 5, (16,), generator=g)
    lp = F.log_softmax(out, dim=-1)
    per_item = 0.1 * (-lp.sum(-1)) / 5 + 0.9 * F.nll_loss(lp, targ, reduction="none")
    torch.testing.assert_close(LabelSmoothingCrossEntropy()(out, targ), per_item.mean())
    torch.testing.assert_close(LabelSmoothingCrossEntropy(reduction="none")(out, targ), per_item)
    torch.testing.assert_close(
        LabelSmoothingCrossEntropy(eps=0.2)(out, targ),
        nn.CrossEntropyLoss(label_smoothing=0.2)(out, targ),
    )
    torch.testing.assert_close(
        LabelSmoothingCrossEntropy(eps=0.0)(out, targ), F.cross_entropy(out, targ)
    )
    with pytest.raises(ValueError, match="eps should be a number in \\[0, 1\\], got 2"):
        LabelSmoothingCrossEntropy(eps=2)
    with pytest.raises(ValueError, match="reduction should be one of"):
        LabelSmoothingCrossEntropy(reduction="avg")


def test_cross_entropy_flat_moves_the_class_axis_and_flattens():
    g = torch.Generator().manual_seed(1)
    out, targ = torch.randn(2, 4, 3, generator=g), torch.randint(0, 4, (2, 3), generator=g)
    want = F.cross_entropy(out.permute(0, 2, 1).reshape(-1, 4), targ.reshape(-1))
    torch.testing.assert_close(CrossEntropyLossFlat(axis=1)(out, targ), want)
    flat = torch.randn(6, 4, generator=g)
    torch.testing.assert_close(
        CrossEntropyLossFlat()(flat, targ.reshape(-1)), F.cross_entropy(flat, targ.reshape(-1))
    )
    # fastai's idiom for the weights of a weighted loss: learn.loss_func.func.weight
    w = torch.tensor([4.0, 1.0, 1.0, 1.0])
    assert torch.equal(CrossEntropyLossFlat(weight=w).func.weight, w)
    assert LabelSmoothingCrossEntropyFlat(eps=0.2).func.eps == 0.2


def test_label_smoothing_flat_and_the_activations_as_fastais():
    """fastai v2's LabelSmoothingCrossEntropyFlat and the losses' activation / decodes were
    missing (NameError, AttributeError)."""
    g = torch.Generator().manual_seed(2)
    out, targ = torch.randn(2, 4, 3, generator=g), torch.randint(0, 4, (2, 3), generator=g)
    flat_out = out.permute(0, 2, 1).reshape(-1, 4)
    want = LabelSmoothingCrossEntropy(eps=0.2)(flat_out, targ.reshape(-1))
    torch.testing.assert_close(LabelSmoothingCrossEntropyFlat(eps=0.2, axis=1)(out, targ), want)
    for loss in (LabelSmoothingCrossEntropy(), LabelSmoothingCrossEntropyFlat(),
                 CrossEntropyLossFlat()):  # fmt: skip
        torch.testing.assert_close(loss.activation(flat_out), F.softmax(flat_out, dim=-1))
        assert torch.equal(loss.decodes(flat_out), flat_out.argmax(-1))


@pytest.mark.parametrize(
    "loss",
    [LabelSmoothingCrossEntropy(), CrossEntropyLossFlat(), LabelSmoothingCrossEntropyFlat()],
)
def test_as_a_learners_loss_with_per_item_losses(loss):
    learn = make_learner(loss_func=loss)
    learn.fit(1)
    preds, targs, losses = learn.get_preds(with_loss=True)
    assert losses.shape == targs.shape and torch.isfinite(losses).all()
    assert abs(float(losses.mean()) - learn.validate()[0]) < 1e-4


def test_flat_elementwise_losses_are_fastais():
    """MSELossFlat / L1LossFlat / BCEWithLogitsLossFlat / BCELossFlat flatten predictions and
    targets and make the targets float: [B, 1] against int targets [B] compares B pairs."""
    from fastcore_ext.losses import BCELossFlat, BCEWithLogitsLossFlat, L1LossFlat, MSELossFlat

    torch.manual_seed(0)
    out, y = torch.randn(6, 1), torch.tensor([0, 1, 1, 0, 1, 0])
    flat, yf = out.view(-1), y.float()
    torch.testing.assert_close(MSELossFlat()(out, y), F.mse_loss(flat, yf))
    torch.testing.assert_close(L1LossFlat()(out, y), F.l1_loss(flat, yf))
    torch.testing.assert_close(
        BCELossFlat()(out.sigmoid(), y), F.binary_cross_entropy(flat.sigmoid(), yf)
    )
    bce = BCEWithLogitsLossFlat(thresh=0.7)
    torch.testing.assert_close(bce(out, y), F.binary_cross_entropy_with_logits(flat, yf))
    assert MSELossFlat(reduction="none")(out, y).shape == (6,)
    torch.testing.assert_close(bce.activation(out), out.sigmoid())
    assert torch.equal(bce.decodes(out.sigmoid()), out.sigmoid() > 0.7)
    multi = torch.randn(4, 3)  # one column per label: axis moved last, then flattened
    targets = torch.randint(0, 2, (4, 3))
    torch.testing.assert_close(
        BCEWithLogitsLossFlat()(multi, targets),
        F.binary_cross_entropy_with_logits(multi, targets.float()),
    )
    with pytest.raises(ValueError, match="thresh should be a probability"):
        BCEWithLogitsLossFlat(thresh=2)
