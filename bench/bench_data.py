"""Data pipeline throughput: images per second for one training epoch of the demo dataset
(1920 JPEGs of 96 px; size 64, presize 80, bs 64, default workers), loading + augmentation
+ normalization, on the CPU of this machine:

- first epoch: decode + presize in workers, filling the decoded cache, then augment_batch;
- cached epoch: gather from the memory-mapped cache, then augment_batch;
- uncached epoch: decode every epoch (cache=False);
- torchvision: ImageFolder + RandomResizedCrop(64) + RandomHorizontalFlip + ToTensor +
  Normalize in a DataLoader with the same workers, batch size and shuffling;
- uint8 cached epoch: the cached epoch without the augmentation step (what loading costs).

The target (issue 4): cached epochs at least 5x torchvision's images/s. Run with
``pytest bench/bench_data.py``; images/s are in each benchmark's extra_info and printed.
"""

import importlib.util
import tempfile
from pathlib import Path

import pytest
import torch
import torchvision
import torchvision.transforms as T

from fastcore_ext.data import (
    ImageDataBunch,
    default_num_workers,
    demo_dataset,
    imagenet_stats,
)

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

SIZE, BS = 64, 64
WORKERS = default_num_workers()


def _need_augment() -> None:
    spec = importlib.util.find_spec("fastcore_ext.augment")
    if spec is None or not hasattr(
        importlib.import_module("fastcore_ext.augment"), "augment_batch"
    ):
        pytest.skip("fastcore_ext.augment.augment_batch is not merged yet")
    if not hasattr(importlib.import_module("fastcore_ext.ops"), "augment_normalize"):
        pytest.skip("fastcore_ext.ops.augment_normalize (the kernel) is not merged yet")


@pytest.fixture(scope="module")
def root() -> Path:
    return demo_dataset()


def _bunch(root: Path, cache, augment: bool = True) -> ImageDataBunch:
    if augment:
        from fastcore_ext.augment import get_transforms

        kw = {"ds_tfms": get_transforms()}
    else:
        kw = {"ds_tfms": None}  # uint8 benchmarks: no augment module needed
    return ImageDataBunch.from_folder(
        root, size=SIZE, bs=BS, num_workers=WORKERS, cache=cache, seed=0, device="cpu", **kw
    ).normalize(imagenet_stats)


def _epoch(dl) -> int:
    n = 0
    for x, _ in dl:
        n += x.shape[0]
    return n


def _report(benchmark, images: int, label: str) -> None:
    rate = images / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = round(rate)
    print(f"\n{label}: {rate:,.0f} images/s ({images} images, {WORKERS} workers)")


def test_first_epoch_decoding(benchmark, root):
    _need_augment()
    state = {}

    def setup():
        folder = tempfile.mkdtemp(prefix="fastcore_ext_bench_cache_")
        state["b"] = _bunch(root, cache=folder)

    def run():
        return _epoch(state["b"].train_dl)

    n = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    assert state["b"].train_ds.cache.complete
    _report(benchmark, n, "first epoch (decode + fill cache + augment)")


def test_cached_epoch(benchmark, root, tmp_path_factory):
    _need_augment()
    b = _bunch(root, cache=tmp_path_factory.mktemp("cache"))
    _epoch(b.train_dl)  # fills the cache
    assert b.train_ds.cache.complete
    n = benchmark.pedantic(lambda: _epoch(b.train_dl), rounds=5, iterations=1)
    _report(benchmark, n, "cached epoch (memory map + augment)")


def test_uint8_cached_epoch(benchmark, root, tmp_path_factory):
    b = _bunch(root, cache=tmp_path_factory.mktemp("cache8"), augment=False)
    for _ in b.train_dl.uint8_batches():
        pass
    assert b.train_ds.cache.complete

    def run():
        return sum(x.shape[0] for x, _ in b.train_dl.uint8_batches())

    n = benchmark.pedantic(run, rounds=5, iterations=1)
    _report(benchmark, n, "cached epoch, uint8 batches only (no augmentation)")


def test_uint8_decoding_epoch(benchmark, root):
    b = _bunch(root, cache=False, augment=False)

    def run():
        return sum(x.shape[0] for x, _ in b.train_dl.uint8_batches())

    run()  # start the persistent workers
    n = benchmark.pedantic(run, rounds=3, iterations=1)
    _report(benchmark, n, "decoding epoch, uint8 batches only (no augmentation)")
    b.train_dl.close()


def test_uncached_epoch(benchmark, root):
    _need_augment()
    b = _bunch(root, cache=False)
    _epoch(b.train_dl)  # start the persistent workers
    n = benchmark.pedantic(lambda: _epoch(b.train_dl), rounds=3, iterations=1)
    _report(benchmark, n, "uncached epoch (decode + augment every epoch)")
    b.train_dl.close()


def test_torchvision_imagefolder(benchmark, root):
    tfm = T.Compose(
        [
            T.RandomResizedCrop(SIZE, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(*imagenet_stats),
        ]
    )
    ds = torchvision.datasets.ImageFolder(str(root / "train"), transform=tfm)
    dl = torch.utils.data.DataLoader(
        ds, batch_size=BS, shuffle=True, drop_last=True, num_workers=WORKERS,
        persistent_workers=WORKERS > 0,
    )  # fmt: skip
    _epoch(dl)  # start the persistent workers
    n = benchmark.pedantic(lambda: _epoch(dl), rounds=3, iterations=1)
    _report(benchmark, n, "torchvision ImageFolder (RandomResizedCrop, flip, ToTensor, Normalize)")
