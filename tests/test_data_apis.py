"""fastai v2's data APIs a fastbook reader calls on a DataBlock and its loaders: datasets(),
dls.cpu() / cuda() / decode() / decode_batch(), and Resize(method='pad')'s random place on
the training set. What fastai gives was checked with fastai 2.8.12 on a folder like these."""

import numpy as np
import pytest
import torch
from PIL import Image

from fastcore_ext.data import (
    CategoryBlock,
    DataBlock,
    Datasets,
    ImageBlock,
    Normalize,
    PILImage,
    RandomSplitter,
    Resize,
    ResizeMethod,
    TensorCategory,
    get_image_files,
    imagenet_stats,
    parent_label,
    presize,
    to_rgb,
)

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """cat/ and dog/, 6 images each, landscape 20 x 12 and portrait 12 x 20 in turn, pixels
    1-255 (so a zero is padding)."""
    root = tmp_path_factory.mktemp("apis") / "imgs"
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            hw = (12, 20) if i % 2 else (20, 12)
            px = rng.integers(1, 256, (*hw, 3), dtype=np.uint8)
            Image.fromarray(px).save(root / c / f"{c}_{i}.png")
    return root


def _block(**kw) -> DataBlock:
    return DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
        splitter=RandomSplitter(0.25, seed=42), **kw,
    )  # fmt: skip


def _dls(block: DataBlock, folder, bs: int = 4, **kw):
    return block.dataloaders(folder, bs=bs, num_workers=0, device="cpu", **kw)


# -- datasets ----------------------------------------------------------------------------------


def test_datasets_give_pil_images_and_tensor_categories_of_the_dataloaders_split(folder):
    block = _block(item_tfms=Resize(16))
    dsets = block.datasets(folder)
    assert isinstance(dsets, Datasets) and dsets.vocab == ["cat", "dog"] and dsets.n_inp == 1
    assert (len(dsets.train), len(dsets.valid)) == (9, 3)
    dls = _dls(block, folder)
    assert dsets.train.items == dls.train_ds.items and dsets.valid.items == dls.valid_ds.items
    img, y = dsets.valid[0]
    assert isinstance(img, PILImage) and img.mode == "RGB"
    f = dsets.valid.items[0]
    np.testing.assert_array_equal(np.asarray(img), np.asarray(Image.open(f).convert("RGB")))
    assert isinstance(y, TensorCategory) and y.dtype == torch.int64 and y.ndim == 0
    assert int(y) == dls.valid_ds.labels[0] and repr(y) == f"TensorCategory({int(y)})"
    assert dsets.decode(dsets.valid[0]) == (img, parent_label(f))
    assert dsets.train[-1][1] == dls.train_ds.labels[-1]
    with pytest.raises(IndexError, match="index: 9 out of range for 9 items"):
        dsets.train[9]


# -- cpu / cuda / decode ------------------------------------------------------------------------


def test_cpu_and_cuda_move_the_batches(folder):
    dls = _dls(_block(item_tfms=Resize(16)), folder)
    assert dls.cpu() is dls and dls.device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device: cuda\(\) .* is False"):
            dls.cuda()
        return
    assert dls.cuda() is dls and dls.one_batch()[0].device.type == "cuda"
    assert dls.cpu().one_batch()[0].device.type == "cpu"


def test_decode_undoes_the_normalization_and_decode_batch_names_the_labels(folder):
    block = _block(item_tfms=Resize(16), batch_tfms=Normalize.from_stats(*imagenet_stats))
    dls = _dls(block, folder)
    b = dls.valid.one_batch()
    assert b[0].dtype == torch.float32 and abs(b[0].mean().item()) < 2  # normalized
    x, y = dls.decode(b)
    pixels, _ = next(iter(dls.valid.uint8_batches()))  # what the loader cut, before the float
    (x_only,) = dls.train.decode((b[0],))  # fastbook ch. 18's dls.train.decode((x,))
    assert torch.equal(x_only, x) and torch.equal(dls.valid.decode(b)[0], x)
    assert x.dtype == torch.int64 and torch.equal(x, pixels.long()) and torch.equal(y, b[1])
    items = dls.decode_batch(b)
    assert len(items) == 3 and all(len(t) == 2 for t in items)
    assert [name for _, name in items] == [dls.vocab[k] for k in b[1].tolist()]
    assert torch.equal(items[1][0], x[1]) and len(dls.decode_batch(b, max_n=2)) == 2
    test_b = dls.test_dl(dls.valid_ds.items).one_batch()  # no labels: (image,) per item
    assert [len(t) for t in dls.decode_batch(test_b)] == [1, 1, 1]
    with pytest.raises(TypeError, match="b: expected a batch"):
        dls.decode(b[0])
    with pytest.raises(ValueError, match="max_n should be >= 1"):
        dls.decode_batch(b, max_n=0)


# -- show_batch ---------------------------------------------------------------------------------


def test_show_batch_of_a_small_batch_fits_its_grid_as_fastai(folder):
    """fastai 2.8.12's dls.show_batch() with bs 4 draws 4 images in 2 x 2 (a batch of 9 or
    more: 3 x 3, the grid this call drew before whatever the batch)."""
    dls = _dls(_block(item_tfms=Resize(16)), folder)
    for fig in (dls.show_batch(), dls.show_batch(ds_type="valid")):  # 4 and 3 images
        grid = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
        assert len(fig.axes) == 4 and grid == (2, 2)
    big = _dls(_block(item_tfms=Resize(16)), folder, bs=9)
    fig = big.show_batch()
    assert len(fig.axes) == 9 and tuple(fig.get_size_inches()) == (7, 6)


# -- Resize(method='pad') -----------------------------------------------------------------------


def _image_starts(x: torch.Tensor) -> list[int]:
    """Per image of uint8 [B, 3, P, P]: the first row (landscape) or column (portrait) that
    holds the image, i.e. the padding before it."""
    starts = []
    for img in x:
        rows = torch.nonzero(img.amax(dim=(0, 2))).flatten()
        cols = torch.nonzero(img.amax(dim=(0, 1))).flatten()
        padded = rows if len(rows) < img.shape[1] else cols
        starts.append(int(padded.min()))
    return starts


def _train_starts(dls, epochs: int) -> np.ndarray:
    """[epoch, item]: where each training image lands in its square that epoch."""
    out = np.full((epochs, len(dls.train_ds)), -1)
    for e in range(epochs):
        for idx, (x, _) in zip(dls.train.batch_indices(e), dls.train.uint8_batches(e), strict=True):
            out[e, idx.numpy()] = _image_starts(x)
    return out


@pytest.mark.parametrize("cached", [False, True])
def test_pad_places_the_image_at_random_in_training_and_centred_in_validation(
    folder, tmp_path, cached
):
    """fastai's Resize(method='pad') draws its pcts at random on the training set, 0.5 on
    the validation set: the 20 x 12 images (10 x 16 at 16 px: 6 rows of padding) land 0-6
    rows down when training, anywhere, differently per item and epoch, repeatably for a
    seed; validation pads 3 rows above, as `presize` (predict) does."""
    block = _block(item_tfms=Resize(16, ResizeMethod.Pad, pad_mode="zeros"))
    cache = tmp_path if cached else False
    dls = _dls(block, folder, bs=3, cache=cache)  # 9 training items: none dropped
    starts = _train_starts(dls, 12)
    assert starts.min() == 0 and starts.max() == 6 and len(np.unique(starts)) == 7
    assert all(len(set(starts[:, i])) > 1 for i in range(starts.shape[1]))  # per epoch
    assert all(len(set(row)) > 1 for row in starts)  # per item
    again = _dls(block, folder, bs=3, cache=cache)
    np.testing.assert_array_equal(_train_starts(again, 12), starts)
    for _ in range(2):  # a cached run fills the cache on the first pass, reads it on the next
        for idx, (x, _) in zip(dls.valid.batch_indices(), dls.valid.uint8_batches(), strict=True):
            assert _image_starts(x) == [3] * len(x)
            for k, i in enumerate(idx.tolist()):
                expected = presize(to_rgb(dls.valid_ds.items[i]), 16, "pad-zeros")
                assert torch.equal(x[k].cpu(), expected)
    assert not cached or (dls.train_ds.cache.complete and dls.valid_ds.cache.complete)
