"""The random split of the bunch's from_* constructors: fastai's for the same items and seed,
in fastai's order (v2: ImageDataLoaders, RandomSplitter's; v1: ImageDataBunch,
split_by_rand_pct's)."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fastcore_ext.data import (
    CategoryBlock,
    DataBlock,
    ImageBlock,
    ImageDataBunch,
    ImageDataLoaders,
    RandomSplitter,
    Resize,
    demo_dataset,
    get_image_files,
    parent_label,
    random_split,
)

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

KW = {"item_tfms": Resize(16), "bs": 4, "num_workers": 0}


@pytest.fixture(scope="module")
def ten(tmp_path_factory):
    """10 tiny PNG files, 0.png ... 9.png, with labels 'a' (even) and 'b' (odd)."""
    d = tmp_path_factory.mktemp("ten")
    for i in range(10):
        Image.new("RGB", (16, 16), (i * 20, 0, 0)).save(d / f"{i}.png")
    return d, [d / f"{i}.png" for i in range(10)], ["ab"[i % 2] for i in range(10)]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """12 classes x 6 images of 16 px (train/ and valid/ folders: one tree for valid_pct)."""
    return demo_dataset(tmp_path_factory.mktemp("split") / "demo", n_per_class=6, size=16)


def test_v2_from_lists_splits_as_fastai(ten):
    """fastai 2.8.12: ImageDataLoaders.from_lists(path, fnames, labels, valid_pct=0.2,
    seed=42) on 10 files holds out fnames[2], fnames[6] and trains on fnames[1, 8, 4, 5, 0, 9,
    3, 7], in these orders (RandomSplitter(0.2, seed=42))."""
    d, files, labels = ten
    b = ImageDataLoaders.from_lists(d, files, labels, valid_pct=0.2, seed=42, **KW)
    assert b.valid_ds.items == [files[2], files[6]]
    assert b.train_ds.items == [files[i] for i in (1, 8, 4, 5, 0, 9, 3, 7)]
    assert b.train_ds.labels == [b.classes.index(labels[i]) for i in (1, 8, 4, 5, 0, 9, 3, 7)]


def test_v1_from_lists_splits_as_fastai_v1(ten):
    """fastai v1's split_by_rand_pct(0.2, seed): np.random.seed(seed), the first int(0.2 * n)
    entries of np.random.permutation(n) are the validation set (in that order), the rest
    ascending (np.setdiff1d). np.random.seed(42); np.random.permutation(10) is
    [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]."""
    d, files, labels = ten
    state = np.random.get_state()
    b = ImageDataBunch.from_lists(d, files, labels, valid_pct=0.2, seed=42, ds_tfms=None,
                                  size=16, bs=4, num_workers=0)  # fmt: skip
    assert b.valid_ds.items == [files[8], files[1]]
    assert b.train_ds.items == [files[i] for i in (0, 2, 3, 4, 5, 6, 7, 9)]
    assert b.valid_ds.labels == [b.classes.index(labels[i]) for i in (8, 1)]
    np.random.set_state(state)
    np.random.seed(42)
    assert np.random.permutation(10)[:2].tolist() == [8, 1]  # the rule, as v1 writes it


@pytest.mark.parametrize("rule", ["v1", "v2"])
def test_the_validation_size_truncates_as_fastais(rule):
    """fastai's RandomSplitter and v1's split_by_rand_pct hold out int(valid_pct * n) items,
    truncated, float error included: 13 * 0.2 = 2.6 gives 2, 7 * 0.5 = 3.5 gives 3, and
    0.29 * 100 = 28.999999999999996 gives 28 (not the 29 a rounding rule would give)."""
    for n, pct, n_valid in ((13, 0.2, 2), (7, 0.5, 3), (100, 0.29, 28), (10, 0.7, 7)):
        train, valid = random_split(n, pct, 0, rule)
        assert len(valid) == n_valid and sorted(train + valid) == list(range(n))


@pytest.mark.parametrize("seed", [42, 7])
def test_v2_from_folder_equals_the_datablock_with_random_splitter(root, seed):
    """The probe's finding: from_folder(valid_pct, seed) and DataBlock(RandomSplitter(seed))
    held out different images; fastai's are the same, in the same order."""
    a = ImageDataLoaders.from_folder(root, valid_pct=0.2, seed=seed, **KW)
    b = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
        splitter=RandomSplitter(valid_pct=0.2, seed=seed), item_tfms=Resize(16),
    ).dataloaders(root, bs=4, num_workers=0)  # fmt: skip
    assert a.valid_ds.items == b.valid_ds.items and a.train_ds.items == b.train_ds.items
    files = get_image_files(root)
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    assert a.valid_ds.items == [files[i] for i in perm[: int(0.2 * len(files))]]


def test_valid_set_keeps_the_permutations_order(root):
    """fastai keeps the permutation's order, so the first validation images mix classes
    (ours sorted them: show_batch of the valid set showed one class)."""
    b = ImageDataLoaders.from_folder(root, valid_pct=0.25, seed=0, **KW)
    assert b.valid_ds.items != sorted(b.valid_ds.items)
    assert len({p.parent.name for p in b.valid_ds.items[:6]}) > 1


@pytest.mark.parametrize("cls", [ImageDataLoaders, ImageDataBunch])
def test_seed_none_splits_by_the_same_rule_with_the_drawn_seed(ten, cls):
    d, files, labels = ten
    kw = KW if cls is ImageDataLoaders else {"ds_tfms": None, "size": 16, "bs": 4,
                                              "num_workers": 0}  # fmt: skip
    a = cls.from_lists(d, files, labels, valid_pct=0.3, **kw)
    b = cls.from_lists(d, files, labels, valid_pct=0.3, seed=a.seed, **kw)
    assert a.valid_ds.items == b.valid_ds.items and a.train_ds.items == b.train_ds.items


def test_the_untrained_class_warning_is_about_the_split_used(ten):
    """One 'b' image of 10: the warning that every 'b' is in the validation set comes exactly
    for the seeds whose split (fastai's) holds it out, in each spelling's rule."""
    d, files, _ = ten
    labels = ["a"] * 9 + ["b"]
    v1_kw = {"ds_tfms": None, "size": 16, "bs": 4, "num_workers": 0}
    for cls, kw, rule in ((ImageDataLoaders, KW, "v2"), (ImageDataBunch, v1_kw, "v1")):
        out = [s for s in range(60) if 9 in random_split(10, 0.2, s, rule)[1]]
        kept = [s for s in range(60) if s not in out]
        with pytest.warns(UserWarning, match=r"put every image of 1 class\(es\) in the valid"):
            cls.from_lists(d, files, labels, valid_pct=0.2, seed=out[0], **kw)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*validation set")
            cls.from_lists(d, files, labels, valid_pct=0.2, seed=kept[0], **kw)


def test_labels_that_differ_only_in_case_or_spaces_are_named(ten):
    """'cat', ' cat ' and 'Cat' are three classes (fastai's too), silently."""
    d, files, _ = ten
    labels = ["cat", " cat ", "Cat", "dog", "dog"] * 2
    with pytest.warns(UserWarning, match=r"labels: 3 classes differ only in case or surrounding "
                      r"spaces \(' cat ', 'Cat', 'cat'\)"):  # fmt: skip
        b = ImageDataLoaders.from_lists(d, files, labels, valid_pct=0.2, seed=0, **KW)
    assert len(b.classes) == 4
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="labels: ")
        ImageDataLoaders.from_lists(d, files, ["cat", "dog"] * 5, valid_pct=0.2, seed=0, **KW)
