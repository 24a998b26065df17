"""Where fastcore_ext keeps data sets and caches.

`FASTCORE_EXT_HOME` (default ``~/.fastcore_ext``) holds ``data/`` (overridden as a whole by
`FASTCORE_EXT_DATA`) and ``cache/``. The variables are read at every call, so tests and users
can change them at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["home_dir", "data_dir", "cache_dir"]


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
