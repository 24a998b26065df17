"""The memory-mapped decoded cache of whole presized images: filling, windows, atomic
completion, reuse, invalidation, and files that must never be read (half-written, truncated,
damaged, of an older version)."""

import hashlib
import json
import os
import shutil
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from fastcore_ext.data import DecodedCache, cache_size, clear_cache
from fastcore_ext.data import cache as cache_mod
from fastcore_ext.data import images as images_mod
from fastcore_ext.data.images import PAD_MODES, window_origins

P = 6  # presize
SHAPES = [(6, 8), (9, 6), (6, 24), (24, 6), (6, 6)] * 2  # landscape, portrait, 4:1, 1:4, square


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


def _images(seed: int = 1) -> list[np.ndarray]:
    """Random whole presized images ``uint8 [h, w, 3]`` of `SHAPES` (short side P)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SHAPES]


def _write(cache: DecodedCache, idx, images) -> None:
    idx = np.asarray(idx)
    shapes = np.array([images[i].shape[:2] for i in idx]).reshape(-1, 2)
    packed = np.concatenate([images[i].reshape(-1) for i in idx] + [np.zeros(0, np.uint8)])
    cache.write(idx, shapes, packed)


def _fill(cache: DecodedCache, images) -> None:
    order = np.random.default_rng(2).permutation(len(images))
    for chunk in np.array_split(order, 3):
        _write(cache, chunk, images)


def _windows(images, idx, u=None) -> np.ndarray:
    """The expected windows, cut here from the images themselves."""
    shapes = np.array([images[i].shape[:2] for i in idx])
    origins = window_origins(shapes, P, u)
    rows = zip(idx, origins.tolist(), strict=True)
    return np.stack([images[i][top : top + P, left : left + P] for i, (top, left) in rows])


def _complete(files, tmp_path, images=None) -> DecodedCache:
    c = DecodedCache(files, P, "crop", folder=tmp_path)
    _fill(c, images if images is not None else _images())
    c.finish()
    return c


def test_fill_finish_read_windows(files, tmp_path):
    c = DecodedCache(files, P, "crop", folder=tmp_path / "c")
    assert not c.complete and len(c.missing()) == 10
    images = _images()
    _write(c, [3, 1], images)
    assert sorted(c.missing().tolist()) == [0, 2, 4, 5, 6, 7, 8, 9]
    with pytest.raises(RuntimeError, match="8 images not written"):
        c.finish()
    with pytest.raises(RuntimeError, match="not complete"):
        c.read(np.array([1]))
    _fill(c, images)
    c.finish()
    assert c.complete and c.path.is_file() and len(c.missing()) == 0
    np.testing.assert_array_equal(c.shapes, SHAPES)
    idx = np.array([9, 0, 4, 2, 3, 1])
    np.testing.assert_array_equal(c.read(idx), _windows(images, idx))  # centre
    assert c.read(idx).shape == (6, P, P, 3)
    u = np.random.default_rng(3).random(6)
    np.testing.assert_array_equal(c.read(idx, u), _windows(images, idx, u))
    ends = c.read(np.array([2, 2, 3, 3]), np.array([0.0, 0.9999, 0.0, 0.9999]))
    np.testing.assert_array_equal(ends[0], images[2][:, :P])  # both ends of a 4:1 image
    np.testing.assert_array_equal(ends[1], images[2][:, -P:])
    np.testing.assert_array_equal(ends[2], images[3][:P])
    np.testing.assert_array_equal(ends[3], images[3][-P:])
    np.testing.assert_array_equal(c.read(np.array([4, 4]), np.array([0.0, 0.99])), [images[4]] * 2)
    out = np.empty((2, P, P, 3), np.uint8)
    c.read(np.array([5, 5]), out=out)
    np.testing.assert_array_equal(out, _windows(images, [5, 5]))
    names = sorted(p.name for p in (tmp_path / "c").iterdir())  # no temporaries
    assert names == [c.path.name, f"{c.key}.use-{os.getpid()}.{c._marker.name.rsplit('.', 1)[1]}"]


def test_reused_by_a_new_instance(files, tmp_path):
    images = _images()
    c = _complete(files, tmp_path, images)
    again = DecodedCache(files, P, "crop", folder=tmp_path)
    assert again.complete and again.path == c.path
    np.testing.assert_array_equal(again.read(np.arange(10)), _windows(images, range(10)))


def test_squish_keeps_squares(files, tmp_path):
    c = DecodedCache(files, P, "squish", folder=tmp_path)
    squares = list(np.random.default_rng(4).integers(0, 256, (10, P, P, 3), dtype=np.uint8))
    _fill(c, squares)
    c.finish()
    again = DecodedCache(files, P, "squish", folder=tmp_path)
    assert again.complete
    np.testing.assert_array_equal(again.read(np.arange(10), np.full(10, 0.7)), squares)


def test_images_written_twice_are_stored_once(files, tmp_path):
    images = _images()
    c = DecodedCache(files, P, "crop", folder=tmp_path)
    _write(c, [0, 1, 2], images)
    size = c._tmp.tell()
    _write(c, [1, 2], images)  # a second pass after an interrupted first one
    assert c._tmp.tell() == size
    _write(c, [2, 3, 0], images)  # only 3 is new
    assert c._tmp.tell() == size + 6 * 24 * 3
    _fill(c, images)
    c.finish()
    np.testing.assert_array_equal(c.read(np.arange(10)), _windows(images, range(10)))


def test_write_rejects_a_packed_array_of_the_wrong_length(files, tmp_path):
    c = DecodedCache(files, P, "crop", folder=tmp_path)
    with pytest.raises(ValueError, match="packed: expected 144 bytes for 1 images"):
        c.write(np.array([0]), np.array([[6, 8]]), np.zeros(143, np.uint8))


def test_unreadable_images_are_remembered(files, tmp_path):
    images = _images()
    c = DecodedCache(files, P, "crop", folder=tmp_path)
    good = [i for i in range(10) if i not in (1, 7)]
    _write(c, good, images)
    c.mark_bad(np.array([1, 7]))
    c.finish()
    later = DecodedCache(files, P, "crop", folder=tmp_path)
    assert later.complete and later.bad.tolist() == [1, 7]
    assert later.shapes[1].tolist() == [0, 0]
    got = later.read(np.array([0, 1]))
    np.testing.assert_array_equal(got[0], _windows(images, [0])[0])
    assert (got[1] == 0).all()


def test_key_depends_on_files_order_presize_and_method(files, tmp_path):
    base = DecodedCache(files, P, "crop", folder=tmp_path).key
    assert DecodedCache(files[::-1], P, "crop", folder=tmp_path).key != base
    assert DecodedCache(files, 7, "crop", folder=tmp_path).key != base
    assert DecodedCache(files, P, "squish", folder=tmp_path).key != base
    pads = {DecodedCache(files, P, f"pad-{m}", folder=tmp_path).key for m in PAD_MODES}
    assert len(pads) == 3 and base not in pads  # each pad mode its own cache
    assert DecodedCache(files, P, "squish", folder=tmp_path).key not in pads
    st = os.stat(files[4])
    os.utime(files[4], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert DecodedCache(files, P, "crop", folder=tmp_path).key != base
    with pytest.raises(ValueError, match="method: expected one of"):
        DecodedCache(files, P, "pad", folder=tmp_path)


def test_key_depends_on_the_jpeg_decoding(files, tmp_path, monkeypatch):
    """Reduced JPEG decoding gives other pixels: a cache filled with either is not the
    other's."""
    base = DecodedCache(files, P, "crop", folder=tmp_path).key
    monkeypatch.setattr(images_mod, "JPEG_REDUCING_GAP", None)
    whole = DecodedCache(files, P, "crop", folder=tmp_path).key
    monkeypatch.setattr(images_mod, "JPEG_REDUCING_GAP", 3.0)
    assert len({base, whole, DecodedCache(files, P, "crop", folder=tmp_path).key}) == 3


def test_a_missing_file_enters_the_key_and_changes_it_when_it_appears(files, tmp_path):
    """os.stat of a missing file (or a dangling symlink) raised FileNotFoundError from the
    constructor; the pass that fills the cache finds it unreadable instead."""
    content = files[3].read_bytes()
    files[3].unlink()
    link = files[3].with_name("link.png")
    link.symlink_to(tmp_path / "nowhere.png")
    items = [*files, link]
    missing = DecodedCache(items, P, "crop", folder=tmp_path / "c")
    assert not missing.complete
    files[3].write_bytes(content)
    appeared = DecodedCache(items, P, "crop", folder=tmp_path / "c").key
    (tmp_path / "nowhere.png").write_bytes(content)
    linked = DecodedCache(items, P, "crop", folder=tmp_path / "c").key
    assert len({missing.key, appeared, linked}) == 3


def test_changed_file_invalidates_and_old_cache_is_removed(files, tmp_path):
    c = _complete(files, tmp_path)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(files[0])  # new content, new mtime
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    d = DecodedCache(files, P, "crop", folder=tmp_path)
    assert not d.complete and d.path != c.path
    _fill(d, _images(seed=5))
    c.release()  # this process no longer uses the old cache (as when `c` goes)
    d.finish()
    assert d.complete and not c.path.exists()


def test_caches_of_the_older_version_are_removed(files, tmp_path):
    """Version 1 kept center squares in <key>.npy and <key>.bad.npy: never read, and removed
    once the new cache of the same item list is complete."""
    names = [str(p.resolve()) for p in files]
    fam_v1 = hashlib.sha256(json.dumps([1, P, "crop", names]).encode()).hexdigest()[:20]
    old = [tmp_path / f"{fam_v1}-0123456789abcdef0123.npy", tmp_path / f"{fam_v1}-0.bad.npy"]
    other = tmp_path / "someone-elses.npy"
    for p in (*old, other):
        np.save(p, np.zeros((10, P, P, 3), np.uint8))
    c = DecodedCache(files, P, "crop", folder=tmp_path)
    assert not c.complete
    _fill(c, _images())
    c.finish()
    assert not any(p.exists() for p in old) and other.exists() and c.complete


def test_a_version_3_cache_without_checksums_is_not_read_and_is_removed(files, tmp_path):
    """Version 3 (index [N, 3], 32-byte footer, no checksums) under its own key: a version 4
    cache never opens it (its key differs) and removes it once complete."""
    names = [str(p.resolve()) for p in files]
    fam_v3 = hashlib.sha256(json.dumps([3, P, "crop", names]).encode()).hexdigest()[:20]
    images = _images()
    packed = b"".join(img.tobytes() for img in images)
    offsets = np.cumsum([0] + [img.size for img in images[:-1]])
    index = np.column_stack([offsets, np.array(SHAPES)]).astype("<i8")
    old = tmp_path / f"{fam_v3}-0123456789abcdef0123.imgs"
    footer = struct.pack("<8sQQQ", cache_mod._MAGIC, 3, 10, len(packed))
    old.write_bytes(packed + index.tobytes() + footer)
    c = DecodedCache(files, P, "crop", folder=tmp_path)
    assert not c.complete and c.family != fam_v3
    _fill(c, images)
    c.finish()
    assert c.complete and not old.exists()


def test_half_written_cache_is_never_used(files, tmp_path):
    c = DecodedCache(files, P, "crop", folder=tmp_path)
    _write(c, range(5), _images())  # a run that stops half way
    tmp = list(tmp_path.glob("*.tmp-*"))
    assert len(tmp) == 1 and not c.path.exists()
    assert not DecodedCache(files, P, "crop", folder=tmp_path).complete
    os.link(tmp[0], c.path)  # even under the final name, without its index and footer
    assert not DecodedCache(files, P, "crop", folder=tmp_path).complete
    c.path.unlink()
    c.discard()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_temporary_of_a_dead_process_is_removed(files, tmp_path):
    c = DecodedCache(files, P, "crop", folder=tmp_path)
    dead = tmp_path / f"{c.key}.tmp-999999999"
    dead.write_bytes(b"partial")
    _write(c, range(10), _images())
    assert not dead.exists()
    c.finish()


def _footer(data) -> tuple[int, int, int, int]:
    """(version, N, byte offset of the index, index CRC) from a cache file's bytes."""
    _, version, n, start, crc = cache_mod._FOOTER.unpack(data[-cache_mod._FOOTER.size :])
    return version, n, start, crc


def _reseal(data: bytearray) -> None:
    """Recompute the footer's index checksum after an edit of the index (as a writer would)."""
    version, n, start, _ = _footer(data)
    crc = zlib.crc32(bytes(data[start : start + ENTRY * n]))
    data[-cache_mod._FOOTER.size :] = cache_mod._FOOTER.pack(
        cache_mod._MAGIC, version, n, start, crc
    )


ENTRY = 32  # bytes of an index entry: int64 offset, h, w, checksum


def _damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    footer = cache_mod._FOOTER
    version, n, start, crc = _footer(data)
    if how.startswith("truncate"):
        cut = {"truncate 1": 1, "truncate footer": footer.size, "truncate half": len(data) // 2}
        data = data[: -cut[how]]
    elif how == "append":
        data += b"\0"
    elif how == "version":
        data[-footer.size :] = footer.pack(cache_mod._MAGIC, version - 1, n, start, crc)
    elif how == "count":
        data[-footer.size :] = footer.pack(cache_mod._MAGIC, version, n + 1, start, crc)
    elif how == "magic":
        data[-footer.size] ^= 0xFF
    elif how.startswith("index offset"):  # an image said to reach past the packed data
        struct.pack_into("<q", data, start + ENTRY * 9, start)
    elif how.startswith("index shape"):  # an image whose short side is not the presize
        struct.pack_into("<q", data, start + ENTRY * 9 + 16, P - 1)
    elif how.startswith("index swap"):  # items 0 and 1 exchange their entries
        a, b = bytes(data[start : start + ENTRY]), bytes(data[start + ENTRY : start + 2 * ENTRY])
        data[start : start + 2 * ENTRY] = b + a
    elif how == "index checksum":
        struct.pack_into("<q", data, start + ENTRY * 4 + 24, 12345)
    if how.endswith("resealed"):
        _reseal(data)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "how",
    [
        "truncate 1",
        "truncate footer",
        "truncate half",
        "append",
        "version",
        "count",
        "magic",
        "index offset resealed",
        "index shape resealed",
    ],
)
def test_damaged_or_truncated_final_file_is_not_used(files, tmp_path, how):
    images = _images()
    c = _complete(files, tmp_path, images)
    _damage(c.path, how)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not a damaged index: no warning
        fresh = DecodedCache(files, P, "crop", folder=tmp_path)
    assert not fresh.complete
    _fill(fresh, images)
    fresh.finish()  # rebuilt and replaced
    assert fresh.complete and DecodedCache(files, P, "crop", folder=tmp_path).complete
    np.testing.assert_array_equal(fresh.read(np.arange(10)), _windows(images, range(10)))


@pytest.mark.parametrize("how", ["index offset", "index shape", "index swap", "index checksum"])
def test_a_damaged_index_fails_its_checksum_with_a_warning(files, tmp_path, how):
    """Any change to the index (two entries swapped made image 0 come back as image 1) fails
    the footer's CRC: the file is not used, and a warning names it."""
    c = _complete(files, tmp_path)
    _damage(c.path, how)
    with pytest.warns(UserWarning, match=f"the image cache {c.path} is damaged .its index"):
        assert not DecodedCache(files, P, "crop", folder=tmp_path).complete


def _pixel_region(c: DecodedCache, i: int) -> tuple[int, int]:
    off, h, w = c._index[i, :3].tolist()
    return off, off + h * w * 3


@pytest.mark.parametrize("how", ["flip", "zero", "index swap resealed"])
def test_damaged_pixels_are_found_on_first_read_and_never_served(files, tmp_path, how):
    """Bytes flipped in one item, the pixel data zeroed, or two entries swapped with the
    index checksum recomputed: the items fail their checksums (which bind each entry to its
    item), `read` refuses them, one warning names the file and the items, and the file is
    removed so that the next run rebuilds it."""
    images = _images()
    c = _complete(files, tmp_path, images)
    data = bytearray(c.path.read_bytes())
    if how == "flip":
        lo, hi = _pixel_region(c, 3)
        data[lo + 5] ^= 0x01
        expect = [3]
    elif how == "zero":
        data[: _footer(data)[2]] = bytes(_footer(data)[2])
        expect = list(range(10))
    c.path.write_bytes(bytes(data))
    if how.startswith("index"):
        _damage(c.path, how)
        expect = [0, 1]
    later = DecodedCache(files, P, "crop", folder=tmp_path)
    assert later.complete and not later.damaged.any()
    good = [i for i in range(10) if i not in expect]
    if good:  # undamaged items read first: served, no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(later.read(good[:2]), _windows(images, good[:2]))
    with pytest.warns(UserWarning) as rec:
        damaged = later.verify(np.arange(10))
    assert np.flatnonzero(damaged).tolist() == expect
    (msg,) = [str(w.message) for w in rec]
    assert f"the image cache {later.path} is damaged" in msg and str(files[expect[0]]) in msg
    assert f"{len(expect)} item(s)" in msg and "removed, and the next run rebuilds it" in msg
    assert not later.path.exists()
    with pytest.raises(RuntimeError, match=f"items \\[{expect[0]}\\] are damaged and not served"):
        later.read([expect[0]])
    if good:  # the mapping stays readable for the undamaged items, without more warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(later.read(good), _windows(images, good))
            later.verify(np.arange(10))
    assert not DecodedCache(files, P, "crop", folder=tmp_path).complete  # rebuilt next run


def test_each_item_is_verified_once_per_process(files, tmp_path, monkeypatch):
    c = _complete(files, tmp_path)
    later = DecodedCache(files, P, "crop", folder=tmp_path)
    checked = []
    real = later._entry_ok
    monkeypatch.setattr(later, "_entry_ok", lambda i: checked.append(i) or real(i))
    later.read(np.array([4, 2, 4]))
    later.read(np.array([2, 4, 7]))
    later.read(np.arange(10))
    assert sorted(checked) == list(range(10))
    assert c.path.exists()


def test_checksums_seeded_by_item_and_shape():
    px = np.arange(6 * 8 * 3, dtype=np.uint8)
    base = cache_mod._item_crc(3, 6, 8, px)
    assert base == zlib.crc32(px.tobytes(), zlib.crc32(struct.pack("<qqq", 3, 6, 8)))
    assert cache_mod._item_crc(4, 6, 8, px) != base and cache_mod._item_crc(3, 8, 6, px) != base


def test_garbage_and_empty_final_files_are_not_used(files, tmp_path):
    c = DecodedCache(files, P, "crop", folder=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    for content in (b"", b"\x93NUMPY garbage", b"x" * 1000):
        c.path.write_bytes(content)
        assert not DecodedCache(files, P, "crop", folder=tmp_path).complete


def _restamp(path, st) -> None:
    """Give `path` the size-and-mtime identity of stat `st` back (as ``cp -p`` or ``tar x``
    leave a rewritten file), waiting for the clock tick that moves its ctime on."""
    for _ in range(200):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        if os.stat(path).st_ctime_ns != st.st_ctime_ns:
            return
        time.sleep(0.01)
    raise AssertionError(f"the ctime of {path} did not move")


@pytest.mark.parametrize("how", ["in place", "renamed over"])
def test_a_file_rewritten_with_its_old_size_and_mtime_is_decoded_anew(tmp_path, how):
    """The key held size and mtime only: a file replaced by another of the same size and mtime
    (cp -p, tar x, rsync -t) was served from the old cache, silently. Its ctime (set by every
    write) and, when a new file is renamed over it, its inode change the key."""
    from fastcore_ext.data import DeviceDataLoader, ImageDataset

    colours = {"red": (200, 40, 40), "blue": (40, 40, 200)}
    items = []
    for name, rgb in colours.items():
        items.append(tmp_path / f"{name}.bmp")  # BMP: the same byte size for the same shape
        Image.fromarray(np.full((12, 12, 3), rgb, np.uint8)).save(items[-1])

    def centre_pixels() -> np.ndarray:
        ds = ImageDataset(items, [0, 1], ["red", "blue"], 8, "crop",
                          DecodedCache(items, 8, "crop", folder=tmp_path / "c"))  # fmt: skip
        dl = DeviceDataLoader(ds, 2, train=False, size=8, device=torch.device("cpu"), seed=0,
                              num_workers=0)  # fmt: skip
        for _ in range(2):  # the first pass fills the cache, the second reads it
            x = torch.cat([b for b, _ in dl.uint8_batches(0)])
        assert ds.cache.complete
        return x.float().mean((2, 3)).numpy()  # [B, 3, P, P]

    np.testing.assert_allclose(centre_pixels(), [colours["red"], colours["blue"]])
    st = os.stat(items[0])
    if how == "in place":
        shutil.copyfile(items[1], items[0])
    else:
        shutil.copyfile(items[1], tmp_path / "new.bmp")
        os.replace(tmp_path / "new.bmp", items[0])
    _restamp(items[0], st)
    now = os.stat(items[0])
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    np.testing.assert_allclose(centre_pixels(), [colours["blue"], colours["blue"]])


def _complete_list(files, folder, size=P) -> DecodedCache:
    """A complete cache of `files` (whole presized noise images), released as when the
    process that built it ends."""
    c = DecodedCache(files, size, "crop", folder=folder)
    rng = np.random.default_rng(len(files))
    _write(c, range(len(files)), [rng.integers(0, 256, (size, size, 3), np.uint8)] * len(files))
    c.finish()
    c.release()
    return c


def _age(path, seconds_ago: float) -> None:
    t = time.time_ns() - int(seconds_ago * 1e9)
    os.utime(path, ns=(t, t))


def test_the_folder_keeps_the_most_recently_used_caches_of_a_data_folder(files, tmp_path):
    """Every new item list of a data folder (an unseeded split) made a new cache, forever.
    Now a completed cache leaves the KEEP_PER_GROUP most recently used of its group (data
    folder, presize, method); one that a live process uses is kept, and opening one marks it
    used."""
    folder = tmp_path / "c"
    keep = cache_mod.KEEP_PER_GROUP
    lists = [files[k:] for k in range(keep + 3)]  # item lists of one data folder
    made = []
    for k, items in enumerate(lists[:keep]):
        made.append(_complete_list(items, folder))
        _age(made[-1].path, 1000 - k)  # older first
    other = _complete_list(files, folder, size=P + 1)  # another presize: another group
    _age(other.path, 5000)
    assert all(c.path.exists() for c in made)  # as many as kept
    live = DecodedCache(lists[0], P, "crop", folder=folder)  # the oldest, opened: used now
    assert live.complete
    dead = folder / f"{made[1].key}.use-999999999.0"  # the marker of a process that died
    dead.touch()
    newest = _complete_list(lists[keep], folder)
    assert newest.path.exists() and live.path.exists() and other.path.exists()
    assert not made[1].path.exists() and not dead.exists()  # least recently used
    assert made[2].path.exists() and made[3].path.exists()
    _age(live.path, 2000)  # the oldest again, but a live process (this one) maps it
    for items in lists[keep + 1 :]:
        _complete_list(items, folder)
    assert live.path.exists() and other.path.exists()
    assert not made[2].path.exists()
    group = newest.family.split("-")[0]
    unused = [f for f in folder.glob(f"{group}-*.imgs") if f != live.path]
    assert len(unused) == keep  # the kept ones, and the one in use beyond them
    live.release()
    _complete_list(files[1:3], folder)
    assert not live.path.exists() and other.path.exists()
    assert len(list(folder.glob(f"{group}-*.imgs"))) == keep


def test_clear_cache_removes_what_no_live_process_uses(files, tmp_path, monkeypatch):
    folder = tmp_path / "c"
    old = _complete_list(files, folder)
    live = _complete_list(files[1:], folder)
    live_again = DecodedCache(files[1:], P, "crop", folder=folder)  # maps it: in use
    filling = DecodedCache(files[2:], P, "crop", folder=folder)
    _write(filling, [0], _images())  # a live temporary (this process fills it)
    dead_tmp = folder / f"{old.key}.tmp-999999999"
    dead_tmp.write_bytes(b"partial")
    v4 = folder / f"{'ab' * 10}-{'cd' * 10}.imgs"  # an older version's cache
    v4.write_bytes(b"old")
    mine = folder / "notes.txt"  # not ours: never touched
    mine.write_text("keep")
    with pytest.warns(UserWarning, match=r"clear_cache: kept 2 cache file\(s\)"):
        removed = clear_cache(folder)
    assert removed == sorted([old.path, dead_tmp, v4])
    assert live.path.exists() and filling._tmp_path.exists() and mine.exists()
    live_again.release()
    filling.discard()
    assert clear_cache(folder) == [live.path]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    monkeypatch.setenv("FASTCORE_EXT_HOME", str(tmp_path / "home"))
    assert clear_cache() == []  # the default folder, not there yet
    default = _complete_list(files, tmp_path / "home" / "cache" / "images")
    assert clear_cache() == [default.path]
    with pytest.raises(TypeError, match="folder: expected a cache folder"):
        clear_cache(3)


def test_cache_size_counts_the_folder_and_a_large_folder_warns_once(files, tmp_path, monkeypatch):
    """The folder is bounded per data folder and presize, not across them: a long session of
    new sizes and data sets grows it. cache_size says how much; a completed cache warns once
    a process when the folder passes FASTCORE_EXT_CACHE_WARN_GB, naming clear_cache."""
    folder = tmp_path / "c"
    assert cache_size(folder) == 0  # not there yet
    monkeypatch.setattr(cache_mod, "_warned_size", False)
    monkeypatch.setenv("FASTCORE_EXT_CACHE_WARN_GB", "1e-9")  # about 1 byte
    with pytest.warns(
        UserWarning, match=r"cache: the image caches in .* take 0\.0 GB.*clear_cache"
    ):
        first = _complete_list(files, folder)
    (folder / "notes.txt").write_text("not ours")
    assert cache_size(folder) == first.path.stat().st_size > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once a process
        _complete_list(files[1:], folder)
    assert cache_size(folder) == sum(f.stat().st_size for f in folder.glob("*.imgs"))
    monkeypatch.setenv("FASTCORE_EXT_HOME", str(tmp_path / "home"))
    assert cache_size() == 0
    with pytest.raises(TypeError, match="folder: expected a cache folder"):
        cache_size(3)
    monkeypatch.setattr(cache_mod, "_warned_size", False)
    monkeypatch.setenv("FASTCORE_EXT_CACHE_WARN_GB", "20GB")  # not a number: said, once
    with pytest.warns(UserWarning, match="FASTCORE_EXT_CACHE_WARN_GB: expected a number of GB"):
        _complete_list(files[2:], folder)
