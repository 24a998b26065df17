"""Callbacks of the training loop: events and control flow (core), Recorder, progress output
and the learning-rate finder."""

from fastcore_ext.callback.core import (
    CANCEL_EVENTS,
    EVENTS,
    Callback,
    CancelBackwardException,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidateException,
    CancelValidException,
)
from fastcore_ext.callback.progress import ProgressCallback
from fastcore_ext.callback.recorder import Recorder

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
    "ProgressCallback",
    "Recorder",
]
