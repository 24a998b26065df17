"""ImagesCleaner and ImageClassifierCleaner (fastai v2's widgets): dropdown options, max_n and
thumbnails; per-item losses in data set order against `learn.predict` one image at a time (the
training set without augmentation); the images of one ACTUAL class, highest loss first;
re-fills when a dropdown changes; delete() / change(); fastbook's chapter-2 loop on a copy of
the folder; the ImportError without ipywidgets and the errors of learners without files."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import easy_bunch, make_learner, tiny_model
from PIL import Image
from torch import nn

from fastcore_ext.data import ImageDataBunch
from fastcore_ext.exported import InferenceData
from fastcore_ext.learner import Learner
from fastcore_ext.widgets import ImageClassifierCleaner, ImagesCleaner

ipywidgets = pytest.importorskip("ipywidgets")

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

CLASSES = ("blue", "green", "red")  # the folder's classes, in vocab order
N_TRAIN, N_VALID = 4, 3  # images per class
SHAPE = (20, 30)  # (h, w) of every image: not square, so a thumbnail's aspect shows


def write_folder(root: Path) -> Path:
    """train/<class>/ and valid/<class>/ of PNGs, each a random color with noise (so the
    model's outputs differ from image to image)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("valid", N_VALID)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                px = rng.integers(0, 256, (1, 1, 3)) + rng.integers(-40, 40, (*SHAPE, 3))
                px = px.clip(0, 255).astype(np.uint8)
                Image.fromarray(px).save(root / split / name / f"{name}_{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("cleaner_folder"))


@pytest.fixture
def folder_copy(folder, tmp_path) -> Path:
    """A copy of the folder that a test may change."""
    return Path(shutil.copytree(folder, tmp_path / "images"))


def learner(root: Path, tmp_path: Path) -> Learner:
    """An untrained learner on the folder: random augmentation on the training set (the
    cleaner must not see it), a model that predicts 'blue' for every image (a large bias),
    with losses that still differ from image to image."""
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, seed=0)
    data.path = tmp_path
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    with torch.no_grad():
        model[-1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    return make_learner(data=data, model=model, splitter=None)


def predicted_losses(learn: Learner, files: list[Path]) -> list[float]:
    """The cross-entropy of each file, one `learn.predict` at a time, its actual class being
    its folder's name."""
    out = []
    for fn in files:
        _, _, probs = learn.predict(fn)
        out.append(-math.log(float(probs[CLASSES.index(fn.parent.name)])))
    return out


def choose(cleaner, choices: dict[int, str]) -> None:
    """Set the dropdowns of the images shown, as a user clicks them."""
    children = (cleaner.iw if hasattr(cleaner, "iw") else cleaner).widget.children
    for i, value in choices.items():
        children[i].children[1].value = value


# ---- ImagesCleaner ------------------------------------------------------------------------------
def test_images_cleaner_options_max_n_and_thumbnails(folder):
    files = sorted((folder / "train" / "red").iterdir())
    iw = ImagesCleaner(("cat", "dog"), height=10, width=12, max_n=3)
    assert iw.opts == ("<Keep>", "<Delete>", "cat", "dog")
    iw.set_fns([str(f) for f in files])  # str paths become Paths
    assert list(iw.fns) == files[:3] and all(isinstance(f, Path) for f in iw.fns)
    assert isinstance(iw.widget, ipywidgets.Box) and len(iw.widget.children) == 3
    for box, fn in zip(iw.widget.children, files, strict=False):
        thumb, dropdown = box.children
        assert isinstance(thumb, ipywidgets.Image) and isinstance(dropdown, ipywidgets.Dropdown)
        assert dropdown.options == iw.opts and dropdown.value == "<Keep>"
        png = Image.open(io.BytesIO(thumb.value))
        assert png.format == "PNG" and png.size == (12, 8)  # 30 x 20 fitted into 12 x 10
        expected = np.asarray(Image.open(fn).convert("RGB").resize((12, 8), Image.BICUBIC))
        assert np.abs(np.asarray(png.convert("RGB")).astype(int) - expected).mean() < 30
    assert list(iw.values()) == ["<Keep>"] * 3
    assert list(iw.delete()) == [] and list(iw.change()) == []
    iw.set_fns(files[:2])
    assert list(iw.fns) == files[:2] and len(iw.widget.children) == 2


def test_images_cleaner_delete_and_change(folder):
    files = sorted((folder / "valid" / "green").iterdir())
    iw = ImagesCleaner(CLASSES)
    iw.set_fns(files)
    choose(iw, {0: "<Delete>", 1: "red", 2: "<Delete>"})
    assert list(iw.values()) == ["<Delete>", "red", "<Delete>"]
    assert list(iw.delete()) == [0, 2]
    assert list(iw.change()) == [(1, "red")]
    iw.set_fns(files)  # a re-fill starts from '<Keep>'
    assert list(iw.delete()) == [] and list(iw.change()) == []


def test_images_cleaner_argument_errors(folder):
    with pytest.raises(ValueError, match="max_n should be >= 1, got 0"):
        ImagesCleaner(max_n=0)
    with pytest.raises(TypeError, match="height should be an int, got float 1.5"):
        ImagesCleaner(height=1.5)
    with pytest.raises(TypeError, match="opts should be a sequence of class names"):
        ImagesCleaner("cat")
    with pytest.raises(TypeError, match="fns should be a list of image files"):
        ImagesCleaner().set_fns(folder / "train" / "red" / "red_0.png")


def test_display_shows_the_widget(folder, tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    cleaner = ImageClassifierCleaner(learner(folder, tmp_path))
    cleaner._ipython_display_()
    cleaner.iw._ipython_display_()
    assert shown == [cleaner.widget, cleaner.iw.widget]
    assert list(cleaner.widget.children) == [cleaner.dd_cats, cleaner.dd_ds, cleaner.iw.widget]


# ---- ImageClassifierCleaner: losses, order, filter ----------------------------------------------
def test_losses_are_each_files_own_in_data_set_order(folder, tmp_path):
    """Every item's loss equals the one predict gives for that file alone (the validation
    transform: an augmented training pass would differ), in train_ds / valid_ds order."""
    learn = learner(folder, tmp_path)
    cleaner = ImageClassifierCleaner(learn)
    for items, ds in zip(cleaner.items, (learn.data.train_ds, learn.data.valid_ds), strict=True):
        files = [o.fn for o in items]
        assert files == list(ds.items)
        assert [o.label for o in items] == [f.parent.name for f in files]
        losses = [o.loss for o in items]
        assert len({round(v, 3) for v in losses}) == len(losses)  # a permutation would show
        np.testing.assert_allclose(losses, predicted_losses(learn, files), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ds", ["Train", "Valid"])
def test_shows_the_actual_class_highest_loss_first(folder, tmp_path, ds):
    learn = learner(folder, tmp_path)
    cleaner = ImageClassifierCleaner(learn, max_n=3)
    assert cleaner.dd_cats.options == CLASSES and cleaner.dd_ds.options == ("Train", "Valid")
    assert cleaner.iw.opts == ("<Keep>", "<Delete>", *CLASSES)
    cleaner.dd_ds.value = ds
    root = folder / ds.lower()
    for cat in CLASSES:
        cleaner.dd_cats.value = cat
        files = sorted((root / cat).iterdir())
        losses = predicted_losses(learn, files)
        by_loss = [f for _, f in sorted(zip(losses, files, strict=True), reverse=True)]
        assert list(cleaner.fns) == by_loss[:3]  # every class: the model predicts 'blue'
        assert len(cleaner.iw.widget.children) == 3


def test_changing_a_dropdown_refills_the_images(folder, tmp_path):
    cleaner = ImageClassifierCleaner(learner(folder, tmp_path))
    assert (cleaner.dd_cats.value, cleaner.dd_ds.value) == ("blue", "Train")
    assert {f.parent for f in cleaner.fns} == {folder / "train" / "blue"}
    assert len(cleaner.fns) == N_TRAIN
    choose(cleaner, {0: "<Delete>"})
    cleaner.dd_cats.value = "red"
    assert {f.parent for f in cleaner.fns} == {folder / "train" / "red"}
    assert list(cleaner.delete()) == []  # the new images start from '<Keep>'
    cleaner.dd_ds.value = "Valid"
    assert {f.parent for f in cleaner.fns} == {folder / "valid" / "red"}
    assert len(cleaner.fns) == N_VALID
    choose(cleaner, {1: "<Delete>", 2: "green"})
    assert list(cleaner.values()) == ["<Keep>", "<Delete>", "green"]
    assert list(cleaner.delete()) == [1] and list(cleaner.change()) == [(2, "green")]


def test_fastbook_loop_deletes_and_moves_files(folder_copy, tmp_path):
    """Chapter 2's code, verbatim after the star import, on a copy of the folder."""
    ns: dict = {}
    exec("from fastcore_ext.vision.all import *", ns)
    ns["learn"] = learner(folder_copy, tmp_path)
    ns["path"] = folder_copy / "train"
    exec("cleaner = ImageClassifierCleaner(learn)\ncleaner", ns)
    cleaner = ns["cleaner"]
    shown = list(cleaner.fns)
    choose(cleaner, {0: "<Delete>", 2: "green"})
    exec(
        "for idx in cleaner.delete(): cleaner.fns[idx].unlink()\n"
        "for idx,cat in cleaner.change(): shutil.move(str(cleaner.fns[idx]), path/cat)\n",
        ns,
    )
    assert not shown[0].exists() and not shown[2].exists()
    assert (folder_copy / "train" / "green" / shown[2].name).is_file()
    assert shown[1].exists() and shown[3].exists()
    cleaner.dd_cats.value = "red"
    cleaner.dd_cats.value = "blue"  # the files gone are no longer shown
    assert list(cleaner.fns) == [shown[1], shown[3]]


def test_unreadable_files_have_no_entry(folder_copy, tmp_path):
    bad = folder_copy / "train" / "green" / "green_1.png"
    learn = learner(folder_copy, tmp_path)
    bad.write_text("this is not an image\n")
    with pytest.warns(UserWarning, match="green_1.png"):
        cleaner = ImageClassifierCleaner(learn)
    files = [o.fn for o in cleaner.items[0]]
    assert files == [f for f in learn.data.train_ds.items if f != bad]
    np.testing.assert_allclose(
        [o.loss for o in cleaner.items[0]], predicted_losses(learn, files), rtol=1e-4, atol=1e-5
    )


# ---- optional dependency and errors -------------------------------------------------------------
def test_without_ipywidgets_an_import_error_says_how_to_get_it(folder, tmp_path, monkeypatch):
    learn = learner(folder, tmp_path)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        ImagesCleaner()
    with pytest.raises(ImportError, match="ImageClassifierCleaner are Jupyter widgets"):
        ImageClassifierCleaner(learn)


def test_the_library_imports_without_ipywidgets():
    code = (
        "import sys; sys.modules['ipywidgets'] = None\n"
        "from fastcore_ext.vision.all import *\n"
        "print(ImageClassifierCleaner.__name__, ImagesCleaner.__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ImageClassifierCleaner", "ImagesCleaner"]


def test_a_learner_without_data_is_refused(tmp_path):
    data = InferenceData(CLASSES[:2], 16, 20, "crop", None, torch.device("cpu"), tmp_path)
    learn = Learner(data, tiny_model())  # what load_learner builds
    with pytest.raises(ValueError, match=r"no train data \(data.train_dl is None.*load_learner"):
        ImageClassifierCleaner(learn)


def test_a_learner_on_tensors_is_refused():
    learn = make_learner(data=easy_bunch())
    with pytest.raises(ValueError, match=r"FakeBunch without data.train_ds.items.*tensors"):
        ImageClassifierCleaner(learn)
    with pytest.raises(TypeError, match="learn should be a Learner with data"):
        ImageClassifierCleaner(object())


def test_a_learner_whose_files_are_gone_is_refused(folder_copy, tmp_path):
    learn = learner(folder_copy, tmp_path)
    for f in list(folder_copy.rglob("*.png")):
        f.unlink()
    with pytest.raises(ValueError, match="none of the 21 items .* is an existing file"):
        ImageClassifierCleaner(learn)
