"""Permissions of the files the library writes atomically (layer 0: imports nothing of the
package).

Every file is first written to a temporary name from `tempfile.mkstemp`, which creates it
readable by its owner only (0600), then renamed over the target. `match_mode` gives the
temporary file the permissions a plain `open(path, "w")` would have given the target (0666
less the process umask: usually 0644), or those of the file it replaces, so a saved model,
an export or a plot can be read by whoever could read the folder, and an image rewritten in a
user's data set keeps its own mode.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

__all__ = ["match_mode", "umask"]


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
