"""fastai v2's DataBlock API (fastcore_ext.data.block) with its splitters and labellers
(fastcore_ext.data.items): fastai's splits and labels, the vocab, refusals, new, summary, and
fastbook's chapter 2 / chapter 5 code end to end on tiny images.

The expected splits were measured with fastai 2.8.12 (torch 2.14.1, CPU), in fastai's own
environment, by calling its splitters on ``list(range(n))`` (or the items shown), e.g.::

    from fastai.data.transforms import RandomSplitter
    t, v = RandomSplitter(valid_pct=0.2, seed=42)(list(range(10)))
    print(list(map(int, t)), list(map(int, v)))   # [1, 8, 4, 5, 0, 9, 3, 7] [2, 6]
"""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastcore_ext import plots
from fastcore_ext.augment import aug_transforms
from fastcore_ext.data import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    EndSplitter,
    FileGetter,
    FileSplitter,
    FuncSplitter,
    GrandparentSplitter,
    ImageBlock,
    ImageDataLoaders,
    ImageGetter,
    IndexSplitter,
    IntToFloatTensor,
    MaskBlock,
    MaskSplitter,
    MissingPathError,
    MultiCategoryBlock,
    Normalize,
    PILImageBW,
    RandomResizedCrop,
    RandomSplitter,
    RandomSubsetSplitter,
    RegexLabeller,
    RegressionBlock,
    Resize,
    ResizeMethod,
    ToTensor,
    TrainTestSplitter,
    get_image_files,
    parent_label,
    using_attr,
)

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

# fastai 2.8.12: RandomSplitter(valid_pct, seed)(list(range(n))) -> (train, valid)
FASTAI_RANDOM_SPLITS = [
    (10, 0.2, 42, [1, 8, 4, 5, 0, 9, 3, 7], [2, 6]),
    (
        25, 0.2, 42,
        [20, 21, 6, 8, 18, 23, 10, 3, 19, 16, 1, 9, 24, 5, 11, 15, 7, 13, 14, 4],
        [17, 12, 2, 0, 22],
    ),
    (
        25, 0.3, 0,
        [8, 14, 12, 21, 2, 15, 1, 22, 10, 13, 9, 7, 18, 3, 4, 20, 23, 0],
        [19, 16, 6, 17, 5, 24, 11],
    ),
    (7, 0.5, 1, [3, 5, 2, 4], [0, 6, 1]),
]  # fmt: skip


@pytest.mark.parametrize("n, pct, seed, train, valid", FASTAI_RANDOM_SPLITS)
def test_random_splitter_gives_fastais_split(n, pct, seed, train, valid):
    assert RandomSplitter(valid_pct=pct, seed=seed)(list(range(n))) == (train, valid)


def test_random_splitter_without_seed_draws_from_torchs_global_rng():
    torch.manual_seed(42)  # fastai: torch.manual_seed(42); RandomSplitter()(range(10))
    assert RandomSplitter()(list(range(10))) == ([1, 8, 4, 5, 0, 9, 3, 7], [2, 6])
    state = torch.get_rng_state()
    RandomSplitter(seed=3)(list(range(10)))  # a seed does not touch the global RNG
    assert torch.equal(torch.get_rng_state(), state)


def test_other_splitters_give_fastais_splits():
    items = [Path(p) for p in ["r/train/a/1.jpg", "r/valid/b/2.jpg", "r/train/b/3.jpg",
                               "r/test/a/4.jpg", "r/valid/a/5.jpg"]]  # fmt: skip
    # fastai 2.8.12's outputs on these items
    assert GrandparentSplitter()(items) == ([0, 2], [1, 4])
    assert GrandparentSplitter(train_name=("train", "test"))(items) == ([0, 2, 3], [1, 4])
    assert FuncSplitter(lambda o: o.name[0] in "25")(items) == ([0, 2, 3], [1, 4])
    assert IndexSplitter([3, 1])(items) == ([0, 2, 4], [3, 1])
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"fn": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], "lab": ["x", "y", "x", "y"],
                       "is_valid": [False, True, False, True], "k": [0, 1, 2, 1]})  # fmt: skip
    assert ColSplitter()(df) == ([0, 2], [1, 3])
    assert ColSplitter("k", on=1)(df) == ([0, 2], [1, 3])
    assert ColSplitter(2)(df) == ([0, 2], [1, 3])
    assert ColSplitter("k", on=[0, 2])(df) == ([1, 3], [0, 2])
    with pytest.raises(TypeError, match="ColSplitter: expected the items to be a pandas"):
        ColSplitter()(items)
    with pytest.raises(ValueError, match="col: expected one of the columns"):
        ColSplitter("valid")(df)
    with pytest.raises(ValueError, match=r"ColSplitter: expected True/False or 1/0 .*got 2 "
                       r"\(int\) in data row 3 of column 'k'"):  # fmt: skip
        ColSplitter("k")(df)  # fastai: every nonzero value a validation row
    assert ColSplitter("lab", on="y")(df) == ([0, 2], [1, 3])
    with pytest.raises(ValueError, match=r"valid_idx: expected indices in \[0, 5\)"):
        IndexSplitter([7])(items)


def test_labellers_as_fastai():
    # fastai 2.8.12's values
    assert RegexLabeller(r"(.+)_\d+.jpg$")("a/great_pyrenees_12.jpg") == "a/great_pyrenees"
    by_name = using_attr(RegexLabeller(r"(.+)_\d+.jpg$"), "name")
    assert by_name(Path("a/great_pyrenees_12.jpg")) == "great_pyrenees"
    assert RegexLabeller(r"(.+)_\d+.jpg$", match=True)("great_pyrenees_12.jpg") == "great_pyrenees"
    with pytest.raises(ValueError, match=r"pat: the pattern '\(\.\+\)_\\d\+\.jpg\$' does not"):
        RegexLabeller(r"(.+)_\d+.jpg$")("x.png")
    with pytest.raises(ValueError, match="pat: expected a regular expression with a group"):
        RegexLabeller(r"\d+")
    assert parent_label(Path("r/train/grizzly/1.jpg")) == "grizzly"
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"fn": ["a.jpg", "b.jpg", "c.jpg"], "lab": ["x", "y", "x"]})
    assert ColReader(0, pref=Path("/x/images"))(df.iloc[0]) == "/x/images/a.jpg"
    assert ColReader("lab")(df.iloc[1]) == "y"
    with pytest.raises(
        ValueError,
        match=r"ColReader\('fname', .*\): the row has no column "
        r"'fname'; the row's columns are \['fn', 'lab'\]",
    ):
        ColReader("fname")(df.iloc[1])  # fastai: a bare KeyError: 'fname'
    with pytest.raises(ValueError, match=r"no column 7$"):
        ColReader(7)([1, 2])
    assert ColReader(0, pref="p/", suff=".png")(df.iloc[2]) == "p/c.jpg.png"
    with pytest.raises(ValueError, match="label_delim: multi-label targets are not supported"):
        ColReader("lab", label_delim=" ")
    with pytest.raises(ValueError, match="cols: expected one column"):
        ColReader(["fn", "lab"])


def test_splitter_labeller_and_block_argument_errors():
    with pytest.raises(ValueError, match=r"valid_pct: expected a float in \[0, 1\), got 1.5"):
        RandomSplitter(valid_pct=1.5)
    with pytest.raises(TypeError, match="seed: expected a non-negative int"):
        RandomSplitter(seed=-1)
    with pytest.raises(TypeError, match="train_name: expected a folder name"):
        GrandparentSplitter(train_name=3)
    with pytest.raises(TypeError, match="func: expected a callable"):
        FuncSplitter("valid")
    with pytest.raises(TypeError, match="valid_idx: expected a list of item indices"):
        IndexSplitter("12")
    # whole numbers as floats are indices, as fastai's (np.where(fold == 1.0)[0].astype(float))
    assert IndexSplitter(np.array([1.0, 3.0])).valid_idx == [1, 3]
    with pytest.raises(TypeError, match=r"valid_idx: expected integer item indices, got 2 .*1\.5"):
        IndexSplitter([1.5, 2, float("nan")])
    with pytest.raises(TypeError, match="col: expected a column name or position"):
        ColSplitter(col=1.5)
    with pytest.raises(TypeError, match="f: expected a callable"):
        using_attr("name", "name")
    with pytest.raises(ValueError, match="cls: ImageBlock reads RGB images"):
        ImageBlock(cls=int)
    # fastai's grayscale type: a NameError before; now the reason and what to use
    with pytest.raises(ValueError, match="got 'PILImageBW': grayscale files are read as RGB"):
        ImageBlock(cls=PILImageBW)
    with pytest.raises(ValueError, match=r"PILImageBW: not offered: .* \(n_in=1 is not offered\)"):
        PILImageBW.create("x.png")
    with pytest.raises(TypeError, match="vocab: expected a list of class names"):
        CategoryBlock(vocab="ab")
    with pytest.raises(TypeError, match="vocab: expected a str or int label .* got float"):
        CategoryBlock(vocab=["a", 0.5])
    with pytest.raises(TypeError, match=r"vocab: labels of several types .* \['int', 'str'\]"):
        CategoryBlock(vocab=["a", 1])


# -- DataBlock on files ---------------------------------------------------------------------


def _save(path: Path, seed: int, hw=(30, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def bears(tmp_path_factory):
    """fastbook's bears, tiny: 5 black + 5 grizzly images in class folders (10 items)."""
    root = tmp_path_factory.mktemp("bears")
    for k in range(10):
        _save(root / ("black" if k < 5 else "grizzly") / f"{k:02d}.jpg", k)
    return root


def _block(**kw) -> DataBlock:
    kw = {
        "blocks": (ImageBlock, CategoryBlock), "get_items": get_image_files,
        "splitter": RandomSplitter(valid_pct=0.2, seed=42), "get_y": parent_label,
        "item_tfms": Resize(32), **kw,
    }  # fmt: skip
    return DataBlock(**kw)


def _dls(block: DataBlock, source, **kw) -> ImageDataLoaders:
    return block.dataloaders(source, **{"bs": 4, "num_workers": 0, "device": "cpu", **kw})


def test_dataloaders_split_as_fastai_with_labels_and_vocab(bears):
    files = get_image_files(bears)
    dls = _dls(_block(), bears)
    assert isinstance(dls, ImageDataLoaders)
    # fastai's RandomSplitter(valid_pct=0.2, seed=42) on 10 items: valid [2, 6], in that order
    assert dls.valid_ds.items == [files[2], files[6]]
    assert dls.train_ds.items == [files[i] for i in [1, 8, 4, 5, 0, 9, 3, 7]]
    assert dls.vocab == ["black", "grizzly"] and dls.c == 2
    assert dls.train_ds.labels == [0, 1, 0, 1, 0, 1, 0, 1]
    assert dls.valid_ds.labels == [0, 1]
    assert dls.seed == 42  # the splitter's seed is the data seed
    assert dls.path == Path(".")  # fastai's dataloaders(source, path='.')
    x, y = dls.one_batch()
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64


def test_without_a_seed_the_data_seed_comes_from_torch_and_splits_alike(bears):
    block = _block(splitter=RandomSplitter(valid_pct=0.3))
    torch.manual_seed(5)
    a = _dls(block, bears)
    torch.manual_seed(5)
    b = _dls(block, bears)
    assert a.seed == b.seed and a.valid_ds.items == b.valid_ds.items
    expected = RandomSplitter(valid_pct=0.3, seed=a.seed)(get_image_files(bears))
    files = get_image_files(bears)
    assert a.valid_ds.items == [files[i] for i in expected[1]]
    torch.manual_seed(6)
    assert _dls(block, bears).seed != a.seed


def test_vocab_rules(bears):
    files = get_image_files(bears)
    given = _dls(_block(blocks=(ImageBlock, CategoryBlock(vocab=["grizzly", "black"]))), bears)
    assert given.vocab == ["black", "grizzly"]  # fastai's CategoryMap sorts a given vocab too
    kept = _block(blocks=(ImageBlock, CategoryBlock(vocab=["grizzly", "black"], sort=False)))
    assert _dls(kept, bears).vocab == ["grizzly", "black"]
    assert _dls(_block(blocks=(ImageBlock, CategoryBlock(add_na=True))), bears).vocab == [
        "#na#", "black", "grizzly"
    ]  # fmt: skip
    # unsorted: order of first appearance among the training labels (items 1, 8, ...)
    first_seen = _dls(_block(blocks=(ImageBlock, CategoryBlock(sort=False))), bears)
    assert first_seen.vocab == ["black", "grizzly"]
    numbers = _dls(_block(get_y=lambda p: 10 if p.parent.name == "black" else 2), bears)
    assert numbers.vocab == ["2", "10"]  # int labels sorted as numbers, shown as str
    mixed = _block(get_y=lambda p: 1 if p.parent.name == "black" else "grizzly")
    with pytest.raises(TypeError, match=r"get_y: labels of several types .* \['int', 'str'\]"):
        _dls(mixed, bears)
    with pytest.raises(ValueError, match=r"get_y: labels 'grizzly' are not in the vocab"):
        _dls(_block(blocks=(ImageBlock, CategoryBlock(vocab=["black", "brown"]))), bears)
    only_valid = {files[2]: "teddy"}  # item 2 is in the validation set
    with pytest.warns(
        UserWarning,
        match=r"splitter: the split put every image of 1 class\(es\) "
        r"in the validation set, so the model cannot learn them: 'teddy' \(1\)",
    ):
        teddy = _dls(_block(get_y=lambda p: only_valid.get(p, p.parent.name)), bears)
    assert teddy.vocab == ["black", "grizzly", "teddy"]  # as from_folder's split keeps it
    assert teddy.valid_ds.labels.count(2) == 1 and 2 not in teddy.train_ds.labels


def test_refusals_name_the_argument(bears):
    for block in (MultiCategoryBlock, RegressionBlock, MaskBlock):
        with pytest.raises(ValueError, match=f"blocks: {block.__name__} .* is not supported"):
            DataBlock(blocks=(ImageBlock, block))
    with pytest.raises(ValueError, match="blocks: expected \\(ImageBlock, CategoryBlock\\)"):
        DataBlock(blocks=(ImageBlock, ImageBlock, CategoryBlock))
    with pytest.raises(ValueError, match="blocks: expected \\(ImageBlock, CategoryBlock\\)"):
        DataBlock(blocks=(CategoryBlock, ImageBlock))
    with pytest.raises(ValueError, match="blocks: expected"):
        DataBlock()
    with pytest.raises(ValueError, match="n_inp: expected 1"):
        _block(n_inp=2)
    with pytest.raises(ValueError, match="get_x: expected one function"):
        _block(get_x=[str, str])
    with pytest.raises(ValueError, match="dl_type:"):
        _block(dl_type=object)
    with pytest.raises(TypeError, match=r"splitter: expected .* RandomSplitter\(\), got the class"):
        _block(splitter=RandomSplitter)  # was "valid_pct: expected a float in (0, 1), got [...]"
    with pytest.raises(TypeError, match="get_y: expected a str or int label .* got list"):
        _dls(_block(get_y=lambda p: [p.parent.name]), bears)
    with pytest.raises(TypeError, match="get_y: expected a str or int label .* got float"):
        _dls(_block(get_y=lambda p: 0.5), bears)
    with pytest.raises(TypeError, match="get_y: expected a str or int label .* got PosixPath"):
        _dls(_block(get_y=None), bears)  # fastai's default getter: the item itself
    with pytest.raises(ValueError, match="get_y: empty label '' for item "):
        _dls(_block(get_y=lambda p: "" if p.name == "03.jpg" else p.parent.name), bears)
    as_tensor = _block(get_y=lambda p: torch.tensor(int(p.parent.name == "black")))
    assert _dls(as_tensor, bears).vocab == ["0", "1"]  # a 0-d tensor is its value
    with pytest.raises(TypeError, match="get_x: expected an image file path per item"):
        _dls(_block(get_x=lambda p: 3), bears)
    with pytest.raises(MissingPathError, match="get_x: 8 of 8 image files do not exist"):
        _dls(_block(get_x=lambda p: p.with_suffix(".png")), bears)
    with pytest.raises(ValueError, match="splitter: .* gave an empty training set"):
        _dls(_block(splitter=FuncSplitter(lambda p: True)), bears)
    with pytest.raises(TypeError, match="get_items: expected source to be a list of items"):
        _dls(_block(get_items=None), bears)  # a folder without get_items


def test_grandparent_splitter_on_train_valid_folders(tmp_path):
    for k, where in enumerate(["train", "train", "valid", "train", "valid", "train"]):
        _save(tmp_path / where / ("a" if k % 2 else "b") / f"{k}.jpg", k)
    dls = _dls(_block(splitter=GrandparentSplitter()), tmp_path)
    assert [p.parent.parent.name for p in dls.train_ds.items] == ["train"] * 4
    assert [p.parent.parent.name for p in dls.valid_ds.items] == ["valid"] * 2
    assert dls.vocab == ["a", "b"]


def test_a_splitter_may_give_masks_and_its_mistakes_are_said_briefly(tmp_path):
    """A splitter returning boolean masks (numpy, torch, Python bools) splits by them, as
    fastai's L indexing does (they were read as indices 0 and 1); a wrong shape of output is
    said in a line, not printed whole."""
    for k, where in enumerate(["train", "train", "valid", "train", "valid", "train"]):
        _save(tmp_path / where / ("a" if k % 2 else "b") / f"{k}.jpg", k)

    def by(mask_of):
        def split(items):
            valid = mask_of(["valid" in str(p) for p in items])
            return ~valid, valid

        return split

    for mask_of in (np.array, torch.tensor):
        dls = _dls(_block(splitter=by(mask_of)), tmp_path)
        assert [p.parent.parent.name for p in dls.train_ds.items] == ["train"] * 4
        assert [p.parent.parent.name for p in dls.valid_ds.items] == ["valid"] * 2
    dls = _dls(
        _block(splitter=lambda items: ([True] * 4 + [False] * 2, [False] * 4 + [True] * 2)),
        tmp_path,
    )
    assert (len(dls.train_ds), len(dls.valid_ds)) == (4, 2)
    with pytest.raises(ValueError, match="splitter: train is a mask of 3 bools for 6 items"):
        _dls(_block(splitter=lambda items: ([True] * 3, [])), tmp_path)
    with pytest.raises(TypeError, match="train indices as integers .* got float 0.5 among them"):
        _dls(_block(splitter=lambda items: ([0.5, 1], [2])), tmp_path)
    with pytest.raises(
        TypeError,
        match=r"expected a pair \(train indices, valid indices\), got a "
        r"tuple of 3$",
    ):
        _dls(_block(splitter=lambda items: (list(range(600)), [1], [2])), tmp_path)


def test_a_split_leaving_items_out_with_no_validation_set_warns(tmp_path):
    """A typo in GrandparentSplitter's valid_name leaves the validation images in neither set
    (fastai says nothing): a warning names the folders of the items left out; a typo in
    train_name, the error of an empty training set does."""
    for k, where in enumerate(["train", "train", "valid", "train", "valid", "train"]):
        _save(tmp_path / where / ("a" if k % 2 else "b") / f"{k}.jpg", k)
    with pytest.warns(
        UserWarning,
        match=r"gave an empty validation set \(6 items, 2 in neither "
        r"set: their grandparent folders are 'valid'\)",
    ):
        dls = _dls(_block(splitter=GrandparentSplitter(valid_name="val")), tmp_path)
    assert (len(dls.train_ds), len(dls.valid_ds)) == (4, 0)
    with pytest.raises(
        ValueError,
        match="empty training set .*4 in neither set: their grandparent folders are 'train'",
    ):
        _dls(_block(splitter=GrandparentSplitter(train_name="trn")), tmp_path)


def test_pets_chapter5_code(tmp_path):
    """fastbook chapter 5's DataBlock, 32 px: labels from the file name with using_attr."""
    for k, name in enumerate(["Abyssinian_1", "great_pyrenees_12", "Abyssinian_3",
                              "great_pyrenees_4", "Abyssinian_5", "great_pyrenees_6"]):  # fmt: skip
        _save(tmp_path / "images" / f"{name}.jpg", k)
    pets = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
        splitter=RandomSplitter(seed=42), get_y=using_attr(RegexLabeller(r"(.+)_\d+.jpg$"), "name"),
        item_tfms=Resize(40), batch_tfms=aug_transforms(size=32, min_scale=0.75),
    )  # fmt: skip
    dls = _dls(pets, tmp_path / "images")
    assert dls.vocab == ["Abyssinian", "great_pyrenees"]
    assert (dls.size, dls.presize, dls.spec.min_scale) == (32, 40, 0.75)
    # fastai 2.8.12: RandomSplitter(seed=42) on 6 items -> ([3, 2, 4, 1, 5], [0])
    files = get_image_files(tmp_path / "images")
    assert dls.valid_ds.items == [files[0]]
    assert dls.train_ds.items == [files[i] for i in [3, 2, 4, 1, 5]]


def test_dataframe_with_col_reader_and_col_splitter(tmp_path):
    pd = pytest.importorskip("pandas")
    for k in range(6):
        _save(tmp_path / "images" / f"{k}.jpg", k)
    df = pd.DataFrame({"fname": [f"{k}.jpg" for k in range(6)], "label": [3, 7, 3, 7, 3, 7],
                       "is_valid": [False, False, True, False, False, True]})  # fmt: skip
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_x=ColReader(0, pref=tmp_path / "images"),
        get_y=ColReader("label"), splitter=ColSplitter(), item_tfms=Resize(32),
    )  # fmt: skip
    dls = _dls(block, df)
    assert dls.valid_ds.items == [tmp_path / "images" / "2.jpg", tmp_path / "images" / "5.jpg"]
    assert dls.vocab == ["3", "7"] and dls.valid_ds.labels == [0, 1]
    assert len(dls.train_ds) == 4
    with pytest.raises(TypeError, match="get_x: expected an image file path .*get_x=ColReader"):
        _dls(DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=ColReader("label")), df)


def test_new_returns_a_block_with_other_transforms(bears):
    block = _block(batch_tfms=aug_transforms())
    padded = block.new(item_tfms=Resize(32, ResizeMethod.Pad, pad_mode="zeros"))
    assert padded is not block and block.item_tfms.method == "crop"
    assert padded.batch_tfms is None  # as fastai's new: what is not given is reset
    dls = _dls(padded, bears)
    assert dls.train_ds.method == dls.valid_ds.method == "pad-zeros" and dls.spec is None
    squished = _dls(block.new(item_tfms=Resize(32, ResizeMethod.Squish)), bears)
    assert squished.train_ds.method == "squish"
    rrc = block.new(item_tfms=RandomResizedCrop(32, min_scale=0.3), batch_tfms=aug_transforms())
    dls = _dls(rrc, bears)
    assert (dls.size, dls.presize, dls.spec.min_scale, dls.spec.do_flip) == (32, 59, 0.3, True)
    assert dls.valid_ds.items == _dls(block, bears).valid_ds.items  # the same split


def test_summary_says_what_dataloaders_builds(bears, capsys):
    _block().summary(bears)
    out = capsys.readouterr().out
    files = get_image_files(bears)
    assert "items: 10, from get_image_files(" in out
    assert f"x = {files[0]}" in out and "y = 'black'" in out
    assert "split: RandomSplitter(valid_pct=0.2, seed=42): 8 train, 2 valid" in out
    assert "vocab (2): ['black', 'grizzly']" in out
    assert "presized to 32 px (method 'crop')" in out and "batches of 32 x 32 px" in out
    _block(splitter=RandomSplitter()).summary(bears)
    assert "no seed: this split drew seed" in capsys.readouterr().out


def test_without_a_resize_summary_and_dataloaders_take_the_images_size(bears, tmp_path, capsys):
    """fastai keeps each image's size without a Resize (ch5's pets1.summary shows the collate
    failure of different sizes); this library: one square size is kept, else 224 and a
    warning (bears: 40 x 30 images)."""
    for k in range(10):
        _save(tmp_path / "ab"[k % 2] / f"{k}.png", k, hw=(20, 20))
    _block(item_tfms=None).summary(tmp_path)
    out = capsys.readouterr().out
    assert "presized to 20 px" in out and "batches of 20 x 20 px" in out
    assert _dls(_block(item_tfms=None), tmp_path).one_batch()[0].shape == (4, 3, 20, 20)
    with pytest.warns(UserWarning, match=r"not squares of one size \(40 x 30 .*224 x 224"):
        _block(item_tfms=None).summary(bears)
    assert "presized to 280 px" in capsys.readouterr().out


def test_plots_are_kept_out_of_the_images_not_the_learners_path(bears, tmp_path):
    _dls(_block(), bears)
    plots.set_plot_dir(bears / "plots")
    try:
        assert plots.plot_dir() == bears.parent / f"{bears.name}_plots"
    finally:
        plots.set_plot_dir(None)


def test_chapter2_flow_trains(bears, tmp_path, monkeypatch):
    """DataBlock -> vision_learner -> fit_one_cycle(1) at 32 px, fastbook's spelling."""
    from fastcore_ext.vision import error_rate, resnet18, vision_learner

    monkeypatch.chdir(tmp_path)  # the learner's path: '.'
    dls = _dls(_block(item_tfms=RandomResizedCrop(32, min_scale=0.5)), bears)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)
    learn.progress.stream = io.StringIO()
    learn.fit_one_cycle(1)
    assert learn.recorder.epochs == [0] and len(learn.recorder.metrics[0]) == 1
    learn.save("stage-1")
    assert (tmp_path / "models" / "stage-1.pth").is_file()
    fig = dls.valid.show_batch(max_n=4, nrows=1)
    assert [a.get_title() for a in fig.axes] == ["black", "grizzly"]  # the 2 valid images


def test_a_padded_learner_exports_and_predicts_with_its_pad(bears, tmp_path):
    from fastcore_ext.vision import load_learner, resnet18, vision_learner

    padded = _block(item_tfms=Resize(32, ResizeMethod.Pad, pad_mode="zeros"))
    learn = vision_learner(_dls(padded, bears, path=tmp_path), resnet18, pretrained=False)
    learn.export()
    loaded = load_learner(tmp_path)
    assert loaded.data.resize_method == "pad-zeros"
    file = get_image_files(bears)[0]
    torch.testing.assert_close(
        loaded.data.preprocess([file]), learn.data.preprocess([file]), rtol=0, atol=0
    )


def test_training_without_a_validation_set(bears, tmp_path):
    """fastai's RandomSplitter(valid_pct=0) (or a splitter giving no validation item): every
    item trains; the epochs' validation columns are empty (#na#), the trackers say they have
    nothing to track and do nothing (EarlyStopping stopped after one epoch, ReduceLROnPlateau
    lowered the rate); a pass over the validation set says it is empty."""
    from fastcore_ext.callback import EarlyStoppingCallback, ReduceLROnPlateau, SaveModelCallback
    from fastcore_ext.interpret import ClassificationInterpretation
    from fastcore_ext.metrics import error_rate
    from fastcore_ext.vision import vision_learner

    for splitter in (RandomSplitter(valid_pct=0, seed=0), FuncSplitter(lambda p: False)):
        dls = _dls(_block(splitter=splitter), bears)
        assert len(dls.train_ds) == 10 and len(dls.valid_ds) == 0 and len(dls.valid) == 0
    learn = vision_learner(dls, "resnet18", pretrained=False, metrics=error_rate, path=tmp_path)
    learn.progress.stream = io.StringIO()
    trackers = [SaveModelCallback(), EarlyStoppingCallback(patience=1), ReduceLROnPlateau()]
    with pytest.warns(UserWarning, match="'valid_loss' has no value") as said:
        learn.fit_one_cycle(3, 1e-3, cbs=trackers)
    assert len(said) == 3  # once per tracker and fit
    assert learn.recorder.valid_losses == [None] * 3 and learn.epochs_trained == 3
    assert learn.recorder.final_record[1:] == [None, None]
    assert not (tmp_path / "models").exists()  # SaveModelCallback saved nothing
    assert "#na#" in learn.progress.stream.getvalue()
    empty = "is empty: this data has no validation set"
    for call in (learn.validate, learn.get_preds, lambda: learn.tta(n=1), learn.show_results):
        with pytest.raises(ValueError, match=empty):
            call()
    with pytest.raises(ValueError, match=empty):
        ClassificationInterpretation.from_learner(learn)
    with pytest.raises(ValueError, match="^dl yielded no batch$"):  # the user's own loader
        learn.get_preds(dl=dls.valid)
    with pytest.raises(ValueError, match="this validation loader's data set is empty"):
        dls.valid.show_batch()
    assert len(learn.get_preds(ds_idx=0)[0]) == 10  # the training set in order
    learn.export()  # inference needs no validation set
    assert learn.predict(get_image_files(bears)[0])[0] in ("black", "grizzly")


def test_labels_that_are_paths_are_warned_of(tmp_path):
    """fastbook's RegexLabeller without using_attr(..., 'name') searches the whole path: every
    label a folder path (fastai says nothing); the file name's pattern is silent."""
    for k in range(10):
        kind = "black" if k < 5 else "grizzly"
        _save(tmp_path / kind / f"{kind}_{k}.jpg", k)
    pat = r"(.+)_\d+\.jpg$"
    with pytest.warns(UserWarning, match=r"get_y: every label holds a '/' .*using_attr"):
        _dls(_block(get_y=RegexLabeller(pat)), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dls = _dls(_block(get_y=using_attr(RegexLabeller(pat), "name")), tmp_path)
    assert dls.vocab == ["black", "grizzly"]


def test_the_rest_of_fastais_splitters_give_its_splits(tmp_path):
    """fastai 2.8.12 on ten items /x/a.png ... /x/j.png (a NameError here before):
    RandomSubsetSplitter(0.5, 0.2, seed=42) -> ([2, 6, 1, 8, 4], [5, 0]); EndSplitter(0.2) ->
    ([0..7], [8, 9]); EndSplitter(0.3, valid_last=False) -> ([3..9], [0, 1, 2]);
    MaskSplitter(i % 3 == 0) -> ([1, 2, 4, 5, 7, 8], [0, 3, 6, 9]); FileSplitter of a file
    naming a.png and c.png -> ([1, 3, ..., 9], [0, 2])."""
    items = [Path(f"/x/{c}.png") for c in "abcdefghij"]
    assert RandomSubsetSplitter(0.5, 0.2, seed=42)(items) == ([2, 6, 1, 8, 4], [5, 0])
    assert EndSplitter(0.2)(items) == (list(range(8)), [8, 9])
    assert EndSplitter(0.3, valid_last=False)(items) == (list(range(3, 10)), [0, 1, 2])
    assert MaskSplitter([i % 3 == 0 for i in range(10)])(items) == (
        [1, 2, 4, 5, 7, 8],
        [0, 3, 6, 9],
    )
    assert MaskSplitter(np.arange(10) % 3 == 0)(items)[1] == [0, 3, 6, 9]
    (tmp_path / "valid.txt").write_text("a.png\nc.png\n")
    assert FileSplitter(tmp_path / "valid.txt")(items) == ([1, 3, 4, 5, 6, 7, 8, 9], [0, 2])
    # mistakes, named
    with pytest.raises(ValueError, match="valid_pct: 0.05 of 10 items is no validation item"):
        EndSplitter(0.05)(items)  # fastai's idxs[:-0] trained on nothing
    with pytest.raises(ValueError, match="mask: expected 10 flags"):
        MaskSplitter([True, False])(items)
    with pytest.raises(TypeError, match="mask: expected one bool per item"):
        MaskSplitter([1, 0])
    with pytest.raises(MissingPathError, match="fname: expected a text file"):
        FileSplitter(tmp_path / "none.txt")
    with pytest.raises(ValueError, match=r"train_sz \+ valid_sz: expected at most 1"):
        RandomSubsetSplitter(0.8, 0.5)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="TrainTestSplitter needs scikit-learn"):
            TrainTestSplitter()
    else:  # not run where scikit-learn is absent (this project's environments)
        train, valid = TrainTestSplitter(0.2, random_state=0)(items)
        assert len(valid) == 2 and sorted(train + valid) == list(range(10))


def test_getters_splitters_and_default_transforms_in_a_datablock(tmp_path):
    """ImageGetter / FileGetter as get_items, EndSplitter as splitter, and fastai's default
    ToTensor / IntToFloatTensor listed explicitly (fastai's pipelines hold them anyway)."""
    for cls in ("cat", "dog"):
        for i in range(5):
            _save(tmp_path / "imgs" / cls / f"{cls}{i}.png", i)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    assert len(ImageGetter("imgs")(tmp_path)) == 10
    assert len(FileGetter("imgs", extensions=[".png"])(tmp_path)) == 10
    assert len(FileGetter("imgs", extensions=["jpg"])(tmp_path)) == 0
    assert len(FileGetter("imgs", extensions=(e for e in [".png"]))(tmp_path)) == 10
    assert len(FileGetter("imgs", extensions=[])(tmp_path)) == 10  # none given: the images
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_items=ImageGetter("imgs"), get_y=parent_label,
        splitter=EndSplitter(0.2), item_tfms=[ToTensor(), Resize(16)],
        batch_tfms=[IntToFloatTensor(), Normalize.from_stats([0.5] * 3, [0.25] * 3, cuda=False)],
    )  # fmt: skip
    dls = block.dataloaders(tmp_path, bs=4, num_workers=0)
    assert [p.name for p in dls.valid_ds.items] == ["dog3.png", "dog4.png"]
    x, _ = dls.one_batch()
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    with pytest.raises(ValueError, match="div: pixels are divided by 255"):
        IntToFloatTensor(div=1.0)
    with pytest.raises(ValueError, match="div_mask: there are no masks here"):
        IntToFloatTensor(div_mask=2)
    with pytest.raises(TypeError, match=r"item_tfms: expected one Resize\(n\)"):
        DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=ImageGetter("imgs"),
                  get_y=parent_label, item_tfms=[]).dataloaders(tmp_path, bs=4)  # fmt: skip
    with pytest.raises(ValueError, match="dim, ndim: expected fastai's 1, 4"):
        Normalize.from_stats([0.5] * 3, [0.25] * 3, dim=0)


@pytest.mark.parametrize(
    "name, instead",
    [("Flip", "max_lighting=0"), ("Rotate", "max_rotate=max_deg"), ("Zoom", "max_zoom"),
     ("Warp", "max_warp=magnitude"), ("Brightness", "max_lighting"), ("Contrast", "max_lighting"),
     ("Dihedral", "flip_vert=True"), ("Saturation", "brightness and contrast"),
     ("Hue", "brightness and contrast"), ("RandomErasing", "not among"), ("CropPad", "Resize")],
)  # fmt: skip
def test_fastais_single_augmentations_are_refused_naming_what_to_use(name, instead):
    """They were NameErrors under the star import; each now says what gives it here."""
    namespace: dict = {}
    exec("from fastcore_ext.vision import *", namespace)
    with pytest.raises(ValueError, match=f"^{name}: fastai's") as e:
        namespace[name](p=0.5)
    assert instead in str(e.value)
