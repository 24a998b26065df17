"""The fastai v2 object API of the bunch that fastbook and the docs touch: test_dl,
from_path_re / from_path_func, dls[0] / dls[1], dl.items, vocab.o2i, from_folder(vocab=),
DataBlock.dataloaders(shuffle=), and TypeErrors naming the method called."""

import re
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from fakes import make_learner
from torch import nn

from fastcore_ext.data import (
    BadImageError,
    CategoryBlock,
    CategoryMap,
    DataBlock,
    ImageBlock,
    ImageDataBunch,
    ImageDataLoaders,
    MissingPathError,
    MultiCategoryBlock,
    PILImage,
    RandomSplitter,
    RegressionBlock,
    Resize,
    demo_dataset,
    get_image_files,
    parent_label,
)
from fastcore_ext.foundation import first

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

KW = {"item_tfms": Resize(16), "bs": 4, "num_workers": 0, "seed": 0}
PAT_V2 = r"^(.+)_\d+\.jpg$"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """12 classes x 4 images of 16 px: <root>/{train,valid}/<class>/<class>_<i>.jpg."""
    return demo_dataset(tmp_path_factory.mktemp("v2api") / "demo", n_per_class=4, size=16)


@pytest.fixture(scope="module")
def dls(root):
    return ImageDataLoaders.from_folder(root, valid_pct=0.25, **KW)


def _model(c: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, c))


# -- test_dl ------------------------------------------------------------------------------------


def test_test_dl_unlabelled_gives_get_preds_rows_in_the_files_order(dls, root):
    files = get_image_files(root)[::5]  # 10 files, from both folders
    learn = make_learner(data=dls, model=_model(dls.c), splitter=None)
    dl = dls.test_dl(files)
    assert dl.items == files and len(dl.dataset) == 10 and dl.bs == dls.valid_dl.bs
    probs, targs = learn.get_preds(dl=dl)
    assert probs.shape == (10, dls.c) and targs is None
    # each row is the prediction of that file: the model on its validation transform
    with torch.no_grad():
        learn.model.eval()
        expected = torch.softmax(learn.model(dls.preprocess(files)), dim=-1)
    torch.testing.assert_close(probs, expected)
    (x,) = dl.one_batch()  # fastai's test_dl batches are 1-tuples: x, = first(dl)
    assert x.shape == (4, 3, 16, 16)
    (first_x,) = first(dl)
    assert torch.equal(first_x, x)


def test_test_dl_with_labels_labels_as_the_training_items(dls, root):
    files = get_image_files(root)[::7]
    learn = make_learner(data=dls, model=_model(dls.c), splitter=None)
    dl = dls.test_dl(files, with_labels=True, bs=3)
    _, targs = learn.get_preds(dl=dl)
    assert targs.tolist() == [dls.vocab.index(p.parent.name) for p in files]
    assert len(learn.validate(dl=dl)) >= 1  # validate takes it too
    by_name = ImageDataLoaders.from_name_re(root, get_image_files(root), PAT_V2, **KW)
    targs = [int(y) for _, ys in by_name.test_dl(files, with_labels=True) for y in ys]
    assert targs == [by_name.vocab.o2i[p.name.rsplit("_", 1)[0]] for p in files]
    v1 = {"size": 16, "ds_tfms": None, "bs": 4, "num_workers": 0, "seed": 0}
    by_func = ImageDataBunch.from_name_func(
        root, get_image_files(root), lambda p: p.parent.name, **v1
    )
    assert by_func.test_dl(files, with_labels=True).dataset.labels == [
        by_func.vocab.o2i[p.parent.name] for p in files
    ]


def test_test_dl_refusals(dls, root, tmp_path):
    files = get_image_files(root)
    with pytest.raises(TypeError, match="test_items: expected a list of image files"):
        dls.test_dl(root)
    with pytest.raises(TypeError, match=r"test_items: expected image files .* got dict"):
        dls.test_dl([{"file": files[0]}])
    with pytest.raises(ValueError, match="test_items: expected at least one image file"):
        dls.test_dl([])
    with pytest.raises(MissingPathError, match="test_items: 1 of 2 files do not exist"):
        dls.test_dl([files[0], tmp_path / "nope.jpg"])
    odd = tmp_path / "zebra" / "z_1.jpg"
    odd.parent.mkdir()
    shutil.copy(files[0], odd)
    with pytest.raises(ValueError, match=r"with_labels: 1 files have labels outside the vocab.*"
                       r"z_1.jpg \('zebra'\)"):  # fmt: skip
        dls.test_dl([files[0], odd], with_labels=True)
    listed = ImageDataLoaders.from_lists(root, files, [p.parent.name for p in files], **KW)
    with pytest.raises(ValueError, match="with_labels: True needs the rule .* a list"):
        listed.test_dl(files[:2], with_labels=True)
    assert listed.test_dl(files[:2]).dataset.labels is None
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"x")  # a loader would skip it: get_preds' rows would shift
    with pytest.raises(BadImageError, match=r"test_items: 1 of 3 files cannot be decoded .*"
                       r"broken.jpg"):  # fmt: skip
        dls.test_dl([files[0], broken, files[1]])
    pd = pytest.importorskip("pandas")
    with pytest.raises(TypeError, match="test_items: expected a list of image files, got a Data"):
        dls.test_dl(pd.DataFrame({"fname": [str(files[0])], "label": ["a"]}))


def test_vocab_names_several_indices_as_fastais(dls):
    """fastai's ``dls.vocab[preds.argmax(1)]`` and ``vocab[[0, 2]]``: the names, an L."""
    v = dls.vocab
    assert v[torch.tensor([0, 2, 1])] == [v[0], v[2], v[1]]
    assert v[[0, 2]] == [v[0], v[2]] and type(v[[0, 2]]).__name__ == "L"
    assert v[torch.tensor(1)] == v[1] and v[-1] == v[len(v) - 1] and v[:2] == [v[0], v[1]]
    with pytest.raises(TypeError):
        v[torch.tensor([0.5])]


def test_test_dl_of_a_datablock_labels_with_get_y(root):
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
        splitter=RandomSplitter(seed=1), item_tfms=Resize(16),
    )  # fmt: skip
    dls = block.dataloaders(root, bs=4, num_workers=0)
    files = get_image_files(root)[:6]
    assert dls.test_dl(files, with_labels=True).dataset.labels == [
        dls.vocab.o2i[p.parent.name] for p in files
    ]


# -- from_path_re / from_path_func -----------------------------------------------------------


def test_from_path_re_and_func_label_from_the_whole_path(root):
    files = get_image_files(root)
    seen = []

    def label_func(p):
        seen.append(type(p))
        return p.parent.name  # only the path knows the folder

    a = ImageDataLoaders.from_path_func(root, files, label_func, **KW)
    assert set(seen) == {type(files[0])}
    b = ImageDataLoaders.from_path_re(root, files, r"/([^/]+)/[^/]+\.jpg$", **KW)
    for d in (a, b):
        assert type(d) is ImageDataLoaders and d.vocab == sorted({p.parent.name for p in files})
        for p, y in zip(d.train_ds.items, d.train_ds.labels, strict=True):
            assert p.parent.name == d.vocab[y]
    assert a.valid_ds.items == b.valid_ds.items  # the same split for the same seed
    # the name alone has no folder: from_name_re with the same pattern matches nothing
    with pytest.raises(ValueError, match="does not match file"):
        ImageDataLoaders.from_name_re(root, files, r"/([^/]+)/[^/]+\.jpg$", **KW)
    with pytest.raises(TypeError, match=r"ImageDataLoaders.from_path_re\(\) got an unexpected "
                       r"keyword argument 'valid_col'"):  # fmt: skip
        ImageDataLoaders.from_path_re(root, files, r"/([^/]+)/", valid_col="is_valid")


# -- the loaders and the vocab ------------------------------------------------------------------


def test_dls_index_and_loader_items(dls):
    assert dls[0] is dls.train and dls[1] is dls.valid and dls[-1] is dls.valid
    with pytest.raises(IndexError, match=r"expected 0 \(train\) or 1 \(valid\), got 2"):
        dls[2]
    assert dls.valid.items == dls.valid_ds.items and dls.train.items == dls.train_ds.items
    x, y = next(iter(dls.valid))
    assert y.tolist() == dls.valid_ds.labels[: len(y)]  # the valid loader yields items' order


def test_loader_new_changes_bs_and_shuffle_only(dls):
    small = dls.valid.new(bs=3)
    assert small.bs == 3 and dls.valid.bs == 4 and small.items == dls.valid.items
    x, y = small.one_batch()
    x4, y4 = dls.valid.one_batch()
    assert torch.equal(x, x4[:3]) and torch.equal(y, y4[:3])
    ordered = dls.train.new(shuffle=False)
    assert ordered.bs == dls.train.bs and ordered.train and not ordered.shuffle
    n = len(dls.train_ds)
    assert torch.cat(ordered.batch_indices(0)).tolist() == list(range(n - n % 4))


def test_vocab_is_a_list_with_o2i(dls):
    v = dls.vocab
    assert isinstance(v, CategoryMap) and isinstance(v, list) and v == dls.classes
    assert v.o2i == {c: i for i, c in enumerate(sorted(v))} and v[3] == sorted(v)[3]


def test_from_folder_vocab_is_sorted_as_fastais_and_classes_keeps_v1s_order(root):
    """fastai 2.8's from_folder(vocab=v) sorts v (its CategoryBlock(vocab=v) does, as the
    DataBlock here); fastai v1's from_folder(classes=c) keeps c's order. Other labels refused."""
    classes = sorted(p.name for p in (root / "train").iterdir())
    given = [*reversed(classes), "unseen"]
    d = ImageDataLoaders.from_folder(root, vocab=given, **KW)
    assert d.vocab == sorted(given) and d.c == len(given)
    v1 = ImageDataBunch.from_folder(root, classes=given, ds_tfms=None, size=16, bs=4, num_workers=0)
    assert v1.classes == given
    for b, names in ((d, sorted(given)), (v1, given)):
        for p, y in zip(b.valid_ds.items, b.valid_ds.labels, strict=True):
            assert names[y] == p.parent.name
    with pytest.raises(ValueError, match=r"vocab: the labels '.*' of the images are not in"):
        ImageDataLoaders.from_folder(root, vocab=classes[1:], **KW)
    with pytest.raises(ValueError, match=r"classes: the labels '.*' of the images are not in"):
        ImageDataBunch.from_folder(root, classes=classes[1:], size=16, num_workers=0)
    with pytest.raises(TypeError, match="vocab: expected a list of class names"):
        ImageDataLoaders.from_folder(root, vocab="abc", **KW)
    with pytest.raises(ValueError, match="classes: give vocab .* or classes .*, not both"):
        ImageDataLoaders.from_folder(root, vocab=given, classes=given, **KW)


def test_datablock_dataloaders_shuffle_false_keeps_the_order(root):
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
        splitter=RandomSplitter(seed=1), item_tfms=Resize(16),
    )  # fmt: skip
    dls = block.dataloaders(root, bs=4, num_workers=0, shuffle=False)
    n = len(dls.train_ds)
    assert n % 4, "the test needs a partial last batch"
    # fastai's drop_last=shuffle: an unshuffled training loader keeps its last partial batch
    assert not dls.train.drop_last and len(dls.train) == -(-n // 4) and dls.train.n == n
    for epoch in (0, 1):
        assert torch.cat(dls.train.batch_indices(epoch)).tolist() == list(range(n))
    assert sum(len(y) for _, y in dls.train) == n
    shuffled = block.dataloaders(root, bs=4, num_workers=0)
    assert shuffled.train.drop_last and len(shuffled.train) == n // 4
    assert torch.cat(shuffled.train.batch_indices(0)).tolist() != list(range(n - n % 4))
    # drop_last given overrides the rule either way; a new() loader keeps its own
    kept = block.dataloaders(root, bs=4, num_workers=0, drop_last=False)
    assert kept.train.shuffle and sorted(torch.cat(kept.train.batch_indices(0)).tolist()) == list(
        range(n)
    )
    dropped = block.dataloaders(root, bs=4, num_workers=0, shuffle=False, drop_last=True)
    assert len(dropped.train) == n // 4 and dropped.train.new(shuffle=True).drop_last
    assert not dropped.train.new(drop_last=False).drop_last
    with pytest.raises(TypeError, match="drop_last should be a bool, got"):
        block.dataloaders(root, bs=4, num_workers=0, drop_last="no")
    # a batch size over the training set is refused only when its one partial batch is dropped
    big = n + 3
    with pytest.raises(ValueError, match=f"bs: {big} is larger than the training set"):
        block.dataloaders(root, bs=big, num_workers=0)
    whole = block.dataloaders(root, bs=big, num_workers=0, shuffle=False)
    assert [len(b) for b in whole.train.batch_indices(0)] == [n]
    # a last batch of one is kept as asked, with a warning: BatchNorm cannot train on it
    with pytest.warns(UserWarning, match="the last training batch of every epoch holds one"):
        one = block.dataloaders(root, bs=n - 1, num_workers=0, shuffle=False)
    assert [len(y) for _, y in one.train] == [n - 1, 1]


def test_unknown_keywords_name_the_method_called(root):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"fname": ["a.jpg"], "label": ["a"]})
    unexpected = "() got an unexpected keyword argument"
    with pytest.raises(ValueError, match="label_delim: multi-label targets are not supported"):
        ImageDataLoaders.from_df(df, root, label_delim=" ")  # multi-label: not offered
    with pytest.raises(ValueError, match="label_delim: multi-label targets are not supported"):
        ImageDataLoaders.from_csv(root, label_delim=" ")
    with pytest.raises(ValueError, match="y_block: only CategoryBlock is supported .*Regression"):
        ImageDataLoaders.from_df(df, root, y_block=RegressionBlock)
    with pytest.raises(ValueError, match="y_block: only CategoryBlock is supported"):
        ImageDataLoaders.from_lists(root, ["a.jpg"], ["a"], y_block=MultiCategoryBlock)
    with pytest.raises(
        TypeError, match=re.escape(f"ImageDataLoaders.from_csv{unexpected} 'img_cls'")
    ):
        ImageDataLoaders.from_csv(root, img_cls=None)


def test_train_ds_vocab_and_get_image_files_folders(dls, root):
    """fastai v2's ``dls.train_ds.vocab`` (with o2i) and ``get_image_files(path,
    folders=[...])`` (only those sub-folders of path; '.' for the files directly in it)."""
    assert dls.train_ds.vocab == dls.vocab and dls.valid_ds.vocab.o2i == dls.vocab.o2i
    train = get_image_files(root, folders="train")
    assert train and all(p.relative_to(root).parts[0] == "train" for p in train)
    both = get_image_files(root, folders=["valid", "train", "missing"])
    assert both == get_image_files(root) and type(both).__name__ == "L"
    assert get_image_files(root, folders=["."]) == []  # no image lies directly in root
    with pytest.raises(TypeError, match="folders: expected a folder name or a list"):
        get_image_files(root, folders=[1])


def test_from_df_and_from_csv_take_valid_col_and_suff(tmp_path):
    """fastai v2's valid_col (the true rows are the validation set) and suff were refused as
    unexpected keywords (fastbook's from_df(df, path, valid_col='is_valid'))."""
    pd = pytest.importorskip("pandas")
    for i in range(12):
        PIL.Image.new("RGB", (16, 16), (20 * i, 0, 0)).save(tmp_path / f"im{i}.png")
    stems = [f"im{i}" for i in range(12)]
    flags = [i % 4 == 0 for i in range(12)]  # rows 0, 4, 8 validate
    df = pd.DataFrame({"fname": stems, "label": [i % 2 for i in range(12)], "is_valid": flags})
    dls = ImageDataLoaders.from_df(
        df, tmp_path, suff=".png", valid_col="is_valid", item_tfms=Resize(16), bs=4,
        num_workers=0,
    )  # fmt: skip
    assert [p.name for p in dls.valid_ds.items] == ["im0.png", "im4.png", "im8.png"]
    assert len(dls.train_ds) == 9 and dls.vocab == ["0", "1"]
    df.to_csv(tmp_path / "labels.csv", index=False)  # is_valid as True / False
    dls = ImageDataLoaders.from_csv(
        tmp_path, "labels.csv", suff=".png", valid_col=2, item_tfms=Resize(16), bs=4,
        num_workers=0,
    )  # fmt: skip
    assert [p.name for p in dls.valid_ds.items] == ["im0.png", "im4.png", "im8.png"]
    with pytest.raises(ValueError, match="suff / suffix: give one file suffix"):
        ImageDataLoaders.from_df(df, tmp_path, suff=".png", suffix=".jpg")
    every = ImageDataLoaders.from_df(df.assign(is_valid=False), tmp_path, suff=".png",
                                     valid_col="is_valid", bs=4, num_workers=0)  # fmt: skip
    assert len(every.train_ds) == 12 and len(every.valid_ds) == 0  # no validation set
    with pytest.raises(ValueError, match="valid_col: expected training rows, got 12 valid"):
        ImageDataLoaders.from_df(df.assign(is_valid=True), tmp_path, suff=".png",
                                 valid_col="is_valid")  # fmt: skip
    lone = df.assign(label=[2 if i == 4 else i % 2 for i in range(12)])  # 2 only validates
    with pytest.warns(UserWarning, match=r"valid_col: the validation column put every image "
                      r"of 1 class\(es\) .*'2' \(1\)\. Mark some of their rows"):  # fmt: skip
        ImageDataLoaders.from_df(lone, tmp_path, suff=".png", valid_col="is_valid",
                                 item_tfms=Resize(16), bs=4, num_workers=0)  # fmt: skip
    (tmp_path / "bad.csv").write_text("fname,label,v\nim0,0,maybe\nim1,1,0\n")
    with pytest.raises(ValueError, match="valid_col: expected True/False or 1/0 .*'maybe'"):
        ImageDataLoaders.from_csv(tmp_path, "bad.csv", suff=".png", valid_col="v")
    # a DataFrame's column as the CSV's: text True/False and 1/0 read, NaN a training row,
    # other text refused (bool('no') made every row a validation row: "got 0 training")
    for column in (["True" if f else "false" for f in flags], [float(f) for f in flags],
                   [1.0 if f else float("nan") for f in flags]):  # fmt: skip
        dls = ImageDataLoaders.from_df(df.assign(is_valid=column), tmp_path, suff=".png",
                                       valid_col="is_valid", item_tfms=Resize(16), bs=4,
                                       num_workers=0)  # fmt: skip
        assert [p.name for p in dls.valid_ds.items] == ["im0.png", "im4.png", "im8.png"]
    yes_no = df.assign(is_valid=["yes" if f else "no" for f in flags])
    with pytest.raises(ValueError, match=r"valid_col: expected True/False or 1/0 in every row, "
                       r"got 'yes' \(str\) in data row 1"):  # fmt: skip
        ImageDataLoaders.from_df(yes_no, tmp_path, suff=".png", valid_col="is_valid")


def test_test_dl_of_images_in_memory(dls, root):
    """fastbook ch. 18: x, = first(dls.test_dl([img])) with a PILImage; arrays, tensors and
    files may mix; rows are the images' validation transform, in order."""
    files = get_image_files(root)[:3]
    img = PILImage.create(files[0])
    arr = np.array(PIL.Image.open(files[1]).convert("RGB"))
    items = [img, arr, files[2]]
    dl = dls.test_dl(items)
    (x,) = first(dl)
    torch.testing.assert_close(x, dls.preprocess(files))
    learn = make_learner(data=dls, model=_model(dls.c), splitter=None)
    probs, targs = learn.get_preds(dl=dl)
    assert probs.shape == (3, dls.c) and targs is None
    with pytest.raises(ValueError, match="with_labels: labels come from the image files"):
        dls.test_dl(items, with_labels=True)
    with pytest.raises(TypeError, match="the image at position 1 cannot be read"):
        dls.test_dl([img, np.zeros((4, 4, 3), dtype=np.int32)])
    with pytest.raises(TypeError, match="expected image files .*, got int at position 0"):
        dls.test_dl([3])


def test_normalize_without_stats_measures_them_on_a_batch(root):
    """fastbook ch. 13's batch_tfms=Normalize(): the stats of one batch (a validation batch,
    as data.normalize() measures them); raised 'missing 2 required positional arguments'."""
    from fastcore_ext.data import Normalize

    dls = ImageDataLoaders.from_folder(root, valid_pct=0.3, batch_tfms=Normalize(), **KW)
    plain = ImageDataLoaders.from_folder(root, valid_pct=0.3, **KW)
    x, _ = plain.valid.one_batch()
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    torch.testing.assert_close(torch.tensor(dls.stats[0]), mean)
    torch.testing.assert_close(torch.tensor(dls.stats[1]), std)
    xn, _ = dls.valid.one_batch()
    torch.testing.assert_close(xn.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="Normalize: give both mean and std, or neither"):
        Normalize(mean=[0.5] * 3)
