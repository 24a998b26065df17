"""export / load_learner / predict / tta: a JSON description + weights (no pickled code), a
rebuilt learner that predicts exactly like the original, the validation transform for every
kind of item, fastai's TTA formula, and clear errors."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import make_learner
from PIL import Image
from torch import nn

from fastcore_ext import hardware
from fastcore_ext.augment import get_transforms
from fastcore_ext.callback import mixed_precision
from fastcore_ext.data import (
    BadImageError,
    ImageDataBunch,
    ImageDataLoaders,
    MissingPathError,
    Resize,
    demo_dataset,
    get_image_files,
    imagenet_stats,
    load_image,
    open_image,
)
from fastcore_ext.export import EXPORT_FORMAT, build_model, describe_model
from fastcore_ext.exported import load_learner
from fastcore_ext.interpret import ClassificationInterpretation
from fastcore_ext.vision import create_cnn, models


def _env() -> dict[str, str]:
    """The environment of a child Python that imports this checkout's fastcore_ext."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A resnet18 learner trained for one epoch on 16 px images (BatchNorm statistics moved),
    and its export."""
    tmp = tmp_path_factory.mktemp("export")
    folder = demo_dataset(tmp / "demo", n_per_class=4, size=32)
    data = ImageDataBunch.from_folder(
        folder, ds_tfms=get_transforms(), size=16, bs=8, num_workers=0, seed=2
    )
    learn = create_cnn(
        data.normalize(imagenet_stats),
        models.resnet18,
        pretrained=False,
        lin_ftrs=[16],
        seed=0,
        path=tmp,
    )
    learn.progress.stream = io.StringIO()
    learn.fit_one_cycle(1, max_lr=1e-2)
    learn.export()
    return learn, tmp


def test_export_file_holds_a_json_description_and_weights(trained):
    learn, tmp = trained
    content = torch.load(tmp / "export.pkl", weights_only=True)  # fastai's name; no code in it
    assert set(content) == {"description", "model"}
    d = json.loads(content["description"])
    assert d["format"] == EXPORT_FORMAT
    assert d["model"] == {
        "arch": "resnet18",
        "cut": 8,
        "head": {
            "nf": 512, "n_out": 12, "lin_ftrs": [16], "ps": [0.25, 0.5], "concat_pool": True,
            "first_bn": True, "bn_final": False,
        },
    }  # fmt: skip
    assert d["classes"] == learn.data.classes and d["n_classes"] == 12
    inp = d["input"]
    assert (inp["size"], inp["presize"], inp["resize_method"]) == (16, 20, "crop")
    assert inp["channels"] == 3
    assert (inp["mean"], inp["std"]) == tuple(map(list, imagenet_stats))
    assert d["augment"]["max_rotate"] == learn.data.spec.max_rotate
    assert inp["seed"] == 2  # the data's, which tta's draws start from
    for k, v in learn.model.state_dict().items():
        assert torch.equal(content["model"][k], v)


def items_of(path):
    """One image as every kind of item predict takes."""
    img = Image.open(path).convert("RGB")
    hwc = torch.from_numpy(np.asarray(img).copy())
    return {
        "path": path,
        "str": str(path),
        "pil": img,
        "chw": hwc.permute(2, 0, 1).contiguous(),
        "hwc": hwc,
        "numpy": np.array(img),
    }


def test_load_learner_predicts_like_the_original(trained):
    learn, tmp = trained
    loaded = load_learner(tmp)
    assert loaded.data.classes == learn.data.classes
    assert next(loaded.model.parameters()).device.type == "cpu"
    assert not loaded.model.training
    learn.model.train()
    first = learn.data.valid_ds.items[0]
    for path in learn.data.valid_ds.items[:3]:
        results = []
        kinds = items_of(path) if path == first else {"path": path}
        for kind, item in kinds.items():
            for lrn in (learn, loaded):
                name, idx, probs = lrn.predict(item)
                assert probs.shape == (12,) and probs.dtype == torch.float32, kind
                assert name == learn.data.classes[idx] and idx == int(probs.argmax())
                results.append(probs)
        for probs in results[1:]:
            assert torch.equal(probs, results[0])
    assert learn.model.training  # predict put the original's mode back
    files = learn.data.valid_ds.items[:3]
    for lrn in (learn, loaded):  # a list predicted only its first item, silently
        with pytest.raises(TypeError, match=r"item: predict classifies one image, got a list of 3"):
            lrn.predict(list(files))


def test_predict_applies_the_validation_transform(trained):
    """predict(item) equals the validation pass over the same item (in bf16, where precision
    'auto' picks it, to bf16's rounding: oneDNN's kernels for a batch of 1 and of 8 round
    differently; a transform left out moves the probabilities far more)."""
    learn, _ = trained
    probs, targets = learn.get_preds()
    tol = {"rtol": 0.05, "atol": 2e-3} if learn.precision == "bf16" else {}
    for i in (0, 5):
        _, _, p = learn.predict(learn.data.valid_ds.items[i])
        torch.testing.assert_close(p, probs[i], **tol)
    x = learn.data.preprocess(load_image(learn.data.valid_ds.items[0], 20))
    assert x.shape == (1, 3, 16, 16)
    # a missing file or a folder named as such (it was "cannot read file ([Errno 2] ...)")
    with pytest.raises(MissingPathError, match=r"item: expected an image file, '.*nope.jpg' does"):
        learn.predict(learn.path / "nope.jpg")
    with pytest.raises(
        ValueError, match=r"item: predict classifies one image file, .* is a folder"
    ):
        learn.predict(str(learn.path))


def test_load_learner_forms_and_limits(trained, tmp_path):
    learn, tmp = trained
    learn.export(tmp_path / "other.pth")
    a = load_learner(tmp_path / "other.pth")  # fastai v2: the file itself
    b = load_learner(tmp_path, "other.pth")  # fastai v1: folder + file name
    assert a.path == tmp_path and b.path == tmp_path
    assert a.dls.path.ls(file_exts=".pth") == [tmp_path / "other.pth"]  # as a bunch's dls.path
    for lrn in (a, b):
        expected = learn.model.state_dict()
        for k, v in lrn.model.state_dict().items():
            assert torch.equal(v, expected[k]), k
        assert lrn.data.train_dl is None and lrn.data.c == 12
    for train in (lambda: a.fit(1), lambda: a.fit_one_cycle(1), a.lr_find, lambda: a.fine_tune(1)):
        with pytest.raises(ValueError, match=r"no training data \(data.train_dl is None: a"):
            train()
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_learner(tmp_path, "missing.pth")
    assert learn.export() == tmp / "export.pkl"  # fastai's name: fastbook's code finds it
    assert load_learner(tmp / "export.pkl").data.classes == learn.data.classes
    learn.save("ckpt")
    with pytest.raises(ValueError, match="not a fastcore_ext export"):
        load_learner(tmp / "models" / "ckpt.pth")
    torch.save(nn.Linear(2, 2), tmp_path / "pickled.pth")  # pickled code is never loaded
    with pytest.raises(ValueError, match="pickled.pth"):
        load_learner(tmp_path / "pickled.pth")


def test_load_learner_passes_over_a_data_set_ask_for_a_dl(trained):
    """A loaded learner keeps no data set: get_preds, validate and the interpretation say so
    and what to do instead; given dl= they run as the original's."""
    learn, tmp = trained
    loaded = load_learner(tmp)
    for call in (
        loaded.get_preds,
        loaded.validate,
        lambda: ClassificationInterpretation.from_learner(loaded),
    ):
        with pytest.raises(ValueError, match=r"no validation data \(data.valid_dl is None: a"):
            call()
    with pytest.raises(ValueError, match=r"no training data .*load_learner.* take dl="):
        loaded.get_preds(ds_type="train")
    probs, targets = loaded.get_preds(dl=learn.data.valid_dl)
    expected_probs, expected_targets = learn.get_preds()
    torch.testing.assert_close(probs, expected_probs)
    assert torch.equal(targets, expected_targets)
    torch.testing.assert_close(loaded.validate(dl=learn.data.valid_dl), learn.validate())


def test_loaded_learner_dls_test_dl_classifies_files_in_batches(trained, tmp_path):
    """fastai v2's `learn.dls.test_dl(files)` on a loaded learner was an AttributeError
    (its data stand-in had no test_dl): the only way left was one predict per file."""
    learn, tmp = trained
    loaded = load_learner(tmp)
    files = learn.data.valid_ds.items[:5]
    dl = loaded.dls.test_dl(files, bs=2)
    assert len(dl) == 3 and dl.items == files
    probs, targets = loaded.get_preds(dl=dl)
    assert targets is None and probs.shape == (5, 12)
    expected, _ = learn.get_preds(dl=learn.dls.test_dl(files))
    torch.testing.assert_close(probs, expected)
    for f, row in zip(files, probs, strict=True):  # rows in the files' order
        torch.testing.assert_close(row, loaded.predict(f)[2])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(BadImageError, match="test_items: 1 of 2 files cannot be decoded"):
        loaded.dls.test_dl([files[0], broken])
    with pytest.raises(TypeError, match="test_items: expected a list of image files"):
        loaded.dls.test_dl(files[0])
    (x,) = next(iter(loaded.dls.test_dl([Image.open(files[0])])))  # fastbook ch. 18
    torch.testing.assert_close(x, loaded.dls.preprocess(files[:1]))


def test_a_loaded_learner_validates_a_labelled_test_set(tmp_path):
    """load_learner + ``dls.test_dl(files, with_labels=True)`` + ``validate(dl=...)`` (a
    fastai serving script's scoring) was a ValueError: the export now keeps the labelling
    rule (from_folder's parent folder, from_name_re's pattern) and the library's metrics by
    name; a metric or a labelling function of the user's is not kept, and says so."""
    from functools import partial

    from fastcore_ext.metrics import error_rate, top_k_accuracy

    folder = demo_dataset(tmp_path / "demo", n_per_class=4, size=32)

    def mine(preds, targs):
        return (preds.argmax(-1) == targs).float().mean()

    data = ImageDataBunch.from_folder(folder, size=16, bs=8, num_workers=0, seed=2)
    metrics = [error_rate, partial(top_k_accuracy, k=2), mine]
    learn = create_cnn(data, models.resnet18, pretrained=False, metrics=metrics, path=tmp_path)
    learn.progress.stream = io.StringIO()
    learn.fit(1, 1e-3)
    with pytest.warns(UserWarning, match=r"export: the metrics \['mine'\] are not kept"):
        learn.export()
    loaded = load_learner(tmp_path)
    files = data.valid_ds.items
    dl = loaded.dls.test_dl(files, with_labels=True)
    assert dl.dataset.labels == list(data.valid_ds.labels)
    expected = learn.validate(dl=learn.dls.test_dl(files, with_labels=True))
    np.testing.assert_allclose(loaded.validate(dl=dl), expected[:3], rtol=1e-5)
    assert len(loaded.metrics) == 2
    # a pattern on the file name (from_name_re) is kept as well
    items = get_image_files(folder)
    named = ImageDataBunch.from_name_re(
        folder, items, r"/([a-z]+)/[^/]+$", size=16, bs=8, num_workers=0, seed=2
    )
    learn = create_cnn(named, models.resnet18, pretrained=False, path=tmp_path / "re")
    learn.export()
    dl = load_learner(tmp_path / "re").dls.test_dl(items[:4], with_labels=True)
    assert [named.classes[y] for y in dl.dataset.labels] == [p.parent.name for p in items[:4]]
    # a labelling function of the user's is not exported
    funcs = ImageDataBunch.from_name_func(
        folder, items, lambda p: Path(p).parent.name, size=16, bs=8, num_workers=0, seed=2
    )
    learn = create_cnn(funcs, models.resnet18, pretrained=False, path=tmp_path / "func")
    learn.export()
    with pytest.raises(ValueError, match="with_labels: this export does not hold the rule"):
        load_learner(tmp_path / "func").dls.test_dl(items[:4], with_labels=True)


def test_predict_takes_float_images_in_0_1(trained):
    """Image.data (float in [0, 1], fastai v1's) and uint8 / 255 predict as the file does,
    [C, H, W] or [H, W, C], tensor or array; a float outside [0, 1] is refused, naming the
    shape that was passed."""
    learn, tmp = trained
    loaded = load_learner(tmp)
    path = learn.data.valid_ds.items[0]
    img = open_image(path)
    chw = img.px.float() / 255
    for lrn in (learn, loaded):
        name, idx, probs = lrn.predict(path)
        for item in (
            img.data,
            chw,
            chw.double(),
            chw.permute(1, 2, 0),
            chw.permute(1, 2, 0).numpy(),
        ):
            got_name, got_idx, got = lrn.predict(item)
            assert (got_name, got_idx) == (name, idx)
            torch.testing.assert_close(got, probs, rtol=0, atol=1e-6)
    normalized = learn.data.preprocess(path)[0].permute(1, 2, 0)  # float [H, W, 3], not in [0, 1]
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*\(shape \(16, 16, 3\)\)"):
        loaded.predict(normalized)
    shape = re.escape(str(tuple(img.px.shape)))
    with pytest.raises(ValueError, match=rf"values in \[0, 1\].*\(shape {shape}\)"):
        loaded.predict(img.px.float())  # 0..255 as float


def test_predict_takes_a_read_only_array_without_a_warning(trained):
    """np.asarray(pil_image) is read-only, and torch warns when a tensor shares such an
    array's memory: once per process, so in a fresh one, with warnings as errors."""
    learn, tmp = trained
    path = learn.data.valid_ds.items[0]
    code = (
        "import warnings\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from fastcore_ext.exported import load_learner\n"
        f"learn = load_learner({str(tmp)!r})\n"
        f"rgb = np.asarray(Image.open({str(path)!r}).convert('RGB'))\n"
        "floats = rgb / 255\n"
        "floats.flags.writeable = False\n"
        "assert not rgb.flags.writeable\n"
        "warnings.simplefilter('error')\n"
        "for arr in (rgb, floats):\n"
        "    print(learn.predict(arr)[1])\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert res.returncode == 0, res.stderr
    idx = learn.predict(path)[1]
    assert res.stdout.split() == [str(idx), str(idx)]


def test_load_learner_starts_from_trained_features(trained, tmp_path, monkeypatch, capsys):
    """precision 'auto' chooses bf16 (stubbed CPU flags) for a bf16 export: the loaded model
    is trained, so no float32 epochs before bf16, as create_cnn(pretrained=True). Loading and
    predicting print nothing about precision (its line speaks of training: printed when a fit
    starts, and a loaded learner cannot fit). The export is made here under the stub: the
    module's learner exported in fp32 on a CPU without bf16 (an fp32 export loads in fp32)."""
    monkeypatch.setattr(mixed_precision, "_announced", set())
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    learn = create_cnn(trained[0].data, "resnet18", pretrained=False, lin_ftrs=[16], path=tmp_path)
    assert learn.precision == "bf16"
    learn.export()
    capsys.readouterr()
    loaded = load_learner(tmp_path)
    assert loaded.precision == "bf16" and loaded.mixed_precision.fp32_epochs == 0
    loaded.predict(learn.data.valid_ds.items[0])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "squeezenet1_1"])
def test_other_architectures_round_trip(tmp_path, arch):
    data = make_learner().data
    data.presize = data.size  # the fake bunch has no presize
    learn = create_cnn(data, arch, pretrained=False, lin_ftrs=[8], ps=0.3, path=tmp_path)
    desc = describe_model(learn.model)
    assert desc["arch"] == arch and desc["head"]["ps"] == [0.15, 0.3]
    rebuilt = build_model(desc)
    assert repr(rebuilt) == repr(learn.model)
    learn.export()
    loaded = load_learner(tmp_path)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k


@pytest.mark.parametrize("first_bn, bn_final", [(False, False), (True, True), (False, True)])
def test_heads_without_first_bn_or_with_bn_final_round_trip(tmp_path, first_bn, bn_final):
    """vision_learner(first_bn=, bn_final=) (fastai's create_head arguments) export and load:
    the description records both, so the rebuilt head has the same layers and weights."""
    data = make_learner().data
    data.presize = data.size  # the fake bunch has no presize
    learn = create_cnn(
        data, "squeezenet1_1", pretrained=False, lin_ftrs=[8], first_bn=first_bn,
        bn_final=bn_final, path=tmp_path,
    )  # fmt: skip
    desc = describe_model(learn.model)
    assert (desc["head"]["first_bn"], desc["head"]["bn_final"]) == (first_bn, bn_final)
    learn.export()
    loaded = load_learner(tmp_path)
    assert repr(loaded.model) == repr(learn.model)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k


def test_export_refuses_models_it_cannot_rebuild(tmp_path):
    learn = make_learner(path=tmp_path)
    with pytest.raises(ValueError, match="create_cnn models") as refused:
        learn.export()
    assert "xresnets (xresnet50(n_out=...)) whole" in str(refused.value)
    assert "torch.save(learn.model.state_dict(), file)" in str(refused.value)

    def small(weights=None):
        return nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
        )

    custom = create_cnn(make_learner().data, small, pretrained=False, path=tmp_path)
    with pytest.raises(ValueError, match="matches no such builder"):
        custom.export()
    with pytest.raises(TypeError, match="fname should be a non-empty str"):
        custom.export("")


# ---- tta -------------------------------------------------------------------------------------
def test_tta_is_fastais_formula(trained):
    learn, _ = trained
    (augmented, plain), targets = learn.tta(n=2, beta=None)
    probs, targs = learn.get_preds()
    torch.testing.assert_close(plain, probs, rtol=0, atol=0)
    assert torch.equal(targets, targs)
    assert not torch.allclose(augmented, plain)  # the augmented passes differ
    preds, _ = learn.tta(n=2)
    torch.testing.assert_close(preds, 0.75 * augmented + 0.25 * plain)
    again, _ = learn.tta(n=2)
    assert torch.equal(again, preds)  # fixed seeds per pass
    (first_pass, _), _ = learn.tta(n=1, beta=None)
    assert not torch.equal(first_pass, augmented)  # the mean of 2 passes is not pass 0 alone
    maxed, _ = learn.tta(n=1, use_max=True)
    assert torch.equal(maxed, torch.maximum(first_pass, plain))
    maxed, _ = learn.tta(n=2, use_max=True)  # max over passes, then with the plain pass
    assert (maxed >= torch.maximum(augmented, plain)).all()


def test_tta_of_a_loaded_learner_is_the_original_learners(trained):
    """load_learner then tta over a test set (fastai v2's dls.test_dl, and v1's
    load_learner(path, test=files) + TTA(ds_type=DatasetType.Test), which README promises)
    raised "tta needs a DeviceDataLoader ..., got FileBatches": the loaded learner keeps the
    export's augmentation and data seed, so its passes are the original learner's."""
    from fastcore_ext.vision import DatasetType

    learn, tmp = trained
    files = [f for _, f in zip(range(5), learn.data.valid_ds.items, strict=False)]
    (augmented, plain), targets = learn.tta(dl=learn.data.test_dl(files), n=2, beta=None)
    assert targets is None
    loaded = load_learner(tmp)
    assert loaded.data.spec == learn.data.spec
    (aug2, plain2), _ = loaded.tta(dl=loaded.dls.test_dl(files), n=2, beta=None)
    torch.testing.assert_close(plain2, plain, rtol=0, atol=1e-6)
    torch.testing.assert_close(aug2, augmented, rtol=0, atol=1e-6)
    assert not torch.allclose(augmented, plain)
    v1 = load_learner(tmp, test=files)  # v1's TTA: its own 8 passes, not v2's formula
    preds, targets = v1.TTA(ds_type=DatasetType.Test)
    assert targets is None and preds.shape == (5, 12)
    torch.testing.assert_close(preds.sum(1), torch.ones(5))


def test_tta_on_the_training_set_in_order(trained):
    learn, _ = trained
    epoch = learn.data.train_dl.epoch
    preds, targets = learn.tta(ds_type="train", n=1)
    assert torch.equal(learn.tta(ds_idx=0, n=1)[0], preds)  # fastai v2's ds_idx
    assert preds.shape == (len(learn.data.train_ds), 12)
    assert targets.tolist() == learn.data.train_ds.labels
    assert learn.data.train_dl.epoch == epoch


def test_tta_errors(trained):
    learn, _ = trained
    with pytest.raises(TypeError, match="DeviceDataLoader"):
        make_learner().tta()
    with pytest.raises(ValueError, match="beta should be a float in"):
        learn.tta(beta=2.0)
    with pytest.raises(ValueError, match="ds_type should be 'train' or 'valid'"):
        learn.tta(ds_type="fix")
    with pytest.raises(ValueError, match="ds_type 'test': this data has no test set"):
        learn.tta(ds_type="test")
    spec = learn.data.spec
    learn.data.spec = None
    try:  # no batch augmentation, square images: every pass is the plain one (it raised)
        preds, targets = learn.tta()
        plain, plain_targets = learn.get_preds()
        torch.testing.assert_close(preds, plain.float())
        assert torch.equal(targets, plain_targets)
    finally:
        learn.data.spec = spec


def test_tta_passes_crop_at_random_along_the_long_side(tmp_path):
    """fastai's tta runs the training item transforms too: Resize's crop lands at random
    along a non-square image's long side. Images 48 x 32 whose red channel is a ramp over
    the columns tell where each window starts."""
    ramp = np.broadcast_to((np.arange(48) * 5).astype(np.uint8)[None, :, None], (32, 48, 3))
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            img = ramp.copy()
            img[..., 2] = 40 * i + (cls == "b") * 20
            Image.fromarray(img).save(tmp_path / cls / f"{i}.png")
    data = ImageDataLoaders.from_folder(
        tmp_path, valid_pct=0.5, seed=1, item_tfms=Resize(16), bs=4, num_workers=0
    )
    assert data.spec is None and data.presize == 16
    dl = data.valid_dl
    n = len(dl.dataset)

    def first_columns(draws):
        return torch.cat([x[:, 0, :, 0].float().mean(1) for x, _ in dl.uint8_batches(0, draws)])

    left, centre = first_columns(np.zeros(n)), first_columns(None)
    right = first_columns(np.full(n, 0.999))
    assert (left < centre).all() and (centre < right).all()  # 24 wide: windows from 0 to 8
    with pytest.raises(ValueError, match=r"draws: expected one window draw per item \(\d+\)"):
        next(dl.uint8_batches(0, np.zeros(n + 1)))
    learn = make_learner(data=data, splitter=None)
    (augmented, plain), _ = learn.tta(n=3, beta=None)
    torch.testing.assert_close(plain, learn.get_preds()[0].float(), rtol=0, atol=0)
    assert not torch.allclose(augmented, plain)  # other windows: other predictions
    again, _ = learn.tta(n=3, beta=None)
    assert torch.equal(again[0], augmented)  # the windows of a pass are seeded


def test_the_export_keeps_the_fastai_version_of_its_data(trained, tmp_path):
    """A learner on v2's ImageDataLoaders titled plot_top_losses with the prediction's
    probability, and the same model after load_learner with the actual class's (v1's)."""
    learn, tmp = trained
    assert load_learner(tmp).data.fastai_version == 1
    folder = demo_dataset(tmp_path / "demo", n_per_class=4, size=32)
    dls = ImageDataLoaders.from_folder(folder, item_tfms=Resize(16), bs=8, num_workers=0)
    v2 = create_cnn(dls, models.resnet18, pretrained=False, path=tmp_path)
    v2.export()
    assert load_learner(tmp_path).data.fastai_version == 2


# ---- every architecture create_cnn takes -------------------------------------------------------
def _round_trip(arch, folder: Path, tmp: Path, size: int) -> None:
    """create_cnn(arch) on `folder` at `size` px, export, load_learner: the same weights and,
    on an image of the set, the same prediction."""
    data = ImageDataBunch.from_folder(folder, size=size, bs=4, num_workers=0, seed=0)
    learn = create_cnn(data, arch, pretrained=False, lin_ftrs=[8], seed=0, path=tmp)
    learn.export()
    loaded = load_learner(tmp)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    item = data.valid_ds.items[0]
    cls, idx, probs = learn.predict(item)
    cls2, idx2, probs2 = loaded.predict(item)
    assert (cls2, idx2) == (cls, idx)
    torch.testing.assert_close(probs2, probs)


def test_a_regnet_exports_and_predicts_as_the_original(tmp_path):
    """Every regnet builder failed on the meta device, so the export of a trained regnet
    said "this body matches no torchvision builder"."""
    folder = demo_dataset(tmp_path / "demo", n_per_class=2, size=32)
    _round_trip(models.regnet_x_400mf, folder, tmp_path, 32)
    assert describe_model(load_learner(tmp_path).model)["arch"] == "regnet_x_400mf"


@pytest.mark.slow
def test_every_builder_of_the_star_import_exports(tmp_path):
    """The torchvision builders of fastai's model_meta, which `from fastcore_ext.vision
    import *` names (with every other torchvision builder since session 27: some of those
    need larger images than this test's), each trained by create_cnn, exported and loaded
    back (at 64 px: alexnet's body needs more than 32)."""
    import fastcore_ext.vision as vision

    families = ("resnet", "densenet", "squeezenet", "alexnet")
    names = [
        n
        for n in vision.__all__
        if n in models.list_models(module=models)
        and (n.startswith(families) or (n.startswith("vgg") and n.endswith("_bn")))
    ]
    assert len(names) == 16
    folder = demo_dataset(tmp_path / "demo", n_per_class=2, size=64)
    for name in names:
        out = tmp_path / name
        out.mkdir()
        _round_trip(getattr(vision, name), folder, out, 64)


@pytest.mark.slow
def test_every_torchvision_classifier_builds_for_a_description():
    """build_model and the body's inference need each architecture built without weights:
    every classifier builder of torchvision (regnets included) builds."""
    from fastcore_ext.export import _meta_model

    failed = [n for n in models.list_models(module=models) if _meta_model(n) is None]
    assert failed == []


def test_a_loaded_learner_says_tta_needs_data(trained):
    """tta() on a load_learner learner said "tta needs a DeviceDataLoader ..., got NoneType"."""
    _, tmp = trained
    loaded = load_learner(tmp)
    for call in (loaded.tta, loaded.TTA):
        with pytest.raises(ValueError, match=r"no validation data .*tta takes dl="):
            call()


def test_load_learner_refuses_fastais_export_by_name(tmp_path, monkeypatch):
    """fastai's export.pkl (a pickled fastai Learner) has our default name: the error says
    what it is, without unpickling it (a stand-in fastai module pickles one here)."""
    fake = types.ModuleType("fastai.learner")

    class Learner:  # what fastai's learn.export() pickles, with the model in it
        def __init__(self):
            self.model = nn.Linear(2, 2)

    Learner.__module__, Learner.__qualname__ = fake.__name__, "Learner"
    fake.Learner = Learner
    monkeypatch.setitem(sys.modules, "fastai", types.ModuleType("fastai"))
    monkeypatch.setitem(sys.modules, "fastai.learner", fake)
    torch.save(Learner(), tmp_path / "export.pkl")
    with pytest.raises(ValueError, match=r"export.pkl is fastai's export \(a pickled fastai Lea"):
        load_learner(tmp_path)
    torch.save(nn.Linear(2, 2), tmp_path / "export.pkl")  # other pickled code: the plain error
    with pytest.raises(ValueError, match=r"export.pkl is not a readable checkpoint"):
        load_learner(tmp_path)


def test_load_learner_names_the_export_beside_a_missing_file(trained, tmp_path):
    """A missing file's error names the export beside it and the call that reads it: one
    under another name, and export.pth, the name this library wrote before 2026-12-06."""
    learn, _ = trained
    learn.export(tmp_path / "mine.pkl")
    hint = r"no such file: .*missing.pkl \(.*mine.pkl is there: learn.export\(\) writes export.pkl"
    with pytest.raises(FileNotFoundError, match=hint + r", and load_learner\(.*, 'mine.pkl'\)"):
        load_learner(tmp_path / "missing.pkl", "mine.pkl")
    learn.export(tmp_path / "export.pkl")
    with pytest.raises(FileNotFoundError, match=r"missing.pkl \(.*export.pkl is there: .*reads it"):
        load_learner(tmp_path, "missing.pkl")
    (tmp_path / "export.pkl").rename(tmp_path / "export.pth")
    old = r"export.pth is there: versions of this library before 2026-12-06 wrote export.pth"
    for call in (lambda: load_learner(tmp_path),
                 lambda: load_learner(tmp_path / "export.pkl")):  # fmt: skip
        with pytest.raises(FileNotFoundError, match=rf"export.pkl \(.*{old}, and load_learner"):
            call()
    assert load_learner(tmp_path, "export.pth").data.classes == learn.data.classes


def test_load_learner_names_an_export_in_the_current_folder(trained, tmp_path, monkeypatch):
    """fastbook's bears: DataBlock.dataloaders(path) leaves the data's path '.', so
    learn.export() wrote ./export.pkl and load_learner(path/'export.pkl') said only "no such
    file"."""
    learn, _ = trained
    monkeypatch.chdir(tmp_path)
    learn.export(tmp_path / "export.pkl")
    (tmp_path / "bears").mkdir()
    hint = r"export.pkl is there: learn.export\(\) writes into learn.path, the data's path"
    with pytest.raises(FileNotFoundError, match=rf"no such file: .*bears/export.pkl \(.*{hint}"):
        load_learner(tmp_path / "bears" / "export.pkl")


def test_learn_load_of_an_export_says_load_learner_reads_it(trained, tmp_path):
    """learn.load(path/'export.pkl') said only 'no such file: .../export.pkl.pth'."""
    learn, _ = trained
    learn.export(tmp_path / "export.pkl")
    with pytest.raises(FileNotFoundError, match=r"export.pkl.pth \(learn.load reads the .pth "
                       r"checkpoints of learn.save\); .*export.pkl is there: an export, which "
                       r"load_learner\('.*export.pkl'\) reads"):  # fmt: skip
        learn.load(tmp_path / "export.pkl")
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(
        FileNotFoundError, match=r"weights.pt is there: learn.load adds .pth to a name not"
    ):
        learn.load(tmp_path / "weights.pt")


def test_predict_detaches_a_tensor_that_requires_grad(trained, recwarn):
    """predict on a requires_grad tensor emitted torch's "Converting a tensor with
    requires_grad=True to a scalar" warning."""
    learn, tmp = trained
    x = open_image(learn.data.valid_ds.items[0]).data.clone().requires_grad_(True)
    cls, idx, probs = learn.predict(x)
    assert not [w for w in recwarn if "requires_grad" in str(w.message)]
    assert (cls, idx) == learn.predict(x.detach())[:2] and not probs.requires_grad


def test_predict_with_input_gives_the_input_the_model_saw(trained):
    """fastai v2's predict(item, with_input=True): the decoded input first."""
    learn, _ = trained
    item = learn.data.valid_ds.items[0]
    pixels, cat, idx, probs = learn.predict(item, with_input=True)
    assert cat == learn.predict(item)[0] and torch.equal(probs, learn.predict(item)[2])
    assert pixels.dtype == torch.int64 and pixels.shape == (3, 16, 16)
    x = learn.data.preprocess(item)
    want = (learn.data.denorm(x.float()) * 255).round().long()[0].cpu()
    assert torch.equal(pixels, want) and 0 <= pixels.min() and pixels.max() <= 255
    with pytest.raises(TypeError, match="with_input"):
        learn.predict(item, with_input=1)


def test_a_hand_edited_version_a_renamed_export_and_the_loaded_vocab(trained, tmp_path):
    """A format version written as text raised "'>' not supported between str and int"; a
    folder holding model.pkl but no export.pkl said only "no such file"; a loaded learner's
    vocab had no o2i (fastai's CategoryMap)."""
    learn, tmp = trained
    content = torch.load(tmp / "export.pkl", weights_only=True)
    d = json.loads(content["description"])
    d["version"] = "2"
    content["description"] = json.dumps(d)
    torch.save(content, tmp_path / "edited.pkl")
    with pytest.raises(ValueError, match="format version should be an int, got '2'"):
        load_learner(tmp_path / "edited.pkl")
    (tmp_path / "model.pkl").write_bytes((tmp / "export.pkl").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"the folder holds edited.pkl, model.pkl: give"):
        load_learner(tmp_path)
    vocab = load_learner(tmp_path / "model.pkl").dls.vocab
    assert list(vocab) == learn.data.classes and vocab.o2i[vocab[3]] == 3
