"""The memory-mapped decoded cache: filling, atomic completion, reuse and invalidation."""

import os

import numpy as np
import pytest
from PIL import Image

from fastcore_ext.data import DecodedCache


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for i in range(10):
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def _images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)


def _fill(cache: DecodedCache, data: np.ndarray) -> None:
    order = np.random.default_rng(2).permutation(len(data))
    for chunk in np.array_split(order, 3):
        cache.write(chunk, data[chunk])


def test_fill_finish_read(files, tmp_path):
    c = DecodedCache(files, 6, "crop", folder=tmp_path / "c")
    assert not c.complete and len(c.missing()) == 10
    data = _images(10)
    c.write(np.array([3, 1]), data[[3, 1]])
    assert sorted(c.missing().tolist()) == [0, 2, 4, 5, 6, 7, 8, 9]
    with pytest.raises(RuntimeError, match="8 images not written"):
        c.finish()
    with pytest.raises(RuntimeError, match="not complete"):
        c.read(np.array([1]))
    _fill(c, data)
    c.finish()
    assert c.complete and c.path.is_file() and len(c.missing()) == 0
    np.testing.assert_array_equal(c.read(np.array([9, 0, 4])), data[[9, 0, 4]])
    out = np.empty((2, 6, 6, 3), np.uint8)
    c.read(np.array([5, 5]), out=out)
    np.testing.assert_array_equal(out, data[[5, 5]])
    assert [p.name for p in (tmp_path / "c").iterdir()] == [c.path.name]  # no temporaries


def test_reused_by_a_new_instance(files, tmp_path):
    data = _images(10)
    c = DecodedCache(files, 6, "crop", folder=tmp_path)
    _fill(c, data)
    c.finish()
    again = DecodedCache(files, 6, "crop", folder=tmp_path)
    assert again.complete and again.path == c.path
    np.testing.assert_array_equal(again.read(np.arange(10)), data)


def test_key_depends_on_files_order_presize_and_method(files, tmp_path):
    base = DecodedCache(files, 6, "crop", folder=tmp_path).key
    assert DecodedCache(files[::-1], 6, "crop", folder=tmp_path).key != base
    assert DecodedCache(files, 7, "crop", folder=tmp_path).key != base
    assert DecodedCache(files, 6, "squish", folder=tmp_path).key != base
    st = os.stat(files[4])
    os.utime(files[4], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert DecodedCache(files, 6, "crop", folder=tmp_path).key != base


def test_changed_file_invalidates_and_old_cache_is_removed(files, tmp_path):
    c = DecodedCache(files, 6, "crop", folder=tmp_path)
    _fill(c, _images(10))
    c.finish()
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(files[0])  # new content, new mtime
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    d = DecodedCache(files, 6, "crop", folder=tmp_path)
    assert not d.complete and d.path != c.path
    _fill(d, _images(10, seed=5))
    d.finish()
    assert d.complete and not c.path.exists()


def test_half_written_cache_is_never_used(files, tmp_path):
    c = DecodedCache(files, 6, "crop", folder=tmp_path)
    c.write(np.arange(5), _images(5))  # a run that stops half way
    tmp = list(tmp_path.glob("*.tmp-*.npy"))
    assert len(tmp) == 1 and not c.path.exists()
    assert not DecodedCache(files, 6, "crop", folder=tmp_path).complete
    c.discard()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_temporary_of_a_dead_process_is_removed(files, tmp_path):
    c = DecodedCache(files, 6, "crop", folder=tmp_path)
    dead = tmp_path / f"{c.key}.tmp-999999999.npy"
    dead.write_bytes(b"partial")
    c.write(np.arange(10), _images(10))
    assert not dead.exists()
    c.finish()


def test_damaged_final_file_is_not_used(files, tmp_path):
    c = DecodedCache(files, 6, "crop", folder=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    c.path.write_bytes(b"\x93NUMPY garbage")
    assert not DecodedCache(files, 6, "crop", folder=tmp_path).complete
    np.save(c.path, np.zeros((3, 6, 6, 3), np.uint8))  # wrong shape
    fresh = DecodedCache(files, 6, "crop", folder=tmp_path)
    assert not fresh.complete
    _fill(fresh, _images(10))
    fresh.finish()
    assert fresh.complete and fresh.read(np.arange(10)).shape == (10, 6, 6, 3)
