"""fastai v2's `ParamScheduler` (``fastai.callback.schedule``): any hyper-parameter of the
optimizer set at every training batch from a function of the fit's progress.

    learn.fit(3, cbs=ParamScheduler({'lr': SchedCos(1e-2, 1e-4)}))
    learn.fit(3, cbs=ParamScheduler({'lr': combined_cos(0.25, 4e-4, 1e-2, 1e-7),
                                     'mom': combined_cos(0.25, 0.95, 0.85, 0.95)}))
    learn.recorder.hps['lr']      # the lr of each training batch (also the scheduler's .hps)

As fastai's: before each training batch, for each name n and function f of `scheds`,
`opt.set_hyper(n, f(learn.pct_train))` (pct_train: the share of the fit's training batches
done, 0 at the first batch); after each training batch the value the optimizer holds is
appended to `hps[n]`; after the fit `learn.recorder.hps` is that dict. The schedule
functions are `fastcore_ext.schedule`'s (SchedLin, SchedCos, SchedNo, SchedExp, SchedPoly,
combine_scheds, combined_cos) or any function of a float.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fastcore_ext.callback.core import Callback
from fastcore_ext.callback.lr_finder import LRFinder
from fastcore_ext.checks import real_or_none
from fastcore_ext.layer_groups import lr_range
from fastcore_ext.optim import _RANGES

__all__ = ["ParamScheduler"]

_TORCH_NAMES = {  # torch's names of the hyper-parameters -> fastai's, which set_hyper takes
    "momentum": "'mom'",
    "betas": "'mom' and 'sqr_mom'",
    "weight_decay": "'wd'",
}
_ONE_CYCLE_NAMES = ("lr", "mom")  # what a one-cycle schedule sets in the optimizer


class ParamScheduler(Callback):
    """Schedule the optimizer's hyper-parameters: `scheds` maps fastai's names (lr, mom,
    sqr_mom, eps, wd: those the optimizer has) to a function of pos in [0, 1].

    Before each training batch, for each name: the function at `learn.pct_train` gives one
    number (every layer group), one number per layer group (a list, tuple, numpy array or
    tensor: discriminative values), or a slice (as fastai's set_hyper and `fit`'s lr take
    it); a list or tuple of functions, one per layer group, is called function by function
    (fastai's LRFinder builds that form; fastai's ParamScheduler itself would fail on it).
    The values are checked (a number, in the optimizer's range: lr, eps, wd finite and >= 0,
    mom and sqr_mom in [0, 1)) and written with `opt.set_hyper` into every param group of
    their layer group, so the step of this batch uses them: this library's fused Adam and
    SGD (which keep their hyper-parameters in a device tensor, rewritten from the host
    without any device synchronisation) and a torch optimizer in `OptimWrapper` (mom is its
    betas[0] or momentum, sqr_mom betas[1], wd weight_decay).

    Recorded, as fastai's: `hps[name]`, per training batch, the value the optimizer held
    after the batch for the last layer group (fastai: its last param group, which is the
    last layer group there); at the end of the fit `learn.recorder.hps` is the same dict.
    Also `group_hps[name]`: per training batch, one value per layer group. The Recorder's
    own per-batch lrs (`recorder.lrs`, `group_lrs`, read after the loss) are the values
    written here, and so are its moms (a torch optimizer's betas[0] or momentum).

    Where ours differs from fastai's:
    - With `Learner(wd_bn_bias=False)` (the default) a layer group's normalization layers and
      biases sit in a param group of their own without weight decay: a scheduled 'wd' is
      written to the decayed param group only (fastai skips those parameters' decay by
      itself); every other name goes to both.
    - Inside fit_one_cycle, fit_flat_cos, fine_tune or fit_sgdr the optimizer runs its own
      one-cycle schedule of lr and mom at every step: scheduling 'lr' or 'mom' there is a
      ValueError when the fit starts (fastai runs both schedulers and the one added last,
      yours, overwrites the other). Other names (wd, sqr_mom, eps) work there. A scheduled
      'lr' while lr_find sweeps it (a ParamScheduler attached to the learner) is refused
      too.
    - A name the optimizer does not have, or torch's name of it (momentum, betas,
      weight_decay), is a ValueError when the fit starts; fastai would add the key to its
      hypers and train as before.
    - A function returning a CUDA tensor makes each batch wait for the device (the value is
      read on the host); the schedule functions of `fastcore_ext.schedule` return floats.
    """

    order = 60  # fastai's
    run_valid = False

    def __init__(self, scheds: Mapping[str, Callable[[float], Any]]) -> None:
        super().__init__()
        self.scheds = _check_scheds(scheds)
        self.hps: dict[str, list[float]] = {}
        self.group_hps: dict[str, list[list[float]]] = {}
        self._layer: list[int] = []  # param group -> its layer group
        self._decay: list[bool] = []  # param group -> whether it takes weight decay
        self._first: list[int] = []  # layer group -> its first param group
        self._started = False  # before_fit passed its checks (after_fit then records)

    # ---- events ---------------------------------------------------------------------------
    def before_fit(self) -> None:
        self._started = False
        learn = self.learn
        opt = learn.opt
        if not (hasattr(opt, "set_hyper") and hasattr(opt, "_named_hypers")):
            raise TypeError(
                f"ParamScheduler needs an optimizer with fastai's set_hyper (this library's "
                f"Adam or SGD, or a torch optimizer in OptimWrapper, as the Learner wraps "
                f"one); learn.opt is a bare {type(opt).__name__}: set learn.opt = "
                f"OptimWrapper.of(learn.opt)"
            )
        self._map_groups(learn, opt)
        names = sorted(opt._named_hypers(opt.param_groups[0]))
        for name in self.scheds:
            if name not in names:
                raise ValueError(
                    f"ParamScheduler: scheds names {name!r}, which learn.opt "
                    f"({_opt_name(opt)}) does not have; its hyper-parameters: {names}"
                )
        clash = [n for n in self.scheds if n in _ONE_CYCLE_NAMES]
        if clash and getattr(opt, "one_cycle", None) is not None:
            raise ValueError(
                f"ParamScheduler schedules {_quoted(clash)}, which the one-cycle schedule of "
                f"this fit (fit_one_cycle, fit_flat_cos, fine_tune or fit_sgdr) already sets "
                f"in the optimizer at every step (fastai runs both and the scheduler added "
                f"last overwrites the other): run your schedule in a plain "
                f"learn.fit(n, cbs=ParamScheduler(...)) (fit_one_cycle's lr is "
                f"combined_cos(pct_start, lr_max/div, lr_max, lr_max/div_final), its mom "
                f"combined_cos(pct_start, *moms)), or schedule only other hyper-parameters "
                f"({', '.join(n for n in names if n not in _ONE_CYCLE_NAMES)}) here"
            )
        if "lr" in self.scheds and any(isinstance(cb, LRFinder) for cb in learn.cbs):
            raise ValueError(
                "ParamScheduler schedules 'lr', which lr_find sweeps: detach the "
                "ParamScheduler during lr_find (with learn.removed_cbs(ParamScheduler): ...) "
                "or give it to fit's cbs= only"
            )
        n = len(self._first)
        for name, f in self.scheds.items():
            if isinstance(f, tuple) and len(f) not in (1, n):
                raise ValueError(
                    f"ParamScheduler: scheds[{name!r}] is a list of {len(f)} functions, this "
                    f"learner has {n} layer group{'s' if n != 1 else ''}: give one function, "
                    f"or one per layer group"
                )
        self.hps = {name: [] for name in self.scheds}
        self.group_hps = {name: [] for name in self.scheds}
        self._started = True

    def before_batch(self) -> None:
        pos = self.learn.pct_train
        opt = self.learn.opt
        for name, f in self.scheds.items():
            per_layer = self._values(name, f, pos)
            if name == "wd":  # param groups without decay keep 0 (wd_bn_bias=False)
                per_group = [
                    per_layer[g] if d else 0.0
                    for g, d in zip(self._layer, self._decay, strict=True)
                ]
            else:
                per_group = [per_layer[g] for g in self._layer]
            opt.set_hyper(name, per_group)

    def after_batch(self) -> None:
        opt = self.learn.opt
        # each layer group's first param group, read as opt.hypers reads it (opt.hypers itself
        # would wait for the device during a one-cycle fit, to read the schedule's position)
        held = [opt._named_hypers(opt.param_groups[i]) for i in self._first]
        for name in self.scheds:
            values = [h[name] for h in held]
            self.group_hps[name].append(values)
            self.hps[name].append(values[-1])

    def after_fit(self) -> None:
        recorder = getattr(self.learn, "recorder", None)
        if self._started and recorder is not None:
            recorder.hps = self.hps

    # ---- helpers --------------------------------------------------------------------------
    def _map_groups(self, learn: Any, opt: Any) -> None:
        """Which layer group each param group belongs to and whether it takes weight decay
        (the learner's group_map; one layer group per param group for an optimizer the
        learner did not build)."""
        n_groups = len(opt.param_groups)
        group_map = getattr(learn, "group_map", None)
        if group_map is not None and len(group_map.layer) == n_groups:
            self._layer, self._decay = list(group_map.layer), list(group_map.decay)
        else:
            self._layer, self._decay = list(range(n_groups)), [True] * n_groups
        first: dict[int, int] = {}
        for i, layer in enumerate(self._layer):
            first.setdefault(layer, i)
        self._first = [first[layer] for layer in sorted(first)]

    def _values(self, name: str, f: Any, pos: float) -> list[float]:
        """The value of every layer group for `name` at `pos`, checked."""
        n = len(self._first)
        where = f"ParamScheduler: scheds[{name!r}] at pct_train {pos:g}"
        if isinstance(f, tuple):
            out = [f[0](pos)] * n if len(f) == 1 else [fn(pos) for fn in f]
            values = [_number(where, v, i if len(f) > 1 else None) for i, v in enumerate(out)]
        else:
            values = _per_layer(where, f(pos), n)
        low, high = _RANGES.get(name, (-math.inf, None))
        for i, v in enumerate(values):
            ok = math.isfinite(v) and v >= low and (high is None or v < high)
            if not ok:
                rule = f"in [{low:g}, {high:g})" if high is not None else f"finite and >= {low:g}"
                group = f" (layer group {i})" if n > 1 else ""
                raise ValueError(f"{where} gave {v!r}{group}: {name} should be {rule}")
        return values

    def __repr__(self) -> str:
        return f"ParamScheduler({self.scheds!r})"


def _check_scheds(scheds: Any) -> dict[str, Callable[[float], Any] | tuple[Callable, ...]]:
    """`scheds` as a dict of fastai's names to a function, or to a tuple of functions (one
    per layer group); TypeError / ValueError naming what is wrong."""
    if not isinstance(scheds, Mapping):
        raise TypeError(
            f"ParamScheduler: scheds should be a dict of hyper-parameter names to schedule "
            f"functions ({{'lr': SchedCos(1e-2, 1e-4)}}), got {type(scheds).__name__}"
        )
    if not scheds:
        raise ValueError("ParamScheduler: scheds should name at least one hyper-parameter, got {}")
    out: dict[str, Any] = {}
    for name, f in scheds.items():
        if not isinstance(name, str):
            raise TypeError(
                f"ParamScheduler: the keys of scheds should be hyper-parameter names (str: "
                f"'lr', 'mom', 'sqr_mom', 'eps', 'wd'), got {type(name).__name__} {name!r}"
            )
        if name in _TORCH_NAMES:
            raise ValueError(
                f"ParamScheduler: scheds names torch's {name!r}; set_hyper takes fastai's "
                f"name{'s' if ' and ' in _TORCH_NAMES[name] else ''} {_TORCH_NAMES[name]}"
            )
        if isinstance(f, (list, tuple)):
            if not f:
                raise ValueError(f"ParamScheduler: scheds[{name!r}] is an empty list of functions")
            for i, fn in enumerate(f):
                if not callable(fn):
                    raise TypeError(
                        f"ParamScheduler: scheds[{name!r}][{i}] should be a function of pos "
                        f"(SchedCos(...), ...), got {type(fn).__name__} {fn!r}"
                    )
            out[name] = tuple(f)
        elif callable(f):
            out[name] = f
        else:
            raise TypeError(
                f"ParamScheduler: scheds[{name!r}] should be a function of pos (SchedCos(1e-2, "
                f"1e-4), combined_cos(...), ...) or a list of them (one per layer group), got "
                f"{type(f).__name__} {f!r}"
            )
    return out


def _number(where: str, value: Any, group: int | None) -> float:
    number = real_or_none(value)
    if number is None:
        of = f" for layer group {group}" if group is not None else ""
        raise TypeError(f"{where} gave {type(value).__name__} {value!r}{of}: expected a number")
    return number


def _per_layer(where: str, value: Any, n: int) -> list[float]:
    """One float per layer group from what a schedule function gave: a number (every group),
    a slice (fastai's set_hyper: slice(a, b) geometric from a to b, slice(b) b/10 then b), or
    one number per layer group (a list of one: every group)."""
    if isinstance(value, slice):
        return lr_range(value, n, f"{where}: the slice")
    number = real_or_none(value)
    if number is not None:
        return [number] * n
    if isinstance(value, np.ndarray | torch.Tensor) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f"{where} gave {type(value).__name__} {value!r}: expected a number, one number per "
            f"layer group ({n}) or a slice"
        )
    values = [_number(where, v, i) for i, v in enumerate(value)]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(
            f"{where} gave {len(values)} values, this learner has {n} layer "
            f"group{'s' if n != 1 else ''}: expected one number or one per layer group"
        )
    return values


def _opt_name(opt: Any) -> str:
    inner = getattr(opt, "opt", None)
    return (
        f"{type(opt).__name__}({type(inner).__name__})" if inner is not None else type(opt).__name__
    )


def _quoted(names: Sequence[str]) -> str:
    return " and ".join(repr(n) for n in names)
