"""Training on several processes (GPUs or machines) with torch.distributed and DDP.

A Learner enters distributed mode in a process launched by torchrun (RANK, WORLD_SIZE and
LOCAL_RANK set: the Learner does it when it is created), or through `learn.distrib()` /
`with learn.distrib_ctx():`. Then, in every process:

- the process group is initialized once, from torchrun's environment (NCCL when the data are
  on a CUDA device, else gloo), with a timeout, and destroyed by whoever created it (the
  context's exit, or the end of the process); a group that already exists is used as it is;
- the process is pinned to GPU LOCAL_RANK (`torch.cuda.set_device`; data, model and
  optimizer state move there);
- the loaders are sharded (`DeviceDataLoader.set_shard`): training, per-epoch shuffled from
  (data seed, epoch) identically everywhere, each process taking n // world_size items of the
  order; validation in contiguous uneven blocks, every item exactly once, no padding. `bs` is
  per process. Process r > 0 draws its augmentation from its own stream;
- each fit wraps the model in DistributedDataParallel for the training forward passes only
  (`DistributedTrainer`, a callback). `learn.model` stays the plain module, so save, export,
  predict, lr_find's snapshot and every checkpoint see it and load without DDP. DDP
  broadcasts rank 0's weights when the fit starts and averages the gradients during
  backward; the fused optimizer then steps on identical gradients, so every process keeps
  identical weights. BatchNorm buffers are broadcast from rank 0 at the end of each training
  phase (CPU and GPU alike; SyncBatchNorm is not used);
- each training loss is averaged over the processes (the Recorder, TerminateOnNaN and the
  lr_find stop rule see the same value everywhere, so they decide alike); at the end of
  validation the loss sums and item counts are all-reduced and the predictions and targets
  gathered, so valid_loss and every metric equal a single-process evaluation of the whole
  validation set (up to float rounding of the loss sum; error_rate / accuracy exactly);
- get_preds gathers every process's block, in data set order; ClassificationInterpretation
  builds on it (every process must call it; rank 0 prints and plots);
- only rank 0 prints (progress bar, table, messages), saves plots, writes CSVLogger files
  and checkpoints / exports (`checkpoint.atomic_save`: rank 0 writes, every process waits at
  a barrier, so call save / export on every process).

A crashing process makes the others fail instead of hanging: gloo and NCCL raise in the
survivors when a peer's connection closes or a collective outlives the group timeout
(`timeout`, default 30 minutes), and torchrun ends the remaining workers and exits non-zero.

Launching. On one machine, `launch(nproc, argv)` runs
``python -m torch.distributed.run --standalone --nproc-per-node N -m fastcore_ext <argv>``
(the same as ``torchrun --standalone --nproc-per-node N -m fastcore_ext train ...``). On
several machines run on each one (node_rank 0..nnodes-1, the same rendezvous endpoint, a
host:port of machine 0 that every machine can reach)::

    torchrun --nnodes 2 --nproc-per-node 8 --node-rank 0 \\
        --rdzv-backend c10d --rdzv-endpoint host0:29500 --rdzv-id job1 \\
        -m fastcore_ext train ...

What ran where. Run on a 2-core CPU (tests/test_distributed.py): 2 processes with gloo on
127.0.0.1, started by multiprocessing with torchrun's environment variables (so the Learner
initializes the group itself): fit_one_cycle with bit-identical weights and BatchNorm buffers
on both ranks, metrics equal to a single-process evaluation of the whole (odd-sized)
validation set, get_preds / ClassificationInterpretation gathered in order, lr_find, saving
and CSV logging by rank 0 only, a crashing rank making the other fail; and `launch` running
real torchrun (with a small probe module) for success and for a failing rank; and
`fastcore-ext train --nproc 2` end to end (tests/test_cli.py). Never run: NCCL, several GPUs
(set_device, moving data, model and optimizer state to LOCAL_RANK's GPU), several machines.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fastcore_ext.callback.core import Callback

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = [
    "DistributedTrainer",
    "DEFAULT_TIMEOUT",
    "all_gather_cat",
    "barrier",
    "enter",
    "exit_distrib",
    "is_distributed",
    "is_main_process",
    "launch",
    "launch_command",
    "launched_by_torchrun",
    "rank",
    "reduce_validation",
    "world_size",
]

DEFAULT_TIMEOUT = 1800.0  # seconds a collective may wait for the other processes
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_created_group = False  # this module initialized the default process group


# ---- where this process stands ---------------------------------------------------------------
def launched_by_torchrun() -> bool:
    """True when torchrun (or anything that sets RANK, WORLD_SIZE and LOCAL_RANK) started
    this process."""
    return all(os.environ.get(k) for k in _TORCHRUN_ENV)


def _env_int(name: str) -> int:
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
    return _env_int("RANK") if launched_by_torchrun() else 0


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
    """True on rank 0 and in a process without a process group: the one that prints, plots
    and writes files."""
    return rank() == 0


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
    predictions Tensor[n, c] or None, targets Tensor[n] or None) -> the same over every
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
    return out, count, all_gather_cat(preds), all_gather_cat(targs)


# ---- the callback that runs each fit under DDP -----------------------------------------------
class DistributedTrainer(Callback):
    """Attached by `enter`: wraps `learn.model` in DistributedDataParallel for the training
    forward passes of each fit (`learn.ddp_model`, built in before_fit with the requires_grad
    flags of that moment, so freeze / unfreeze between fits work), averages each training
    loss over the processes (after_loss, before TerminateOnNaN and the Recorder read it) and
    broadcasts rank 0's buffers (BatchNorm statistics) after each training phase.

    device_ids: [local GPU] under NCCL, None on the CPU. created_group: whether entering
    distributed mode for this learner initialized the process group (then leaving it
    destroys the group)."""

    order = -10  # before TerminateOnNaN (-9): every process must see the same loss
    run_valid = False

    def __init__(self, device_ids: list[int] | None, created_group: bool = False) -> None:
        super().__init__()
        self.device_ids = device_ids
        self.created_group = created_group

    def before_fit(self) -> None:
        learn = self.learn
        if any(p.requires_grad for p in learn.model.parameters()):
            learn.ddp_model = DistributedDataParallel(learn.model, device_ids=self.device_ids)
        else:  # nothing to train: only keep the buffers in step
            learn.ddp_model = None
            self._broadcast_buffers()

    def after_loss(self) -> None:
        learn = self.learn
        if learn.loss is None:
            return
        loss = learn.loss.detach().float().clone()
        dist.all_reduce(loss)
        learn.loss = loss / world_size()

    def after_train(self) -> None:
        self._broadcast_buffers()

    def after_fit(self) -> None:  # also after an exception: no collective here
        self.learn.ddp_model = None

    def _broadcast_buffers(self) -> None:
        for b in self.learn.model.buffers():
            dist.broadcast(b, src=0)


# ---- entering and leaving distributed mode ---------------------------------------------------
def _destroy_created_group() -> None:
    global _created_group
    if _created_group and dist.is_initialized():
        dist.destroy_process_group()
    _created_group = False


def _init_group(backend: str, timeout: float) -> None:
    """Initialize the default process group from torchrun's environment (env://)."""
    global _created_group
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ValueError(
                f"environment variable {name} is not set: launch with torchrun (which sets it) "
                f"or set MASTER_ADDR / MASTER_PORT yourself"
            )
    dist.init_process_group(
        backend,
        rank=_env_int("RANK"),
        world_size=_env_int("WORLD_SIZE"),
        timeout=timedelta(seconds=timeout),
    )
    _created_group = True
    atexit.register(_destroy_created_group)


def _data_fingerprint(data: Any) -> tuple[Any, ...]:
    """What must be equal in every process for the shards to partition the data."""

    def items(ds: Any) -> int:
        return zlib.crc32("\n".join(map(str, getattr(ds, "items", []))).encode())

    train_ds, valid_ds = getattr(data, "train_ds", None), getattr(data, "valid_ds", None)
    return (
        getattr(data, "seed", None),
        None if train_ds is None else (len(train_ds), items(train_ds)),
        None if valid_ds is None else (len(valid_ds), items(valid_ds)),
    )


def _check_same_data(data: Any) -> None:
    mine = _data_fingerprint(data)
    everyone: list[Any] = [None] * world_size()
    dist.all_gather_object(everyone, mine)
    for r, theirs in enumerate(everyone):
        if theirs != mine:
            raise ValueError(
                f"data differs between processes (rank {rank()}: seed, (train items, hash), "
                f"(valid items, hash) = {mine}; rank {r}: {theirs}). Build the data with the "
                f"same items and an explicit seed=... in every process, so they split and "
                f"shuffle alike"
            )


def _pin_to_gpu(learn: Learner) -> list[int]:
    """Make GPU LOCAL_RANK (else the rank) current and move data, model and optimizer there.
    Returns DDP's device_ids: [that GPU]."""
    device = torch.device(learn.data.device)
    local = _env_int("LOCAL_RANK") if os.environ.get("LOCAL_RANK") else rank()
    torch.cuda.set_device(local)
    target = torch.device("cuda", local)
    if device != target:
        move = getattr(learn.data, "to", None)
        if move is None:
            raise TypeError(
                f"data should have .to(device) to move to this process's GPU {target}, got "
                f"{type(learn.data).__name__} on {device}"
            )
        move(target)
        opt_state = learn.opt.state_dict()
        learn.model.to(target)
        learn.opt = learn._create_opt()  # its device tensors live on the old GPU
        learn.opt.load_state_dict(opt_state)
    return [local]


def _shard_loaders(learn: Learner, r: int, w: int) -> None:
    for name in ("train_dl", "valid_dl"):
        dl = getattr(learn.data, name, None)
        if dl is None:
            continue
        if not hasattr(dl, "set_shard"):
            raise TypeError(
                f"data.{name} should be a loader with set_shard(rank, world_size) "
                f"(fastcore_ext.data's DeviceDataLoader) to train on several processes, got "
                f"{type(dl).__name__}"
            )
        dl.set_shard(r, w)


def enter(learn: Learner, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Put `learn` in distributed mode (see the module doc); what `Learner.distrib` does.
    Returns True when it did, False when there is nothing to do: already in distributed
    mode, or a single process (no process group and not launched by torchrun)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout should be a number of seconds > 0, got {timeout!r}")
    if learn.distributed is not None:
        return False
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    cuda = torch.device(learn.data.device).type == "cuda"
    created = not dist.is_initialized()
    if created:
        if not launched_by_torchrun():
            return False
        if cuda:  # before NCCL starts, so that it uses this process's GPU
            torch.cuda.set_device(_env_int("LOCAL_RANK"))
        _init_group("nccl" if cuda else "gloo", float(timeout))
    if world_size() == 1:
        return False
    device_ids = _pin_to_gpu(learn) if cuda else None
    _check_same_data(learn.data)
    _shard_loaders(learn, rank(), world_size())
    trainer = DistributedTrainer(device_ids, created)
    learn.add_cb(trainer)
    learn.distributed = trainer
    return True


def exit_distrib(learn: Learner) -> None:
    """Leave distributed mode: the loaders yield the whole data set again, the callback goes,
    and the process group is destroyed if entering this learner's mode created it."""
    trainer = learn.distributed
    if trainer is None:
        return
    learn.remove_cb(trainer)
    learn.distributed = None
    learn.ddp_model = None
    _shard_loaders(learn, 0, 1)
    if trainer.created_group:
        _destroy_created_group()


# ---- launching -------------------------------------------------------------------------------
def launch_command(nproc: int, argv: Sequence[str], module: str = "fastcore_ext") -> list[str]:
    """The command `launch` runs: this Python's torchrun, standalone (one machine),
    `nproc` processes, each running `python -m <module> <argv...>`."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc should be an int >= 1 (processes on this machine), got {nproc!r}")
    if isinstance(argv, str) or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"argv should be a list of str (command line arguments), got {argv!r}")
    if not isinstance(module, str) or not module:
        raise TypeError(f"module should be a module name (str), got {module!r}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        module,
        *argv,
    ]


def launch(
    nproc: int, argv: list[str], module: str = "fastcore_ext", timeout: float | None = None
) -> int:
    """Run `python -m <module> <argv>` in `nproc` processes on this machine under torchrun
    (``torchrun --standalone --nproc-per-node N -m fastcore_ext train ...`` for
    argv = ['train', ...]) and wait. Returns torchrun's exit code: 0 when every process
    succeeded; non-zero when one failed (torchrun then stops the others).

    timeout: seconds to wait (None: as long as it runs). Past it, torchrun and its workers
    (started in a session of their own) get SIGTERM, then SIGKILL after 10 s, and
    TimeoutError is raised."""
    cmd = launch_command(nproc, argv, module)
    if timeout is None:
        return subprocess.run(cmd, check=False).returncode
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout should be a number of seconds > 0 or None, got {timeout!r}")
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_session(proc)
        raise TimeoutError(
            f"launch: {' '.join(cmd)} still ran after timeout={timeout} s; stopped it"
        ) from None
    except BaseException:
        _stop_session(proc)
        raise


def _stop_session(proc: subprocess.Popen) -> None:
    """SIGTERM to every process of `proc`'s session, SIGKILL to what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
