"""The training loop's events, the Callback base class and the control-flow exceptions.

The Learner's loop is a handful of small steps; each fires a named event, and every
callback attached to the learner gets a method call for each event, in `order`:

    before_fit
      before_epoch
        before_train
          before_batch  after_pred  after_loss
            before_backward  after_backward
            before_step      after_step
          after_batch
        after_train
        before_validate
          before_batch  after_pred  after_loss  after_batch     (no backward, no step)
        after_validate
      after_epoch
    after_fit

A callback stops part of the loop by raising one of the Cancel*Exception classes: the
loop catches it at the matching level, fires `after_cancel_<level>`, then still fires
`after_<level>` (as fastai v2 does). For example CancelBatchException skips the rest of one
batch, CancelFitException ends the whole fit.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastcore_ext.foundation import class2attr
from fastcore_ext.ranks import is_main_process
from fastcore_ext.warn import warn_user

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = [
    "EVENTS",
    "CANCEL_EVENTS",
    "Callback",
    "CancelBatchException",
    "CancelBackwardException",
    "CancelStepException",
    "CancelTrainException",
    "CancelValidException",
    "CancelValidateException",
    "CancelEpochException",
    "CancelFitException",
    "fire",
    "report_stop",
]

EVENTS: tuple[str, ...] = (
    "before_fit",
    "before_epoch",
    "before_train",
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "before_step",
    "after_step",
    "after_batch",
    "after_train",
    "before_validate",
    "after_validate",
    "after_epoch",
    "after_fit",
)
"""The events of a fit, in the order a batch of training meets them."""

CANCEL_EVENTS: tuple[str, ...] = (
    "after_cancel_batch",
    "after_cancel_backward",
    "after_cancel_step",
    "after_cancel_train",
    "after_cancel_validate",
    "after_cancel_epoch",
    "after_cancel_fit",
)
"""Fired when the matching Cancel*Exception was caught, just before `after_<level>`."""


class CancelBatchException(Exception):
    """Skip the rest of the current batch (then `after_cancel_batch`, `after_batch`)."""


class CancelBackwardException(Exception):
    """Skip the rest of the backward pass events (the step still runs)."""


class CancelStepException(Exception):
    """Skip the optimizer step of the current batch."""


class CancelTrainException(Exception):
    """Skip the rest of the training phase of this epoch (validation still runs)."""


class CancelValidException(Exception):
    """Skip the rest of the validation phase of this epoch."""


CancelValidateException = CancelValidException
"""The same class under the event's name (`before_validate` / `after_validate`)."""


class CancelEpochException(Exception):
    """Skip the rest of the current epoch (training and validation)."""


class CancelFitException(Exception):
    """End the fit now (then `after_cancel_fit`, `after_fit`)."""


class Callback:
    """Base class of everything that hooks into the Learner's loop.

    Subclasses override the event methods they need (`before_fit`, `after_loss`, ...; the
    full list is `EVENTS` + `CANCEL_EVENTS`) and read or change the learner's state through
    `self.learn` (`self.learn.model`, `self.learn.loss`, `self.learn.opt`, ...), which the
    learner sets when the callback is added. Callbacks run in increasing `order` (ties keep
    the order they were added in). `run_train` / `run_valid` False skip the callback during
    the training / validation phase of an epoch; `run` False (fastai's ``self.run = not
    hasattr(self.learn, 'lr_finder')`` in before_fit) skips it for every event until the end
    of the fit, after which it is True again.
    """

    order: int = 0
    run: bool = True
    run_train: bool = True
    run_valid: bool = True
    learn: Learner | None = None  # also for a subclass whose __init__ skips super().__init__()

    def __init__(self) -> None:
        self.learn = None

    @property
    def name(self) -> str:
        """Snake-case name of the class without the 'Callback' suffix, as fastai's
        (camel2snake): 'recorder', 'show_graph', 'count_cb' for CountCB; the learner's
        attribute of the callback (``learn.recorder``)."""
        return class2attr(self, "Callback")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"

    def __setattr__(self, name: str, value: Any) -> None:
        """Set the callback's attribute; a new one that the learner has too (``self.pred =
        ...`` in after_pred: the learner's pred is unchanged) is warned of, as fastai warns:
        ``self.learn.pred = ...`` changes the learner's."""
        learn = self.__dict__.get("learn")
        if (
            learn is not None
            and name not in self.__dict__
            and not hasattr(type(self), name)
            and not name.startswith("_")
            and _learner_has(learn, name)
        ):
            warn_user(
                f"{type(self).__name__}: you are shadowing an attribute ({name}) that exists "
                f"in the learner: self.{name} = ... sets the callback's own; use "
                f"self.learn.{name} = ... to change the learner's"
            )
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        """As fastai v2's callbacks (GetAttr), read the learner's state as the callback's own:
        `self.epoch`, `self.training`, `self.model`, `self.loss`, ... when the callback has
        no attribute of that name (writing sets the callback's: `__setattr__`)."""
        if name.startswith("_") or name == "learn":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        learn = self.__dict__.get("learn")
        if learn is None:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r} (nor a learner to "
                f"read it from yet)"
            )
        try:
            return getattr(learn, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}, nor has its learner"
            ) from None

    # The events. The base class does nothing for any of them.
    def before_fit(self) -> None:
        """Once, before the first epoch of a fit."""

    def before_epoch(self) -> None:
        """At the start of each epoch."""

    def before_train(self) -> None:
        """Before the training phase of an epoch (the model is in train mode)."""

    def before_batch(self) -> None:
        """Before each batch; `learn.xb`, `learn.yb` hold it: tuples of the inputs and of the
        targets, as fastai v2's (`(x,)`, `(y,)`: `learn.xb[0]` is the batch of images)."""

    def after_pred(self) -> None:
        """After the forward pass; `learn.pred` holds the output."""

    def after_loss(self) -> None:
        """After the loss; `learn.loss` (detached) and `learn.loss_grad` hold it."""

    def before_backward(self) -> None:
        """Before `loss_grad.backward()` (training only)."""

    def after_backward(self) -> None:
        """After the backward pass; the gradients are in the parameters' `.grad`."""

    def before_step(self) -> None:
        """Before the optimizer step (training only)."""

    def after_step(self) -> None:
        """After the optimizer step, before the gradients are cleared."""

    def after_batch(self) -> None:
        """After each batch, training or validation."""

    def after_train(self) -> None:
        """After the training phase of an epoch."""

    def before_validate(self) -> None:
        """Before the validation phase (eval mode, no grad)."""

    def after_validate(self) -> None:
        """After the validation phase."""

    def after_epoch(self) -> None:
        """At the end of each epoch."""

    def after_fit(self) -> None:
        """Once, at the end of a fit (also after a CancelFitException)."""

    def after_cancel_batch(self) -> None:
        """A CancelBatchException was caught."""

    def after_cancel_backward(self) -> None:
        """A CancelBackwardException was caught."""

    def after_cancel_step(self) -> None:
        """A CancelStepException was caught."""

    def after_cancel_train(self) -> None:
        """A CancelTrainException was caught."""

    def after_cancel_validate(self) -> None:
        """A CancelValidException was caught."""

    def after_cancel_epoch(self) -> None:
        """A CancelEpochException was caught."""

    def after_cancel_fit(self) -> None:
        """A CancelFitException was caught."""


# Events fired per batch; callbacks with run_train/run_valid False skip them in that phase.
_INNER_EVENTS = frozenset(
    {
        "before_batch",
        "after_pred",
        "after_loss",
        "before_backward",
        "after_backward",
        "before_step",
        "after_step",
        "after_batch",
        "after_cancel_batch",
        "after_cancel_backward",
        "after_cancel_step",
    }
)


def _learner_has(learn: Any, name: str) -> bool:
    """Whether the learner has attribute `name` (a property that fails to compute counts as
    there: its name is the learner's)."""
    try:
        return hasattr(learn, name)
    except Exception:  # a property raising something other than AttributeError
        return True


def fire(cbs: Iterable[Callback], name: str, training: bool) -> None:
    """Call the event method `name` of each callback in `cbs` (a copy of the list is walked,
    so a callback may detach itself); a per-batch event skips the callbacks whose run_train
    (training) or run_valid (validation) is False. An exception other than the Cancel*
    ones gets a note naming the callback and the event (fastai's "Exception occured in
    `Boom` when calling event `after_batch`")."""
    inner = name in _INNER_EVENTS
    for cb in list(cbs):
        if getattr(cb, "run", True) and (not inner or (cb.run_train if training else cb.run_valid)):
            try:
                getattr(cb, name)()
            except _CANCELS:
                raise
            except Exception as e:  # which callback and event raised it (fastai's message)
                _note_callback(e, f"in callback {type(cb).__name__}, event {name}")
                raise
        if name == "after_fit" and not getattr(cb, "run", True):
            cb.run = True  # fastai: run is True again at each fit's end


_CANCELS = (
    CancelBatchException, CancelBackwardException, CancelStepException, CancelTrainException,
    CancelValidException, CancelEpochException, CancelFitException,
)  # fmt: skip


def _note_callback(e: Exception, note: str) -> None:
    """Add `note` to `e` once: the innermost callback raising it (a callback that runs a
    pass of its own fires others) is the one named."""
    noted = any(n.startswith("in callback ") for n in getattr(e, "__notes__", ()))
    if hasattr(e, "add_note") and not noted:
        e.add_note(note)


def report_stop(e: BaseException, note: str, line: str) -> None:
    """How a fit or an lr_find stopped by `e`: `note` added to the exception (Python 3.11+)
    and, for a Ctrl-C (KeyboardInterrupt), `line` on stderr, once in a multi-process run."""
    if hasattr(e, "add_note"):
        e.add_note(note)
    if isinstance(e, KeyboardInterrupt) and is_main_process():
        print(line, file=sys.stderr, flush=True)
