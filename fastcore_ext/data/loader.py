"""Datasets of presized images and the loader that turns them into device batches.

One batch travels like this::

    indices + window draws (from (seed, epoch))  main process
      -> decode, presize whole, cut the windows  uint8 [B, P, P, 3]: a square of side P from
         in DataLoader workers                   each image; or cut from the memory-mapped
                                                 cache of whole images once it is complete
         (with a GPU `decoder`: the workers read the files and decode only what is not
         JPEG; the JPEGs are decoded, presized and cut on the GPU here, device_decode.py)
      -> pinned host memory -> device (non_blocking)
      -> permute to uint8 [B, 3, P, P] (channels_last strides)
      -> augment.augment_batch on the device:    float [B, 3, S, S], normalized

`uint8_batches(epoch)` yields the batches before the last step, so everything up to the
device-side kernel can be used and tested on its own.

Presize windows: images are presized whole (`images.presize_whole`: short side P, aspect
kept; method 'squish' gives P x P; 'pad' long side P, the short side padded on both sides),
and a batch takes a square window of side P from each. A training loader (train=True) takes
it at a random position along the long (or padded) side, fresh each epoch, as fastai's
training crop (v2 ``Resize``, v1 ``rand_crop``) and random pad place; every other pass
(validation, `ImageDataset[i]`, get_preds, predict) takes the centre. A square image gives its
whole self either way.

Reproducibility: the shuffle of epoch e comes from a generator seeded with (seed, e); the
window of item i in epoch e from ``u[i]`` of a float64 array drawn over every item from a
second stream of (seed, e), in the main process (so it does not depend on the order, the
batch, the shard or the cache); the augmentation parameters come from
`augment.epoch_generator(seed, e)`, drawn batch after batch in the main process. Workers only
decode and cut the windows they are given (deterministic), so 0 and N workers, cached and
uncached, give identical batches, and nothing here draws from torch's global RNG.

Unreadable images (truncated, empty, not an image) met during a pass are skipped: the batch
goes on without them (a batch that loses every item is skipped, and so is a training batch
left with a single image: BatchNorm in training mode fails on a batch of one, so a training
loader also needs bs >= 2), and at the end of the pass
one warning names those this loader had not named before (so each file once, not once per
epoch: an lr_find on a small set runs dozens of passes). `bad_items` lists every one met so far;
the cache remembers them, so a cached epoch skips and names them too. The shuffled order is
still drawn over every item, so which items share a batch does not depend on which are bad.
`skip_bad=True` of the bunch drops them before any pass instead. An item whose bytes in a
complete cache fail their checksum (`DecodedCache.verify`, on its first read) is decoded from
its file, as an uncached pass would, so the batches stay those of the files. Under several
processes a batch that would be skipped is an error (one process cannot skip a batch the others
run).

Distributed training (`fastcore_ext.distributed`): `set_shard(rank, world_size)` makes a
loader yield one process's part of every pass. Every process draws the same order from
(seed, epoch), then takes its contiguous block of it: a training loader gives
each process n // world_size items (the rest of the shuffled order is dropped, so every
process runs the same number of batches), any other loader gives block r the items
[r * n // world_size, (r + 1) * n // world_size): every item exactly once, blocks in rank
order, no padding. Process r > 0 draws its augmentation from its own stream.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, Dataset, Sampler

from fastcore_ext.augment import augment_batch, epoch_generator
from fastcore_ext.checks import check_bool, check_int, check_positive_int
from fastcore_ext.plots import check_ctxs, finish, grid_cells, image_grid
from fastcore_ext.warn import warn_user

from . import images
from .cache import DecodedCache
from .device_decode import EncodedBatch, JpegBatchDecoder, read_batch
from .images import BadImageError, DecodedBatch, decoded_batch, load_whole
from .items import shown_names
from .tensors import TensorCategory, TensorImage, category_item

__all__ = [
    "DecodedBatch",
    "DeviceDataLoader",
    "ImageDataset",
    "decode_batch",
    "decode_readable",
    "default_num_workers",
    "keep_workers",
]

_SHUFFLE_STREAM = 0x5_4FF1E
_RANK_STREAM = 0x4A_2C5
_WINDOW_STREAM = 0x3_C40B
_PEEK_STREAM = 0x7_0EE4 << 20  # + k: the augmentation of a training loader's k-th one_batch


def default_num_workers() -> int:
    """Decoding workers used when `num_workers=None`: one per CPU core this process may use,
    at most 8. (On the 2-core development machine 2 workers decoded fastest; see
    bench/README.md.)"""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _decode(
    items: Sequence[Path], idx: Sequence[int], size: int, method: str, skip_bad: bool
) -> tuple[list[torch.Tensor], list[int], list[int]]:
    """(whole presized images ``uint8 [h, w, 3]`` of the readable items, their indices, the
    indices skipped); skip_bad=False raises BadImageError instead of skipping."""
    images, kept, bad = [], [], []
    for i in idx:
        try:
            img = load_whole(items[i], size, method)
        except BadImageError:
            if not skip_bad:
                raise
            bad.append(i)
            continue
        images.append(img.permute(1, 2, 0))
        kept.append(i)
    return images, kept, bad


def decode_batch(
    items: Sequence[Path], idx: Sequence[int], size: int, method: str, u: np.ndarray | None = None
) -> torch.Tensor:
    """Decode and presize `items[i]` for i in `idx` -> their windows ``uint8 Tensor[B, size,
    size, 3]``: centred for u None, else from u (float [B] in [0, 1), see
    `images.window_origins`). Raises BadImageError naming an unreadable file."""
    images, kept, _ = _decode(items, idx, size, method, skip_bad=False)
    return decoded_batch(images, kept, [], size, u).x


def decode_readable(
    items: Sequence[Path],
    idx: Sequence[int],
    size: int,
    method: str,
    u: np.ndarray | None = None,
    whole: bool = False,
) -> DecodedBatch:
    """Like `decode_batch`, skipping the files that cannot be decoded (u: float [B] over all
    of `idx`, or None); whole=True also packs the whole presized images (see `DecodedBatch`)."""
    check_bool("whole", whole)
    images, kept, bad = _decode(items, idx, size, method, skip_bad=True)
    if u is not None:
        skipped = set(bad)
        u = np.asarray(u, dtype=np.float64)[[i not in skipped for i in idx]]
    return decoded_batch(images, kept, bad, size, u, whole)


def item_index(i: object, n: int) -> int:
    """Index `i` of a data set of `n` items as an int in [0, n): TypeError for a non-int
    (a bool included), IndexError outside [-n, n)."""
    if isinstance(i, bool) or not isinstance(i, Integral):
        raise TypeError(f"index: expected an int, got {type(i).__name__} {i!r}")
    if not -n <= i < n:
        raise IndexError(f"index: {i} out of range for {n} items")
    return int(i) % n


class ImageDataset(Dataset):
    """Labelled image files, presized to ``size`` (square) on access.

    ``ds[i] -> (TensorImage, TensorCategory)``: the centre window as a uint8 tensor [3, size,
    size] that shows itself (``img.show()``), and the label's class index as a 0-d int64
    tensor (``classes[label]`` is its name); `items` and `labels` are aligned lists. labels
    None: unlabelled images (a test set: ``ds[i] -> (image, None)``). fastai v1's ``ds.x``
    (the images: ``ds.x[i]``, ``ds.x.items``) and ``ds.y`` (the labels: ``ds.y[i]``,
    ``ds.y.classes``, ``ds.y.items``). With a `cache`, images come from it once it is
    complete.
    """

    def __init__(
        self,
        items: Sequence[Path],
        labels: Sequence[int] | None,
        classes: Sequence[str],
        size: int,
        method: str = "crop",
        cache: DecodedCache | None = None,
    ) -> None:
        if labels is not None and len(items) != len(labels):
            raise ValueError(f"labels: expected {len(items)} labels, got {len(labels)}")
        self.items: list[Path] = list(items)
        self.labels: list[int] | None = None if labels is None else [int(y) for y in labels]
        # a list (a bunch's CategoryMap) is kept as it is: vocab.o2i on the data set too
        self.classes: list[str] = classes if isinstance(classes, list) else list(classes)
        self.size, self.method, self.cache = int(size), method, cache

    @property
    def vocab(self) -> list[str]:
        """The class names (fastai v2's ``dls.train_ds.vocab``): `classes`."""
        return self.classes

    @property
    def c(self) -> int:
        """fastai v2's ``dls.train_ds.c``: the number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[TensorImage, TensorCategory | None]:
        i = item_index(i, len(self.items))
        label = None if self.labels is None else category_item(self.labels[i])
        image = self.load_batch(np.array([i]))[0].permute(2, 0, 1).as_subclass(TensorImage)
        return image, label

    @property
    def x(self) -> DatasetImages:
        """fastai v1's ``ds.x``: the images (``ds.x[i]``, ``ds.x.items``, ``len(ds.x)``)."""
        return DatasetImages(self)

    @property
    def y(self) -> DatasetLabels:
        """fastai v1's ``ds.y``: the labels (``ds.y[i]``, ``ds.y.classes``, ``ds.y.items``:
        the class indices); AttributeError for an unlabelled (test) set."""
        if self.labels is None:
            raise AttributeError("ds.y: this data set is unlabelled (a test set)")
        return DatasetLabels(self)

    def load_batch(
        self, idx: np.ndarray, out: torch.Tensor | None = None, u: np.ndarray | None = None
    ) -> torch.Tensor:
        """Windows of images `idx` -> ``uint8 Tensor[B, P, P, 3]``, centred (u None) or from u
        (float [B] in [0, 1), `images.window_origins`): from the cache when complete (into
        `out` if given; an item whose cached bytes fail their checksum is decoded from its
        file), else decoded here. BadImageError names an unreadable file."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if self.cache is None or not self.cache.complete:
            return decode_batch(self.items, idx.tolist(), self.size, self.method, u)
        if out is None:
            out = torch.empty((len(idx), self.size, self.size, 3), dtype=torch.uint8)

        def decode(ids: list[int], uu: np.ndarray | None) -> tuple[torch.Tensor, list[int]]:
            return decode_batch(self.items, ids, self.size, self.method, uu), []  # or raises

        return self.read_cache(idx, u, out, decode)[0]

    def read_cache(
        self,
        ids: np.ndarray,
        u: np.ndarray | None,
        out: torch.Tensor,
        decode: Callable[[list[int], np.ndarray | None], tuple[torch.Tensor, list[int]]],
    ) -> tuple[torch.Tensor, np.ndarray, list[int]]:
        """From the complete cache: the windows of items `ids` (int64 [B]) placed by `u` (None:
        centred) into `out` (uint8 [B, P, P, 3]); an item whose cached bytes fail their
        checksum (`DecodedCache.verify`) is decoded from its file instead, by
        ``decode(ids, u) -> (the readable ones' windows, in order, the unreadable ids)``.
        Returns (the readable windows, their ids, the ids `decode` could not read)."""
        damaged = self.cache.verify(ids)
        if not damaged.any():
            self.cache.read(ids, u, out=out.numpy())
            return out, ids, []
        ok, dam = np.flatnonzero(~damaged), np.flatnonzero(damaged)
        if len(ok):
            x = self.cache.read(ids[ok], None if u is None else u[ok])
            out[torch.from_numpy(ok)] = torch.from_numpy(x)
        x, bad = decode(ids[dam].tolist(), None if u is None else u[dam])
        decoded = dam[~np.isin(ids[dam], bad)]  # their rows: decode keeps the order
        out[torch.from_numpy(decoded)] = x.cpu()
        readable = ~np.isin(ids, bad)
        return out[torch.from_numpy(readable)], ids[readable], bad

    def __repr__(self) -> str:
        cache = "none" if self.cache is None else "complete" if self.cache.complete else "filling"
        return (
            f"{type(self).__name__}({len(self)} items, {len(self.classes)} classes, "
            f"presize {self.size}, cache {cache})"
        )


class DatasetImages:
    """fastai v1's ``ds.x`` of an `ImageDataset`: ``x[i]`` its i-th image (a TensorImage),
    ``x.items`` the files."""

    def __init__(self, ds: ImageDataset) -> None:
        self.ds = ds

    @property
    def items(self) -> np.ndarray:
        """The image files, as fastai v1's ItemList.items (a numpy array of paths)."""
        out = np.empty(len(self.ds.items), dtype=object)
        out[:] = self.ds.items
        return out

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> TensorImage:
        return self.ds[i][0]

    def __repr__(self) -> str:
        return f"{type(self).__name__} ({len(self)} items, presized to {self.ds.size} px)"


class DatasetLabels:
    """fastai v1's ``ds.y`` of a labelled `ImageDataset`: ``y[i]`` the i-th label (a
    TensorCategory), ``y.classes``, ``y.c``, ``y.items`` (the class indices)."""

    def __init__(self, ds: ImageDataset) -> None:
        self.ds = ds

    @property
    def classes(self) -> list[str]:
        return self.ds.classes

    @property
    def c(self) -> int:
        return len(self.ds.classes)

    @property
    def items(self) -> np.ndarray:
        """The class index of every item (fastai v1's CategoryList.items)."""
        return np.asarray(self.ds.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> TensorCategory:
        return category_item(self.ds.labels[item_index(i, len(self.ds))])

    def __repr__(self) -> str:
        return f"{type(self).__name__} ({len(self)} items, {self.c} classes)"


class _BatchDecoder(Dataset):
    """What DataLoader workers get: the file list only (cheap to pickle, no cache maps).
    whole=True (a cache to fill) also sends back the whole presized images; encoded=True: JPEGs
    are left encoded for a GPU decoder (`read_batch`)."""

    def __init__(
        self,
        items: Sequence[Path],
        size: int,
        method: str,
        whole: bool,
        encoded: bool,
        jpeg_reducing_gap: float | None,
    ) -> None:
        self.items, self.size, self.method = list(items), size, method
        self.whole, self.encoded = whole, encoded
        # a worker started by spawn or forkserver imports images afresh: it decodes JPEGs as
        # this process does for this loader (`DeviceDataLoader._jpeg_gap`)
        self.jpeg_reducing_gap = jpeg_reducing_gap

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(
        self, batch: tuple[torch.Tensor, np.ndarray | None]
    ) -> DecodedBatch | EncodedBatch:
        """Batch (idx, u) -> its `DecodedBatch` (windows, indices decoded, indices of the
        unreadable files skipped, and with whole=True the whole images packed); encoded=True:
        `read_batch`'s EncodedBatch, finished by the GPU decoder in the main process."""
        idx, u = batch
        with images.jpeg_reducing_gap(self.jpeg_reducing_gap):
            if self.encoded:
                return read_batch(self.items, idx.tolist(), self.size, self.method, u)
            return decode_readable(self.items, idx.tolist(), self.size, self.method, u, self.whole)


class _BatchList(Sampler):
    """Yields the (index tensor, window draws or None) of each batch of the current epoch
    (set before each pass)."""

    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, np.ndarray | None]] = []

    def __iter__(self) -> Iterator[tuple[torch.Tensor, np.ndarray | None]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _no_collate(batch):
    return batch


def _stream_seed(seed: int, epoch: int, stream: int) -> int:
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def _release_workers(workers: dict[str, DataLoader]) -> None:
    """When a DeviceDataLoader is garbage collected: drop its DataLoader while every part of
    it is intact, so its iterator stops the workers at once. (Left to the cycle collector,
    the iterator is finalised after parts of it were cleared, and its shutdown waited 5 s
    per worker: 10.3 s measured with 2.)"""
    workers.clear()


def denormalize(
    x: torch.Tensor, stats: tuple[Sequence[float], Sequence[float]] | None
) -> torch.Tensor:
    """Undo the normalization by `stats` (mean, std per channel; None: none): float
    ``[B, 3, H, W]`` -> the same in [0, 1]."""
    if stats is None:
        return x.clamp(0, 1)
    mean = torch.tensor(stats[0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(stats[1], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


class DeviceDataLoader:
    """Batches ``(x, y)`` of one dataset on `device`: x float ``[B, 3, S, S]`` (augmented when
    training with a spec, normalized with `stats`), y int64 ``[B]``.

    train=True: shuffled per epoch (unless shuffle=False), last partial batch dropped (unless
    drop_last=False; None, the default, drops it when the loader shuffles: fastai's
    ``drop_last=shuffle``), a random presize window per item and epoch (see the module doc),
    random augmentation from `spec`; bs >= 2 (BatchNorm in training mode fails on a batch of
    one). train=False: in order, every item, the centre window, deterministic center crop.
    A dataset without labels (`ImageDataset` labels None, a test set) gives y None.
    ``set_epoch(e)`` makes the next pass epoch e; every pass (``iter``) then advances the
    epoch by one, so a caller that never sets it still gets fresh randomness each epoch.
    decoder: a `JpegBatchDecoder` that decodes the JPEG files on its device (a GPU) while
    they are not cached; None: every file is decoded on the CPU, in the workers.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        bs: int,
        *,
        train: bool,
        size: int,
        device: torch.device,
        seed: int,
        spec: object | None = None,
        stats: tuple[Sequence[float], Sequence[float]] | None = None,
        num_workers: int | None = None,
        channels_last: bool = False,
        timeout: float = 120.0,
        decoder: JpegBatchDecoder | None = None,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
    ) -> None:
        bs = check_positive_int("bs", bs)
        check_bool("train", train)
        check_bool("channels_last", channels_last)
        if shuffle is not None:
            check_bool("shuffle", shuffle)
        if drop_last is not None:
            check_bool("drop_last", drop_last)
        shuffle = train if shuffle is None else shuffle
        drop_last = train and shuffle if drop_last is None else drop_last
        if num_workers is None:
            num_workers = default_num_workers()
        if (
            isinstance(num_workers, bool)
            or not isinstance(num_workers, Integral)
            or num_workers < 0
        ):
            raise ValueError(f"num_workers: expected an int >= 0 or None, got {num_workers!r}")
        num_workers = int(num_workers)
        if train and bs < 2:
            raise ValueError(
                f"bs: expected at least 2 images per training batch, got {bs}: BatchNorm in "
                "training mode needs more than one value per channel (torch: 'Expected more "
                "than 1 value per channel when training'; fastai fails the same way); pass "
                "bs >= 2 (val_bs, the validation batch size, may be 1)"
            )
        if drop_last and len(dataset) < bs:
            raise ValueError(
                f"bs: {bs} is larger than the training set ({len(dataset)} items), so an epoch "
                "would have no batch (the last partial batch is dropped); pass a smaller bs"
            )
        self.dataset, self.bs, self.train = dataset, bs, train
        self.shuffle, self.drop_last = shuffle, drop_last
        # a pass that trains: under set_shard every process gets the same number of items
        # (so of batches), and a batch left with one readable image is skipped (BatchNorm);
        # get_preds' in-order copy of a training loader turns it off
        self.training_pass = train
        if train and not drop_last and len(dataset) % bs == 1:
            warn_user(
                f"drop_last=False: the last training batch of every epoch holds one image "
                f"({len(dataset)} items, bs={bs}); a BatchNorm1d in training mode (create_cnn's "
                "head) fails on it ('Expected more than 1 value per channel'); pass "
                "drop_last=True or another bs"
            )
        self.size, self.seed, self.spec, self.stats = int(size), int(seed), spec, stats
        self.num_workers, self.channels_last, self.timeout = num_workers, channels_last, timeout
        self.device = torch.device(device)
        self.decoder = decoder
        labels = dataset.labels
        self._labels = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        self._epoch = 0
        self._peeks = (0, 0)  # (epoch, one_batch calls while it was the next epoch)
        # the torch DataLoader (its workers) in a holder that a finalizer empties when this
        # object is garbage collected (see _release_workers)
        self._workers: dict[str, DataLoader] = {}
        weakref.finalize(self, _release_workers, self._workers)
        self._persistent = False  # workers kept from pass to pass: during a fit (set_persistent)
        self._sampler = _BatchList()
        self.rank, self.world_size = 0, 1
        self._bad: set[int] = set()  # indices of the unreadable files met so far

    def new(
        self, bs: int | None = None, shuffle: bool | None = None, drop_last: bool | None = None
    ) -> DeviceDataLoader:
        """fastai v2's ``dl.new(bs=...)``: a loader of the same data set and transforms with
        another batch size, shuffle and/or drop_last (None: this loader's); it starts at
        epoch 0, on one process (no shard), with workers of its own."""
        return DeviceDataLoader(
            self.dataset, self.bs if bs is None else bs, train=self.train, size=self.size,
            device=self.device, seed=self.seed, spec=self.spec, stats=self.stats,
            num_workers=self.num_workers, channels_last=self.channels_last,
            timeout=self.timeout, decoder=self.decoder,
            shuffle=self.shuffle if shuffle is None else shuffle,
            drop_last=self.drop_last if drop_last is None else drop_last,
        )  # fmt: skip

    @property
    def items(self) -> list[Path]:
        """fastai v2's ``dl.items``: the image files of the data set, in its order (the order
        a loader that is not training yields them; a training loader shuffles them each
        epoch, `batch_indices` gives its order)."""
        return self.dataset.items

    @property
    def n(self) -> int:
        """fastai v2's ``dl.n``: the number of items of the data set."""
        return len(self.dataset)

    @property
    def vocab(self) -> list[str]:
        """fastai v2's ``dls.train.vocab``: the data set's class names."""
        return self.dataset.vocab

    @property
    def c(self) -> int:
        """fastai v2's ``dls.train.c``: the number of classes."""
        return self.dataset.c

    @property
    def bad_items(self) -> list[Path]:
        """The unreadable files met so far (skipped from their batches), in data set order."""
        return [self.dataset.items[i] for i in sorted(self._bad)]

    # -- epochs and order -----------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch the next pass will use."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch `epoch`: its order and augmentation are fixed by
        (seed, epoch). `one_batch` starts again from that epoch's first batch."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: expected an int >= 0, got {epoch!r}")
        self._epoch, self._peeks = epoch, (epoch, 0)

    def set_shard(self, rank: int, world_size: int) -> None:
        """Yield only process `rank`'s block of each pass from now on (see the module doc);
        (0, 1) is the whole data set."""
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size: expected an int >= 1, got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank: expected an int in [0, {world_size}), got {rank!r}")
        each = len(self.dataset) // world_size
        if self.training_pass and (each < self.bs if self.drop_last else each == 0):
            fewer = f", fewer than bs={self.bs} (drop_last)" if each else ""
            raise ValueError(
                f"world_size: {world_size} processes get {each} training items each{fewer}, "
                "so an epoch would have no batch; pass a smaller bs (it is per process) or use "
                "fewer processes"
            )
        self.rank, self.world_size = rank, world_size

    def _block(self) -> tuple[int, int]:
        """[start, stop) of this process's block of a pass's order."""
        n, w, r = len(self.dataset), self.world_size, self.rank
        if self.training_pass:
            return r * (n // w), (r + 1) * (n // w)
        return r * n // w, (r + 1) * n // w

    def __len__(self) -> int:
        start, stop = self._block()
        n = stop - start
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def batch_indices(self, epoch: int | None = None) -> list[torch.Tensor]:
        """Index tensors (int64 [B]) of every batch of `epoch` (default: the next one), of
        this process's shard (`set_shard`)."""
        epoch = self._epoch if epoch is None else epoch
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(_stream_seed(self.seed, epoch, _SHUFFLE_STREAM))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        start, stop = self._block()
        order = order[start:stop]
        order = order[: len(self) * self.bs if self.drop_last else None]
        return [b for b in order.split(self.bs) if len(b)]  # an empty shard has no batch

    def window_draws(self, epoch: int | None = None) -> np.ndarray | None:
        """The draws that place each item's presize window in `epoch` (default: the next):
        float64 [N] in [0, 1), one per item of the data set, from (seed, epoch); None (the
        centre) for a loader that is not training (see `images.window_origins`)."""
        if not self.train:
            return None
        epoch = self._epoch if epoch is None else epoch
        seq = np.random.SeedSequence([self.seed, epoch, _WINDOW_STREAM])
        return np.random.default_rng(seq).random(len(self.dataset))

    # -- uint8 batches ----------------------------------------------------------------------

    def to(self, device: torch.device | str) -> DeviceDataLoader:
        """Move future batches to `device` (returns self)."""
        device = torch.device(device)
        if device != self.device:
            self.close()  # workers pin memory only for an accelerator
            self.device = device
        return self

    @property
    def _pin(self) -> bool:
        return self.device.type == "cuda"

    def _get_loader(self) -> DataLoader:
        if "loader" not in self._workers:
            nw = self.num_workers
            if nw > 0:
                # The workers fork from this process when the loader is first iterated. An
                # older loader left in a reference cycle (a learner and its callbacks) would
                # be inherited as garbage and finalised in a worker, where torch's
                # _MultiProcessingDataLoaderIter.__del__ fails ("Exception ignored ... can
                # only test a child process"): collect it here, in its own process, first.
                gc.collect()
            ds = self.dataset
            self._workers["loader"] = DataLoader(
                _BatchDecoder(
                    ds.items,
                    ds.size,
                    ds.method,
                    whole=ds.cache is not None,
                    encoded=self.decoder is not None,
                    jpeg_reducing_gap=self._jpeg_gap(),
                ),  # fmt: skip
                sampler=self._sampler,
                batch_size=None,
                collate_fn=_no_collate,
                num_workers=nw,
                pin_memory=self._pin,
                persistent_workers=nw > 0 and self._persistent,
                prefetch_factor=2 if nw > 0 else None,
                timeout=self.timeout if nw > 0 else 0,
                generator=torch.Generator().manual_seed(self.seed),  # not the global RNG
            )
        return self._workers["loader"]

    def close(self) -> None:
        """Stop the decoding workers (they restart when needed)."""
        self._workers.clear()

    def set_persistent(self, persistent: bool) -> None:
        """Keep the decoding workers from pass to pass (True: what a fit sets for its epochs,
        `keep_workers`) or start them for each pass and end them with it (False, the default:
        as fastai's loaders; an idle learner holds no worker process). A change stops the
        workers running now."""
        if persistent != self._persistent:
            self.close()
            self._persistent = persistent

    def __getstate__(self) -> dict[str, Any]:
        """A copy without the decoding workers (copy.deepcopy / pickle of a learner): the
        copy starts its own when first iterated."""
        state = dict(self.__dict__)
        state["_workers"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._workers = {}
        weakref.finalize(self, _release_workers, self._workers)

    def set_decoder(self, decoder: JpegBatchDecoder | None) -> None:
        """Decode JPEG files with `decoder` from the next pass on (None: on the CPU)."""
        self.close()
        self.decoder = decoder

    def _jpeg_gap(self) -> float | None:
        """How this loader decodes large JPEG files: reduced (`images.JPEG_REDUCING_GAP`) for
        the training set only, where the speed counts every epoch; validation and test sets
        decode every file whole, as predict does, so that a file gets the same answer from
        get_preds, predict and the CLI whether it is given as a path, bytes, a PIL image or
        an array (fastai decodes every file whole)."""
        return images.JPEG_REDUCING_GAP if self.train else None

    def _decode_here(
        self, idx: list[int], u: np.ndarray | None, whole: bool = False
    ) -> DecodedBatch:
        """Files `idx` decoded in this process, windows from the draws `u` (None: centred):
        their `DecodedBatch`, x on the decoder's device or the CPU."""
        ds = self.dataset
        with images.jpeg_reducing_gap(self._jpeg_gap()):
            if self.decoder is not None:
                return self.decoder.decode_files(ds.items, idx, ds.size, ds.method, u, whole)
            return decode_readable(ds.items, idx, ds.size, ds.method, u, whole)

    def _finish(self, part: DecodedBatch | EncodedBatch, whole: bool) -> DecodedBatch:
        """A worker's batch -> its `DecodedBatch` (the GPU decoder finishes encoded ones)."""
        if not isinstance(part, EncodedBatch):
            return part
        ds = self.dataset
        return self.decoder.decode(part, ds.items, ds.size, ds.method, whole)

    def _move(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = None if self._labels is None else self._labels[idx]
        if self.device.type != "cpu":
            x = x.to(self.device, non_blocking=True)
            y = None if y is None else y.to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2), y

    def _host_batch(
        self, idx: torch.Tensor, draws: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Batch `idx` gathered or decoded in this process, without the unreadable files, each
        image's window placed by ``draws[i]`` (the epoch's `window_draws`; None: centred):
        (uint8 [B', P, P, 3] (pinned for an accelerator), int64 [B'] indices, indices
        skipped)."""
        cache = self.dataset.cache
        if cache is None or not cache.complete:
            u = None if draws is None else draws[idx.numpy()]
            x, kept, bad, _, _ = self._decode_here(idx.tolist(), u)
            return self._pinned(x), torch.tensor(kept, dtype=torch.int64), bad
        ids = idx.numpy()
        damaged = cache.verify(ids)  # decoded from their files, below
        bad_mask = np.isin(ids, cache.bad) & ~damaged
        bad = ids[bad_mask].tolist()
        ids, damaged = ids[~bad_mask], damaged[~bad_mask]
        u = None if draws is None else draws[ids]
        p = self.dataset.size
        out = torch.empty((len(ids), p, p, 3), dtype=torch.uint8, pin_memory=self._pin)

        def decode(i: list[int], uu: np.ndarray | None) -> tuple[torch.Tensor, list[int]]:
            d = self._decode_here(i, uu)  # the loader's decoder; unreadable files listed
            return d.x, d.bad

        x, kept, unreadable = self.dataset.read_cache(ids, u, out, decode)
        return self._pinned(x), torch.from_numpy(kept), bad + unreadable

    def _pinned(self, x: torch.Tensor) -> torch.Tensor:
        """`x` in pinned memory when batches go to an accelerator from the CPU."""
        return x.pin_memory() if self._pin and x.device.type == "cpu" and not x.is_pinned() else x

    def _usable(self, kept: int, skipped: list[int]) -> bool:
        """Whether a batch left with `kept` readable images after `skipped` were left out is
        yielded: one is enough for an in-order loader (also get_preds' in-order copy of a
        training loader: eval mode); a batch of a training pass that lost images needs 2
        (BatchNorm in training mode fails on a batch of one), else it is skipped whole (a
        last partial batch of one, drop_last=False, is yielded: the constructor warned).
        Under several processes (`set_shard`) the others would wait for this one's batch
        forever, so a batch that would be skipped is an error there."""
        if kept >= (2 if self.training_pass and skipped else 1):
            return True
        if self.world_size > 1:
            names = ", ".join(str(self.dataset.items[i]) for i in skipped)
            left = "every image" if kept == 0 else f"all but {kept} image"
            raise BadImageError(
                f"{left} of a batch of process {self.rank} is unreadable ({names}); with "
                "several processes a batch cannot be skipped by one alone: build the data with "
                "skip_bad=True, or delete them with verify_images(path, delete=True)"
            )
        return False

    def _warn_bad(self, epoch: int, bad: list[int], short: int) -> None:
        """The one warning of a pass that met unreadable files this loader has not named yet
        (an lr_find over a small set runs dozens of passes: each file is named once); `short`:
        the training batches of the pass skipped whole, left with one readable image."""
        new = sorted(set(bad) - self._bad)
        self._bad.update(bad)
        if not new:
            return
        names = shown_names([self.dataset.items[i] for i in new], 20)
        whole = (
            f" {short} training batch(es) left with a single readable image were skipped whole "
            "(BatchNorm needs 2 images per batch in training)."
            if short
            else ""
        )
        warn_user(
            f"epoch {epoch}: skipped {len(new)} unreadable image(s) of the "
            f"{'training' if self.train else 'validation'} set: {names}.{whole} Later passes "
            "skip them without a warning (bad_items lists them; verify_images(bad_items) prints "
            "why each cannot be read). Drop them with skip_bad=True when building the data, or "
            "delete the broken ones with verify_images(path, delete=True)"
        )

    def uint8_batches(
        self, epoch: int | None = None, draws: np.ndarray | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches of `epoch` (default: the next, without advancing it) before augmentation:
        ``(uint8 Tensor[B, 3, P, P] with channels_last strides, int64 Tensor[B])`` on the
        device. A complete pass over an uncompleted cache completes it. Unreadable files are
        left out of their batches (a batch left empty is skipped, and so is a training batch
        left with one image); those not named before are named by one warning at the end of
        the pass (see the module doc). draws: the windows' placement (float64 [N] in [0, 1),
        one per item of the data set, as `window_draws`) instead of the epoch's: TTA's random
        windows through a loader that does not train."""
        epoch = self._epoch if epoch is None else epoch
        batches = self.batch_indices(epoch)
        if draws is None:
            draws = self.window_draws(epoch)
        elif np.shape(draws) != (len(self.dataset),):
            raise ValueError(
                f"draws: expected one window draw per item ({len(self.dataset)}), got an "
                f"array of shape {np.shape(draws)}"
            )
        cache = self.dataset.cache
        bad: list[int] = []
        short = 0  # training batches skipped whole: a single readable image left
        try:
            if cache is not None and cache.complete:
                for idx in batches:
                    x, idx, skipped = self._host_batch(idx, draws)
                    bad += skipped
                    if self._usable(len(idx), skipped):
                        yield self._move(x, idx)
                    else:
                        short += len(idx) > 0
                return
            self._sampler.batches = [
                (idx, None if draws is None else draws[idx.numpy()]) for idx in batches
            ]
            for part in self._get_loader():
                d = self._finish(part, whole=cache is not None)
                idx = torch.as_tensor(d.kept, dtype=torch.int64)
                bad += d.bad
                if cache is not None:
                    cache.write(idx.numpy(), d.shapes.numpy(), d.packed.numpy())
                    cache.mark_bad(np.asarray(d.bad, dtype=np.int64))
                if self._usable(len(idx), d.bad):
                    yield self._move(d.x, idx)
                else:
                    short += len(idx) > 0
            if cache is not None:
                self._complete_cache(cache)
        finally:
            if bad:
                self._warn_bad(epoch, bad, short)

    def _complete_cache(self, cache: DecodedCache) -> None:
        """After a full pass: decode what the pass skipped (the dropped partial batch), then
        publish the cache; the workers are not needed any more."""
        missing = cache.missing()
        for chunk in np.array_split(missing, max(1, math.ceil(len(missing) / self.bs))):
            if len(chunk):
                d = self._decode_here(chunk.tolist(), None, whole=True)
                cache.write(np.array(d.kept, dtype=np.int64), d.shapes.numpy(), d.packed.numpy())
                cache.mark_bad(np.array(d.bad, dtype=np.int64))
        cache.finish()
        self.close()

    # -- device batches ---------------------------------------------------------------------

    def _generator(self, epoch: int) -> torch.Generator | None:
        if not (self.train and self.spec is not None):
            return None
        seed = self.seed if self.rank == 0 else _stream_seed(self.seed, self.rank, _RANK_STREAM)
        return epoch_generator(seed, epoch)

    def augment(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """uint8 ``[B, 3, P, P]`` on the device -> float ``[B, 3, S, S]`` through
        `augment.augment_batch` (random when training with a spec, center crop otherwise)."""
        mean, std = self.stats if self.stats is not None else ((0.0,) * 3, (1.0,) * 3)
        return augment_batch(
            x,
            self.size,
            mean=mean,
            std=std,
            spec=self.spec,
            generator=generator,
            train=generator is not None,
            channels_last=self.channels_last,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches of the next pass: ``(x, y)``, or ``(x,)`` for a data set without
        labels (a test set, `test_dl`), as fastai's (``x, = first(dls.test_dl(files))``)."""
        epoch = self._epoch
        self._epoch += 1
        return self._iter_epoch(epoch)

    def _iter_epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        gen = self._generator(epoch)
        for x, y in self.uint8_batches(epoch):
            xb = self.augment(x, gen)
            yield (xb,) if y is None else (xb, y)

    def decode(self, b: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """fastai v2's ``dl.decode(b)`` (fastbook ch. 18: ``dls.train.decode((x,))[0][0]``):
        batch ``(x float [B, 3, S, S], y)`` or ``(x,)`` with this loader's normalization
        undone, x as int64 pixels [B, 3, S, S] in [0, 255] (rounded: an undone pixel is the
        one that went in; fastai's truncates), y as given."""
        if not isinstance(b, tuple | list) or not 1 <= len(b) <= 2:
            raise TypeError(f"b: expected a batch (x, y) as one_batch gives it, got {b!r:.80}")
        x = b[0]
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            raise TypeError(
                f"b: expected x float [B, 3, H, W] first, got {getattr(x, 'shape', type(x))}"
            )
        pixels = (denormalize(x.float(), self.stats) * 255).round_().long()
        return (pixels, *b[1:])

    def one_batch(self) -> tuple[torch.Tensor, ...]:
        """A batch of the next epoch, decoded in this process, unreadable files left out; the
        epoch does not advance, so training is the same with or without it. A validation
        loader gives its first batch each time; a shuffled (training) one, as fastai's, another
        batch at each call: its k-th call since the epoch last advanced gives batch k (modulo
        the number of batches) of the next epoch, the first exactly as the pass will give it,
        later ones with augmentation draws of their own. ``(x,)`` without labels, as a
        pass gives."""
        x, y = self._first_batch(unique=False)
        return (x,) if y is None else (x, y)

    def _first_batch(self, unique: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """one_batch; unique=True: the first readable image in every place of the batch
        before the augmentation (show_batch's unique)."""
        if not len(self.dataset):
            which = "training" if self.train else "validation"
            raise ValueError(
                f"this {which} loader's data set is empty (no {which} items: valid_pct=0 or a "
                "splitter that put every item in training): it has no batch to give"
            )
        epoch = self._epoch
        k = 0
        if self.shuffle:
            k = self._peeks[1] if self._peeks[0] == epoch else 0
            self._peeks = (epoch, k + 1)
        batches = self.batch_indices(epoch)
        x, idx, bad = self._host_batch(batches[k % len(batches)], self.window_draws(epoch))
        self._bad.update(bad)
        if not len(idx):
            names = ", ".join(str(self.dataset.items[i]) for i in bad)
            which = "the first batch" if k == 0 else f"batch {k % len(batches)} of the next epoch"
            raise BadImageError(f"every image of {which} is unreadable ({names})")
        x, y = self._move(x, idx)
        if unique:
            x = x[:1].expand(len(x), -1, -1, -1).contiguous(memory_format=torch.channels_last)
            y = None if y is None else y[:1].expand(len(y))
        gen = self._generator(epoch)
        if k and gen is not None:
            gen = torch.Generator().manual_seed(_stream_seed(self.seed, epoch, _PEEK_STREAM + k))
        return self.augment(x, gen), y

    def show_batch(
        self,
        max_n: int = 9,
        nrows: int | None = None,
        ncols: int | None = None,
        figsize: tuple[float, float] | None = None,
        unique: bool = False,
        *,
        b: tuple[torch.Tensor, ...] | None = None,
        ctxs: Any = None,
    ) -> Figure | None:
        """fastai v2's ``dls.train.show_batch()`` / ``dls.valid.show_batch()``: the first
        min(max_n, bs) images of `one_batch` (augmented as training sees them on a training
        loader, centre-cropped on a validation one), denormalized to [0, 1], each titled with
        its class, in a grid of nrows x ncols (fastai v2's rule, `plots.image_grid`; a grid
        of both holds at most nrows * ncols images). figsize None: 7/3 x 28/15 inches per
        image (v1's (7, 6) for 3 x 3).

        b: a batch to show instead, ``(x, y)`` or ``(x,)`` as `one_batch` gives it (x
        normalized by this loader); fastai's first positional argument, so a tuple given as
        `max_n` is taken as `b`. ctxs: matplotlib Axes to draw into (a list, or the array
        ``plt.subplots`` gives), one image each, at most max_n; no figure is made or saved
        and None is returned (as fastai's: a notebook shows the figure once).

        unique=True: the batch's first readable image, in its presize window of this epoch,
        takes the place of every image of the batch, so each copy gets the augmentation
        drawn for its place this epoch (a loader without augmentation, e.g. a validation one,
        shows identical copies, as fastai's). The epoch does not advance. Returns the
        Figure; outside a notebook also saved as
        ``<plot dir>/show_batch_<train|valid>[_unique].png`` (see fastcore_ext.plots)."""
        if b is None and isinstance(max_n, tuple | list):
            b, max_n = max_n, 9  # fastai's dls.show_batch(b)
        max_n = check_int("max_n", max_n, 1)
        cells = grid_cells(nrows, ncols)
        check_bool("unique", unique)
        axes = check_ctxs(ctxs)
        if b is not None and unique:
            raise ValueError("b, unique: unique=True draws its own batch; pass one of them")
        if b is None:
            x, y = self._first_batch(unique)
        else:
            x, *rest = self.decode(b)  # checks b
            x = x.float() / 255
            y = rest[0] if rest else None
            if y is not None and (not isinstance(y, torch.Tensor) or y.dim() != 1):
                raise TypeError(f"b: expected y int64 [B] second, got {y!r:.80}")
        n = min(max_n, len(x), cells or max_n, len(axes) if axes is not None else max_n)
        if axes is None and cells is not None and cells > len(x):  # rows=100: 10,000 Axes
            asked = (nrows, ncols)
            if nrows == ncols:
                nrows = ncols = math.ceil(math.sqrt(n))
            else:
                ncols = min(ncols, n)
                nrows = min(nrows, math.ceil(n / ncols))
            if (nrows, ncols) != asked:
                warn_user(
                    f"show_batch: a {asked[0]} x {asked[1]} grid asks for {cells} images, and "
                    f"a batch holds {len(x)}: showing {n} in a {nrows} x {ncols} grid"
                )
        x = x[:n].float()
        images = (x if b is not None else denormalize(x, self.stats)).permute(0, 2, 3, 1)
        images = images.cpu().numpy()
        # an unlabelled loader (test_dl) shows its images untitled, as fastai's
        titles = [""] * n if y is None else [self.dataset.classes[k] for k in y[:n].tolist()]
        if axes is None:
            fig, axes, _ = image_grid(n, figsize, titles, (7 / 3, 28 / 15), nrows, ncols)
            rows, cols = axes[0].get_subplotspec().get_gridspec().get_geometry()
            width, height = fig.get_size_inches()
            fontsize = min(10.0, max(6.0, 5.0 * min(width / cols, height / rows)))  # by cell
        else:  # the user's Axes: their figure is theirs to lay out, show or save
            fontsize = 10.0
        for ax, image, title in zip(axes, images, titles, strict=False):
            ax.imshow(image)
            ax.set_title(title, fontsize=fontsize)
            ax.set_axis_off()
        if ctxs is not None:
            return None
        name = f"show_batch_{'train' if self.train else 'valid'}{'_unique' if unique else ''}"
        return finish(fig, name)

    def __repr__(self) -> str:
        decode = "" if self.decoder is None else f", JPEG decoding on {self.decoder.device}"
        return (
            f"{type(self).__name__}({'train' if self.train else 'valid'}, {len(self)} batches of "
            f"{self.bs}, size {self.size}, device {self.device}, workers {self.num_workers}"
            f"{decode})"
        )


@contextlib.contextmanager
def keep_workers(data: Any) -> Iterator[None]:
    """While the block runs (a fit), the decoding workers of `data`'s training and validation
    loaders (those that are DeviceDataLoaders) live from epoch to epoch; when it ends, they
    are stopped, and later passes start and end their own. Other data: nothing."""
    loaders = [getattr(data, name, None) for name in ("train_dl", "valid_dl")]
    loaders = [dl for dl in loaders if isinstance(dl, DeviceDataLoader)]
    for dl in loaders:
        dl.set_persistent(True)
    try:
        yield
    finally:
        for dl in loaders:
            dl.set_persistent(False)
