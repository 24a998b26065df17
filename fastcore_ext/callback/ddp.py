"""The DDP callback and entering / leaving distributed mode (`Learner.distrib`,
`Learner.distrib_ctx`, and a Learner created under torchrun).

`enter(learn)` initializes the process group from torchrun's environment when none exists
(NCCL for CUDA data, else gloo, with a timeout), pins the process to GPU LOCAL_RANK, checks
that every process holds the same data, shards the loaders and attaches
`DistributedTrainer`, which wraps the model in DistributedDataParallel for the training
forward passes of each fit. `exit_distrib(learn)` undoes it. The whole story (what is
averaged, gathered, broadcast, and who writes files) is fastcore_ext.distributed's docstring.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import zlib
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fastcore_ext.callback.core import Callback
from fastcore_ext.checks import real_or_none
from fastcore_ext.ranks import env_int, launched_by_torchrun, rank, world_size

if TYPE_CHECKING:
    from fastcore_ext.learner import Learner

__all__ = ["DEFAULT_TIMEOUT", "DistributedTrainer", "enter", "exit_distrib", "distrib_ctx"]

DEFAULT_TIMEOUT = 1800.0  # seconds a collective may wait for the other processes
_created_group = False  # this module initialized the default process group


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
        rank=env_int("RANK"),
        world_size=env_int("WORLD_SIZE"),
        timeout=timedelta(seconds=timeout),
    )
    _created_group = True
    atexit.register(_destroy_created_group)


def _data_fingerprint(data: Any) -> tuple[Any, ...]:
    """What must be equal in every process for the shards to partition the data."""

    def items(ds: Any) -> int:
        return zlib.crc32("\n".join(map(str, getattr(ds, "items", []))).encode())

    train_ds, valid_ds = getattr(data, "train_ds", None), getattr(data, "valid_ds", None)
    classes = getattr(data, "classes", None)
    return (
        getattr(data, "seed", None),
        None if train_ds is None else (len(train_ds), items(train_ds)),
        None if valid_ds is None else (len(valid_ds), items(valid_ds)),
        None if classes is None else [str(c) for c in classes],
    )


def _data_difference(mine: tuple[Any, ...], theirs: tuple[Any, ...], r: int) -> str:
    """What differs between this process's `_data_fingerprint` and rank r's, in words."""
    (seed, train, valid, classes), (seed_r, train_r, valid_r, classes_r) = mine, theirs
    if (classes is None) != (classes_r is None):
        return (
            f"the data of rank {rank() if classes is None else r} has no classes: every "
            "process must build the same kind of data"
        )
    if classes != classes_r:
        only_here = sorted(set(classes) - set(classes_r))
        only_there = sorted(set(classes_r) - set(classes))
        return (
            f"the classes differ: rank {rank()} has {len(classes)}, rank {r} {len(classes_r)}"
            + (f"; only rank {rank()} has {only_here}" if only_here else "")
            + (f"; only rank {r} has {only_there}" if only_there else "")
            + ("" if only_here or only_there else ", the same names in another order")
            + ". Every process must read the same data folder"
        )
    if seed != seed_r:
        return (
            f"the split seeds differ (rank {rank()}: {seed}, rank {r}: {seed_r}). Build the data "
            "with an explicit seed=... in every process, so they split and shuffle alike"
        )
    here, there = _sizes(train, valid), _sizes(train_r, valid_r)
    what = "different numbers of files" if here != there else "other files or another order of them"
    return (
        f"the processes read {what} (train/valid items: rank {rank()} {here}, rank {r} "
        f"{there}). Every process must read the same data folder, with the same split"
    )


def _sizes(train: tuple[int, int] | None, valid: tuple[int, int] | None) -> str:
    return f"{train[0] if train else 0}/{valid[0] if valid else 0}"


def _check_same_data(data: Any) -> None:
    mine = _data_fingerprint(data)
    everyone: list[Any] = [None] * world_size()
    dist.all_gather_object(everyone, mine)
    for r, theirs in enumerate(everyone):
        if theirs != mine:
            raise ValueError(f"data differs between processes: {_data_difference(mine, theirs, r)}")


def _pin_to_gpu(learn: Learner) -> list[int]:
    """Make GPU LOCAL_RANK (else the rank) current and move data, model and optimizer there.
    Returns DDP's device_ids: [that GPU]."""
    device = torch.device(learn.data.device)
    local = env_int("LOCAL_RANK") if os.environ.get("LOCAL_RANK") else rank()
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
    seconds = real_or_none(timeout)
    if seconds is None or not seconds > 0:
        raise ValueError(f"timeout should be a number of seconds > 0, got {timeout!r}")
    timeout = seconds
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
            torch.cuda.set_device(env_int("LOCAL_RANK"))
        _init_group("nccl" if cuda else "gloo", float(timeout))
    if world_size() == 1:
        return False
    device_ids = _pin_to_gpu(learn) if cuda else None
    _check_same_data(learn.data)
    with torch.no_grad():  # rank 0's weights everywhere from the start, not at the first fit:
        for t in [*learn.model.parameters(), *learn.model.buffers()]:  # validate() before it
            dist.broadcast(t, src=0)  # mixed the processes' own random inits
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


@contextlib.contextmanager
def distrib_ctx(learn: Learner, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Learner]:
    """What `Learner.distrib_ctx` returns: `enter` on entering, and on leaving `exit_distrib`
    when entering did put the learner in distributed mode."""
    entered = enter(learn, timeout)
    try:
        yield learn
    finally:
        if entered:
            exit_distrib(learn)
