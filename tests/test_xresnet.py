"""fastai's XResNet: the same parameters, names and initialisation as fastai 2.8.12's, training
through Learner and vision_learner, and the export round trip of both forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import make_learner
from torch import nn

from fastcore_ext.data import ImageDataBunch, demo_dataset
from fastcore_ext.export import build_model, describe_model
from fastcore_ext.exported import load_learner
from fastcore_ext.learner import Learner
from fastcore_ext.vision import create_cnn, vision_learner
from fastcore_ext.xresnet import (
    XRESNETS,
    ResBlock,
    SimpleSelfAttention,
    XResNet,
    xresnet18,
    xresnet50,
)

# fastai 2.8.12, xresnetN(n_out=10): (parameters, state_dict entries), printed by fastai itself
# (a state_dict of fastai's loads into ours with strict=True and gives the same outputs: checked
# 2026-12-06 with both installed, largest difference 0.0 on every builder)
FASTAI_SIZES = {
    "xresnet18": (11_200_874, 134),
    "xresnet34": (21_309_034, 230),
    "xresnet50": (23_547_754, 332),
    "xresnet101": (42_539_882, 638),
    "xresnet152": (58_183_530, 944),
    "xresnet18_deep": (14_281_066, 164),
    "xresnet50_deeper": (30_367_594, 410),
}


@pytest.mark.parametrize("name", list(FASTAI_SIZES))
def test_sizes_equal_fastais(name):
    with torch.device("meta"):
        m = XRESNETS[name](n_out=10)
    assert (sum(p.numel() for p in m.parameters()), len(m.state_dict())) == FASTAI_SIZES[name]


def test_fastais_parameter_names():
    keys = list(xresnet50(n_out=10).state_dict())
    assert keys[:6] == [
        "0.0.weight", "0.1.weight", "0.1.bias", "0.1.running_mean", "0.1.running_var",
        "0.1.num_batches_tracked",
    ]  # fmt: skip
    assert "4.0.convpath.2.1.weight" in keys and "4.0.idpath.0.0.weight" in keys
    assert "5.0.idpath.1.0.weight" in keys  # a stride-2 shortcut: AvgPool, then ConvLayer
    assert keys[-2:] == ["11.weight", "11.bias"]


def test_initialisation_is_fastais():
    torch.manual_seed(0)
    m = xresnet18(n_out=4)
    biases = [mod.bias for mod in m.modules() if getattr(mod, "bias", None) is not None]
    assert biases and all(torch.equal(b, torch.zeros_like(b)) for b in biases)
    for block in (mod for mod in m.modules() if isinstance(mod, ResBlock)):
        last_bn = block.convpath[-1][1]
        assert torch.equal(last_bn.weight, torch.zeros_like(last_bn.weight))  # BatchZero
    w = m[0][0].weight.detach()
    fan_in = w[0].numel()
    assert abs(float(w.std()) - (2 / fan_in) ** 0.5) < 0.1 * (2 / fan_in) ** 0.5  # kaiming


def test_a_block_starts_as_its_shortcut():
    m = xresnet18(n_out=4).eval()
    block = m[4][0]  # same width, stride 1: the shortcut is the identity
    x = torch.randn(2, 64, 8, 8).relu()
    torch.testing.assert_close(block(x), x)


def test_forward_shapes_and_options():
    x = torch.randn(2, 1, 40, 40)
    assert XResNet(1, [1, 1, 1, 1], c_in=1, n_out=7)(x).shape == (2, 7)
    deep = XResNet(4, [1, 1, 1, 1, 1, 1], n_out=3, widen=0.5).eval()  # fastai's *_deep form
    assert deep(torch.randn(1, 3, 64, 64)).shape == (1, 3)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: XResNet(2, [2, 2, 2, 2]), "expansion: expected 1 or 4, got 2"),
        (lambda: XResNet(1, [2, 2, 2]), "layers: expected 4 stages or more, got 3"),
        (lambda: XResNet(1, [2, 2, 2, 2], ks=4), "ks: the kernel size should be odd, got 4"),
        (lambda: XResNet(1, [2, 2, 2, 2], p=1.0), r"p: expected a dropout probability"),
        (lambda: xresnet18(n_out=0), "n_out: expected a positive int, got 0"),
        (lambda: xresnet50(pretrained=True), "no pretrained weights are available for xresnet50"),
    ],
)
def test_bad_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_learner_trains_an_xresnet():
    learn = make_learner(model=XResNet(1, [1, 1, 1, 1], n_out=2), splitter=None)
    learn.fit_one_cycle(3, 3e-3)
    losses = learn.recorder.raw_losses
    assert np.mean(losses[-4:]) < np.mean(losses[:4])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return demo_dataset(tmp_path_factory.mktemp("xres") / "demo", n_per_class=2, size=32)


def test_vision_learner_takes_an_xresnet_with_fastais_three_layer_groups(folder, tmp_path):
    data = ImageDataBunch.from_folder(folder, size=32, bs=4, num_workers=0, seed=0)
    learn = vision_learner(data, "xresnet18", pretrained=False, lin_ftrs=[8], seed=0, path=tmp_path)
    assert len(learn.layer_groups) == 3
    stem = {id(p) for p in learn.model[0][:3].parameters()}
    assert {id(p) for p in learn.layer_groups[0]} == stem
    with pytest.raises(ValueError, match="pass pretrained=False"):
        create_cnn(data, xresnet18)
    learn.export()
    loaded = load_learner(tmp_path)
    assert describe_model(loaded.model)["arch"] == "xresnet18"
    item = data.valid_ds.items[0]
    assert loaded.predict(item)[1] == learn.predict(item)[1]
    torch.testing.assert_close(loaded.predict(item)[2], learn.predict(item)[2])


def test_a_whole_xresnet_exports_and_predicts_as_the_original(folder, tmp_path):
    data = ImageDataBunch.from_folder(folder, size=32, bs=4, num_workers=0, seed=0)
    torch.manual_seed(0)
    learn = Learner(data, xresnet18(n_out=data.c, p=0.2), path=tmp_path, precision="fp32")
    learn.fit(1, 1e-3)
    learn.export()
    loaded = load_learner(tmp_path)
    assert type(loaded.model) is XResNet and loaded.model.config == learn.model.config
    for k, v in learn.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    item = data.valid_ds.items[0]
    torch.testing.assert_close(loaded.predict(item)[2], learn.predict(item)[2])


def test_act_cls_as_fastais_and_in_the_export():
    """fastai's xresnet50(act_cls=nn.Mish) (Road to the Top) was a TypeError. With nn.Mish
    and nn.SiLU, fastai's state_dicts load into ours and give the same outputs (checked
    2026-12-06, largest difference 0.0)."""
    m = xresnet18(n_out=3, act_cls=nn.Mish)
    acts = {type(mod) for mod in m.modules() if isinstance(mod, nn.Mish | nn.ReLU)}
    assert acts == {nn.Mish} and m.config["act_cls"] == "Mish"
    assert XResNet(1, [1, 1, 1, 1], act_cls="SiLU").config["act_cls"] == "SiLU"
    rebuilt = build_model(describe_model(m))
    assert repr(rebuilt) == repr(m)

    class Mine(nn.ReLU):
        pass

    with pytest.raises(ValueError, match="is not a torch.nn class"):
        describe_model(xresnet18(n_out=3, act_cls=Mine))
    with pytest.raises(ValueError, match="act_cls: expected a torch.nn activation name"):
        xresnet18(act_cls="Nope")
    with pytest.raises(TypeError, match="act_cls: expected an nn.Module class"):
        xresnet18(act_cls=nn.ReLU())


# fastai 2.8.12, xresnetN(sa=True, n_out=10): parameters and the SimpleSelfAttention's place
FASTAI_SA = {
    "xresnet18": (11_204_971, "4.1.convpath.2"),
    "xresnet50": (23_613_291, "4.2.convpath.3"),
    "xresnet34_deep": (24_454_763, "6.5.convpath.2"),
}


@pytest.mark.parametrize("name", list(FASTAI_SA))
def test_self_attention_as_fastais(name):
    """xresnet*(sa=True): fastai's SimpleSelfAttention at the end of the first stage's last
    block (parameters and place printed by fastai 2.8.12; its state_dicts load into ours and
    give the same outputs with gamma 0.01: checked 2026-12-07, largest difference 0.0)."""
    torch.manual_seed(0)
    m = XRESNETS[name](n_out=10, sa=True).eval()
    n, place = FASTAI_SA[name]
    assert sum(p.numel() for p in m.parameters()) == n
    keys = list(m.state_dict())
    for part in ("gamma", "conv.weight_orig", "conv.weight_u", "conv.weight_v"):
        assert f"{place}.{part}" in keys
    assert [k for k in keys if k.endswith("gamma")] == [f"{place}.gamma"]
    (sa,) = [mod for mod in m.modules() if isinstance(mod, SimpleSelfAttention)]
    x = torch.randn(2, sa.n_in, 5, 5)
    torch.testing.assert_close(sa(x), x)  # gamma starts at 0: the identity
    with torch.no_grad():
        sa.gamma.fill_(0.5)
    flat = x.view(2, sa.n_in, -1)
    expected = 0.5 * flat @ flat.transpose(1, 2) @ sa.conv(flat) + flat
    torch.testing.assert_close(sa(x), expected.view_as(x))
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_self_attention_in_the_export(folder, tmp_path):
    data = ImageDataBunch.from_folder(folder, size=32, bs=4, num_workers=0, seed=0)
    torch.manual_seed(0)
    model = xresnet18(n_out=data.c, sa=True, sym=True)
    learn = Learner(data, model, path=tmp_path, precision="fp32")
    learn.fit(1, 1e-3)
    assert model.config["sa"] is True and xresnet18().config.get("sa") is None
    learn.export()
    loaded = load_learner(tmp_path)
    assert loaded.model.config == model.config and repr(loaded.model) == repr(model)
    item = data.valid_ds.items[0]
    torch.testing.assert_close(loaded.predict(item)[2], learn.predict(item)[2])
    with pytest.raises(TypeError, match="sa should be a bool"):
        xresnet18(sa=1)


def test_a_changed_xresnet_is_refused_at_export():
    m = xresnet18(n_out=5)
    assert repr(build_model(describe_model(m))) == repr(m)
    m[-1] = nn.Linear(512, 3)
    with pytest.raises(ValueError, match="was changed after it was built"):
        describe_model(m)


def test_conv_layer_takes_fastais_norm_type():
    """fastbook ch. 14: ConvLayer(nf, nf, act_cls=None, norm_type=NormType.BatchZero)."""
    from fastcore_ext.xresnet import ConvLayer, NormType

    zero = ConvLayer(4, 8, act_cls=None, norm_type=NormType.BatchZero)
    assert [type(m) for m in zero] == [nn.Conv2d, nn.BatchNorm2d] and zero[0].bias is None
    assert float(zero[1].weight.abs().sum()) == 0.0
    plain = ConvLayer(4, 8, stride=2)
    assert [type(m) for m in plain] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert float(plain[1].weight.min()) == 1.0 and plain[0].padding == (1, 1)
    bare = ConvLayer(4, 8, ks=5, norm_type=None, act_cls=None)
    assert [type(m) for m in bare] == [nn.Conv2d] and bare[0].bias is not None
    assert bare[0].padding == (2, 2)
    with pytest.raises(ValueError, match="norm_type: .* got <NormType.Instance: 5>"):
        ConvLayer(4, 8, norm_type=NormType.Instance)
