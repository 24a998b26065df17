"""Where fastcore_ext keeps data sets and caches.

`FASTCORE_EXT_HOME` (default ``~/.fastcore_ext``) holds ``data/`` (overridden as a whole by
`FASTCORE_EXT_DATA`) and ``cache/``. The variables are read at every call, so tests and users
can change them at run time.

`DataPath` is the pathlib path that `untar_data` and `demo_dataset` return: a Path with
fastai's `ls()` (fastai adds `ls` to every pathlib.Path; this library patches nothing, so a
Path of your own has no `ls`: `DataPath(p)` gives it one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DataPath", "home_dir", "data_dir", "cache_dir"]


class DataPath(type(Path())):  # PosixPath or WindowsPath: Path itself cannot be subclassed
    """A pathlib Path with fastai's `ls()`; `/`, `parent` and the other derived paths are
    DataPaths too (``(path/'images').ls()``)."""

    def ls(self, n_max: int | None = None, file_exts: Iterable[str] | None = None) -> list:
        """The entries of this folder, sorted by name (fastai: `path.ls()`): the first
        `n_max` of them when given, only names ending in one of `file_exts` (e.g. ['.jpg'],
        case ignored) when given. A missing folder raises FileNotFoundError, a file
        NotADirectoryError, each naming the path."""
        if n_max is not None and (isinstance(n_max, bool) or not isinstance(n_max, int)):
            raise TypeError(f"n_max should be an int or None, got {type(n_max).__name__}")
        if n_max is not None and n_max < 0:
            raise ValueError(f"n_max should be >= 0, got {n_max}")
        if isinstance(file_exts, str):
            file_exts = [file_exts]
        exts = None if file_exts is None else {e.lower() for e in file_exts}
        entries = sorted(self.iterdir())
        if exts is not None:
            entries = [e for e in entries if e.suffix.lower() in exts]
        return entries if n_max is None else entries[:n_max]


def home_dir() -> Path:
    """The fastcore_ext folder: `$FASTCORE_EXT_HOME`, else ``~/.fastcore_ext``."""
    env = os.environ.get("FASTCORE_EXT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".fastcore_ext"


def data_dir() -> Path:
    """Where data sets go: `$FASTCORE_EXT_DATA`, else ``<home_dir()>/data``."""
    env = os.environ.get("FASTCORE_EXT_DATA")
    return Path(env).expanduser() if env else home_dir() / "data"


def cache_dir() -> Path:
    """Where derived files (decoded image caches) go: ``<home_dir()>/cache``."""
    return home_dir() / "cache"
