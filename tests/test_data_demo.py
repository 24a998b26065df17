"""The embedded demo dataset: layout, real JPEG files, determinism, reuse, regeneration."""

import inspect
import json

import numpy as np
import pytest
from PIL import Image

from fastcore_ext.data import DEMO_CLASSES, demo_dataset, items_from_folder
from fastcore_ext.data import demo as demo_mod


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.jpg"))


def test_layout_and_real_jpegs(tmp_path):
    root = demo_dataset(tmp_path / "d", n_per_class=5, size=40)
    assert root == tmp_path / "d"
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(DEMO_CLASSES)
    assert sorted(p.name for p in (root / "valid").iterdir()) == sorted(DEMO_CLASSES)
    split = items_from_folder(root)
    assert split.classes == sorted(DEMO_CLASSES) and len(split.classes) >= 10
    n = len(DEMO_CLASSES)
    assert len(split.train_items) == n * 4 and len(split.valid_items) == n
    with Image.open(split.train_items[0]) as im:
        assert im.format == "JPEG" and im.size == (40, 40) and im.mode == "RGB"
    assert split.train_items[0].name == f"{split.classes[0]}_0000.jpg"


def test_default_is_large_enough():
    params = inspect.signature(demo_dataset).parameters
    assert params["n_per_class"].default * len(DEMO_CLASSES) >= 2000
    assert 64 <= params["size"].default <= 96


def test_deterministic(tmp_path):
    a = demo_dataset(tmp_path / "a", n_per_class=3, size=32)
    b = demo_dataset(tmp_path / "b", n_per_class=3, size=32)
    assert _files(a) == _files(b)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in _files(a))
    c = demo_dataset(tmp_path / "c", n_per_class=3, size=32, seed=1)
    assert (a / _files(a)[0]).read_bytes() != (c / _files(a)[0]).read_bytes()


def test_worker_processes_give_the_same_files(tmp_path, monkeypatch):
    serial = demo_dataset(tmp_path / "s", n_per_class=3, size=24)
    monkeypatch.setattr(demo_mod, "_PARALLEL_MIN", 0)
    monkeypatch.setattr(demo_mod.os, "cpu_count", lambda: 2)
    parallel = demo_dataset(tmp_path / "p", n_per_class=3, size=24)
    assert _files(serial) == _files(parallel)
    assert all((serial / f).read_bytes() == (parallel / f).read_bytes() for f in _files(serial))


def test_reused_then_regenerated_when_half_written(tmp_path, monkeypatch):
    root = demo_dataset(tmp_path / "d", n_per_class=3, size=32)
    calls = []
    real = demo_mod._generate
    monkeypatch.setattr(demo_mod, "_generate", lambda *a: calls.append(a) or real(*a))
    assert demo_dataset(tmp_path / "d", n_per_class=3, size=32) == root and calls == []
    (root / ".complete.json").unlink()  # as if a run died before writing the marker
    (root / "train" / "circle" / "circle_0000.jpg").unlink()
    demo_dataset(tmp_path / "d", n_per_class=3, size=32)
    assert len(calls) == 1 and (root / "train" / "circle" / "circle_0000.jpg").is_file()
    demo_dataset(tmp_path / "d", n_per_class=4, size=32)  # other parameters: regenerated
    assert len(calls) == 2
    assert json.loads((root / ".complete.json").read_text())["images"] == 4 * len(DEMO_CLASSES)
    assert not list(tmp_path.glob(".d.tmp-*"))


def test_default_folder_under_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCORE_EXT_DATA", str(tmp_path))
    assert demo_dataset(n_per_class=2, size=16) == tmp_path / "demo_n2_s16_seed0"


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"n_per_class": 1}, "n_per_class: expected an int >= 2"),
        ({"size": 8}, "size: expected an int >= 16"),
        ({"seed": -1}, "seed: expected an int >= 0"),
        ({"valid_pct": 1.0}, r"valid_pct: expected a float in \(0, 1\)"),
    ],
)
def test_bad_arguments(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        demo_dataset(tmp_path / "x", **kw)


def test_force_must_be_a_bool(tmp_path):
    with pytest.raises(TypeError, match="force should be a bool, got str 'False'"):
        demo_dataset(tmp_path / "x", n_per_class=2, size=16, force="False")
    assert not (tmp_path / "x").exists()


def test_a_light_shape_on_a_darker_background(tmp_path):
    """Every image: a shape brighter than every background and clutter color (luminance
    >= 150 before shading, noise and JPEG) covering a good part of the image, the rest dark
    (luminance <= 100 before noise and JPEG)."""
    root = demo_dataset(tmp_path / "d", n_per_class=4, size=48)
    weights = np.array([0.299, 0.587, 0.114])
    bright = {}
    for path in root.rglob("*.jpg"):
        with Image.open(path) as im:
            luma = np.asarray(im.convert("RGB"), dtype=np.float64) @ weights
        light = (luma > 125).mean()
        dark = (luma < 110).mean()
        assert 0.05 < light < 0.7 and dark > 0.25 and light + dark > 0.9, (path.name, light, dark)
        bright.setdefault(path.parent.name, []).append(light)
    assert sorted(bright) == sorted(DEMO_CLASSES)


def test_classes_are_the_documented_ones():
    assert len(DEMO_CLASSES) == 12 and len(set(DEMO_CLASSES)) == 12
    assert list(DEMO_CLASSES) == sorted(DEMO_CLASSES)
    for name in DEMO_CLASSES:
        assert name in demo_mod.__doc__


@pytest.mark.parametrize("damage", ["class folder removed", "file removed", "file added"])
def test_a_folder_whose_image_count_changed_is_regenerated(tmp_path, monkeypatch, damage):
    """The marker records the number of images: a folder whose files were deleted (or one
    added) since is regenerated, not reused silently with fewer images."""
    root = demo_dataset(tmp_path / "d", n_per_class=3, size=24)
    before = _files(root)
    if damage == "class folder removed":
        for f in (root / "valid" / "star").iterdir():
            f.unlink()
        (root / "valid" / "star").rmdir()
    elif damage == "file removed":
        (root / "train" / "ring" / "ring_0001.jpg").unlink()
    else:
        (root / "train" / "ring" / "extra.jpg").write_bytes((root / before[0]).read_bytes())
    calls = []
    real = demo_mod._generate
    monkeypatch.setattr(demo_mod, "_generate", lambda *a: calls.append(a) or real(*a))
    assert demo_dataset(tmp_path / "d", n_per_class=3, size=24) == root
    assert len(calls) == 1 and _files(root) == before
    demo_dataset(tmp_path / "d", n_per_class=3, size=24)  # complete again: reused
    assert len(calls) == 1
