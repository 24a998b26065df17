"""L and first: fastcore's semantics, written out by hand (fastcore.foundation.L gives the same
results for each call here), and fastbook ch. 2's `failed.map(Path.unlink)` on files."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fastcore_ext.foundation import L, first


def test_a_list_that_equals_lists():
    a = L([3, 1, 2])
    assert isinstance(a, list) and a == [3, 1, 2] and [3, 1, 2] == a
    assert len(a) == 3 and list(a) == [3, 1, 2] and a[0] == 3 and a[-1] == 2
    a.append(5)  # list methods work in place
    assert a == [3, 1, 2, 5]
    assert L() == [] and L(None) == [] and L(5) == [5] and L("ab") == ["ab"]
    assert L((1, 2)) == [1, 2] and L(1, 2, 3) == [1, 2, 3] and L(range(3)) == [0, 1, 2]
    # with more than one argument each is an item, as fastcore's: fastai's splitters write
    # L(m[0], m[1]).map(params), whose first argument is itself iterable
    assert L([1, 2], [3]) == [[1, 2], [3]] and L(None, 1) == [None, 1] and L("a", "b") == ["a", "b"]
    back = pickle.loads(pickle.dumps(a))
    assert type(back) is L and back == [3, 1, 2, 5]


def test_repr_is_fastbooks():
    assert repr(L([3, 1, 2])) == "(#3) [3, 1, 2]"
    assert repr(L(["a"])) == "(#1) ['a']"
    assert repr(L()) == "(#0) []"
    assert repr(L(range(12))) == "(#12) [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]"


def test_indexing_by_indices_mask_and_slice():
    a = L(["a", "b", "c", "d"])
    for idx in ([0, 2], np.array([0, 2]), torch.tensor([0, 2])):
        got = a[idx]
        assert type(got) is L and got == ["a", "c"]
    for mask in (
        [True, False, True, False],
        np.array([1, 0, 1, 0], bool),
        torch.tensor([1, 0, 1, 0]).bool(),
    ):
        assert a[mask] == ["a", "c"]
    assert a[[3, 3, 0]] == ["d", "d", "a"]
    assert type(a[1:3]) is L and a[1:3] == ["b", "c"] and a[::-1] == ["d", "c", "b", "a"]
    assert a[np.int64(1)] == "b" and a[torch.tensor(2)] == "c"
    assert a[[]] == []
    with pytest.raises(IndexError, match=r"one value per item \(4\), got 2"):
        a[[True, False]]
    with pytest.raises(TypeError, match="L indices should be ints or a boolean mask, got str 'x'"):
        a[["x"]]
    with pytest.raises(TypeError, match="L indices should be an int, a slice"):
        a["x"]


def test_map():
    a = L([3, 1, 2])
    got = a.map(lambda x: x * 2)
    assert type(got) is L and got == [6, 2, 4] and a == [3, 1, 2]
    assert a.map(lambda x, y, z=0: x + y + z, 10, z=100) == [113, 111, 112]
    assert a.map("{}!") == ["3!", "1!", "2!"]  # a format string
    assert a.map({3: "c", 1: "a", 2: "b"}) == ["c", "a", "b"]  # indexed
    with pytest.raises(TypeError, match="map: f should be a callable, a format str"):
        a.map(5)
    with pytest.raises(TypeError, match="map: args and kwargs go to a callable f"):
        a.map("{}", 1)


def test_filter():
    a = L([3, 0, 1, 2])
    got = a.filter(lambda x: x > 1)
    assert type(got) is L and got == [3, 2]
    assert a.filter(lambda x: x > 1, negate=True) == [0, 1]
    assert a.filter() == [3, 1, 2]  # f None: the true items
    assert a.filter(lambda x, above: x > above, above=2) == [3]
    with pytest.raises(TypeError, match="filter: f should be a callable or None, got str"):
        a.filter("x")
    with pytest.raises(TypeError, match="negate should be a bool"):
        a.filter(None, negate=1)


def test_attrgot_itemgot_sorted_unique():
    files = L([Path("x/b.jpg"), Path("y/a.png"), Path("z/c.jpg")])
    assert files.attrgot("name") == ["b.jpg", "a.png", "c.jpg"]
    assert files.attrgot("parent.name") == ["x", "y", "z"]
    assert files.attrgot("nothing", "-") == ["-", "-", "-"]
    assert L([{"k": 1}, {}]).attrgot("k", 0) == [1, 0]
    pairs = L([(1, "b"), (3, "a"), (2, "c")])
    assert pairs.itemgot(1) == ["b", "a", "c"] and type(pairs.itemgot(1)) is L
    assert L([[(1, 2)], [(3, 4)]]).itemgot(0, 1) == [2, 4]
    assert pairs.sorted() == [(1, "b"), (2, "c"), (3, "a")]
    assert pairs.sorted(1) == [(3, "a"), (1, "b"), (2, "c")]  # an int: that item
    assert pairs.sorted(lambda p: -p[0]) == [(3, "a"), (2, "c"), (1, "b")]
    assert files.sorted("suffix") == [Path("x/b.jpg"), Path("z/c.jpg"), Path("y/a.png")]
    assert L([3, 1, 2]).sorted(reverse=True) == [3, 2, 1]
    with pytest.raises(TypeError, match="sorted: key should be a callable"):
        pairs.sorted(2.5)
    assert L([2, 1, 2, 3, 1]).unique() == [2, 1, 3] and L([2, 1, 2]).unique(sort=True) == [1, 2]
    assert type(L([1]).unique()) is L


def test_shuffle_add_mul_copy():
    a = L(range(20))
    random.seed(0)
    got = a.shuffle()
    random.seed(0)
    expected = list(range(20))
    random.shuffle(expected)
    assert type(got) is L and got == expected and a == list(range(20))
    b = L([1, 2])
    assert type(b + [3]) is L and b + [3] == [1, 2, 3]
    assert type([0] + b) is L and [0] + b == [0, 1, 2]
    assert type(b * 2) is L and b * 2 == [1, 2, 1, 2]
    c = b.copy()
    c.append(9)
    assert type(c) is L and b == [1, 2]


def test_first():
    assert first([3, 1, 2]) == 3
    assert first(iter([])) is None
    assert first(L([3, 1, 2]), lambda x: x < 3) == 1
    assert first([3, 1, 2], lambda x: x > 2, negate=True) == 1
    assert first(x for x in [0, 5]) == 0  # a generator (a DataLoader is an iterable too)


def test_fastbook_ch2_unlinks_the_failed_files(tmp_path):
    """`failed = verify_images(fns); failed.map(Path.unlink)` on an L of files."""
    files = []
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
        files.append(tmp_path / name)
    failed = L(files)[[True, False, True]]
    failed.map(Path.unlink)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.jpg"]


def test_the_data_packages_file_lists_are_ls(tmp_path):
    """fastbook ch2 as written: `fns = get_image_files(path); failed = verify_images(fns);
    failed.map(Path.unlink)`, and `path.ls()`, on the library's own functions."""
    from PIL import Image

    from fastcore_ext.data import DataPath, get_image_files, verify_images

    (tmp_path / "bears").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "bears" / "good.png")
    (tmp_path / "bears" / "broken.jpg").write_bytes(b"not a jpeg")
    fns = get_image_files(tmp_path)
    assert isinstance(fns, L) and fns.attrgot("name") == ["broken.jpg", "good.png"]
    failed = verify_images(fns)
    assert isinstance(failed, L) and failed == [tmp_path / "bears" / "broken.jpg"]
    failed.map(Path.unlink)
    assert get_image_files(tmp_path).attrgot("name") == ["good.png"]
    listed = DataPath(tmp_path / "bears").ls()
    assert isinstance(listed, L) and listed == [tmp_path / "bears" / "good.png"]


def test_enumerate_zip_sum_concat_argwhere_map_dict_and_setitem():
    """fastcore's results for the same calls (checked against fastcore 1.x by hand)."""
    a = L(["x", "y", "z"])
    assert a.enumerate() == [(0, "x"), (1, "y"), (2, "z")] and isinstance(a.enumerate(), L)
    assert L([(1, "a"), (2, "b")]).zip() == [(1, 2), ("a", "b")]
    assert L([1, 2, 3]).sum() == 6 and L().sum() == 0
    assert L([[1, 2], [3], 4]).concat() == [1, 2, 3, 4]
    assert L([5, 6, 7, 8]).argwhere(lambda v: v % 2 == 0) == [1, 3]
    assert L([5, 6]).argwhere(lambda v: v > 5, negate=True) == [0]
    assert L([1, 2]).map_dict(lambda v, k: v * k, 10) == {1: 10, 2: 20}
    b = L([0, 0, 0, 0])
    b[[0, 2]] = [9, 8]
    b[np.array([False, True, False, True])] = 7
    b[torch.tensor(0)] = 1
    b[1:2] = [5]
    assert b == [1, 5, 8, 7]
    with pytest.raises(ValueError, match="2 indices but 3 values"):
        b[[0, 1]] = [1, 2, 3]
