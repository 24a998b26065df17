"""A memory-mapped cache of presized images: ``uint8 [N, P, P, 3]`` in one ``.npy`` file.

The file name is a key over the item list (resolved paths, in order), each file's size and
modification time, the presize and the resize method: change any file, the order, or the
presize and a different cache is used. The array is filled by the first pass over the data
(any order, several passes if one is cut short) into ``<key>.tmp-<pid>.npy`` and renamed to
``<key>.npy`` only once every image is in it and the data are flushed: a half-written cache
has another name and is never read. Stale temporaries of dead processes and complete caches
of an older version of the same item list are removed when a new one is completed.

Unreadable images (`mark_bad`) count as filled; their rows stay zero and their indices are
kept in ``<key>.bad.npy`` (int64 [K]), written before the cache is renamed into place, so a
complete cache tells which items to skip (`bad`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .paths import cache_dir

__all__ = ["DecodedCache", "cache_key"]

_VERSION = 1


def cache_key(items: Sequence[Path], size: int, method: str) -> tuple[str, str]:
    """(family, key): `family` hashes what the images are (paths, presize, method), `key`
    adds each file's size and modification time. Raises FileNotFoundError for a missing item.
    """
    names = [str(Path(p).resolve()) for p in items]
    fam = hashlib.sha256(json.dumps([_VERSION, size, method, names]).encode()).hexdigest()[:20]
    h = hashlib.sha256(fam.encode())
    for p in items:
        st = os.stat(p)
        h.update(f"{st.st_size}:{st.st_mtime_ns};".encode())
    return fam, f"{fam}-{h.hexdigest()[:20]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DecodedCache:
    """Presized images of one item list, memory-mapped from ``<folder>/<key>.npy``.

    `complete` tells whether the finished file is there; `read` gathers a batch from it.
    While incomplete, `write` puts decoded batches into the temporary file, `missing` lists
    the indices not written yet, and `finish` publishes the file atomically.
    """

    def __init__(
        self, items: Sequence[Path], size: int, method: str, folder: Path | None = None
    ) -> None:
        self.n, self.size, self.method = len(items), int(size), method
        self.folder = Path(folder) if folder is not None else cache_dir() / "images"
        self.family, self.key = cache_key(items, size, method)
        self.path = self.folder / f"{self.key}.npy"
        self.shape = (self.n, self.size, self.size, 3)
        self._array: np.ndarray | None = None  # read-only map of the complete file
        self._tmp: np.ndarray | None = None  # writable map of the temporary file
        self._tmp_path: Path | None = None
        self._filled: np.ndarray | None = None
        self._bad: set[int] = set()  # unreadable items marked while filling
        self.bad: np.ndarray = np.zeros(0, dtype=np.int64)  # of the complete cache
        self._owner = os.getpid()  # forked DataLoader workers must not delete our files
        self._open_complete()

    def _open_complete(self) -> None:
        if not self.path.is_file():
            return
        try:
            arr = np.load(self.path, mmap_mode="r")
        except (ValueError, OSError):
            return  # unreadable (not ours or damaged): rebuilt and replaced on the next pass
        if arr.shape != self.shape or arr.dtype != np.uint8:
            return
        bad_path = self._bad_path()
        if bad_path.is_file():
            try:
                bad = np.load(bad_path)
            except (ValueError, OSError):
                return  # damaged: rebuilt on the next pass
            if bad.dtype != np.int64 or bad.ndim != 1:
                return
            self.bad = bad
        self._array = arr

    def _bad_path(self) -> Path:
        return self.folder / f"{self.key}.bad.npy"

    @property
    def complete(self) -> bool:
        """True when the finished cache file is open for reading."""
        return self._array is not None

    def read(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images `idx` (int array [B]) -> ``uint8 [B, P, P, 3]`` (into `out` if given)."""
        if self._array is None:
            raise RuntimeError(f"cache {self.path} is not complete yet")
        return np.take(self._array, idx, axis=0, out=out)

    def _begin(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob(f"{self.key}.tmp-*.npy"):
            pid = old.name[len(self.key) + 5 : -4]
            if pid.isdigit() and not _pid_alive(int(pid)):
                old.unlink(missing_ok=True)
        self._tmp_path = self.folder / f"{self.key}.tmp-{os.getpid()}.npy"
        self._tmp = np.lib.format.open_memmap(
            self._tmp_path, mode="w+", dtype=np.uint8, shape=self.shape
        )
        self._filled = np.zeros(self.n, dtype=bool)

    def write(self, idx: np.ndarray, images: np.ndarray) -> None:
        """Store presized images ``uint8 [B, P, P, 3]`` at indices `idx` ([B])."""
        if self._array is not None:
            return
        if self._tmp is None:
            self._begin()
        self._tmp[idx] = images
        self._filled[idx] = True

    def mark_bad(self, idx: np.ndarray) -> None:
        """Record indices `idx` ([K]) as unreadable images: filled, zero, listed in `bad` once
        the cache is complete."""
        if self._array is not None or len(idx) == 0:
            return
        if self._tmp is None:
            self._begin()
        self._filled[idx] = True
        self._bad.update(int(i) for i in idx)

    def missing(self) -> np.ndarray:
        """Indices not written yet (all of them before the first write; none when complete)."""
        if self._array is not None:
            return np.zeros(0, dtype=np.int64)
        if self._filled is None:
            return np.arange(self.n, dtype=np.int64)
        return np.flatnonzero(~self._filled).astype(np.int64)

    def finish(self) -> None:
        """Flush the temporary file and rename it to the final name (atomic), then map it
        read-only. Requires every index to be written."""
        if self._array is not None:
            return
        if self._tmp is None or not self._filled.all():
            raise RuntimeError(f"cache {self.path}: {len(self.missing())} images not written")
        self._tmp.flush()
        with open(self._tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        del self._tmp
        self._tmp = None
        bad_path = self._bad_path()
        if self._bad:
            np.save(bad_path, np.array(sorted(self._bad), dtype=np.int64))
        else:
            bad_path.unlink(missing_ok=True)
        os.replace(self._tmp_path, self.path)
        for old in self.folder.glob(f"{self.family}-*.npy"):
            if not old.name.startswith(self.key) and ".tmp-" not in old.name:
                old.unlink(missing_ok=True)
        self._filled = None
        self._bad = set()
        self._open_complete()

    def discard(self) -> None:
        """Drop an unfinished temporary file (nothing happens to a complete cache)."""
        if self._tmp is not None and os.getpid() == self._owner:
            del self._tmp
            self._tmp = None
            self._tmp_path.unlink(missing_ok=True)
            self._filled = None
            self._bad = set()

    def __del__(self) -> None:
        try:
            self.discard()
        except Exception:
            pass
