"""fastcore_ext.checkpoint: the class names a checkpoint stores and the check on loading (a
model saved for other classes, or the same in another order, is refused naming both lists
and the file; strict=False loads it with a warning; older files without classes still load).
Save/load round trips, atomic writes and resume: test_persist.py."""

from __future__ import annotations

import pytest
import torch
from fakes import easy_bunch, make_learner, tiny_model

from fastcore_ext.checkpoint import load_checkpoint, load_file, save_checkpoint

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
    with pytest.raises(ValueError, match=r"weights_only=True\)\): \w+: .* \(12 bytes\)$"):
        load_file(tmp_path / "text.pth")
