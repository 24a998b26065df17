"""Metrics: values against a brute-force count, argument checks."""

from functools import partial

import pytest
import torch

from fastcore_ext.callback.recorder import metric_name
from fastcore_ext.metrics import accuracy, error_rate, top_k_accuracy


def _data(n=200, c=7, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    preds = torch.randn(n, c, generator=g).to(device)
    targs = torch.randint(0, c, (n,), generator=g).to(device)
    return preds, targs


def _brute_topk(preds, targs, k):
    hits = 0
    for row, t in zip(preds.tolist(), targs.tolist(), strict=True):
        ranked = sorted(range(len(row)), key=lambda j: -row[j])
        hits += t in ranked[:k]
    return hits / len(targs)


def test_accuracy_and_error_rate(device):
    preds, targs = _data(device=device)
    hits = sum(
        int(max(range(7), key=lambda j: r[j]) == t)
        for r, t in zip(preds.tolist(), targs.tolist(), strict=True)
    )
    acc = accuracy(preds, targs)
    assert acc.dim() == 0 and acc.dtype == torch.float32 and acc.device == preds.device
    assert acc.item() == pytest.approx(hits / 200)
    assert error_rate(preds, targs).item() == pytest.approx(1 - hits / 200)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_top_k_accuracy(k, device):
    preds, targs = _data(device=device)
    assert top_k_accuracy(preds, targs, k=k).item() == pytest.approx(
        _brute_topk(preds.cpu(), targs.cpu(), k)
    )
    if k == 1:
        assert top_k_accuracy(preds, targs, k=1).item() == accuracy(preds, targs).item()
    if k == 7:
        assert top_k_accuracy(preds, targs, k=7).item() == 1.0


def test_axis_argument():
    preds, targs = _data(n=30, c=4)
    assert accuracy(preds.t(), targs, axis=0).item() == accuracy(preds, targs).item()
    assert (
        top_k_accuracy(preds.t(), targs, k=2, axis=0).item()
        == top_k_accuracy(preds, targs, k=2).item()
    )


def test_metric_names():
    assert metric_name(error_rate) == "error_rate"
    assert metric_name(partial(top_k_accuracy, k=3)) == "top_k_accuracy"


def test_bad_inputs():
    preds, targs = _data(n=10, c=3)
    with pytest.raises(TypeError, match="preds"):
        accuracy(preds.tolist(), targs)
    with pytest.raises(TypeError, match="targs"):
        accuracy(preds, targs.tolist())
    with pytest.raises(ValueError, match=r"targs should have shape \(10,\)"):
        accuracy(preds, targs[:5])
    with pytest.raises(TypeError, match="integer class indices"):
        accuracy(preds, targs.float())
    with pytest.raises(ValueError, match="empty"):
        accuracy(preds[:0], targs[:0])
    with pytest.raises(ValueError, match="axis"):
        accuracy(preds, targs, axis=2)
    with pytest.raises(ValueError, match="k should be at most the number of classes"):
        top_k_accuracy(preds, targs, k=5)
    with pytest.raises(ValueError, match="k should be a positive int"):
        top_k_accuracy(preds, targs, k=0)
