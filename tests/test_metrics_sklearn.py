"""RocAuc, RocAucBinary, MatthewsCorrCoef, BalancedAccuracy, CohenKappa and Jaccard: fastai
v2's metrics of these names, which call scikit-learn, here computed in torch.

Everywhere: values computed by hand, a brute-force count of ROC AUC's pairs, and constants
that scikit-learn 1.9.1 gave on fixed inputs. Where scikit-learn is installed (it is no
dependency of the library): the same metrics against it on random inputs full of ties."""

import math
import warnings
from itertools import combinations

import pytest
import torch
from fakes import FakeBunch, make_learner, tiny_model

from fastcore_ext.metrics import (
    BalancedAccuracy,
    CohenKappa,
    F1Score,
    Jaccard,
    MatthewsCorrCoef,
    Precision,
    Recall,
    RocAuc,
    RocAucBinary,
    check_metric,
    metric_name,
)


def _onehot(labels: list[int], c: int) -> torch.Tensor:
    """Logits whose argmax is `labels` (no ties)."""
    return torch.nn.functional.one_hot(torch.tensor(labels), c).float()


def _logits_of(p1: list[float]) -> torch.Tensor:
    """Two-class logits whose softmax gives probability p1 to class 1 (equal p1, equal
    probabilities)."""
    p = torch.tensor(p1, dtype=torch.float64)
    return torch.stack([1 - p, p], 1).log().float()


def _close(value: torch.Tensor, expected: float) -> None:
    """A float32 0-dim metric against a float64 value (the float32 defaults of assert_close)."""
    assert value.dim() == 0 and value.dtype == torch.float32
    torch.testing.assert_close(value.cpu(), torch.tensor(expected, dtype=torch.float32))


# ---------------------------------------------------------------------------------------
# Values computed by hand


def test_roc_auc_binary_by_hand_ties_count_one_half():
    # scikit-learn's documented example: 3 of the 4 (positive, negative) pairs in order
    _close(RocAucBinary()(_logits_of([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])), 0.75)
    # positives 0.35, 0.8, 0.4; negatives 0.1, 0.4, 0.4: 0.35 beats one, 0.8 three, 0.4 one
    # and ties two (one half each): 6 of 9 pairs
    preds = _logits_of([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    _close(RocAucBinary()(preds, torch.tensor([0, 0, 1, 1, 0, 1])), 6 / 9)
    # all scores equal: every pair a tie
    _close(RocAucBinary()(torch.zeros(5, 2), torch.tensor([0, 1, 0, 1, 1])), 0.5)


def test_roc_auc_one_vs_rest_and_one_vs_one_by_hand():
    # rows: class 0 gets 0.7 / 0.2 / 0.1 and so on; targets 0, 0, 1, 2
    probs = torch.tensor(
        [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7]], dtype=torch.float64
    )
    targ = torch.tensor([0, 0, 1, 2])
    # ovr: class 0 (0.7, 0.2 vs 0.3, 0.1): 3 of 4; class 1 (0.6 vs 0.2, 0.5, 0.2): 1;
    # class 2 (0.7 vs 0.1, 0.3, 0.1): 1
    per_class = [3 / 4, 1.0, 1.0]
    preds = probs.log().float()
    _close(RocAuc()(preds, targ), sum(per_class) / 3)
    _close(RocAuc(average="weighted")(preds, targ), (2 * 3 / 4 + 1 + 1) / 4)
    # ovo pairs (a, b): mean of a's AUC on a's probability and b's on b's
    # (0, 1): rows 0, 1, 2: p0 0.7 0.2 vs 0.3 -> 1/2; p1 0.6 vs 0.2 0.5 -> 1
    # (0, 2): rows 0, 1, 3: p0 0.7 0.2 vs 0.1 -> 1;   p2 0.7 vs 0.1 0.3 -> 1
    # (1, 2): rows 2, 3:    p1 0.6 vs 0.2 -> 1;       p2 0.7 vs 0.1 -> 1
    pairs, shares = [0.75, 1.0, 1.0], [3 / 4, 3 / 4, 2 / 4]
    _close(RocAuc(multi_class="ovo")(preds, targ), sum(pairs) / 3)
    weighted = sum(p * s for p, s in zip(pairs, shares, strict=True)) / sum(shares)
    _close(RocAuc(multi_class="ovo", average="weighted")(preds, targ), weighted)


def test_confusion_metrics_by_hand():
    targ = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = _onehot([0, 1, 1, 1, 2, 0], 3)
    # confusion (rows targets): [[1, 1, 0], [0, 2, 0], [1, 0, 1]]; row sums 2 2 2, columns
    # 2 3 1, 4 correct of 6: cov(t, p) 4 * 6 - 12, cov(p, p) 36 - 14, cov(t, t) 36 - 12
    _close(MatthewsCorrCoef()(preds, targ), 12 / math.sqrt(22 * 24))
    # kappa: observed 4/6 agree, chance (2*2 + 2*3 + 2*1) / 36 = 1/3
    _close(CohenKappa()(preds, targ), (4 / 6 - 1 / 3) / (1 - 1 / 3))
    # weighted: sum(w * confusion) / sum(w * expected), expected rows (4, 6, 2) / 6
    _close(CohenKappa(weights="linear")(preds, targ), 1 - 3 / 5)
    _close(CohenKappa(weights="quadratic")(preds, targ), 1 - 5 / 7)
    # binary MCC: tp 2, fn 1, tn 1, fp 1
    binary = MatthewsCorrCoef()(_onehot([1, 0, 0, 1, 1], 2), torch.tensor([1, 1, 0, 0, 1]))
    _close(binary, (2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))
    # balanced accuracy: recalls 3/4 and 1/2; adjusted maps chance (1/2) to 0
    targ2, preds2 = torch.tensor([0, 0, 0, 0, 1, 1]), _onehot([0, 0, 0, 1, 1, 0], 2)
    _close(BalancedAccuracy()(preds2, targ2), 0.625)
    _close(BalancedAccuracy(adjusted=True)(preds2, targ2), 0.25)
    # a class only predicted (2) has no recall and counts in none: (1/2 + 1) / 2
    _close(BalancedAccuracy()(_onehot([0, 2, 1, 1], 3), torch.tensor([0, 0, 1, 1])), 0.75)


def test_jaccard_by_hand():
    targ, preds = torch.tensor([0, 0, 1, 1, 1, 2]), _onehot([0, 0, 1, 2, 2, 2], 3)
    # per class tp / (tp + fp + fn): 2/2, 1/3, 1/3; pooled: 4 / (4 + 2 + 2)
    _close(Jaccard(average="macro")(preds, targ), 5 / 9)
    _close(Jaccard(average="micro")(preds, targ), 0.5)
    _close(Jaccard(average="weighted")(preds, targ), (2 * 1 + 3 / 3 + 1 / 3) / 6)
    _close(Jaccard(average="macro", labels=[1, 2])(preds, targ), 1 / 3)
    binary_targ, binary_preds = torch.tensor([1, 1, 0, 0]), _onehot([1, 0, 0, 1], 2)
    _close(Jaccard()(binary_preds, binary_targ), 1 / 3)
    _close(Jaccard(pos_label=0)(binary_preds, binary_targ), 1 / 3)


def test_undefined_cases_give_what_scikit_learn_gives():
    targ = torch.tensor([0, 1, 0, 1])
    constant = _onehot([0, 0, 0, 0], 2)
    assert MatthewsCorrCoef()(constant, targ).item() == 0.0  # scikit-learn's 0.0
    assert MatthewsCorrCoef()(constant, torch.zeros(4, dtype=torch.int64)).item() == 0.0
    with pytest.warns(UserWarning, match="cohen_kappa_score .* undefined"):
        value = CohenKappa()(constant, torch.zeros(4, dtype=torch.int64))
    assert value.isnan()  # scikit-learn's default replace_undefined_by=np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # defined: no warning
        _close(CohenKappa()(_onehot([1, 1, 1, 1], 2), torch.zeros(4, dtype=torch.int64)), 0.0)
    # adjusted balanced accuracy of one target class divides by 1 - 1: nan as numpy gives
    assert BalancedAccuracy(adjusted=True)(constant, torch.zeros(4, dtype=torch.int64)).isnan()


# ---------------------------------------------------------------------------------------
# ROC AUC against a brute-force count of pairs


def _brute_auc(scores: list[float], positive: list[bool]) -> float:
    """Of all (positive, negative) pairs, the share ordered right; a tie counts one half."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _brute_roc(probs: torch.Tensor, targ: torch.Tensor, average: str, multi_class: str) -> float:
    """scikit-learn's multi-class roc_auc_score, from its definition."""
    p, t = probs.tolist(), targ.tolist()
    c, n = probs.shape[1], len(t)
    if multi_class == "ovr" and average == "micro":
        flat = [x for row in p for x in row]
        return _brute_auc(flat, [j == k for k in t for j in range(c)])
    if multi_class == "ovr":
        aucs = [_brute_auc([r[j] for r in p], [k == j for k in t]) for j in range(c)]
        weights = [t.count(j) if average == "weighted" else 1 for j in range(c)]
    else:
        aucs, weights = [], []
        for a, b in combinations(range(c), 2):
            rows = [i for i in range(n) if t[i] in (a, b)]
            auc_a = _brute_auc([p[i][a] for i in rows], [t[i] == a for i in rows])
            auc_b = _brute_auc([p[i][b] for i in rows], [t[i] == b for i in rows])
            aucs.append((auc_a + auc_b) / 2)
            weights.append(len(rows) / n if average == "weighted" else 1)
    return sum(a * w for a, w in zip(aucs, weights, strict=True)) / sum(weights)


def _tied_scores(n: int, c: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits on a coarse grid (many tied probabilities) and targets holding every
    class."""
    g = torch.Generator().manual_seed(seed)
    preds = (torch.randn(n, c, generator=g) * 2).round() / 2
    targs = torch.randint(0, c, (n,), generator=g)
    targs[:c] = torch.arange(c)
    return preds.to(device), targs.to(device)


@pytest.mark.parametrize(
    "multi_class,average",
    [
        ("ovr", "macro"),
        ("ovr", "weighted"),
        ("ovr", "micro"),
        ("ovo", "macro"),
        ("ovo", "weighted"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_roc_auc_against_a_brute_force_count(multi_class, average, seed, device):
    preds, targs = _tied_scores(60, 4, seed, device)
    probs = preds.softmax(-1).cpu()  # fastai's probabilities, the same kernel as the metric's
    value = RocAuc(average=average, multi_class=multi_class)(preds, targs)
    assert value.device == preds.device
    _close(value, _brute_roc(probs, targs.cpu(), average, multi_class))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_binary_against_a_brute_force_count(seed, device):
    preds, targs = _tied_scores(50, 2, seed, device)
    p1 = preds.softmax(-1)[:, 1].cpu().tolist()
    expected = _brute_auc(p1, [k == 1 for k in targs.cpu().tolist()])
    _close(RocAucBinary()(preds, targs), expected)


# ---------------------------------------------------------------------------------------
# Constants from scikit-learn 1.9.1 on fixed inputs (exact in float32: the probabilities
# below take a few values each, far apart, so no rounding makes or breaks a tie)

PROTOS3 = [
    [0.6, 0.3, 0.1],
    [0.2, 0.5, 0.3],
    [0.1, 0.15, 0.75],
    [0.45, 0.35, 0.2],
    [0.3, 0.05, 0.65],
]
PROTOS2 = [0.2, 0.35, 0.5, 0.8, 0.9]


def _fixed_scores(n: int = 40) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Three-class and two-class (logits, targets): each row one of five probability rows,
    the targets mostly the likeliest class."""
    i = torch.arange(n)
    pick = (i * 7) % 5
    probs3 = torch.tensor(PROTOS3, dtype=torch.float64)[pick]
    targs3 = torch.tensor(PROTOS3).argmax(1)[pick] + (i % 4 == 1).long() + (i % 6 == 2).long()
    p1 = torch.tensor(PROTOS2, dtype=torch.float64)[(i * 3) % 5]
    targs2 = (p1 > 0.4).long() ^ (i % 4 == 1).long()
    return {
        "scores3": (probs3.log().float(), targs3 % 3),
        "scores2": (torch.stack([1 - p1, p1], 1).log().float(), targs2),
    }


def _fixed_labels(n: int = 40, c: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Four-class one-hot logits of predictions and the targets, a third of them wrong."""
    i = torch.arange(n)
    targ = (i * 5 + i // 7) % c
    pred = torch.where(i % 3 == 0, (targ + i % c) % c, targ)
    pred = torch.where(i % 11 == 5, torch.zeros_like(pred), pred)
    return torch.nn.functional.one_hot(pred, c).float(), targ


SKLEARN_CONSTANTS = [  # (metric, inputs, scikit-learn's value)
    pytest.param(
        RocAuc(average="macro", multi_class="ovr"),
        "scores3",
        0.7655216249760155,
        id="RocAuc(average='macro', multi_class='ovr')",
    ),
    pytest.param(
        RocAuc(average="weighted", multi_class="ovr"),
        "scores3",
        0.7552979066022545,
        id="RocAuc(average='weighted', multi_class='ovr')",
    ),
    pytest.param(
        RocAuc(average="micro", multi_class="ovr"),
        "scores3",
        0.76125,
        id="RocAuc(average='micro', multi_class='ovr')",
    ),
    pytest.param(
        RocAuc(average="macro", multi_class="ovo"),
        "scores3",
        0.7653092006033182,
        id="RocAuc(average='macro', multi_class='ovo')",
    ),
    pytest.param(
        RocAuc(average="weighted", multi_class="ovo"),
        "scores3",
        0.7620079185520361,
        id="RocAuc(average='weighted', multi_class='ovo')",
    ),
    pytest.param(RocAucBinary(), "scores2", 0.7424242424242425, id="RocAucBinary()"),
    pytest.param(MatthewsCorrCoef(), "labels", 0.5628760813258431, id="MatthewsCorrCoef()"),
    pytest.param(BalancedAccuracy(), "labels", 0.6723484848484848, id="BalancedAccuracy()"),
    pytest.param(
        BalancedAccuracy(adjusted=True),
        "labels",
        0.563131313131313,
        id="BalancedAccuracy(adjusted=True)",
    ),
    pytest.param(CohenKappa(), "labels", 0.557069846678024, id="CohenKappa()"),
    pytest.param(
        CohenKappa(weights="linear"),
        "labels",
        0.5402298850574713,
        id="CohenKappa(weights='linear')",
    ),
    pytest.param(
        CohenKappa(weights="quadratic"),
        "labels",
        0.5281501340482574,
        id="CohenKappa(weights='quadratic')",
    ),
    pytest.param(
        CohenKappa(labels=[3, 1, 0], weights="linear"),
        "labels",
        0.6654411764705882,
        id="CohenKappa(labels=[3, 1, 0], weights='linear')",
    ),
    pytest.param(
        Jaccard(average="macro"), "labels", 0.5172305764411027, id="Jaccard(average='macro')"
    ),
    pytest.param(
        Jaccard(average="micro"), "labels", 0.5094339622641509, id="Jaccard(average='micro')"
    ),
    pytest.param(
        Jaccard(average="weighted"), "labels", 0.5182957393483709, id="Jaccard(average='weighted')"
    ),
    pytest.param(
        Jaccard(average="macro", labels=[1, 3]),
        "labels",
        0.5833333333333333,
        id="Jaccard(average='macro', labels=[1, 3])",
    ),
    pytest.param(Jaccard(pos_label=0), "labels2", 0.7142857142857143, id="Jaccard(pos_label=0)"),
]


@pytest.mark.parametrize("metric,data,expected", SKLEARN_CONSTANTS)
def test_fixed_inputs_give_scikit_learn_constants(metric, data, expected, device):
    inputs = _fixed_scores()
    preds, targ = _fixed_labels()
    inputs["labels"] = (preds, targ)
    inputs["labels2"] = (_onehot((preds.argmax(1) % 2).tolist(), 2), targ % 2)
    preds, targs = inputs[data]
    _close(metric(preds.to(device), targs.to(device)), expected)


# ---------------------------------------------------------------------------------------
# Against scikit-learn itself, where it is installed


def _sklearn_cases(sk, preds: torch.Tensor, targs: torch.Tensor):
    """(our metric, scikit-learn's value) pairs on logits preds [N, C >= 3] and targs."""
    t, probs = targs.numpy(), preds.softmax(-1).numpy()
    p = preds.argmax(-1).numpy()
    t2, preds2 = targs % 2, preds[:, :2]
    for multi_class in ("ovr", "ovo"):
        for average in ("macro", "weighted") + (("micro",) if multi_class == "ovr" else ()):
            expected = sk.roc_auc_score(t, probs, multi_class=multi_class, average=average)
            yield RocAuc(average=average, multi_class=multi_class)(preds, targs), expected
    expected = sk.roc_auc_score(t2.numpy(), preds2.softmax(-1)[:, 1].numpy())
    yield RocAucBinary()(preds2, t2), expected
    yield MatthewsCorrCoef()(preds, targs), sk.matthews_corrcoef(t, p)
    p2 = preds2.argmax(-1).numpy()
    yield MatthewsCorrCoef()(preds2, t2), sk.matthews_corrcoef(t2.numpy(), p2)
    for adjusted in (False, True):
        expected = sk.balanced_accuracy_score(t, p, adjusted=adjusted)
        yield BalancedAccuracy(adjusted=adjusted)(preds, targs), expected
    for weights in (None, "linear", "quadratic"):
        yield CohenKappa(weights=weights)(preds, targs), sk.cohen_kappa_score(t, p, weights=weights)
        expected = sk.cohen_kappa_score(t, p, weights=weights, labels=[2, 0, 1])
        yield CohenKappa(weights=weights, labels=[2, 0, 1])(preds, targs), expected
    for average in ("macro", "micro", "weighted"):
        yield Jaccard(average=average)(preds, targs), sk.jaccard_score(t, p, average=average)
        expected = sk.jaccard_score(t, p, average=average, labels=[0, 2])
        yield Jaccard(average=average, labels=[0, 2])(preds, targs), expected
    yield Jaccard()(preds2, t2), sk.jaccard_score(t2.numpy(), p2)


@pytest.mark.parametrize("seed", range(8))
def test_random_inputs_as_scikit_learn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(seed)
    n, c = 20 + 23 * seed, 3 + seed % 4
    preds = torch.randn(n, c, generator=g) * 2
    if seed % 2:  # a coarse grid: tied scores and tied argmax
        preds = (preds * 2).round() / 2
    targs = torch.randint(0, c, (n,), generator=g)
    targs[:c] = torch.arange(c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's "y_pred contains classes not in y_true"
        for value, expected in _sklearn_cases(sk, preds, targs):
            _close(value, float(expected))


# ---------------------------------------------------------------------------------------
# Arguments, names, the Learner


def test_axis_picks_the_class_dimension():
    preds, targs = _tied_scores(30, 4, 3, "cpu")
    for make in (
        RocAuc,
        MatthewsCorrCoef,
        BalancedAccuracy,
        lambda axis: CohenKappa(axis, weights="quadratic"),
        lambda axis: Jaccard(axis, average="macro"),
    ):
        _close(make(0)(preds.t(), targs), make(-1)(preds, targs).item())
    # (N, C, L), the classes on axis 1 as a segmentation output: each position an item
    per_position = preds.view(10, 3, 4).transpose(1, 2)
    _close(RocAuc(axis=1)(per_position, targs.view(10, 3)), RocAuc()(preds, targs).item())


def test_names_are_fastais_columns():
    for metric, name in [
        (RocAuc(), "roc_auc_score"),
        (RocAucBinary(), "roc_auc_score"),
        (MatthewsCorrCoef(), "matthews_corrcoef"),
        (BalancedAccuracy(), "balanced_accuracy_score"),
        (CohenKappa(weights="linear"), "cohen_kappa_score"),
        (Jaccard(), "jaccard_score"),
    ]:
        assert metric_name(metric) == name
        check_metric(metric)


@pytest.mark.parametrize(
    "factory", [RocAuc, RocAucBinary, MatthewsCorrCoef, BalancedAccuracy, CohenKappa, Jaccard]
)
def test_a_factory_passed_uncalled_is_refused(factory):
    name = factory.__name__
    with pytest.raises(TypeError, match=rf"metrics: {name} makes a metric: pass {name}\(\)"):
        check_metric(factory)


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda: RocAuc(average="samples"), ValueError, r"average should be 'macro', 'weighted' "),
        (lambda: RocAuc(average=None), ValueError, r"average should be .* got None"),
        (lambda: RocAuc(multi_class="ovo", average="micro"), ValueError, r"multi_class='ovo'"),
        (lambda: RocAuc(multi_class="raise"), ValueError, r"multi_class should be 'ovr' or 'ovo'"),
        (lambda: RocAucBinary(average="binary"), ValueError, r"average should be .* 'binary'"),
        (lambda: RocAuc(axis="-1"), TypeError, r"axis should be an int .* got '-1'"),
        (lambda: MatthewsCorrCoef(axis=1.0), TypeError, r"axis should be an int"),
        (lambda: BalancedAccuracy(adjusted=1), TypeError, r"adjusted should be a bool, got int"),
        (lambda: CohenKappa(weights="cubic"), ValueError, r"weights should be None, 'linear' "),
        (lambda: CohenKappa(labels=[]), ValueError, r"labels should hold at least one class"),
        (lambda: CohenKappa(labels=[1, 1]), ValueError, r"each once, got \[1, 1\]"),
        (lambda: CohenKappa(labels="01"), TypeError, r"labels should be None or a list of int"),
        (lambda: CohenKappa(labels=[0.5]), TypeError, r"labels should be None or a list of int"),
        (lambda: CohenKappa(labels=3), TypeError, r"labels should be None or a list of int"),
        (lambda: Jaccard(average="samples"), ValueError, r"average should be one of"),
        (lambda: Jaccard(pos_label="1"), TypeError, r"pos_label should be an int .* got '1'"),
    ],
)
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


P3, T3 = _tied_scores(12, 3, 0, "cpu")
P2, T2 = _tied_scores(12, 2, 0, "cpu")
BAD_INPUTS = [  # (metric, preds, targs, error, message)
    (RocAuc(), P2, T2, ValueError, r"RocAuc is the ROC AUC of 3 classes or more.*RocAucBinary"),
    (RocAucBinary(), P3, T3, ValueError, r"RocAucBinary .* should have 2 classes .* got 3"),
    (RocAuc(), P3, T3 + 1, ValueError, r"RocAuc: targs should be class indices in \[0, 3\)"),
    (RocAucBinary(), P2, T2 - 1, ValueError, r"\[0, 2\) .* got values from -1 to 0"),
    (RocAuc(), P3.long(), T3, TypeError, r"RocAuc: preds should be float scores .* torch.int64"),
    (RocAuc(), P3.index_fill(0, torch.tensor([4]), torch.inf), T3, ValueError,
     r"RocAuc: preds hold NaN or infinite values"),
    (RocAucBinary(), P2.index_fill(0, torch.tensor([4]), torch.nan), T2, ValueError,
     r"RocAucBinary: preds hold NaN or infinite values"),
    (RocAuc(), P3, T3[:5], ValueError, r"targs should have shape \(12,\)"),
    (RocAuc(), P3.tolist(), T3, TypeError, r"preds should be a Tensor, got list"),
    (MatthewsCorrCoef(), P3, T3.float(), TypeError, r"integer class indices"),
    (CohenKappa(labels=[5, 7]), P3, T3, ValueError,
     r"cohen_kappa_score: at least one of labels \[5, 7\] should be among the targets"),
    (Jaccard(), P3, T3, ValueError, r"average='binary' scores one class of two"),
    (BalancedAccuracy(axis=2), P3, T3, ValueError, r"axis should index a dimension of preds"),
    # a pos_label that is not a class gave 0.0 silently (sklearn and fastai raise)
    (F1Score(pos_label=2), P2, T2, ValueError,
     r"pos_label=2 is not one of the classes of the targets and predictions, \[0, 1\]"),
    (Recall(pos_label=-1), P2, T2, ValueError, r"pos_label=-1 is not one of the classes"),
    (F1Score(), P2.argmax(1), T2, ValueError, r"got \(12,\) \(preds has the targets' shape: "
     r"predicted classes\? This metric takes the model's scores"),
]  # fmt: skip


@pytest.mark.parametrize(
    "metric,preds,targs,message",
    [
        (RocAuc(), P3, T3 % 2,
         r"RocAuc: ROC AUC is undefined unless every class .* 12 targets hold only class 0, 1 "
         r"of the 3: nan"),
        (RocAucBinary(), P2, torch.ones(12, dtype=torch.int64),
         r"RocAucBinary: ROC AUC is undefined .* hold only class 1 of the 2: nan"),
    ],
)  # fmt: skip
def test_a_class_absent_from_the_targets_gives_nan_with_a_warning(metric, preds, targs, message):
    """nan, not an error: a validation set without some class does not end a fit."""
    with pytest.warns(UserWarning, match=message):
        got = metric(preds, targs)
    assert got.dim() == 0 and torch.isnan(got)


@pytest.mark.parametrize("metric,preds,targs,error,message", BAD_INPUTS)
def test_bad_inputs_are_named(metric, preds, targs, error, message):
    with pytest.raises(error, match=message):
        metric(preds, targs)


@pytest.mark.parametrize(
    "metric",
    [RocAuc(), RocAucBinary(), MatthewsCorrCoef(), CohenKappa(), BalancedAccuracy(), Jaccard()],
)
def test_an_empty_set_names_the_metric(metric):
    with pytest.raises(ValueError, match=f"^{metric_name(metric)} of an empty set is undefined"):
        metric(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_targets_of_any_integer_dtype(dtype):
    preds, targs = _tied_scores(24, 3, 5, "cpu")
    for metric in (
        RocAuc(),
        RocAuc(multi_class="ovo"),
        MatthewsCorrCoef(),
        CohenKappa(labels=[0, 2]),
    ):
        assert torch.equal(metric(preds, targs.to(dtype)), metric(preds, targs))
    preds2, targs2 = _tied_scores(24, 2, 5, "cpu")
    assert torch.equal(RocAucBinary()(preds2, targs2.to(dtype)), RocAucBinary()(preds2, targs2))


def test_inputs_are_left_unchanged():
    preds, targs = _tied_scores(20, 3, 4, "cpu")
    before = preds.clone(), targs.clone()
    for metric in (RocAuc(), RocAuc(multi_class="ovo"), MatthewsCorrCoef(), CohenKappa()):
        metric(preds, targs)
    assert torch.equal(preds, before[0]) and torch.equal(targs, before[1])


def test_the_learner_records_them_under_fastais_names():
    metrics = [
        RocAucBinary(),
        MatthewsCorrCoef(),
        BalancedAccuracy(),
        CohenKappa(),
        Jaccard(),
    ]
    learn = make_learner(metrics=metrics)
    learn.fit(1)
    names = [metric_name(m) for m in metrics]
    assert learn.recorder.metric_names[3:-1] == names
    recorded = learn.recorder.metrics[-1]
    logits, targs = learn.get_preds(act=lambda out: out)
    for metric, value in zip(metrics, recorded, strict=True):
        assert value == pytest.approx(float(metric(logits, targs)), abs=1e-6)
    assert 0.0 <= recorded[0] <= 1.0 and -1.0 <= recorded[1] <= 1.0


def test_the_learner_takes_roc_auc_of_three_classes():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 3, 8, 8, generator=g), torch.arange(96) % 3
    x[:, 0] += y[:, None, None].float()
    data = FakeBunch(x[:64], y[:64], x[64:], y[64:], n_classes=3)
    model = torch.nn.Sequential(*tiny_model()[:-1], torch.nn.Linear(8, 3))
    learn = make_learner(data=data, model=model, metrics=[RocAuc(), RocAuc(multi_class="ovo")])
    learn.fit(1)
    assert learn.recorder.metric_names[3:5] == ["roc_auc_score", "roc_auc_score"]
    assert all(0.0 <= v <= 1.0 for v in learn.recorder.metrics[-1])


def test_a_pos_label_outside_the_datas_classes_is_refused_when_the_learner_is_built():
    from fakes import make_learner

    with pytest.raises(ValueError, match=r"precision_score's pos_label should be a class index "
                       r"of the data, in \[0, 2\), got 2"):  # fmt: skip
        make_learner(metrics=[Precision(pos_label=2)])
