"""Lesson 1's "other data formats": MNIST_SAMPLE's layout (train/valid class folders plus a
labels.csv) read with from_folder and from_csv, from_df (pandas) in fastai v1's and v2's
argument orders, CSV options (folder, suffix, column names, no header), and open_image."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastcore_ext.data import (
    BadImageError,
    ImageDataBunch,
    ImageDataLoaders,
    MissingPathError,
    URLs,
    open_image,
    read_labels_csv,
)
from fastcore_ext.plots import PLOTS_ENV

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

SMALL = dict(ds_tfms=None, size=16, bs=4, num_workers=0, seed=0)
# MNIST_SAMPLE's layout: (split, digit) -> number of 28x28 grayscale PNGs made here
COUNTS = {("train", "3"): 6, ("train", "7"): 5, ("valid", "3"): 3, ("valid", "7"): 2}


@pytest.fixture(scope="module")
def mnist_sample(tmp_path_factory) -> Path:
    """A local tree shaped like URLs.MNIST_SAMPLE: train/3, train/7, valid/3, valid/7 of
    grayscale PNGs, and labels.csv with a header and rows like "train/3/7463.png,0"."""
    root = tmp_path_factory.mktemp("mnist_sample")
    rng = np.random.default_rng(0)
    rows = ["name,label"]
    number = 1000
    for (split, digit), n in COUNTS.items():
        folder = root / split / digit
        folder.mkdir(parents=True)
        for _ in range(n):
            px = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(px).save(folder / f"{number}.png")  # mode L: grayscale
            rows.append(f"{split}/{digit}/{number}.png,{0 if digit == '3' else 1}")
            number += 1
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _labels_by_file(ds) -> dict[str, str]:
    return {p.as_posix(): ds.classes[y] for p, y in zip(ds.items, ds.labels, strict=True)}


def test_mnist_sample_url():
    assert URLs.MNIST_SAMPLE.endswith("/mnist_sample.tgz")


def test_mnist_sample_from_folder(mnist_sample):
    data = ImageDataBunch.from_folder(mnist_sample, **SMALL)
    assert data.classes == ["3", "7"]
    assert (len(data.train_ds), len(data.valid_ds)) == (11, 5)
    for path, label in _labels_by_file(data.train_ds).items():
        assert path.split("/")[-2] == label
    x, y = data.one_batch()
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # gray -> RGB


@pytest.mark.parametrize("cls", [ImageDataBunch, ImageDataLoaders])
def test_mnist_sample_from_csv(mnist_sample, cls):
    data = cls.from_csv(mnist_sample, **SMALL)
    assert data.classes == ["0", "1"]
    assert len(data.train_ds) + len(data.valid_ds) == sum(COUNTS.values())
    assert len(data.valid_ds) == int(0.2 * sum(COUNTS.values()))  # a random split of all rows
    labels = {**_labels_by_file(data.train_ds), **_labels_by_file(data.valid_ds)}
    expected = {}
    for line in (mnist_sample / "labels.csv").read_text().splitlines()[1:]:
        name, label = line.split(",")
        expected[(mnist_sample / name).as_posix()] = label
    assert labels == expected
    x, _ = data.one_batch("valid")
    assert x.shape == (3, 3, 16, 16)


def test_from_csv_folder_suffix_column_names(tmp_path):
    """A planet-style table: names without the extension, files in a sub-folder, columns
    chosen by name, another delimiter; and the same without a header row."""
    folder = tmp_path / "train-jpg"
    folder.mkdir()
    rows = []
    for k in range(10):
        label = "cloudy" if k % 2 else "clear"
        Image.new("RGB", (20, 20), (200 * (k % 2), 50, 90)).save(folder / f"img_{k}.jpg")
        rows.append(f"x{k};img_{k};{label}")
    (tmp_path / "tags.csv").write_text("id;image_name;tags\n" + "\n".join(rows) + "\n")
    data = ImageDataBunch.from_csv(tmp_path, folder="train-jpg", csv_labels="tags.csv",
                                   fn_col="image_name", label_col="tags", suffix=".jpg",
                                   delimiter=";", **SMALL)  # fmt: skip
    assert data.classes == ["clear", "cloudy"]
    for path, label in _labels_by_file(data.train_ds).items():
        assert label == ("cloudy" if int(path[-5]) % 2 else "clear")
    (tmp_path / "bare.csv").write_text("\n".join(rows) + "\n")
    names, labels = read_labels_csv(tmp_path / "bare.csv", 1, 2, header=None, delimiter=";")
    assert names == [f"img_{k}" for k in range(10)] and labels[:2] == ["clear", "cloudy"]
    bare = ImageDataBunch.from_csv(tmp_path, "train-jpg", "bare.csv", fn_col=1, label_col=2,
                                   suffix=".jpg", delimiter=";", header=None, **SMALL)  # fmt: skip
    assert len(bare.train_ds) + len(bare.valid_ds) == 10
    # delimiter left out: the file's own (';' here, as spreadsheets in many locales write)
    sniffed = read_labels_csv(tmp_path / "tags.csv", "image_name", "tags")
    assert sniffed == read_labels_csv(tmp_path / "tags.csv", 1, 2, delimiter=";")
    tabbed = tmp_path / "tabs.csv"
    tabbed.write_text("name\tlabel\na;1.jpg\tcat\nb,2.jpg\tdog\n")
    assert read_labels_csv(tabbed) == (["a;1.jpg", "b,2.jpg"], ["cat", "dog"])
    (tmp_path / "one.csv").write_text("name\na.jpg\nb.jpg\n")  # one column: ','
    assert read_labels_csv(tmp_path / "one.csv", 0, 0)[0] == ["a.jpg", "b.jpg"]


def test_from_csv_errors(mnist_sample, tmp_path):
    with pytest.raises(MissingPathError, match="csv_labels: expected an existing CSV file"):
        ImageDataBunch.from_csv(mnist_sample, csv_labels="nope.csv", **SMALL)
    with pytest.raises(ValueError, match=r"label_col: expected one of the columns \['name', "):
        ImageDataBunch.from_csv(mnist_sample, label_col="digit", **SMALL)
    with pytest.raises(ValueError, match="fn_col: expected a column position below 2, got 5"):
        ImageDataBunch.from_csv(mnist_sample, fn_col=5, **SMALL)
    with pytest.raises(ValueError, match="header: expected 'infer', 0 or None, got 3"):
        ImageDataBunch.from_csv(mnist_sample, header=3, **SMALL)
    with pytest.raises(MissingPathError, match="fn_col: 16 of 16 files do not exist"):
        ImageDataBunch.from_csv(mnist_sample, suffix=".jpg", **SMALL)
    with pytest.raises(TypeError, match="suffix: expected a string"):
        ImageDataBunch.from_csv(mnist_sample, suffix=None, **SMALL)
    (tmp_path / "labels.csv").write_text("name,label\n")
    with pytest.raises(ValueError, match="csv_labels: expected rows of file names and labels"):
        ImageDataBunch.from_csv(tmp_path, **SMALL)
    # a file cut mid-line: "label_col: expected a column position below 1, got 1" before
    (tmp_path / "labels.csv").write_text("name,label\na.png,0\n\nb.png,1\nc")
    with pytest.raises(ValueError, match=r"csv_labels: line 5 of .*labels.csv has 1 field\(s\) "
                       r"\(\['c'\]\), expected at least 2 .*broken line \(1 such"):  # fmt: skip
        ImageDataBunch.from_csv(tmp_path, **SMALL)


def test_from_df_in_both_orders(mnist_sample):
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(mnist_sample / "labels.csv")
    v1 = ImageDataBunch.from_df(mnist_sample, df, **SMALL)
    v2 = ImageDataLoaders.from_df(df, path=mnist_sample, **SMALL)
    # each spelling splits as its fastai (v1: split_by_rand_pct, v2: RandomSplitter)
    for data, by_csv in (
        (v1, ImageDataBunch.from_csv(mnist_sample, **SMALL)),
        (v2, ImageDataLoaders.from_csv(mnist_sample, **SMALL)),
    ):  # fmt: skip
        assert data.classes == ["0", "1"]  # pandas reads the labels as ints: str() of them
        assert data.train_ds.items == by_csv.train_ds.items
        assert data.valid_ds.labels == by_csv.valid_ds.labels
    by_name = ImageDataBunch.from_df(mnist_sample, df, fn_col="name", label_col="label", **SMALL)
    assert by_name.valid_ds.items == v1.valid_ds.items
    with pytest.raises(TypeError, match="df: expected a pandas DataFrame, got dict"):
        ImageDataBunch.from_df(mnist_sample, {"name": []}, **SMALL)
    with pytest.raises(ValueError, match="label_col: expected a column name or a position"):
        ImageDataBunch.from_df(mnist_sample, df, label_col=7, **SMALL)


def test_from_df_without_pandas(mnist_sample, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    with pytest.raises(ImportError, match="from_df needs pandas.*pip install pandas"):
        ImageDataBunch.from_df(mnist_sample, object(), **SMALL)


def test_open_image(mnist_sample, tmp_path, monkeypatch):
    """fastai v1's Image: shape, size (H, W), data in [0, 1], px, pil, inline PNG, show(),
    and predict / preprocess take it as they take its file."""
    monkeypatch.delenv(PLOTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    path = next((mnist_sample / "valid" / "7").iterdir())
    img = open_image(path)
    gray = np.asarray(Image.open(path))
    want = np.repeat(gray[..., None], 3, axis=2)
    assert np.array_equal(np.asarray(img), want) and np.asarray(img).dtype == np.uint8
    assert img.shape == (3, 28, 28) and img.size == (28, 28) and repr(img) == "Image (3, 28, 28)"
    assert torch.equal(img.px, torch.from_numpy(want).permute(2, 0, 1))
    assert torch.equal(img.data, img.px.float() / 255)
    assert img.pil.mode == "RGB" and np.array_equal(np.asarray(img.pil), want)
    with Image.open(io.BytesIO(img._repr_png_())) as png:  # what a notebook shows
        assert np.array_equal(np.asarray(png.convert("RGB")), want)
    rgb = np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "tall.png")
    tall = open_image(tmp_path / "tall.png")
    assert np.array_equal(np.asarray(tall), rgb)
    assert tall.shape == (3, 30, 20) and tall.size == (30, 20)
    fig = tall.show(figsize=(2, 3), title="tall")
    ax = fig.axes[0]
    assert ax.get_title() == "tall" and not ax.axison
    assert np.array_equal(np.asarray(ax.get_images()[0].get_array()), np.asarray(tall))
    assert (tmp_path / "plots" / "image.png").is_file()  # a script saves it
    assert tall.show(ax=ax) is ax and len(ax.get_images()) == 2
    with pytest.raises(TypeError, match="ax should be a matplotlib Axes"):
        tall.show(ax=3)
    with pytest.raises(TypeError, match=r"px: expected a uint8 Tensor\[3, H, W\]"):
        type(img)(torch.zeros(28, 28, 3, dtype=torch.uint8))
    data = ImageDataBunch.from_folder(mnist_sample, **SMALL)
    assert torch.equal(data.preprocess(img), data.preprocess(path))
    assert torch.equal(data.preprocess([tall, img]), data.preprocess([tmp_path / "tall.png", path]))
    broken = tmp_path / "broken.png"
    broken.write_bytes(path.read_bytes()[:60])
    with pytest.raises(BadImageError, match="broken.png"):
        open_image(broken)
    with pytest.raises(TypeError, match="fn: expected an image file path, got int"):
        open_image(3)
