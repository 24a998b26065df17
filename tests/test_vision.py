"""vision: create_cnn's body, head and layer groups, pretrained weights through torchvision's
cache (and the offline error), the public API, doc(), and the lesson notes' flow."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision
from fakes import easy_bunch
from torch import nn

import fastcore_ext.vision as vision
from fastcore_ext.model_builder import PretrainedWeightsError, pretrained_weights_cached
from fastcore_ext.vision import (
    AdaptiveConcatPool2d,
    cnn_learner,
    create_cnn,
    create_head,
    doc,
    error_rate,
    models,
    resnet18,
    vision_learner,
)


def image_bunch(n_train=8, n_valid=4, size=32, bs=4, device="cpu"):
    return easy_bunch(n_train=n_train, n_valid=n_valid, size=size, bs=bs, device=device)


def quiet(learn):
    learn.progress.stream = io.StringIO()
    return learn


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torchvision cache for the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def place_random_resnet18_weights(torch_home) -> dict[str, torch.Tensor]:
    """Save a randomly initialized resnet18 under the exact file name torchvision expects."""
    weights = models.ResNet18_Weights.DEFAULT
    name = os.path.basename(weights.url)
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(7)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, folder / name)
    return state


# ---- head ---------------------------------------------------------------------------------
def test_head_layout():
    head = create_head(512, 37)
    kinds = [type(m) for m in head]
    assert kinds == [
        AdaptiveConcatPool2d, nn.Flatten, nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU,
        nn.BatchNorm1d, nn.Dropout, nn.Linear,
    ]  # fmt: skip
    assert head[2].num_features == 1024 and head[3].p == 0.25 and head[7].p == 0.5
    assert (head[4].in_features, head[4].out_features) == (1024, 512)
    assert (head[8].in_features, head[8].out_features) == (512, 37)
    x = torch.randn(4, 512, 7, 7)
    assert head(x).shape == (4, 37)
    # kaiming normal: std sqrt(2 / fan_in)
    assert head[4].weight.std().item() == pytest.approx((2 / 1024) ** 0.5, rel=0.05)


def test_head_without_pooling_is_fastai_v2s_pool_false():
    """create_head(nf, n, pool=False) (fastai v2's, for a body that gives [B, nf] features)
    was refused ('unexpected keyword argument')."""
    head = create_head(512, 37, pool=False)
    assert [type(m) for m in head][:2] == [nn.BatchNorm1d, nn.Dropout]
    assert head[0].num_features == 512 and head[2].in_features == 512  # not doubled
    assert head(torch.randn(4, 512)).shape == (4, 37)
    assert create_head(512, 37, pool=False, concat_pool=False)[2].in_features == 512
    with pytest.raises(TypeError, match="pool should be a bool, got str 'no'"):
        create_head(512, 37, pool="no")


def test_head_lin_ftrs_and_ps():
    head = create_head(64, 3, lin_ftrs=[256, 128], ps=[0.1, 0.2, 0.3])
    lins = [m for m in head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lins] == [(128, 256), (256, 128), (128, 3)]
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.1, 0.2, 0.3]
    head = create_head(64, 3, ps=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in head)
    with pytest.raises(
        ValueError, match=r"ps should be a float or one value per linear layer \(2\)"
    ):
        create_head(64, 3, ps=[0.1])
    with pytest.raises(ValueError, match=r"ps should hold dropout probabilities in \[0, 1\)"):
        create_head(64, 3, ps=1.5)
    with pytest.raises(ValueError, match="lin_ftrs should be positive ints"):
        create_head(64, 3, lin_ftrs=[0])


def test_head_first_bn_and_bn_final():
    """fastai's create_head: first_bn=False drops the first BatchNorm1d (that Linear gets a
    zero bias); bn_final=True appends BatchNorm1d(n_out, momentum=0.01)."""
    head = create_head(64, 3, first_bn=False, bn_final=True)
    kinds = [type(m) for m in head]
    assert kinds == [
        AdaptiveConcatPool2d, nn.Flatten, nn.Dropout, nn.Linear, nn.ReLU,
        nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.BatchNorm1d,
    ]  # fmt: skip
    assert head[3].bias is not None and torch.count_nonzero(head[3].bias) == 0
    assert head[7].bias is None  # after a BatchNorm1d, as before
    assert head[8].num_features == 3 and head[8].momentum == 0.01
    assert head(torch.randn(4, 64, 2, 2)).shape == (4, 3)
    with pytest.raises(TypeError, match="first_bn should be a bool, got int 0"):
        create_head(64, 3, first_bn=0)


def test_adaptive_concat_pool():
    x = torch.randn(2, 5, 4, 3)
    out = AdaptiveConcatPool2d()(x)
    assert out.shape == (2, 10, 1, 1)
    torch.testing.assert_close(out[:, :5, 0, 0], x.amax(dim=(2, 3)))
    torch.testing.assert_close(out[:, 5:, 0, 0], x.mean(dim=(2, 3)))


# ---- create_cnn ----------------------------------------------------------------------------
def test_create_cnn_resnet_groups_and_head():
    data = image_bunch()
    learn = create_cnn(data, models.resnet18, pretrained=False, metrics=error_rate)
    body, head = learn.model[0], learn.model[1]
    assert [type(m).__name__ for m in body] == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Sequential", "Sequential", "Sequential",
        "Sequential",
    ]  # fmt: skip
    assert head[2].num_features == 1024 and head[-1].out_features == data.c
    ids = [[id(p) for p in g] for g in learn.layer_groups]
    assert ids[0] == [id(p) for p in body[:6].parameters()]  # stem..layer2
    assert ids[1] == [id(p) for p in body[6:].parameters()]  # layer3..layer4
    assert ids[2] == [id(p) for p in head.parameters()]
    assert learn.group_map.layer == (0, 0, 1, 1, 2, 2)  # each: decayed, BatchNorm and biases
    assert len(learn.opt.param_groups) == 6
    assert all(p.requires_grad for p in learn.model.parameters())  # random weights: unfrozen
    assert learn.metrics == [error_rate]
    assert learn.model(torch.randn(2, 3, 32, 32)).shape == (2, 2)
    assert cnn_learner is create_cnn and vision_learner is create_cnn


def test_create_cnn_resnet50_and_name():
    learn = create_cnn(image_bunch(), "resnet50", pretrained=False, lin_ftrs=[64])
    assert learn.model[1][2].num_features == 4096  # 2 x 2048
    assert len(learn.layer_groups) == 3


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5"])
def test_create_cnn_other_archs(arch):
    learn = create_cnn(image_bunch(size=64), getattr(models, arch), pretrained=False)
    assert len(learn.layer_groups) == (3 if arch == "squeezenet1_1" else 2)
    learn.model.eval()
    assert learn.model(torch.randn(2, 3, 64, 64)).shape == (2, 2)


@pytest.mark.parametrize(
    ("arch", "sizes"),
    [  # fastai 2.8.12's vision_learner(dls, arch, pretrained=False), 2 classes at 64 px
        ("densenet121", [1297536, 5656320]),
        ("vgg16_bn", [1737792, 12985344]),
        ("squeezenet1_1", [25632, 696864]),
        ("alexnet", [330688, 2139008]),
        ("vgg16", [14714688]),  # not in fastai's model_meta: body, head
    ],
)
def test_layer_groups_are_fastais_model_meta_splits(arch, sizes):
    """densenets, vgg*_bn, squeezenets and alexnet had 2 layer groups (fastai: 3), so
    freeze_to(-2) unfroze the whole densenet and slice(a, b) spread over two groups."""
    learn = create_cnn(image_bunch(size=64), arch, pretrained=False)
    got = [sum(p.numel() for p in g) for g in learn.layer_groups]
    assert got[:-1] == sizes and len(got) == len(sizes) + 1
    learn = create_cnn(
        image_bunch(size=64), arch, pretrained=False, cut=-1 if arch == "densenet121" else 1
    )
    assert len(learn.layer_groups) == 2  # another cut: body, head, as before


@pytest.mark.parametrize(
    ("cut", "groups"), [(-3, [683072, 2099712]), (7, [683072, 2099712]), (6, [683072])]
)
def test_a_resnet_cut_elsewhere_keeps_its_split_while_the_body_reaches_past_layer2(cut, groups):
    """fastai v1's create_cnn(cut=) keeps model_meta's split (its resnet split is at child
    6): a resnet cut before layer4 had 2 groups here. Cut at layer2 (6 children) the second
    group would be empty: body, head."""
    learn = quiet(create_cnn(image_bunch(size=64), models.resnet18, pretrained=False, cut=cut))
    got = [sum(p.numel() for p in g) for g in learn.layer_groups]
    assert got[:-1] == groups
    learn.freeze_to(-2)
    assert learn.model[0][0].weight.requires_grad == (len(groups) == 1)  # conv1


def test_create_cnn_errors():
    data = image_bunch()
    with pytest.raises(TypeError, match="arch should be a model builder"):
        create_cnn(data, 34, pretrained=False)
    with pytest.raises(TypeError, match=r"without the \(\)\), got a ResNet instance"):
        create_cnn(data, models.resnet18(), pretrained=False)
    with pytest.raises(ValueError, match="not a torchvision model name"):
        create_cnn(data, "resnet35", pretrained=False)

    def my_arch():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    with pytest.raises(ValueError, match="pass pretrained=False"):
        create_cnn(data, my_arch)
    learn = create_cnn(data, my_arch, pretrained=False)
    assert learn.model[1][2].num_features == 8
    builder = r"arch should be a model builder callable without arguments, such as models.resnet34"
    with pytest.raises(TypeError, match=builder + r", got Linear, whose call arch\(\) failed"):
        create_cnn(data, nn.Linear, pretrained=False)
    with pytest.raises(TypeError, match=r"arch should build an nn.Module .* returned NoneType"):
        create_cnn(data, lambda: None, pretrained=False)
    data.c = None
    with pytest.raises(ValueError, match="data.c should be the number of classes"):
        create_cnn(data, models.resnet18, pretrained=False)
    for wrong in (None, Path("images")):  # data.c was looked for first
        with pytest.raises(TypeError, match=r"data should be a bunch with train_dl, valid_dl "):
            create_cnn(wrong, models.resnet18, pretrained=False)


# ---- pretrained weights ----------------------------------------------------------------------
def test_pretrained_from_torchvision_cache_freezes_body(torch_home):
    assert pretrained_weights_cached("resnet18") is None  # an empty cache
    state = place_random_resnet18_weights(torch_home)
    file = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"  # torchvision's name
    assert pretrained_weights_cached(models.resnet18) == file
    assert pretrained_weights_cached("resnet18") == file
    assert pretrained_weights_cached("resnet34") is None
    learn = create_cnn(image_bunch(), models.resnet18, metrics=error_rate)
    body = learn.model[0]
    assert torch.equal(body[0].weight, state["conv1.weight"])
    assert torch.equal(body[7][1].conv2.weight, state["layer4.1.conv2.weight"])
    for name, p in body.named_parameters():
        module = body.get_submodule(name.rsplit(".", 1)[0])
        assert p.requires_grad == isinstance(module, nn.BatchNorm2d), name
    assert all(p.requires_grad for p in learn.model[1].parameters())


def test_pretrained_weights_normalize_data_that_is_not_yet_as_fastai_v2(torch_home, tmp_path):
    """fastai v2's vision_learner(normalize=True) adds ImageNet's Normalize for pretrained
    weights; fastbook's ImageDataLoaders(item_tfms=Resize(224)) has none, and ours trained the
    pretrained body on [0, 1] inputs."""
    place_random_resnet18_weights(torch_home)
    folder = vision.demo_dataset(tmp_path / "demo", n_per_class=2, size=32)

    def dls(stats=None):
        d = vision.ImageDataLoaders.from_folder(folder, item_tfms=vision.Resize(32), bs=4,
                                                num_workers=0)  # fmt: skip
        return d if stats is None else d.normalize(stats)

    d = dls()
    create_cnn(d, models.resnet18)
    assert d.stats == tuple(map(list, vision.imagenet_stats))
    for kwargs in ({"pretrained": False}, {"normalize": False}):  # left as they are
        d = dls()
        create_cnn(d, models.resnet18, **kwargs)
        assert d.stats is None
    own = ([0.5] * 3, [0.25] * 3)
    d = dls(own)
    create_cnn(d, models.resnet18)
    assert d.stats == own  # the user's statistics stay
    with pytest.raises(TypeError, match="normalize should be a bool"):
        create_cnn(dls(), models.resnet18, normalize="yes")


def test_corrupt_cached_weights_name_the_file(torch_home):
    weights = models.ResNet18_Weights.DEFAULT
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / os.path.basename(weights.url)).write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="Delete that file") as info:
        create_cnn(image_bunch(), models.resnet18)
    assert str(folder / os.path.basename(weights.url)) in str(info.value)


def test_pretrained_offline_error_is_fast_and_clear(torch_home, monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens: refused at once
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsError) as info:  # a RuntimeError
        create_cnn(image_bunch(), models.resnet34)
    assert time.perf_counter() - start < 15
    msg = str(info.value)
    assert "resnet34-b627a593.pth" in msg
    assert str(torch_home / "hub" / "checkpoints") in msg
    assert "pretrained=False" in msg
    assert "could not be downloaded (" in msg and info.value.__suppress_context__  # one traceback
    folder = torch_home / "hub" / "checkpoints"
    assert not folder.exists() or list(folder.iterdir()) == []  # no partial download left


# ---- public API and doc ------------------------------------------------------------------------
def test_star_import_is_the_public_api():
    namespace: dict = {}
    exec("from fastcore_ext.vision import *", namespace)
    names = {n for n in namespace if n != "__builtins__"}
    assert names == set(vision.__all__)
    v2: dict = {}  # fastai v2's spelling, `from fastai.vision.all import *`: the same names
    exec("from fastcore_ext.vision.all import *", v2)
    assert {n for n in v2 if n != "__builtins__"} == names
    assert all(v2[n] is namespace[n] for n in names)
    expected_now = {
        "Learner",
        "create_cnn",
        "cnn_learner",
        "vision_learner",
        "models",
        "doc",
        "error_rate",
        "accuracy",
        "top_k_accuracy",
        "Adam",
        "SGD",
        "get_transforms",
        "aug_transforms",
        "CancelFitException",
        "CancelBatchException",
        "ShowGraph",
        "ShowGraphCallback",
        "DataBlock",
        "RandomSplitter",
        "parent_label",
    }  # fmt: skip (a callback raising CancelFitException got a NameError under the star import)
    assert expected_now <= names
    assert namespace["models"] is torchvision.models
    # fastai v2's bare builder names: `vision_learner(dls, resnet34)`
    for name in ("resnet18", "resnet34", "resnet50", "densenet121", "vgg16_bn", "alexnet"):
        assert namespace[name] is getattr(torchvision.models, name)


# ---- vision_learner's fastai v2 arguments ------------------------------------------------------
def _linears(head):
    return [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)]


def test_vision_learner_n_out_lin_ftrs_ps_concat_pool():
    data = image_bunch()
    learn = vision_learner(data, resnet18, pretrained=False, n_out=2)
    assert _linears(learn.model[1]) == [(1024, 512), (512, 2)]
    assert learn.model(torch.randn(2, 3, 32, 32)).shape == (2, 2)
    learn = vision_learner(data, resnet18, pretrained=False, lin_ftrs=[256], ps=0.25)
    assert _linears(learn.model[1]) == [(1024, 256), (256, 2)]
    assert [m.p for m in learn.model[1] if isinstance(m, nn.Dropout)] == [0.125, 0.25]
    learn = vision_learner(data, resnet18, pretrained=False, concat_pool=False)
    assert isinstance(learn.model[1][0], nn.AdaptiveAvgPool2d)
    assert _linears(learn.model[1]) == [(512, 512), (512, 2)]
    learn = vision_learner(data, resnet18, pretrained=False, first_bn=False, bn_final=True)
    assert isinstance(learn.model[1][-1], nn.BatchNorm1d)
    assert not isinstance(learn.model[1][2], nn.BatchNorm1d)
    for bad in (1, 5, 2.0, True):  # outputs other than the classes, not an int
        with pytest.raises(ValueError, match=r"n_out should be data.c \(2, the number of"):
            vision_learner(data, resnet18, pretrained=False, n_out=bad)


def test_vision_learner_custom_head():
    data = image_bunch()
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, data.c))
    nn.init.zeros_(head[2].weight)
    nn.init.ones_(head[2].bias)
    learn = vision_learner(data, resnet18, pretrained=False, custom_head=head)
    assert learn.model[1] is head and len(learn.layer_groups) == 3
    assert head[2].weight.std().item() == pytest.approx((2 / 512) ** 0.5, rel=0.1)  # kaiming
    assert torch.count_nonzero(head[2].bias) == 0
    assert learn.model(torch.randn(2, 3, 32, 32)).shape == (2, data.c)
    with pytest.raises(ValueError, match="custom_head replaces create_head, so lin_ftrs, ps"):
        vision_learner(data, resnet18, pretrained=False, custom_head=head, lin_ftrs=[8], ps=0.1)
    with pytest.raises(TypeError, match="custom_head should be an nn.Module, got function"):
        vision_learner(data, resnet18, pretrained=False, custom_head=lambda x: x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_range": (0, 1)}, r"y_range=\(0, 1\) is not supported: .*classification only"),
        ({"pool": False}, "pool=False is not supported: the head always pools"),
        ({"lin_first": True}, "lin_first=True is not supported"),
        ({"n_in": 1}, "n_in=1 is not supported: the images are 3-channel RGB"),
        ({"init": nn.init.xavier_uniform_}, "init=.* is not supported: .*kaiming_normal_"),
        ({"foo": 1}, "got an unexpected keyword argument 'foo': it takes create_cnn's own"),
    ],
)
def test_vision_learner_refuses_fastai_arguments_by_name(kwargs, message):
    """fastai v2's arguments that this library does not offer: refused by vision_learner
    itself, naming the argument and why (Learner.__init__'s unexpected keyword before)."""
    with pytest.raises(TypeError, match=r"^vision_learner \(create_cnn, cnn_learner\)") as info:
        vision_learner(image_bunch(), resnet18, pretrained=False, **kwargs)
    assert re.search(message, str(info.value)), str(info.value)


def test_vision_learner_takes_fastais_defaults_and_learner_arguments(tmp_path):
    """fastai's arguments at the value this library uses anyway are accepted; the Learner's
    own go to it."""
    learn = vision_learner(
        image_bunch(), resnet18, pretrained=False, y_range=None, pool=True, lin_first=False,
        n_in=3, train_bn=True, init=nn.init.kaiming_normal_, loss_func=nn.CrossEntropyLoss(),
        wd=0.1, model_dir="m", path=tmp_path, metrics=[error_rate],
    )  # fmt: skip
    assert learn.wd == [0.1] * 3 and learn.path == tmp_path and learn.metrics == [error_rate]
    # the Learner's lr, moms and train_bn (refused here by a stale list before): README's
    # "Learner(..., lr=3e-3) (also through create_cnn / vision_learner)"
    learn = vision_learner(image_bunch(), resnet18, pretrained=False, lr=1e-2,
                           moms=(0.9, 0.8, 0.9), train_bn=False)  # fmt: skip
    assert learn.lr == 1e-2 and learn.moms == (0.9, 0.8, 0.9) and learn.train_bn is False
    learn.freeze()
    assert not any(p.requires_grad for p in learn.model[0].parameters())  # BatchNorm too


def test_vision_learner_weights(torch_home):
    state = place_random_resnet18_weights(torch_home)
    weights = models.ResNet18_Weights.DEFAULT
    learn = vision_learner(image_bunch(), resnet18, weights=weights)
    torch.testing.assert_close(learn.model[0][0].weight, state["conv1.weight"])
    assert not learn.model[0][0].weight.requires_grad  # pretrained: frozen
    with pytest.raises(ValueError, match="with pretrained=False: pass pretrained=True"):
        vision_learner(image_bunch(), resnet18, pretrained=False, weights=weights)
    with pytest.raises(TypeError, match="weights should be a torchvision Weights, got 'x'"):
        vision_learner(image_bunch(), resnet18, weights="x")


def test_star_import_gives_fastbooks_other_names(tmp_path, monkeypatch):
    """The names fastai v2's star import gives that fastbook's chapters use as written, each
    used once on a tiny input."""
    monkeypatch.chdir(tmp_path)  # show_image / plot_top_losses save under ./plots
    monkeypatch.delenv("FASTCORE_EXT_PLOTS", raising=False)
    ns: dict = {"data": image_bunch(), "quiet": quiet, "png": str(tmp_path / "x.png")}
    exec("from fastcore_ext.vision import *", ns)
    exec(
        "import PIL.Image as PIL_Image\n"
        "PIL_Image.new('RGB', (5, 4), (250, 0, 0)).save(png)\n"
        "name = re.findall(r'(.+)_\\d+.jpg$', 'great_pyrenees_173.jpg')[0]\n"  # ch. 5
        "targ = tensor([0, 1, 0, 1, 1, 0])\n"  # ch. 5
        "im = Image.open(png)\n"  # ch. 2
        "ax = show_image(tensor(im), title='red')\n"
        "doubled = L([1, 2, 3]).map(lambda x: 2 * x).filter(lambda x: x > 2)\n"
        "learn = quiet(vision_learner(data, resnet18, pretrained=False))\n"
        "xb, yb = first(learn.data.train_dl)\n"
        "n_all = len(trainable_params(learn.model))\n"
        "learn.freeze()\n"
        "n_frozen = len(trainable_params(learn.model))\n"
        "interp = Interpretation.from_learner(learn)\n"
        "losses, idxs = interp.top_losses(3)\n"
        "probs = to_np(interp.probs)\n",
        ns,
    )
    assert ns["name"] == "great_pyrenees"
    assert ns["targ"].dtype == torch.int64 and ns["targ"].tolist() == [0, 1, 0, 1, 1, 0]
    assert ns["Image"] is PIL.Image and ns["im"].size == (5, 4)
    assert ns["ax"].get_title() == "red" and (tmp_path / "plots" / "show_image.png").is_file()
    assert ns["doubled"] == [4, 6] and type(ns["doubled"]).__name__ == "L"
    assert ns["xb"].shape == (4, 3, 32, 32) and ns["yb"].shape == (4,)
    n_head = len(list(ns["learn"].model[1].parameters()))
    body_bn = sum(
        len(list(m.parameters()))
        for m in ns["learn"].model[0].modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    assert ns["n_all"] == len(list(ns["learn"].model.parameters()))
    assert ns["n_frozen"] == n_head + body_bn  # the head and the body's BatchNorm layers
    assert ns["Interpretation"] is ns["ClassificationInterpretation"]
    assert len(ns["losses"]) == 3 and ns["losses"][0] >= ns["losses"][-1]
    assert isinstance(ns["probs"], np.ndarray) and ns["probs"].shape == (4, 2)
    assert ns["pd"].DataFrame({"fname": ["a.jpg"]}).shape == (1, 1)  # pandas is installed here


def test_star_import_without_pandas_has_no_pd():
    """pandas is optional: without it the star import works and gives no `pd`."""
    code = (
        "import sys; sys.modules['pandas'] = None\n"  # `import pandas` raises ImportError
        "ns = {}\n"
        "exec('from fastcore_ext.vision import *', ns)\n"
        "print('pd' in ns, 'L' in ns)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this tree's package
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False", "True"]


@pytest.mark.parametrize(
    "name", ["resnet18", "densenet121", "vgg11_bn", "squeezenet1_1", "alexnet"]
)
def test_vision_learner_with_a_bare_builder_name(name):
    """Each family the star import names builds, cut at its pooling layer, and predicts."""
    namespace: dict = {"data": image_bunch(size=64)}
    exec("from fastcore_ext.vision import *", namespace)
    exec(f"learn = vision_learner(data, {name}, pretrained=False, metrics=error_rate)", namespace)
    learn = quiet(namespace["learn"])
    probs, targets = learn.get_preds()
    assert probs.shape == (len(targets), learn.data.c)


def test_doc(capsys):
    learn = quiet(create_cnn(image_bunch(), models.resnet18, pretrained=False))
    doc(learn.fit_one_cycle)
    out = capsys.readouterr().out
    assert out.startswith("Learner.fit_one_cycle(n_epoch")
    assert "max_lr" in out and "self" not in out.splitlines()[0]
    assert "Train with the one-cycle policy" in out
    assert "Defined in fastcore_ext.learner" in out
    assert "start_epoch: resume" not in out  # only the first paragraph
    doc(create_cnn)
    assert capsys.readouterr().out.startswith("create_cnn(data")


# ---- the lesson notes' flow --------------------------------------------------------------
def test_lesson_flow(torch_home, capsys):
    """The seed notes' code, on 32-pixel images with resnet18 weights placed in the cache."""
    place_random_resnet18_weights(torch_home)
    ns: dict = {"data": image_bunch()}
    exec("from fastcore_ext.vision import *", ns)
    exec("learn = create_cnn(data, models.resnet18, metrics=error_rate)", ns)
    learn = ns["learn"]
    assert len(learn.layer_groups) == 3 and not learn.model[0][0].weight.requires_grad
    exec("learn.fit_one_cycle(1)", ns)
    assert learn.recorder.epochs == [0]
    exec("learn.unfreeze()\nlearn.fit_one_cycle(1)", ns)
    # stop_div off: on 8 images, batch noise alone can pass its "4x the best loss" test
    exec("sugg = learn.lr_find(num_it=8, stop_div=False)\nfig = learn.recorder.plot()", ns)
    assert len(ns["sugg"]) == 3 and ns["fig"].axes
    exec("learn.unfreeze()\nlearn.fit_one_cycle(1, max_lr=slice(1e-6, 1e-4))", ns)
    assert learn.recorder.group_lrs[0] == pytest.approx([1e-6 / 25, 1e-5 / 25, 1e-4 / 25], rel=1e-9)
    exec("learn.fit_one_cycle(1, max_lr=0.5)", ns)
    exec("learn = create_cnn(data, models.resnet18, metrics=error_rate, pretrained=False)", ns)
    exec("learn.fit_one_cycle(1)", ns)
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("epoch")]
    assert headers == ["epoch     train_loss  valid_loss  error_rate  time    "] * 5
    rows = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(rows) == 5


def test_device_and_channels_last(device):
    data = image_bunch(device=device)  # fp32: precision="auto" adds channels-last where bf16 is
    learn = quiet(create_cnn(data, models.resnet18, pretrained=False, precision="fp32"))
    on_cuda = device.type == "cuda"
    assert learn.channels_last == on_cuda
    assert learn.model[0][0].weight.is_contiguous(memory_format=torch.channels_last) == on_cuda
    assert next(learn.model.parameters()).device.type == device.type
    learn.fit_one_cycle(1)
    assert all(torch.isfinite(torch.tensor(learn.recorder.raw_losses)))


def test_summary_lists_layers_shapes_params_and_what_is_frozen():
    """fastai v2's learn.summary(): the model's leaf layers on a batch of the data's size."""
    data = image_bunch()
    learn = create_cnn(data, models.resnet18, pretrained=False, metrics=error_rate)
    learn.freeze()
    text = learn.summary()
    lines = text.splitlines()
    bs, size = min(getattr(data, "bs", 1), 64), data.size
    assert lines[0] == f"Sequential (Input shape: {bs} x 3 x {size} x {size})"
    first = next(line for line in lines if line.startswith("Conv2d"))
    assert first.split()[-2:] == ["9,408", "False"]  # 64 x 3 x 7 x 7, frozen
    assert f"{bs} x 64 x {size // 2} x {size // 2}" in first
    bn = next(line for line in lines if line.startswith("BatchNorm2d"))
    assert bn.endswith("True")  # train_bn
    last = [line for line in lines if line.startswith("Linear")][-1]
    assert f"{bs} x {data.c}" in last and last.endswith("True")
    total = sum(p.numel() for p in learn.model.parameters())
    trainable = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    assert f"Total params: {total:,}" in lines
    assert f"Total trainable params: {trainable:,}" in lines
    assert any(line.startswith("Model frozen up to layer group #2") for line in lines)
    assert "  - Recorder" in lines and repr(text) == str(text)  # a notebook shows the text
    learn.unfreeze()
    assert "Model unfrozen" in learn.summary().splitlines()
    # it said "Precision: bf16" for a model from scratch whose first epoch runs in fp32
    learn.to_bf16(fp32_epochs=1)
    assert "Precision: bf16 (its next 1 training epoch in fp32 first: from scratch)" in (
        learn.summary().splitlines()
    )
    learn.epochs_trained = 1
    assert "Precision: bf16" in learn.summary().splitlines()


def test_head_lin_ftrs_is_a_list_of_ints():
    """lin_ftrs=512 said "'int' object is not iterable"."""
    for value in (512, np.int64(512), "512"):
        with pytest.raises(TypeError, match=r"lin_ftrs should be a list of ints .*e.g. \[512\]"):
            create_head(64, 3, lin_ftrs=value)
    with pytest.raises(TypeError, match=r"lin_ftrs should be a list of ints"):
        quiet(create_cnn(image_bunch(), models.resnet18, pretrained=False, lin_ftrs=512))


@pytest.mark.parametrize("cut", [0, -100, 100, -10])
def test_cut_out_of_the_models_children_names_cut(cut):
    """cut=0 and cut=-100 said "splitter's layer group 0 holds no parameter"."""
    match = (
        r"cut should keep at least one of the model's 10 children \(conv1, bn1, .*fc\) in the "
        rf"body: an int in \[1, 10\] or \[-9, -1\], got {cut}"
    )
    with pytest.raises(ValueError, match=match):
        create_cnn(image_bunch(), models.resnet18, pretrained=False, cut=cut)


def test_cut_keeping_only_layers_without_parameters_says_so():
    def pool_first(weights=None):
        return nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))

    with pytest.raises(ValueError, match=r"cut=1 keeps only children without parameters"):
        create_cnn(image_bunch(), pool_first, pretrained=False, cut=1)
    learn = quiet(create_cnn(image_bunch(), models.resnet18, pretrained=False, cut=-2))
    assert len(learn.model[0]) == 8  # up to the pooling layer, as the default cut


def test_create_body_is_fastais_body_and_a_splitter_of_L_groups():
    """fastbook ch. 15: nn.Sequential(create_body(arch), create_head(nf, c)) with a splitter
    written as fastai's, L(m[0], m[1]).map(params): two layer groups (create_body returned a
    (body, model) pair, and L flattened its first argument into 4 groups)."""
    body = vision.create_body(torchvision.models.resnet18, pretrained=False)
    assert isinstance(body, nn.Sequential) and len(body) == 8  # up to the pooling layer
    assert len(vision.create_body(torchvision.models.resnet18, pretrained=False, cut=-2)) == 8
    # fastai v2's form: a model instance, cut as it is (its own weights)
    resnet = torchvision.models.resnet18()
    cut = vision.create_body(resnet, cut=-2)
    assert len(cut) == 8 and cut[0] is resnet.conv1
    assert (
        len(vision.create_body(resnet)) == 8
        and vision.create_body(resnet, cut=lambda m: m.layer1) is resnet.layer1
    )
    data = image_bunch()
    model = nn.Sequential(body, vision.create_head(512, data.c))

    def split(m):
        return vision.L(m[0], m[1]).map(vision.params)

    learn = quiet(vision.Learner(data, model, splitter=split, wd=0.0))
    assert len(learn.layer_groups) == 2
    learn.freeze()
    convs = [m for m in body.modules() if isinstance(m, nn.Conv2d)]
    assert not any(m.weight.requires_grad for m in convs)  # (BatchNorm trains, as fastai's)
    assert all(p.requires_grad for p in model[1].parameters())
    assert vision.params(model) == list(model.parameters())
