"""Layer groups and the optimizer's param groups: weight decay kept off normalization layers
and biases (wd_bn_bias=False, fastai v2's default) with each layer group's lr shared by its
param groups; checkpoints saved with another grouping (or before it existed) loading into
the learner's; bad arguments."""

from __future__ import annotations

import copy

import pytest
import torch
from fakes import easy_bunch, make_learner
from torch import nn

import fastcore_ext.checkpoint as checkpoint
from fastcore_ext.callback import Callback, SaveModelCallback
from fastcore_ext.layer_groups import NORM_TYPES, GroupMap, fine_tune_lrs, norm_bias_param_ids
from fastcore_ext.learner import Learner
from fastcore_ext.optim import SGD, Adam, slice_values
from fastcore_ext.schedule import exp_sweep, one_cycle
from fastcore_ext.vision import create_cnn, models


def three_group_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # group 0
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),  # group 1
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),  # group 2
        nn.Flatten(),
        nn.Linear(8, 2),
    )


def three_group_learner(**kwargs) -> Learner:
    kwargs.setdefault("model", three_group_model())
    return make_learner(splitter=lambda m: [m[:3], m[3:6], m[6:]], **kwargs)


def fastai_norm_bias_params(m: nn.Module, with_bias: bool = True) -> list[nn.Parameter]:
    """fastai 2.8.12's `torch_core.norm_bias_params`, transcribed (fastai is no dependency)."""
    if isinstance(m, NORM_TYPES):
        return list(m.parameters())
    res = [p for c in m.children() for p in fastai_norm_bias_params(c, with_bias)]
    if with_bias and getattr(m, "bias", None) is not None:
        res.append(m.bias)
    return res


def no_decay_ids(learn: Learner) -> set[int]:
    """ids of the params in the optimizer's param groups that take no weight decay."""
    return {
        id(p)
        for g, decay in zip(learn.opt.param_groups, learn.group_map.decay, strict=True)
        if not decay
        for p in g["params"]
    }


# ---- which parameters take weight decay ------------------------------------------------------
class BiasAndScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.bias = nn.Parameter(torch.zeros(3))


def test_norm_and_bias_params_are_fastais():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.Conv2d(4, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.InstanceNorm2d(4, affine=True),
        nn.GroupNorm(2, 4),  # not one of fastai's norm_types: its weight is decayed
        nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 3), BiasAndScale()),
        nn.Embedding(5, 3),
        nn.MultiheadAttention(4, 2),  # in_proj_bias is no `bias`; out_proj (a Linear) has one
    )
    names = {id(p): n for n, p in model.named_parameters()}
    expected = {id(p) for p in fastai_norm_bias_params(model)}
    assert norm_bias_param_ids(model) == expected
    assert sorted(names[i] for i in expected) == [
        "0.bias", "2.bias", "2.weight", "3.bias", "3.weight", "4.bias", "5.0.bias",
        "5.0.weight", "5.1.bias", "5.2.bias", "7.out_proj.bias",
    ]  # fmt: skip
    resnet = create_cnn(easy_bunch(size=32), models.resnet18, pretrained=False).model
    assert norm_bias_param_ids(resnet) == {id(p) for p in fastai_norm_bias_params(resnet)}


def test_param_groups_split_each_layer_group():
    learn = create_cnn(easy_bunch(size=32), models.resnet18, pretrained=False)
    norm_bias = {id(p) for p in fastai_norm_bias_params(learn.model)}
    assert learn.group_map == GroupMap((0, 0, 1, 1, 2, 2), (True, False) * 3)
    groups = learn.opt.param_groups
    for g, (i, decay) in enumerate(zip(learn.group_map.layer, learn.group_map.decay, strict=True)):
        in_layer = [p for p in learn.layer_groups[i] if (id(p) not in norm_bias) == decay]
        assert [id(p) for p in groups[g]["params"]] == [id(p) for p in in_layer]  # in order
        assert groups[g]["wd"] == (0.01 if decay else 0.0)
    assert no_decay_ids(learn) == norm_bias
    old = create_cnn(easy_bunch(size=32), models.resnet18, pretrained=False, wd_bn_bias=True)
    assert old.group_map == GroupMap((0, 1, 2), (True,) * 3)
    for group, layer in zip(old.opt.param_groups, old.layer_groups, strict=True):
        assert [id(p) for p in group["params"]] == [id(p) for p in layer]  # as before
        assert group["wd"] == 0.01


def test_layer_group_of_one_kind_is_one_param_group():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Flatten())
    learn = make_learner(model=model, splitter=lambda m: [m[0], m[1]], data=easy_bunch(size=3))
    assert learn.group_map == GroupMap((0, 1), (True, False))
    assert [g["wd"] for g in learn.opt.param_groups] == [0.01, 0.0]


class ZeroGrads(Callback):
    """Every gradient zero before each step: only weight decay moves the parameters."""

    def before_step(self) -> None:
        for p in self.learn.model.parameters():
            if p.grad is not None:
                p.grad.zero_()


@pytest.mark.parametrize("opt_func", [Adam, SGD, torch.optim.AdamW])
@pytest.mark.parametrize("wd_bn_bias", [False, True])
def test_steps_with_zero_grads_decay_only_what_they_should(opt_func, wd_bn_bias):
    """fit() at lr 1e-2 and wd 0.5 with zero gradients: a decayed parameter becomes
    p * (1 - lr * wd) ** steps, one without decay stays bit-identical."""
    learn = three_group_learner(opt_func=opt_func, wd=0.5, wd_bn_bias=wd_bn_bias)
    key = "weight_decay" if opt_func is torch.optim.AdamW else "wd"  # what each one reads
    for g, decay in zip(learn.opt.param_groups, learn.group_map.decay, strict=True):
        assert g[key] == (0.5 if decay else 0.0)
        # the learner's wd went to torch's key, not to a 'wd' that AdamW ignores
        assert key == "wd" or "wd" not in g
    with torch.no_grad():  # BatchNorm starts at ones and zeros: random values show more
        for p in learn.model.parameters():
            p.normal_()
    before = {n: p.detach().clone() for n, p in learn.model.named_parameters()}
    learn.fit(1, lr=1e-2, cbs=ZeroGrads())
    steps = len(learn.data.train_dl)
    exempt = set() if wd_bn_bias else no_decay_ids(learn)
    exempt_names = {n for n, p in learn.model.named_parameters() if id(p) in exempt}
    bn_and_biases = {"0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "8.bias"}
    assert exempt_names == (set() if wd_bn_bias else bn_and_biases)
    for name, p in learn.model.named_parameters():
        if name in exempt_names:
            assert torch.equal(p, before[name]), name
        else:
            expected = before[name].double() * (1 - 1e-2 * 0.5) ** steps
            torch.testing.assert_close(p.double(), expected, rtol=1.3e-6, atol=1e-5)
            assert not torch.equal(p, before[name]), name


# ---- learning rates: slices, the one-cycle schedule, freezing, lr_find -----------------------
def test_slice_lrs_one_cycle_and_freezing_give_each_layer_group_its_lr():
    learn = three_group_learner()
    lrs = learn.lr_range(slice(1e-4, 1e-2))
    learn.freeze()
    frozen = {n: p.detach().clone() for n, p in learn.model.named_parameters()}
    learn.fit_one_cycle(2, max_lr=slice(1e-4, 1e-2))
    total = 2 * len(learn.data.train_dl)
    recorded = zip(learn.recorder.group_lrs, learn.recorder.group_moms, strict=True)
    for k, (rec_lrs, rec_moms) in enumerate(recorded):
        expected = [one_cycle(k / total, lr) for lr in lrs]
        assert rec_lrs == [e[0] for e in expected] and rec_moms == [e[1] for e in expected]
    per_group, _ = learn.opt.hypers_at(total // 2)  # what the kernel uses, per param group
    assert per_group == learn.group_map.expand([one_cycle(0.5, lr)[0] for lr in lrs])
    params = dict(learn.model.named_parameters())
    for name in ("0.weight", "0.bias", "3.weight"):  # frozen groups, decayed or not
        assert torch.equal(params[name], frozen[name]), name
    for name in ("1.weight", "1.bias", "4.weight", "4.bias", "8.weight", "8.bias"):
        assert not torch.equal(params[name], frozen[name]), name  # train_bn and the head
    learn.unfreeze()
    learn.fit(1, lr=slice(1e-5, 1e-3))
    expected = learn.lr_range(slice(1e-5, 1e-3))
    assert all(rec == expected for rec in learn.recorder.group_lrs)
    assert [g["lr"] for g in learn.opt.param_groups] == learn.group_map.expand(expected)
    assert not torch.equal(dict(learn.model.named_parameters())["0.bias"], frozen["0.bias"])


def test_lr_find_sweeps_every_layer_group_and_restores_the_groups():
    learn = three_group_learner()
    learn.fit(1, lr=1e-3, wd=0.1)
    hypers = [{k: v for k, v in g.items() if k != "params"} for g in learn.opt.param_groups]
    hypers = copy.deepcopy(hypers)
    start, end = slice(1e-6, 1e-4), slice(1e-3, 1e-1)
    learn.lr_find(start_lr=start, end_lr=end, num_it=20, stop_div=False)
    sweeps = [
        exp_sweep(s, e, 20) for s, e in zip(learn.lr_range(start), learn.lr_range(end), strict=True)
    ]
    assert learn.recorder.group_lrs == [list(row) for row in zip(*sweeps, strict=True)]
    after = [{k: v for k, v in g.items() if k != "params"} for g in learn.opt.param_groups]
    assert after == hypers  # lr, and wd 0 without decay, as before the sweep


# ---- checkpoints -------------------------------------------------------------------------------
def save_as_before_wd_bn_bias(learn: Learner, name: str):
    """What `learn.save(name)` wrote before wd_bn_bias (learn has wd_bn_bias=True: one param
    group per layer group): the same entries, without 'opt_groups'."""
    path = learn._model_file(name)
    checkpoint.save_checkpoint(path, learn.model, learn.opt, learn.epochs_done, None)
    assert "opt_groups" not in torch.load(path, weights_only=True)
    return path


def test_checkpoint_from_before_wd_bn_bias_loads(tmp_path):
    old = three_group_learner(path=tmp_path, wd_bn_bias=True, wd=[0.1, 0.2, 0.3])
    old.fit_one_cycle(2, max_lr=slice(1e-4, 1e-2))
    save_as_before_wd_bn_bias(old, "old")
    saved_state = {id(p): s for p, s in old.opt.state.items()}
    saved_one_cycle = old.opt.one_cycle

    same = three_group_learner(path=tmp_path, model_seed=5, wd_bn_bias=True).load("old")
    assert same.opt.state_dict()["param_groups"] == old.opt.state_dict()["param_groups"]

    new = three_group_learner(path=tmp_path, model_seed=5).load("old")
    assert new.group_map == GroupMap((0, 0, 1, 1, 2, 2), (True, False) * 3)
    old_params = dict(old.model.named_parameters())
    for name, p in new.model.named_parameters():
        for key, value in saved_state[id(old_params[name])].items():
            assert torch.equal(new.opt.state[p][key], value), (name, key)
    assert [g["wd"] for g in new.opt.param_groups] == [0.1, 0.0, 0.2, 0.0, 0.3, 0.0]
    assert [g["lr"] for g in new.opt.param_groups] == new.group_map.expand(
        [g["lr"] for g in old.opt.param_groups]
    )
    assert new.opt.one_cycle["lr_max"] == new.group_map.expand(saved_one_cycle["lr_max"])
    assert new.opt.schedule_step == old.opt.schedule_step
    assert new.epochs_done == 2
    new.fit(1, lr=1e-3)  # and it trains on


def test_checkpoint_regrouped_both_ways_resumes_bit_exact(tmp_path):
    """A checkpoint of the default grouping, loaded into a wd_bn_bias=True learner and saved
    again from it (one param group per layer group), then loaded into a default learner:
    the resumed cycle equals the uninterrupted one bit for bit."""
    torch.manual_seed(0)
    full = three_group_learner(path=tmp_path)
    full.fit_one_cycle(4, max_lr=1e-2, cbs=SaveModelCallback(every_epoch=True, with_opt=True))
    one_per_layer = three_group_learner(path=tmp_path, model_seed=3, wd_bn_bias=True)
    one_per_layer.load("model_1").save("one_per_layer")
    ckpt = torch.load(tmp_path / "models" / "one_per_layer.pth", weights_only=True)
    assert ckpt["opt_groups"] == {"layer": [0, 1, 2], "decay": [True, True, True]}
    assert len(ckpt["opt"]["param_groups"]) == 3

    torch.manual_seed(123)
    resumed = three_group_learner(path=tmp_path, model_seed=7).load("one_per_layer")
    resumed.fit_one_cycle(4, max_lr=1e-2, start_epoch=resumed.epochs_done)
    full_model = full.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, full_model[name]), name
    full_sd, resumed_sd = full.opt.state_dict(), resumed.opt.state_dict()
    assert resumed_sd["param_groups"] == full_sd["param_groups"]
    for sid, state in full_sd["state"].items():
        for key, value in state.items():
            assert torch.equal(resumed_sd["state"][sid][key], value), (sid, key)


def test_checkpoint_that_does_not_fit_names_the_file_and_the_difference(tmp_path):
    two = make_learner(path=tmp_path)  # the tiny model in 2 layer groups
    two.fit(1)
    two.save("two")
    one = make_learner(path=tmp_path, splitter=lambda m: [m])
    with pytest.raises(
        ValueError,
        match=r"two\.pth: .*saved for 2 layer groups \(4 param groups\), this "
        r"learner has 1",
    ):
        one.load("two")
    old = make_learner(path=tmp_path, wd_bn_bias=True)
    save_as_before_wd_bn_bias(old, "old")
    moved = make_learner(path=tmp_path, splitter=lambda m: [m[:1], m[1:]])  # BN moved
    with pytest.raises(
        ValueError,
        match=r"old\.pth: .*its param group 0 holds 4 params, layer group 0's decayed params "
        r"here number 2",
    ):
        moved.load("old")
    ckpt = torch.load(tmp_path / "models" / "two.pth", weights_only=True)
    ckpt["opt_groups"] = {"layer": [0, 1], "decay": ["yes", True]}
    checkpoint.atomic_save(ckpt, tmp_path / "models" / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth: .*opt_groups should be a GroupMap"):
        make_learner(path=tmp_path, wd_bn_bias=True).load("bad")
    one.load("two", with_opt=False)  # the model alone still loads


# ---- arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [1, 0, "False", None, 1.0])
def test_wd_bn_bias_should_be_a_bool(value):
    with pytest.raises(
        TypeError, match=rf"wd_bn_bias should be a bool, got {type(value).__name__}"
    ):
        make_learner(wd_bn_bias=value)
    with pytest.raises(TypeError, match="wd_bn_bias should be a bool"):
        create_cnn(easy_bunch(size=32), models.resnet18, pretrained=False, wd_bn_bias=value)


def test_a_torch_optimizer_gets_the_weight_decay_of_the_learner_and_of_fit():
    """wd reached torch's optimizers as a 'wd' key they never read: AdamW kept its 0.01."""
    learn = three_group_learner(opt_func=torch.optim.AdamW)  # wd None: AdamW's own default
    decays = learn.group_map.decay
    assert [g["weight_decay"] for g in learn.opt.param_groups] == [
        0.01 if d else 0.0 for d in decays
    ]
    learn = three_group_learner(opt_func=torch.optim.AdamW, wd=0.5)
    learn.fit(1, lr=1e-3, wd=0.3)
    assert [g["weight_decay"] for g in learn.opt.param_groups] == [
        0.3 if d else 0.0 for d in decays
    ]
    learn.fit(1, lr=1e-3)  # fit's wd None: the learner's again
    assert [g["weight_decay"] for g in learn.opt.param_groups] == [
        0.5 if d else 0.0 for d in decays
    ]


def test_parameters_the_user_froze_stay_frozen_without_a_splitter():
    """fastai's default splitter (trainable_params) leaves out what the user froze, so its
    freeze / unfreeze / fine_tune never train it; ours holds every parameter but leaves them."""
    learn = make_learner(model=three_group_model(), splitter=None)
    body = list(learn.model[:3].parameters())
    for p in body:
        p.requires_grad_(False)
    before = [p.detach().clone() for p in body]
    head = learn.model[8].weight.detach().clone()
    learn.freeze()
    assert not any(p.requires_grad for p in body)
    learn.unfreeze()
    assert not any(p.requires_grad for p in body)
    learn.fine_tune(1, 1e-2, freeze_epochs=1)
    assert not any(p.requires_grad for p in body)
    assert all(torch.equal(p, b) for p, b in zip(body, before, strict=True))
    assert not torch.equal(learn.model[8].weight, head)
    learn.freeze_to(1)  # what freeze_to froze, unfreeze trains again; the user's stays frozen
    assert not learn.model[8].weight.requires_grad
    learn.unfreeze()
    assert learn.model[8].weight.requires_grad and not any(p.requires_grad for p in body)


def test_with_a_splitter_unfreeze_trains_whole_groups_as_fastai():
    learn = three_group_learner()
    learn.model[0].weight.requires_grad_(False)
    learn.unfreeze()
    assert learn.model[0].weight.requires_grad


def test_lr_finds_suggestions_of_several_methods_are_not_taken_as_per_group_rates():
    """fit_one_cycle(n, learn.lr_find()) on a v1 bunch passed Suggestions(valley, steep,
    minimum) as 3 per-group rates (silently with 3 layer groups); fastai v2's
    SuggestedLRs(valley=...) of one value spreads over the groups, as fastai's."""
    from collections import namedtuple

    from fastcore_ext import layer_groups as lg
    from fastcore_ext.schedule import Suggestions

    three = Suggestions(1e-3, 2e-2, 5e-3)
    with pytest.raises(ValueError, match=r"max_lr: got lr_find's suggestions \(valley=0.001, "
                       r"steep=0.02, minimum=0.005\), one learning rate per method.*"
                       r"max_lr=learn.lr_find\(\).valley"):  # fmt: skip
        lg.lr_range(three, 3, "max_lr")
    one = namedtuple("SuggestedLRs", ["valley"])(2e-3)  # what lr_find returns on v2's data
    assert lg.lr_range(one, 3, "max_lr") == [2e-3] * 3


def test_slice_spreads_and_fine_tune_rates_are_fastais_numbers():
    """Literal values, not the code's own lr_range: fastai's even_mults spreads slice(a, b)
    geometrically over the groups (ratio (b/a)^(1/(n-1))), slice(b) is b/10 for all but the
    last group, and fine_tune unfreezes at slice(base_lr/2/lr_mult, base_lr/2)."""
    assert slice_values(1e-4, 1e-2, 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert slice_values(1e-5, 1e-2, 4) == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2])
    assert slice_values(None, 1e-2, 3) == pytest.approx([1e-3, 1e-3, 1e-2])
    assert slice_values(1e-4, 1e-2, 1) == [1e-2]
    learn = create_cnn(easy_bunch(), models.resnet18, pretrained=False)
    assert learn.lr_range(slice(1e-4, 1e-2)) == pytest.approx([1e-4, 1e-3, 1e-2])
    frozen, unfrozen = fine_tune_lrs(2e-3, 100)
    assert frozen == slice(2e-3)
    assert (unfrozen.start, unfrozen.stop) == pytest.approx((1e-5, 1e-3))
    frozen, unfrozen = fine_tune_lrs(1e-2, 10)
    assert (unfrozen.start, unfrozen.stop) == pytest.approx((5e-4, 5e-3))
