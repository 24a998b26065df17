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
``python -m fastcore_ext.launch --standalone --nproc-per-node N -m fastcore_ext <argv>``
(the same as ``torchrun --standalone --nproc-per-node N -m fastcore_ext train ...``, but
one line instead of torchrun's traceback on a Ctrl-C). On
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

Where it lives: this module is the public face and re-exports; the rank helpers and
collectives are in fastcore_ext.ranks (imports torch only, so every layer may use them), the
callback and enter / exit_distrib in fastcore_ext.callback.ddp, the launcher in
fastcore_ext.launch (beside the command line). The library's own modules import from those,
never from here.
"""

from __future__ import annotations

from fastcore_ext.callback.ddp import DEFAULT_TIMEOUT, DistributedTrainer, enter, exit_distrib
from fastcore_ext.launch import launch, launch_command
from fastcore_ext.ranks import (
    all_gather_cat,
    barrier,
    is_distributed,
    is_main_process,
    launch_rank,
    launched_by_torchrun,
    rank,
    reduce_validation,
    world_size,
)

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
    "launch_rank",
    "launched_by_torchrun",
    "rank",
    "reduce_validation",
    "world_size",
]
