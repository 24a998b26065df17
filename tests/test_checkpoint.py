"""fastcore_ext.checkpoint: the class names a checkpoint stores and the check on loading (a
model saved for other classes, or the same in another order, is refused naming both lists
and the file; strict=False loads it with a warning; older files without classes still load);
the training items it records, and the warning when a learner loading it validates on some
of them.
Save/load round trips, atomic writes and resume: test_persist.py."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from fakes import easy_bunch, make_learner, tiny_model
from PIL import Image
from torch import nn

from fastcore_ext.checkpoint import (
    atomic_save,
    item_ids,
    load_checkpoint,
    load_file,
    save_checkpoint,
)
from fastcore_ext.data import ImageDataBunch
from fastcore_ext.learner import Learner

CLASSES = ["cat", "dog"]


def random_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return tiny_model()


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def saved(tmp_path):
    """A checkpoint of a random model saved with CLASSES: (path, its model state)."""
    model = random_model(1)
    path = save_checkpoint(tmp_path / "stage-1.pth", model, None, 3, None, classes=CLASSES)
    return path, state_of(model)


def test_checkpoint_stores_the_classes_as_str(tmp_path):
    path = save_checkpoint(tmp_path / "m.pth", tiny_model(), None, 0, None, classes=[3, 7])
    assert load_file(path)["classes"] == ["3", "7"]  # loads with weights_only=True
    path = save_checkpoint(tmp_path / "n.pth", tiny_model(), None, 0, None)
    assert "classes" not in load_file(path)


def test_same_classes_load(saved):
    path, state = saved
    model = random_model(2)
    assert load_checkpoint(path, model, None, classes=list(CLASSES)) == (3, 3)
    assert same_state(state_of(model), state)


@pytest.mark.parametrize(
    ("classes", "how"),
    [
        (["dog", "cat"], "the same classes in another order"),
        (["car", "bus"], r"other classes \(2 in the file, 2 here\)"),
        (["cat", "dog", "bird"], r"other classes \(2 in the file, 3 here\)"),
    ],
)
def test_other_classes_are_refused_naming_both_lists_and_the_file(saved, classes, how):
    path, state = saved
    model = random_model(2)
    before = state_of(model)
    with pytest.raises(ValueError, match=how) as excinfo:
        load_checkpoint(path, model, None, classes=classes)
    message = str(excinfo.value)
    assert str(path) in message
    assert f"the file's classes are {CLASSES!r}, this learner's {classes!r}" in message
    assert "strict=False" in message
    assert same_state(state_of(model), before)  # nothing loaded


def test_strict_false_loads_other_classes_with_a_warning(saved):
    path, state = saved
    model = random_model(2)
    with pytest.warns(UserWarning, match=r"another order.*loaded anyway \(strict=False\)"):
        load_checkpoint(path, model, None, strict=False, classes=["dog", "cat"])
    assert same_state(state_of(model), state)


def test_files_without_classes_and_learners_without_classes_are_not_checked(tmp_path, saved):
    model = random_model(1)
    old = save_checkpoint(tmp_path / "old.pth", model, None, 0, None)  # as before classes
    load_checkpoint(old, random_model(2), None, classes=["dog", "cat"])
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    load_checkpoint(bare, random_model(2), None, classes=["dog", "cat"])
    path, state = saved
    other = random_model(2)
    load_checkpoint(path, other, None, classes=None)
    assert same_state(state_of(other), state)


def test_long_class_lists_are_shortened_in_the_message(tmp_path):
    many = [f"breed{k:02d}" for k in range(37)]
    path = save_checkpoint(tmp_path / "pets.pth", tiny_model(), None, 0, None, classes=many)
    renamed = [*many[:20], "other", *many[21:]]
    with pytest.raises(ValueError, match="first difference at index 20") as excinfo:
        load_checkpoint(path, tiny_model(), None, classes=renamed)
    assert "'breed11', ... (37 in all)]" in str(excinfo.value)
    assert "breed12" not in str(excinfo.value)


def test_learner_load_refuses_a_checkpoint_of_other_classes(tmp_path):
    """What the tester met: learn.load('stage-1') of a learner with other classes (as many)."""
    learn = make_learner(path=tmp_path)
    learn.data.classes = ["cat", "dog"]
    learn.fit(1)
    learn.save("stage-1")
    assert load_file(tmp_path / "models" / "stage-1.pth")["classes"] == ["cat", "dog"]
    data = easy_bunch()
    data.classes = ["dog", "cat"]
    other = make_learner(path=tmp_path, data=data)
    with pytest.raises(ValueError, match=r"stage-1\.pth was saved by a learner with the same"):
        other.load("stage-1")
    with pytest.warns(UserWarning, match="loaded anyway"):
        other.load("stage-1", strict=False)
    assert same_state(state_of(other.model), state_of(learn.model))
    data.classes = ["cat", "dog"]
    other.load("stage-1")


def test_an_empty_or_foreign_file_says_what_it_is(tmp_path):
    from fastcore_ext.checkpoint import load_file

    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"empty\.pth is not a readable checkpoint: the file is empty \(0 bytes\)$"
    ):
        load_file(tmp_path / "empty.pth")
    (tmp_path / "text.pth").write_text("hello world\n")
    with pytest.raises(ValueError, match=r"text.pth is not a readable checkpoint: it is a text "
                       r"file \(torch.save writes a zip archive\), .* \(12 bytes\)$"):  # fmt: skip
        load_file(tmp_path / "text.pth")
    # an image given where a model goes: torch's message advised weights_only=False
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(ValueError, match=r"it is a JPEG image, not a model file \(104 bytes\)$"):
        load_file(tmp_path / "photo.jpg")
    # a pickled module (torch.save of a whole model; fastai's save of its optimizer state)
    torch.save(nn.Sequential(nn.Linear(2, 2)), tmp_path / "whole.pth")
    with pytest.raises(ValueError) as e:
        load_file(tmp_path / "whole.pth")
    msg = str(e.value)
    assert "it holds pickled objects or code besides tensors: a torch.save of a whole" in msg
    assert "never runs pickled code" in msg and "weights_only=False" not in msg
    assert "\x1b[" not in msg  # torch's colour codes


# ---- the training items: a checkpoint loaded against another split ---------------------------
def test_item_ids_are_paths_relative_to_the_data_path(tmp_path):
    a, b = tmp_path / "day1" / "pets", tmp_path / "day2" / "pets"
    ids_a = item_ids([a / "images" / "pug_1.jpg", a / "images" / "pug_2.jpg"], a)
    ids_b = item_ids([str(b / "images" / "pug_1.jpg"), b / "images" / "pug_2.jpg"], b)
    assert ids_a.dtype == torch.int64 and torch.equal(ids_a, ids_b)  # the folder moved
    assert ids_a[0] != ids_a[1]
    assert not torch.equal(
        item_ids([a / "train" / "x.jpg"], a), item_ids([a / "valid" / "x.jpg"], a)
    )
    outside = item_ids([tmp_path / "elsewhere.jpg"], a)  # outside the root: its absolute path
    assert outside is not None and len(outside) == 1
    assert item_ids([b"raw bytes"], a) is None


def make_folder(root, n_per_class=10, classes=("beagle", "pug")):
    """Class folders of small random JPEGs (ImageNet style, labelled by the parent)."""
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{cls}_{i}.jpg")
    return root


def folder_learner(folder, tmp_path, seed):
    data = ImageDataBunch.from_folder(folder, valid_pct=0.5, seed=seed, size=16, bs=4)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )  # fmt: skip
    return Learner(data, model, path=tmp_path, precision="fp32")


def shared(saving, loading) -> int:
    """Validation items of `loading` that were training items of `saving` (by name)."""
    trained = {(p.parent.name, p.name) for p in saving.data.train_ds.items}
    return sum((p.parent.name, p.name) in trained for p in loading.data.valid_ds.items)


def load_warnings(learn, name, **kwargs) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learn.load(name, **kwargs)
    return [str(w.message) for w in caught]


@pytest.fixture
def pets(tmp_path):
    return make_folder(tmp_path / "pets")


def test_load_says_how_many_validation_images_trained_the_checkpoint(pets, tmp_path):
    """What the probe met: the notes' code has no seed, so day 2 draws another split and
    learn.load('stage-1') validates partly on images the checkpoint trained on; the warning
    said only that the data seed differs (and nothing at all with with_opt=False)."""
    saving = folder_learner(pets, tmp_path, seed=1)
    path = saving.save("stage-1")
    stored = load_file(path)["train_items"]
    assert stored.dtype == torch.int64 and len(stored) == len(saving.data.train_ds)
    loading = folder_learner(pets, tmp_path, seed=2)
    n = shared(saving, loading)
    assert n > 0  # the two splits overlap (else this test shows nothing)
    n_valid = len(loading.data.valid_ds)
    for kwargs in ({}, {"with_opt": False}):
        (message,) = load_warnings(loading, "stage-1", **kwargs)  # one warning
        assert message.startswith(
            f"{path}: {n} of {n_valid} validation images ({n / n_valid:.0%}) were in the "
            f"checkpoint's training set: metrics on them are optimistic; build the data with "
            f"the same seed and files"
        )
        # with the RNG states (with_opt) the seed still matters to a resumed fit
        assert ("data seed 1, this one has 2" in message) == (kwargs == {})
    assert load_warnings(folder_learner(pets, tmp_path, seed=1), "stage-1") == []


def test_files_added_to_the_folder_change_the_split_of_the_same_seed(pets, tmp_path):
    """With the same seed both days (no seed warning possible), three more images give
    another split: the record of the training items still finds the overlap. Day 2's copy
    of the folder lies elsewhere: items are compared by their path inside the data folder."""
    grown = shutil.copytree(pets, tmp_path / "day2" / "pets")
    for i in range(10, 13):
        Image.new("RGB", (20, 20), (i, 0, 0)).save(grown / "pug" / f"pug_{i}.jpg")
    for seed in range(10):  # the first seed whose two splits overlap
        saving = folder_learner(pets, tmp_path, seed=seed)
        loading = folder_learner(grown, tmp_path, seed=seed)
        n = shared(saving, loading)
        if n:
            break
    assert n > 0
    saving.save("stage-1")
    (message,) = load_warnings(loading, "stage-1")
    assert f"{n} of {len(loading.data.valid_ds)} validation images" in message
    assert "data seed" not in message  # no seed note: the seeds agree


def test_checkpoints_without_the_record_load_as_before(pets, tmp_path):
    saving = folder_learner(pets, tmp_path, seed=1)
    path = saving.save("stage-1")
    old = {k: v for k, v in load_file(path).items() if k != "train_items"}
    atomic_save(old, tmp_path / "models" / "old.pth")  # a file from before the record
    loading = folder_learner(pets, tmp_path, seed=2)
    assert load_warnings(loading, "old", with_opt=False) == []
    (message,) = load_warnings(loading, "old")  # the seed note alone, as before
    assert "data seed 1, this one has 2: a resumed fit will shuffle" in message
    assert same_state(state_of(loading.model), state_of(saving.model))


def test_data_without_items_records_nothing(tmp_path):
    learn = make_learner(path=tmp_path)  # the in-memory bunch: no item paths
    path = learn.save("m")
    assert "train_items" not in load_file(path)
    assert load_warnings(make_learner(path=tmp_path), "m") == []


def test_strict_false_loads_no_optimizer_from_a_file_with_extra_tensors(tmp_path):
    """A bigger model's checkpoint (every tensor of this model in it, with the same shapes,
    and more) passed the 'every tensor matched' test with strict=False, so its optimizer
    state was loaded and refused ('does not fit this learner's optimizer')."""
    from fakes import make_learner

    learn = make_learner(path=tmp_path)
    learn.fit(1, 1e-3)
    (tmp_path / "models").mkdir()
    state = learn.checkpoint()
    state["model"] = {**state["model"], "extra.weight": torch.zeros(3)}
    torch.save(state, tmp_path / "models" / "bigger.pth")
    other = make_learner(path=tmp_path)
    with pytest.warns(UserWarning) as record:
        other.load("bigger", strict=False)
    said = " | ".join(str(w.message) for w in record)
    assert "1 unexpected (extra.weight)" in said and "optimizer state was not loaded" in said
    for a, b in zip(other.model.parameters(), learn.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_file_of_which_nothing_fits_is_refused_even_with_strict_false(tmp_path):
    """A DataParallel model's state_dict ('module.' names) loaded nothing with strict=False,
    with only a warning (fastai's: silently)."""
    from fakes import make_learner

    learn = make_learner(path=tmp_path)
    (tmp_path / "models").mkdir()
    before = [p.detach().clone() for p in learn.model.parameters()]
    prefixed = {f"module.{k}": v for k, v in learn.model.state_dict().items()}
    torch.save(prefixed, tmp_path / "models" / "ddp.pth")
    with pytest.raises(ValueError, match=r"no tensor of the file fits this model .*names start "
                       r"with 'module.'.*strip that prefix"):  # fmt: skip
        learn.load("ddp", strict=False)
    assert all(torch.equal(a, b) for a, b in zip(learn.model.parameters(), before, strict=True))
    torch.save(torch.zeros(3, 3), tmp_path / "models" / "tensor.pth")
    with pytest.raises(ValueError, match=r"holds no model state_dict .*, but one tensor of "
                       r"shape \(3, 3\)"):  # fmt: skip
        learn.load("tensor")
    torch.save({"state_dict": learn.model.state_dict()}, tmp_path / "models" / "wrapped.pth")
    with pytest.raises(ValueError, match=r"a dict with keys \['state_dict'\]: torch.load it and "
                       r"pass its \['state_dict'\] entry"):  # fmt: skip
        learn.load("wrapped")


def test_load_learner_of_a_checkpoint_or_state_dict_says_what_it_is(tmp_path):
    from fakes import make_learner

    from fastcore_ext.exported import load_learner

    learn = make_learner(path=tmp_path)
    saved = learn.save("stage-1")
    with pytest.raises(ValueError, match=r"stage-1.pth is not a fastcore_ext export .*: it is "
                       r"a checkpoint of learn.save, which learn.load reads"):  # fmt: skip
        load_learner(saved)
    torch.save(learn.model.state_dict(), tmp_path / "sd.pth")
    with pytest.raises(ValueError, match=r"sd.pth is not a fastcore_ext export .*: it is a "
                       r"model state_dict"):  # fmt: skip
        load_learner(tmp_path / "sd.pth")
