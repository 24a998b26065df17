"""fastcore_ext.hooks (Hook, hook_output, Hooks, hook_outputs, dummy_eval, model_sizes,
num_features_model) against plain torch, and ActivationStats (fastcore_ext.callback
.activation_stats) against statistics computed by hand from hooked outputs."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from fakes import N_BATCHES, easy_bunch, make_learner, tiny_model
from matplotlib.figure import Figure
from torch import nn

from fastcore_ext import plots
from fastcore_ext.callback import Callback, CancelBatchException
from fastcore_ext.callback.activation_stats import ActivationStats
from fastcore_ext.foundation import L
from fastcore_ext.hooks import (
    Hook,
    Hooks,
    dummy_eval,
    flatten_model,
    has_params,
    hook_output,
    hook_outputs,
    model_sizes,
    num_features_model,
)


def small_cnn() -> nn.Sequential:
    """conv(stride 2) -> BN -> ReLU(inplace, as torchvision's resnets) -> conv -> pool ->
    flatten -> linear; on 8x8 inputs: [B, 4, 4, 4], ..., [B, 6, 4, 4], [B, 6, 1, 1], [B, 6],
    [B, 2]."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 2),
    )


def no_hooks(model: nn.Module) -> bool:
    """No forward, backward or pre-hook left on any module of `model`."""
    return all(
        not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in model.modules()
    )


# ---- Hook / hook_output -----------------------------------------------------------------
def test_hook_output_stores_the_output_detached(device):
    m = small_cnn().to(device)
    x = torch.randn(2, 3, 8, 8, device=device)
    with hook_output(m[3]) as h:
        assert h.stored is None  # before any forward pass
        m(x)
    expected = m[3](m[:3](x))  # BN in training mode: the same batch statistics
    torch.testing.assert_close(h.stored, expected)
    assert h.stored.device == x.device and not h.stored.requires_grad
    assert h.removed and no_hooks(m)


def test_hook_output_shares_the_outputs_memory():
    """As fastai's (a detached view, no copy): the ReLU(inplace=True) after the BN changes
    the stored BN output too, as the docstring warns."""
    m = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    with hook_output(m[1]) as h:
        m(x)
    torch.testing.assert_close(h.stored, torch.relu(m[1](m[0](x))))
    assert "in place" in hook_output.__doc__


def test_hook_output_detach_false_keeps_the_graph_and_cpu_moves_it(device):
    m = small_cnn().to(device)
    x = torch.randn(2, 3, 8, 8, device=device)
    with hook_output(m[0], detach=False) as h:
        m(x)
    assert h.stored.requires_grad and h.stored.grad_fn is not None
    with hook_output(m[0], cpu=True) as h:
        m(x)
    assert h.stored.device.type == "cpu" and not h.stored.requires_grad
    torch.testing.assert_close(h.stored, m[0](x).detach().cpu())


def test_hook_output_grad_stores_the_gradient_of_the_output():
    """The hooked BN's output is changed in place by the ReLU after it (torch's full backward
    hook fails there); the stored gradient is d(loss)/d(BN output), without a warning."""
    m = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's legacy backward hook warns (FutureWarning)
        with hook_output(m[1], grad=True) as h:
            m(x).pow(2).sum().backward()
    assert isinstance(h.stored, tuple) and len(h.stored) == 1  # fastai's: a tuple
    # by hand: the BN output as a leaf, the rest of the model after it
    acts = m[1](m[0](x)).detach().requires_grad_()
    m[3:](torch.relu(acts)).pow(2).sum().backward()
    torch.testing.assert_close(h.stored[0], acts.grad)
    assert no_hooks(m)


def test_grad_hook_of_a_whole_body_and_nothing_without_gradients():
    """A module of several operations (fastai's Grad-CAM hooks the body) gets the gradient of
    its output; a forward without gradients stores nothing."""
    cnn = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    m = nn.Sequential(cnn[:4], cnn[4:])  # body, head
    body = m[0]
    with hook_output(body, grad=True) as h:
        with torch.no_grad():
            m(x)
        assert h.stored is None
        m(x)[:, 1].sum().backward()
    acts = body(x).detach().requires_grad_()
    m[1](acts)[:, 1].sum().backward()
    torch.testing.assert_close(h.stored[0], acts.grad)


def test_hook_calls_hook_func_with_module_input_output():
    m = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    seen = []

    def func(module, inp, out):
        seen.append((module, inp, out))
        return "kept"

    with Hook(m[0], func) as h:
        m(x)
    assert h.stored == "kept"
    module, inp, out = seen[0]
    assert module is m[0] and isinstance(inp, tuple) and torch.equal(inp[0], x)
    assert not out.requires_grad  # detached before func sees it
    with Hook(m[6], func, is_forward=False) as h:
        m(x).sum().backward()
    module, inp, out = seen[-1]
    assert module is m[6] and inp is None  # gradient hooks get no input gradients
    torch.testing.assert_close(out[0], torch.ones(2, 2))


def test_remove_unregisters_the_torch_hook():
    m = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    h = hook_output(m[3])
    assert len(m[3]._forward_hooks) == 1
    m(x)
    first = h.stored
    h.remove()
    assert m[3]._forward_hooks == {} and h.removed
    h.remove()  # a second call does nothing
    m(2 * x)
    assert h.stored is first  # the module no longer calls it
    # a gradient hook removed between the forward and the backward stores nothing
    g = hook_output(m[3], grad=True)
    out = m(x)
    g.remove()
    out.sum().backward()
    assert g.stored is None and no_hooks(m)


def test_hook_output_under_bf16_autocast_keeps_bf16():
    """As fastai's: the stored output has the dtype autocast gave it; `.float()` is the
    user's call (the docstring says so)."""
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8)
    with hook_output(conv) as h, torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == h.stored.dtype == torch.bfloat16
    torch.testing.assert_close(h.stored.float(), conv(x), atol=0.05, rtol=0.02)
    assert ".float()" in hook_output.__doc__


def test_hook_argument_errors():
    m = small_cnn()
    with pytest.raises(TypeError, match="m should be a torch.nn.Module, got int"):
        Hook(3, lambda *a: None)
    with pytest.raises(TypeError, match="hook_func should be a callable"):
        Hook(m, "f")
    with pytest.raises(TypeError, match="detach should be a bool, got int 1"):
        hook_output(m, detach=1)
    assert no_hooks(m)


# ---- Hooks / hook_outputs ---------------------------------------------------------------
def test_hook_outputs_is_a_list_of_hooks():
    m = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    with hook_outputs([m[0], m[3], m[6]]) as hooks:
        m(x)
        assert len(hooks) == 3 and isinstance(hooks[1], Hook)
        assert [h.stored.shape for h in hooks] == [(2, 4, 4, 4), (2, 6, 4, 4), (2, 2)]
        assert isinstance(hooks.stored, L) and len(hooks.stored) == 3
        torch.testing.assert_close(hooks.stored[2], m(x).detach())
    assert all(h.removed for h in hooks) and no_hooks(m)


def test_hooks_of_a_sequential_hook_its_children():
    m = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    hooks = Hooks(m, lambda module, i, o: type(module).__name__)
    m(x)
    assert hooks.stored == [type(c).__name__ for c in m]
    hooks.remove()
    assert no_hooks(m)


def test_hook_outputs_grad():
    m = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    with hook_outputs([m[3], m[6]], grad=True) as hooks:
        m(x).sum().backward()
    assert [type(s) for s in hooks.stored] == [tuple, tuple]
    torch.testing.assert_close(hooks.stored[1][0], torch.ones(2, 2))
    assert hooks.stored[0][0].shape == (2, 6, 4, 4)


def test_hooks_errors_place_no_hook():
    m = small_cnn()
    with pytest.raises(TypeError, match=r"ms\[1\] should be a torch.nn.Module, got str"):
        Hooks([m[0], "conv"], lambda *a: None)
    with pytest.raises(TypeError, match="pass \\[module\\], or use hook_output"):
        hook_outputs(m[0])
    with pytest.raises(TypeError, match="hook_func should be a callable"):
        Hooks([m[0]], None)
    with pytest.raises(TypeError, match="cpu should be a bool"):
        hook_outputs([m[0], m[3]], cpu="yes")
    assert no_hooks(m)


def test_flatten_model_and_has_params():
    m = small_cnn()
    nested = nn.Sequential(m[:2], nn.Sequential(m[2], m[3:]))
    assert flatten_model(nested) == list(m)
    assert [has_params(c) for c in m] == [True, True, False, True, False, False, True]


# ---- dummy_eval / model_sizes / num_features_model --------------------------------------
def test_dummy_eval_restores_each_modules_mode():
    m = small_cnn()
    m.train()
    m[1].eval()  # a frozen BN inside a training model stays frozen
    out = dummy_eval(m, size=(8, 8))
    assert out.shape == (1, 2)
    assert m.training and not m[1].training and m[3].training
    m.eval()
    dummy_eval(m, size=8)
    assert not any(c.training for c in m.modules())


def test_dummy_eval_input_dtype_device_and_rng(device):
    m = small_cnn().to(device=device, dtype=torch.float64)
    state = torch.random.get_rng_state()
    out = dummy_eval(m, size=(8, 8))
    assert out.dtype == torch.float64 and out.device.type == device.type
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator untouched
    torch.testing.assert_close(dummy_eval(m, size=(8, 8)), out)  # a fixed input
    # the input: one image in [-1, 1] of the first convolution's channels
    gray = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with Hook(gray[0], lambda module, i, o: i[0]) as h:
        dummy_eval(gray, size=(5, 7))
    assert h.stored.shape == (1, 1, 5, 7) and h.stored.abs().max() <= 1


def test_model_sizes_and_num_features():
    m = small_cnn()
    assert model_sizes(m, size=(8, 8)) == [
        torch.Size([1, 4, 4, 4]),
        torch.Size([1, 4, 4, 4]),
        torch.Size([1, 4, 4, 4]),
        torch.Size([1, 6, 4, 4]),
        torch.Size([1, 6, 1, 1]),
        torch.Size([1, 6]),
        torch.Size([1, 2]),
    ]
    assert model_sizes(m[:4], size=16)[-1] == (1, 6, 8, 8)
    assert no_hooks(m) and m.training
    assert num_features_model(m[:4]) == 6
    assert num_features_model(m) == 2


def test_num_features_model_tries_larger_sizes():
    """A body that needs at least 100 pixels a side: 32 and 64 fail, 128 works."""
    body = nn.Sequential(nn.Conv2d(3, 5, 100), nn.ReLU())
    assert num_features_model(body) == 5
    with pytest.raises(RuntimeError):  # fails at every size: the last error is raised
        num_features_model(nn.Sequential(nn.Conv2d(3, 5, 3), nn.Flatten(), nn.Linear(7, 2)))


def test_model_sizes_names_a_child_that_did_not_run():
    class SkipsOne(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Conv2d(3, 2, 3), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match=r"child 1 of m \(Linear\) did not run"):
        model_sizes(SkipsOne(), size=(8, 8))


# ---- ActivationStats --------------------------------------------------------------------
class Capture(Callback):
    """The outputs of `modules` at every training batch, by hand (hook_outputs)."""

    run_valid = False

    def __init__(self, modules):
        super().__init__()
        self.modules, self.batches = modules, []

    def before_fit(self):
        self.hooks = hook_outputs(self.modules)

    def after_batch(self):
        self.batches.append([o.clone() for o in self.hooks.stored])

    def after_fit(self):
        self.hooks.remove()


def by_hand(o: torch.Tensor) -> dict:
    """fastai's formulas, on the output in float32."""
    o = o.float()
    return {
        "mean": o.mean().item(),
        "std": o.std().item(),
        "near_zero": (o <= 0.05).long().sum().item() / o.numel(),
        "hist": o.histc(40, 0, 10),
    }


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_activation_stats_equal_the_hooked_outputs_statistics(precision):
    learn = make_learner(precision=precision)
    m = learn.model
    stats = ActivationStats(with_hist=True)
    capture = Capture([m[0], m[1], m[6]])  # the leaf modules with parameters
    learn.fit(2, cbs=[stats, capture])
    assert len(capture.batches) == 2 * N_BATCHES  # training batches only
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    assert [o.dtype for o in capture.batches[0]] == [dtype] * 3  # under autocast: bf16
    assert len(stats.stats) == 2 * N_BATCHES and len(stats.stats[0]) == 3
    for batch, outputs in zip(stats.stats, capture.batches, strict=True):
        for record, out in zip(batch, outputs, strict=True):
            expected = by_hand(out)
            assert record["mean"] == pytest.approx(expected["mean"], rel=1e-6, abs=1e-7)
            assert record["std"] == pytest.approx(expected["std"], rel=1e-6)
            assert record["near_zero"] == pytest.approx(expected["near_zero"], abs=1e-12)
            torch.testing.assert_close(record["hist"], expected["hist"])
    means, stds, near_zero = stats.layer_stats(-1)
    assert means == [b[2]["mean"] for b in stats.stats]
    assert near_zero == [b[2]["near_zero"] for b in stats.stats]
    assert stats.hooks is None and no_hooks(m)


def test_activation_stats_every_and_modules():
    learn = make_learner()
    m = learn.model
    stats = ActivationStats(modules=[m[0]], every=3)
    capture = Capture([m[0]])
    learn.fit(2, cbs=[stats, capture])
    recorded = range(0, 2 * N_BATCHES, 3)  # fastai's: batches 0, every, 2 * every...
    assert len(stats.stats) == len(recorded) and len(stats.stats[0]) == 1
    assert "hist" not in stats.stats[0][0]
    for record, i in zip(stats.stats, recorded, strict=True):
        assert record[0]["mean"] == pytest.approx(capture.batches[i][0].mean().item(), rel=1e-6)
    assert no_hooks(m)
    learn.fit(1, cbs=stats)  # each fit starts anew, counting its batches from 0
    assert len(stats.stats) == len(range(0, N_BATCHES, 3))


def test_activation_stats_hist_shape_and_log1p():
    learn = make_learner()
    stats = ActivationStats(with_hist=True)
    learn.fit(1, cbs=stats)
    hist = stats.hist(0)
    assert hist.shape == (40, N_BATCHES) and hist.dtype == torch.float32
    counts = torch.stack([b[0]["hist"] for b in stats.stats]).t()
    torch.testing.assert_close(hist, counts.log1p())
    assert stats.hist(-1).shape == (40, N_BATCHES)


def test_activation_stats_errors():
    with pytest.raises(TypeError, match="with_hist should be a bool"):
        ActivationStats(with_hist=1)
    with pytest.raises(ValueError, match="every should be >= 1, got 0"):
        ActivationStats(every=0)
    with pytest.raises(TypeError, match=r"modules\[0\] should be a torch.nn.Module"):
        ActivationStats(modules=[3])
    stats = ActivationStats()
    with pytest.raises(ValueError, match="layer_stats\\(\\) needs recorded statistics"):
        stats.layer_stats(0)
    learn = make_learner(data=easy_bunch(n_train=32, n_valid=16))
    learn.fit(1, cbs=stats)
    with pytest.raises(IndexError, match=r"idx should be in \[-3, 3\) for 3 hooked layers, got 3"):
        stats.layer_stats(3)
    with pytest.raises(TypeError, match="idx should be an int"):
        stats.layer_stats("conv")
    with pytest.raises(ValueError, match="with_hist=True"):
        stats.hist(0)
    with pytest.raises(ValueError, match="with_hist=True"):
        stats.color_dim(0)


def test_activation_stats_plots_return_figures(tmp_path):
    plots.set_plot_dir(tmp_path)
    learn = make_learner(data=easy_bunch(n_train=64, n_valid=16))
    stats = ActivationStats(with_hist=True)
    learn.fit(1, cbs=stats)
    fig = stats.plot_layer_stats(0)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["mean", "std", "% near zero"]
    assert plots.saved_file(fig) == (tmp_path / "layer_stats_0.png").absolute()
    fig = stats.color_dim(-1)
    assert plots.saved_file(fig) == (tmp_path / "color_dim_-1.png").absolute()
    assert fig.axes[0].images[0].get_array().shape == (40, 4)
    mine = plots.PlotFigure()
    ax = mine.add_subplot()
    assert stats.color_dim(1, ax=ax) is None and plots.saved_file(mine) is None
    assert ax.get_images()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["color_dim_-1.png", "layer_stats_0.png"]


class FailAt(Callback):
    """Raises RuntimeError at training batch `n` (0-based: fastai's train_iter) of a fit."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def after_loss(self):
        if self.learn.training and self.learn.train_iter == self.n:
            raise RuntimeError("boom")


@pytest.mark.parametrize("every", [None, 2])
def test_hooks_are_removed_after_a_fit_that_raises(every):
    learn = make_learner()
    stats = ActivationStats(every=every)
    with pytest.raises(RuntimeError, match="boom"):
        learn.fit(1, cbs=[stats, FailAt(2)])
    assert stats.hooks is None and no_hooks(learn.model)
    assert len(stats.stats) == (2 if every is None else 1)  # batches 1, 2 (every 2: 1)
    learn.fit(1, cbs=stats)  # the next fit works and starts anew
    assert len(stats.stats) == (N_BATCHES if every is None else N_BATCHES // 2)
    assert no_hooks(learn.model)


class CancelAt(Callback):
    """Cancels training batch `n` (0-based) of a fit in its before_batch, before any other
    callback's."""

    order = -100

    def __init__(self, n):
        super().__init__()
        self.n = n

    def before_batch(self):
        if self.learn.training and self.learn.train_iter == self.n:
            raise CancelBatchException


@pytest.mark.parametrize("every", [None, 1])
def test_a_batch_cancelled_before_its_forward_pass_records_nothing(every):
    learn = make_learner()
    stats = ActivationStats(every=every)
    learn.fit(1, cbs=[stats, CancelAt(1)])
    assert len(stats.stats) == N_BATCHES - 1
    assert len({b[0]["mean"] for b in stats.stats}) == N_BATCHES - 1  # no batch twice
    assert no_hooks(learn.model)


def test_activation_stats_sit_lr_find_out():
    stats = ActivationStats()
    learn = make_learner(cbs=stats)
    learn.fit(1)
    before = [[dict(r) for r in b] for b in stats.stats]
    learn.lr_find(num_it=4, show_plot=False)
    assert [[dict(r) for r in b] for b in stats.stats] == before
    assert no_hooks(learn.model)
    assert all(math.isfinite(b[0]["std"]) for b in stats.stats)


def test_tiny_model_default_layers():
    assert [type(m).__name__ for m in flatten_model(tiny_model()) if has_params(m)] == [
        "Conv2d",
        "BatchNorm2d",
        "Linear",
    ]
