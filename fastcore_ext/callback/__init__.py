"""Callbacks of the training loop: events and control flow (core), Recorder, progress output,
the learning-rate finder, the trackers (NaN stop, early stopping, best-model saving, lr
reduction on a plateau, CSV log), MixUp / CutMix, ParamScheduler (fastai's schedules of any
hyper-parameter), ShowGraph (the losses redrawn after each epoch), gradient accumulation and
clipping (training), ConvWeightGrad (weight-heavy convolutions' gradients as one matrix
product on the CPU) and the DDP trainer (ddp)."""

from fastcore_ext.callback.activation_stats import ActivationStats
from fastcore_ext.callback.conv_weight_grad import ConvWeightGrad
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
from fastcore_ext.callback.ddp import DistributedTrainer
from fastcore_ext.callback.mixed_precision import MixedPrecision
from fastcore_ext.callback.mixup import CutMix, MixHandler, MixUp
from fastcore_ext.callback.param_scheduler import ParamScheduler
from fastcore_ext.callback.progress import ProgressCallback
from fastcore_ext.callback.recorder import Recorder
from fastcore_ext.callback.show_graph import ShowGraph, ShowGraphCallback
from fastcore_ext.callback.tracker import (
    CSVLogger,
    EarlyStoppingCallback,
    ReduceLROnPlateau,
    SaveModelCallback,
    TerminateOnNaN,
    TerminateOnNaNCallback,
    TrackerCallback,
)
from fastcore_ext.callback.training import BnFreeze, GradientAccumulation, GradientClip

__all__ = [
    "ActivationStats",
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
    "TerminateOnNaN",
    "TerminateOnNaNCallback",
    "TrackerCallback",
    "EarlyStoppingCallback",
    "SaveModelCallback",
    "ReduceLROnPlateau",
    "CSVLogger",
    "ShowGraph",
    "ShowGraphCallback",
    "MixHandler",
    "MixUp",
    "CutMix",
    "ConvWeightGrad",
    "ParamScheduler",
    "DistributedTrainer",
    "GradientAccumulation",
    "GradientClip",
    "BnFreeze",
    "MixedPrecision",
]
