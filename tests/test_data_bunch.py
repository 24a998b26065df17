"""The bunch (ImageDataBunch / ImageDataLoaders): constructors, pipeline defaults, device
batches after augmentation, show_batch, preprocess, skip_bad.

Tests of the float batches need `fastcore_ext.augment.augment_batch` and the kernel
`ops.augment_normalize` it calls; while either is not merged they skip saying which, and
they run as soon as both are there.
"""

import importlib.util
import re
import shutil
import warnings

import numpy as np
import pytest
import torch
from fakes import break_images
from matplotlib.figure import Figure
from PIL import Image

from fastcore_ext.augment import aug_transforms, get_transforms
from fastcore_ext.data import (
    DEMO_CLASSES,
    BadImageError,
    ImageDataBunch,
    ImageDataLoaders,
    Normalize,
    PadMode,
    RandomResizedCrop,
    Resize,
    ResizeMethod,
    TensorCategory,
    TensorImage,
    cifar_stats,
    demo_dataset,
    get_image_files,
    imagenet_stats,
    mnist_stats,
)

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

PAT = r"/([^/]+)_\d+\.jpg$"
PAT_V2 = r"^(.+)_\d+\.jpg$"  # fastai v2 (ImageDataLoaders) matches the file name


def augment():
    """fastcore_ext.augment, or a skip while the device step is not merged: augment.py
    without augment_batch (augparams branch) or ops without augment_normalize (the kernel
    branch). A build that is missing (fastcore_ext._C) fails instead of skipping."""
    if importlib.util.find_spec("fastcore_ext.augment") is None:
        pytest.skip("fastcore_ext.augment does not exist yet (augparams branch not merged)")
    mod = importlib.import_module("fastcore_ext.augment")
    if not hasattr(mod, "augment_batch"):
        pytest.skip("fastcore_ext.augment has no augment_batch yet (augparams not merged)")
    ops = importlib.import_module("fastcore_ext.ops")
    if not hasattr(ops, "augment_normalize"):
        pytest.skip("fastcore_ext.ops has no augment_normalize yet (kernel branch not merged)")
    return mod


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """12 classes x (5 train + 1 valid) images of 32 px."""
    return demo_dataset(tmp_path_factory.mktemp("bunch") / "demo", n_per_class=6, size=32)


def _v2(root, **kw):
    """A bunch that needs no augment module: no random augmentation."""
    kw = {"item_tfms": Resize(24), "bs": 8, "num_workers": 0, "seed": 0, **kw}
    return ImageDataLoaders.from_folder(root, **kw)


# -- constructors and item sources -----------------------------------------------------------


def test_from_folder(root):
    b = _v2(root)
    assert isinstance(b, ImageDataBunch)
    assert b.classes == sorted(DEMO_CLASSES) and b.c == 12 and b.vocab is b.classes
    assert len(b.train_ds) == 60 and len(b.valid_ds) == 12
    assert len(b.train_dl) == 7 and len(b.valid_dl) == 2 and b.train is b.train_dl
    assert b.path == root and b.device == torch.device("cpu") and b.stats is None
    x, y = b.train_ds[0]
    assert x.shape == (3, 24, 24) and x.dtype == torch.uint8 and isinstance(x, TensorImage)
    assert isinstance(y, TensorCategory) and y.shape == () and int(y) == b.train_ds.labels[0]
    assert b.train_ds.items[0].parent.name == b.classes[b.train_ds.labels[0]] == b.classes[y]
    assert b.n_inp == 1 and b.loaders == [b.train_dl, b.valid_dl]


def test_dataset_items_show_and_v1_x_y(root, tmp_path):
    """``img, label = data.train_ds[0]; img.show()`` raised AttributeError ('Tensor' object
    has no attribute 'show') and v1's ``data.train_ds.x / .y`` did not exist."""
    from fastcore_ext.plots import set_plot_dir

    b = _v2(root)
    img, label = b.train_ds[0]
    set_plot_dir(tmp_path)
    ax = img.show(title=b.classes[label])
    assert ax.get_title() == b.classes[b.train_ds.labels[0]]
    assert (tmp_path / "show_image.png").is_file()
    ds = b.valid_ds
    assert len(ds.x) == len(ds.y) == len(ds) and ds.y.classes == b.classes and ds.y.c == b.c
    assert list(ds.x.items) == ds.items and ds.y.items.tolist() == ds.labels
    assert torch.equal(ds.x[1], ds[1][0]) and int(ds.y[-1]) == ds.labels[-1]
    stacked = torch.stack([ds[i][0] for i in range(3)]).float() / 255  # tensors as before
    assert stacked.shape == (3, 3, 24, 24)
    with pytest.raises(TypeError, match="index: expected an int, got str"):
        ds["0"]
    with pytest.raises(IndexError, match="index: 12 out of range for 12 items"):
        ds.y[12]


def test_from_folder_valid_pct_split_determinism(root):
    a = _v2(root, valid_pct=0.25, seed=1)
    assert len(a.valid_ds) == 18 and len(a.train_ds) == 54 and a.c == 12
    assert a.valid_ds.items == _v2(root, valid_pct=0.25, seed=1).valid_ds.items
    assert a.valid_ds.items != _v2(root, valid_pct=0.25, seed=2).valid_ds.items


def test_seed_none_of_the_v1_bunch_follows_np_random_seed(root):
    """fastai v1's split draws from numpy's global RNG: the lesson's np.random.seed(2) before
    from_name_re fixes it (ours drew from torch's, so each run split anew)."""
    kw = {"valid_pct": 0.25, "size": 24, "bs": 8, "num_workers": 0, "ds_tfms": None}
    np.random.seed(2)
    a = ImageDataBunch.from_folder(root, **kw)
    np.random.seed(2)
    torch.manual_seed(123)  # torch's state does not matter here
    b = ImageDataBunch.from_folder(root, **kw)
    assert a.seed == b.seed and a.valid_ds.items == b.valid_ds.items
    np.random.seed(3)
    assert ImageDataBunch.from_folder(root, **kw).seed != a.seed


def test_seed_none_follows_torch_manual_seed(root):
    torch.manual_seed(0)
    a = _v2(root, valid_pct=0.25, seed=None)
    torch.manual_seed(0)
    b = _v2(root, valid_pct=0.25, seed=None)
    assert a.seed == b.seed and a.valid_ds.items == b.valid_ds.items
    assert torch.equal(
        torch.cat(a.train_dl.batch_indices(0)), torch.cat(b.train_dl.batch_indices(0))
    )


@pytest.mark.parametrize(
    "cls,pat,label_of",
    [  # fastai v1 reads the whole path (a Path), v2 the file name (a str)
        (ImageDataBunch, PAT, lambda p: re.search(PAT, p.as_posix()).group(1)),
        (ImageDataLoaders, PAT_V2, lambda name: name[: name.rindex("_")]),
    ],
)
def test_from_name_re_func_lists(root, cls, pat, label_of):
    files = get_image_files(root)
    kw = {"item_tfms": Resize(24), "bs": 8, "num_workers": 0, "seed": 5}
    a = cls.from_name_re(root, files, pat, **kw)
    seen = []

    def label_func(x):
        seen.append(type(x))
        return label_of(x)

    b = cls.from_name_func(root, files, label_func, **kw)
    assert set(seen) == ({str} if cls is ImageDataLoaders else {type(files[0])})
    c = cls.from_lists(root, files, [re.search(PAT, p.as_posix()).group(1) for p in files], **kw)
    for d in (a, b, c):
        assert type(d) is cls and d.classes == sorted(DEMO_CLASSES)
        assert len(d.valid_ds) == int(0.2 * 72) and len(d.train_ds) == 72 - int(0.2 * 72)
        assert d.valid_ds.items == a.valid_ds.items and d.train_ds.labels == a.train_ds.labels
        for p, y in zip(d.train_ds.items, d.train_ds.labels, strict=True):
            assert p.name.startswith(d.classes[y] + "_")


def test_from_name_re_non_matching_file(root, tmp_path):
    odd = tmp_path / "oddname.jpg"
    shutil.copy(get_image_files(root)[0], odd)
    with pytest.raises(ValueError, match=r"pat: the pattern .* does not match file .*oddname"):
        ImageDataLoaders.from_name_re(root, [*get_image_files(root), odd], PAT_V2)


def test_a_pattern_read_where_the_other_fastai_reads_it_is_explained(root):
    """fastbook's r'(.+)_\\d+.jpg$' on v1's whole path gave labels that were paths,
    silently; v1's pattern on v2's file name matches nothing."""
    files = get_image_files(root)
    with pytest.raises(
        ValueError, match=r"gives the label '/.*/arrow' .* a path: it is searched in its whole path"
    ):
        ImageDataBunch.from_name_re(root, files, r"(.+)_\d+.jpg$", seed=0)
    with pytest.raises(
        ValueError, match=r"does not match file .* \(it is searched in its file name"
    ):
        ImageDataLoaders.from_name_re(root, files, PAT, seed=0)


def test_folder_errors(root, tmp_path):
    with pytest.raises(ValueError, match="train: folder 'training' not found"):
        _v2(root, train="training")
    with pytest.raises(ValueError, match=r"valid_pct: expected a float in \[0, 1\)"):
        _v2(root, valid_pct=1.2)
    with pytest.raises(ValueError, match="no image files"):
        _v2(tmp_path, valid_pct=0.2)
    one = tmp_path / "one"
    for split in ("train", "valid"):
        (one / split / "cat").mkdir(parents=True)
        for i in range(3):
            shutil.copy(get_image_files(root)[i], one / split / "cat" / f"{i}.jpg")
    with pytest.raises(
        ValueError, match=r"classes: a classifier needs at least 2 classes, got \['cat'\]"
    ):
        _v2(one)


def test_constructor_arguments_that_are_not_what_they_should_be_are_named(root):
    """Each of these ended in pathlib or Python internals: path=None or an int, fnames given
    as one file (iterated by character) or a folder ('DataPath' object is not iterable),
    labels=None ('NoneType' object is not iterable), a tensor of labels (classes
    'tensor(0)', ...)."""
    files = get_image_files(root)
    labels = [p.parent.name for p in files]
    for path in (None, 5):
        with pytest.raises(TypeError, match=f"path: expected a folder .*got {path}"):
            ImageDataBunch.from_folder(path, size=16)
        with pytest.raises(TypeError, match=f"path: expected a folder .*got {path}"):
            ImageDataBunch.from_csv(path, size=16)
    hint = r"fnames: expected a list of image files \(get_image_files\(path\) makes one\)"
    with pytest.raises(TypeError, match=f"{hint}, got the single name"):
        ImageDataBunch.from_name_re(root, str(files[0]), PAT, size=16)
    with pytest.raises(TypeError, match=f"{hint}, got the folder"):
        ImageDataLoaders.from_name_func(root, root, lambda x: x[0], size=16)
    with pytest.raises(TypeError, match="labels: expected a list of labels .*got None"):
        ImageDataBunch.from_lists(root, files, None, size=16)
    with pytest.raises(TypeError, match="csv_labels: expected a CSV file name, got 3"):
        ImageDataBunch.from_csv(root, csv_labels=3, size=16)
    codes = torch.tensor([sorted(DEMO_CLASSES).index(y) for y in labels])
    b = ImageDataBunch.from_lists(root, files, codes, size=16, bs=8, num_workers=0, seed=0)
    assert b.classes == [str(i) for i in range(12)]  # names of ints, in numeric order (fastai)


# -- pipeline defaults (no augmentation module needed) -----------------------------------------


def test_pipeline_defaults_without_augmentation(root):
    b = ImageDataBunch.from_folder(root, ds_tfms=None, size=32, bs=8, num_workers=0)
    assert (b.size, b.presize, b.spec) == (32, 40, None)  # presize = round(1.25 * size)
    b = ImageDataBunch.from_folder(root, ds_tfms=None, bs=8, num_workers=0)
    assert (b.size, b.presize) == (32, 32)  # the images' own size (all 32 x 32): see below
    b = _v2(root, item_tfms=Resize(40), size=32)
    assert (b.size, b.presize) == (32, 40)
    b = _v2(root, item_tfms=Resize(30, method="squish"))
    assert (b.size, b.presize, b.train_ds.method) == (30, 30, "squish")
    b = _v2(root, batch_tfms=[Normalize.from_stats(*imagenet_stats)])
    assert b.stats == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert b.train_dl.stats == b.valid_dl.stats == b.stats


def test_resize_pad_presizes_with_its_pad_mode(root):
    b = _v2(root, item_tfms=Resize(30, ResizeMethod.Pad, pad_mode="zeros"))
    assert (b.size, b.presize, b.train_ds.method, b.valid_ds.method) == (
        30, 30, "pad-zeros", "pad-zeros"
    )  # fmt: skip
    b = _v2(root, item_tfms=Resize(30, "pad"))  # fastai's default pad_mode: reflection
    assert b.train_ds.method == "pad-reflection"
    assert Resize(30, "pad", PadMode.Border).presize_method == "pad-border"
    assert Resize(30, ResizeMethod.Squish, "zeros").presize_method == "squish"
    assert repr(Resize(30, "pad", "zeros")) == "Resize(30, method='pad', pad_mode='zeros')"


def test_random_resized_crop_sets_presize_and_the_training_crop(root):
    rrc = RandomResizedCrop(32, min_scale=0.25)
    assert rrc.presize == 64  # 32 / sqrt(0.25), within 2 * size
    assert RandomResizedCrop(32, min_scale=0.5).presize == 46  # ceil(45.25)
    assert RandomResizedCrop(32).presize == 64  # min_scale 0.08: capped at 2 * size
    assert RandomResizedCrop(32, min_scale=1.0).presize == 32
    b = _v2(root, item_tfms=RandomResizedCrop(24, min_scale=0.3, ratio=(0.8, 1.25)))
    assert (b.size, b.presize, b.train_ds.method) == (24, 44, "crop")
    assert (b.spec.min_scale, b.spec.ratio) == (0.3, (0.8, 1.25))
    assert (b.spec.do_flip, b.spec.max_rotate, b.spec.max_warp, b.spec.max_lighting) == (
        False, 0.0, 0.0, 0.0
    )  # fmt: skip
    from fastcore_ext.augment import aug_transforms

    b = _v2(root, item_tfms=RandomResizedCrop(24, min_scale=0.5), batch_tfms=aug_transforms())
    assert (b.spec.min_scale, b.spec.do_flip, b.spec.max_warp) == (0.5, True, 0.2)
    with pytest.warns(UserWarning, match=r"RandomResizedCrop\(min_scale=0.5\) replaces"):
        b = _v2(
            root, item_tfms=RandomResizedCrop(24, min_scale=0.5),
            batch_tfms=aug_transforms(min_scale=0.75),
        )  # fmt: skip
    assert b.spec.min_scale == 0.5


def test_random_resized_crop_varies_training_scale_not_validation(tmp_path):
    """A white disc on black: the share of white in a crop grows as the crop shrinks around it,
    so training batches (a random crop each) vary, validation ones (the centre) do not."""
    augment()
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        yy, xx = np.mgrid[0:64, 0:64]
        disc = (((yy - 31.5) ** 2 + (xx - 31.5) ** 2) < 12**2) * 255
        for k in range(8):
            Image.fromarray(np.stack([disc] * 3, -1).astype(np.uint8)).save(
                tmp_path / cls / f"{k}.png"
            )
    b = ImageDataLoaders.from_folder(
        tmp_path, valid_pct=0.25, seed=0, item_tfms=RandomResizedCrop(32, min_scale=0.1),
        bs=12, num_workers=0, device="cpu",
    )  # fmt: skip
    white = [b.one_batch("train")[0].mean(dim=(1, 2, 3)) for _ in range(2)]
    white = torch.cat(white)
    assert white.max() - white.min() > 0.1, white  # crops of very different scales
    v1, v2 = b.one_batch("valid")[0], b.one_batch("valid")[0]
    torch.testing.assert_close(v1, v2, rtol=0, atol=0)
    vw = v1.mean(dim=(1, 2, 3))
    assert vw.max() - vw.min() < 1e-6  # every image the same centre view
    assert abs(vw[0].item() - np.pi * 12**2 / 64**2) < 0.02  # the whole image, disc included


def test_pipeline_argument_errors(root):
    with pytest.raises(TypeError, match="item_tfms: expected one Resize"):
        _v2(root, item_tfms=[Resize(20), Resize(30)])
    with pytest.raises(ValueError, match="ds_tfms: fastai v1's ds_tfms cannot be mixed"):
        _v2(root, ds_tfms=None)
    with pytest.raises(ValueError, match="size: expected a positive int"):
        _v2(root, size=0)
    with pytest.raises(ValueError, match="size: expected a positive int"):
        Resize(-3)
    with pytest.raises(ValueError, match="method: expected one of"):
        Resize(20, method="fit")
    with pytest.raises(ValueError, match="pad_mode: expected one of"):
        Resize(20, method="pad", pad_mode="constant")
    with pytest.raises(ValueError, match="min_scale: expected a float in"):
        RandomResizedCrop(20, min_scale=0)
    with pytest.raises(ValueError, match="ratio should be a pair 0 < low <= high"):
        RandomResizedCrop(20, ratio=(2, 1))
    with pytest.raises(ValueError, match="stats: expected every std > 0"):
        Normalize([0.5] * 3, [0.2, 0.0, 0.2])
    with pytest.raises(ValueError, match="stats: expected 3 means and 3 stds"):
        Normalize([0.5], [0.2])
    nan, inf = float("nan"), float("inf")
    with pytest.raises(ValueError, match="stats: expected finite means and stds, got mean "
                       r"\[0.5, 0.5, 0.5\], std \[inf, inf, inf\]"):  # fmt: skip
        Normalize.from_stats([0.5] * 3, [inf] * 3)
    with pytest.raises(ValueError, match=r"stats: expected every mean in \[0, 1\] .*divide them "
                       r"by 255.*got mean \[1e\+30, 0.5, 0.5\]"):  # fmt: skip
        Normalize([1e30, 0.5, 0.5], [0.2] * 3)
    with pytest.raises(ValueError, match=r"stats: expected every std in \[0.001, 1\] \(a smaller "
                       r"std makes a normalized pixel larger than 1000\)"):  # fmt: skip
        Normalize([0.5] * 3, [1e-30] * 3)
    with pytest.raises(ValueError, match=r"stats: expected every mean in \[0, 1\]"):
        Normalize([123.7, 116.3, 103.5], [58.4, 57.1, 57.4])  # 0-255 units
    with pytest.raises(ValueError, match=r"stats: expected every std in \[0.001, 1\]"):
        Normalize([0.5] * 3, [0.2, 0.2, 1.5])
    assert Normalize([0, 0, 0], [1, 1, 1]).std == [1.0] * 3  # the bounds are allowed
    assert Normalize([1, 1, 1], [1e-3] * 3).mean == [1.0] * 3
    b = _v2(root)
    for stats in (([nan] * 3, [0.2] * 3), ([inf] * 3, [1e-30] * 3)):
        with pytest.raises(ValueError, match="stats: expected finite means and stds"):
            b.normalize(stats)
    assert b.stats is None
    with pytest.raises(ValueError, match="bs: expected a positive int"):
        _v2(root, bs=0)
    with pytest.raises(TypeError, match="seed: expected a non-negative int"):
        _v2(root, seed="1")
    with pytest.raises(TypeError, match="cache: expected a bool or a folder path, got 3"):
        _v2(root, cache=3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: cuda requested"):
            _v2(root, device="cuda")
    with pytest.raises(ValueError, match="device: expected a torch device"):
        _v2(root, device="toaster")


def test_skip_bad(root, tmp_path):
    tree = tmp_path / "t"
    shutil.copytree(root, tree)
    victim = tree / "train" / "star" / "star_0001.jpg"
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG
    (tree / "valid" / "ring" / "ring_9999.jpg").write_text("not an image")
    b = _v2(tree)  # not checked up front: fails when loaded, naming the file
    with pytest.raises(BadImageError, match="star_0001.jpg"):
        for i in range(len(b.train_ds)):
            b.train_ds[i]
    with pytest.warns(UserWarning, match=r"skip_bad: dropped 2 unreadable") as rec:
        b = _v2(tree, skip_bad=True)
    ours = [str(w.message) for w in rec if "skip_bad" in str(w.message)]
    assert len(ours) == 1 and "star_0001.jpg" in ours[0] and "ring_9999.jpg" in ours[0]
    assert len(b.train_ds) == 59 and len(b.valid_ds) == 12
    assert victim not in b.train_ds.items
    assert b.dropped_items == sorted([victim, tree / "valid" / "ring" / "ring_9999.jpg"])
    assert b.bad_items == []  # none met while training: they were left out
    for _ in b.train_dl.uint8_batches():
        pass


def test_skip_bad_names_a_class_left_without_training_images(root, tmp_path):
    """A class whose training images are all unreadable stays a class (the folders name it)
    but is named by a warning: the model cannot learn it. skip_bad with valid_pct=0 (no
    validation set asked for) is not taken for a validation set emptied by bad files."""
    tree = tmp_path / "t"
    shutil.copytree(root / "train", tree)
    for f in (tree / "star").glob("*.jpg"):
        f.write_text("not an image")
    with pytest.warns(UserWarning) as rec:
        b = _v2(tree, valid_pct=0.2, skip_bad=True)
    said = [str(w.message) for w in rec]
    assert any("skip_bad: dropped 5" in m for m in said)
    assert any("1 class(es) have no readable training image left" in m for m in said)
    assert "star" in b.classes and b.c == 12
    with pytest.warns(UserWarning) as rec:
        b = _v2(tree, valid_pct=0, skip_bad=True)
    assert len(b.valid_ds) == 0 and len(b.train_ds) == 55


def test_skip_bad_names_a_few_of_many(root, tmp_path):
    tree = tmp_path / "t"
    shutil.copytree(root, tree)
    bad = sorted(tree.rglob("*.jpg"))[::9]  # 8 files
    for f in bad:
        f.write_text("this is not an image\n")
    with pytest.warns(UserWarning, match=f"skip_bad: dropped {len(bad)} unreadable") as rec:
        _v2(tree, skip_bad=True)
    (msg,) = [str(w.message) for w in rec if "skip_bad" in str(w.message)]
    assert msg.endswith(f" and {len(bad) - 5} more") and str(bad[4]) in msg
    assert str(bad[5]) not in msg


@pytest.mark.parametrize("factory", ["from_folder", "from_name_re", "from_name_func", "from_lists"])
def test_skip_bad_in_every_factory(root, tmp_path, factory):
    tree = tmp_path / "t"
    shutil.copytree(root, tree)
    files = sorted(tree.rglob("*.jpg"))
    bad = break_images(files[::7][:3])
    labels = [p.parent.name for p in files]
    build = {
        "from_folder": lambda **kw: ImageDataBunch.from_folder(tree, valid_pct=0.25, **kw),
        "from_name_re": lambda **kw: ImageDataBunch.from_name_re(
            tree, files, r"/([a-z]+)_\d+\.jpg$", **kw
        ),
        "from_name_func": lambda **kw: ImageDataBunch.from_name_func(
            tree, files, lambda p: p.parent.name, **kw
        ),
        "from_lists": lambda **kw: ImageDataBunch.from_lists(tree, files, labels, **kw),
    }[factory]
    with pytest.warns(UserWarning, match="skip_bad: dropped 3 unreadable"):
        b = build(skip_bad=True, size=16, bs=8, num_workers=0, seed=0)
    kept = set(b.train_ds.items) | set(b.valid_ds.items)
    assert kept == set(files) - set(bad)
    assert b.bad_items == []


# -- device batches (need fastcore_ext.augment.augment_batch) ----------------------------------


def _shown(b, ds_type="train"):
    """The batch show_batch just showed: the first of the next epoch (set_epoch starts
    one_batch again from it)."""
    dl = b.train_dl if ds_type == "train" else b.valid_dl
    dl.set_epoch(dl.epoch)
    return b.one_batch(ds_type)


def _batches(dl, epoch):
    dl.set_epoch(epoch)
    xs, ys = zip(*dl, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_v1_and_v2_spellings(root):
    aug = augment()
    plain = ImageDataBunch.from_folder(root, size=24, bs=8, num_workers=0, seed=0)
    assert plain.spec is None  # fastai v1's ds_tfms=None: no augmentation unless asked for
    v1 = ImageDataBunch.from_folder(
        root, ds_tfms=aug.get_transforms(), size=24, bs=8, num_workers=0, seed=0
    )
    assert v1.spec == aug.get_transforms() and (v1.size, v1.presize) == (24, 30)
    assert v1.normalize(imagenet_stats) is v1 and v1.stats == (
        list(imagenet_stats[0]),
        list(imagenet_stats[1]),
    )
    v2 = ImageDataLoaders.from_folder(
        root, item_tfms=Resize(40), bs=8, num_workers=0, seed=0,
        batch_tfms=[*aug.aug_transforms(size=24), Normalize.from_stats(*imagenet_stats)],
    )  # fmt: skip
    assert (v2.size, v2.presize) == (24, 40) and v2.spec == aug.aug_transforms(size=24)[0]
    assert v2.stats == v1.stats
    with pytest.raises(ValueError, match="size: 32 contradicts the AugmentSpec's size 24"):
        _v2(root, batch_tfms=aug.aug_transforms(size=24), size=32)
    with pytest.raises(TypeError, match="ds_tfms: expected an AugmentSpec"):
        ImageDataBunch.from_folder(root, ds_tfms="flip")


@pytest.mark.parametrize("normalize", [False, True])
def test_batch_shapes_dtypes_range(root, normalize):
    augment()
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0, seed=0
    )
    if normalize:
        b.normalize(imagenet_stats)
    for ds_type in ("train", "valid"):
        x, y = b.one_batch(ds_type)
        assert x.shape == (8, 3, 24, 24) and x.dtype == torch.float32 and x.device == b.device
        assert y.shape == (8,) and y.dtype == torch.int64 and y.device == b.device
        assert torch.isfinite(x).all()
        raw = b.denorm(x)
        assert raw.min() >= 0 and raw.max() <= 1
        if not normalize:
            assert x.min() >= -1e-6 and x.max() <= 1 + 1e-6
            torch.testing.assert_close(raw, x.clamp(0, 1))
    if normalize:  # the normalized batch is the [0, 1] batch, shifted and scaled
        plain = ImageDataBunch.from_folder(
            root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0, seed=0
        )
        mean = torch.tensor(imagenet_stats[0]).view(1, 3, 1, 1)
        std = torch.tensor(imagenet_stats[1]).view(1, 3, 1, 1)
        torch.testing.assert_close(_shown(b)[0], (plain.one_batch()[0] - mean) / std)


def test_epochs_are_reproducible_and_differ(root):
    augment()
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0, seed=0
    )
    e3 = _batches(b.train_dl, 3)
    again = _batches(b.train_dl, 3)
    torch.testing.assert_close(e3[0], again[0], rtol=0, atol=0)
    assert torch.equal(e3[1], again[1])
    e4 = _batches(b.train_dl, 4)
    assert not torch.equal(e3[1], e4[1])
    b.train_dl.set_epoch(3)
    x0, y0 = b.one_batch()  # first batch of the next epoch, epoch not advanced
    torch.testing.assert_close(x0, e3[0][:8], rtol=0, atol=0)
    assert b.train_dl.epoch == 3
    v1, v2 = _batches(b.valid_dl, 0), _batches(b.valid_dl, 9)  # validation: deterministic
    torch.testing.assert_close(v1[0], v2[0], rtol=0, atol=0)
    assert v1[1].tolist() == b.valid_ds.labels


def test_one_batch_of_a_training_loader_is_another_batch_at_each_call(root):
    """As fastai's (show_batch re-run shows new images): call k since the epoch advanced gives
    batch k of the next epoch, the first as the pass will; training is unchanged by it."""
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=4, num_workers=0, seed=1
    )
    calls = [b.one_batch() for _ in range(3)]
    batches = b.train_dl.batch_indices()
    for (_, y), idx in zip(calls, batches, strict=False):
        assert y.tolist() == [b.train_ds.labels[int(i)] for i in idx]
    assert not torch.equal(calls[0][0], calls[1][0])
    first = next(iter(b.train_dl))  # the pass: epoch 0, as if one_batch had not been called
    torch.testing.assert_close(first[0], calls[0][0], rtol=0, atol=0)
    fresh = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=4, num_workers=0, seed=1
    )
    torch.testing.assert_close(_batches(fresh.train_dl, 0)[0], _batches(b.train_dl, 0)[0])
    assert b.train_dl.epoch == 1
    x, y = b.one_batch()  # the epoch advanced: the next epoch's first batch again
    assert y.tolist() == [b.train_ds.labels[int(i)] for i in b.train_dl.batch_indices()[0]]
    v = [b.one_batch("valid") for _ in range(2)]  # validation: its first batch each time
    torch.testing.assert_close(v[0][0], v[1][0], rtol=0, atol=0)


def test_v1s_transforms_pair_and_stats(root):
    """fastai v1's get_transforms() is a pair (train, valid): ``tfms[0]``, ``ds_tfms=(tfms[0],
    [])`` and ``ds_tfms=[*tfms]`` read as in v1; cifar_stats / mnist_stats, ResizeMethod.SQUISH
    as v1 names them."""
    tfms = get_transforms(max_rotate=5)
    assert len(tfms) == 2 and tfms[0] is tfms and tfms[1] == [] and tfms[-2] is tfms
    with pytest.raises(IndexError, match="items 0 .training. and 1 .validation., got 2"):
        tfms[2]
    for ds_tfms in (tfms, (tfms[0], []), [*tfms], (tfms, None)):
        b = ImageDataBunch.from_folder(root, ds_tfms=ds_tfms, size=24, bs=8, num_workers=0)
        assert b.spec == tfms
    for bad in ((tfms, tfms), [], (tfms, [tfms])):
        with pytest.raises(
            TypeError, match=r"ds_tfms: expected an AugmentSpec .* \(tfms\[0\], \[\]\)"
        ):
            ImageDataBunch.from_folder(root, ds_tfms=bad, size=24, num_workers=0)
    assert ResizeMethod.SQUISH is ResizeMethod.Squish and ResizeMethod.CROP == "crop"
    for stats in (cifar_stats, mnist_stats):
        assert ImageDataBunch.from_folder(root, size=24, bs=8, num_workers=0).normalize(stats).stats


def test_no_augmentation_means_center_crop(root):
    augment()
    b = ImageDataBunch.from_folder(root, ds_tfms=None, size=24, bs=8, num_workers=0, seed=0)
    x, _ = b.one_batch("train")
    idx = b.train_dl.batch_indices()[0]
    torch.testing.assert_close(x, b.preprocess([b.train_ds.items[int(i)] for i in idx]))


@pytest.fixture(scope="module")
def shaped_root(tmp_path_factory):
    """Two classes x (8 train + 2 valid) noise PNGs, landscape, portrait, 4:1 and square."""
    root = tmp_path_factory.mktemp("shaped")
    rng = np.random.default_rng(1)
    shapes = [(40, 60), (60, 40), (24, 96), (96, 24), (40, 40)]
    for split, n in (("train", 8), ("valid", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                img = rng.integers(0, 256, (*shapes[k % 5], 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / c / f"{k}.png")
    return root


@pytest.mark.parametrize("cls", [ImageDataBunch, ImageDataLoaders])
def test_without_a_size_square_images_of_one_size_keep_it(tmp_path, cls):
    """The probe's finding: 28 x 28 digits became 224 x 224 batches (64 times the pixels),
    silently; fastai keeps each image's size."""
    for c in ("3", "7"):
        (tmp_path / c).mkdir()
        for k in range(5):
            Image.new("L", (28, 28), 40 * k).save(tmp_path / c / f"{k}.png")
    Image.new("L", (28, 28)).save(tmp_path / "3" / "exif.jpg", exif=Image.Exif())
    kw = {"ds_tfms": None} if cls is ImageDataBunch else {}
    b = cls.from_folder(tmp_path, valid_pct=0.25, seed=0, bs=2, num_workers=0, **kw)
    assert (b.size, b.presize) == (28, 28)
    assert b.one_batch()[0].shape == (2, 3, 28, 28)


def test_without_a_size_other_sizes_take_the_default_with_a_warning(shaped_root, tmp_path):
    with pytest.warns(UserWarning, match=r"size: no size chosen .* not squares of one size "
                      r"\(60 x 40 \(0.png\)\).* presized to 280 px and "
                      r"cropped to 224 x 224.*item_tfms=Resize\(n\).*size=n"):  # fmt: skip
        b = ImageDataLoaders.from_folder(shaped_root, bs=4, num_workers=0, seed=0)
    assert (b.size, b.presize) == (224, 280)
    # squares of two sizes: the first two named
    for k in range(10):
        Image.new("RGB", (40, 40) if k == 0 else (32, 32)).save(tmp_path / f"sq{k}.png")
    squares = [tmp_path / f"sq{k}.png" for k in range(10)]
    a, b = r"40 x 40 \(sq0.png\)", r"32 x 32 \(sq\d.png\)"  # in the split's order
    two = f"({a} and {b}|{b} and {a})"
    with pytest.warns(UserWarning, match=rf"not squares of one size \({two}\)"):
        b = ImageDataLoaders.from_lists(tmp_path, squares, list("ab" * 5), bs=2, seed=0,
                                        num_workers=0)  # fmt: skip
    assert (b.size, b.presize) == (224, 280)
    with warnings.catch_warnings():  # a size chosen: no warning, the size asked
        warnings.simplefilter("error")
        b = ImageDataLoaders.from_folder(shaped_root, bs=4, num_workers=0, item_tfms=Resize(20))
        assert (b.size, b.presize) == (20, 20)
        b = ImageDataBunch.from_folder(shaped_root, bs=4, num_workers=0, size=16, ds_tfms=None)
        assert (b.size, b.presize) == (16, 20)


@pytest.mark.parametrize("folder", ["root", "shaped_root"])
def test_workers_and_cache_do_not_change_batches(folder, request):
    augment()
    root = request.getfixturevalue(folder)
    kw = {"ds_tfms": get_transforms(), "size": 24, "bs": 8, "seed": 7}
    ref = ImageDataBunch.from_folder(root, num_workers=0, **kw).normalize(imagenet_stats)
    want_t, want_v = _batches(ref.train_dl, 1), _batches(ref.valid_dl, 1)
    for nw, cache in ((2, False), (0, True), (2, True)):
        b = ImageDataBunch.from_folder(root, num_workers=nw, cache=cache, **kw)
        b.normalize(imagenet_stats)
        for _ in range(2):  # with cache: the first pass fills it, the second reads it
            got_t, got_v = _batches(b.train_dl, 1), _batches(b.valid_dl, 1)
            torch.testing.assert_close(got_t[0], want_t[0], rtol=0, atol=0)
            torch.testing.assert_close(got_v[0], want_v[0], rtol=0, atol=0)
            assert torch.equal(got_t[1], want_t[1]) and torch.equal(got_v[1], want_v[1])
        if cache:
            assert b.train_ds.cache.complete and b.valid_ds.cache.complete
        b.train_dl.close()
        b.valid_dl.close()


def test_pad_presize_with_the_cache_gives_the_same_batches(shaped_root, tmp_path):
    """Resize(pad): the cache keeps the padded squares under a key of their own."""
    augment()
    kw = {"item_tfms": Resize(24, "pad", pad_mode="zeros"), "bs": 8, "seed": 7,
          "num_workers": 0}  # fmt: skip
    ref = ImageDataLoaders.from_folder(shaped_root, **kw)
    want_t, want_v = _batches(ref.train_dl, 1), _batches(ref.valid_dl, 1)
    b = ImageDataLoaders.from_folder(shaped_root, cache=tmp_path, **kw)
    crop = ImageDataLoaders.from_folder(
        shaped_root, cache=tmp_path, **{**kw, "item_tfms": Resize(24)}
    )
    assert b.train_ds.cache.path != crop.train_ds.cache.path
    for _ in range(2):  # the first pass fills the cache, the second reads it
        got_t, got_v = _batches(b.train_dl, 1), _batches(b.valid_dl, 1)
        torch.testing.assert_close(got_t[0], want_t[0], rtol=0, atol=0)
        torch.testing.assert_close(got_v[0], want_v[0], rtol=0, atol=0)
    assert b.train_ds.cache.complete and b.valid_ds.cache.complete
    assert (got_v[0][:, :, 0] == 0).all(dim=(1, 2)).any()  # a landscape image: zero top row


def test_training_windows_differ_from_validation_on_non_square_images(shaped_root):
    """Training takes a random window along the long side, fresh each epoch; validation,
    predict and get_preds the centre. Without batch augmentation a square image's training
    batch is its validation one; every non-square one's differs in some epoch."""
    augment()
    b = ImageDataBunch.from_folder(shaped_root, ds_tfms=None, size=24, bs=4, num_workers=0,
                                   seed=0)  # fmt: skip
    items = b.train_ds.items
    square = [Image.open(p).size[0] == Image.open(p).size[1] for p in items]
    centre = b.preprocess(items)  # the validation transform
    moved = set()
    for epoch in range(4):
        b.train_dl.set_epoch(epoch)
        batches = b.train_dl.batch_indices(epoch)
        for idx, (x, _) in zip(batches, b.train_dl, strict=True):
            for k, i in enumerate(idx.tolist()):
                if square[i]:
                    torch.testing.assert_close(x[k], centre[i], rtol=0, atol=0)
                elif not torch.equal(x[k], centre[i]):
                    moved.add(i)
    assert 0 < sum(square) < len(items) and len(moved) == len(items) - sum(square)


def test_show_batch_returns_figure(root):
    augment()
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0
    ).normalize(imagenet_stats)
    fig = b.show_batch(rows=2, figsize=(4, 4))
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    _, y = _shown(b)
    assert [ax.get_title() for ax in fig.axes] == [b.classes[int(k)] for k in y[:4]]
    img = fig.axes[0].get_images()[0].get_array()
    assert img.shape == (24, 24, 3) and img.min() >= 0 and img.max() <= 1
    assert len(b.show_batch(rows=3, ds_type="valid").axes) == 9  # 9 cells for 8 images
    with pytest.raises(ValueError, match="rows: expected a positive int"):
        b.show_batch(rows=0)
    with pytest.raises(ValueError, match="ds_type 'test': this data has no test set; add one"):
        b.show_batch(ds_type="test")
    with pytest.raises(ValueError, match="ds_type: expected 'train', 'valid' or 'test'"):
        b.show_batch(ds_type="fix")


def _grid(fig):
    """(rows, cols) of a show_batch figure, its axes that hold an image, their titles and
    pictures."""
    shown = [ax for ax in fig.axes if ax.get_images()]
    geometry = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
    pictures = [np.asarray(ax.get_images()[0].get_array()) for ax in shown]
    return geometry, len(shown), [ax.get_title() for ax in shown], pictures


def _denormed(b, x):
    return b.denorm(x.float()).permute(0, 2, 3, 1).cpu().numpy()


@pytest.mark.parametrize(
    ("kwargs", "geometry", "n"),
    [
        ({}, (3, 3), 8),  # v1's default: 3 x 3 cells for the 8 images of a batch
        ({"rows": 2}, (2, 2), 4),
        ({"rows": 2, "max_n": 4, "nrows": 2, "ncols": 2}, (2, 2), 4),  # they agree
        ({"max_n": 4}, (2, 2), 4),
        ({"max_n": 5}, (2, 3), 5),  # ceil(sqrt(5)) = 3 columns
        ({"max_n": 50}, (3, 3), 8),  # at most one batch
        ({"nrows": 1, "ncols": 3}, (1, 3), 3),  # max_n 9, but the grid holds 3
        ({"max_n": 4, "nrows": 1}, (1, 4), 4),  # fastbook chapter 2
        ({"max_n": 5, "ncols": 2}, (3, 2), 5),
        ({"max_n": 2, "nrows": 2, "ncols": 3}, (2, 3), 2),
        ({"rows": 3}, (3, 3), 8),  # 9 cells for a batch of 8: as v1
        # a grid beyond a batch shrinks to fit it (rows=100: 10,000 empty Axes took minutes)
        ({"rows": 100}, (3, 3), 8),
        ({"nrows": 2, "ncols": 40}, (1, 8), 8),
    ],
)
@pytest.mark.parametrize("ds_type", ["train", "valid"])
def test_show_batch_grid_v1_and_v2(root, kwargs, geometry, n, ds_type):
    augment()
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0, seed=0
    )
    b.normalize(imagenet_stats)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fig = b.show_batch(ds_type=ds_type, **kwargs)
    said = [str(w.message) for w in rec if "show_batch" in str(w.message)]
    shrunk = kwargs in ({"rows": 100}, {"nrows": 2, "ncols": 40})
    assert len(said) == shrunk and all("and a batch holds 8: showing 8 in a" in m for m in said)
    assert isinstance(fig, Figure)
    got_geometry, shown, titles, pictures = _grid(fig)
    assert (got_geometry, shown) == (geometry, n)
    assert len(fig.axes) == geometry[0] * geometry[1]
    x, y = _shown(b, ds_type)
    assert titles == [b.classes[int(k)] for k in y[:n]]
    for got, want in zip(pictures, _denormed(b, x), strict=False):
        np.testing.assert_array_equal(got, want)
    if kwargs in ({}, {"rows": 2}):
        assert tuple(fig.get_size_inches()) == (7, 6)  # v1's figsize, as before
    assert b.train_dl.epoch == 0 and b.valid_dl.epoch == 0


def test_show_batch_v2_figsize(root):
    b = _v2(root)
    assert tuple(b.show_batch(max_n=9).get_size_inches()) == pytest.approx((7, 6))  # as v1's
    assert tuple(b.show_batch(nrows=1, ncols=3).get_size_inches()) == pytest.approx((7, 3))
    assert tuple(b.show_batch(max_n=4, figsize=(5, 2)).get_size_inches()) == (5, 2)


def test_loaders_show_batch_as_the_bunch(root, device):
    """dls.train / dls.valid draw what the bunch draws; the validation loader shows the
    validation transform (centre crop), the training one the augmented batch."""
    augment()
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0, seed=0, device=device
    )
    b.normalize(imagenet_stats)
    for dl, ds_type in ((b.train, "train"), (b.valid, "valid")):
        got = _grid(dl.show_batch(max_n=4, nrows=1))
        dl.set_epoch(dl.epoch)  # the next call shows the same batch
        want = _grid(b.show_batch(max_n=4, nrows=1, ds_type=ds_type))
        assert got[:3] == want[:3] and got[0] == (1, 4)
        for a, c in zip(got[3], want[3], strict=True):
            np.testing.assert_array_equal(a, c)
    _, n, titles, pictures = _grid(b.valid.show_batch())
    items = b.valid_ds.items[:n]
    assert titles == [b.classes[label] for label in b.valid_ds.labels[:n]]
    for got, want in zip(pictures, _denormed(b, b.preprocess(items)), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    train = _grid(b.train.show_batch(max_n=4))[3]
    assert any(not np.allclose(t, v) for t, v in zip(train, pictures, strict=False))


@pytest.fixture(scope="module")
def same_image_root(tmp_path_factory):
    """Two classes x (8 train + 2 valid) copies of one square noise image."""
    root = tmp_path_factory.mktemp("same_image")
    img = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    img[:, :16] //= 3  # left half darker: flips show
    for split, n in (("train", 8), ("valid", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(img).save(root / split / c / f"{k}.png")
    return root


def test_show_batch_unique_is_one_image_under_the_epochs_draws(same_image_root, device):
    """unique=True puts the first image in every place of the batch: on a data set whose
    images are all the same picture, the unique grid equals the plain one, image for image
    (each copy got the draw of its place); the copies differ from each other."""
    augment()
    b = ImageDataBunch.from_folder(
        same_image_root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0, seed=0,
        device=device,
    )  # fmt: skip
    b.train_dl.set_epoch(2)
    geometry, n, titles, unique = _grid(b.train.show_batch(max_n=6, nrows=2, unique=True))
    assert (geometry, n) == ((2, 3), 6)
    _, y = _shown(b)
    assert titles == [b.classes[int(y[0])]] * 6
    b.train_dl.set_epoch(2)
    plain = _grid(b.show_batch(max_n=6, nrows=2))[3]
    for got, want in zip(unique, plain, strict=True):
        np.testing.assert_array_equal(got, want)
    assert sum(not np.allclose(unique[0], u) for u in unique[1:]) >= 3  # augmented apart
    assert b.train_dl.epoch == 2  # not advanced
    v2 = _v2(same_image_root, batch_tfms=[*augment().aug_transforms(size=24)])
    assert _grid(v2.show_batch(max_n=4, unique=True))[:2] == ((2, 2), 4)


def test_show_batch_errors(root):
    augment()
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0, seed=0
    )
    for kwargs, name in (
        ({"rows": 3, "max_n": 4}, "max_n=4"),
        ({"rows": 2, "nrows": 1}, "nrows=1"),
        ({"rows": 2, "ncols": 3}, "ncols=3"),
    ):
        with pytest.raises(ValueError, match=rf"rows: fastai v1's rows=\d .* contradicts {name}"):
            b.show_batch(**kwargs)
    with pytest.raises(ValueError, match="rows: expected a positive int, got True"):
        b.show_batch(rows=True)
    with pytest.raises(ValueError, match="max_n should be >= 1, got 0"):
        b.show_batch(max_n=0)
    with pytest.raises(TypeError, match="nrows should be an int, got str '2'"):
        b.train.show_batch(nrows="2")
    with pytest.raises(ValueError, match="ncols should be >= 1, got 0"):
        b.valid.show_batch(ncols=0)
    with pytest.raises(TypeError, match="unique should be a bool"):
        b.show_batch(unique="yes")
    with pytest.raises(ValueError, match="figsize should be"):
        b.train.show_batch(figsize=(0, 3))
    # no augmentation (a validation loader, none asked for): identical copies, as fastai's
    for fig in (
        b.show_batch(ds_type="valid", unique=True),
        _v2(root).train.show_batch(unique=True),
    ):
        shown = [np.asarray(ax.get_images()[0].get_array()) for ax in fig.axes if ax.get_images()]
        assert len(shown) > 1 and all(np.array_equal(shown[0], s) for s in shown)


def test_show_batch_and_one_batch_of_an_unreadable_first_batch(same_image_root, tmp_path):
    tree = tmp_path / "t"
    shutil.copytree(same_image_root, tree)
    bad = break_images(sorted((tree / "valid").rglob("*.png"))[:3])
    b = ImageDataBunch.from_folder(tree, ds_tfms=None, size=24, bs=4, val_bs=2, num_workers=0)
    with pytest.raises(BadImageError, match="every image of the first batch is unreadable"):
        b.valid.show_batch()
    with pytest.raises(BadImageError, match="every image of the first batch is unreadable"):
        b.one_batch("valid")  # an empty batch was returned without a word
    assert b.bad_items == bad[:2]


def test_preprocess_is_the_validation_transform(root):
    augment()
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0
    ).normalize(imagenet_stats)
    xv, _ = b.one_batch("valid")
    items = b.valid_ds.items[:3]
    torch.testing.assert_close(b.preprocess(items), xv[:3], rtol=0, atol=0)
    pil = Image.open(items[1])
    t = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1)
    for single in (items[1], str(items[1]), pil, t):
        torch.testing.assert_close(b.preprocess(single), xv[1:2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="items: expected at least one image"):
        b.preprocess([])


def test_normalize_without_stats_measures_them(root):
    augment()
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=16, num_workers=0
    ).normalize()
    x, _ = b.valid_dl.one_batch()
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)


def test_normalize_called_on_the_class_says_so():
    """ImageDataBunch.normalize(imagenet_stats): 'tuple' object has no attribute 'stats'."""
    with pytest.raises(TypeError, match=r"normalize is a method of your data: data.normalize\("
                       r"imagenet_stats\), .* called on the class with \(\[0.485"):  # fmt: skip
        ImageDataBunch.normalize(imagenet_stats)


def test_to_device(root, device):
    augment()
    b = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0, device="cpu"
    )
    assert b.to(device) is b and b.device == device
    x, y = b.one_batch()
    assert x.device.type == device.type and y.device.type == device.type
    x, y = next(iter(b.valid_dl))
    assert x.device.type == device.type


def test_numpy_numbers_are_taken_as_pythons(root):
    """np.int64(32) was 'size: expected a positive int, got np.int64(32)' (fastai takes it)."""
    b = ImageDataBunch.from_folder(
        root, valid_pct=np.float32(0.25), seed=np.int64(1), size=np.int64(24), bs=np.int64(8),
        item_tfms=Resize(np.int64(28)), batch_tfms=get_transforms(), num_workers=np.int64(0),
    )  # fmt: skip
    assert (b.size, b.presize, b.bs) == (24, 28, 8) and type(b.size) is type(b.bs) is int
    b.show_batch(rows=np.int64(2))
    assert aug_transforms(mult=np.float32(1.5))[0].max_rotate == pytest.approx(15.0)


def test_val_bs_zero_is_refused_by_its_name(tmp_path):
    """val_bs=0 fell back to bs silently, val_bs=-1 was named 'bs'."""
    root = demo_dataset(tmp_path / "demo", n_per_class=3, size=32)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"val_bs: expected a positive int, got {bad}"):
            ImageDataBunch.from_folder(root, size=16, bs=4, val_bs=bad, num_workers=0)
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0)
    assert data.valid_dl.bs == 4 and len(data) == 2  # fastai v2's len(dls)
