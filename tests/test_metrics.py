"""Metrics: values against a brute-force count, argument checks."""

from functools import partial

import pytest
import torch
from fakes import make_learner

from fastcore_ext.metrics import (
    F1Score,
    Precision,
    accuracy,
    accuracy_multi,
    error_rate,
    metric_name,
    top_k_accuracy,
)


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


def _onehot_logits(pred: list[int], c: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), c).float()


def test_precision_recall_f1_as_scikit_learn():
    """fastai v2's Precision / Recall / F1Score / FBeta (scikit-learn's definitions; checked
    against scikit-learn 1.x on 300 random sets while written: no difference above 1e-6)."""
    from fastcore_ext.metrics import F1Score, FBeta, Precision, Recall

    targ = torch.tensor([0, 0, 1, 1, 1, 2])
    logits = _onehot_logits([0, 1, 1, 1, 2, 2], 3)
    # per class: 0: tp 1 fp 0 fn 1; 1: tp 2 fp 1 fn 1; 2: tp 1 fp 1 fn 0
    p = torch.tensor([1.0, 2 / 3, 0.5])
    r = torch.tensor([0.5, 2 / 3, 1.0])
    f1 = 2 * p * r / (p + r)
    support = torch.tensor([2.0, 3.0, 1.0])
    close = lambda a, b: abs(float(a) - float(b)) < 1e-6  # noqa: E731
    assert close(Precision(average="macro")(logits, targ), p.mean())
    assert close(Recall(average="macro")(logits, targ), r.mean())
    assert close(F1Score(average="macro")(logits, targ), f1.mean())
    assert close(F1Score(average="weighted")(logits, targ), (f1 * support).sum() / 6)
    assert close(Precision(average="micro")(logits, targ), 4 / 6)  # = accuracy
    f05 = 1.25 * p * r / (0.25 * p + r)
    assert close(FBeta(0.5, average="macro")(logits, targ), f05.mean())
    assert Precision().__name__ == "precision_score" and F1Score().__name__ == "f1_score"
    # binary: the score of pos_label
    targ2, logits2 = torch.tensor([1, 1, 0, 0]), _onehot_logits([1, 0, 0, 1], 2)
    assert close(Precision()(logits2, targ2), 0.5) and close(
        Recall(pos_label=0)(logits2, targ2), 0.5
    )
    assert close(Precision()(_onehot_logits([0, 0], 2), torch.tensor([0, 0])), 0.0)  # 0 / 0
    with pytest.raises(
        ValueError, match="average='binary' scores one class of two, but .* 3 classes"
    ):
        Precision()(logits, targ)
    with pytest.raises(ValueError, match="average should be one of"):
        Recall(average="samples")
    with pytest.raises(ValueError, match="beta should be a number > 0, got 0"):
        FBeta(0)


def test_precision_as_a_learner_metric_names_its_column():
    from fastcore_ext.metrics import F1Score

    learn = make_learner(metrics=[F1Score(average="macro")])
    learn.fit(1)
    assert learn.recorder.metric_names[-2] == "f1_score"
    assert 0.0 <= learn.recorder.values[-1][-1] <= 1.0


def test_an_empty_set_names_the_metric_called():
    """error_rate and Precision on empty input said "accuracy of an empty set"."""
    from fastcore_ext.metrics import FBeta, Precision

    preds, targs = torch.randn(0, 3), torch.zeros(0, dtype=torch.int64)
    for metric, name in [
        (error_rate, "error_rate"),
        (accuracy, "accuracy"),
        (partial(top_k_accuracy, k=2), "top_k_accuracy"),
        (Precision(average="macro"), "precision_score"),
        (FBeta(2.0, average="macro"), "fbeta_score"),
    ]:
        with pytest.raises(ValueError, match=f"^{name} of an empty set is undefined"):
            metric(preds, targs)


def test_a_metric_that_cannot_be_called_is_refused_when_the_learner_is_built():
    """metrics=[Precision] said "float() argument must be ... not '_ClassScore'" after a whole
    epoch; a one-argument function "<lambda>() takes 1 positional argument but 2 were given"
    from inside the recorder."""
    for wrong, said in (
        (Precision, r"metrics: Precision makes a metric: pass Precision\(\), e.g. .*average"),
        (F1Score, r"metrics: F1Score makes a metric: pass F1Score\(\)"),
        (torch.nn.CrossEntropyLoss, r"metrics: CrossEntropyLoss makes a metric: pass"),
        (
            lambda preds: 0.0,
            r"metrics: <lambda>\(preds\) cannot be called as metric\(preds, targs\)",
        ),
        ("error_rate", r"metrics should be callables"),
    ):
        with pytest.raises(TypeError, match=said):
            make_learner(metrics=[error_rate, wrong])
    for fine in (partial(top_k_accuracy, k=2), lambda *a: 0.0, lambda p, t, axis=-1: 0.0, max):
        make_learner(metrics=fine)  # (preds, targs) fits; a builtin is tried at its first use


def test_a_metric_returning_no_number_is_named():
    learn = make_learner(metrics=[lambda preds, targs: "x"])
    with pytest.raises(TypeError, match=r"metrics: <lambda> returned str 'x', expected a number"):
        learn.fit(1)
    learn = make_learner(metrics=[lambda preds, targs: preds])  # not one element
    with pytest.raises(
        TypeError,
        match=r"metrics: <lambda> returned a tensor of shape \(\d+, 2\), expected a number",
    ):
        learn.validate()


def test_a_score_that_cannot_take_the_datas_classes_is_refused_when_the_learner_is_built():
    """Precision() (average='binary') on 3 classes failed after a whole epoch."""
    from fakes import easy_bunch
    from torch import nn

    from fastcore_ext.metrics import RocAuc, RocAucBinary

    three = easy_bunch()
    three.c, three.classes = 3, ["a", "b", "c"]

    def learner(data, metric):
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, data.c))
        return make_learner(data=data, model=model, splitter=None, metrics=metric)

    with pytest.raises(ValueError, match=r"precision_score with average='binary' .* has 3 "):
        learner(three, Precision())
    with pytest.raises(ValueError, match=r"RocAucBinary .* the data has 3 classes: pass RocAuc"):
        learner(three, [accuracy, RocAucBinary()])
    with pytest.raises(ValueError, match=r"RocAuc is the ROC AUC of 3 .* has 2: pass RocAucB"):
        learner(easy_bunch(), RocAuc())
    learner(three, [Precision(average="macro"), RocAuc()])
    learner(easy_bunch(), [Precision(), RocAucBinary()])


def test_accuracy_multi_is_fastais():
    """fastai's ((inp.sigmoid() > thresh) == targ.bool()).float().mean(), flattened."""
    inp = torch.tensor([[2.0, -1.0, 0.1], [-3.0, 0.5, -0.2]])
    targ = torch.tensor([[1, 0, 0], [0, 1, 1]])
    assert accuracy_multi(inp, targ).item() == pytest.approx(4 / 6)
    assert accuracy_multi(inp, targ.float(), thresh=0.6).item() == pytest.approx(5 / 6)
    assert accuracy_multi(inp.sigmoid(), targ, sigmoid=False).item() == pytest.approx(4 / 6)
    assert accuracy_multi(inp, targ, thresh=0.0).item() == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match=r"inp \(2, 3\) and targ \(2,\) should hold one"):
        accuracy_multi(inp, targ[:, 0])
    with pytest.raises(TypeError, match="should be Tensors, got Tensor and list"):
        accuracy_multi(inp, [1, 0])


# -- fastai v2's metric classes ----------------------------------------------------------------


def test_fastai_metric_classes_accumulate_batch_by_batch_in_fits_and_validate():
    """Metric (reset / accumulate(learn) / value), AvgMetric (per-batch values averaged over
    items: fastai's form for a plain function), AccumMetric and skm_to_fastai (whole set),
    in the epoch table and in validate(); validation batches of 16, 16 and 8 items."""
    from fastcore_ext.metrics import AccumMetric, AvgMetric, Metric, skm_to_fastai

    class CountItems(Metric):
        def reset(self):
            self.n, self.batches = 0, 0

        def accumulate(self, learn):
            self.n += len(learn.yb[0])
            self.batches += 1

        @property
        def value(self):
            return self.n

    def median_prob(preds, targs):
        return preds.softmax(-1)[:, 1].median()

    count = CountItems()
    avg = AvgMetric(median_prob)
    acc = AccumMetric(lambda p, t: (p == t).float().mean(), dim_argmax=-1, name="acc")
    skm = skm_to_fastai(lambda t, p: float((t == p).mean()))  # scikit-learn's order, numpy
    learn = make_learner(metrics=[count, avg, acc, skm, accuracy])
    learn.fit(1, 1e-2)
    assert learn.recorder.metric_names[3:8] == [
        "count_items", "median_prob", "acc", "<lambda>", "accuracy"
    ]  # fmt: skip
    row = learn.recorder.values[-1]
    row = row[2:]  # after train_loss and valid_loss
    assert row[0] == 40 and count.batches == 3
    preds, targs = learn.get_preds(act=lambda out: out)  # the raw outputs, as learn.pred
    by_batch = [median_prob(p, None) for p in preds.split(16)]
    want = float(sum(v * len(p) for v, p in zip(by_batch, preds.split(16), strict=True)) / 40)
    assert row[1] == pytest.approx(want, rel=1e-5)
    assert row[1] != pytest.approx(float(median_prob(preds, targs)), rel=1e-5)  # not whole set
    whole = float((preds.argmax(-1) == targs).float().mean())
    assert row[2:] == pytest.approx([whole] * 3)
    _, n, med, a, s, a2 = learn.validate()
    assert (n, med, a, s, a2) == pytest.approx((40, want, whole, whole, whole), rel=1e-5)
    with pytest.raises(TypeError, match="CountItems is a Metric class: pass an instance"):
        make_learner(metrics=[CountItems])

    class ConfusionMetric(Metric):  # fastai drops the final "Metric": SaveModelCallback's
        pass  # monitor='confusion' names it

    assert ConfusionMetric().name == "confusion" and Metric().name == "metric"
    labels = preds.argmax(-1)
    assert acc(labels, targs) == pytest.approx(whole)  # fastai's m(preds, targs), by hand
    acc.name = "my_acc"
    assert acc.name == "my_acc"
