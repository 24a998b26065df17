"""What a fit does when an exception escapes it (layer 3: knows the events, not the Learner).

`run_fit(learn, do_fit)` fires before_fit, runs the epochs and fires after_fit; a
CancelFitException ends it early. Any other exception (Ctrl-C's KeyboardInterrupt, a
DataLoader worker that died, an error in a callback) ends it the same way (callbacks get
`after_cancel_fit` and `after_fit`, with the exception in `learn.fit_error` meanwhile), the
data loaders' worker processes are stopped, a note
on the exception says where the fit stopped (`where`), and the exception goes on to the caller
with the learner ready for the next fit. An lr_find sweep (an LRFinder among the callbacks)
gets neither the note nor the Ctrl-C message here: its epochs and batches are not the
user's, and `callback.lr_finder.sweep` says how far it got once it has put the learner back.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastcore_ext.callback.core import CancelFitException, report_stop
from fastcore_ext.callback.lr_finder import LRFinder

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


# The events between batches, where `learn.iter` / `learn.n_iter` still describe the previous
# phase: `where` names the boundary instead of a batch.
_BOUNDARIES = {
    "before_fit": "the start of the fit, before {epoch}",
    "before_epoch": "the start of {epoch}",
    "before_train": "the start of the training phase of {epoch}",
    "after_train": "the end of the training phase of {epoch}",
    "after_cancel_train": "the end of the training phase of {epoch}",
    "before_validate": "the start of the validation phase of {epoch}",
    "after_validate": "the end of the validation phase of {epoch}",
    "after_cancel_validate": "the end of the validation phase of {epoch}",
    "after_epoch": "the end of {epoch}",
    "after_cancel_epoch": "the end of {epoch}",
}


def where(learn: Learner) -> str:
    """Where the loop is, for messages: 'epoch 2 (of 0..3), training batch 5 (0-based) of 30',
    or between batches 'the start of the validation phase of epoch 2 (of 0..3)' (from
    `learn.event`, the event fired last)."""
    first, last = learn._start_epoch, learn.n_epoch - 1
    epoch = f"epoch {learn.epoch} " + (
        "(the only one)" if first == last else f"(of {first}..{last})"
    )
    boundary = _BOUNDARIES.get(learn.event)  # None: no event fired yet
    if boundary is not None:
        return boundary.format(epoch=epoch)
    if learn.dl is None:
        return epoch
    phase = "training" if learn.training else "validation"
    return f"{epoch}, {phase} batch {learn.iter} (0-based) of {learn.n_iter}"


def end_after_exception(learn: Learner, e: BaseException) -> None:
    """Clean up after an exception escaped the loop (see the module docstring). The message
    comes after the callbacks' after_fit, so that the progress bar of a terminal has been
    cleared (ProgressCallback.after_fit) before the line is printed where it was."""
    stopped_at = where(learn)  # before the events below move learn.event
    learn.fit_error = e
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
        learn.fit_error = None
        close_loaders(learn.data)
        if not any(isinstance(cb, LRFinder) for cb in learn.cbs):
            _report_stop(stopped_at, e)


def _report_stop(stopped_at: str, e: BaseException) -> None:
    """A note on `e` saying where the fit stopped (`stopped_at`, from `where`) and, for a
    KeyboardInterrupt, a line on stderr."""
    report_stop(
        e,
        f"fastcore_ext: the fit stopped at {stopped_at}.",
        f"Training interrupted at {stopped_at}. The learner is usable: its parameters are "
        f"those after the last completed optimizer step.",
    )


def close_loaders(data: Any) -> None:
    """Stop the data loaders' worker processes of `data` (they restart on the next pass)."""
    for dl in (getattr(data, "train_dl", None), getattr(data, "valid_dl", None)):
        close = getattr(dl, "close", None)
        if close is not None:
            close()
