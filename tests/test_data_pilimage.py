"""PILImage: fastai v2's picture of a file (fastbook: ``img = PILImage.create(fn)``,
``img.to_thumb(128)``, ``learn.predict(img)``), a PIL image subclass as fastai's."""

import io

import numpy as np
import PIL.Image
import pytest
import torch
from fakes import tiny_model
from matplotlib.figure import Figure

from fastcore_ext.data import BadImageError, ImageDataBunch, demo_dataset, imagenet_stats
from fastcore_ext.learner import Learner
from fastcore_ext.vision import PILImage

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """(a 30 x 20 RGB PNG file, its pixels uint8 [20, 30, 3] as PIL reads them)."""
    px = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("pil") / "photo.png"
    PIL.Image.fromarray(px).save(path)
    return path, px


def test_create_from_each_kind_of_source(photo):
    """A path, a str, the file's bytes (was refused), an array, a tensor, a PIL image."""
    path, px = photo
    chw = torch.from_numpy(px).permute(2, 0, 1)
    for fn in (
        path,
        str(path),
        path.read_bytes(),
        px,
        chw,
        chw.float() / 255,
        PIL.Image.fromarray(px),
        PIL.Image.fromarray(px).convert("RGBA"),
    ):
        img = PILImage.create(fn)
        assert isinstance(img, PILImage) and isinstance(img, PIL.Image.Image)
        assert np.array_equal(np.asarray(img), px)
    gray = PILImage.create(px[:, :, 0])  # [H, W] uint8: one channel, made RGB
    assert gray.mode == "RGB" and np.array_equal(np.asarray(gray)[:, :, 2], px[:, :, 0])
    assert np.array_equal(np.asarray(PILImage.create(PILImage.create(path))), px)


def test_shape_size_mode_and_repr_are_fastais(photo):
    """shape was (3, h, w) here, fastai's is (h, w); there was no mode, size was (h, w)."""
    img = PILImage.create(photo[0])
    assert img.shape == (20, 30) and img.size == (30, 20) and img.mode == "RGB"
    assert (img.height, img.width) == (20, 30)
    assert repr(img) == "PILImage mode=RGB size=30x20"


def test_pil_methods_give_pilimages(photo):
    """resize (was missing), crop, copy, convert, transpose: PILImages, with shape."""
    img = PILImage.create(photo[0])
    small = img.resize((15, 10))
    assert isinstance(small, PILImage) and small.shape == (10, 15) and small.size == (15, 10)
    want = np.asarray(PIL.Image.fromarray(photo[1]).resize((15, 10)))
    assert np.array_equal(np.asarray(small), want)
    assert img.crop((2, 3, 12, 8)).shape == (5, 10)
    assert np.array_equal(np.asarray(img.crop((2, 3, 12, 8))), photo[1][3:8, 2:12])
    assert isinstance(img.copy(), PILImage) and img.copy() == img
    assert img.convert("L").mode == "L" and isinstance(img.convert("L"), PILImage)
    flipped = img.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
    assert np.array_equal(np.asarray(flipped), photo[1][:, ::-1])


def test_to_thumb(photo):
    img = PILImage.create(photo[0])
    thumb = img.to_thumb(10)
    assert isinstance(thumb, PILImage) and thumb.size == (10, 7)  # aspect kept
    assert img.size == (30, 20)  # a copy: the image itself is unchanged
    assert PILImage.create(np.zeros((20, 60, 3), np.uint8)).to_thumb(10, 30).size == (30, 10)
    with pytest.raises(ValueError, match="h: expected a positive int, got 0"):
        img.to_thumb(0)
    with pytest.raises(ValueError, match="w: expected a positive int, got 2.5"):
        img.to_thumb(4, 2.5)


def test_show_draws_with_matplotlib(photo):
    img = PILImage.create(photo[0])
    fig = img.show(title="cat")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_title() == "cat"
    assert np.array_equal(ax.images[0].get_array(), photo[1])
    other = Figure().add_subplot()
    assert img.show(ctx=other) is other and len(other.images) == 1


def test_undecodable_bytes_name_the_argument():
    with pytest.raises(BadImageError, match="fn: expected the bytes of an image file, got 7 "):
        PILImage.create(b"garbage")


def test_predict_and_preprocess_take_it(photo, tmp_path):
    folder = demo_dataset(tmp_path / "demo", n_per_class=3, size=32)
    data = ImageDataBunch.from_folder(folder, valid_pct=0.25, size=16, bs=4, num_workers=0, seed=0)
    data.normalize(imagenet_stats)
    path = data.valid_ds.items[0]
    img = PILImage.create(path)
    assert torch.equal(data.preprocess(img), data.preprocess(path))
    torch.manual_seed(0)
    model = tiny_model()
    model[-1] = torch.nn.Linear(8, data.c)  # a head for the data's classes
    learn = Learner(data, model, precision="fp32")
    name, idx, probs = learn.predict(path)
    got_name, got_idx, got = learn.predict(img)
    assert (got_name, got_idx) == (name, idx)
    torch.testing.assert_close(got, probs, rtol=0, atol=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # a PIL image: saved as any other
    assert np.array_equal(np.asarray(PILImage.create(buf.getvalue())), np.asarray(img))
    got_name, got_idx, got = learn.predict(path.read_bytes())  # a file's bytes, as fastai's
    assert (got_name, got_idx) == (name, idx)
    torch.testing.assert_close(got, probs, rtol=0, atol=0)
