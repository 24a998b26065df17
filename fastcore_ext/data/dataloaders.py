"""fastai v2's ``DataLoaders(train_dl, valid_dl)``: PyTorch DataLoaders (or any loaders of
(x, y) batches) as a learner's data.

    from torch.utils.data import DataLoader, TensorDataset
    dls = DataLoaders(DataLoader(train_ds, batch_size=64, shuffle=True),
                      DataLoader(valid_ds, batch_size=128))
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy)
    learn.fit_one_cycle(3, 1e-3)
    dls = DataLoaders.from_dsets(train_ds, valid_ds, bs=64)   # the same, built for you

What the learner needs around loaders it did not build (`TorchLoader`): each batch moved to
the data's device; the epoch passed on to a sampler that takes one (a DistributedSampler's
``set_epoch``); and, under torchrun, a torch DataLoader sharded over the processes
(`TorchLoader.set_shard`: the training set through a DistributedSampler, shuffled alike in
every process when the loader shuffles; the validation set in contiguous blocks, every item
once, as this library's own loaders). The batches are used as the loaders give them: this
library's augmentation and normalization are not applied, `predict` of a file and `export`
need the image pipeline of ImageDataBunch (a ValueError says so), and `c` / `classes` come
from the training dataset's `classes` when it has them (torchvision's ImageFolder does).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from fastcore_ext.checks import check_positive_int

from .bunch import LoaderPair, _resolve_device
from .paths import DataPath

__all__ = ["DataLoaders", "TorchLoader"]


class _BlockSampler(Sampler[int]):
    """Process `rank`'s contiguous block [rank * n // w, (rank + 1) * n // w) of n items, in
    order: every item is in exactly one process's block (validation, get_preds)."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.start, self.stop = rank * n // world_size, (rank + 1) * n // world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def _batch_pair(batch: Any) -> tuple[torch.Tensor, Any]:
    """(x, y) of a loader's batch: a pair (a tuple or a list, as a DataLoader collates a
    TensorDataset's items), x a tensor; y a tensor or None (unlabelled)."""
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        raise TypeError(
            f"a loader of DataLoaders should yield (x, y) batches, got "
            f"{type(batch).__name__}{f' of {len(batch)}' if isinstance(batch, Sequence) else ''}"
        )
    x, y = batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"a batch's x should be a Tensor, got {type(x).__name__}")
    return x, y


def _default_sampled(dl: Any) -> bool:
    """Whether `dl` is a torch DataLoader with a batch_size and its default sampler (shuffle
    True or False), which this module may rebuild with another sampler or order."""
    return (
        isinstance(dl, DataLoader)
        and dl.batch_size is not None
        and isinstance(dl.sampler, RandomSampler | torch.utils.data.SequentialSampler)
    )


def _rebuilt(dl: DataLoader, **order: Any) -> DataLoader:
    """A DataLoader of `dl`'s dataset, batch size, workers and collate_fn, whose order
    (shuffle or sampler) and drop_last are `order`'s."""
    return DataLoader(
        dl.dataset, batch_size=dl.batch_size, num_workers=dl.num_workers,
        collate_fn=dl.collate_fn, pin_memory=dl.pin_memory, worker_init_fn=dl.worker_init_fn,
        persistent_workers=dl.persistent_workers, **order,
    )  # fmt: skip


class TorchLoader:
    """A loader of (x, y) batches (a torch DataLoader, or any iterable with a length) whose
    batches come on `device`. ``set_epoch(e)`` passes e on to the sampler when it takes one;
    ``set_shard(rank, world_size)`` splits a torch DataLoader over the processes of a
    distributed run (see the module doc). `loader` is the one given; the attributes this
    class does not have are the given loader's (``dls.valid.batch_size``, ``.sampler``,
    ``.num_workers``, ``.collate_fn`` of a torch DataLoader), as fastai's ``dls.valid`` is
    the loader itself."""

    def __init__(self, loader: Iterable[Any], device: torch.device) -> None:
        if not isinstance(loader, Iterable) or isinstance(loader, str | bytes):
            raise TypeError(
                f"loader: expected a torch DataLoader (or an iterable of (x, y) batches), got "
                f"{type(loader).__name__}"
            )
        if not hasattr(loader, "__len__"):
            raise TypeError(
                f"loader: expected a loader with a length (the batches of an epoch, for the "
                f"schedule and the progress bar), got {type(loader).__name__} without __len__"
            )
        self.loader, self.device = loader, device
        self._sharded: Iterable[Any] = loader
        self.rank, self.world_size = 0, 1

    def __getattr__(self, name: str) -> Any:
        """The given loader's attribute `name` (called only for names this class lacks)."""
        if name.startswith("__") or name in ("loader", "_sharded"):  # copy, pickle, __init__
            raise AttributeError(name)
        try:
            return getattr(self.loader, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} (of a {type(self.loader).__name__}) has no attribute "
                f"{name!r}"
            ) from None

    @property
    def dataset(self) -> Any:
        """The loader's dataset (None when it has none)."""
        return getattr(self.loader, "dataset", None)

    @property
    def bs(self) -> int | None:
        """The loader's batch size (None when it does not tell)."""
        return getattr(self.loader, "batch_size", None)

    @property
    def shuffles(self) -> bool:
        """Whether the loader draws a new order each pass (a DataLoader with shuffle=True)."""
        return isinstance(getattr(self.loader, "sampler", None), RandomSampler)

    def __len__(self) -> int:
        return len(self._sharded)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any]]:
        for batch in self._sharded:
            x, y = _batch_pair(batch)
            if isinstance(y, torch.Tensor):
                y = y.to(self.device, non_blocking=True)
            yield x.to(self.device, non_blocking=True), y

    def one_batch(self) -> tuple[torch.Tensor, Any]:
        """The first batch of a pass, on the device."""
        for batch in self:
            return batch
        raise ValueError(f"the loader yielded no batch ({type(self.loader).__name__})")

    def set_epoch(self, epoch: int) -> None:
        """Pass `epoch` on to the sampler when it takes one (a DistributedSampler shuffles by
        it); other samplers draw from torch's global generator at each pass."""
        set_epoch = getattr(getattr(self._sharded, "sampler", None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def in_order(self) -> TorchLoader | None:
        """A loader of the same dataset in order, every item once (shuffle and drop_last
        off; the same batch size, collate_fn and workers): get_preds(ds_idx=0)'s. None when
        the loader is not a torch DataLoader with a batch_size and its default sampler."""
        dl = self.loader
        if not _default_sampled(dl):
            return None
        out = TorchLoader(_rebuilt(dl, shuffle=False, drop_last=False), self.device)
        if self.world_size > 1:
            out.set_shard(self.rank, self.world_size)
        return out

    def set_shard(self, rank: int, world_size: int) -> None:
        """Yield only process `rank`'s share of the data from now on: a shuffling torch
        DataLoader's items through a DistributedSampler (seed 0 and the epoch: the same
        permutation in every process, each taking its own part), an unshuffled one's in
        contiguous blocks; (0, 1): the loader as given. TypeError for a loader that is not a
        torch DataLoader with the default sampler (this one cannot be split)."""
        if world_size == 1:
            self._sharded, self.rank, self.world_size = self.loader, 0, 1
            return
        dl = self.loader
        if not _default_sampled(dl):
            raise TypeError(
                f"to train on {world_size} processes a loader of DataLoaders is split between "
                f"them, which needs a torch DataLoader with batch_size and shuffle=True or "
                f"False (its default sampler), got {type(dl).__name__}"
                + ("" if not isinstance(dl, DataLoader) else " with a sampler of its own")
            )
        shuffle = isinstance(dl.sampler, RandomSampler)
        sampler: Sampler[int] = (
            DistributedSampler(
                dl.dataset,
                num_replicas=world_size,
                rank=rank,
                shuffle=True,
                drop_last=dl.drop_last,
            )  # fmt: skip
            if shuffle
            else _BlockSampler(len(dl.dataset), rank, world_size)
        )
        self._sharded = _rebuilt(dl, sampler=sampler, drop_last=dl.drop_last)
        self.rank, self.world_size = rank, world_size

    def __repr__(self) -> str:
        return f"TorchLoader({self.loader!r}, {len(self)} batches, device {self.device})"


class DataLoaders(LoaderPair):
    """fastai v2's ``DataLoaders(train_dl, valid_dl, path='.', device=None)``: two loaders of
    (x, y) batches, torch DataLoaders usually, as a learner's data (see the module doc).
    fastai v2's defaults apply where v1's differ (`fastai_version` 2: a plain
    ``learn.lr_find()`` draws its curve and returns SuggestedLRs(valley)).

    Attributes: train_dl / valid_dl (`TorchLoader`s; also ``dls.train`` / ``dls.valid`` and
    ``dls[0]`` / ``dls[1]``), train_ds / valid_ds (their datasets), device (default: CUDA when
    there is a GPU, else the CPU), path (where the learner saves), classes / vocab and c (the
    training dataset's ``classes``, e.g. an ImageFolder's; None when it has none)."""

    fastai_version = 2

    def __init__(
        self,
        *loaders: Iterable[Any],
        path: str | os.PathLike = ".",
        device: torch.device | str | None = None,
    ) -> None:
        if len(loaders) != 2:
            raise TypeError(
                f"DataLoaders(train_dl, valid_dl): expected the training and the validation "
                f"loader, got {len(loaders)} loader(s)"
            )
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path: expected a folder (str or Path), got {path!r}")
        self.path = DataPath(path)  # with fastai's ls(): dls.path.ls()
        self.device = _resolve_device(device)
        self.train_dl, self.valid_dl = (TorchLoader(dl, self.device) for dl in loaders)

    @classmethod
    def from_dsets(
        cls,
        *datasets: Any,
        bs: int = 64,
        val_bs: int | None = None,
        shuffle: bool = True,
        num_workers: int = 0,
        path: str | os.PathLike = ".",
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> DataLoaders:
        """fastai v2's ``DataLoaders.from_dsets(train_ds, valid_ds, bs=64)``: torch DataLoaders
        of two datasets of (x, y) items; the training one shuffled (`shuffle`) and without its
        last partial batch (fastai's drop_last on the training loader), the validation one in
        order with batches of `val_bs` (default `bs`). `kwargs` go to both DataLoaders
        (collate_fn, pin_memory, ...); num_workers: torch's default 0 (fastai's: its CPU
        count)."""
        if len(datasets) != 2:
            raise TypeError(
                f"DataLoaders.from_dsets(train_ds, valid_ds): expected the training and the "
                f"validation dataset, got {len(datasets)}"
            )
        bs = check_positive_int("bs", bs)
        val_bs = bs if val_bs is None else check_positive_int("val_bs", val_bs)
        train_ds, valid_ds = datasets
        train = DataLoader(train_ds, batch_size=bs, shuffle=bool(shuffle), drop_last=True,
                           num_workers=num_workers, **kwargs)  # fmt: skip
        valid = DataLoader(valid_ds, batch_size=val_bs, shuffle=False, num_workers=num_workers,
                           **kwargs)  # fmt: skip
        return cls(train, valid, path=path, device=device)

    @property
    def train_ds(self) -> Any:
        """The training loader's dataset."""
        return self.train_dl.dataset

    @property
    def valid_ds(self) -> Any:
        """The validation loader's dataset."""
        return self.valid_dl.dataset

    @property
    def classes(self) -> list[str] | None:
        """The training dataset's class names (its ``classes``), or None."""
        classes = getattr(self.train_ds, "classes", None)
        return None if classes is None else [str(c) for c in classes]

    @property
    def vocab(self) -> list[str] | None:
        """fastai v2's name for `classes`."""
        return self.classes

    @property
    def c(self) -> int | None:
        """The number of classes when the training dataset names them, else None."""
        return None if self.classes is None else len(self.classes)

    def one_batch(self) -> tuple[torch.Tensor, Any]:
        """The first training batch of a pass, on the device."""
        return self.train_dl.one_batch()

    def to(self, device: torch.device | str) -> DataLoaders:
        """Batches go to `device` from now on. Returns self."""
        self.device = _resolve_device(device)
        self.train_dl.device = self.valid_dl.device = self.device
        return self

    def cpu(self) -> DataLoaders:
        """``to('cpu')``."""
        return self.to("cpu")

    def cuda(self) -> DataLoaders:
        """``to('cuda')`` (a ValueError without a GPU)."""
        return self.to("cuda")

    def __repr__(self) -> str:
        return (
            f"DataLoaders(train {len(self.train_dl)} batches, valid {len(self.valid_dl)} "
            f"batches; device {self.device}; path {self.path})"
        )
