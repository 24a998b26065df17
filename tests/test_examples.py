"""examples/lesson1.py: the seed notes' flow runs end to end in its fast mode, and every
name the notes use comes from `from fastcore_ext.vision import *`."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "examples" / "lesson1.py"

# Names the seed notes (fastai lesson 1) use after `from fastai.vision import *`.
NOTES_NAMES = [
    "untar_data", "URLs", "get_image_files", "ImageDataBunch", "get_transforms",
    "imagenet_stats", "create_cnn", "models", "error_rate", "ClassificationInterpretation",
    "doc", "Path", "load_learner", "accuracy",
]  # fmt: skip


def load_lesson():
    spec = importlib.util.spec_from_file_location("lesson1", LESSON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_star_import_gives_every_name_of_the_notes():
    namespace: dict = {}
    exec("from fastcore_ext.vision import *", namespace)
    missing = [n for n in NOTES_NAMES if n not in namespace]
    assert missing == []
    assert namespace["URLs"].PETS.endswith("oxford-iiit-pet.tgz")


def test_lesson_uses_the_notes_spelling():
    src = LESSON.read_text()
    assert "from fastcore_ext.vision import *" in src
    for call in (
        "untar_data(URLs.PETS)",
        "ImageDataBunch.from_name_re(",
        "ds_tfms=get_transforms()",
        ".normalize(imagenet_stats)",
        "data.show_batch(rows=3, figsize=(7, 6))",
        'create_cnn(data, cfg["arch"], metrics=error_rate',
        "learn.fit_one_cycle(",
        'learn.save("stage-1")',
        "ClassificationInterpretation.from_learner(learn)",
        "interp.plot_top_losses(9, figsize=(15, 11))",
        "interp.most_confused(min_val=2)",
        "learn.unfreeze()",
        "learn.recorder.plot()",
        "max_lr=slice(1e-6, 1e-4)",
    ):
        assert call in src, call
    assert not re.search(r"^from fastcore_ext\.vision import \(", src, re.M)


def test_lesson_fast_mode_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FASTCORE_EXT_PLOTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached weights
    lesson = load_lesson()
    assert lesson.main(["--fast", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "training from scratch" in out
    assert "['arrow', 'circle', 'crescent'" in out and "\n12 12\n" in out
    assert sum(line.startswith("epoch") for line in out.splitlines()) == 3
    rate = float(re.search(r"final error rate: ([0-9.]+)", out).group(1))
    assert 0.0 <= rate <= 1.0
    plots = {p.name for p in (tmp_path / "out" / "plots").glob("*.png")}
    assert {
        "show_batch_train.png",
        "top_losses.png",
        "confusion_matrix.png",
        "lr_find.png",
    } <= plots


def test_lesson_flags_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as info:
        load_lesson().main(["--fast", "--pets"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
