"""fastai v1's unlabelled test set (from_*(test=...), data.add_test, data.dl('test'),
get_preds / TTA with DatasetType.Test, load_learner(test=...)) and v1's resize keywords
(resize_method, padding_mode) and one_batch keywords (denorm, cpu)."""

from __future__ import annotations

import io
import shutil
import warnings

import pytest
import torch

from fastcore_ext.vision import (
    ClassificationInterpretation,
    DatasetType,
    ImageDataBunch,
    ResizeMethod,
    create_cnn,
    demo_dataset,
    get_image_files,
    get_transforms,
    imagenet_stats,
    load_learner,
    models,
)

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

KW = {"size": 16, "bs": 4, "num_workers": 0, "seed": 0}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """12 classes x 3 images of 16 px in train/ and valid/, and test/ with 5 copies of
    validation images (named t0..t4, out of their order on disk)."""
    folder = demo_dataset(tmp_path_factory.mktemp("v1test") / "demo", n_per_class=3, size=16)
    (folder / "test").mkdir()
    for i, f in enumerate(sorted(get_image_files(folder / "valid"))[:5]):
        shutil.copy(f, folder / "test" / f"t{4 - i}.jpg")
    return folder


@pytest.fixture(scope="module")
def data(root):
    return ImageDataBunch.from_folder(root, test="test", ds_tfms=get_transforms(), **KW).normalize(
        imagenet_stats
    )


@pytest.fixture(scope="module")
def learn(data, tmp_path_factory):
    torch.manual_seed(0)
    learn = create_cnn(
        data, models.resnet18, pretrained=False, path=tmp_path_factory.mktemp("v1test_learn"),
        precision="fp32",
    )  # fmt: skip
    learn.progress.stream = io.StringIO()
    return learn


def test_from_folder_test_is_the_folder_of_unlabelled_images(data, root):
    files = sorted(get_image_files(root / "test"))
    assert data.test_ds.items == files and data.test_ds.labels is None
    assert "test 5 images" in repr(data)
    x, y = data.one_batch(DatasetType.Test)
    assert y is None and x.shape == (4, 3, 16, 16)
    assert data.dl("test") is data.dl(DatasetType.Test) and data.dl() is data.valid_dl
    # normalize() after the bunch was built normalizes the test set too
    x_v = data.valid_dl.one_batch()[0]
    assert abs(x.mean().item() - x_v.mean().item()) < 1.0 and x.min() < 0


def test_get_preds_of_the_test_set_in_its_order(learn, data):
    probs, targets = learn.get_preds(ds_type=DatasetType.Test)
    assert targets is None and probs.shape == (5, data.c)
    alone = learn.get_preds(dl=data.test_dl(data.test_ds.items))[0]
    assert torch.equal(probs, alone)
    # row i is file i: predict of the file agrees
    first = learn.predict(data.test_ds.items[2])[2]
    torch.testing.assert_close(first, probs[2], rtol=1e-4, atol=1e-5)


def test_tta_of_the_test_set(learn, data):
    preds, targets = learn.TTA(ds_type=DatasetType.Test)
    assert targets is None and preds.shape == (5, data.c)
    preds2, targets2 = learn.tta(ds_type="test", n=2)
    assert targets2 is None and preds2.shape == (5, data.c)


def test_the_test_set_has_no_labels_to_validate_or_interpret(learn):
    with pytest.raises(ValueError, match="y is None, but validate computes the loss"):
        learn.validate(DatasetType.Test)
    with pytest.raises(ValueError, match="the test set has no labels to compare with"):
        ClassificationInterpretation.from_learner(learn, DatasetType.Test)


def test_add_test_replaces_the_set_and_a_bunch_without_one_says_how(root, learn):
    plain = ImageDataBunch.from_folder(root, **KW)
    assert plain.test_ds is None
    with pytest.raises(ValueError, match=r"no test set; add one with data.add_test\(files\)"):
        plain.dl("test")
    with pytest.raises(ValueError, match="ds_type: expected 'train', 'valid' or 'test'"):
        plain.dl("fix")
    files = sorted(get_image_files(root / "valid"))[:3]
    plain.add_test(files)
    assert plain.test_ds.items == files and len(plain.dl("test").dataset) == 3
    plain.add_test(files[:1])
    assert len(plain.test_ds) == 1
    with pytest.raises(TypeError, match="test_items: expected a list of image files"):
        plain.add_test(root / "test")


def test_valid_pct_leaves_the_test_folder_out(root, tmp_path):
    flat = tmp_path / "flat"
    for split in ("train", "valid"):
        for c in (root / split).iterdir():
            shutil.copytree(c, flat / c.name, dirs_exist_ok=True)
    shutil.copytree(root / "test", flat / "test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = ImageDataBunch.from_folder(flat, train=".", valid_pct=0.25, test="test", **KW)
    assert not [w for w in caught if "test" in str(w.message)]  # not a folder without images
    assert "test" not in b.classes and len(b.classes) == 12
    labelled_files = len(get_image_files(flat)) - 5
    assert len(b.train_ds) + len(b.valid_ds) == labelled_files and len(b.test_ds) == 5
    labelled = ImageDataBunch.from_folder(flat, train=".", valid_pct=0.25, **KW)
    assert "test" in labelled.classes  # without test=, a folder like any other (fastai's)


def test_test_folder_refusals(root, tmp_path):
    with pytest.raises(
        ValueError, match="test: expected a folder of unlabelled images, .*nope does not exist"
    ):
        ImageDataBunch.from_folder(root, test="nope", **KW)
    (root / "empty").mkdir(exist_ok=True)
    try:
        with pytest.raises(ValueError, match="test: the folder .*empty holds no image file"):
            ImageDataBunch.from_folder(root, test="empty", **KW)
    finally:
        (root / "empty").rmdir()
    with pytest.raises(TypeError, match="test: expected the name of a folder of images, got 3"):
        ImageDataBunch.from_folder(root, test=3, **KW)


@pytest.mark.filterwarnings("ignore:valid_pct. the random split")
def test_other_constructors_take_test(root):
    files = sorted(get_image_files(root / "train"))
    b = ImageDataBunch.from_name_func(
        root, files, label_func=lambda p: p.parent.name, test="test", **KW
    )
    assert len(b.test_ds) == 5
    b = ImageDataBunch.from_lists(root, files, [f.parent.name for f in files], test="test", **KW)
    assert len(b.test_ds) == 5


def test_load_learner_test_adds_the_set(learn, data, root):
    learn.export()
    probs = learn.get_preds(ds_type=DatasetType.Test)[0]
    loaded = load_learner(learn.path, test=root / "test")
    assert loaded.data.test_ds.items == data.test_ds.items
    got, targets = loaded.get_preds(ds_type=DatasetType.Test)
    assert targets is None
    torch.testing.assert_close(got, probs, rtol=1e-4, atol=1e-5)
    files = list(reversed(data.test_ds.items))[:2]
    listed = load_learner(learn.path, test=files)
    assert listed.data.test_ds.items == files and len(listed.get_preds(DatasetType.Test)[0]) == 2
    with pytest.raises(
        ValueError,
        match=r"test: expected a folder of unlabelled images, .*nope "
        r"does not exist",
    ):  # it named test_items and no cause
        load_learner(learn.path, test=root / "nope")
    bare = load_learner(learn.path)
    with pytest.raises(ValueError, match=r"no test set yet; add one with learn.data.add_test"):
        bare.get_preds(ds_type=DatasetType.Test)
    bare.data.add_test(files)
    assert len(bare.get_preds(ds_type="test")[0]) == 2


# -- v1's resize and one_batch keywords ------------------------------------------------------


def test_resize_method_and_padding_mode(root):
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), resize_method=ResizeMethod.SQUISH, **KW
    )
    assert b.valid_ds.method == "squish" and b.spec.pad_mode == "reflection"
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), resize_method=ResizeMethod.PAD, padding_mode="zeros", **KW
    )
    assert b.valid_ds.method == "pad-zeros" and b.spec.pad_mode == "zeros"
    b = ImageDataBunch.from_folder(root, padding_mode="border", **KW)  # no augmentation
    assert b.valid_ds.method == "crop" and b.spec is None
    assert ImageDataBunch.from_folder(root, resize_method="SQUISH", **KW).valid_ds.method == (
        "squish"
    )


def test_resize_keyword_refusals(root):
    from fastcore_ext.vision import Resize

    with pytest.raises(ValueError, match=r"resize_method: expected ResizeMethod.CROP, SQUISH"):
        ImageDataBunch.from_folder(root, resize_method="zoom", **KW)
    with pytest.raises(ValueError, match=r"padding_mode: expected one of .*got 'wrap'"):
        ImageDataBunch.from_folder(root, padding_mode="wrap", **KW)
    kw = {k: v for k, v in KW.items() if k != "size"}
    with pytest.raises(ValueError, match="cannot be mixed with v2's item_tfms"):
        ImageDataBunch.from_folder(root, item_tfms=Resize(16), resize_method="squish", **kw)


def test_one_batch_v1_keywords(data):
    x, y = data.one_batch(DatasetType.Valid)
    xd, yd = data.one_batch(DatasetType.Valid, denorm=True, cpu=True)
    assert xd.device.type == "cpu" and yd.device.type == "cpu" and torch.equal(y.cpu(), yd)
    torch.testing.assert_close(xd, data.denorm(x).cpu())
    assert xd.min() >= 0 and xd.max() <= 1 and x.min() < 0
    with pytest.raises(TypeError, match="denorm"):
        data.one_batch(denorm="yes")
