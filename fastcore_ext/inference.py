"""Inference with a Learner: get_preds, validate, predict, tta and show_results (what the
Learner methods call).

Every pass runs the model through `forward(learn, xb)`: the input in the learner's memory
format (channels-last after `to_channels_last`), inside `learn.autocast()` (the learner's
precision), through `learn.compiled` after `learn.compile()` (else `learn.model`), under
`evaluating(model)`: eval mode and torch.inference_mode (no autograd bookkeeping at all),
every module's train/eval mode put back afterwards. Callbacks of the user's own classes
get the pass's events (`PassEvents`, as fastai's get_preds and validate run them; this
library's callbacks get none); get_preds and validate show a progress bar over the pass
(the learner's `ProgressCallback.pass_bar`). The Learner's validation phase uses the same
precision and layout, under inference_mode too.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sized
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from fastcore_ext import ops
from fastcore_ext.augment import AugmentSpec, augment_batch, epoch_generator, random_params
from fastcore_ext.callback.core import fire
from fastcore_ext.checks import check_bool, check_hw, check_int, int_or_none, real_or_none
from fastcore_ext.data import BadImageError, DeviceDataLoader, PILImage
from fastcore_ext.data.items import MissingPathError, shown_names
from fastcore_ext.losses import is_class_loss
from fastcore_ext.metrics import Metric, metric_value
from fastcore_ext.optim import OptimWrapper
from fastcore_ext.plots import check_ctxs, finish, grid_cells, image_grid
from fastcore_ext.ranks import all_gather_cat, reduce_validation
from fastcore_ext.torch_core import cat_nested, leaves, map_nested, non_finite_tensors, to_float
from fastcore_ext.warn import warn_user

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = [
    "Category",
    "ds_idx_set",
    "evaluating",
    "forward",
    "get_preds",
    "in_order_loader",
    "no_data_error",
    "predict",
    "show_results",
    "summary",
    "tta",
    "tta_v1",
    "tta_v1_params",
    "validate",
]

_PACKAGE = "fastcore_ext."  # the modules of this library's own callbacks
_TTA_STREAM = 0x77A_5EED  # keeps TTA's augmentation streams apart from training's
_TTA_V1_STREAM = 0x71A_5EED  # and v1 TTA's random (lighting, rotation, warp) draws
TTA_V1_PASSES = 8  # fastai v1's TTA: 4 zoomed corners x (plain, mirrored)


def _check_beta(beta: Any) -> float | None:
    """tta's beta: None or a number in [0, 1], as a float."""
    if beta is None:
        return None
    number = real_or_none(beta)
    if number is None or not 0 <= number <= 1:
        raise ValueError(f"beta should be a float in [0, 1] or None, got {beta!r}")
    return number


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and torch.inference_mode; every module's mode comes back afterwards."""
    modes = [m.training for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for m, mode in zip(model.modules(), modes, strict=True):
            m.training = mode


_DS_IDX = {0: "train", 1: "valid"}  # fastai v2's ds_idx -> this library's ds_type


def ds_idx_set(ds_idx: Any) -> str:
    """The ds_type fastai v2's `ds_idx` names: 'train' for 0, 'valid' for 1; a ValueError
    for anything else (a bool too)."""
    if isinstance(ds_idx, bool) or ds_idx not in _DS_IDX:
        raise ValueError(f"ds_idx should be 0 (train) or 1 (valid), got {ds_idx!r}")
    return _DS_IDX[ds_idx]


class MissingRowsWarning(UserWarning):
    """get_preds of a data set with unreadable images: fewer rows than items (callers that map
    rows to items themselves, as ClassificationInterpretation, filter it)."""


def forward(learn: Learner, xb: torch.Tensor, events: PassEvents | None = None) -> torch.Tensor:
    """The model call of every inference pass: Tensor[B, C, H, W] in the learner's memory
    format, in its precision -> float32 Tensor[B, c] (the loss of validation sees float32
    predictions, as training's: MixedPrecision.after_pred); `events`: the pass's user
    callbacks' after_pred sees (and may replace) the output first. The caller holds
    `evaluating`."""
    if learn.channels_last and xb.dim() == 4:
        xb = xb.contiguous(memory_format=torch.channels_last)
    model = learn.compiled if learn.compiled is not None else learn.model
    with learn.autocast():
        out = model(xb)
        if events is not None:
            out = events.pred(out)
        return to_float(out)


class PassEvents:
    """The per-batch events of an inference pass (get_preds, validate, and tta's passes) for
    the attached callbacks of the user's own classes that take part in validation
    (run_valid), as fastai's get_preds and validate run callbacks: before_validate, then
    per batch before_batch (``learn.xb`` / ``learn.yb``, which it may replace), after_pred
    (``learn.pred``), after_loss (``learn.loss``, validate only) and after_batch, then
    after_validate; ``learn.training`` is False. This library's own callbacks (recorder,
    progress, precision, trackers, DDP) have no part in an inference pass and get none.
    A pass without such callbacks costs nothing."""

    def __init__(self, learn: Learner) -> None:
        self.learn = learn
        self.cbs = [
            cb
            for cb in getattr(learn, "cbs", ())
            if cb.run_valid and not type(cb).__module__.startswith(_PACKAGE)
        ]

    def __call__(self, name: str) -> None:
        if self.cbs:
            self.learn.event = name
            fire(self.cbs, name, False)

    def batch(self, i: int, xb: Any, yb: Any) -> tuple[Any, Any]:
        """before_batch on batch `i`: the (x, y) the callbacks leave in learn.xb / learn.yb."""
        if not self.cbs:
            return xb, yb
        learn = self.learn
        learn.iter, learn.xb, learn.yb = i, (xb,), () if yb is None else (yb,)
        self("before_batch")
        return learn.xb[0], (learn.yb[0] if learn.yb else None)

    def pred(self, out: Any) -> Any:
        """after_pred: the output the callbacks leave in learn.pred."""
        if not self.cbs:
            return out
        self.learn.pred = out
        self("after_pred")
        return self.learn.pred

    def loss(self, loss: torch.Tensor) -> None:
        """after_loss with the batch's mean loss in learn.loss_grad and a copy in learn.loss,
        as in a fit."""
        if self.cbs:
            self.learn.loss_grad, self.learn.loss = loss, loss.clone()
            self("after_loss")

    @contextlib.contextmanager
    def running(self, dl: Any = None) -> Iterator[None]:
        """As fastai's validation context: before_fit, before_epoch, before_validate, the
        pass (``learn.dl`` its loader), after_validate (not after an exception), then
        after_epoch and after_fit (also after one); the learner forgets the pass's loader
        and last batch afterwards."""
        if self.cbs:
            self.learn.dl = dl
        self("before_fit")
        try:
            self("before_epoch")
            self("before_validate")
            yield
            self("after_validate")
        finally:
            try:
                self("after_epoch")
                self("after_fit")
            finally:
                if self.cbs:  # (learn.loss keeps the last batch's, as after a fit)
                    learn = self.learn
                    learn.dl = learn.xb = learn.yb = learn.pred = learn.loss_grad = None


class _BatchView:
    """A validation batch as a fastai Metric's accumulate(learn) reads it: pred, xb / x,
    yb / y, loss, training False; anything else the learner's."""

    def __init__(self, learn: Learner, xb: Any, yb: Any, pred: Any, loss: Any) -> None:
        self.learn, self.pred, self.loss, self.training = learn, pred, loss, False
        self.xb, self.yb, self.x, self.y = (xb,), (yb,), xb, yb

    def __getattr__(self, name: str) -> Any:
        return getattr(self.learn, name)


def not_finite_rows(out: Any) -> torch.Tensor | None:
    """Which items (bool [N], on the CPU) of the model's outputs `out` (Tensor[N, ...], or a
    tuple / dict of them) hold a NaN or an infinity; None when it holds no tensor of rows."""
    tensors = [t for t in leaves(out) if isinstance(t, torch.Tensor) and t.dim() > 0]
    if not tensors:
        return None
    n_items = len(tensors[0])
    bad_rows = torch.zeros(n_items, dtype=torch.bool)
    for t in tensors:
        if len(t) == n_items:
            bad_rows |= ~torch.isfinite(t.detach()).reshape(n_items, -1).all(dim=1).cpu()
    return bad_rows


def warn_not_finite(learn: Learner, bad_rows: torch.Tensor | None, caller: str) -> None:
    """A RuntimeWarning when some of the model's outputs hold a NaN or an infinity (`bad_rows`:
    their `not_finite_rows`): its predictions mean nothing (an argmax over NaN is class 0). It
    says whether the model's own tensors are not finite (a fit diverged) or the inputs must
    be."""
    if bad_rows is None or not bool(bad_rows.any()):
        return
    n_items, rows = len(bad_rows), int(bad_rows.sum())
    broken = non_finite_tensors(learn.model)
    if broken:
        why = (
            f"{len(broken)} of the model's tensors are not finite ({shown_names(broken, 3)}): "
            "a fit diverged (a learning rate too high). "
            "learn.load a checkpoint saved before it, or build the learner anew, and train at "
            "a lower learning rate"
        )
    else:
        why = "the model's tensors are finite, so some inputs must not be"
    warn_user(
        f"{caller}: the model's outputs are NaN or infinite for {rows} of {n_items} "
        f"item(s), so their predicted classes and losses mean nothing: {why}",
        RuntimeWarning,
    )


def _one_batch(learn: Learner, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An inference pass of one unlabelled batch with its events (predict, show_results):
    (x as the user's callbacks leave it, the model's float32 outputs)."""
    events = PassEvents(learn)
    with evaluating(learn.model), events.running():
        x, _ = events.batch(0, x, None)
        out = forward(learn, x, events)
        events("after_batch")
    return x, out


def get_preds(
    learn: Learner,
    ds_type: str = "valid",
    with_loss: bool = False,
    with_input: bool = False,
    dl: Iterable[Any] | None = None,
    act: Callable[[torch.Tensor], torch.Tensor] | None = None,
    reorder: bool = True,
    with_decoded: bool = False,
) -> tuple[torch.Tensor, ...]:
    """`Learner.get_preds`: one inference pass over a data set, under `evaluating` (eval
    mode, torch.inference_mode, modes put back afterwards) through `forward` (the learner's
    precision and memory layout); the user's callbacks get the pass's events (`PassEvents`).

    ds_type: 'valid' (the validation loader: every item, in valid_ds order, validation
    transform) or 'train' (every training item in train_ds order, unshuffled and without
    drop_last, but through the training loader's transforms: random augmentation seeded
    from (seed, epoch) of the loader's next epoch, which does not advance; fastai's
    choice. Pass `dl`, or 'fix' (fastai v1's DatasetType.Fix), for an un-augmented pass of
    the training set in order). Needs a loader with `shuffle` and
    `drop_last` attributes (fastcore_ext.data's DeviceDataLoader). 'test' (fastai v1's
    DatasetType.Test): the unlabelled test set of ``data.add_test(files)`` (or from_folder's
    ``test=``, load_learner's ``test=``), in its order; targets None. Unreadable image files
    have no row (the others keep their order), and a warning says how many.
    with_loss: also return per-item losses: the learner's loss_func with
    reduction='none' (an nn loss module with a `reduction` attribute, or
    F.cross_entropy / F.nll_loss), on the raw outputs in float32.
    with_input: also return the model inputs, moved to the CPU batch by batch.
    dl: any iterable of (x, y) batches (x float, as the model takes it; y None for
    unlabelled images: the targets returned are then None, as fastai v2's test_dl gives);
    overrides ds_type.
    act: applied to the raw outputs Tensor[B, c] (float32); default: the loss function's
    ``activation`` (fastai v2's; the sigmoid of BCEWithLogitsLossFlat), else the softmax for
    a classifier (`classifying`), else none: a custom loss's raw outputs, as fastai's.
    reorder: when the loader is shuffled and tells its order (`batch_indices()`), put the
    rows back into data set order; else rows come in the loader's order.
    with_decoded: also return the predicted classes, the argmax of the probabilities (what
    fastai v2's CrossEntropyLossFlat.decodes gives); the loss function's own ``decodes``
    where it has one; for a learner that is not `classifying`, the activated outputs.

    Returns, on the CPU, as fastai v2 orders them:
    (probs float32 [N, c], targets [N]) -- targets int64 for classification,
    + decoded int64 [N] after the targets when with_decoded,
    + losses float32 [N] at the end when with_loss,
    + inputs [N, ...] at the front when with_input:
    (inputs, probs, targets[, decoded][, losses]).
    """
    flags = (
        ("with_loss", with_loss),
        ("with_input", with_input),
        ("reorder", reorder),
        ("with_decoded", with_decoded),
    )
    for name, flag in flags:
        check_bool(name, flag)
    if act is not None and not callable(act):
        raise TypeError(f"act should be a callable or None, got {type(act).__name__}")
    own_loader = dl is None
    dl, source = _pass_dl(learn, ds_type, dl)
    per_item = _per_item_loss_func(learn.loss_func) if with_loss else None
    order = _pass_order(dl) if reorder else None
    outs: list[torch.Tensor] = []
    targs: list[torch.Tensor] = []
    losses: list[torch.Tensor] = []
    inputs: list[torch.Tensor] = []
    labelled: bool | None = None  # the batches carry targets (y None: unlabelled images)
    rules = _BatchRules.of(learn, source)
    events = PassEvents(learn)
    with evaluating(learn.model), _pairs(learn, dl, source) as pairs, events.running(dl):
        for i, xb, yb in pairs:
            if labelled is None:
                labelled = yb is not None
            if labelled != (yb is not None):
                raise ValueError("dl yielded batches with targets and batches with y None")
            if not labelled and per_item is not None:
                raise ValueError("with_loss needs targets, but the batches of dl have y None")
            xb, yb = events.batch(i, xb, yb)
            rules.check(i, xb, yb, loss=per_item is not None)
            with rules.int_input_note(i, xb):
                out = forward(learn, xb, events)
            n = xb.shape[0] if yb is None else yb.shape[0]
            if isinstance(out, torch.Tensor) and (  # a tuple or dict: the user's loss's
                (out.dim() != 2 if rules.classes else out.dim() == 0) or out.shape[0] != n
            ):
                what = "Tensor[B, c]" if rules.classes else "one output per item, [B, ...]"
                raise ValueError(
                    f"the model should return {what} for a batch of B = {n}, got "
                    f"shape {tuple(out.shape)}"
                )
            outs.append(out)
            if labelled:
                targs.append(yb)
            if per_item is not None:
                loss = per_item(out, yb)
                if loss.shape != yb.shape[:1]:
                    raise ValueError(
                        f"loss_func with reduction='none' should give one loss per "
                        f"item, shape ({yb.shape[0]},), got {tuple(loss.shape)}"
                    )
                losses.append(loss.float())
            if with_input:
                inputs.append(xb.detach().cpu())
            events("after_batch")
    # outside inference_mode, so the results are normal tensors (usable with autograd)
    raw = cat_nested(outs) if outs else None  # a model's tuple or dict: leaf by leaf
    targ, loss, inp = (torch.cat(p) if p else None for p in (targs, losses, inputs))
    if getattr(dl, "world_size", 1) > 1:  # this process's block: gather all, rank order
        raw = map_nested(raw, all_gather_cat)  # leaf by leaf (None is a leaf too)
        targ, loss, inp = map(all_gather_cat, (targ, loss, inp))
        order = None if order is None else all_gather_cat(order)
    if raw is None:
        raise ValueError(_no_batch(source, dl, own_loader and ds_type == "valid"))
    warn_not_finite(learn, not_finite_rows(raw), "get_preds")
    nested = not isinstance(raw, torch.Tensor)
    if act is None:
        act = getattr(learn.loss_func, "activation", None)
    if act is None:  # a tuple or dict of outputs as they come, as fastai's (no activation)
        act = partial(torch.softmax, dim=-1) if rules.classes and not nested else _identity
    probs = map_nested(act(raw), _float_cpu) if nested else act(raw).float().cpu()
    res = [probs, None if targ is None else targ.cpu()]
    if with_decoded:
        decodes = getattr(learn.loss_func, "decodes", None)
        if decodes is not None:
            res.append(decodes(probs))
        else:
            res.append(probs.argmax(dim=-1) if rules.classes and not nested else probs)
    if with_loss:
        res.append(loss.cpu())
    if with_input:
        res.insert(0, inp)
    n_rows = len(leaves(probs)[0])
    if order is not None:
        if len(order) != n_rows:
            raise ValueError(
                f"dl's batch_indices() name {len(order)} items but it yielded {n_rows}"
            )
        perm = torch.argsort(order)
        res = [None if r is None else map_nested(r, lambda t: t[perm]) for r in res]
    n_items = len(getattr(dl, "dataset", ())) if own_loader else 0
    if n_rows < n_items:
        warn_user(
            f"get_preds: {n_items - n_rows} of the {n_items} {ds_type} images are unreadable "
            f"and have no row (data.bad_items names them); the {n_rows} rows are the other "
            f"items, in {ds_type}_ds order",
            MissingRowsWarning,
        )
    return tuple(res)


def _float_cpu(t: Any) -> Any:
    """A leaf of the activated outputs on the CPU, floating point ones as float32."""
    if not isinstance(t, torch.Tensor):
        return t
    return (t.float() if t.is_floating_point() else t).cpu()


def validate(
    learn: Learner, ds_type: str = "valid", dl: Iterable[Any] | None = None
) -> list[float]:
    """`Learner.validate`: the loss and each metric over a whole data set, computed as the
    epoch table computes its valid_loss and metrics (the learner's loss_func per batch inside
    its autocast, averaged over items; each metric on every raw output at once; under several
    processes over every process's part), the user's callbacks getting the pass's events
    (`PassEvents`), without a change to the recorder. ds_type and dl as in `get_preds`.
    Returns [loss, *metrics] as floats."""
    own_loader = dl is None
    dl, source = _pass_dl(learn, ds_type, dl)
    loss_sum: torch.Tensor | None = None
    n = 0
    outs: list[torch.Tensor] = []
    targs: list[torch.Tensor] = []
    bad_rows: list[torch.Tensor] = []  # without metrics: which items' outputs are not finite
    rules = _BatchRules.of(learn, source)
    events = PassEvents(learn)
    accumulating = [m for m in learn.metrics if isinstance(m, Metric)]
    for m in accumulating:
        m.reset()
    with evaluating(learn.model), _pairs(learn, dl, source) as pairs, events.running(dl):
        for i, xb, yb in pairs:
            xb, yb = events.batch(i, xb, yb)
            if yb is None:
                raise ValueError(
                    f"{source}, batch {i}: y is None, but validate computes the loss and the "
                    f"metrics against targets; pass (x, y) batches with y the class indices "
                    f"(get_preds(dl=[(x, None), ...]) predicts images without labels)"
                )
            rules.check(i, xb, yb, loss=True)
            with rules.int_input_note(i, xb):
                out = forward(learn, xb, events)
            with learn.autocast():
                # a loss of reduction='none' too: its items' mean, as fastai's AvgLoss
                mean = learn.loss_func(out, yb).detach().float().mean()
            events.loss(mean)
            events("after_batch")
            for m in accumulating:  # fastai's Metric classes read the batch from the learner
                m.accumulate(_BatchView(learn, xb, yb, out, mean))
            loss = mean * yb.shape[0]
            loss_sum = loss if loss_sum is None else loss_sum + loss
            n += yb.shape[0]
            if learn.metrics:  # only metrics read the outputs (any structure the loss takes)
                outs.append(out)
                targs.append(yb)
            else:
                bad = not_finite_rows(out)
                if bad is not None:
                    bad_rows.append(bad)
    # outside inference_mode, as in get_preds; every process joins, also one with no batch
    preds = cat_nested(outs) if outs else None  # a model's tuple or dict: leaf by leaf
    targ = torch.cat(targs) if targs else None
    if getattr(dl, "world_size", 1) > 1:
        loss_sum, n, preds, targ = reduce_validation(loss_sum, n, preds, targ)
    if n == 0 or loss_sum is None:
        raise ValueError(_no_batch(source, dl, own_loader and ds_type == "valid"))
    # with metrics, every process's outputs (gathered); without, this process's batches'
    if preds is not None:
        rows = not_finite_rows(preds)
    else:
        rows = torch.cat(bad_rows) if bad_rows else None
    warn_not_finite(learn, rows, "validate")
    return [float(loss_sum / n)] + [metric_value(m, preds, targ) for m in learn.metrics]


def _pass_dl(learn: Learner, ds_type: str, dl: Iterable[Any] | None) -> tuple[Iterable[Any], str]:
    """The loader of a pass (`dl`, else the one of ds_type: `_preds_dl`) and how errors name
    it."""
    if ds_type not in ("valid", "train", "fix", "test"):
        v2 = " (fastai v2's ds_idx is a keyword here: ds_idx=0 or 1)" if ds_type in (0, 1) else ""
        raise ValueError(
            f"ds_type should be 'valid', 'train', 'fix' or 'test', got {ds_type!r}{v2}"
        )
    if dl is None:
        source = {"fix": "the training set (fix)", "test": "the test set (data.add_test)"}.get(
            ds_type, f"data.{ds_type}_dl"
        )
        return _preds_dl(learn.data, ds_type), source
    if not isinstance(dl, Iterable):
        raise TypeError(f"dl should be an iterable of (x, y) batches, got {type(dl).__name__}")
    return dl, "dl"


@contextlib.contextmanager
def _pairs(
    learn: Learner, dl: Iterable[Any], source: str
) -> Iterator[Iterator[tuple[int, Any, Any]]]:
    """(batch number, x, y) of each (x, y) batch of `dl` (anything else is an error), with a
    progress bar over the pass while the `with` block runs (the learner's
    `ProgressCallback.pass_bar`: where and whether the fit's bar shows; none for a `dl`
    without a length)."""
    progress = getattr(learn, "progress", None)
    total = len(dl) if isinstance(dl, Sized) else 0
    bar = progress.pass_bar(total) if progress is not None else None

    def batches() -> Iterator[tuple[int, Any, Any]]:
        for i, batch in enumerate(dl):
            if not (isinstance(batch, (tuple, list)) and len(batch) in (1, 2)):
                raise TypeError(
                    f"{source} should yield (x, y) pairs (or (x,) without targets), got "
                    f"{type(batch).__name__} at batch {i}"
                )
            yield i, batch[0], batch[1] if len(batch) == 2 else None
            if bar is not None:
                bar.update(i + 1)

    try:
        yield batches()
    finally:
        if bar is not None:
            bar.close()


def classifying(learn: Learner) -> bool:
    """Whether the learner classifies over class indices: its loss is a classifier's
    (cross-entropy, NLL, label smoothing) or its data names its classes (data.c: image
    folders, a torchvision ImageFolder). A custom loss on other data (fastbook ch. 4's
    mnist_loss on (B, 1) targets) is not: its targets and outputs are the user's."""
    return is_class_loss(learn.loss_func) or int_or_none(getattr(learn.data, "c", None)) is not None


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclasses.dataclass(frozen=True)
class _BatchRules:
    """What a batch of an inference pass must be, read once from the learner: x a float
    tensor in the model's dtype (or its autocast dtype) on its device, [B, C, H, W] with the
    C of its first convolution (when it has one); y None, int64 class indices [B] in
    [0, c) (range checked with one min/max per batch on the CPU only: on a GPU that would
    wait for the device at every batch) or float class probabilities [B, c]; for a learner
    that is not `classifying`, y any tensor of one target per item (what its own loss
    takes). Errors name the source (`dl` or the data's loader) and the batch number, and say
    how to fix the batch."""

    source: str
    device: torch.device
    dtypes: tuple[torch.dtype, ...]
    channels: int | None
    c: int | None
    classes: bool

    @classmethod
    def of(cls, learn: Learner, source: str) -> _BatchRules:
        param = next(iter(learn.model.parameters()), None)
        device = param.device if param is not None else torch.device(learn.data.device)
        dtypes = (param.dtype,) if param is not None else (torch.float32,)
        mp = learn.mixed_precision
        if mp is not None and mp.dtype not in dtypes:
            dtypes += (mp.dtype,)
        conv = next((m for m in learn.model.modules() if isinstance(m, nn.Conv2d)), None)
        channels = conv.in_channels if conv is not None else None
        c = int_or_none(getattr(learn.data, "c", None))
        return cls(source, device, dtypes, channels, c, classifying(learn))

    def check(self, i: int, xb: Any, yb: Any, loss: bool) -> None:
        """TypeError / ValueError unless batch `i` (xb, yb) fits the rules; `loss`: its
        loss is computed, so y must be on the model's device too."""
        where = f"{self.source}, batch {i}:"
        self._check_x(where, xb)
        if yb is not None:
            self._check_y(where, yb, xb.shape[0], loss)

    @contextlib.contextmanager
    def int_input_note(self, i: int, xb: torch.Tensor) -> Iterator[None]:
        """The model's call on batch `i`: when it fails on integer x, the error says what x
        was and what a model of float layers takes."""
        try:
            yield
        except (RuntimeError, TypeError) as e:
            if not xb.is_floating_point():
                e.add_note(
                    f"{self.source}, batch {i}: x has dtype {xb.dtype}; a model of float "
                    "layers takes float images (normalized: learn.data.preprocess(files) "
                    "makes them; x.float() / 255 scales uint8 pixels)"
                )
            raise

    def _check_device(self, where: str, xb: torch.Tensor) -> None:
        if xb.device != self.device:
            raise ValueError(
                f"{where} x should be on the model's device {self.device}, got {xb.device}: "
                f"move it with x.to(learn.dls.device)"
            )

    def _check_x(self, where: str, xb: Any) -> None:
        if not isinstance(xb, torch.Tensor):
            hint = " (torch.from_numpy(x) makes one)" if isinstance(xb, np.ndarray) else ""
            raise TypeError(
                f"{where} x should be a torch.Tensor of images [B, C, H, W]{hint}, got "
                f"{type(xb).__name__}"
            )
        if not xb.is_floating_point():  # a model of the user's that casts them, or embeds ids
            self._check_device(where, xb)  # a failure of its forward is named: int_input_note
            return
        if xb.dtype not in self.dtypes:
            names = f"{self.dtypes[0]} (the model's weights)"
            if len(self.dtypes) > 1:
                names += f" or {self.dtypes[1]} (its autocast)"
            raise TypeError(
                f"{where} x should be {names}, got dtype {xb.dtype}: cast it with x.float()"
            )
        self._check_device(where, xb)
        if self.channels is None:
            return
        if xb.dim() != 4 or xb.shape[1] != self.channels:
            if xb.dim() == 3:
                hint = " (one image? x[None] adds the batch dimension)"
            elif xb.dim() == 4 and xb.shape[1] == 1:
                hint = f" (grayscale? x.expand(-1, {self.channels}, -1, -1) repeats it)"
            elif xb.dim() == 4 and xb.shape[3] == self.channels:
                hint = " (channels last? x.permute(0, 3, 1, 2) puts them second)"
            else:
                hint = ""
            raise ValueError(
                f"{where} x should be images [B, {self.channels}, H, W] (the model's first "
                f"convolution takes {self.channels} channels), got shape {tuple(xb.shape)}{hint}"
            )

    def _check_y(self, where: str, yb: Any, n: int, loss: bool) -> None:
        if not isinstance(yb, torch.Tensor):
            what = "int64 class indices [B]" if self.classes else "targets [B, ...]"
            raise TypeError(
                f"{where} y should be a torch.Tensor of {what} "
                f"(torch.as_tensor(y) makes one), got {type(yb).__name__}"
            )
        if not self.classes or (  # or class probabilities (soft labels), cross-entropy's too
            yb.dim() == 2 and yb.is_floating_point() and yb.shape[1] == (self.c or yb.shape[1])
        ):
            self._check_count_and_device(where, yb, n, loss)
            return
        if yb.dim() != 1:
            hint = " (one-hot? y.argmax(1) gives the indices)" if yb.dim() == 2 else ""
            raise ValueError(
                f"{where} y should be class indices [B], got shape {tuple(yb.shape)}{hint}"
            )
        if yb.dtype != torch.int64:
            raise TypeError(
                f"{where} y should be int64 class indices, got dtype {yb.dtype}"
                + ("" if yb.dtype.is_floating_point else ": cast it with y.long()")
            )
        self._check_count_and_device(where, yb, n, loss)
        if self.c is not None and yb.device.type == "cpu" and yb.numel():
            low, high = torch.aminmax(yb)
            if low < 0 or high >= self.c:
                raise ValueError(
                    f"{where} y should hold class indices in [0, {self.c}) (data.c classes), "
                    f"got values from {int(low)} to {int(high)}"
                )

    def _check_count_and_device(self, where: str, yb: torch.Tensor, n: int, loss: bool) -> None:
        if yb.dim() == 0 or yb.shape[0] != n:
            got = "a scalar" if yb.dim() == 0 else yb.shape[0]
            raise ValueError(f"{where} y should hold one target per item ({n}), got {got}")
        if loss and yb.device != self.device:
            raise ValueError(
                f"{where} y should be on the model's device {self.device}, got {yb.device}: "
                f"move it with y.to(learn.dls.device)"
            )


def _preds_dl(data: Any, ds_type: str) -> Iterable[Any]:
    """The loader of get_preds(ds_type): the validation loader as it is (a torch DataLoader
    of DataLoaders that shuffles: a copy in order, as for 'train'), a shallow copy of
    the training loader with shuffle and drop_last off (same transforms, same workers;
    iterating the copy leaves the original's epoch counter alone), or for 'fix' (v1's
    DatasetType.Fix) the training set in order through the validation transform."""
    if ds_type == "test":
        return loader_of_test_set(data)
    kind = "train" if ds_type == "fix" else ds_type
    loader = getattr(data, f"{kind}_dl", None)
    if loader is None:
        raise no_data_error(kind)
    if ds_type == "fix":
        return in_order_loader(data, "train")
    if ds_type == "valid":  # a shuffling torch DataLoader of the user's: its in-order copy
        ordered = loader.in_order() if getattr(loader, "shuffles", False) else None
        return loader if ordered is None else ordered
    train_dl = loader
    in_order = getattr(train_dl, "in_order", None)  # a TorchLoader: a torch DataLoader's
    if in_order is not None:
        ordered_torch = in_order()
        if ordered_torch is not None:
            return ordered_torch
    if not (hasattr(train_dl, "shuffle") and hasattr(train_dl, "drop_last")):
        given = getattr(train_dl, "loader", train_dl)
        raise ValueError(
            "ds_type='train' (ds_idx=0) reads the training set in order, every item once: a "
            "copy of the training loader with shuffle and drop_last off, which a torch "
            "DataLoader with a batch_size and its default sampler gives; the training loader "
            f"is {type(given).__name__}. Pass dl= (an unshuffled loader of it) instead"
        )
    ordered = copy.copy(train_dl)
    ordered.shuffle = False
    ordered.drop_last = False
    if hasattr(ordered, "training_pass"):  # every item, in eval mode (DeviceDataLoader)
        ordered.training_pass = False
    return ordered


def loader_of_test_set(data: Any) -> Iterable[Any]:
    """The loader of the data's test set (fastai v1's add_test: ``data.dl('test')``), or a
    ValueError saying how to add one."""
    if not hasattr(data, "dl"):
        raise ValueError(
            f"ds_type 'test': {type(data).__name__} keeps no test set; pass "
            "get_preds(dl=...) (learn.dls.test_dl(files), fastai v2's)"
        )
    return data.dl("test")


def no_data_error(ds_type: str) -> ValueError:
    """The error of a pass over data.`ds_type`_dl ('train' or 'valid') when it is None, as
    in a learner from load_learner: what to do instead."""
    kind = "validation" if ds_type == "valid" else "training"
    return ValueError(
        f"this learner has no {kind} data (data.{ds_type}_dl is None: a learner from "
        f"load_learner keeps only what predict needs). predict(item) takes one image, "
        f"get_preds and validate take dl= (an iterable of (x, y) batches), tta takes dl= "
        f"(a DeviceDataLoader with train=False); to train, "
        f"validate or interpret on a data set, build the data (ImageDataBunch.from_folder, "
        f"...) and a learner on it (create_cnn), then learn.load(...) a checkpoint saved by "
        f"learn.save"
    )


def _per_item_loss_func(lf: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """The loss function `lf` giving one loss per item (reduction='none')."""
    if isinstance(getattr(lf, "reduction", None), str):
        per_item = copy.copy(lf)
        per_item.reduction = "none"
        return per_item
    if lf in (F.cross_entropy, F.nll_loss) or _takes_reduction(lf):
        return partial(lf, reduction="none")  # fastai's: partial(loss_func, reduction='none')
    raise ValueError(
        f"with_loss needs per-item losses: loss_func should be a torch loss module with a "
        f"`reduction` attribute (e.g. nn.CrossEntropyLoss()) or a function taking "
        f"reduction= (F.cross_entropy, or yours as `def loss(out, y, reduction='mean')`), got "
        f"{lf!r}; call get_preds without with_loss and compute them from the outputs"
    )


def _takes_reduction(f: Any) -> bool:
    """Whether the function `f` has a `reduction` parameter (a loss of the user's written as
    torch's functional losses are)."""
    try:
        return "reduction" in inspect.signature(f).parameters
    except (TypeError, ValueError):
        return False


def _pass_order(dl: Any) -> torch.Tensor | None:
    """Data set indices int64 [N] of the items the next pass over a shuffled `dl` yields, in
    the order it yields them (from its `batch_indices()`); None for a loader that is not
    shuffled or does not tell."""
    if not getattr(dl, "shuffle", False) or not hasattr(dl, "batch_indices"):
        return None
    batches = list(dl.batch_indices())
    if not batches:
        return None
    return torch.cat([torch.as_tensor(b, dtype=torch.int64) for b in batches])


class Category(str):
    """The predicted class of `predict`: its name, a str (as fastai v2 gives it), with fastai
    v1's Category attributes: `obj` (the name) and `data` (the class index, an int64 0-dim
    tensor)."""

    data: torch.Tensor

    def __new__(cls, name: str, data: torch.Tensor) -> Category:
        self = super().__new__(cls, name)
        self.data = data
        return self

    def __getnewargs__(self) -> tuple[str, torch.Tensor]:
        return str(self), self.data

    @property
    def obj(self) -> str:
        """The class name (fastai v1's `Category.obj`)."""
        return str(self)


def predict(learn: Learner, item: Any, with_input: bool = False) -> tuple[Any, ...]:
    """`Learner.predict` (see there)."""
    check_bool("with_input", with_input)
    preprocess = getattr(learn.data, "preprocess", None)
    if preprocess is None:
        raise TypeError(
            f"predict needs data with preprocess(items) (an ImageDataBunch, or a learner "
            f"from load_learner), got {type(learn.data).__name__}"
        )
    if isinstance(item, (list, tuple)):
        raise TypeError(
            f"item: predict classifies one image, got a {type(item).__name__} of {len(item)}; "
            f"call predict on each, or get_preds(dl=...) with batches of "
            f"learn.data.preprocess(files)"
        )
    if isinstance(item, str | os.PathLike) and not Path(item).is_file():
        if Path(item).is_dir():
            raise ValueError(
                f"item: predict classifies one image file, {str(item)!r} is a folder: learn."
                f"get_preds(dl=learn.dls.test_dl(get_image_files(folder))) predicts its images"
            )
        raise MissingPathError(f"item: expected an image file, {str(item)!r} does not exist")
    if isinstance(item, torch.Tensor):
        item = item.detach()  # a tensor that requires grad: no autograd warning, no graph
    if isinstance(item, bytes | bytearray | memoryview):  # an image file's bytes, as fastai
        item = PILImage.create(item)
    x, logits = _one_batch(learn, preprocess(item))  # x: (1, 3, S, S)
    warn_not_finite(learn, not_finite_rows(logits), "predict")
    probs = torch.softmax(logits, dim=1)[0].cpu()  # a normal tensor, made outside
    idx = probs.argmax()
    result = (Category(str(learn.data.classes[int(idx)]), idx), idx, probs)
    if not with_input:
        return result
    # the input as the model saw it, normalization undone: int64 pixels, as dls.decode's
    pixels = (learn.data.denorm(x.float()) * 255).round_().long()[0].cpu()
    return (pixels, *result)


def _no_batch(source: str, dl: Any, data_valid: bool) -> str:
    """The error of a pass over `source` that met no batch; data_valid: the source is the
    data's validation loader, which says so when it is empty (data without validation items:
    valid_pct=0, or a splitter that put every item in training)."""
    ds = getattr(dl, "dataset", None)
    if data_valid and ds is not None and hasattr(ds, "__len__") and len(ds) == 0:
        return (
            f"{source} is empty: this data has no validation set (valid_pct=0, or a splitter "
            "that put every item in training); pass dl= (e.g. dls.test_dl(files, "
            "with_labels=True)), or ds_idx=0 / ds_type='train' for the training set"
        )
    return f"{source} yielded no batch"


def show_results(
    learn: Learner,
    ds_type: str = "valid",
    rows: int = 3,
    figsize: tuple[float, float] | None = None,
    max_n: int | None = None,
    *,
    nrows: int | None = None,
    ncols: int | None = None,
    ctxs: Any = None,
    shuffle: bool = True,
    dl: Any = None,
) -> Figure | None:
    """`Learner.show_results`: rows x rows items (max_n items when given, fastai v2's
    spelling; at most nrows * ncols, or one per Axes of `ctxs`) of the 'valid' or 'train'
    data set, spread evenly over it (indices round(linspace(0, N - 1, n)), so a set stored
    class after class shows several classes; fastai's shuffle=True shows a random batch) or,
    with shuffle=False, its first items (an unreadable file is passed over for the next
    readable item), shown in data set order in fastai v2's nrows x ncols grid
    (`plots.image_grid`) or drawn into `ctxs` (nothing saved, None returned, as fastai's),
    each titled with its actual class over the predicted one, green when they agree, red when
    not (fastai's "Ground truth / Predictions"). Images are read from the data set and go
    through the validation transform, also for 'train'; the model runs as in get_preds (eval
    mode, inference mode, the learner's precision and layout), its modes put back afterwards.
    dl (fastai v2's): the items of this loader instead (a `dls.test_dl(files)`; unlabelled,
    each is titled with its prediction only). Saved as 'show_results_<ds_type>.png' ('..._dl'
    for a dl) outside notebooks (see fastcore_ext.plots). Returns the Figure."""
    if ds_type not in ("valid", "train"):
        raise ValueError(f"ds_type should be 'valid' or 'train', got {ds_type!r}")
    n = check_int("rows", rows, 1) ** 2 if max_n is None else check_int("max_n", max_n, 1)
    n = min(n, grid_cells(nrows, ncols) or n)
    axes = check_ctxs(ctxs)
    n = min(n, len(axes)) if axes is not None else n
    check_bool("shuffle", shuffle)
    data = getattr(learn, "data", None)
    if dl is not None:
        ds, ds_type = getattr(dl, "dataset", None), "dl"
        if not isinstance(getattr(ds, "items", None), list):
            raise TypeError(
                f"dl: expected a loader of image items (dls.test_dl(files)), got {dl!r:.80}"
            )
    else:
        ds = getattr(data, f"{ds_type}_ds", None)
    if ds is None or not all(hasattr(data, a) for a in ("preprocess", "denorm", "classes")):
        raise TypeError(
            f"show_results needs learn.data with {ds_type}_ds, preprocess, denorm and classes "
            f"(an ImageDataBunch), got {type(data).__name__}"
        )
    size = len(ds)
    if size == 0:
        if dl is not None:
            raise ValueError("dl: the loader holds no item to show")
        raise ValueError(
            _no_batch(
                f"show_results: data.{ds_type}_dl",
                getattr(data, f"{ds_type}_dl", None),
                ds_type == "valid",
            )
        )
    spread = np.unique(np.linspace(0, size - 1, min(n, size)).round().astype(int)).tolist()
    spread = spread if shuffle else list(range(min(n, size)))
    chosen = set(spread)
    found: list[tuple[int, torch.Tensor, int | None]] = []
    for i in itertools.chain(spread, (j for j in range(size) if j not in chosen)):
        if len(found) == n:
            break
        try:
            image, label = ds[i]
        except BadImageError:
            continue  # named by the loaders; skipped as they skip it
        found.append((i, torch.as_tensor(image), None if label is None else int(label)))
    if not found:
        raise ValueError(f"the {ds_type} set has no readable image to show")
    found.sort(key=lambda f: f[0])
    targets = [label for _, _, label in found]
    x, out = _one_batch(learn, data.preprocess([image for _, image, _ in found]))
    preds = out.argmax(dim=1).tolist()
    images = data.denorm(x.float()).permute(0, 2, 3, 1).cpu().numpy()
    classes = [str(c) for c in data.classes]
    titles = [
        classes[p] if a is None else f"{classes[a]}\n{classes[p]}"
        for a, p in zip(targets, preds, strict=True)
    ]
    if axes is None:
        fig, axes, fontsize = image_grid(len(found), figsize, titles, (2.4, 2.8), nrows, ncols)
    else:  # the user's Axes: their figure is theirs to lay out, show or save
        fontsize = 10.0
    for ax, img, title, actual, pred in zip(axes, images, titles, targets, preds, strict=False):
        ax.imshow(img, vmin=0, vmax=1)
        color = "black" if actual is None else "green" if actual == pred else "red"
        ax.set_title(title, color=color, fontsize=fontsize)
        ax.set_axis_off()
    if ctxs is not None:
        return None
    unlabelled = all(a is None for a in targets)
    fig.suptitle("prediction" if unlabelled else "actual\nprediction", fontsize=fontsize + 1)
    return finish(fig, f"show_results_{ds_type}")


def tta(
    learn: Learner,
    ds_type: str = "valid",
    dl: Any = None,
    n: int = 4,
    beta: float | None = 0.25,
    use_max: bool = False,
) -> tuple[Any, torch.Tensor]:
    """`Learner.tta`, test-time augmentation as fastai v2's: predictions over `ds_type`'s
    dataset ('valid' or 'train'), or over the items of `dl` (a DeviceDataLoader with
    train=False, e.g. of a test set), for n passes with the training augmentation
    (pass i draws a random presize window per item, the training set's random crop along
    an image's long side, then data.spec's augmentation, if any, from generators seeded
    from (data seed, i), so it is repeatable; fastai's passes run the training item and
    batch transforms alike), averaged (or their element-wise max with use_max), and one
    plain pass (the validation transform: the centre window). Returns (preds, targets) with
    preds = torch.lerp(augmented, plain, beta) = (1 - beta) * augmented + beta * plain
    (fastai's formula: beta weighs the plain pass); with use_max the element-wise max of
    both; with beta=None ((augmented, plain), targets). Items in dataset order;
    probabilities float32 Tensor[N, c]. `n` is checked by the Learner."""
    beta = _check_beta(beta)
    dl = _augmenting_loader(learn, ds_type, dl, "tta")
    spec = getattr(learn.data, "spec", None)
    plain, targets = get_preds(learn, dl=_PlainPass(dl))[:2]
    plain = plain.float()
    seed = getattr(learn.data, "seed", None) or 0
    passes = [get_preds(learn, dl=_AugmentedPass(dl, spec, seed, i))[0].float() for i in range(n)]
    stacked = torch.stack(passes)
    augmented = stacked.max(0)[0] if use_max else stacked.mean(0)
    if use_max:
        return torch.stack([plain, augmented]).max(0)[0], targets
    if beta is None:
        return (augmented, plain), targets
    return torch.lerp(augmented, plain, float(beta)), targets


def _augmenting_loader(learn: Learner, ds_type: str, dl: Any, caller: str) -> Any:
    """The loader TTA augments: `dl`, else ds_type's data set in order (`in_order_loader`);
    an error when the learner has no such data, or when the loader cannot give the uint8
    batches the augmentation starts from."""
    own_loader = dl is None
    if dl is None and ds_type == "test":
        dl = loader_of_test_set(learn.data)
    elif dl is None:
        dl = in_order_loader(learn.data, ds_type)
        if dl is None:
            raise no_data_error(ds_type)
    if not hasattr(dl, "uint8_batches") or not hasattr(dl, "augment"):
        raise TypeError(
            f"{caller} needs a DeviceDataLoader (uint8 batches it augments itself), got "
            f"{type(dl).__name__}"
        )
    if not len(dl.dataset):
        raise ValueError(
            _no_batch(f"{caller}: the {ds_type} loader", dl, own_loader and ds_type == "valid")
        )
    return dl


def in_order_loader(data: Any, ds_type: str) -> Any:
    """A loader over `ds_type`'s dataset yielding every item in order through the
    validation transform: valid_dl itself, or a new one over the training set (TTA's, and
    ImageClassifierCleaner's loss pass); None when the data has no valid_dl."""
    if ds_type not in ("train", "valid"):
        raise ValueError(f"ds_type should be 'train' or 'valid', got {ds_type!r}")
    valid_dl = getattr(data, "valid_dl", None)
    if ds_type == "valid" or valid_dl is None:
        return valid_dl
    train_dl = data.train_dl
    return DeviceDataLoader(
        train_dl.dataset,
        train_dl.bs,
        train=False,
        size=train_dl.size,
        device=train_dl.device,
        seed=train_dl.seed,
        stats=train_dl.stats,
        num_workers=train_dl.num_workers,
        channels_last=train_dl.channels_last,
        decoder=train_dl.decoder,
    )


class _PlainPass:
    """One pass over an in-order loader (train=False) through its validation transform,
    leaving the loader's epoch counter alone."""

    def __init__(self, dl: Any) -> None:
        self.dl = dl
        self.world_size = getattr(dl, "world_size", 1)  # a shard's passes are gathered

    def __len__(self) -> int:
        return len(self.dl)

    def _stats(self) -> tuple[Any, Any]:
        """(mean, std) of the loader's normalization; (0, 1) per channel without one."""
        return self.dl.stats if self.dl.stats is not None else ((0.0,) * 3, (1.0,) * 3)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.dl.uint8_batches(0):
            yield self.dl.augment(x, None), y


class _AugmentedPass(_PlainPass):
    """The same items and order, each from a random presize window (the training set's
    random crop) through the training augmentation `spec` (None: the validation
    transform), both drawn from (seed, pass index)."""

    def __init__(self, dl: Any, spec: Any, seed: int, index: int) -> None:
        super().__init__(dl)
        self.spec, self.seed, self.index = spec, seed, index

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = epoch_generator(self.seed ^ _TTA_STREAM, self.index)
        windows = np.random.SeedSequence([self.seed, _TTA_STREAM, self.index])
        draws = np.random.default_rng(windows).random(len(self.dl.dataset))
        mean, std = self._stats()
        for x, y in self.dl.uint8_batches(0, draws=draws):
            if self.spec is None:
                yield self.dl.augment(x, None), y
                continue
            xb = augment_batch(
                x,
                self.dl.size,
                mean=mean,
                std=std,
                spec=self.spec,
                generator=gen,
                train=True,
                channels_last=self.dl.channels_last,
            )
            yield xb, y


def tta_v1_params(
    spec: AugmentSpec | None,
    batch_size: int,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    generator: torch.Generator,
    index: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The matrices float32 [B, 3, 3] and lighting [B, 2] | None of pass `index` (0-7) of
    fastai v1's TTA, for `ops.augment_normalize` (output -> input normalized coordinates).

    Pass i zooms by `scale` anchored at a corner, row_pct = i & 1 (1: bottom), col_pct =
    (i & 2) > 0 (1: right), as v1's `zoom(scale, row_pct, col_pct, is_random=False)`:
    Z = [[1/s, 0, (1 - 1/s)(2 col - 1)], [0, 1/s, (1 - 1/s)(2 row - 1)], [0, 0, 1]]; passes
    4-7 also mirror the result left-right (v1's `flip_lr(p=1.)`, applied to the output: the
    rightmost factor F = diag(-1, 1, 1)). The rest of the training augmentation `spec` (its
    rotation, warp and lighting, not its flip, zoom or random crop, as v1 keeps every train
    transform but crop_pad, flip_lr, dihedral and zoom) is drawn per sample from `generator`
    by `augment.random_params`, which composes it as training does (C @ W @ R), so
    M = C @ W @ R @ Z @ F. spec None: no random part (the centre crop of the validation
    transform)."""
    if spec is None:
        spec = AugmentSpec(do_flip=False, max_rotate=0.0, max_lighting=0.0, max_warp=0.0)
    rest = dataclasses.replace(spec, do_flip=False, min_zoom=1.0, max_zoom=1.0, min_scale=1.0)
    matrices, lighting = random_params(rest, batch_size, in_hw, out_hw, generator)
    row, col = float(index & 1), float((index & 2) > 0)
    shift = 1 - 1 / scale
    fixed = np.array(
        [[1 / scale, 0.0, shift * (2 * col - 1)], [0.0, 1 / scale, shift * (2 * row - 1)],
         [0.0, 0.0, 1.0]]
    )  # fmt: skip
    if index & 4:
        fixed = fixed @ np.diag([-1.0, 1.0, 1.0])
    matrices = (matrices.double() @ torch.from_numpy(fixed)).float()
    return matrices, lighting


def tta_v1(
    learn: Learner,
    beta: float | None = 0.4,
    scale: float = 1.35,
    ds_type: str = "valid",
    with_loss: bool = False,
) -> tuple[torch.Tensor, ...]:
    """`Learner.TTA`, fastai v1's test-time augmentation: one plain pass (the validation
    transform) and 8 deterministic augmented passes over `ds_type`'s data set ('valid' or
    'train'; items in data set order, as get_preds), each zoomed by `scale` (>= 1) at one of
    the 4 corners, mirrored or not (`tta_v1_params`), with the rest of the training
    augmentation (rotation, warp, lighting: random, from a generator seeded from (data seed,
    pass index), so repeatable). preds = beta * plain + (1 - beta) * mean(8 augmented),
    softmax probabilities float32 Tensor[N, c]. Returns (preds, targets), with
    with_loss (preds, targets, losses float32 [N]); beta=None returns (plain, augmented mean,
    targets), as v1.

    Where this differs from fastai v1: v1's crop_pad anchored the crop of a non-square image
    at the same corner; here every pass starts from the loader's centre square (the same for
    square images). v1 composed its warp inside the zoom (R @ Z @ W); here the rotation and
    warp are composed as this library's training augmentation composes them, outside the fixed
    zoom (C @ W @ R @ Z @ F): the same transforms, drawn alike, in another order. v1's random
    draws were not repeatable. v1's ds_type=Train read the shuffled training loader (each
    pass in another order); here the training set is read in order through the validation
    transform. v1 computed the losses by applying the loss function to the blended
    probabilities as if they were logits; here losses are the loss function (reduction
    'none') on their logarithm, for cross-entropy -log(preds[i, target_i]). v1 accepted a
    scale below 1 (zoom out, padding); here it is refused."""
    check_bool("with_loss", with_loss)
    beta = _check_beta(beta)
    number = real_or_none(scale)
    if number is None or not 1 <= number < 1e6:
        raise ValueError(f"scale should be a zoom factor >= 1 (v1's default 1.35), got {scale!r}")
    scale = number
    if with_loss and beta is None:
        raise ValueError("with_loss needs the blended predictions: pass a beta, not None")
    dl = _augmenting_loader(learn, ds_type, None, "TTA")
    per_item = _per_item_loss_func(learn.loss_func) if with_loss else None
    spec = getattr(learn.data, "spec", None)
    seed = getattr(learn.data, "seed", None) or 0
    plain, targets = get_preds(learn, dl=_PlainPass(dl))[:2]
    passes = [
        get_preds(learn, dl=_V1Pass(dl, spec, seed, i, float(scale)))[0]
        for i in range(TTA_V1_PASSES)
    ]
    augmented = torch.stack(passes).mean(0)
    if beta is None:
        return plain, augmented, targets
    preds = plain * float(beta) + augmented * (1 - float(beta))
    if per_item is None:
        return preds, targets
    losses = per_item(preds.clamp_min(torch.finfo(preds.dtype).tiny).log(), targets)
    return preds, targets, losses.float()


class _V1Pass(_PlainPass):
    """Pass `index` of fastai v1's TTA over an in-order loader: `tta_v1_params`' matrices
    and lighting, through the fused kernel."""

    def __init__(self, dl: Any, spec: AugmentSpec | None, seed: int, index: int, scale: float):
        super().__init__(dl)
        self.spec, self.seed, self.index, self.scale = spec, seed, index, scale

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = epoch_generator(self.seed ^ _TTA_V1_STREAM, self.index)
        mean, std = self._stats()
        out_hw = check_hw("data.size", self.dl.size)
        mode = self.spec.mode if self.spec is not None else "bilinear"
        pad_mode = self.spec.pad_mode if self.spec is not None else "reflection"
        for x, y in self.dl.uint8_batches(0):
            in_hw = (x.shape[2], x.shape[3])
            matrices, lighting = tta_v1_params(
                self.spec, x.shape[0], in_hw, tuple(out_hw), gen, self.index, self.scale
            )
            xb = ops.augment_normalize(
                x,
                matrices.to(x.device),
                tuple(out_hw),
                mean=mean,
                std=std,
                lighting=None if lighting is None else lighting.to(x.device),
                mode=mode,
                pad_mode=pad_mode,
                channels_last=self.dl.channels_last,
            )
            yield xb, y


class Summary(str):
    """The text of `summary`; shown as itself (not quoted) as a notebook cell's result."""

    def __repr__(self) -> str:
        return str(self)


def _fp32_epochs_left(learn: Learner) -> str:
    """' (its next N training epochs in fp32 first ...)' while precision 'auto' from scratch
    has float32 epochs to run before its bf16 ones (MixedPrecision.fp32_epochs), else ''."""
    mp = learn.mixed_precision
    left = 0 if mp is None else mp.fp32_epochs - learn.epochs_trained
    if left <= 0:
        return ""
    epochs = f"{left} training epoch{'' if left == 1 else 's'}"
    return f" (its next {epochs} in fp32 first: from scratch)"


def _optimizer_name(opt: Any) -> str:
    """The optimizer's class name; a torch optimizer wrapped for one-cycle schedules as
    'OptimWrapper(AdamW)'."""
    inner = opt.opt if isinstance(opt, OptimWrapper) else None
    return type(opt).__name__ + ("" if inner is None else f"({type(inner).__name__})")


def summary(learn: Learner) -> Summary:
    """fastai v2's `learn.summary()`: one forward pass of a zero batch of the data's size
    (data.bs items, at most 64; data without a `size`, as `DataLoaders` of PyTorch loaders:
    the shape of the first training batch, as fastai's) through the model as inference runs
    it (`evaluating`, `forward`), then a table of the model's leaf layers: their type,
    output shape, parameter count and whether those train; totals, the optimizer, the loss,
    the frozen layer groups and the callbacks. Returns the text (printed by a notebook as a
    cell's result)."""
    data = learn.data
    size = getattr(data, "size", None)
    device = next(iter(learn.model.parameters())).device
    if size is not None:
        h, w = check_hw("data.size", size)
        bs = min(int(getattr(data, "bs", 1) or 1), 64)
        x = torch.zeros(bs, 3, h, w, device=device)
    elif hasattr(data, "one_batch"):
        first = data.one_batch()[0]
        x = torch.zeros_like(first[:64], device=device)
    else:
        raise ValueError(
            f"summary needs the input size (data.size) or a batch (data.one_batch()), got "
            f"data of type {type(data).__name__}"
        )
    shape_text = " x ".join(map(str, x.shape))
    rows: list[tuple[str, str, int, str]] = []

    def record(module: nn.Module, _inp: Any, out: Any) -> None:
        shape = " x ".join(map(str, out.shape)) if isinstance(out, torch.Tensor) else "-"
        params = list(module.parameters(recurse=False))
        n = sum(p.numel() for p in params)
        trains = "" if not params else ("True" if any(p.requires_grad for p in params) else "False")
        rows.append((type(module).__name__, shape, n, trains))

    leaves = [m for m in learn.model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        with evaluating(learn.model):
            forward(learn, x)
    finally:
        for hook in hooks:
            hook.remove()
    params = list(learn.model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    width = max([len(r[0]) for r in rows] + [20]) + 2
    lines = [
        f"{type(learn.model).__name__} (Input shape: {shape_text})",
        "=" * (width + 44),
        f"{'Layer (type)':<{width}}{'Output Shape':<22}{'Param #':>10}  Trainable",
        "=" * (width + 44),
    ]
    lines += [f"{t:<{width}}{shape:<22}{n:>10,}  {tr}" for t, shape, n, tr in rows]
    norm = learn._norm_params  # normalization layers train in frozen groups (train_bn)
    frozen = [
        i
        for i, g in enumerate(learn.layer_groups)
        if any(id(p) not in norm for p in g)
        and not any(p.requires_grad for p in g if id(p) not in norm)
    ]
    lines += [
        "=" * (width + 44),
        f"Total params: {total:,}",
        f"Total trainable params: {trainable:,}",
        f"Total non-trainable params: {total - trainable:,}",
        "",
        f"Optimizer used: {_optimizer_name(learn.opt)}",
        f"Loss function: {getattr(learn.loss_func, '__name__', type(learn.loss_func).__name__)}",
        f"Precision: {learn.precision}{_fp32_epochs_left(learn)}",
        "",
        f"Model frozen up to layer group #{frozen[-1] + 1} (its normalization layers train, "
        f"as fastai's train_bn)"
        if frozen
        else "Model unfrozen",
        "",
        "Callbacks:",
        *(f"  - {type(cb).__name__}" for cb in learn.cbs),
    ]
    return Summary("\n".join(lines))
