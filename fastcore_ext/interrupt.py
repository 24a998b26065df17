"""What a fit does when an exception escapes it (layer 3: knows the events, not the Learner).

`run_fit(learn, do_fit)` fires before_fit, runs the epochs and fires after_fit; a
CancelFitException ends it early. Any other exception (Ctrl-C's KeyboardInterrupt, a
DataLoader worker that died, an error in a callback) ends it the same way (callbacks get
`after_cancel_fit` and `after_fit`), the data loaders' worker processes are stopped, a note
on the exception says where the fit stopped, and the exception goes on to the caller with
the learner ready for the next fit.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastcore_ext.callback.core import CancelFitException

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = ["run_fit", "where", "end_after_exception", "close_loaders"]


def run_fit(learn: Learner, do_fit: Callable[[], None]) -> None:
    """before_fit, do_fit(), after_fit; CancelFitException ends it early. Any other
    exception (KeyboardInterrupt included) ends it the same way, then goes on."""
    try:
        learn._event("before_fit")
        do_fit()
    except CancelFitException:
        learn._event("after_cancel_fit")
    except BaseException as e:
        end_after_exception(learn, e)
        raise
    try:
        learn._event("after_fit")
    except BaseException:
        close_loaders(learn.data)
        raise


def where(learn: Learner) -> str:
    """Where the loop is, for messages: 'epoch 2 (of 0..3), training batch 5 of 30'."""
    epochs = f"epoch {learn.epoch} (of {learn._start_epoch}..{learn.n_epoch - 1})"
    if learn.dl is None:
        return epochs
    phase = "training" if learn.training else "validation"
    return f"{epochs}, {phase} batch {learn.iter} (0-based) of {learn.n_iter}"


def end_after_exception(learn: Learner, e: BaseException) -> None:
    """Clean up after an exception escaped the loop (see the module docstring)."""
    stopped_at = where(learn)
    if hasattr(e, "add_note"):  # Python 3.11+
        e.add_note(f"fastcore_ext: the fit stopped at {stopped_at}.")
    if isinstance(e, KeyboardInterrupt):
        print(
            f"Training interrupted at {stopped_at}. The learner is usable: its parameters are "
            f"those after the last completed optimizer step.",
            file=sys.stderr,
            flush=True,
        )
    try:
        learn._event("after_cancel_fit")
        learn._event("after_fit")
    except Exception as cleanup_error:  # keep the original exception going
        warnings.warn(
            f"a callback failed while ending the interrupted fit: {cleanup_error!r}",
            RuntimeWarning,
            stacklevel=2,
        )
    finally:
        close_loaders(learn.data)


def close_loaders(data: Any) -> None:
    """Stop the data loaders' worker processes of `data` (they restart on the next pass)."""
    for dl in (getattr(data, "train_dl", None), getattr(data, "valid_dl", None)):
        close = getattr(dl, "close", None)
        if close is not None:
            close()
