"""Atomic file writes, for every file the library writes (layer 0: imports nothing of the
package): a saved model or export, a plot, an image `verify_images` shrinks, downloaded
weights.

`atomic_write(path)` gives an open temporary file beside `path`; once the block ends without
an error, the data is flushed to disk, the file renamed over `path` (`os.replace`: atomic on
POSIX), and the rename made durable (the folder fsync'ed). On any error, Ctrl-C included,
the temporary file is removed and `path` is left as it was: a crash mid-save never leaves a
half-written file under the real name. Temporary files are named ``.<name>.<pid>.<random>.tmp``;
one that a process which died (killed, power loss) left behind is removed by the next write
of the same file.

`tempfile.mkstemp` creates the temporary file readable by its owner only (0600); `match_mode`
gives it the permissions a plain `open(path, "w")` would give (those of the file replaced,
else 0666 less the process umask: usually 0644), so a saved model, an export or a plot can be
read by whoever could read the folder, and an image rewritten in a user's data set keeps its
own mode.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "PLOTS_MARKER",
    "atomic_write",
    "match_mode",
    "pid_alive",
    "remove_stale_temporaries",
    "umask",
]

PLOTS_MARKER = ".fastcore_ext_plots"
"""The empty file in a folder of plots the library created (fastcore_ext.plots): listings of
images (data.items.get_image_files) pass such a folder by, so a plot saved inside a data set
never becomes an image or a class of it."""


@functools.cache
def umask() -> int:
    """The process umask, read without changing it where /proc tells (os.umask sets it, for
    a moment, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def match_mode(fd: int, replaces: str | os.PathLike | None = None) -> None:
    """Give the open file `fd` the mode of the file `replaces` when that exists, else that of
    a newly created file (0666 & ~umask)."""
    mode = 0o666 & ~umask()
    if replaces is not None:
        try:
            mode = stat.S_IMODE(os.stat(replaces).st_mode)
        except FileNotFoundError:
            pass
    os.fchmod(fd, mode)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (another user's counts): a temporary file named after a
    process that does not was left by one that died."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the ``.<name>.<pid>.*.tmp`` files beside `path` that processes which died left."""
    _remove_dead(path.parent.glob(f"{glob.escape(f'.{path.name}.')}*.tmp"))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of `atomic_write` in `folder`, whatever their name, that
    processes which died left (a SIGKILL during a save: a file nobody saves again under that
    name stays otherwise); returns them."""
    return _remove_dead(Path(folder).glob(".*.tmp"))


def _remove_dead(temporaries: Iterator[Path]) -> list[Path]:
    """Delete those of `temporaries` (``.<name>.<pid>.<random>.tmp``) whose process is gone."""
    removed = []
    for tmp in temporaries:
        parts = tmp.name.split(".")  # '', name..., pid, random (no dot: mkstemp's), 'tmp'
        pid = parts[-3] if len(parts) >= 5 else ""
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where directories can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode_of: str | os.PathLike | None = None
) -> Iterator[BinaryIO]:
    """Write `path` atomically (see the module docstring): yields a temporary file opened
    "w+b" in `path`'s folder (created if needed), renamed over `path` when the block ends
    without an error, removed otherwise. The file keeps the mode of the file it replaces;
    a new file gets that of `mode_of` when given (an image shrunk into another folder keeps
    its own), else a new file's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as e:  # it names the temporary file only
        e.add_note(_write_failed(path))
        raise
    try:
        match_mode(fd, path if path.exists() else mode_of)
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # an error or a KeyboardInterrupt: the old file stays, no temp
        written = None
        with contextlib.suppress(OSError):
            written = os.path.getsize(tmp)
        with contextlib.suppress(FileNotFoundError):  # file
            os.unlink(tmp)
        if not isinstance(e, KeyboardInterrupt) and _interrupted(e):
            # Ctrl-C inside torch.save's writer comes out as its RuntimeError ("unexpected
            # pos ..."): a Ctrl-C it is, for the caller's `except KeyboardInterrupt`
            stop = KeyboardInterrupt()
            stop.add_note(
                f"while writing {str(path)!r}: the file there before, if any, is unchanged"
            )
            raise stop from e
        if isinstance(e, OSError | RuntimeError):  # torch's "unexpected pos" names neither
            e.add_note(_write_failed(path, written, _no_space(e)))
        raise
    _fsync_dir(path.parent)


def _causes(e: BaseException) -> Iterator[BaseException]:
    """The exceptions `e` was raised from or while handling (its __cause__ / __context__
    chain), nearest first."""
    seen = {id(e)}
    cause = e.__cause__ or e.__context__
    while cause is not None and id(cause) not in seen:
        yield cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__


def _interrupted(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the exceptions that `e` was raised from or while
    handling."""
    return any(isinstance(c, KeyboardInterrupt) for c in _causes(e))


def _no_space(e: BaseException) -> bool:
    """Whether `e` or an exception it was raised from is ENOSPC (a full disk)."""
    return any(isinstance(c, OSError) and c.errno == errno.ENOSPC for c in (e, *_causes(e)))


def _write_failed(path: Path, written: int | None = None, no_space: bool = False) -> str:
    """The note on an error while writing `path`: which file, how much had been written,
    that the previous one is kept, and the free space left in its folder (a full disk is the
    usual cause: torch's writer says only "unexpected pos")."""
    mib = 2**20
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    where = f"while writing {str(path)!r}"
    if written is not None:
        where += f" (stopped after {written / mib:,.1f} MiB"
        where += ")" if free is None else f", with {free / mib:,.1f} MiB free there)"
    elif free is not None:
        where += f" ({free / mib:,.1f} MiB free there)"
    if no_space:
        where = "no space left on the device " + where
    elif written is not None and free is not None and free < written + 64 * mib:
        where += ": the disk is probably full"
    return f"{where}; the file there before, if any, is unchanged"
