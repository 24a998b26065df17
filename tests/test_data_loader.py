"""The loader up to the uint8 device batch: order, epochs, workers, cache, bad files.

(The augmented float batches are tested in test_data_bunch.py.)
"""

import gc
import os
import shutil
import signal
import sys
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
from fakes import break_images, make_learner, tiny_model
from PIL import Image

from fastcore_ext.data import (
    BadImageError,
    DecodedCache,
    DeviceDataLoader,
    ImageDataBunch,
    ImageDataset,
    demo_dataset,
    items_from_folder,
    load_image,
    to_rgb,
)
from fastcore_ext.data import loader as loader_mod
from fastcore_ext.data.images import presize_whole, window_origins
from fastcore_ext.data.loader import decode_readable

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

    monkeypatch.setattr(loader_mod, "load_whole", no_decoding)
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


@pytest.fixture
def broken(split, tmp_path):
    """The validation items copied, items 1, 6 and 7 broken (truncated, empty, text)."""
    items = []
    for k, p in enumerate(split.valid_items):
        q = tmp_path / "imgs" / f"{k:02d}_{p.name}"
        q.parent.mkdir(exist_ok=True)
        shutil.copy(p, q)
        items.append(q)
    bad = break_images([items[1], items[6], items[7]])
    return items, bad


def _warnings_about(record, text="unreadable"):
    return [str(w.message) for w in record if text in str(w.message)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_unreadable_files_are_skipped_and_named_once(split, broken, num_workers):
    """Every pass skips them; only the first pass that meets a file names it (an lr_find over
    a small set runs dozens of passes, and a warning per pass buried its output)."""
    items, bad = broken
    dl = _dl(split, train=False, bs=5, items=items[:7], num_workers=num_workers)
    good = [k for k in range(7) if k not in (1, 6)]
    expect = _collect(_dl(split, train=False, bs=5, items=[items[k] for k in good]))
    for epoch in range(2):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            x, y = _collect(dl, epoch)
        ours = _warnings_about(rec)
        if epoch == 0:
            assert len(ours) == 1 and ours[0].startswith("epoch 0: skipped 2 unreadable")
            assert f"set: {str(bad[0])!r}, {str(bad[1])!r}. " in ours[0]  # quoted, as others
            # attributed to the code that iterated the loader (here the test's _collect)
            assert [w.filename for w in rec if "unreadable" in str(w.message)] == [__file__]
        else:
            assert ours == []
        torch.testing.assert_close(x, expect[0], rtol=0, atol=0)
        assert y.tolist() == [split.valid_labels[k] for k in good]
    assert dl.bad_items == bad[:2]
    # a file that goes bad later is named then, alone
    items[3].write_bytes(b"")
    with pytest.warns(UserWarning) as rec:
        _collect(dl, 2)
    ours = _warnings_about(rec)
    assert len(ours) == 1 and ours[0].startswith("epoch 2: skipped 1 unreadable")
    assert str(items[3]) in ours[0] and str(bad[0]) not in ours[0]
    assert dl.bad_items == [items[1], items[3], items[6]]
    dl.close()


def test_a_batch_that_loses_every_item_is_skipped(split, broken):
    items, bad = broken
    dl = _dl(split, train=False, bs=2, items=items)  # batch 3 = items 6, 7: both broken
    with pytest.warns(UserWarning, match="skipped 3 unreadable"):
        sizes = [len(y) for _, y in dl.uint8_batches(0)]
    assert sizes == [1, 2, 2, 2, 2]
    dl.set_shard(1, 2)  # items 6..11: the others could not skip that batch too
    with pytest.raises(BadImageError, match="every image of a batch of process 1"):
        list(dl.uint8_batches(0))


@pytest.mark.parametrize("cached", [False, True])
def test_a_training_batch_left_with_one_image_is_skipped_whole(split, broken, tmp_path, cached):
    """BatchNorm in training mode fails on a batch of one ('Expected more than 1 value per
    channel when training'): a training batch left with one readable image is skipped, and the
    warning says so; an in-order batch of one is still yielded (eval mode)."""
    items, bad = broken
    cache = DecodedCache(items, P, "crop", folder=tmp_path / "c") if cached else None
    if cached:
        with pytest.warns(UserWarning, match="unreadable"):
            _collect(_dl(split, train=False, bs=4, items=items, cache=cache))
        assert cache.complete
    dl = _dl(split, train=True, bs=2, items=items, cache=cache, seed=0)
    batches = [[k for k in b.tolist() if k not in (1, 6, 7)] for b in dl.batch_indices(0)]
    ones = sum(len(b) == 1 for b in batches)
    assert ones >= 1  # the seed gives the case under test
    with pytest.warns(UserWarning) as rec:
        got = [idx.tolist() for _, idx in dl.uint8_batches(0)]
    labels = split.train_labels
    assert got == [[labels[k] for k in b] for b in batches if len(b) >= 2]
    (msg,) = _warnings_about(rec)
    assert f"{ones} training batch(es) left with a single readable image were skipped" in msg
    valid = _dl(split, train=False, bs=2, items=items, cache=cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [len(y) for _, y in valid.uint8_batches(0)][:1] == [1]  # items 0, 1
    dl.set_shard(0, 2)  # the other process could not skip that batch too: an error

    def first_short(epoch):  # readable images of the epoch's first batch with fewer than 2
        kept = [sum(k not in (1, 6, 7) for k in b.tolist()) for b in dl.batch_indices(epoch)]
        return next((n for n in kept if n < 2), None)

    epoch = next(e for e in range(20) if first_short(e) == 1)
    with pytest.raises(BadImageError, match="all but 1 image of a batch of process 0"):
        list(dl.uint8_batches(epoch))


def test_a_fit_survives_a_class_of_mostly_unreadable_images(tmp_path):
    """The probe's case: a class with 5 truncated images and 1 good one, bs=2, a model with
    BatchNorm1d (as create_cnn's head): the fit crashed in torch's BatchNorm on a training
    batch left with one image."""
    rng = np.random.default_rng(0)
    for split_name, n in (("train", 6), ("valid", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                f = tmp_path / "d" / split_name / cls / f"{i}.jpg"
                f.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(f)
                if split_name == "train" and cls == "a" and i:
                    f.write_bytes(f.read_bytes()[:60])
    data = ImageDataBunch.from_folder(tmp_path / "d", size=16, bs=2, num_workers=0, seed=0)
    kept = [sum(data.train_ds.items[k].name == "0.jpg" or data.train_ds.labels[k] == 1
                for k in b.tolist()) for b in data.train_dl.batch_indices(0)]  # fmt: skip
    assert 1 in kept  # the seed gives a training batch of one readable image
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2),
    )  # fmt: skip
    learn = make_learner(data=data, model=model, path=tmp_path, splitter=lambda m: [m[:3], m[3:]])
    with pytest.warns(UserWarning, match="left with a single readable image were skipped"):
        learn.fit(1, lr=0.01)
    assert len(learn.recorder.raw_losses) == sum(n >= 2 for n in kept)
    data.train_dl.close()
    data.valid_dl.close()


def test_a_training_loader_needs_two_images_per_batch(split):
    ds = ImageDataset(split.train_items, split.train_labels, split.classes, P)
    kw = dict(size=16, device=torch.device("cpu"), seed=0)
    with pytest.raises(ValueError, match="bs: expected at least 2 images per training batch"):
        DeviceDataLoader(ds, 1, train=True, **kw)
    assert len(DeviceDataLoader(ds, 1, train=False, **kw)) == 48  # validation: fine


def test_training_order_is_drawn_over_every_item(split, broken):
    items, bad = broken
    dl = _dl(split, train=True, bs=4, items=items)
    with pytest.warns(UserWarning, match="unreadable"):
        got = [y.tolist() for _, y in dl.uint8_batches(3)]
    labels = split.train_labels  # what _dl gives a training loader
    expect = [[labels[k] for k in b.tolist() if k not in (1, 6, 7)] for b in dl.batch_indices(3)]
    assert got == [b for b in expect if len(b) >= 2]


def test_cache_remembers_unreadable_files(split, broken, tmp_path):
    items, bad = broken
    plain = _collect(_dl(split, train=False, items=[p for p in items if p not in bad]))
    cache = DecodedCache(items, P, "crop", folder=tmp_path / "cache")
    dl = _dl(split, train=False, items=items, cache=cache, num_workers=2)
    with pytest.warns(UserWarning, match="epoch 0: skipped 3 unreadable"):
        _collect(dl, 0)
    assert cache.complete and cache.bad.tolist() == [1, 6, 7]
    later = DecodedCache(items, P, "crop", folder=tmp_path / "cache")  # a later run
    assert later.complete and later.bad.tolist() == [1, 6, 7]
    dl2 = _dl(split, train=False, items=items, cache=later)
    with pytest.warns(UserWarning, match="epoch 1: skipped 3 unreadable") as rec:
        got = _collect(dl2, 1)
    assert all(str(p) in _warnings_about(rec)[0] for p in bad)
    torch.testing.assert_close(got[0], plain[0], rtol=0, atol=0)
    assert got[1].tolist() == [split.valid_labels[k] for k in range(12) if k not in (1, 6, 7)]
    assert dl2.bad_items == bad
    dl.close()


@pytest.mark.parametrize("use_cache", [False, True])
def test_a_dangling_link_is_skipped_with_or_without_the_cache(tmp_path, use_cache):
    """A symlink to nothing among the images: cache=True built the key from os.stat and
    crashed with FileNotFoundError; now both paths skip it and name it alike, and
    skip_bad=True drops it."""
    root = demo_dataset(tmp_path / "demo", n_per_class=3, size=32)
    link = root / "valid" / "star" / "link.jpg"
    link.symlink_to(tmp_path / "nowhere.jpg")
    cache = tmp_path / "cache" if use_cache else False
    data = ImageDataBunch.from_folder(
        root, size=16, bs=4, num_workers=0, seed=1, cache=cache, ds_tfms=None
    )
    assert link in data.valid_ds.items
    with pytest.warns(UserWarning, match="skipped 1 unreadable image") as rec:
        n = sum(len(y) for _, y in data.valid_dl)
    assert str(link) in _warnings_about(rec)[0]
    assert n == len(data.valid_ds) - 1 and data.valid_dl.bad_items == [link]
    if use_cache:
        cache_obj = data.valid_ds.cache
        assert cache_obj.complete and cache_obj.bad.tolist() == [data.valid_ds.items.index(link)]
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "nowhere.jpg")
        again = DecodedCache(data.valid_ds.items, cache_obj.size, "crop", folder=cache)
        assert again.key != cache_obj.key and not again.complete  # the file appeared
        (tmp_path / "nowhere.jpg").unlink()
    with pytest.warns(UserWarning, match="skip_bad: dropped 1 unreadable image"):
        kept = ImageDataBunch.from_folder(
            root, size=16, bs=4, num_workers=0, seed=1, cache=cache, ds_tfms=None, skip_bad=True
        )
    assert kept.dropped_items == [link] and link not in kept.valid_ds.items


def _damage_cache(path, how: str) -> None:
    """Damage a complete cache file as a disk or a hand would: bytes flipped in the pixels of
    item 2, every pixel byte zeroed, or the index entries of items 0 and 1 swapped (the
    index's own checksum recomputed, so only the items' checksums can tell)."""
    from fastcore_ext.data import cache as cache_mod

    data = bytearray(path.read_bytes())
    footer = cache_mod._FOOTER
    magic, version, n, start, _ = footer.unpack(data[-footer.size :])
    index = np.frombuffer(bytes(data[start : start + 32 * n]), "<i8").reshape(n, 4).copy()
    if how == "flip":
        off, h, w, _ = index[2]
        for k in range(off, off + h * w * 3, 7):
            data[k] ^= 0xFF
    elif how == "zero":
        data[:start] = bytes(start)
    else:
        index[[0, 1]] = index[[1, 0]]
        data[start : start + 32 * n] = index.tobytes()
        crc = zlib.crc32(index.tobytes())
        data[-footer.size :] = footer.pack(magic, version, n, start, crc)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "zero", "swap"])
def test_a_damaged_cache_gives_the_batches_of_the_files(split, tmp_path, how):
    """The probe's findings: flipped pixel bytes gave a valid but wrong batch, zeroed ones black
    images, swapped entries image 1 for image 0, all without a word. Now every damaged item is
    decoded from its file (the batches equal the uncached ones, training windows included),
    one warning names the cache file, and the file is removed for the next run to rebuild."""
    items = split.valid_items
    fill = DecodedCache(items, P, "crop", folder=tmp_path)
    _collect(_dl(split, train=False, items=items, cache=fill))
    assert fill.complete
    _damage_cache(fill.path, how)
    later = DecodedCache(items, P, "crop", folder=tmp_path)
    assert later.complete
    plain_valid = _collect(_dl(split, train=False, items=items))
    plain_train = _collect(_dl(split, train=True, items=items), 0)
    with pytest.warns(UserWarning, match="the image cache .* is damaged") as rec:
        got_valid = _collect(_dl(split, train=False, items=items, cache=later))
    (msg,) = _warnings_about(rec, "image cache")
    assert str(later.path) in msg and str(items[{"flip": 2, "zero": 0, "swap": 0}[how]]) in msg
    expect = {"flip": [2], "zero": list(range(12)), "swap": [0, 1]}[how]
    assert np.flatnonzero(later.damaged).tolist() == expect
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per cache
        got_train = _collect(_dl(split, train=True, items=items, cache=later), 0)
        ds = ImageDataset(items, split.valid_labels, split.classes, P, "crop", later)
        item = ds[expect[0]][0]
    for got, plain in ((got_valid, plain_valid), (got_train, plain_train)):
        torch.testing.assert_close(got[0], plain[0], rtol=0, atol=0)
        assert torch.equal(got[1], plain[1])
    plain_ds = ImageDataset(items, split.valid_labels, split.classes, P)
    torch.testing.assert_close(item, plain_ds[expect[0]][0], rtol=0, atol=0)
    assert not later.path.exists()
    assert not DecodedCache(items, P, "crop", folder=tmp_path).complete  # rebuilt next run


def test_a_damaged_cache_under_a_bunch_is_noticed(tmp_path):
    """The probe's script: ImageDataBunch.from_folder(cache=...), one full epoch of each
    loader, bytes flipped in the pixels of every cache file: a new bunch warned of nothing and
    its validation batch differed."""
    root = demo_dataset(tmp_path / "demo", n_per_class=3, size=32)
    folder = tmp_path / "cache"

    def bunch(cache):
        return ImageDataBunch.from_folder(
            root, ds_tfms=None, size=16, bs=4, num_workers=0, seed=0, cache=cache
        )

    first = bunch(folder)
    for dl in (first.train_dl, first.valid_dl):
        for _ in dl:
            pass
    files = sorted(folder.rglob("*.imgs"))
    assert len(files) == 2
    for f in files:
        _damage_cache(f, "flip")
    clean = next(iter(bunch(False).valid_dl))[0]
    with pytest.warns(UserWarning, match="the image cache .* is damaged"):
        got = next(iter(bunch(folder).valid_dl))[0]
    torch.testing.assert_close(got, clean, rtol=0, atol=0)


def test_single_item_access_still_raises_naming_the_file(split, broken):
    items, bad = broken
    ds = ImageDataset(items, split.valid_labels, split.classes, P)
    with pytest.raises(BadImageError, match=bad[0].name):
        ds[1]


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_bunch_with_broken_images_trains_an_epoch(tmp_path, num_workers):
    root = demo_dataset(tmp_path / "demo", n_per_class=3, size=32)
    train_bad = break_images(sorted((root / "train").rglob("*.jpg"))[::5][:3])
    valid_bad = break_images(sorted((root / "valid").rglob("*.jpg"))[:3])
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=num_workers, seed=1)
    model = tiny_model()
    model[-1] = torch.nn.Linear(8, data.c)
    learn = make_learner(data=data, model=model, path=tmp_path)
    with pytest.warns(UserWarning) as rec:
        learn.fit(2, lr=0.01)
    ours = _warnings_about(rec)
    # training and validation, each named once (epoch 0 met every one; the next is silent)
    assert len(ours) == 2 and all(s.startswith("epoch 0") for s in ours)
    for s in ours:
        assert all(str(p) in s for p in (train_bad if "training" in s else valid_bad))
    assert sorted(data.bad_items) == sorted(train_bad + valid_bad)
    assert len(learn.recorder.raw_losses) == 2 * len(data.train_dl)
    with pytest.raises(BadImageError, match=train_bad[0].name):  # predict still refuses it
        learn.predict(train_bad[0])
    data.train_dl.close()
    data.valid_dl.close()


def _die_in_worker(*args, **kwargs):
    if torch.utils.data.get_worker_info() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("expected to run in a worker")


def test_dying_worker_raises_instead_of_hanging(split, monkeypatch):
    monkeypatch.setattr(loader_mod, "decode_readable", _die_in_worker)
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
    with pytest.raises(TypeError, match="train should be a bool, got str 'False'"):
        DeviceDataLoader(ds, 8, **{**kw, "train": "False"})
    with pytest.raises(TypeError, match="channels_last should be a bool, got int 1"):
        DeviceDataLoader(ds, 8, channels_last=1, **kw)
    with pytest.raises(TypeError, match="whole should be a bool, got str 'no'"):
        decode_readable(split.train_items, [0], P, "crop", whole="no")
    with pytest.raises(ValueError, match="labels: expected 48 labels"):
        ImageDataset(split.train_items, split.train_labels[:-1], split.classes, P)


# -- presize windows: non-square images ------------------------------------------------------

# (h, w) of the images of `shaped`, at presize P = 20: 4:1 and 1:4 already presized (their
# pixels say where they are), 3:2, 2:3 and 1:3 resized, square.
SHAPES = [(20, 80), (80, 20), (30, 45), (45, 30), (24, 72), (33, 33)]


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    """Lossless PNGs of SHAPES, two of each, 12 items: red = column, green = row, blue noise."""
    folder = tmp_path_factory.mktemp("shaped")
    rng = np.random.default_rng(0)
    items = []
    for k, (h, w) in enumerate(SHAPES * 2):
        img = np.empty((h, w, 3), np.uint8)
        img[..., 0] = np.arange(w)[None, :]
        img[..., 1] = np.arange(h)[:, None]
        img[..., 2] = rng.integers(0, 256, (h, w))
        items.append(folder / f"{k:02d}.png")
        Image.fromarray(img).save(items[-1])
    return items


def _shaped_dl(items, train=True, bs=6, num_workers=0, cache=None, seed=3, method="crop"):
    ds = ImageDataset(items, [k % 2 for k in range(len(items))], ["a", "b"], P, method, cache)
    return DeviceDataLoader(
        ds, bs, train=train, size=16, device=torch.device("cpu"), seed=seed,
        num_workers=num_workers,
    )  # fmt: skip


def _expected_windows(dl, epoch):
    """The windows of `epoch`, cut here from each image presized whole."""
    draws = dl.window_draws(epoch)
    out = []
    for idx in dl.batch_indices(epoch):
        for i in idx.tolist():
            whole = presize_whole(to_rgb(dl.dataset.items[i]), P, dl.dataset.method)
            u = None if draws is None else draws[i : i + 1]
            (top, left), *_ = window_origins(np.array([whole.shape[1:]]), P, u)
            out.append(whole[:, top : top + P, left : left + P])
    return torch.stack(out)


def test_training_windows_move_over_epochs_and_reach_both_ends(shaped):
    dl = _shaped_dl(shaped, bs=12)  # one batch: every item, each epoch
    lefts, tops = set(), set()
    for epoch in range(12):
        x, y = _collect(dl, epoch)
        torch.testing.assert_close(x, _expected_windows(dl, epoch), rtol=0, atol=0)
        idx = dl.batch_indices(epoch)[0].tolist()
        for k, i in enumerate(idx):
            if SHAPES[i % 6] == (20, 80):  # red is the column: the window's left edge
                assert torch.equal(x[k, 0, 0], torch.arange(20) + x[k, 0, 0, 0])
                lefts.add(int(x[k, 0, 0, 0]))
            if SHAPES[i % 6] == (80, 20):  # green is the row
                tops.add(int(x[k, 1, 0, 0]))
            if SHAPES[i % 6] == (33, 33):  # a square: the whole image, every epoch
                torch.testing.assert_close(x[k], dl.dataset[i][0], rtol=0, atol=0)
    assert len(lefts) > 10 and len(tops) > 10  # 24 draws each over 61 positions
    # over enough epochs every position of the long side is drawn, both ends included
    draws = np.stack([dl.window_draws(e) for e in range(1000)])  # [epochs, items]
    origins = window_origins(np.tile([20, 80], (draws.size, 1)), P, draws.reshape(-1))
    assert set(origins[:, 1].tolist()) == set(range(61)) and (origins[:, 0] == 0).all()
    assert not np.array_equal(draws[0], draws[1])  # fresh each epoch
    assert not np.array_equal(draws[0], _shaped_dl(shaped, seed=4).window_draws(0))
    np.testing.assert_array_equal(draws[5], _shaped_dl(shaped).window_draws(5))  # same seed


def test_validation_and_single_items_take_the_centre(shaped):
    dl = _shaped_dl(shaped, train=False, bs=5)
    assert dl.window_draws(0) is None
    x, _ = _collect(dl, 3)
    torch.testing.assert_close(x, _expected_windows(dl, 3), rtol=0, atol=0)
    for i, p in enumerate(shaped):
        torch.testing.assert_close(x[i], load_image(p, P), rtol=0, atol=0)  # as predict
        torch.testing.assert_close(dl.dataset[i][0], x[i], rtol=0, atol=0)
    assert (x[0, 0, 0] == torch.arange(30, 50)).all()  # 4:1: columns 30..49 of 80
    assert (x[1, 1, :, 0] == torch.arange(30, 50)).all()  # 1:4: rows 30..49
    train = _shaped_dl(shaped, train=True, bs=12)
    torch.testing.assert_close(train.dataset[0][0], x[0], rtol=0, atol=0)


@pytest.mark.parametrize("train", [True, False])
def test_windows_identical_with_0_and_2_workers_cached_or_not(shaped, tmp_path, train):
    """The same seed gives the same windows in every configuration: 0 or 2 workers, no cache,
    the pass that fills the cache (in workers) and passes read from it."""
    ref = _shaped_dl(shaped, train=train, num_workers=0)
    want = [_collect(ref, e) for e in (0, 1)]
    for nw, use_cache in ((2, False), (0, True), (2, True)):
        cache = DecodedCache(shaped, P, "crop", folder=tmp_path / f"{nw}") if use_cache else None
        dl = _shaped_dl(shaped, train=train, num_workers=nw, cache=cache)
        for e in (0, 1, 0):  # with a cache: epoch 0 fills it, then it is read
            x, y = _collect(dl, e)
            torch.testing.assert_close(x, want[e][0], rtol=0, atol=0)
            assert torch.equal(y, want[e][1])
        assert cache is None or cache.complete
        dl.close()
    assert train == (not torch.equal(want[0][0], want[1][0]))


def test_cache_keeps_whole_images(shaped, tmp_path):
    cache = DecodedCache(shaped, P, "crop", folder=tmp_path)
    _collect(_shaped_dl(shaped, cache=cache), 0)  # fills it; drop_last leaves nothing out here
    expect = [tuple(presize_whole(to_rgb(p), P).shape[1:]) for p in shaped]
    assert [tuple(s) for s in cache.shapes.tolist()] == expect
    assert expect[:6] == [(20, 80), (80, 20), (20, 28), (28, 20), (20, 60), (20, 20)]


def test_one_batch_takes_the_windows_of_its_epoch(shaped):
    dl = _shaped_dl(shaped, bs=6)
    dl.set_epoch(5)
    x, y = dl.one_batch()  # augment: center crop to 16 of the window (no spec)
    first = next(iter(dl.uint8_batches(5)))
    torch.testing.assert_close(x, dl.augment(first[0], None), rtol=0, atol=0)


def test_squish_is_unchanged(shaped):
    dl = _shaped_dl(shaped, method="squish", bs=12)
    x, _ = _collect(dl, 2)
    idx = dl.batch_indices(2)[0].tolist()
    expect = torch.stack([load_image(shaped[i], P, "squish") for i in idx])
    torch.testing.assert_close(x, expect, rtol=0, atol=0)


def _drop_in_a_cycle(split) -> None:
    """A loader whose persistent workers run, left inside a reference cycle (as a learner
    and its callbacks are): garbage only for the cycle collector."""
    old = _dl(split, num_workers=2)
    _collect(old)
    cycle = {"loader": old}
    cycle["self"] = cycle


def test_a_loader_collected_in_a_cycle_stops_its_workers_at_once(split):
    gc.collect()
    _drop_in_a_cycle(split)
    start = time.perf_counter()
    gc.collect()
    assert time.perf_counter() - start < 6.0  # 10.3 s before (5 s join timeout per worker)


def test_a_loader_left_in_a_cycle_is_not_finalised_in_a_new_loaders_workers(
    split, monkeypatch, capfd
):
    """A loader left in a cycle must not be inherited by the next loader's forked workers: a
    garbage collection there used to finalise its iterator in the wrong process ("Exception
    ignored ... can only test a child process" on stderr)."""
    _drop_in_a_cycle(split)
    real = loader_mod._BatchDecoder.__getitem__

    def collecting(self, key):
        gc.collect()  # in the worker: what the parent left for collection is found here
        return real(self, key)

    monkeypatch.setattr(loader_mod._BatchDecoder, "__getitem__", collecting)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # not pytest's: print
    new = _dl(split, num_workers=2, seed=4)
    _collect(new)
    new.close()
    monkeypatch.undo()
    err = capfd.readouterr().err
    assert "Exception ignored" not in err and "can only test a child process" not in err


def test_loader_workers_decode_jpegs_as_the_process_that_made_the_loader(tmp_path, monkeypatch):
    """The decoder carries the loader's JPEG_REDUCING_GAP: a worker started by spawn or
    forkserver (macOS; Python 3.14's default) imports the module afresh, with its default,
    and would decode otherwise than this process. A training loader reduces large JPEGs, a
    validation loader decodes them whole (as predict)."""
    from fastcore_ext.data import images as images_mod

    y, x = np.mgrid[0:1200, 0:1600]
    img = np.stack([(x * 255 // 1600), (y * 255 // 1200), (x + y) % 256], -1).astype(np.uint8)
    p = tmp_path / "big.jpg"
    Image.fromarray(img).save(p, quality=90)
    whole = presize_whole(images_mod.to_rgb(p), 32).permute(1, 2, 0)
    dec = loader_mod._BatchDecoder([p], 32, "crop", True, False, jpeg_reducing_gap=None)
    assert images_mod.JPEG_REDUCING_GAP == 2.0  # a fresh worker's default
    got = dec[(torch.tensor([0]), None)]
    np.testing.assert_array_equal(got.packed.numpy(), whole.reshape(-1).numpy())
    assert images_mod.JPEG_REDUCING_GAP == 2.0  # put back
    reduced = loader_mod._BatchDecoder([p], 32, "crop", True, False, jpeg_reducing_gap=2.0)
    assert not np.array_equal(reduced[(torch.tensor([0]), None)].packed, got.packed)


def test_only_training_loaders_reduce_large_jpegs_and_predict_sees_every_route_alike(tmp_path):
    """A large JPEG got other pixels (2 of 120 photos another class) through predict(path),
    get_preds(test_dl) and the CLI (decoded reduced) than through predict(PIL image / bytes /
    array) (whole). Now only the training set is decoded reduced."""
    from fastcore_ext.data import ImageDataLoaders, Resize
    from fastcore_ext.data import images as images_mod

    y, x = np.mgrid[0:1200, 0:1600]
    img = np.stack([(x * 255 // 1600), (y * 7 % 256), (x * y) % 256], -1).astype(np.uint8)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for k in range(4):
            Image.fromarray(np.roll(img, 97 * k, axis=1)).save(tmp_path / cls / f"{k}.jpg")
    dls = ImageDataLoaders.from_folder(
        tmp_path, valid_pct=0.5, seed=0, item_tfms=Resize(32), bs=2, num_workers=0
    )
    f = dls.valid_ds.items[0]
    whole = images_mod.load_image(Image.open(f), 32)
    for item in (f, str(f), np.asarray(Image.open(f)), Image.open(f)):
        assert torch.equal(images_mod.load_image(item, 32), whole)
    valid = next(iter(dls.valid.uint8_batches()))[0][0]  # [3, P, P]
    assert torch.equal(valid, whole)  # the validation loader: the whole decode
    assert dls.train._jpeg_gap() == images_mod.JPEG_REDUCING_GAP and dls.valid._jpeg_gap() is None
