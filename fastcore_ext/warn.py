"""Warnings that point at the user's line (layer 0: imports nothing of the package).

`warnings.warn(..., stacklevel=n)` names the frame n levels up; from deep inside the library
(a data loader's generator during `fit_one_cycle`, a class method's helper) no fixed n reaches
the user's code. `warn_user` walks out of the package's frames and names the first frame
outside it: the line of the user's script or notebook cell that called into the library.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["user_stacklevel", "warn_user"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The `stacklevel` that makes a `warnings.warn` in the caller of this function name the
    first frame outside this package (1, the caller itself, when every frame is inside)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level if frame is not None else 1


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn(message, category)` attributed to the user's code (see the module)."""
    warnings.warn(message, category, stacklevel=user_stacklevel())
