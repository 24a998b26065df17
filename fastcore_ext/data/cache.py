"""A memory-mapped cache of presized images, whole: one packed file per item list.

Each image is kept as `images.presize_whole` gives it: ``uint8 [h, w, 3]`` with its short side
the presize and its aspect kept (method 'crop'), ``[P, P, 3]`` (method 'squish'), or with its
short side padded on both sides (methods 'pad-<pad mode>', each its own key), so a training
pass can cut its square window anywhere along the long or padded side (`read`). The file
``<key>.imgs`` holds the images packed one after the other (row-major HWC bytes), then an
index int64 ``[N, 4]`` of (byte offset, h, w, checksum) per item, then a 40-byte footer (magic,
version, N, byte offset of the index, CRC-32 of the index). A file whose footer, size or index
does not match is ignored (a damaged index, one that fails its CRC, with a warning).

Integrity of the pixels: each item's checksum is the CRC-32 (zlib) of its bytes, seeded with
its index and shape, so bytes that changed on disk, and an entry moved to another item's
place, fail it. An item is verified the first time this process reads it (`verify`; `read`
never serves an entry that failed): 11 ms for the 28 MB cache of the 2,400 demo images at 64
px on the 2-core AMD EPYC development CPU, where reading one epoch from it takes 9-11 ms: once
per run, nothing in later epochs (verifying every read would double every epoch's read
time). A failed item is decoded from its file instead, as an uncached read would (the loader
does that, `damaged`), one warning names the cache file and the items, and the file is
removed so that later runs rebuild it instead of meeting it again.

The file name is a key over the item list (resolved paths, in order), what identifies each
file's contents on disk (its size, modification time, inode number and status-change time:
`cache_key`), the presize, the resize method, the JPEG decoding (`images.JPEG_REDUCING_GAP`)
and the format version: change any file, the order, or the presize and a different cache is
used; a new version never reads an old file.
The modification time alone is not enough: ``cp -p``, ``tar x``, ``rsync -t`` and unzip write
new bytes under the old size and time, but the status-change time (ctime), which no user can
set, changes with every write, and a file replaced by another has another inode.
The cache is filled by the first pass over the data (any order, several passes if one is cut
short): images are appended to ``<key>.tmp-<pid>`` as they arrive, and only once every image
is in it are the index and footer written, the data flushed to disk and the file renamed to
``<key>.imgs``: a half-written cache has another name and is never read, and the complete
one appears at once with its index inside. Stale temporaries of dead processes, complete
caches of the same item list whose files have changed since, and the files of older cache
versions of the same item list are removed when a new one is completed.

The folder is bounded (`KEEP_PER_GROUP`): a cache belongs to a group, its data folder (the
folder that holds all its items), presize and resize method, the first part of its name.
Each new list of items of a data folder (an unseeded split, an added image) makes a new
cache; once one is completed, the caches of its group beyond the `KEEP_PER_GROUP` most
recently used are removed (used: completed or opened, which sets the file's modification
time), except those that a live process uses. A process that maps a complete cache marks it
with an empty ``<key>.use-<pid>.<n>`` file, removed when the cache object goes (a dead
process's marker does not count, and is removed). `clear_cache` removes every cache of a
folder that no live process uses.

Unreadable images (`mark_bad`) count as filled; they are kept with shape (0, 0), so a complete
cache tells which items to skip (`bad`); `read` gives zeros for them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fastcore_ext.files import pid_alive
from fastcore_ext.warn import warn_user

from . import images
from .images import RESIZE_METHODS, window_origins
from .paths import cache_dir

__all__ = ["DecodedCache", "KEEP_PER_GROUP", "cache_key", "cache_size", "clear_cache"]

# 1: center squares in <key>.npy (+ .bad.npy); 2: before MAX_ASPECT (images.py); 3: no
# checksums; 4: files identified by size and mtime only, names without their group, and the
# crop's whole image resized with its long side rounded (images._crop_whole: fastai's grid now);
# 5: a 'pad' image kept as its centred square (now padded on both sides, for random windows)
# 6: JPEGs decoded whole (images.JPEG_REDUCING_GAP, now in the family's hash)
_VERSION = 7
KEEP_PER_GROUP = 4  # caches kept per data folder, presize and method: two runs' train + valid
# a completed cache warns (once a process) when the folder's caches pass this many bytes: the
# folder is bounded per data folder and presize, not across them (FASTCORE_EXT_CACHE_WARN_GB)
WARN_BYTES_DEFAULT = 20 * 2**30
_warned_size = False
_MAGIC = b"FCXIMGS\x00"
_FOOTER = struct.Struct("<8sQQQQ")  # magic, version, N, byte offset of the index, index CRC-32
_ENTRY = 4 * 8  # bytes of an index entry: int64 offset, h, w, checksum
_IDENTITY = struct.Struct("<qqq")  # item index, h, w: the seed of an item's checksum
_SUFFIX = ".imgs"
_USE = ".use-"  # <key>.use-<pid>.<n>: a live process maps <key>.imgs
_TMP = ".tmp-"  # <key>.tmp-<pid>: a process fills it
# every file this module (any version) writes in a cache folder: clear_cache removes only these
_OURS = re.compile(r"^[0-9a-f]{12}[0-9a-f-]*(\.bad)?(\.imgs|\.npy|\.tmp-\d+|\.use-\d+\.\d+)$")
_markers = itertools.count()  # this process's use markers, one per DecodedCache


def _item_crc(i: int, h: int, w: int, pixels: np.ndarray | bytes) -> int:
    """CRC-32 of item `i`'s bytes (``uint8 [h, w, 3]``, flat) seeded with (i, h, w): the same
    bytes under another item's entry, or another shape, do not match."""
    return zlib.crc32(pixels, zlib.crc32(_IDENTITY.pack(i, h, w)))


def _family(size: int, method: str, names: list[str], version: int) -> str:
    """Since version 7 the JPEG decoding (`images.JPEG_REDUCING_GAP`) is part of it too."""
    what = [version, size, method, names]
    if version >= 7:
        what.append(images.JPEG_REDUCING_GAP)
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:20]


def _group(size: int, method: str, names: list[str], version: int) -> str:
    """The group of a cache (`KEEP_PER_GROUP`): the folder that holds all its items (their
    resolved paths `names`), its presize and method."""
    try:
        folder = os.path.commonpath([os.path.dirname(n) for n in names]) if names else ""
    except ValueError:  # items on different drives
        folder = ""
    return hashlib.sha256(json.dumps([version, size, method, folder]).encode()).hexdigest()[:12]


def _named_family(size: int, method: str, names: list[str], version: int) -> str:
    """The family as the file names of `version` begin: since version 5, after its group."""
    fam = _family(size, method, names, version)
    return fam if version < 5 else f"{_group(size, method, names, version)}-{fam}"


def cache_key(items: Sequence[Path], size: int, method: str) -> tuple[str, str]:
    """(family, key): `family` hashes what the images are (paths, presize, method, format
    version) after their group (`_group`), `key` adds what identifies each file's contents:
    its size, modification time, inode number and status-change time (ctime: set by the
    system at every write, rename or chmod, never by a user, so a file rewritten with its old
    size and mtime, as ``cp -p`` or ``tar x`` do, changes the key). A file that cannot be
    stat'ed (missing, a dangling symlink) enters the key as missing: the pass that fills the
    cache finds it unreadable, as an uncached pass does, and the key changes when it
    appears."""
    names = [str(Path(p).resolve()) for p in items]
    fam = _named_family(size, method, names, _VERSION)
    h = hashlib.sha256(fam.encode())
    for p in items:
        try:
            st = os.stat(p)
        except OSError:
            h.update(b"missing;")
            continue
        h.update(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns};".encode())
    return fam, f"{fam}-{h.hexdigest()[:20]}"


def _marker_pid(name: str) -> int | None:
    """The process id in a use marker's or a temporary's file name (None: neither)."""
    for tag in (_USE, _TMP):
        if tag in name:
            pid = name.rsplit(tag, 1)[1].split(".", 1)[0]
            return int(pid) if pid.isdigit() else None
    return None


def _in_use(cache: Path) -> bool:
    """Whether a live process (this one included) maps the complete cache file `cache`; the
    use markers of dead processes are removed on the way."""
    used = False
    for marker in cache.parent.glob(f"{cache.name[: -len(_SUFFIX)]}{_USE}*"):
        pid = _marker_pid(marker.name)
        if pid is not None and pid_alive(pid):
            used = True
        else:
            marker.unlink(missing_ok=True)
    return used


def _cache_folder(folder: object) -> Path:
    """`folder` given to clear_cache / cache_size, or the default ``<cache_dir()>/images``."""
    if folder is not None and not isinstance(folder, str | os.PathLike):
        raise TypeError(f"folder: expected a cache folder (a str or Path) or None, got {folder!r}")
    return cache_dir() / "images" if folder is None else Path(folder)


def _our_files(where: Path) -> list[Path]:
    """The files this module wrote in `where` (`_OURS`), sorted."""
    if not where.is_dir():
        return []
    return [f for f in sorted(where.iterdir()) if _OURS.match(f.name) and f.is_file()]


def cache_size(folder: str | os.PathLike | None = None) -> int:
    """Bytes the image caches take in `folder` (default: where `cache=True` keeps them,
    ``<cache_dir()>/images``): complete caches and the temporaries being filled. The folder
    keeps `KEEP_PER_GROUP` caches per data folder, presize and resize method, so it grows
    with each new data set or size; `clear_cache` empties it."""
    total = 0
    for f in _our_files(_cache_folder(folder)):
        try:
            total += f.stat().st_size
        except OSError:
            continue  # removed meanwhile
    return total


def _warn_if_large(folder: Path) -> None:
    """Once a process: a warning when the caches in `folder` pass FASTCORE_EXT_CACHE_WARN_GB
    (default 20), naming their size and clear_cache."""
    global _warned_size
    if _warned_size:
        return
    raw = os.environ.get("FASTCORE_EXT_CACHE_WARN_GB", "")
    try:
        limit = float(raw) * 2**30 if raw else WARN_BYTES_DEFAULT
    except ValueError:
        limit = math.nan
    if not limit >= 0:  # not a number, or negative: said once, and no size warning then
        _warned_size = True
        warn_user(
            f"FASTCORE_EXT_CACHE_WARN_GB: expected a number of GB >= 0 ('inf' for no warning), "
            f"got {raw!r}: the cache size warning is off for this process"
        )
        return
    size = cache_size(folder)
    if size > limit:
        _warned_size = True
        warn_user(
            f"cache: the image caches in {str(folder)!r} take {size / 2**30:.1f} GB (each data "
            f"folder and presize keeps its {KEEP_PER_GROUP} latest); "
            "fastcore_ext.data.clear_cache() removes those no live process uses "
            "(FASTCORE_EXT_CACHE_WARN_GB sets this warning's threshold)"
        )


def clear_cache(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove the image caches in `folder` (default: where `cache=True` keeps them,
    ``<cache_dir()>/images``; or the folder given as ``cache=`` to a data bunch) -> the files
    removed, sorted. Only files this library writes there are touched (caches of every
    version, and the temporaries and use markers of dead processes); a cache that a live
    process uses (this one included: a data bunch still alive) and the temporary a live
    process fills are kept, with one warning that counts them. The next `cache=True` pass
    rebuilds what it needs."""
    where = _cache_folder(folder)
    removed, kept = [], []
    for f in _our_files(where):
        pid = _marker_pid(f.name)
        if pid is not None:
            if pid_alive(pid):
                kept += [] if _USE in f.name else [f]  # a live marker is no cache
                continue
        elif f.name.endswith(_SUFFIX) and _in_use(f):
            kept.append(f)
            continue
        f.unlink(missing_ok=True)
        removed.append(f)
    if kept:
        warn_user(
            f"clear_cache: kept {len(kept)} cache file(s) in {str(where)!r} that a live process "
            f"uses or fills (e.g. {kept[0].name}); end it (or drop its data bunch) and call "
            "clear_cache again to remove them"
        )
    return removed


class DecodedCache:
    """Whole presized images of one item list, memory-mapped from ``<folder>/<key>.imgs``.

    `complete` tells whether the finished file is there; `read` gathers a batch of square
    windows from it (each item verified against its checksum the first time: `verify`,
    `damaged`) and `shapes` gives each image's (h, w). While incomplete, `write` appends
    decoded images to the temporary file, `missing` lists the indices not written yet, and
    `finish` publishes the file atomically.
    """

    def __init__(
        self, items: Sequence[Path], size: int, method: str, folder: Path | None = None
    ) -> None:
        if method not in RESIZE_METHODS:
            raise ValueError(f"method: expected one of {RESIZE_METHODS}, got {method!r}")
        self.items = [Path(p) for p in items]
        self.n, self.size, self.method = len(items), int(size), method
        self.folder = Path(folder) if folder is not None else cache_dir() / "images"
        self.family, self.key = cache_key(items, size, method)
        self._old_families = [
            _named_family(self.size, method, [str(Path(p).resolve()) for p in items], v)
            for v in range(1, _VERSION)
        ]
        self.path = self.folder / f"{self.key}{_SUFFIX}"
        self._data: np.ndarray | None = None  # read-only uint8 map of the packed images
        self._index: np.ndarray | None = None  # int64 [N, 4]: offset, h, w, checksum
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the mapped file
        self._checked = np.zeros(self.n, dtype=bool)  # verified by this process
        self.damaged = np.zeros(self.n, dtype=bool)  # failed their checksum: never served
        self._tmp = None  # the temporary file, open for appending
        self._tmp_path: Path | None = None
        self._tmp_index: np.ndarray | None = None
        self._filled: np.ndarray | None = None
        self.bad: np.ndarray = np.zeros(0, dtype=np.int64)  # of the complete cache
        self._owner = os.getpid()  # forked DataLoader workers must not delete our files
        self._marker: Path | None = None  # our use marker, while the complete file is mapped
        self._open_complete()

    def _open_complete(self) -> None:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                f.seek(0, os.SEEK_END)
                length = f.tell()
                if length < _FOOTER.size:
                    return
                f.seek(length - _FOOTER.size)
                magic, version, n, start, index_crc = _FOOTER.unpack(f.read(_FOOTER.size))
                if (magic, version, n) != (_MAGIC, _VERSION, self.n):
                    return
                if start + _ENTRY * n + _FOOTER.size != length:
                    return  # truncated, or more than ours
                f.seek(start)
                raw = f.read(_ENTRY * n)
        except OSError:
            return  # missing or unreadable: rebuilt and replaced on the next pass
        if zlib.crc32(raw) != index_crc:
            warn_user(
                f"the image cache {self.path} is damaged (its index fails its checksum): it is "
                "not used; the images are decoded from their files and the cache is rebuilt"
            )
            return
        index = np.frombuffer(raw, dtype="<i8").reshape(n, 4).astype(np.int64)
        if not self._index_ok(index, start):
            return
        self._file_id = (st.st_dev, st.st_ino)
        if start:
            mapped = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(start,))
            self._data = mapped.view(np.ndarray)  # slices of a plain array cost a third
        else:
            self._data = np.zeros(0, dtype=np.uint8)  # every image unreadable
        self._index = index
        self.bad = np.flatnonzero(index[:, 1] == 0).astype(np.int64)
        self._mark_used()

    def _mark_used(self) -> None:
        """Record that this process uses the complete file: a use marker (a pruning process
        leaves the file alone while we live), and its modification time set to now (the
        most recently used caches are the ones kept). A read-only folder records nothing."""
        try:
            os.utime(self.path)
            if self._marker is None:
                marker = self.folder / f"{self.key}{_USE}{os.getpid()}.{next(_markers)}"
                marker.touch()
                self._marker = marker
        except OSError:
            pass

    def _index_ok(self, index: np.ndarray, data_bytes: int) -> bool:
        """Every entry an image this cache would write, inside the packed data, or a bad one."""
        off, h, w = index[:, :3].T
        bad = (h == 0) & (w == 0)
        if self.method == "squish":
            shape_ok = (h == self.size) & (w == self.size)
        else:  # crop: the short side; pad: the long one, the other padded to more
            shape_ok = np.minimum(h, w) == self.size
        inside = (off >= 0) & (off + h * w * 3 <= data_bytes)
        return bool(np.all(bad | (shape_ok & inside)))

    @property
    def complete(self) -> bool:
        """True when the finished cache file is open for reading."""
        return self._index is not None

    @property
    def shapes(self) -> np.ndarray:
        """(h, w) of every presized image (int64 [N, 2]; (0, 0) for an unreadable one)."""
        if self._index is None:
            raise RuntimeError(f"cache {self.path} is not complete yet")
        return self._index[:, 1:3]

    def verify(self, idx: np.ndarray) -> np.ndarray:
        """Check the entries of items `idx` (int array [B]) that this process has not checked
        yet against their checksums -> which of `idx` are damaged (bool [B]): their bytes
        changed since they were written, or their entry is another item's. The first damage
        found warns once, naming this file and the items, and removes the file (the mapping
        stays readable here; the next run rebuilds the cache). Damaged items are never served
        by `read`: decode their files instead (`damaged` lists them)."""
        if self._index is None:
            raise RuntimeError(f"cache {self.path} is not complete yet")
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        todo = np.unique(idx[~self._checked[idx]])
        if len(todo):
            failed = [i for i in todo.tolist() if not self._entry_ok(i)]
            self._checked[todo] = True
            if failed:
                self._on_damage(failed)
        return self.damaged[idx]

    def _entry_ok(self, i: int) -> bool:
        off, h, w, crc = self._index[i].tolist()
        return _item_crc(i, h, w, self._data[off : off + h * w * 3]) == crc

    def _on_damage(self, failed: list[int]) -> None:
        """Items `failed` failed their checksum: never served again; the first time, one
        warning and the file removed (if it is still the one mapped here)."""
        first = not self.damaged.any()
        self.damaged[failed] = True
        if not first:
            return
        removed = "it was replaced since it was opened here"
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._file_id:
                self.path.unlink()
                removed = "it was removed, and the next run rebuilds it"
        except OSError:
            removed = "it was removed already"
        names = ", ".join(str(self.items[i]) for i in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        warn_user(
            f"the image cache {self.path} is damaged: the cached bytes of {len(failed)} "
            f"item(s) ({names}{more}) fail their checksum. They are decoded from their files "
            f"instead, as is any other damaged item of it (without another warning); {removed}"
        )

    def read(
        self, idx: np.ndarray, u: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Square windows of images `idx` (int array [B]) -> ``uint8 [B, P, P, 3]`` (into `out`
        if given): at the centre (u None) or at the positions `images.window_origins` gives for
        u (float [B] in [0, 1)). Zeros for an unreadable image. Each item is verified the first
        time it is read (`verify`); a damaged one raises RuntimeError (never served)."""
        if self._index is None:
            raise RuntimeError(f"cache {self.path} is not complete yet")
        p = self.size
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        damaged = self.verify(idx)
        if damaged.any():
            raise RuntimeError(
                f"cache {self.path}: items {idx[damaged].tolist()} are damaged and not served; "
                "decode their files instead"
            )
        if out is None:
            out = np.empty((len(idx), p, p, 3), dtype=np.uint8)
        entries = self._index[idx, :3]
        origins = window_origins(np.maximum(entries[:, 1:], p), p, u)
        data, rows = self._data, zip(entries.tolist(), origins.tolist(), strict=True)
        for k, ((off, h, w), (top, left)) in enumerate(rows):
            if h == 0:
                out[k] = 0
                continue
            img = data[off : off + h * w * 3].reshape(h, w, 3)
            out[k] = img[top : top + p, left : left + p]
        return out

    def _begin(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        prefix = f"{self.key}.tmp-"
        for old in self.folder.glob(f"{prefix}*"):
            pid = old.name[len(prefix) :]
            if pid.isdigit() and not pid_alive(int(pid)):
                old.unlink(missing_ok=True)
        self._tmp_path = self.folder / f"{prefix}{os.getpid()}"
        self._tmp = open(self._tmp_path, "wb")  # noqa: SIM115 (kept open while filling)
        self._tmp_index = np.zeros((self.n, 4), dtype=np.int64)
        self._filled = np.zeros(self.n, dtype=bool)

    def write(self, idx: np.ndarray, shapes: np.ndarray, packed: np.ndarray) -> None:
        """Append presized images at indices `idx` ([B]): their (h, w) in `shapes` (int [B, 2])
        and their ``uint8 [h, w, 3]`` bytes one after the other in `packed` (uint8, flat).
        Images already written are not written again."""
        if self._index is not None:
            return
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
        packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
        nbytes = shapes[:, 0] * shapes[:, 1] * 3
        if len(shapes) != len(idx) or nbytes.sum() != packed.size:
            raise ValueError(
                f"packed: expected {int(nbytes.sum())} bytes for {len(idx)} images of shapes "
                f"{shapes.tolist()}, got {packed.size} bytes and {len(shapes)} shapes"
            )
        if self._tmp is None:
            self._begin()
        starts = np.concatenate([[0], np.cumsum(nbytes)])
        new = ~self._filled[idx]
        if new.all():
            self._append(idx, shapes, packed, starts[:-1])
            return
        for k in np.flatnonzero(new):
            self._append(idx[k : k + 1], shapes[k : k + 1], packed[starts[k] : starts[k + 1]], [0])

    def _append(self, idx: np.ndarray, shapes: np.ndarray, packed: np.ndarray, rel) -> None:
        """Append `packed` to the temporary file; image k starts `rel[k]` bytes into it."""
        pos = self._tmp.tell()
        packed = np.ascontiguousarray(packed)
        self._tmp.write(memoryview(packed))
        self._tmp.flush()  # nothing left in the buffer for a forked DataLoader worker to copy
        rel = np.asarray(rel, dtype=np.int64)
        rows = zip(idx.tolist(), shapes.tolist(), rel.tolist(), strict=True)
        crcs = [_item_crc(i, h, w, packed[r : r + h * w * 3]) for i, (h, w), r in rows]
        self._tmp_index[idx, 0] = pos + rel
        self._tmp_index[idx, 1:3] = shapes
        self._tmp_index[idx, 3] = crcs
        self._filled[idx] = True

    def mark_bad(self, idx: np.ndarray) -> None:
        """Record indices `idx` ([K]) as unreadable images: filled, shape (0, 0), listed in
        `bad` once the cache is complete."""
        if self._index is not None or len(idx) == 0:
            return
        if self._tmp is None:
            self._begin()
        idx = np.asarray(idx, dtype=np.int64)
        self._tmp_index[idx] = 0
        self._tmp_index[idx, 3] = [_item_crc(i, 0, 0, b"") for i in idx.tolist()]
        self._filled[idx] = True

    def missing(self) -> np.ndarray:
        """Indices not written yet (all of them before the first write; none when complete)."""
        if self._index is not None:
            return np.zeros(0, dtype=np.int64)
        if self._filled is None:
            return np.arange(self.n, dtype=np.int64)
        return np.flatnonzero(~self._filled).astype(np.int64)

    def finish(self) -> None:
        """Append the index and footer, flush the temporary file to disk and rename it to the
        final name (atomic), then map it read-only. Requires every index to be written."""
        if self._index is not None:
            return
        if self._tmp is None or not self._filled.all():
            raise RuntimeError(f"cache {self.path}: {len(self.missing())} images not written")
        f = self._tmp
        start = f.tell()
        index = self._tmp_index.astype("<i8").tobytes()
        f.write(index)
        f.write(_FOOTER.pack(_MAGIC, _VERSION, self.n, start, zlib.crc32(index)))
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._tmp = None
        os.replace(self._tmp_path, self.path)
        self._tmp_index = self._filled = None
        self._open_complete()
        self._remove_outdated()
        self._remove_least_recently_used()
        _warn_if_large(self.folder)

    def _remove_outdated(self) -> None:
        """Complete caches of this item list with other file sizes or times, and every file
        of older versions' caches of it (their temporaries of live processes excepted)."""
        for old in self.folder.glob(f"{self.family}-*{_SUFFIX}"):
            if old.name != self.path.name and not _in_use(old):
                old.unlink(missing_ok=True)
        for fam in self._old_families:
            for old in self.folder.glob(f"{fam}-*"):
                if ".tmp-" not in old.name:
                    old.unlink(missing_ok=True)

    def _remove_least_recently_used(self) -> None:
        """Keep the `KEEP_PER_GROUP` most recently used complete caches of this cache's group
        (this one among them): remove the older ones that no live process uses."""
        group = self.family.split("-", 1)[0]
        caches = []
        for f in self.folder.glob(f"{group}-*{_SUFFIX}"):
            try:
                caches.append((f.stat().st_mtime_ns, f.name, f))
            except OSError:
                continue  # removed meanwhile
        caches.sort(reverse=True)
        old = [f for _, _, f in caches if f != self.path]
        for f in old[KEEP_PER_GROUP - 1 :]:
            if not _in_use(f):
                f.unlink(missing_ok=True)

    def discard(self) -> None:
        """Drop an unfinished temporary file (nothing happens to a complete cache)."""
        if self._tmp is not None and os.getpid() == self._owner:
            self._tmp.close()
            self._tmp = None
            self._tmp_path.unlink(missing_ok=True)
            self._tmp_index = self._filled = None

    def release(self) -> None:
        """This process no longer uses the complete file: remove its use marker (called when
        the object goes; forked workers leave their parent's marker alone)."""
        if self._marker is not None and os.getpid() == self._owner:
            self._marker.unlink(missing_ok=True)
            self._marker = None

    def __del__(self) -> None:
        try:
            self.discard()
            self.release()
        except Exception:
            pass
