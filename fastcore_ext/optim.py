"""Fused SGD and Adam with fastai's semantics and a one-cycle schedule evaluated on the device;
fastai's RMSProp on the same machinery, its step torch ops.

`Adam` equals `torch.optim.AdamW(betas=(mom, sqr_mom), eps=eps, weight_decay=wd)` and `SGD`
equals `torch.optim.SGD(momentum=mom)` (for wd=0; our weight decay is decoupled,
`p *= 1 - lr * wd`), step after step. One `step()` is one call of a fused op
(`ops.fused_adam_` / `ops.fused_sgd_`): one kernel launch for every group and tensor on CUDA,
one parallel region on the CPU.

The kernels read every hyperparameter from device memory:

- `hyper`, float64 [groups, 6]: each group's (lr, mom, sqr_mom, eps, wd, lr_max). `step()`
  rewrites it in place whenever a group's values changed on the host (so torch's lr
  schedulers, which write `group['lr']`, work when no device schedule is set).
- `sched`, float64 [7]: the one-cycle schedule set by `set_one_cycle`, or "none".
- `counter`, int64 [2]: the schedule position, advanced by the kernel itself at each step.

With a schedule set, step k uses lr and mom = `schedule.one_cycle(k / total_steps, lr_max)`
for each group, computed by the kernel, with no host sync: a captured CUDA graph keeps
following the schedule across replays. Under `torch.amp.GradScaler` the kernel divides the
grads by the scale and skips the update when inf/NaN was found: params, state and Adam's step
counts stay, while the schedule position advances (it counts training batches, as fastai's
ParamScheduler does, also for a batch where no param has a grad).

`RMSProp` (fastai's, step for step) shares that machinery (checks, groups, schedule,
GradScaler, state_dict) but its step is torch `_foreach` ops, one series per param group,
reading the same tables kept on the CPU: it evaluates the schedule on the host.

`OptimWrapper` gives a torch optimizer the same schedule interface, evaluated on the host
before each of its steps (the Learner wraps any torch optimizer its `opt_func` builds).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from fastcore_ext import ops
from fastcore_ext.checks import check_bool, check_int, check_number, real_or_none
from fastcore_ext.schedule import check_one_cycle_args, one_cycle

__all__ = ["Adam", "OptimWrapper", "RMSProp", "SGD", "slice_values"]

_PARAM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_RANGES = {  # group key -> (lowest allowed, excluded upper bound or None): checks.check_number
    "lr": (0.0, None),
    "mom": (0.0, 1.0),
    "sqr_mom": (0.0, 1.0),
    "eps": (0.0, None),
    "wd": (0.0, None),
}


_TORCH_NAMES = {"weight_decay": "'wd'", "betas": "'mom' and 'sqr_mom'", "momentum": "'mom'"}


def _is_dense(p: torch.Tensor) -> bool:
    """Non-overlapping and dense: the elements fill a gapless block of memory in some order
    (contiguous, channels_last, transposed...), as the kernels walk them in memory order."""
    if p.numel() <= 1 or p.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted(
        (st, n) for st, n in zip(p.stride(), p.shape, strict=True) if n != 1
    ):
        if stride != expected:
            return False
        expected *= size
    return True


def slice_values(start: float | None, stop: float, n: int) -> list[float]:
    """fastai's spread of slice(start, stop) over `n` groups: geometric from start to stop
    (the last exactly stop), or for slice(stop) stop / 10 for all groups but the last and
    stop for it (layer_groups.lr_range's slices, set_hyper's)."""
    if start is None:
        return [stop / 10] * (n - 1) + [stop]
    if n == 1:
        return [stop]
    ratio = (stop / start) ** (1 / (n - 1))
    return [start * ratio**i for i in range(n - 1)] + [stop]


def _slice_values(v: slice, n: int) -> list[float]:
    """set_hyper's slice of numbers over `n` groups (`slice_values`)."""
    stop = real_or_none(v.stop)
    start = None if v.start is None else real_or_none(v.start)
    if stop is None or (v.start is not None and start is None) or v.step is not None:
        raise TypeError(f"set_hyper: a slice should be slice(b) or slice(a, b) of numbers, got {v}")
    return slice_values(start, stop, n)


class _OneCycleHost:
    """The host side of the one-cycle schedule, shared by the fused optimizers (whose kernel
    evaluates it) and `OptimWrapper` (which evaluates it before each step): the schedule's
    arguments checked and kept (`_one_cycle`), `one_cycle`, `hypers_at`."""

    _one_cycle: dict[str, Any] | None
    param_groups: list[dict[str, Any]]
    momentum: bool = True  # whether the schedule's moms apply (not to an SGD built without)
    # the schedule step `hypers` reports; None: the next step's. The Learner sets it to each
    # training batch's step, so that from before_batch to after_batch (and after the fit)
    # hypers give the batch's own values, as fastai's ParamScheduler sets them per batch
    hypers_step: int | None = None
    # the Learner's layer_groups.GroupMap (set by make_optimizer): which layer group each
    # param group is of, and whether it takes weight decay; set_hyper takes one value per
    # layer group, and keeps weight decay off the groups without it (BatchNorm, biases)
    group_map: Any = None

    def _new_schedule(
        self,
        total_steps: int,
        lr_max: Any,
        div: float,
        div_final: float,
        pct_start: float,
        moms: Sequence[float],
        start_step: int,
    ) -> int:
        """Check the arguments of `set_one_cycle`, keep them as `_one_cycle`; returns the
        checked start_step."""
        total_steps = check_int("total_steps", total_steps, 1, rule="> 0")
        start_step = check_int("start_step", start_step, 0)
        div, div_final, pct_start, moms = check_one_cycle_args(div, div_final, pct_start, moms)
        if not self.momentum:  # an SGD without momentum stays without
            moms = (0.0, 0.0, 0.0)
        self.hypers_step = None
        self._one_cycle = {
            "total_steps": total_steps,
            "lr_max": self._lr_max_list(lr_max),
            "div": div,
            "div_final": div_final,
            "pct_start": pct_start,
            "moms": moms,
        }
        return start_step

    def _lr_max_list(self, lr_max: Any) -> list[float]:
        n = len(self.param_groups)
        if isinstance(lr_max, torch.Tensor) and lr_max.dim() > 0:
            lr_max = lr_max.tolist()
        if real_or_none(lr_max) is not None:
            lrs = [lr_max] * n
        elif isinstance(lr_max, Sequence) and not isinstance(lr_max, (str, bytes)):
            if len(lr_max) != n:
                raise ValueError(
                    f"lr_max should be one number or one per param group ({n}), "
                    f"got {len(lr_max)} values"
                )
            lrs = list(lr_max)
        else:
            raise TypeError(
                f"lr_max should be a number or a sequence of {n} numbers, "
                f"got {type(lr_max).__name__}"
            )
        for gi, lr in enumerate(lrs):
            lrs[gi] = check_number(f"lr (lr_max of param group {gi})", lr, *_RANGES["lr"])
        return lrs

    def _new_lr_max(self, lr_max: Any) -> None:
        """`set_lr_max`'s change of the kept schedule (ValueError when none is set)."""
        if self._one_cycle is None:
            raise ValueError("set_lr_max needs a one-cycle schedule (set_one_cycle), none is set")
        self._one_cycle["lr_max"] = self._lr_max_list(lr_max)

    @property
    def one_cycle(self) -> dict[str, Any] | None:
        """The schedule set by `set_one_cycle` (total_steps, lr_max per group, div, div_final,
        pct_start, moms), or None."""
        if self._one_cycle is None:
            return None
        return {**self._one_cycle, "lr_max": list(self._one_cycle["lr_max"])}

    @property
    def hypers(self) -> list[dict[str, float]]:
        """fastai's ``opt.hypers``: per param group, its hyper-parameters by fastai's names
        (lr, mom, and those the optimizer has of sqr_mom, eps, wd). With a one-cycle schedule
        set, lr and mom at step `hypers_step`: during a fit's training batch that batch's
        (also after its step, in after_step / after_batch), after the fit its last batch's,
        as fastai's; when no batch has set it, the schedule's position (the next step's;
        reading a fused optimizer's position waits for the device)."""
        out = [self._named_hypers(g) for g in self.param_groups]
        if self._one_cycle is not None:
            step = self.hypers_step
            lrs, moms = self.hypers_at(self.schedule_step if step is None else step)
            for h, lr, mom in zip(out, lrs, moms, strict=True):
                h["lr"] = lr
                if "mom" in h:
                    h["mom"] = mom
        return out

    def set_hyper(self, k: str, v: float | Sequence[float]) -> None:
        """fastai's ``opt.set_hyper(k, v)``: hyper-parameter `k` (fastai's name: lr, mom,
        sqr_mom, eps, wd) of every param group to `v`: one number, one per layer group (as
        fastai's, on a Learner's optimizer: its param groups are a decayed and a non-decayed
        one per layer group) or one per param group. Weight decay given as one number or per
        layer group stays off the param groups without it (BatchNorm and biases, unless
        wd_bn_bias). While a one-cycle schedule is set (fit_one_cycle, fine_tune,
        fit_flat_cos, fit_sgdr) it sets lr and mom at every step: changing them is a
        ValueError (a schedule of your own runs in a plain fit)."""
        names = sorted(self._named_hypers(self.param_groups[0])) if self.param_groups else []
        if k not in names:
            raise ValueError(f"set_hyper: k should be one of {names}, got {k!r}")
        if k in ("lr", "mom") and self._one_cycle is not None:
            raise ValueError(
                f"set_hyper({k!r}): the one-cycle schedule sets lr and mom at every step of "
                "this fit; write your own schedule in a plain learn.fit(), or call "
                "opt.clear_schedule() first"
            )
        n = len(self.param_groups)
        groups = self.group_map
        n_layers = None if groups is None else groups.n_layers
        if isinstance(v, slice):  # fastai's: spread over the layer groups
            v = _slice_values(v, n if n_layers is None else n_layers)
        given = isinstance(v, Sequence) and not isinstance(v, str)
        values = list(v) if given else [v] * n
        if given and len(values) == n_layers and n_layers != n:
            values = groups.expand(values)  # one per layer group
            given = False
        if len(values) != n:
            per_layer = "" if n_layers is None else f", one per layer group ({n_layers})"
            raise ValueError(
                f"set_hyper: v should be one number{per_layer} or one per param group ({n}), "
                f"got {len(values)} values"
            )
        if k == "wd" and not given and groups is not None:
            values = [value if d else 0.0 for value, d in zip(values, groups.decay, strict=True)]
        for group, value in zip(self.param_groups, values, strict=True):
            number = real_or_none(value)
            if number is None:
                raise TypeError(f"set_hyper: v should hold numbers, got {value!r}")
            self._write_hyper(group, k, float(number))

    def set_hypers(self, **kwargs: float | Sequence[float] | slice) -> None:
        """fastai's ``opt.set_hypers(lr=..., wd=...)``: `set_hyper` for each."""
        for k, v in kwargs.items():
            self.set_hyper(k, v)

    @property
    def param_lists(self) -> list[list[torch.Tensor]]:
        """fastai's: the parameters of each layer group (its decayed and non-decayed param
        groups together), or of each param group when the layer groups are not known."""
        groups = self.group_map
        layers = groups.layer if groups is not None else tuple(range(len(self.param_groups)))
        lists: list[list[torch.Tensor]] = [[] for _ in range(layers[-1] + 1)] if layers else []
        for layer, group in zip(layers, self.param_groups, strict=True):
            lists[layer].extend(group["params"])
        return lists

    def _named_hypers(self, group: dict[str, Any]) -> dict[str, float]:
        """A param group's hyper-parameters by fastai's names."""
        return {k: float(group[k]) for k in self._keys}

    def _write_hyper(self, group: dict[str, Any], k: str, value: float) -> None:
        group[k] = value

    def clear_state(self) -> None:
        """fastai's ``opt.clear_state()``: forget every parameter's state (Adam's moments and
        step counts, SGD's momentum), as `Learner.freeze_to` does; the hyper-parameters and
        the one-cycle position stay."""
        self.state.clear()

    def hypers_at(self, step: int) -> tuple[list[float], list[float]]:
        """(lrs, moms), one per param group, that the schedule set by `set_one_cycle` gives
        step `step`: `schedule.one_cycle(step / total_steps, ...)` (the host closed form of
        what the fused kernels compute on the device; what OptimWrapper writes). Reads no
        device value. ValueError when no schedule is set."""
        if self._one_cycle is None:
            raise ValueError("hypers_at needs a one-cycle schedule (set_one_cycle), none is set")
        sched = self._one_cycle
        pos = step / sched["total_steps"]
        args = (sched["div"], sched["div_final"], sched["pct_start"], sched["moms"])
        pairs = [one_cycle(pos, lr, *args) for lr in sched["lr_max"]]
        return [float(lr) for lr, _ in pairs], [float(m) for _, m in pairs]


class _FusedOptimizer(_OneCycleHost, torch.optim.Optimizer):
    """The machinery shared by `Adam`, `SGD` and `RMSProp`: validation, the hyperparameter,
    schedule and counter tensors its op reads, the one-cycle schedule, AMP, state_dict."""

    _step_supports_amp_scaling = True  # torch.amp.GradScaler passes grad_scale / found_inf
    _keys: tuple[str, ...] = ()  # the group hyperparameters of this optimizer
    # where `_hyper`, `_sched` and `_counter` live: False, the params' device (a fused
    # kernel reads them there); True, the CPU (an op of torch ops that reads them on the host)
    _host_tables: bool = False

    def _tables_device(self) -> torch.device | None:
        return torch.device("cpu") if self._host_tables else self._device

    def __init__(self, params: Iterable, defaults: dict[str, float]) -> None:
        if isinstance(params, torch.Tensor):
            raise TypeError(
                "params should be an iterable of Tensors or of dicts (param groups), "
                f"got a single {torch.typename(params)}: wrap it in a list"
            )
        try:
            params = list(params)
        except TypeError:
            raise TypeError(
                "params should be an iterable of Tensors or of dicts (param groups), "
                f"got {type(params).__name__}"
            ) from None
        if params and all(isinstance(x, list) for x in params):
            params = [{"params": x} for x in params]  # fastai's form: one list per group
        for key, value in defaults.items():
            defaults[key] = check_number(key, value, *_RANGES[key])
        self._device: torch.device | None = None
        self._hyper: torch.Tensor | None = None
        self._hyper_raw: tuple | None = None  # the group values last written to _hyper
        self._one_cycle: dict[str, Any] | None = None
        super().__init__(params, defaults)
        dev = self._tables_device()
        self._hyper = torch.zeros(
            len(self.param_groups), len(ops.HYPER_COLS), dtype=torch.float64, device=dev
        )
        self._sched = torch.zeros(len(ops.SCHED_FIELDS), dtype=torch.float64, device=dev)
        self._counter = torch.zeros(ops.COUNTER_LEN, dtype=torch.int64, device=dev)
        self.sync_hyperparameters()

    # ---- construction -------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (a dict with 'params' and optionally its own lr, mom, ...), checked."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group should be a dict, got {type(param_group).__name__}")
        gi = len(self.param_groups)
        where = f" (param group {gi})"
        if "params" not in param_group:
            raise ValueError(f"param_group{where} should have a 'params' entry")
        params = param_group["params"]
        if isinstance(params, torch.Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(f"params{where} should be an ordered iterable, got a set")
        else:
            try:
                params = list(params)
            except TypeError:
                raise TypeError(
                    f"params{where} should be an iterable of Tensors, got {type(params).__name__}"
                ) from None
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            self._check_param(p, f" (param {i} of group {gi})")
            if id(p) in seen:
                raise ValueError(
                    f"params{where}: param {i} appears more than once in the optimizer"
                )
            seen.add(id(p))
        for key in param_group:
            if key in _RANGES and key in self._keys:
                param_group[key] = check_number(key + where, param_group[key], *_RANGES[key])
        for torch_name, ours in _TORCH_NAMES.items():
            if torch_name in param_group:
                raise ValueError(
                    f"param_group{where} has torch's '{torch_name}': {type(self).__name__} "
                    f"takes fastai's name{'s' if ' ' in ours else ''} {ours}"
                )
        unknown = [k for k in param_group if k in _RANGES and k not in self._keys]
        if unknown:
            raise ValueError(
                f"param_group{where} has {unknown}, which {type(self).__name__} does not use "
                f"(its hyperparameters: {list(self._keys)})"
            )
        super().add_param_group({**param_group, "params": params})
        if self._hyper is not None:  # a group added after construction
            dev = self._tables_device()
            self._sched = self._sched.to(dev)  # (no-ops unless every earlier group
            self._counter = self._counter.to(dev)  # was empty)
            self._hyper = torch.zeros(
                len(self.param_groups), len(ops.HYPER_COLS), dtype=torch.float64, device=dev
            )
            self._hyper_raw = None
            if self._one_cycle is not None:
                self._one_cycle["lr_max"].append(self.param_groups[-1]["lr"])
            self.sync_hyperparameters()

    def _check_param(self, p: Any, where: str) -> None:
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"params should be Tensors, got {type(p).__name__}{where}")
        if p.layout != torch.strided:
            raise TypeError(f"params should be dense tensors, got layout {p.layout}{where}")
        if p.dtype not in _PARAM_DTYPES:
            raise TypeError(f"params should be float32, bfloat16 or float16, got {p.dtype}{where}")
        if not _is_dense(p):
            raise ValueError(
                "params should be non-overlapping and dense (contiguous, channels_last, "
                f"transposed...), got sizes {tuple(p.shape)} strides {p.stride()}{where}"
            )
        if self._device is None:
            self._device = p.device
        elif p.device != self._device:
            raise ValueError(
                f"params should all be on one device, got {self._device} and {p.device}{where}"
            )

    # ---- hyperparameters in device memory -------------------------------------------------

    def sync_hyperparameters(self, force: bool = False) -> None:
        """Write the groups' current lr, mom, ... into the device tensor the kernel reads.

        `step()` does this itself whenever a value changed. Call it between replays of a
        captured CUDA graph after changing group values (the graph reads the same tensor).
        """
        lr_max = tuple(self._one_cycle["lr_max"]) if self._one_cycle else None
        raw = (
            tuple(tuple(g[k] for k in self._keys) for g in self.param_groups),
            lr_max,
            self.momentum,
        )
        if raw == self._hyper_raw and not force:
            return
        rows = []
        for gi, group in enumerate(self.param_groups):
            values = {
                k: check_number(f"{k} (param group {gi})", group[k], *_RANGES[k])
                for k in self._keys
            }
            if not self.momentum:  # built without (SGD's mom 0): a mom set later is kept
                values["mom"] = 0.0  # in the group but not applied, as fastai's SGD has none
            row = [values.get(col, 0.0) for col in ops.HYPER_COLS[:-1]]
            rows.append([*row, lr_max[gi] if lr_max else 0.0])
        if self._device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(
                "param group values changed while a CUDA graph is being captured: set them "
                "before the capture, and call opt.sync_hyperparameters() outside the graph to "
                "change them between replays"
            )
        self._write(self._hyper, rows)
        self._hyper_raw = raw

    def _write(self, dst: torch.Tensor, values: list) -> None:
        src = torch.tensor(values, dtype=dst.dtype)
        if dst.device.type == "cuda":
            dst.copy_(src.pin_memory(), non_blocking=True)
        else:
            dst.copy_(src)

    # ---- the one-cycle schedule -----------------------------------------------------------

    def set_one_cycle(
        self,
        total_steps: int,
        lr_max: float | Sequence[float],
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        moms: Sequence[float] = (0.95, 0.85, 0.95),
        start_step: int = 0,
    ) -> None:
        """From now on the kernel sets every group's lr and mom itself, at each step.

        Step k (counted by the device step counter, which this sets to `start_step`) uses
        `schedule.one_cycle(min(k / total_steps, 1), lr_max[g], div, div_final, pct_start,
        moms)` for group g. `lr_max`: one float for every group, or one per group. Pass
        `start_step` to resume mid-cycle. The groups' own 'lr' and 'mom' are kept and come
        back with `clear_schedule()`.
        """
        start_step = self._new_schedule(
            total_steps, lr_max, div, div_final, pct_start, moms, start_step
        )
        sched = self._one_cycle
        self._write(
            self._sched,
            [float(sched["total_steps"]), sched["div"], sched["div_final"], sched["pct_start"],
             *sched["moms"]],
        )  # fmt: skip
        self._counter[0].fill_(start_step)
        self.sync_hyperparameters()

    def set_lr_max(self, lr_max: float | Sequence[float]) -> None:
        """Change the peak lr of the schedule set by `set_one_cycle` (one float for every
        group, or one per group), keeping its position and its other arguments: the next
        step follows the same curve scaled to the new peaks (ReduceLROnPlateau lowers it so).
        ValueError when no schedule is set."""
        self._new_lr_max(lr_max)
        self.sync_hyperparameters()

    def clear_schedule(self) -> None:
        """Back to each group's own lr and mom (the step counter keeps counting)."""
        self._one_cycle = None
        self._write(self._sched, [0.0] * len(ops.SCHED_FIELDS))
        self.sync_hyperparameters()

    @property
    def schedule_step(self) -> int:
        """The schedule position: `step()` calls (training batches, skipped ones included)
        since `set_one_cycle` set it. Reading it waits for the device."""
        return int(self._counter[0].item())

    def skip_step(self) -> None:
        """A training batch without an update (gradient accumulation, a step a callback
        cancelled): the schedule position advances, as fastai's ParamScheduler counts batches;
        params and state stay. No host sync."""
        self._counter[0].add_(1)

    # ---- the step ---------------------------------------------------------------------------

    _state_keys: tuple[str, ...] = ()  # per-param state, in the op's argument order

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _op(self, *args) -> None:
        """The fused op: (params, grads, *state lists, groups, hyper, sched, counter,
        grad_scale, found_inf)."""
        raise NotImplementedError

    def _amp_tensors(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """GradScaler's `grad_scale` and `found_inf` (set on the optimizer around step())."""
        out = []
        for name in ("grad_scale", "found_inf"):
            value = getattr(self, name, None)
            if value is not None:
                if not isinstance(value, torch.Tensor):
                    value = torch.tensor(float(value))
                value = value.to(device=self._device, dtype=torch.float32).reshape(1)
            out.append(value)
        return out[0], out[1]

    @torch.no_grad()
    def step(self, closure=None):
        """One step of every param that has a grad (one fused kernel call), one training batch.

        Params whose grad is None are skipped (their state and step count stay). The schedule
        position advances at every call, as fastai's ParamScheduler advances once per batch:
        also when no param has a grad, and when GradScaler found inf/NaN (then nothing else
        changes, Adam's step counts included). A sparse grad raises TypeError here, before the
        op; a grad strided unlike its param is copied to the param's layout by the op, and a
        state strided unlike its param (the model went channels-last, or back, after a step)
        is copied to the param's layout here, once.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.sync_hyperparameters()
        params, grads, groups, states = [], [], [], []
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.layout is not torch.strided:
                    raise TypeError(
                        f"{type(self).__name__} does not support sparse gradients: a param of "
                        f"group {gi} (shape {tuple(p.shape)}) has a {g.layout} grad"
                    )
                state = self.state[p]
                if not state:
                    self._init_state(p, state)
                elif state[self._state_keys[0]].stride() != p.stride():
                    # the param changed layout since (model.to(memory_format=...)): the state
                    # follows it, values kept, as the op needs the param's strides
                    state = self.state[p] = self._restored_state(p, state)
                params.append(p)
                grads.append(g)
                groups.append(gi)
                states.append(state)
        lists = [[s[k] for s in states] for k in self._state_keys]
        self._op(
            params,
            grads,
            *lists,
            groups,
            self._hyper,
            self._sched,
            self._counter,
            *self._amp_tensors(),
        )
        return loss

    # ---- state_dict ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """torch's state_dict plus 'one_cycle' (the schedule or None) and 'schedule_step'."""
        sd = super().state_dict()
        sd["one_cycle"] = self.one_cycle
        sd["schedule_step"] = self.schedule_step
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict of this optimizer class: groups, state, schedule and counter."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict should be a dict, got {type(state_dict).__name__}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(f"state_dict should have a '{key}' entry")
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved)} param groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        for gi, (sg, group) in enumerate(zip(saved, self.param_groups, strict=True)):
            if len(sg["params"]) != len(group["params"]):
                raise ValueError(
                    f"state_dict's param group {gi} has {len(sg['params'])} params, this "
                    f"optimizer's has {len(group['params'])}"
                )
            missing = [k for k in self._keys if k not in sg]
            if missing:
                raise ValueError(
                    f"state_dict's param group {gi} lacks {missing}: not a state_dict of "
                    f"{type(self).__name__}"
                )
        one_cycle = state_dict.get("one_cycle")
        if one_cycle is not None and len(one_cycle["lr_max"]) != len(self.param_groups):
            raise ValueError(
                f"state_dict's one_cycle has {len(one_cycle['lr_max'])} lr_max values, this "
                f"optimizer has {len(self.param_groups)} param groups"
            )
        step = state_dict.get("schedule_step", 0)
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"state_dict's schedule_step should be an int >= 0, got {step!r}")
        pairs = [  # (saved state, param) for every param that has saved state
            (state_dict["state"][sid], p)
            for sg, group in zip(saved, self.param_groups, strict=True)
            for sid, p in zip(sg["params"], group["params"], strict=True)
            if sid in state_dict["state"]
        ]
        for saved_state, p in pairs:
            for key in self._state_keys:
                value = saved_state.get(key)
                if not isinstance(value, torch.Tensor):
                    raise ValueError(f"state_dict's state of a param lacks the tensor '{key}'")
                if key != "step" and value.shape != p.shape:
                    raise ValueError(
                        f"state_dict's '{key}' has shape {tuple(value.shape)}, its param "
                        f"{tuple(p.shape)}"
                    )
        plain = {k: v for k, v in state_dict.items() if k not in ("one_cycle", "schedule_step")}
        super().load_state_dict(plain)
        # torch casts floating state to the param's dtype; ours is float32 with the param's
        # strides (and 'step' lives on the param's device): rebuild it from the saved tensors.
        for saved_state, p in pairs:
            self.state[p] = self._restored_state(p, saved_state)
        if one_cycle is None:
            self.clear_schedule()
        else:
            self.set_one_cycle(
                one_cycle["total_steps"],
                list(one_cycle["lr_max"]),
                one_cycle["div"],
                one_cycle["div_final"],
                one_cycle["pct_start"],
                tuple(one_cycle["moms"]),
            )
        self._counter[0].fill_(step)
        self.sync_hyperparameters(force=True)

    def _restored_state(self, p: torch.Tensor, saved: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in saved.items():
            if not isinstance(value, torch.Tensor):
                out[key] = value
            elif key == "step":
                out[key] = torch.tensor(float(value), dtype=torch.float32, device=p.device)
            else:
                out[key] = torch.empty_like(p, dtype=torch.float32).copy_(value)
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        keys = ("_device", "_hyper", "_hyper_raw", "_one_cycle", "_sched", "_counter", "momentum")
        for key in keys:  # (torch's keeps only groups, state, defaults)
            state[key] = getattr(self, key)
        return state


def _decoupled_only(name: str, decouple_wd: object) -> None:
    """fastai's `decouple_wd` of Adam and SGD: True (true weight decay) is what the fused
    kernels do; False (L2 regularization, wd * p added to the gradient) is refused, saying
    where it is offered."""
    if not check_bool("decouple_wd", decouple_wd):
        raise ValueError(
            f"{name}(decouple_wd=False): L2 regularization (wd * p added to the gradient) is "
            f"not offered by the fused {name}, which decays weights directly (fastai's "
            f"default, decouple_wd=True); RMSProp(decouple_wd=False) has it, or pass "
            f"opt_func=partial(torch.optim.{name}, weight_decay=...) (torch's L2)"
        )


class Adam(_FusedOptimizer):
    """Adam with decoupled weight decay (fastai's `Adam`, torch's `AdamW`), fused.

    Args:
        params: Tensors (float32, or bfloat16/float16 with float32 state), param groups
            (dicts with 'params' and their own lr, mom, sqr_mom, eps, wd) or, as in fastai,
            one list of Tensors per group; all on one device.
        lr: learning rate (>= 0).
        mom: beta1, the exp_avg decay, in [0, 1).
        sqr_mom: beta2, the exp_avg_sq decay, in [0, 1).
        eps: added to the denominator (>= 0).
        wd: decoupled weight decay, `p *= 1 - lr * wd` (>= 0).
        decouple_wd: fastai's; True only (False, L2 regularization, is refused, saying where
            it is offered).

    State per param: 'exp_avg', 'exp_avg_sq' (float32, the param's shape and strides) and
    'step' (float32 scalar), as torch's AdamW.
    """

    _keys = ("lr", "mom", "sqr_mom", "eps", "wd")
    _state_keys = ("exp_avg", "exp_avg_sq", "step")

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        mom: float = 0.9,
        sqr_mom: float = 0.99,
        eps: float = 1e-5,
        wd: float = 0.01,
        decouple_wd: bool = True,
    ) -> None:
        _decoupled_only("Adam", decouple_wd)
        super().__init__(params, {"lr": lr, "mom": mom, "sqr_mom": sqr_mom, "eps": eps, "wd": wd})

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
        state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)

    def _op(self, *args) -> None:
        ops.fused_adam_(*args)


class SGD(_FusedOptimizer):
    """SGD with optional momentum and decoupled weight decay (fastai's `SGD`), fused.

    `buf = mom * buf + grad` (buf starts at 0, so the first step uses the grad itself),
    `p *= 1 - lr * wd`, `p -= lr * buf`: torch's `SGD(momentum=mom)` when wd is 0.

    Args:
        params: as for `Adam`.
        lr: learning rate (>= 0).
        mom: momentum in [0, 1); 0 (the default, fastai's) is plain SGD, `p -= lr * grad`.
        wd: decoupled weight decay (>= 0).
        decouple_wd: as `Adam`'s (True only).

    As fastai's, an SGD built without momentum (mom 0 here and in every param group) stays
    without it under a one-cycle schedule or a ParamScheduler: the schedule's moms, and a mom
    set later (`set_hyper`), are kept in its groups but not applied (fastai's SGD has no
    momentum step to use them). `partial(SGD, mom=0.9)` follows them.

    State per param: 'momentum_buffer' (float32, the param's shape and strides).
    """

    _keys = ("lr", "mom", "wd")
    _state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        mom: float = 0.0,
        wd: float = 0.0,
        decouple_wd: bool = True,
    ) -> None:
        _decoupled_only("SGD", decouple_wd)
        super().__init__(params, {"lr": lr, "mom": mom, "wd": wd})
        # whether the one-cycle schedule's moms apply (fastai's SGD: mom != 0)
        self.momentum = any(float(g["mom"]) != 0 for g in self.param_groups)

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        state["momentum_buffer"] = torch.zeros_like(p, dtype=torch.float32)

    def _op(self, *args) -> None:
        ops.fused_sgd_(*args)


class RMSProp(_FusedOptimizer):
    """fastai's `RMSProp` (`fastai.optimizer.RMSProp`), step for step: per param, in fastai's
    order,

        p *= 1 - lr * wd                          # decouple_wd=True (default): true weight decay
        grad = grad + wd * p                      # decouple_wd=False: L2, instead of the above
        grad_avg = mom * grad_avg + grad          # only when built with momentum (no dampening)
        sqr_avg = sqr_mom * sqr_avg + (1 - sqr_mom) * grad**2
        p -= lr * (grad_avg or grad) / (sqrt(sqr_avg) + eps)

    (grad_avg and sqr_avg start at 0; no bias correction). This is not torch's
    `torch.optim.RMSprop`, whose momentum buffer averages the already normalized steps
    (`buf = momentum * buf + grad / (sqrt(sqr_avg) + eps)`), whose weight decay is L2 and
    whose `sqr_mom` is called `alpha`; without momentum and weight decay the two agree.

    Args:
        params: as for `Adam`.
        lr: learning rate (>= 0); fastai's has no default, ours 1e-3 as our `Adam` / `SGD`.
        mom: momentum in [0, 1); 0 (the default, fastai's) is RMSProp without momentum.
        sqr_mom: the decay of the squared-grad average, in [0, 1) (default 0.99).
        eps: added to sqrt(sqr_avg) (>= 0; default 1e-8).
        wd: weight decay (>= 0; default 0).
        decouple_wd: True (fastai's default): true weight decay, `p *= 1 - lr * wd`, before
            the averages; False: L2, the averages and the step use `grad + wd * p`.

    As fastai's, whether it has momentum is decided when it is built: with mom != 0 (in the
    arguments or in a param group's own 'mom') it keeps 'grad_avg' and follows every mom it
    is given, the one-cycle schedule's moms included (fit_one_cycle: 0.95 -> 0.85 -> 0.95);
    built with mom 0 it has no momentum step, and the schedule's moms (its mom stays 0) and any
    mom set later are not applied. `partial(RMSProp, mom=0.9)` has momentum.

    Differences from fastai's: the grads are only read (fastai's L2 adds `wd * p` into
    `p.grad`); params in bfloat16 / float16 get float32 state and each step is computed in
    float32 and rounded into the param once (fastai computes in the param's dtype); under
    `torch.amp.GradScaler` it divides the grads by the scale and skips a step with inf/NaN
    itself, as our `Adam` and `SGD` do (the schedule position still advances). It is torch
    `_foreach` ops per param group, not a fused kernel: the one-cycle schedule and its
    position are evaluated on the host (the position counter lives on the CPU), so a step
    reads nothing back from a GPU except GradScaler's found_inf flag (as torch's own
    optimizers under a GradScaler), and its step cannot be replayed from a captured CUDA
    graph (the schedule's values are host numbers).

    State per param: 'sqr_avg' and, with momentum, 'grad_avg' (float32, the param's shape and
    strides), fastai's names.
    """

    _keys = ("lr", "mom", "sqr_mom", "eps", "wd")
    _state_keys: tuple[str, ...] = ("sqr_avg",)
    _host_tables = True

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        mom: float = 0.0,
        sqr_mom: float = 0.99,
        eps: float = 1e-8,
        wd: float = 0.0,
        decouple_wd: bool = True,
    ) -> None:
        self.decouple_wd = check_bool("decouple_wd", decouple_wd)
        self.momentum = False  # (add_param_group reads it while the groups are added)
        super().__init__(params, {"lr": lr, "mom": mom, "sqr_mom": sqr_mom, "eps": eps, "wd": wd})
        # fastai's RMSProp: an average_grad step only when built with mom != 0
        self.momentum = any(float(g["mom"]) != 0 for g in self.param_groups)
        self._state_keys = ("grad_avg", "sqr_avg") if self.momentum else ("sqr_avg",)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As `Adam.add_param_group`; a group added to an RMSProp built without momentum may
        not ask for one (ValueError: its mom would not be applied)."""
        if isinstance(param_group, dict):
            where = f" (param group {len(self.param_groups)})"
            if "alpha" in param_group:
                raise ValueError(
                    f"param_group{where} has torch's 'alpha': RMSProp takes fastai's name 'sqr_mom'"
                )
            mom = real_or_none(param_group.get("mom", 0.0))
            after = self._hyper is not None  # (a group added after construction)
            if after and not self.momentum and mom is not None and 0.0 < mom < 1.0:
                raise ValueError(
                    f"param_group{where} has mom {mom:g}, but this RMSProp was built without "
                    "momentum (mom 0), which it keeps, as fastai's: build it with mom != 0 "
                    "(e.g. partial(RMSProp, mom=0.9)) to use one"
                )
        super().add_param_group(param_group)

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        if self.momentum:
            state["grad_avg"] = torch.zeros_like(p, dtype=torch.float32)
        state["sqr_avg"] = torch.zeros_like(p, dtype=torch.float32)

    def _op(self, params, grads, *rest) -> None:
        n = len(self._state_keys)
        lists, tail = rest[:n], rest[n:]
        grad_avgs = lists[0] if self.momentum else None
        _rmsprop_step_(params, grads, grad_avgs, lists[-1], *tail, decouple_wd=self.decouple_wd)

    def __getstate__(self) -> dict[str, Any]:  # (torch's keeps only groups, state, defaults)
        state = super().__getstate__()
        for key in ("decouple_wd", "momentum", "_state_keys"):
            state[key] = getattr(self, key)
        return state


def _rmsprop_step_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    grad_avgs: list[torch.Tensor] | None,
    sqr_avgs: list[torch.Tensor],
    groups: list[int],
    hyper: torch.Tensor,
    sched: torch.Tensor,
    counter: torch.Tensor,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
    *,
    decouple_wd: bool = True,
) -> None:
    """One `RMSProp` step of every listed tensor, in place, with the arguments of the fused
    ops (`ops.fused_sgd_`), here `hyper`, `sched` and `counter` on the CPU; `grad_avgs` None:
    without momentum. Each group's lr and mom are `schedule.one_cycle(counter[0] / total,
    lr_max, ...)` when `sched` holds a schedule, else its row of `hyper`. counter[0] advances
    at every call; when found_inf is nonzero nothing else changes."""
    if found_inf is not None and found_inf.item() != 0:  # (a sync on a GPU, as GradScaler's)
        counter[0] += 1
        return
    step = int(counter[0])
    rows = hyper.tolist()
    total, div, div_final, pct_start, *moms = sched.tolist()
    scale = None if grad_scale is None else grad_scale.reshape(())
    members: dict[int, list[int]] = {}
    for i, gi in enumerate(groups):
        members.setdefault(gi, []).append(i)
    for gi, idx in members.items():
        lr, mom, sqr_mom, eps, wd, lr_max = rows[gi]
        if total > 0:
            lr, mom = one_cycle(step / total, lr_max, div, div_final, pct_start, moms)
        ps = [params[i] for i in idx]
        # float32 working copies of bfloat16 / float16 params and grads (float32 ones as is)
        work = [p if p.dtype == torch.float32 else p.float() for p in ps]
        gs = [grads[i] if grads[i].dtype == torch.float32 else grads[i].float() for i in idx]
        if scale is not None:
            gs = torch._foreach_div(gs, scale)
        if wd != 0:
            if decouple_wd:  # fastai's weight_decay
                torch._foreach_mul_(work, 1 - lr * wd)
            else:  # fastai's l2_reg, without writing p.grad
                gs = torch._foreach_add(gs, work, alpha=wd)
        num = gs
        if grad_avgs is not None:  # fastai's average_grad (dampening=False)
            num = [grad_avgs[i] for i in idx]
            torch._foreach_mul_(num, mom)
            torch._foreach_add_(num, gs)
        sq = [sqr_avgs[i] for i in idx]  # fastai's average_sqr_grad (dampening=True)
        torch._foreach_mul_(sq, sqr_mom)
        torch._foreach_addcmul_(sq, gs, gs, value=1 - sqr_mom)
        denom = torch._foreach_sqrt(sq)  # fastai's rms_prop_step
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(work, num, denom, value=-lr)
        for p, w in zip(ps, work, strict=True):
            if w is not p:
                p.copy_(w)
    counter[0] += 1


class OptimWrapper(_OneCycleHost, torch.optim.Optimizer):
    """A torch optimizer with the one-cycle interface of this library's `Adam` / `SGD`
    (`set_one_cycle`, `set_lr_max`, `clear_schedule`, `one_cycle`, `hypers_at`), so that
    fit_one_cycle, fit_flat_cos, fine_tune and fit_sgdr train with ``opt_func=torch.optim.AdamW``
    (the Learner wraps a torch optimizer in it) or fastai v2's
    ``opt_func=partial(OptimWrapper, opt=torch.optim.AdamW)``.

    `OptimWrapper(params, opt, **kwargs)` builds ``opt(params, **kwargs)`` (fastai's form);
    `OptimWrapper.of(optimizer)` wraps one already built. Its param groups, state and
    state_dict are the wrapped optimizer's own (`opt`). With a schedule set, each `step()`
    first writes into every group the lr and momentum of ``schedule.one_cycle(k /
    total_steps, ...)`` for its k-th call since `set_one_cycle` (on the host; the momentum as
    ``betas[0]`` for Adam-like optimizers, ``momentum`` for SGD and RMSprop, as fastai's
    OptimWrapper maps it), then steps the optimizer; `clear_schedule()` puts the groups' own
    lr and momentum back. A batch without a step (`torch.amp.GradScaler` skipped it, or
    gradient accumulation) advances the position through `skip_step()`, which the Learner
    calls then, so the schedule counts training batches as with the fused optimizers.
    """

    def __init__(self, params: Iterable, opt: Any, **kwargs: Any) -> None:
        # no Optimizer.__init__: the groups, state and defaults are the wrapped optimizer's
        built = opt(params, **kwargs) if not isinstance(opt, torch.optim.Optimizer) else opt
        if not isinstance(built, torch.optim.Optimizer):
            raise TypeError(
                f"opt should be a torch optimizer class (or factory), got {type(opt).__name__}"
            )
        if isinstance(built, OptimWrapper | _FusedOptimizer):
            raise TypeError(
                f"opt: {type(built).__name__} runs the one-cycle schedule itself; use it directly"
            )
        self.opt = built
        self._one_cycle: dict[str, Any] | None = None
        self._step_count = 0
        self._own: list[tuple[float, Any]] | None = None  # each group's (lr, momentum)

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer) -> OptimWrapper:
        """`optimizer` (already built) wrapped."""
        return cls((), optimizer)

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.opt.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.opt.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.opt.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.opt.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        return self.opt.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.opt.load_state_dict(state_dict)

    def set_one_cycle(
        self,
        total_steps: int,
        lr_max: float | Sequence[float],
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        moms: Sequence[float] = (0.95, 0.85, 0.95),
        start_step: int = 0,
    ) -> None:
        """As `Adam.set_one_cycle`: from the next step on, step k of the schedule (counted
        from `start_step`) sets every group's lr and momentum."""
        self._step_count = self._new_schedule(
            total_steps, lr_max, div, div_final, pct_start, moms, start_step
        )
        if self._own is None:
            self._own = [(g["lr"], _momentum(g)) for g in self.param_groups]

    def set_lr_max(self, lr_max: float | Sequence[float]) -> None:
        """As `Adam.set_lr_max`: new peaks, the same position."""
        self._new_lr_max(lr_max)

    def clear_schedule(self) -> None:
        """Back to each group's own lr and momentum (those before `set_one_cycle`)."""
        if self._own is not None:
            for group, (lr, mom) in zip(self.param_groups, self._own, strict=True):
                group["lr"] = lr
                _set_momentum(group, mom)
        self._one_cycle, self._own = None, None

    @property
    def schedule_step(self) -> int:
        """The schedule position: `step()` calls since `set_one_cycle` (from its start_step)."""
        return self._step_count

    def skip_step(self) -> None:
        """As `Adam.skip_step`: the schedule position advances, the wrapped optimizer does not
        step."""
        self._step_count += 1

    @torch.no_grad()
    def step(self, closure=None):
        if self._one_cycle is not None:
            lrs, moms = self.hypers_at(self._step_count)
            for group, lr, mom in zip(self.param_groups, lrs, moms, strict=True):
                group["lr"] = lr
                _set_momentum(group, mom)
        self._step_count += 1
        if closure is None:
            return self.opt.step()
        with torch.enable_grad():
            return self.opt.step(closure)

    def _named_hypers(self, group: dict[str, Any]) -> dict[str, float]:
        """A torch param group's hyper-parameters by fastai's names: lr; mom (betas[0] or
        momentum); sqr_mom (betas[1]); eps; wd (weight_decay)."""
        out = {"lr": float(group["lr"])}
        mom = _momentum(group)
        if mom is not None:
            out["mom"] = float(mom[0] if isinstance(mom, tuple) else mom)
        if "betas" in group:
            out["sqr_mom"] = float(group["betas"][1])
        for k, name in (("eps", "eps"), ("weight_decay", "wd")):
            if k in group:
                out[name] = float(group[k])
        return out

    def _write_hyper(self, group: dict[str, Any], k: str, value: float) -> None:
        if k == "mom":
            _set_momentum(group, value)
        elif k == "sqr_mom":
            group["betas"] = (group["betas"][0], value)
        else:
            group[{"wd": "weight_decay"}.get(k, k)] = value

    def __getstate__(self) -> dict[str, Any]:  # Optimizer's would read the properties
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:  # copy.deepcopy, pickle
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"OptimWrapper({self.opt!r})"


def _momentum(group: dict[str, Any]) -> Any:
    """A torch param group's momentum: its betas (Adam-like) or its momentum, or None."""
    if "betas" in group:
        return tuple(group["betas"])
    return group.get("momentum")


def _set_momentum(group: dict[str, Any], mom: Any) -> None:
    """Write `mom` (a float from the schedule, or a value `_momentum` read) into a torch
    param group: betas[0] of Adam-like optimizers, momentum of SGD / RMSprop; a group with
    neither is left alone."""
    if mom is None:
        return
    if "betas" in group:
        group["betas"] = tuple(mom) if isinstance(mom, tuple) else (mom, *group["betas"][1:])
    elif "momentum" in group:
        group["momentum"] = mom
