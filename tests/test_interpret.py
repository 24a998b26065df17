"""ClassificationInterpretation: its numbers against brute-force counts and hand computations,
plot_top_losses against what the model saw, 1- and 3-channel images, and the memory bound
with 100 classes x 20,000 validation items; Learner.show_results (inference.show_results)
against predict."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import FakeBunch, break_images, make_learner, tiny_model
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import nn
from torch.nn import functional as F

from fastcore_ext.data import DatasetType, ImageDataBunch, demo_dataset
from fastcore_ext.interpret import ClassificationInterpretation
from fastcore_ext.plots import PLOTS_ENV

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")


@pytest.fixture(autouse=True)
def _plots_in_tmp_cwd(monkeypatch, tmp_path):
    """Plots go to ./plots: each test runs in its tmp_path."""
    monkeypatch.delenv(PLOTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


class FixedLogits(nn.Module):
    """Returns row i of a fixed table for input x = i (a float [B, 1] of item indices)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.bias = nn.Parameter(torch.zeros(()))  # a Learner needs one parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()] + self.bias


class ImageList:
    """A data set of stored images: ds[i] -> (Tensor[C, H, W], label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels.tolist()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def fixed_learner(logits: torch.Tensor, targets: torch.Tensor, tmp_path: Path, bs: int = 64):
    """A Learner over a fake bunch whose validation predictions are `logits` [N, C]."""
    n, c = logits.shape
    idx = torch.arange(n, dtype=torch.float32)[:, None]
    data = FakeBunch(idx[: min(n, bs)], targets[: min(n, bs)], idx, targets, bs=bs, n_classes=c)
    data.path = tmp_path
    return make_learner(data=data, model=FixedLogits(logits), splitter=None)


def random_case(n: int, c: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g)
    logits[torch.arange(n), targets] += 1.0  # mostly right, with mistakes
    return logits, targets


# ---- numbers --------------------------------------------------------------------------------
def test_cache_of_one_pass(tmp_path):
    logits, targets = random_case(150, 5)
    learn = fixed_learner(logits, targets, tmp_path, bs=32)
    interp = ClassificationInterpretation.from_learner(learn)
    torch.testing.assert_close(interp.probs, torch.softmax(logits, dim=1))
    assert torch.equal(interp.targets, targets) and torch.equal(interp.y_true, targets)
    assert torch.equal(interp.targs, targets)  # fastai v2's name
    assert torch.equal(interp.pred_class, logits.argmax(1)) and interp.preds is interp.probs
    assert interp.preds.argmax(dim=1).tolist() == interp.pred_class.tolist()  # v1's idiom
    assert interp.vocab == interp.classes
    assert torch.equal(interp.idxs, torch.arange(150))
    assert interp.classes == [f"class{i}" for i in range(5)] and interp.c == 5
    assert len(interp) == 150
    assert interp.error_rate() == pytest.approx((logits.argmax(1) != targets).float().mean())
    assert "150 valid items, 5 classes" in repr(interp)


def test_top_losses_equal_recomputed_cross_entropy(tmp_path):
    logits, targets = random_case(200, 7, seed=1)
    interp = ClassificationInterpretation.from_learner(fixed_learner(logits, targets, tmp_path))
    expected = F.cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(interp.losses, expected)
    losses, idxs = interp.top_losses(9)
    torch.testing.assert_close(losses, expected[idxs])
    assert losses.tolist() == sorted(expected.tolist(), reverse=True)[:9]
    assert torch.all(losses[:-1] >= losses[1:])
    small, small_idx = interp.top_losses(4, largest=False)
    assert small.tolist() == sorted(expected.tolist())[:4]
    torch.testing.assert_close(small, expected[small_idx])
    all_losses, all_idx = interp.top_losses()
    assert len(all_losses) == 200 and sorted(all_idx.tolist()) == list(range(200))
    assert len(interp.top_losses(10_000)[0]) == 200  # k above N: all of them


def test_top_losses_ties_keep_data_set_order(tmp_path):
    logits = torch.zeros(6, 3)  # every item has the same loss log(3)
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    interp = ClassificationInterpretation.from_learner(fixed_learner(logits, targets, tmp_path))
    assert interp.top_losses(4)[1].tolist() == [0, 1, 2, 3]
    assert interp.top_losses(4, largest=False)[1].tolist() == [0, 1, 2, 3]


def brute_force_cm(targets: torch.Tensor, preds: torch.Tensor, c: int) -> np.ndarray:
    cm = np.zeros((c, c), dtype=np.int64)
    for t, p in zip(targets.tolist(), preds.tolist(), strict=True):
        cm[t, p] += 1
    return cm


@pytest.mark.parametrize("n, c, seed", [(500, 12, 0), (300, 3, 1), (64, 37, 2)])
def test_confusion_matrix_and_most_confused_against_brute_force(tmp_path, n, c, seed):
    logits, targets = random_case(n, c, seed)
    interp = ClassificationInterpretation.from_learner(fixed_learner(logits, targets, tmp_path))
    cm = interp.confusion_matrix()
    assert cm.shape == (c, c) and cm.dtype == np.int64
    assert np.array_equal(cm, brute_force_cm(targets, logits.argmax(1), c))
    assert cm.sum() == n  # the validation set size
    assert np.array_equal(cm.sum(axis=1), np.bincount(targets.numpy(), minlength=c))
    scratch = interp.confusion_matrix()
    scratch[0, 0] = -1  # a copy: the cache is safe
    assert interp.confusion_matrix()[0, 0] == cm[0, 0]

    pairs = Counter(
        (t, p) for t, p in zip(targets.tolist(), logits.argmax(1).tolist(), strict=True) if t != p
    )
    every = [(t, p) for t in range(c) for p in range(c) if t != p]  # min_val 0: zeros too
    for min_val in (0, 1, 2, 3):
        expected = sorted(
            ((t, p, pairs[t, p]) for t, p in every if pairs[t, p] >= min_val),
            key=lambda e: (-e[2], e[0], e[1]),  # count descending, then actual, predicted
        )
        names = interp.classes
        assert interp.most_confused(min_val) == [(names[t], names[p], k) for t, p, k in expected]
    assert sum(k for _, _, k in interp.most_confused()) == n - np.trace(cm)


def test_classification_report_by_hand(tmp_path, capsys):
    # 3 classes; targets/predictions chosen so every count is known:
    # class 0: 4 items, 3 right, 1 predicted as 1; class 1: 2 items, both right;
    # class 2: 3 items, 1 right, 2 predicted as 0. Predicted counts: 0 -> 5, 1 -> 3, 2 -> 1.
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 1, 2, 0, 0])
    logits = F.one_hot(preds, 3).float() * 5
    interp = ClassificationInterpretation.from_learner(fixed_learner(logits, targets, tmp_path))
    assert interp.print_classification_report() is None  # a notebook shows the table once
    report = interp.classification_report()
    precision = [3 / 5, 2 / 3, 1 / 1]
    recall = [3 / 4, 2 / 2, 1 / 3]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    support = [4, 2, 3]
    np.testing.assert_allclose(report.precision, precision)
    np.testing.assert_allclose(report.recall, recall)
    np.testing.assert_allclose(report.f1, f1)
    assert report.support.tolist() == support
    assert report.accuracy == pytest.approx(6 / 9)
    np.testing.assert_allclose(report.macro, [np.mean(precision), np.mean(recall), np.mean(f1)])
    w = np.array(support) / 9
    np.testing.assert_allclose(
        report.weighted, [w @ precision, w @ recall, w @ np.array(f1)], rtol=1e-12
    )
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["class0", "0.6000", "0.7500", f"{f1[0]:.4f}", "4"]
    assert lines[-2].split()[:2] == ["macro", "avg"] and lines[-1].split()[:2] == [
        "weighted",
        "avg",
    ]
    assert len({len(line) for line in lines if line}) == 1  # aligned columns
    assert str(report) == text.rstrip("\n")


def test_report_without_predictions_or_items_of_a_class(tmp_path):
    targets = torch.tensor([0, 0, 1, 1])
    preds = torch.tensor([0, 1, 1, 1])  # class 2: no item, never predicted
    interp = ClassificationInterpretation.from_learner(
        fixed_learner(F.one_hot(preds, 3).float(), targets, tmp_path)
    )
    report = interp.classification_report()
    assert report.precision[2] == 0 and report.recall[2] == 0 and report.f1[2] == 0
    assert np.isfinite(report.precision).all() and report.support.tolist() == [2, 2, 0]


# ---- plot_top_losses: what the model saw ------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny image folder written with PIL: 3 classes of colored squares with noise, 20 px,
    4 train + 3 valid each."""
    root = tmp_path_factory.mktemp("tiny_folder")
    rng = np.random.default_rng(0)
    colors = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210)}
    for split, n in (("train", 4), ("valid", 3)):
        for name, rgb in colors.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 90, (20, 20, 3))
                img[4:16, 4:16] = np.array(rgb) + rng.integers(-30, 30, (12, 12, 3))
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
                    root / split / name / f"{name}_{i}.png"
                )
    return root


def _folder_bunch(folder, tmp_path):
    data = ImageDataBunch.from_folder(
        folder, ds_tfms=None, size=16, bs=4, num_workers=0, seed=0
    ).normalize(([0.3, 0.3, 0.3], [0.25, 0.2, 0.3]))
    data.path = tmp_path
    return data


def test_plot_top_losses_shows_what_the_model_saw(folder, tmp_path):
    data = _folder_bunch(folder, tmp_path)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    learn = make_learner(data=data, model=model, splitter=None)
    interp = ClassificationInterpretation.from_learner(learn)
    inputs, _, _ = learn.get_preds(with_input=True)
    fig = interp.plot_top_losses(4)
    assert isinstance(fig, Figure)
    losses, idxs = interp.top_losses(4)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 4
    for ax, i, loss in zip(shown, idxs.tolist(), losses.tolist(), strict=True):
        pred, actual = interp.classes[interp.pred_class[i]], interp.classes[interp.targets[i]]
        prob = float(interp.probs[i, interp.targets[i]])
        assert ax.get_title() == f"{pred} / {actual}\n{loss:.2f} / {prob:.2f}"
        img = np.asarray(ax.get_images()[0].get_array())
        expected = data.denorm(inputs[i : i + 1])[0].permute(1, 2, 0).numpy()
        assert img.shape == (16, 16, 3)
        np.testing.assert_allclose(img, expected, atol=1e-5)
    assert (tmp_path / "plots" / "top_losses.png").is_file()
    assert fig._suptitle.get_text().endswith("probability of actual")  # fastai v1's
    data.fastai_version = 2  # v2's data (ImageDataLoaders): the prediction's probability
    fig = interp.plot_top_losses(4)
    assert fig._suptitle.get_text().endswith("probability of prediction")
    for ax, i in zip([ax for ax in fig.axes if ax.get_images()], idxs.tolist(), strict=True):
        prob = float(interp.probs[i, interp.pred_class[i]])
        assert ax.get_title().endswith(f" / {prob:.2f}")


def _geometry_and_titles(fig):
    """(rows, cols) of an image grid, and the titles of its axes that hold an image."""
    shown = [ax for ax in fig.axes if ax.get_images()]
    return fig.axes[0].get_subplotspec().get_gridspec().get_geometry(), [
        ax.get_title() for ax in shown
    ]


def _suptitle_clear(fig: Figure) -> None:
    """The figure's suptitle lies inside the figure and overlaps no title of its axes, as
    drawn into the PNG."""
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    sup = fig.get_suptitle() and fig._suptitle.get_window_extent(renderer)
    assert sup, "no suptitle"
    assert fig.bbox.x0 <= sup.x0 and sup.x1 <= fig.bbox.x1 and sup.y1 <= fig.bbox.y1
    for ax in fig.axes:
        title = ax.title.get_window_extent(renderer)
        assert not (title.width and sup.overlaps(title)), f"{sup} overlaps the title {title}"


def _three_class_interp(folder, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    learn = make_learner(data=_folder_bunch(folder, tmp_path), model=model, splitter=None)
    return ClassificationInterpretation.from_learner(learn)


@pytest.mark.parametrize(
    ("k", "kwargs", "geometry", "n"),
    [
        (4, {}, (2, 2), 4),  # fastai v1's near-square grid, as before
        (5, {}, (2, 3), 5),
        (5, {"nrows": 1}, (1, 5), 5),  # fastai v2
        (5, {"ncols": 2}, (3, 2), 5),
        (9, {"nrows": 1, "ncols": 3}, (1, 3), 3),  # the grid holds 3 of the 9
        (2, {"nrows": 2, "ncols": 2}, (2, 2), 2),
        (4, {"nrows": 2, "largest": False}, (2, 2), 4),
        (4, {"ncols": 4, "figsize": (8, 3)}, (1, 4), 4),
        (3, {"nrows": 1}, (1, 3), 3),
        (6, {"nrows": 2}, (2, 3), 6),
    ],
)
def test_plot_top_losses_grid_nrows_ncols(folder, tmp_path, k, kwargs, geometry, n):
    interp = _three_class_interp(folder, tmp_path)
    fig = interp.plot_top_losses(k, **kwargs)
    assert isinstance(fig, Figure)
    got_geometry, titles = _geometry_and_titles(fig)
    assert got_geometry == geometry and len(titles) == n
    assert len(fig.axes) == geometry[0] * geometry[1]
    losses, idxs = interp.top_losses(n, kwargs.get("largest", True))  # the n first of the k
    for title, i, loss in zip(titles, idxs.tolist(), losses.tolist(), strict=True):
        pred, actual = interp.classes[interp.pred_class[i]], interp.classes[interp.targets[i]]
        assert title.startswith(f"{pred} / {actual}\n{loss:.2f} / ")
    if "figsize" in kwargs:
        assert tuple(fig.get_size_inches()) == kwargs["figsize"]
    name = "top_losses" if kwargs.get("largest", True) else "top_losses_smallest"
    assert (tmp_path / "plots" / f"{name}.png").is_file()
    _suptitle_clear(fig)


def test_fastai_v2s_top_losses_items_and_ranks(folder, tmp_path):
    """fastai 2.8's top_losses(k, items=True) and plot_top_losses(range(2, 5)) (ranks of the
    sorted losses) were refused ("unexpected keyword", "k should be an int")."""
    interp = _three_class_interp(folder, tmp_path)
    losses, idxs, items = interp.top_losses(3, items=True)
    assert items == [interp.data.valid_ds.items[i] for i in idxs.tolist()]
    all_losses, all_idxs = interp.top_losses()
    fig = interp.plot_top_losses(range(2, 5))
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert [float(t.split("\n")[1].split(" / ")[0]) for t in titles] == pytest.approx(
        all_losses[2:5].tolist(), abs=0.006
    )
    fig = interp.plot_top_losses([0], largest=False)
    title = next(ax.get_title() for ax in fig.axes if ax.get_images())
    assert float(title.split("\n")[1].split(" / ")[0]) == pytest.approx(
        float(interp.losses.min()), abs=0.006
    )
    with pytest.raises(ValueError, match=r"k: ranks should be in \[0, "):
        interp.plot_top_losses([len(interp)])
    with pytest.raises(TypeError, match="k: ranks should be ints, got str"):
        interp.plot_top_losses(["a"])
    with pytest.raises(TypeError, match="items should be a bool"):
        interp.top_losses(3, items="yes")


def test_plot_top_losses_grid_errors(folder, tmp_path):
    interp = _three_class_interp(folder, tmp_path)
    with pytest.raises(ValueError, match="nrows should be >= 1, got 0"):
        interp.plot_top_losses(4, nrows=0)
    with pytest.raises(TypeError, match="ncols should be an int, got float 2.0"):
        interp.plot_top_losses(4, ncols=2.0)
    with pytest.raises(TypeError, match="positional"):
        interp.plot_top_losses(4, None, True, False, 16, 0.6, "magma", 1)  # keywords only


def _cnn_like_learner(folder, tmp_path):
    """create_cnn's shape, small: nn.Sequential(body, head), BatchNorm in both."""
    data = _folder_bunch(folder, tmp_path)
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU())  # fmt: skip
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(5), nn.Linear(5, 3))
    learn = make_learner(data=data, model=nn.Sequential(body, head), splitter=None)
    learn.fit(1, lr=0.05)  # BatchNorm statistics away from their initial values
    return learn


def test_heatmaps_equal_fastai_v1_grad_cam_item_by_item(folder, tmp_path):
    learn = _cnn_like_learner(folder, tmp_path)
    interp = ClassificationInterpretation.from_learner(learn)
    idxs, classes = [0, 4, 7], [2, 0, 1]
    learn.model.train()
    maps = interp.heatmaps(idxs, classes)
    assert learn.model.training and learn.model[0][1].training  # modes came back
    assert all(p.grad is None for p in learn.model.parameters())  # gradients untouched
    # the oracle: fastai v1's way, one item at a time, hooks on the body, backward()
    model = learn.model.eval()
    x_all = learn.data.preprocess([learn.data.valid_ds[i][0] for i in idxs]).float()
    for x, c, got in zip(x_all, classes, maps, strict=True):
        stored = {}

        def keep(module, inputs, out, stored=stored):
            out.retain_grad()
            stored["a"] = out

        handle = model[0].register_forward_hook(keep)
        model(x[None])[0, c].backward()
        handle.remove()
        acts, grad = stored["a"][0].detach(), stored["a"].grad[0]
        want = F.relu((acts * grad.mean((1, 2))[:, None, None]).sum(0))
        assert got.shape == (8, 8)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-6)
        model.zero_grad(set_to_none=True)
    assert any(m.max() > 0 for m in maps)


def test_plot_top_losses_with_heatmaps(folder, tmp_path):
    learn = _cnn_like_learner(folder, tmp_path)
    interp = ClassificationInterpretation.from_learner(learn)
    fig = interp.plot_top_losses(4, heatmap=True, alpha=0.5)
    _, idxs = interp.top_losses(4)
    maps = interp.heatmaps(idxs.tolist(), interp.targets[idxs].tolist())
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 4
    for ax, m in zip(shown, maps, strict=True):
        image, overlay = ax.get_images()
        np.testing.assert_allclose(np.asarray(overlay.get_array()), m)
        assert overlay.get_alpha() == 0.5 and overlay.get_extent() == [0, 16, 16, 0]
        assert overlay.get_cmap().name == "magma"
    # an 8 x 8 map has 64 cells: below a threshold of 65 no overlay is drawn
    fig = interp.plot_top_losses(4, heatmap=True, heatmap_thresh=65)
    assert all(len(ax.get_images()) == 1 for ax in fig.axes if ax.get_images())
    with pytest.raises(TypeError, match="heatmap should be a bool"):
        interp.plot_top_losses(4, heatmap="yes")
    with pytest.raises(ValueError, match="alpha should be a number in"):
        interp.plot_top_losses(4, heatmap=True, alpha=2)
    with pytest.raises(ValueError, match="cmap should be a matplotlib colormap name"):
        interp.plot_top_losses(4, heatmap=True, cmap="nope")
    with pytest.raises(ValueError, match="heatmap_thresh should be an int"):
        interp.plot_top_losses(4, heatmap=True, heatmap_thresh=-1)


def test_fastai_v1_dataset_types(folder, tmp_path):
    """v1 code passes ds_type=DatasetType.Valid / .Train: the same as the strings."""
    learn = _cnn_like_learner(folder, tmp_path)
    for name, member in (("valid", DatasetType.Valid), ("train", DatasetType.Train)):
        assert member == name and f"{member}" == name
        for a, b in zip(learn.get_preds(member), learn.get_preds(name), strict=True):
            assert torch.equal(a, b)
        assert learn.validate(member) == learn.validate(name)
        interp = ClassificationInterpretation.from_learner(learn, ds_type=member)
        assert interp.ds_type == name and len(interp) == len(getattr(learn.data, f"{name}_ds"))
        assert isinstance(interp.plot_top_losses(2), Figure)
        first = learn.data.one_batch(member)[1]
        dl = getattr(learn.data, f"{name}_dl")
        dl.set_epoch(dl.epoch)  # a training set's one_batch gives the next batch at each call
        assert torch.equal(first, learn.data.one_batch(name)[1])
        learn.data.show_batch(rows=2, ds_type=member)
        assert (tmp_path / "plots" / f"show_batch_{name}.png").is_file()


def test_heatmap_needs_a_body_and_a_head(folder, tmp_path):
    learn = make_learner(data=_folder_bunch(folder, tmp_path), model=Flat(), splitter=None)
    interp = ClassificationInterpretation.from_learner(learn)
    with pytest.raises(ValueError, match=r"create_cnn's nn.Sequential\(body, head\), got Flat"):
        interp.plot_top_losses(2, heatmap=True)
    assert isinstance(interp.plot_top_losses(2), Figure)  # without heatmap: fine


class Flat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.mean((2, 3)))


def _fake_image_learner(tmp_path, images: torch.Tensor, logits: torch.Tensor, targets):
    learn = fixed_learner(logits, targets, tmp_path, bs=8)
    learn.data.valid_ds = ImageList(images, targets)
    return learn


@pytest.mark.parametrize("channels", [1, 3])
def test_plot_top_losses_of_stored_images(tmp_path, channels):
    """A data set without preprocess: uint8 images shown as stored, 1-channel in gray."""
    g = torch.Generator().manual_seed(channels)
    images = torch.randint(0, 256, (10, channels, 12, 12), dtype=torch.uint8, generator=g)
    logits, targets = random_case(10, 4, seed=channels)
    learn = _fake_image_learner(tmp_path, images, logits, targets)
    interp = ClassificationInterpretation.from_learner(learn)
    fig = interp.plot_top_losses(5)
    _, idxs = interp.top_losses(5)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 5 and len(fig.axes) == 6  # a 3 x 2 grid, the last cell empty
    for ax, i in zip(shown, idxs.tolist(), strict=True):
        img = np.asarray(ax.get_images()[0].get_array())
        expected = images[i].float().div(255).permute(1, 2, 0).numpy()
        if channels == 1:
            expected = expected[..., 0]
            assert ax.get_images()[0].get_cmap().name == "gray"
        np.testing.assert_allclose(img, expected)


def test_plot_top_losses_needs_a_data_set(tmp_path):
    logits, targets = random_case(10, 3)
    interp = ClassificationInterpretation.from_learner(fixed_learner(logits, targets, tmp_path))
    with pytest.raises(ValueError, match="valid_ds"):
        interp.plot_top_losses(3)


# ---- plot_confusion_matrix ------------------------------------------------------------------
def test_plot_confusion_matrix_cells(tmp_path):
    logits, targets = random_case(300, 6, seed=3)
    interp = ClassificationInterpretation.from_learner(fixed_learner(logits, targets, tmp_path))
    cm = interp.confusion_matrix()
    fig = interp.plot_confusion_matrix()
    ax = fig.axes[0]
    assert np.array_equal(np.asarray(ax.get_images()[0].get_array()), cm)
    cells = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
    }
    assert cells == {(a, p): str(cm[a, p]) for a in range(6) for p in range(6)}
    assert [t.get_text() for t in ax.get_xticklabels()] == interp.classes
    assert ax.get_xlabel() == "Predicted" and ax.get_ylabel() == "Actual"

    fig = interp.plot_confusion_matrix(normalize=True)
    shown = np.asarray(fig.axes[0].get_images()[0].get_array())
    np.testing.assert_allclose(shown, cm / cm.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(shown.sum(axis=1), 1.0)


def test_plot_confusion_matrix_fastai_v1_arguments(tmp_path):
    """The lesson notebook's interp.plot_confusion_matrix(figsize=(12,12), dpi=60); v1's
    title and plot_txt."""
    logits, targets = random_case(100, 4, seed=2)
    interp = ClassificationInterpretation.from_learner(fixed_learner(logits, targets, tmp_path))
    fig = interp.plot_confusion_matrix(figsize=(12, 12), dpi=60)
    assert fig.dpi == 60
    with Image.open(tmp_path / "plots" / "confusion_matrix.png") as png:
        assert png.size == (720, 720)
    fig = interp.plot_confusion_matrix(title="Pets", plot_txt=False)
    assert fig.axes[0].get_title() == "Pets" and len(fig.axes[0].texts) == 0
    with pytest.raises(ValueError, match="dpi should be a number > 0 or None, got 0"):
        interp.plot_confusion_matrix(dpi=0)
    with pytest.raises(TypeError, match="plot_txt should be a bool"):
        interp.plot_confusion_matrix(plot_txt="no")
    with pytest.raises(TypeError, match="title should be a str or None"):
        interp.plot_confusion_matrix(title=3)


def test_fastai_v1_keywords_of_the_plots(folder, tmp_path):
    """v1's plot_confusion_matrix(slice_size=, return_fig=) and plot_top_losses(show_text=,
    return_fig=) were unexpected keywords."""
    data = _folder_bunch(folder, tmp_path)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    interp = ClassificationInterpretation.from_learner(
        make_learner(data=data, model=model, splitter=None)
    )
    assert isinstance(interp.plot_confusion_matrix(slice_size=10, return_fig=True), Figure)
    assert interp.plot_confusion_matrix(return_fig=False) is None
    fig = interp.plot_top_losses(4, show_text=False, return_fig=True)
    assert [ax.get_title() for ax in fig.axes if ax.get_images()] == [""] * 4
    assert fig._suptitle is None
    assert interp.plot_top_losses(4, return_fig=False) is None
    with pytest.raises(TypeError, match="show_text"):
        interp.plot_top_losses(4, show_text="no")
    with pytest.raises(ValueError, match="slice_size"):
        interp.plot_confusion_matrix(slice_size=0)


def test_plot_confusion_matrix_top(tmp_path):
    logits, targets = random_case(400, 10, seed=4)
    interp = ClassificationInterpretation.from_learner(fixed_learner(logits, targets, tmp_path))
    cm = interp.confusion_matrix()
    off = cm - np.diag(np.diag(cm))
    involvement = off.sum(0) + off.sum(1)
    keep = sorted(sorted(range(10), key=lambda k: (-involvement[k], k))[:3])
    fig = interp.plot_confusion_matrix(top=3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [interp.classes[k] for k in keep]
    assert np.array_equal(np.asarray(ax.get_images()[0].get_array()), cm[np.ix_(keep, keep)])
    assert (tmp_path / "plots" / "confusion_matrix_top3.png").is_file()
    assert len(interp.plot_confusion_matrix(top=50).axes[0].get_xticklabels()) == 10


# ---- 100 classes x 20,000 items: memory -----------------------------------------------------
def _peak_rss_reset() -> bool:
    """Reset this process's peak RSS (Linux: clear_refs 5); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_100_classes_20000_items_memory(tmp_path):
    n, c = 20_000, 100
    logits, targets = random_case(n, c, seed=5)
    learn = fixed_learner(logits, targets, tmp_path, bs=500)
    interp = ClassificationInterpretation.from_learner(learn)  # warm-up: allocator, code paths
    del interp
    if not _peak_rss_reset():
        pytest.skip("cannot reset the peak RSS of this process (/proc/self/clear_refs)")
    before = _status_kib("VmRSS")
    interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    confused = interp.most_confused()
    report = interp.classification_report()
    interp.top_losses(20)
    growth_mib = (_status_kib("VmHWM") - before) / 1024
    # probs [N, C] float32 is 7.6 MiB; the pass holds the logits, their concatenation and the
    # softmax at once (about 3x that). A C x C x N comparison would be 190 MiB as bool.
    assert growth_mib < 64, f"peak RSS grew by {growth_mib:.0f} MiB"
    assert interp.probs.shape == (n, c) and interp.probs.dtype == torch.float32
    cached = [interp.probs, interp.pred_class, interp.targets, interp.losses, interp.idxs]
    assert sum(t.numel() * t.element_size() for t in cached) <= n * c * 4 + 4 * n * 8
    assert cm.sum() == n and sum(k for _, _, k in confused) == n - np.trace(cm)
    assert report.support.sum() == n


# ---- bad input ------------------------------------------------------------------------------
def test_bad_arguments(tmp_path):
    logits, targets = random_case(20, 3)
    learn = fixed_learner(logits, targets, tmp_path)
    interp = ClassificationInterpretation.from_learner(learn)
    with pytest.raises(ValueError, match="ds_type"):
        ClassificationInterpretation.from_learner(learn, ds_type="test")
    with pytest.raises(TypeError, match="learn"):
        ClassificationInterpretation.from_learner(object())
    for bad, error in ((0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="k should"):
            interp.top_losses(bad)
    with pytest.raises(TypeError, match="largest"):
        interp.top_losses(3, largest=1)
    with pytest.raises(ValueError, match="min_val should be >= 0"):
        interp.most_confused(-1)
    with pytest.raises(TypeError, match="min_val should be a number"):
        interp.most_confused("2")
    assert interp.most_confused(1.5) == interp.most_confused(2)  # fastai takes any number
    with pytest.raises(ValueError, match="top"):
        interp.plot_confusion_matrix(top=0)
    with pytest.raises(ValueError, match="cmap"):
        interp.plot_confusion_matrix(cmap="no_such_map")
    with pytest.raises(ValueError, match="figsize"):
        interp.plot_confusion_matrix(figsize=(4, -1))
    with pytest.raises(TypeError, match="normalize"):
        interp.plot_confusion_matrix(normalize="yes")
    probs = torch.softmax(logits, 1)
    losses = torch.zeros(20)
    with pytest.raises(ValueError, match="targets should be class indices"):
        ClassificationInterpretation(learn, probs, targets + 3, losses)
    with pytest.raises(ValueError, match="targets should be an int"):
        ClassificationInterpretation(learn, probs, targets.float(), losses)
    with pytest.raises(ValueError, match="losses"):
        ClassificationInterpretation(learn, probs, targets, losses[:5])
    with pytest.raises(ValueError, match="probs"):
        ClassificationInterpretation(learn, probs[:, None], targets, losses)
    with pytest.raises(ValueError, match="classes"):
        ClassificationInterpretation(learn, probs[:, :2], targets.clamp(max=1), losses)


def test_unreadable_validation_images_keep_rows_matched_to_their_images(tmp_path):
    """get_preds leaves unreadable files out; each row must still point at its own image."""
    root = demo_dataset(tmp_path / "demo", n_per_class=3, size=32)
    valid = sorted((root / "valid").rglob("*.jpg"))
    bad = break_images(valid[1:4])
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, seed=1)
    model = tiny_model()
    model[-1] = nn.Linear(8, data.c)
    learn = make_learner(data=data, model=model, path=tmp_path)
    with pytest.warns(UserWarning) as record:
        interp = ClassificationInterpretation.from_learner(learn)
    said = [str(w.message) for w in record]
    assert any(  # the rows and top_losses' indices differ: said, and how to make them agree
        m.startswith("ClassificationInterpretation: 3 of the 12 valid images are unreadable")
        and "top_losses gives data set indices" in m
        and "interp.idxs" in m
        and "skip_bad=True" in m
        for m in said
    ), said
    items = list(data.valid_ds.items)
    expected = [i for i, f in enumerate(items) if f not in set(bad)]
    assert interp.idxs.tolist() == expected and len(interp) == len(items) - len(bad)
    assert interp.targets.tolist() == [data.valid_ds.labels[i] for i in expected]
    assert isinstance(interp.plot_top_losses(len(expected)), Figure)


# ---- show_results -----------------------------------------------------------------------------
def _shown(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_images()]


def test_show_results_titles_colours_and_images(folder, tmp_path):
    """Each cell: an item spread evenly over the set, its image as the model saw it,
    'actual\\nprediction' in green when they agree and red when not; predictions equal
    learn.predict's, modes put back."""
    learn = _cnn_like_learner(folder, tmp_path)
    data = learn.data
    learn.model.train()
    fig = learn.show_results(rows=2)
    assert learn.model.training
    inputs, _, targets = learn.get_preds(with_input=True)
    shown = _shown(fig)
    assert len(shown) == 4
    for i, ax in zip([0, 3, 5, 8], shown, strict=True):  # round(linspace(0, 8, 4))
        actual = data.classes[int(targets[i])]
        pred = learn.predict(data.valid_ds.items[i])[0]
        assert ax.get_title() == f"{actual}\n{pred}"
        assert ax.title.get_color() == ("green" if actual == pred else "red")
        expected = data.denorm(inputs[i : i + 1])[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), expected, atol=1e-5)
    assert (tmp_path / "plots" / "show_results_valid.png").is_file()
    # max_n (fastai v2) instead of rows; more than the set holds shows the whole set
    assert len(_shown(learn.show_results(max_n=5))) == 5
    assert len(_shown(learn.show_results(max_n=100))) == len(data.valid_ds)
    train = _shown(learn.show_results("train", rows=1))
    assert [ax.get_title().split("\n")[0] for ax in train] == [data.classes[data.train_ds[0][1]]]
    assert (tmp_path / "plots" / "show_results_train.png").is_file()


def test_show_results_colours_right_green_and_wrong_red(folder, tmp_path):
    """A model that always answers class 0: its items are green, the others red."""
    data = _folder_bunch(folder, tmp_path)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    learn = make_learner(data=data, model=model, splitter=None)
    shown = _shown(learn.show_results(max_n=len(data.valid_ds)))
    labels = data.valid_ds.labels
    assert 0 < labels.count(0) < len(labels)
    for ax, y in zip(shown, labels, strict=True):
        assert ax.get_title() == f"{data.classes[y]}\n{data.classes[0]}"
        assert ax.title.get_color() == ("green" if y == 0 else "red")


def test_show_results_passes_over_unreadable_files(tmp_path):
    root = demo_dataset(tmp_path / "demo", n_per_class=3, size=32)
    valid = sorted((root / "valid").rglob("*.jpg"))
    bad = set(break_images(valid[1:4]))
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, seed=1)
    model = tiny_model()
    model[-1] = nn.Linear(8, data.c)
    learn = make_learner(data=data, model=model, path=tmp_path)
    items = data.valid_ds.items
    kept = [i for i, f in enumerate(items) if f not in bad]
    shown = _shown(learn.show_results(max_n=len(items)))
    assert len(shown) == len(kept)
    actual = [ax.get_title().split("\n")[0] for ax in shown]
    assert actual == [data.classes[data.valid_ds.labels[i]] for i in kept]


def test_show_results_fastai_v2_arguments(folder, tmp_path):
    """nrows x ncols (fastai v2's grid), ds_idx, shuffle=False (the first items), ctxs (Axes
    of the user's figure: drawn into, nothing saved)."""
    import matplotlib.pyplot as plt

    learn = _cnn_like_learner(folder, tmp_path)
    fig = learn.show_results(max_n=6, nrows=2, ncols=3)
    assert len(_shown(fig)) == 6
    assert _shown(fig)[0].get_subplotspec().get_gridspec().get_geometry() == (2, 3)
    assert len(_shown(learn.show_results(nrows=1, ncols=2))) == 2  # 9 asked, 2 cells
    first = _shown(learn.show_results(max_n=2, ds_idx=0, shuffle=False))
    classes = learn.data.classes
    expected = [classes[learn.data.train_ds[i][1]] for i in range(2)]
    assert [ax.get_title().split("\n")[0] for ax in first] == expected
    saved = sorted(p.name for p in (tmp_path / "plots").iterdir())
    user, axs = plt.subplots(1, 3)
    assert learn.show_results(ctxs=axs) is None
    assert all(ax.get_images() for ax in axs) and "\n" in axs[0].get_title()
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == saved
    plt.close(user)
    # fastai v2's dl: a test set's items, titled with the prediction alone when unlabelled
    files = learn.data.valid_ds.items[:3]
    fig = learn.show_results(dl=learn.dls.test_dl(files))
    assert [ax.get_title() for ax in _shown(fig)] == [learn.predict(f)[0] for f in files]
    assert fig._suptitle.get_text() == "prediction"
    labelled = _shown(learn.show_results(dl=learn.dls.test_dl(files, with_labels=True)))
    assert [ax.get_title().split("\n")[0] for ax in labelled] == [
        learn.data.classes[y] for y in learn.data.valid_ds.labels[:3]
    ]
    with pytest.raises(TypeError, match="dl: expected a loader of image items"):
        learn.show_results(dl=[1, 2])
    with pytest.raises(TypeError, match="give ds_type .* or ds_idx"):
        learn.show_results("train", ds_idx=0)
    with pytest.raises(TypeError, match="ctxs should be matplotlib Axes"):
        learn.show_results(ctxs=[1, 2])
    with pytest.raises(TypeError, match="shuffle should be a bool"):
        learn.show_results(shuffle="no")


def test_show_results_bad_arguments(folder, tmp_path):
    model = tiny_model()
    model[-1] = nn.Linear(8, 3)  # the folder's 3 classes
    learn = make_learner(data=_folder_bunch(folder, tmp_path), model=model, splitter=None)
    with pytest.raises(ValueError, match="ds_type should be 'valid' or 'train', got 'test'"):
        learn.show_results("test")
    with pytest.raises(ValueError, match="rows should be >= 1, got 0"):
        learn.show_results(rows=0)
    with pytest.raises(TypeError, match="rows should be an int, got float 1.5"):
        learn.show_results(rows=1.5)
    with pytest.raises(ValueError, match="max_n should be >= 1, got 0"):
        learn.show_results(max_n=0)
    with pytest.raises(ValueError, match="figsize"):
        learn.show_results(figsize=(0, 3))
    logits, targets = random_case(8, 3)
    with pytest.raises(TypeError, match="show_results needs learn.data with valid_ds"):
        fixed_learner(logits, targets, tmp_path).show_results()


# ---- fastai v2's from_learner(learn, ds_idx=1, dl=None, act=None) ------------------------------
def test_from_learner_ds_idx_and_ds_type_name_the_same_sets(folder, tmp_path):
    """ds_idx 1 / 0 (fastai v2) is ds_type 'valid' / 'train' (v1, also positional); both
    together must agree."""
    learn = _cnn_like_learner(folder, tmp_path)
    valid = ClassificationInterpretation.from_learner(learn, ds_idx=1)
    train = ClassificationInterpretation.from_learner(learn, 0)
    assert valid.ds_type == "valid" and len(valid) == len(learn.data.valid_ds)
    assert train.ds_type == "train" and len(train) == len(learn.data.train_ds)
    plain = ClassificationInterpretation.from_learner(learn)
    assert torch.equal(plain.losses, valid.losses) and plain.ds_type == "valid"
    v1 = ClassificationInterpretation.from_learner(learn, DatasetType.Train)
    assert v1.ds_type == "train" and torch.equal(v1.targets, train.targets)
    both = ClassificationInterpretation.from_learner(learn, ds_idx=0, ds_type="train")
    assert torch.equal(both.losses, train.losses)
    with pytest.raises(ValueError, match=r"ds_idx=0 \(train\) and ds_type='valid'"):
        ClassificationInterpretation.from_learner(learn, ds_idx=0, ds_type="valid")
    with pytest.raises(ValueError, match="ds_idx should be 0"):
        ClassificationInterpretation.from_learner(learn, 2)
    with pytest.raises(TypeError, match="given twice"):
        ClassificationInterpretation.from_learner(learn, "valid", ds_type="valid")


def test_from_learner_dl_and_act(folder, tmp_path):
    """dl: any loader of labelled batches, e.g. test_dl(files, with_labels=True), in its
    order; plot_top_losses takes its images from dl.dataset. act replaces softmax."""
    learn = _cnn_like_learner(folder, tmp_path)
    files = sorted((folder / "valid").rglob("*.png"))[::-1]
    dl = learn.data.test_dl(files, with_labels=True)
    interp = ClassificationInterpretation.from_learner(learn, dl=dl)
    probs, targets, losses = learn.get_preds(dl=dl, with_loss=True)
    assert interp.ds_type is None and interp.dl is dl and len(interp) == len(files)
    assert torch.equal(interp.targets, targets) and torch.equal(interp.losses, losses)
    assert interp.classes == list(learn.data.classes)
    assert [interp.classes[t] for t in interp.targets] == [f.parent.name for f in files]
    assert isinstance(interp.plot_top_losses(3), Figure)
    assert "dl items" in repr(interp)
    scores = ClassificationInterpretation.from_learner(learn, dl=dl, act=lambda x: x)
    assert torch.allclose(scores.probs.softmax(1), probs, atol=1e-6)
    with pytest.raises(ValueError, match="give dl or a data set"):
        ClassificationInterpretation.from_learner(learn, 1, dl)
    with pytest.raises(ValueError, match="with_loss needs targets"):  # get_preds' check
        ClassificationInterpretation.from_learner(learn, dl=learn.data.test_dl(files))
    with pytest.raises(ValueError, match="dl and tta=True"):
        ClassificationInterpretation.from_learner(learn, dl=dl, tta=True)


def test_plot_top_losses_of_more_items_than_there_are_shows_all_with_a_warning(folder, tmp_path):
    interp = _three_class_interp(folder, tmp_path)
    n = len(interp)
    with pytest.warns(UserWarning, match=rf"k: {n + 5} items asked for and the interpretation "
                      rf"holds {n}; showing all {n}"):  # fmt: skip
        fig = interp.plot_top_losses(n + 5)
    assert sum(1 for ax in fig.axes if ax.get_images()) == n


def test_fastai_v2s_interp_getitem_and_show_results(folder, tmp_path):
    """fastai 2.8's interp[idxs] (inputs, probs, targets, decoded, losses) and
    interp.show_results(idxs) were missing ('not subscriptable', no attribute)."""
    interp = _three_class_interp(folder, tmp_path)
    learn = interp.learn
    inputs, probs, targets, decoded, losses = learn.get_preds(
        with_input=True, with_decoded=True, with_loss=True
    )
    _, top = interp.top_losses(3)
    for idxs in (top, top.tolist(), range(2, 5), 4):
        listed = [idxs] if isinstance(idxs, int) else list(torch.as_tensor(idxs).tolist())
        x, p, t, d, loss = interp[idxs]
        torch.testing.assert_close(x, inputs[listed], atol=1e-5, rtol=0)
        torch.testing.assert_close(p, probs[listed], atol=1e-6, rtol=0)
        assert t.tolist() == targets[listed].tolist() and d.tolist() == decoded[listed].tolist()
        torch.testing.assert_close(loss, losses[listed], atol=1e-5, rtol=1e-5)
    fig = interp.show_results(top)
    shown = _shown(fig)
    assert len(shown) == 3
    for ax, i in zip(shown, top.tolist(), strict=True):
        actual, pred = interp.classes[interp.targets[i]], interp.classes[interp.pred_class[i]]
        assert ax.get_title() == f"{actual}\n{pred}"
        assert ax.title.get_color() == ("green" if actual == pred else "red")
        expected = learn.data.denorm(inputs[i : i + 1])[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), expected, atol=1e-5)
    assert (tmp_path / "plots" / "interp_results.png").is_file()
    n = len(learn.data.valid_ds)
    with pytest.raises(
        IndexError, match=rf"idxs: expected data set indices in \[0, {n}\), got {n}"
    ):
        interp[n]
    assert interp[-1][2].tolist() == [int(targets[n - 1])]  # from the end, as a list's
    assert interp[2:5][2].tolist() == targets[2:5].tolist()
    with pytest.raises(TypeError, match="idxs: expected data set indices .ints., got str 'a'"):
        interp.show_results(["a"])
    with pytest.raises(ValueError, match="idxs: an empty list shows nothing"):
        interp.show_results([])


def test_interp_getitem_of_an_unreadable_item_says_it_has_no_prediction(tmp_path):
    root = demo_dataset(tmp_path / "demo", n_per_class=3, size=32)
    valid = sorted((root / "valid").rglob("*.jpg"))
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, seed=1)
    bad = break_images(valid[:3])
    model = tiny_model()
    model[-1] = nn.Linear(8, data.c)
    learn = make_learner(data=data, model=model, path=tmp_path)
    with pytest.warns(UserWarning, match="unreadable"):
        interp = ClassificationInterpretation.from_learner(learn)
    i = list(data.valid_ds.items).index(bad[0])
    with pytest.raises(ValueError, match=rf"idxs: item {i} has no prediction .its image is"):
        interp[i]
    j = interp.idxs[0].item()
    assert interp[j][2].tolist() == [data.valid_ds.labels[j]]
