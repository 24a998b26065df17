"""DataPath: a pathlib Path with fastai's ls(), what untar_data, demo_dataset and the star
import's `Path` give."""

import pathlib
import pickle

import pytest

from fastcore_ext.data import (
    DataPath,
    NotAFolderError,
    cache_dir,
    data_dir,
    demo_dataset,
    home_dir,
    untar_data,
)


@pytest.fixture
def tree(tmp_path):
    for name in ("b.JPG", "a.jpg", "c.png", "notes.txt", ".hidden"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    return DataPath(tmp_path)


def test_ls_sorted_filtered_and_cut(tree):
    names = [p.name for p in tree.ls()]
    assert names == sorted([".hidden", "a.jpg", "b.JPG", "c.png", "notes.txt", "sub"])
    assert all(isinstance(p, DataPath) for p in tree.ls())
    assert [p.name for p in tree.ls(file_exts=[".jpg"])] == ["a.jpg", "b.JPG"]  # case ignored
    assert [p.name for p in tree.ls(file_exts=".png")] == ["c.png"]
    assert [p.name for p in tree.ls(n_max=2)] == names[:2]
    assert tree.ls(n_max=0) == []
    assert (tree / "sub").ls() == []


def test_a_path_like_any_other(tree):
    sub = tree / "sub"
    assert isinstance(sub, DataPath) and isinstance(sub, pathlib.Path)
    assert isinstance(sub.parent, DataPath) and sub.parent == tree
    assert sub == pathlib.Path(tree) / "sub" and str(sub) == str(pathlib.Path(tree) / "sub")
    assert pickle.loads(pickle.dumps(sub)) == sub


def test_ls_errors_name_the_path(tree):
    with pytest.raises(FileNotFoundError, match="missing"):
        (tree / "missing").ls()
    with pytest.raises(NotADirectoryError, match="a.jpg"):
        (tree / "a.jpg").ls()
    with pytest.raises(TypeError, match="n_max should be an int or None, got float"):
        tree.ls(n_max=1.5)
    with pytest.raises(ValueError, match="n_max should be >= 0, got -1"):
        tree.ls(n_max=-1)


def test_star_import_and_demo_give_data_paths(tmp_path):
    namespace: dict = {}
    exec("from fastcore_ext.vision import *", namespace)
    assert namespace["Path"] is DataPath
    assert namespace["Path"](tmp_path).ls() == []
    root = demo_dataset(tmp_path / "demo", n_per_class=2, size=16)
    assert isinstance(root, DataPath)
    assert [p.name for p in root.ls() if not p.name.startswith(".")] == ["train", "valid"]


def test_a_home_or_data_variable_naming_a_file_is_named(tmp_path, monkeypatch):
    """A FASTCORE_EXT_HOME that is a file ended in pathlib's NotADirectoryError at the first
    mkdir under it, naming neither the variable nor the file."""
    file = tmp_path / "home.txt"
    file.write_text("x")
    monkeypatch.delenv("FASTCORE_EXT_DATA", raising=False)
    monkeypatch.setenv("FASTCORE_EXT_HOME", str(file))
    said = (
        f"FASTCORE_EXT_HOME \\(environment variable\\): expected a folder, but '{file}' is a file"
    )
    for call in (home_dir, data_dir, cache_dir):
        with pytest.raises(NotAFolderError, match=said):
            call()
    with pytest.raises(NotADirectoryError, match=said):
        untar_data("http://127.0.0.1:9/pets.tgz")
    with pytest.raises(ValueError, match=said):
        demo_dataset()
    monkeypatch.setenv("FASTCORE_EXT_HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / "data"  # a folder still to be made is fine
    monkeypatch.setenv("FASTCORE_EXT_DATA", str(file / "data"))
    said = f"FASTCORE_EXT_DATA .*: expected a folder, but '{file}' \\(a parent of '{file}/data'\\)"
    with pytest.raises(NotAFolderError, match=said):
        data_dir()
    assert file.read_text() == "x"
