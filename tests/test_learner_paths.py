"""The learner's folders and file arguments: a path or model_dir that is a file is refused
when the learner is made or the attribute set (save raised NotADirectoryError and export
FileExistsError after training), and save / load's flags are bools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import make_learner

from fastcore_ext.learner import set_seed


def test_a_path_that_is_a_file_is_refused_at_construction(tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("not a folder")
    with pytest.raises(ValueError, match=r"path should be a folder .*got '.*afile.txt': it is a"):
        make_learner(path=afile)
    with pytest.raises(ValueError, match=r"path should be a folder .*afile.txt is a file"):
        make_learner(path=afile / "sub")
    with pytest.raises(ValueError, match=r"model_dir should be a folder .*got 'afile.txt'"):
        make_learner(path=tmp_path, model_dir="afile.txt")
    with pytest.raises(ValueError, match=r"model_dir should be a folder .*afile.txt is a file"):
        make_learner(path=tmp_path, model_dir=afile / "models")


def test_setting_path_or_model_dir_checks_them(tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("not a folder")
    learn = make_learner(path=tmp_path / "new")  # a folder still to make is fine
    with pytest.raises(ValueError, match="path should be a folder"):
        learn.path = afile
    with pytest.raises(ValueError, match="model_dir should be a folder"):
        learn.model_dir = "../afile.txt"
    with pytest.raises(TypeError, match="model_dir should be a str or Path, got int"):
        learn.model_dir = 3
    assert learn.path == tmp_path / "new" and str(learn.model_dir) == "models"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "models").write_text("a file where the checkpoints would go")
    with pytest.raises(ValueError, match=r"model_dir should be a folder .*'models': it is a"):
        learn.path = tmp_path / "other"
    learn.model_dir = "ckpts"
    learn.path = tmp_path / "other"
    assert learn.save("x") == tmp_path / "other" / "ckpts" / "x.pth"


def test_save_and_load_flags_are_bools(tmp_path):
    """learn.load(name, with_opt='x') was accepted."""
    learn = make_learner(path=tmp_path)
    with pytest.raises(TypeError, match="with_opt should be a bool, got str 'x'"):
        learn.save("a", with_opt="x")
    learn.save("a")
    for kwargs, name in [
        ({"with_opt": "x"}, "with_opt"),
        ({"strict": 1}, "strict"),
        ({"with_rng": "yes"}, "with_rng"),
    ]:
        with pytest.raises(TypeError, match=f"{name} should be a bool"):
            learn.load("a", **kwargs)
    learn.load("a", with_opt=False, with_rng=None)


def test_set_seed_takes_numpy_ints():
    set_seed(np.int64(3))
    a = np.random.rand()
    set_seed(3)
    assert np.random.rand() == a


def test_set_seed_reproducible_as_fastais(monkeypatch):
    """fastai's set_seed(42, reproducible=True) was a TypeError."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    set_seed(42)
    assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
    set_seed(42, True)
    a = torch.rand(3)
    set_seed(42, reproducible=True)
    assert torch.equal(torch.rand(3), a)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    with pytest.raises(TypeError, match="reproducible should be True or False, got 'yes'"):
        set_seed(1, reproducible="yes")


def test_save_and_export_onto_a_folder_name_it(tmp_path):
    """save('x') over a folder models/x.pth and export(a folder) raised IsADirectoryError from
    the atomic rename, after writing the whole file."""
    learn = make_learner(path=tmp_path)
    (tmp_path / "models" / "x.pth").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"name should name a file, got 'x': .*x.pth is a folder"):
        learn.save("x")
    with pytest.raises(ValueError, match=r"name should name a file, got 'x'"):
        learn.load("x")
    with pytest.raises(ValueError, match=r"fname should name a file, got 'models': .* a folder"):
        learn.export("models")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["models", "x.pth"]  # nothing written


def test_learn_path_and_dls_path_have_fastais_ls(tmp_path):
    """fastbook's ``learn.export(); learn.path.ls(file_exts='.pkl')`` and ``dls.path.ls()``
    from a plain pathlib path (fastai patches pathlib; here they are DataPaths)."""
    from pathlib import Path

    from fastcore_ext.data import ImageDataLoaders, demo_dataset
    from fastcore_ext.vision import vision_learner

    root = Path(str(demo_dataset(tmp_path / "demo", n_per_class=2, size=32)))
    dls = ImageDataLoaders.from_folder(root, valid_pct=0.5, seed=0, bs=2, num_workers=0)
    assert [p.name for p in dls.path.ls()] == [p.name for p in sorted(root.iterdir())]
    learn = vision_learner(dls, "resnet18", pretrained=False, path=tmp_path / "out")
    learn.export()
    assert list(learn.path.ls(file_exts=".pkl")) == [tmp_path / "out" / "export.pkl"]
    learn.path = str(tmp_path)
    assert learn.path.ls(file_exts=".nothing") == []


def test_a_tilde_is_the_home_folder(tmp_path, monkeypatch):
    """save('~/x'), model_dir='~/m' and export('~/e.pkl') made a folder literally named '~'
    under learn.path (fastai raised 'Parent directory ... does not exist')."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    learn = make_learner(path=tmp_path / "run")
    assert learn.save("~/w") == home / "w.pth"
    learn.load("~/w")
    learn.model_dir = "~/ckpts"
    assert learn.save("s") == home / "ckpts" / "s.pth"
    learn = make_learner(path="~/run2", model_dir="~/m")
    assert learn.path == home / "run2" and learn.save("s") == home / "m" / "s.pth"
    assert not any(p.name == "~" for p in tmp_path.rglob("*"))


def test_load_names_fastais_doubled_suffix_and_takes_its_device_argument(tmp_path):
    """fastai's learn.save('x.pth') writes x.pth.pth, which load('x.pth') did not find
    without a word; load(device=) (fastai's) was 'unexpected keyword'."""
    learn = make_learner(path=tmp_path)
    learn.save("x.pth.pth")
    with pytest.raises(FileNotFoundError, match=r"x.pth.pth is there .*load\('x.pth.pth'\)"):
        learn.load("x.pth")
    learn.load("x.pth.pth", device="cpu")
    with pytest.raises(ValueError, match="device: expected a torch device, got 'gpu0'"):
        learn.load("x.pth.pth", device="gpu0")
    if not torch.cuda.is_available():  # fastai: "Attempting to deserialize ... on a CUDA device"
        with pytest.raises(ValueError, match="device: 'cuda' is not available on this machine"):
            learn.load("x.pth.pth", device="cuda")
