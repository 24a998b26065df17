"""The loader up to the uint8 device batch: order, epochs, workers, cache, bad files.

(The augmented float batches are tested in test_data_bunch.py.)
"""

import os
import shutil
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image

from fastcore_ext.data import (
    BadImageError,
    DecodedCache,
    DeviceDataLoader,
    ImageDataset,
    demo_dataset,
    items_from_folder,
)
from fastcore_ext.data import loader as loader_mod

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

P = 20  # presize


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = demo_dataset(tmp_path_factory.mktemp("loader") / "demo", n_per_class=5, size=32)
    return items_from_folder(root)  # 48 train, 12 valid images


def _dl(split, train=True, bs=10, num_workers=0, cache=None, seed=3, items=None):
    items = items or (split.train_items if train else split.valid_items)
    labels = split.train_labels if train else split.valid_labels
    ds = ImageDataset(items, labels[: len(items)], split.classes, P, "crop", cache)
    return DeviceDataLoader(
        ds, bs, train=train, size=16, device=torch.device("cpu"), seed=seed,
        num_workers=num_workers,
    )  # fmt: skip


def _collect(dl, epoch=None):
    xs, ys = zip(*dl.uint8_batches(epoch), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_dataset_items(split):
    ds = ImageDataset(split.train_items, split.train_labels, split.classes, P)
    assert len(ds) == 48
    x, y = ds[5]
    assert x.shape == (3, P, P) and x.dtype == torch.uint8 and y == split.train_labels[5]
    torch.testing.assert_close(ds[-1][0], ds[47][0], rtol=0, atol=0)
    with pytest.raises(IndexError):
        ds[48]


def test_lengths_and_order(split):
    tr, va = _dl(split, train=True, bs=10), _dl(split, train=False, bs=5)
    assert len(tr) == 4 and len(va) == 3  # 48 // 10 (drop last); ceil(12 / 5)
    b0 = tr.batch_indices(0)
    assert len(b0) == 4 and all(len(b) == 10 for b in b0)
    assert len(torch.cat(b0).unique()) == 40
    assert torch.equal(torch.cat(b0), torch.cat(tr.batch_indices(0)))  # same (seed, epoch)
    assert not torch.equal(torch.cat(b0), torch.cat(tr.batch_indices(1)))
    other_seed = _dl(split, seed=4).batch_indices(0)
    assert not torch.equal(torch.cat(b0), torch.cat(other_seed))
    assert torch.equal(torch.cat(va.batch_indices(0)), torch.arange(12))
    assert [len(b) for b in va.batch_indices(7)] == [5, 5, 2]


def test_uint8_batches_shapes_values_and_layout(split):
    dl = _dl(split, bs=8)
    batches = list(dl.uint8_batches(0))
    assert len(batches) == 6
    idx = dl.batch_indices(0)
    for (x, y), i in zip(batches, idx, strict=True):
        assert x.shape == (8, 3, P, P) and x.dtype == torch.uint8 and x.device.type == "cpu"
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert y.dtype == torch.int64 and y.tolist() == [split.train_labels[k] for k in i]
        torch.testing.assert_close(x[3], dl.dataset[int(i[3])][0], rtol=0, atol=0)


def test_epochs_advance_and_set_epoch(split):
    dl = _dl(split)
    assert dl.epoch == 0
    first = _collect(dl)[1]  # uint8_batches does not advance
    assert dl.epoch == 0
    it = iter(dl)  # a pass advances the epoch at once
    assert dl.epoch == 1
    del it
    dl.set_epoch(0)
    assert torch.equal(_collect(dl)[1], first)
    assert not torch.equal(_collect(dl, 1)[1], first)
    with pytest.raises(ValueError, match="epoch: expected an int >= 0"):
        dl.set_epoch(-1)


@pytest.mark.parametrize("train", [True, False])
def test_zero_and_two_workers_give_identical_batches(split, train):
    x0, y0 = _collect(_dl(split, train=train, num_workers=0), 2)
    dl2 = _dl(split, train=train, num_workers=2)
    x2, y2 = _collect(dl2, 2)
    torch.testing.assert_close(x0, x2, rtol=0, atol=0)
    assert torch.equal(y0, y2)
    x2b, _ = _collect(dl2, 2)  # persistent workers, second pass
    torch.testing.assert_close(x0, x2b, rtol=0, atol=0)
    dl2.close()


def test_global_rng_untouched(split):
    state = torch.get_rng_state()
    for nw in (0, 2):
        dl = _dl(split, num_workers=nw)
        for _ in range(2):
            _collect(dl)
        dl.close()
    assert torch.equal(state, torch.get_rng_state())


def test_cached_and_uncached_batches_identical(split, tmp_path):
    plain = _collect(_dl(split), 0)
    cache = DecodedCache(split.train_items, P, "crop", folder=tmp_path)
    dl = _dl(split, cache=cache, num_workers=2)
    first = _collect(dl, 0)  # decodes and fills; 8 images are left out by drop_last
    assert cache.complete  # completed after the full pass, leftovers included
    second = _collect(dl, 0)  # from the memory map
    for got in (first, second):
        torch.testing.assert_close(got[0], plain[0], rtol=0, atol=0)
        assert torch.equal(got[1], plain[1])
    for i in range(len(split.train_items)):  # every item, not only those of epoch 0
        torch.testing.assert_close(dl.dataset[i][0], _dl(split).dataset[i][0], rtol=0, atol=0)


def test_cache_reused_by_a_later_run_without_decoding(split, tmp_path, monkeypatch):
    c = DecodedCache(split.valid_items, P, "crop", folder=tmp_path)
    expect = _collect(_dl(split, train=False, cache=c), 0)
    assert c.complete

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is complete")

    monkeypatch.setattr(loader_mod, "decode_batch", no_decoding)
    again = DecodedCache(split.valid_items, P, "crop", folder=tmp_path)
    got = _collect(_dl(split, train=False, cache=again), 0)
    torch.testing.assert_close(got[0], expect[0], rtol=0, atol=0)


def test_interrupted_first_pass_leaves_no_cache(split, tmp_path):
    c = DecodedCache(split.train_items, P, "crop", folder=tmp_path)
    dl = _dl(split, cache=c)
    for _ in dl.uint8_batches(0):
        break  # e.g. lr_find stopping early
    assert not c.complete and not c.path.exists()
    assert not DecodedCache(split.train_items, P, "crop", folder=tmp_path).complete
    _collect(dl, 1)
    assert c.complete and c.path.exists()


def test_cache_invalidated_when_a_file_changes(split, tmp_path):
    root = tmp_path / "copy"
    items = []
    for k, p in enumerate(split.valid_items[:6]):
        q = root / f"{k}.jpg"
        q.parent.mkdir(exist_ok=True)
        shutil.copy(p, q)
        items.append(q)
    old = _collect(
        _dl(split, train=False, items=items, cache=DecodedCache(items, P, "crop", folder=tmp_path))
    )
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(items[2], format="JPEG")
    st = os.stat(items[2])
    os.utime(items[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    c2 = DecodedCache(items, P, "crop", folder=tmp_path)
    assert not c2.complete
    new = _collect(_dl(split, train=False, items=items, cache=c2))
    assert (new[0][2] - 7).abs().max() <= 2 and not torch.equal(new[0][2], old[0][2])
    torch.testing.assert_close(new[0][3], old[0][3], rtol=0, atol=0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_file_raises_naming_it(split, tmp_path, num_workers):
    items = list(split.valid_items)
    bad = tmp_path / "truncated_one.jpg"
    data = items[4].read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    items[4] = bad
    dl = _dl(split, train=False, items=items, num_workers=num_workers)
    with pytest.raises(BadImageError, match="truncated_one.jpg"):
        _collect(dl)
    dl.close()


def _die_in_worker(*args, **kwargs):
    if torch.utils.data.get_worker_info() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("expected to run in a worker")


def test_dying_worker_raises_instead_of_hanging(split, monkeypatch):
    monkeypatch.setattr(loader_mod, "decode_batch", _die_in_worker)
    dl = _dl(split, num_workers=2)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="(?i)worker"):
        _collect(dl)
    assert time.monotonic() - start < 30
    dl.close()


def test_argument_errors(split):
    ds = ImageDataset(split.train_items, split.train_labels, split.classes, P)
    kw = dict(train=True, size=16, device=torch.device("cpu"), seed=0)
    with pytest.raises(ValueError, match="bs: expected a positive int, got 0"):
        DeviceDataLoader(ds, 0, **kw)
    with pytest.raises(ValueError, match="bs: 64 is larger than the training set"):
        DeviceDataLoader(ds, 64, **kw)
    with pytest.raises(ValueError, match="num_workers: expected an int >= 0"):
        DeviceDataLoader(ds, 8, num_workers=-1, **kw)
    with pytest.raises(ValueError, match="labels: expected 48 labels"):
        ImageDataset(split.train_items, split.train_labels[:-1], split.classes, P)
