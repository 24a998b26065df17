"""Where this process stands among the processes of a run, and the collectives on results.

The leaf of the distributed code (it imports only torch): the rank helpers every layer asks
(`is_main_process` before printing or writing a file, `barrier`, `rank`, `world_size`,
`launch_rank` and `launched_by_torchrun` before any process group exists) and the
collectives the Recorder, get_preds and the lesson's summary use to see the whole data
(`all_gather_cat`, `all_gather_objects`, `reduce_validation`). Entering DDP is
fastcore_ext.callback.ddp's; launching torchrun is fastcore_ext.launch's;
fastcore_ext.distributed re-exports all three.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from fastcore_ext.torch_core import map_nested

__all__ = [
    "all_gather_cat",
    "all_gather_objects",
    "barrier",
    "env_int",
    "from_launch_rank_0",
    "is_distributed",
    "is_main_process",
    "launch_rank",
    "launched_by_torchrun",
    "rank",
    "reduce_validation",
    "world_size",
]

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


# ---- where this process stands ---------------------------------------------------------------
def launched_by_torchrun() -> bool:
    """True when torchrun (or anything that sets RANK, WORLD_SIZE and LOCAL_RANK) started
    this process."""
    return all(os.environ.get(k) for k in _TORCHRUN_ENV)


def env_int(name: str) -> int:
    """The int value of environment variable `name` (as torchrun sets RANK, WORLD_SIZE,
    LOCAL_RANK); ValueError naming the variable when it is not one."""
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name} should be an int (set by torchrun), got {value!r}"
        ) from None


def launch_rank() -> int:
    """This process's rank as torchrun set it (RANK), before any process group exists; 0 when
    torchrun did not start it."""
    return env_int("RANK") if launched_by_torchrun() else 0


def from_launch_rank_0(key: str, value: str, timeout: float = 600.0) -> str | None:
    """Under torchrun, before any process group exists: rank 0's `value` for `key`, in every
    process, passed through the store torchrun's agent keeps for its workers (the one
    init_process_group would join: MASTER_ADDR:MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE);
    rank 0 publishes, the others wait for it (up to `timeout` s). Every process must ask for
    the same keys in the same order. `value` itself when torchrun did not start this process
    or its world has one process; None when there is no agent store to ask."""
    if not launched_by_torchrun() or env_int("WORLD_SIZE") == 1:
        return value
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or not dist.is_available():
        return None
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=timedelta(seconds=timeout),
    )
    run = os.environ.get("TORCHELASTIC_RUN_ID", "")
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    full = f"fastcore_ext/{run}/{attempt}/{key}"
    if launch_rank() == 0:
        store.set(full, value)
    return store.get(full).decode()


def is_distributed() -> bool:
    """True when a process group of more than one process is initialized."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the initialized process group; 0 without one."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes in the initialized process group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0: the process that prints, plots and writes files. Before a process
    group exists, the rank torchrun gave (`launch_rank`: a script's plots of its data, made
    before its Learner, were saved by every process); True in a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return launch_rank() == 0


def barrier() -> None:
    """Wait for every process of the group (nothing without one)."""
    if is_distributed():
        dist.barrier()


# ---- collectives on the results of a pass ----------------------------------------------------
def _comm_device() -> torch.device:
    """Where tensors must be for a collective: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's picklable `obj`, in rank order (`[obj]` without a process group).
    Every process of the group must call it."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_cat(t: torch.Tensor | None) -> torch.Tensor | None:
    """Every process's `t` (Tensor[n_r, ...], n_r may differ and be 0; None counts as no
    rows) concatenated along dim 0 in rank order: Tensor[sum n_r, ...] on t's device (the CPU
    when t is None), the same in every process. The trailing shapes and dtypes must agree.
    Returns None when every process passed None; `t` itself without a process group."""
    if not is_distributed():
        return t
    meta = None if t is None else (tuple(t.shape), t.dtype)
    metas: list[Any] = [None] * world_size()
    dist.all_gather_object(metas, meta)
    known = [m for m in metas if m is not None]
    if not known:
        return None
    trailing, dtype = known[0][0][1:], known[0][1]
    for r, m in enumerate(metas):
        if m is not None and (m[0][1:] != trailing or m[1] != dtype):
            raise ValueError(
                f"all_gather_cat: every process should pass a Tensor of shape (n, *{trailing}) "
                f"and dtype {dtype}, rank {r} passed shape {m[0]} of {m[1]}"
            )
    row = 1
    for d in trailing:
        row *= d
    itemsize = torch.empty((), dtype=dtype).element_size()
    counts = [0 if m is None else m[0][0] for m in metas]
    device = _comm_device()
    local = torch.empty((0, *trailing), dtype=dtype) if t is None else t
    # Bytes, so every dtype (bool, bfloat16, ...) travels on every backend.
    flat = local.detach().contiguous().reshape(-1).view(torch.uint8).to(device)
    buf = torch.zeros(max(counts) * row * itemsize, dtype=torch.uint8, device=device)
    buf[: flat.numel()] = flat
    parts = [torch.empty_like(buf) for _ in counts]
    dist.all_gather(parts, buf)
    rows = [
        p[: n * row * itemsize].view(dtype).reshape(n, *trailing)
        for p, n in zip(parts, counts, strict=True)
    ]
    return torch.cat(rows).to(t.device if t is not None else "cpu")


def reduce_validation(
    loss_sum: torch.Tensor | None,
    n: int,
    preds: torch.Tensor | None,
    targs: torch.Tensor | None,
) -> tuple[torch.Tensor | None, int, torch.Tensor | None, torch.Tensor | None]:
    """The Recorder's end-of-validation hook: this process's (sum of item losses, item count,
    predictions Tensor[n, c] (or a tuple / dict of tensors [n, ...]) or None, targets
    Tensor[n] or None) -> the same over every
    process (sums all-reduced in float64, predictions and targets gathered in rank order).
    Every process must call it, also one whose block was empty. Unchanged without a
    process group."""
    if not is_distributed():
        return loss_sum, n, preds, targs
    device = _comm_device()
    local = 0.0 if loss_sum is None else float(loss_sum.detach().double().cpu())
    sums = torch.tensor([local, float(n)], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    total, count = float(sums[0]), round(float(sums[1]))
    if count == 0:
        return None, 0, None, None
    out = torch.tensor(total, dtype=torch.float64)
    # a model's tuple or dict of outputs: gathered leaf by leaf (None is a leaf too)
    return out, count, map_nested(preds, all_gather_cat), all_gather_cat(targs)
