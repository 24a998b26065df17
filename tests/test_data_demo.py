"""The embedded demo dataset: layout, real JPEG files, determinism, reuse, regeneration."""

import inspect
import json

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
    assert len(split.train_items) == 12 * 4 and len(split.valid_items) == 12
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
    assert json.loads((root / ".complete.json").read_text())["images"] == 48
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
