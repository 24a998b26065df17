"""A small in-memory bunch (the bunch interface of fastcore_ext.data: train_dl/valid_dl
yielding (x float, y int64) on `device`, len(), set_epoch(e) seeding the shuffle) and a tiny
model, for Learner tests that need no image files; the optimizer tests' params
(`make_params`, `clone_params`), a tiny torchvision-like builder (`tiny_arch`), the InfGrads
callback (an fp16 overflow); and the helpers of the tests that run several processes (gloo
on 127.0.0.1): `free_port`, `torchrun_env`, `run_ranks`."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import socket
import tempfile
import time

import torch
from torch import nn

from fastcore_ext.callback import Callback
from fastcore_ext.learner import Learner


class FakeDL:
    """Batches of in-memory (x, y); training: shuffled from (seed, epoch), drop_last."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int, train: bool, seed: int = 0):
        self.x, self.y, self.bs, self.train, self.seed = x, y, bs, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.bs if self.train else -(-n // self.bs)

    def __iter__(self):
        n = len(self.x)
        if self.train:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.bs : (i + 1) * self.bs]
            yield self.x[idx], self.y[idx]


class FakeBunch:
    """The bunch interface over tensors: x float [N, 3, S, S], y int64 [N]."""

    def __init__(self, x_train, y_train, x_valid, y_valid, bs=16, n_classes=2, device="cpu"):
        device = torch.device(device)
        self.device = device
        self.train_dl = FakeDL(x_train.to(device), y_train.to(device), bs, train=True)
        self.valid_dl = FakeDL(x_valid.to(device), y_valid.to(device), bs, train=False)
        self.classes = [f"class{i}" for i in range(n_classes)]
        self.c = n_classes
        self.size = x_train.shape[-1]
        self.stats = None
        # conftest points FASTCORE_EXT_HOME at a temporary folder: plots never land in the repo
        self.path = os.environ.get("FASTCORE_EXT_HOME", tempfile.gettempdir())


N_BATCHES = 8  # training batches of the easy bunch: 128 items, bs 16


def scripted(name: str, values: list[float]):
    """A metric named `name` returning values[e] at the end of epoch e."""
    it = iter(values)

    def metric(preds, targs):
        return next(it)

    metric.__name__ = name
    return metric


def easy_bunch(n_train=128, n_valid=40, size=8, bs=16, seed=0, device="cpu") -> FakeBunch:
    """Two classes told apart by the mean of channel 0 (+1 or -1, plus unit noise). With
    n_valid=40 and bs=16 the validation batches hold 16, 16 and 8 items."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_valid
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 3, size, size, generator=g)
    x[:, 0] += (2 * y.float() - 1)[:, None, None]
    return FakeBunch(x[:n_train], y[:n_train], x[n_train:], y[n_train:], bs=bs, device=device)


def tiny_model() -> nn.Sequential:
    """conv -> BN -> ReLU | pool -> flatten -> dropout -> linear; split [:3], [3:]."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(8, 2),
    )


def two_groups(m: nn.Module) -> list[nn.Module]:
    return [m[:3], m[3:]]


def make_learner(**kwargs):
    """A Learner on the easy bunch and the tiny model, in fp32 unless `precision` is given,
    its progress output captured."""
    torch.manual_seed(kwargs.pop("model_seed", 0))
    data = kwargs.pop("data", None) or easy_bunch()
    model = kwargs.pop("model", None) or tiny_model()
    kwargs.setdefault("splitter", two_groups)
    kwargs.setdefault("precision", "fp32")  # the same on every CPU ("auto" picks bf16 on some)
    learn = Learner(data, model, **kwargs)
    learn.progress.stream = io.StringIO()
    return learn


def make_params(shapes, device, seed=0, dtype=torch.float32) -> list[list[torch.Tensor]]:
    """Random leaf params, one list per group of `shapes` (a list of shape lists)."""
    g = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(s, generator=g).to(device, dtype).requires_grad_() for s in group]
        for group in shapes
    ]


def clone_params(groups: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    return [[p.detach().clone().requires_grad_() for p in ps] for ps in groups]


def tiny_arch(weights=None) -> nn.Module:
    """A torchvision-like builder small enough for tests (create_cnn cuts it at the pool)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


class InfGrads(Callback):
    """Puts an inf into one gradient at the given training batches (as an fp16 overflow
    would), and keeps a copy of the parameters before every step."""

    order = 100

    def __init__(self, at: set[int]):
        super().__init__()
        self.at = at
        self.params: list[list[torch.Tensor]] = []

    def after_backward(self):
        if self.learn.train_iter in self.at:
            next(self.learn.model.parameters()).grad.view(-1)[0] = float("inf")

    def before_step(self):
        self.params.append([p.detach().clone() for p in self.learn.model.parameters()])


def same_params(before: list[torch.Tensor], model: nn.Module) -> bool:
    """True when the model's parameters equal the saved copies bit for bit."""
    params = list(model.parameters())
    if len(before) != len(params):
        return False
    return all(torch.equal(a, p) for a, p in zip(before, params, strict=True))


def break_images(files: list) -> list:
    """Damage three image files in place, the ways a user's photo folder has them: the first
    truncated to a third, the second emptied (zero bytes), the third replaced by text under
    its image name. Returns the three paths."""
    truncated, empty, text = files[:3]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    empty.write_bytes(b"")
    text.write_text("this is not an image\n")
    return [truncated, empty, text]


def weight_bound_model() -> torch.nn.Sequential:
    """A 3x3 conv (8 -> 64 channels) on 2x2 maps: 4,608 weights against 512 input elements
    in a batch of 16, as a resnet's layer4 on 64 px images; the first conv is not."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Conv2d(8, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(256, 2),
    )


# ---- several processes -----------------------------------------------------------------------
WORLD = 2  # processes of the multi-process tests
JOIN_TIMEOUT = 90.0  # seconds for a whole group of processes (about 25 s on a busy 2-core CPU)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for MASTER_PORT / init_method)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, port: int, world: int = WORLD) -> None:
    """What torchrun sets for a worker."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )


def run_ranks(target, args_of_rank, timeout: float = JOIN_TIMEOUT, world: int = WORLD) -> list[int]:
    """Start one spawned process per rank, wait for all (killing them past `timeout`), return
    their exit codes."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=args_of_rank(r)) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:
        hung = [p for p in procs if p.is_alive()]
        for p in hung:
            p.kill()
            p.join()
    assert not hung, f"{len(hung)} process(es) still ran after {timeout} s"
    return [p.exitcode for p in procs]
