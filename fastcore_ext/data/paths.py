"""Where fastcore_ext keeps data sets and caches.

`FASTCORE_EXT_HOME` (default ``~/.fastcore_ext``) holds ``data/`` (overridden as a whole by
`FASTCORE_EXT_DATA`) and ``cache/``. The variables are read at every call, so tests and users
can change them at run time; one that names a file (or a path under a file) is an error naming
the variable.

`DataPath` is the pathlib path that `untar_data` and `demo_dataset` return: a Path with
fastai's `ls()` (fastai adds `ls` to every pathlib.Path; this library patches nothing, so a
Path of your own has no `ls`: `DataPath(p)` gives it one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from numbers import Integral
from pathlib import Path

from fastcore_ext.foundation import L

__all__ = [
    "DataPath",
    "NotAFolderError",
    "check_folder",
    "file_in_the_way",
    "home_dir",
    "data_dir",
    "cache_dir",
]


class NotAFolderError(NotADirectoryError, ValueError):
    """A path that should be a folder (or could become one) is a file, or lies under a file
    (both a NotADirectoryError and a ValueError, so either `except` catches it)."""


def file_in_the_way(folder: Path) -> Path | None:
    """The file that keeps `folder` from being a folder: `folder` itself, or the nearest of
    its parents that exists, when that is not a folder; None when `folder` is one or can be
    made (mkdir(parents=True))."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def check_folder(path: object, arg: str) -> Path:
    """`path` (a str or os.PathLike, `~` expanded) as a Path to a folder that exists or can
    be created: a TypeError naming `arg` for another type, a NotAFolderError naming `arg`
    when the path, or the nearest of its parents that exists, is not a folder."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{arg}: expected a folder (a str or Path), got {path!r}")
    folder = Path(path).expanduser()
    existing = file_in_the_way(folder)
    if existing is not None:
        where = "" if existing == folder else f" (a parent of {str(folder)!r})"
        raise NotAFolderError(f"{arg}: expected a folder, but {str(existing)!r}{where} is a file")
    return folder


class DataPath(type(Path())):  # PosixPath or WindowsPath: Path itself cannot be subclassed
    """A pathlib Path with fastai's `ls()`; `/`, `parent` and the other derived paths are
    DataPaths too (``(path/'images').ls()``)."""

    def ls(self, n_max: int | None = None, file_exts: Iterable[str] | None = None) -> L:
        """The entries of this folder, sorted by name, as an `L` (fastai: `path.ls()`): the first
        `n_max` of them when given, only names ending in one of `file_exts` (e.g. ['.jpg'],
        case ignored) when given. A missing folder raises FileNotFoundError, a file
        NotADirectoryError, each naming the path."""
        if n_max is not None and (isinstance(n_max, bool) or not isinstance(n_max, Integral)):
            raise TypeError(f"n_max should be an int or None, got {type(n_max).__name__}")
        if n_max is not None and n_max < 0:
            raise ValueError(f"n_max should be >= 0, got {n_max}")
        if isinstance(file_exts, str):
            file_exts = [file_exts]
        exts = None if file_exts is None else {e.lower() for e in file_exts}
        entries = sorted(self.iterdir())
        if exts is not None:
            entries = [e for e in entries if e.suffix.lower() in exts]
        return L(entries if n_max is None else entries[:n_max])


_HOME = "FASTCORE_EXT_HOME (environment variable)"


def home_dir() -> Path:
    """The fastcore_ext folder: `$FASTCORE_EXT_HOME`, else ``~/.fastcore_ext``."""
    env = os.environ.get("FASTCORE_EXT_HOME")
    if env:
        return check_folder(env, _HOME)
    return check_folder(Path.home() / ".fastcore_ext", f"{_HOME}, unset: its default")


def data_dir() -> Path:
    """Where data sets go: `$FASTCORE_EXT_DATA`, else ``<home_dir()>/data``."""
    env = os.environ.get("FASTCORE_EXT_DATA")
    if env:
        return check_folder(env, "FASTCORE_EXT_DATA (environment variable)")
    return check_folder(home_dir() / "data", f"{_HOME}: its data folder")


def cache_dir() -> Path:
    """Where derived files (decoded image caches) go: ``<home_dir()>/cache``."""
    return check_folder(home_dir() / "cache", f"{_HOME}: its cache folder")
