"""ConvWeightGrad: the weight gradient of weight-heavy convolutions as one matrix product, checked
against torch's convolution backward (every stride, padding, dilation, kernel shape and
layout), through gradcheck, through the hooks (only float32 with gradients on, off again
when removed or when the forward raises), in resnet18's layer choice and in a fit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fakes import make_learner, weight_bound_model
from torch import nn

from fastcore_ext import hardware, vision
from fastcore_ext.callback import conv_weight_grad as cwg
from fastcore_ext.callback.mixed_precision import conv_input_sizes

CASES = [  # (input [N, C, H, W], weight [O, C, kh, kw], stride, padding, dilation)
    ((64, 32, 2, 2), (48, 32, 3, 3), (1, 1), (1, 1), (1, 1)),  # layer4 at 64 px, smaller
    ((8, 16, 4, 4), (24, 16, 3, 3), (2, 2), (1, 1), (1, 1)),  # strided, 4x4 -> 2x2
    ((4, 8, 7, 5), (6, 8, 3, 1), (1, 2), (1, 0), (1, 1)),  # a non-square kernel and map
    ((3, 5, 9, 9), (7, 5, 3, 3), (2, 1), (2, 1), (2, 1)),  # dilation, uneven strides
    ((2, 6, 5, 5), (4, 6, 1, 1), (2, 2), (0, 0), (1, 1)),  # a 1x1 downsample
    ((2, 3, 6, 6), (4, 3, 5, 5), (1, 1), (0, 0), (1, 1)),  # no padding, a 5x5 kernel
    ((2, 3, 6, 6), (4, 3, 3, 3), (2, 2), (0, 0), (1, 1)),  # the last row and column unseen
]


def reference_grads(x, w, b, stride, padding, dilation, go):
    """(grad x, grad w, grad b) by torch's own convolution backward."""
    return torch.ops.aten.convolution_backward(
        go, x, w, [w.shape[0]], list(stride), list(padding), list(dilation), False, [0, 0], 1,
        [True, True, True],
    )  # fmt: skip


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("xs", "ws", "stride", "padding", "dilation"), CASES)
def test_weight_and_input_grads_equal_torchs(xs, ws, stride, padding, dilation, channels_last):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(xs, generator=g), torch.randn(ws, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    go = torch.randn_like(
        F.conv2d(x, w, None, stride, padding, dilation), memory_format=torch.contiguous_format
    )
    want_x, want_w, _ = reference_grads(x, w, None, stride, padding, dilation, go)
    got_w = cwg.conv2d_weight_grad(x, go, ws[2:], stride, padding, dilation)
    assert got_w.shape == want_w.shape
    torch.testing.assert_close(got_w, want_w, rtol=1e-4, atol=1e-4)
    got_x = cwg.conv2d_input_grad(go, w, xs[2:], stride, padding, dilation)
    assert got_x.shape == want_x.shape
    torch.testing.assert_close(got_x, want_x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("xs", "ws", "stride", "padding", "dilation"), CASES)
def test_matmul_grad_conv_passes_gradcheck_and_gradgradcheck(xs, ws, stride, padding, dilation):
    g = torch.Generator().manual_seed(1)
    small = (2, min(xs[1], 3), *xs[2:])
    x = torch.randn(small, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn((min(ws[0], 4), small[1], *ws[2:]), generator=g, dtype=torch.float64,
                    requires_grad=True)  # fmt: skip
    b = torch.randn(w.shape[0], generator=g, dtype=torch.float64, requires_grad=True)
    fn = cwg.MatmulGradConv2d.apply
    assert torch.autograd.gradcheck(lambda *t: fn(*t, stride, padding, dilation), (x, w, b))
    assert torch.autograd.gradgradcheck(lambda *t: fn(*t, stride, padding, dilation), (x, w, b))


def conv_and_copy(channels_last: bool, stride: int = 1) -> tuple[nn.Conv2d, nn.Conv2d]:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, stride, padding=1)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
    plain = nn.Conv2d(8, 16, 3, stride, padding=1)
    plain.load_state_dict(conv.state_dict())
    return conv, plain


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_hooked_conv_gives_torchs_gradients_in_the_weights_layout(channels_last, stride):
    conv, plain = conv_and_copy(channels_last, stride)
    hooks = cwg.MatmulGrads([conv])
    x = torch.randn(4, 8, 2 * stride, 2 * stride, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    out = conv(x)
    assert type(out.grad_fn).__name__ == "MatmulGradConv2dBackward"
    go = torch.randn_like(out)
    out.backward(go)
    plain(x2).backward(go)
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.bias.grad, plain.bias.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert conv.weight.grad.is_contiguous(memory_format=fmt)
    assert x.grad.is_contiguous()  # the input's layout (NCHW here)
    hooks.remove()
    assert type(conv(x).grad_fn).__name__ == "ConvolutionBackward0"


def test_hooks_leave_bf16_autocast_inference_and_other_dtypes_alone():
    conv, _ = conv_and_copy(False)
    hooks = cwg.MatmulGrads([conv])
    x = torch.randn(4, 8, 2, 2, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16 and "MatmulGrad" not in type(out.grad_fn).__name__
    with torch.no_grad():
        assert conv(x).grad_fn is None
    conv.double()
    out = conv(x.double())
    assert "MatmulGrad" not in type(out.grad_fn).__name__
    hooks.remove()


def test_hooks_come_off_when_the_forward_raises():
    conv, _ = conv_and_copy(False)
    other = nn.Conv2d(8, 16, 3, padding=1)  # not hooked: must never see the mode
    hooks = cwg.MatmulGrads([conv])
    with pytest.raises(RuntimeError):
        conv(torch.randn(4, 5, 2, 2))  # wrong channel count
    out = other(torch.randn(4, 8, 2, 2, requires_grad=True))
    assert type(out.grad_fn).__name__ == "ConvolutionBackward0"
    assert type(conv(torch.randn(4, 8, 2, 2)).grad_fn).__name__ == "MatmulGradConv2dBackward"
    hooks.remove()


def test_matmul_grad_convs_of_resnet18_at_64_and_224_px():
    body = vision.create_body("resnet18", pretrained=False)
    sizes = conv_input_sizes(body, torch.randn(64, 3, 64, 64))
    names = [n for n, _ in cwg.matmul_grad_convs(sizes, 64)]
    assert names == ["7.0.conv1", "7.0.conv2", "7.1.conv1", "7.1.conv2"]  # layer4's 3x3
    sizes32 = conv_input_sizes(body, torch.randn(32, 3, 64, 64))
    names32 = [n for n, _ in cwg.matmul_grad_convs(sizes32, 32)]
    assert names32 == names  # layer3 (4x4 outputs) is heavy enough at bs 32, but not picked
    assert [n for n, _ in cwg.matmul_grad_convs(sizes32, 32, max_positions=16)][:3] == [
        "6.0.conv2", "6.1.conv1", "6.1.conv2"
    ]  # fmt: skip
    sizes = conv_input_sizes(body, torch.randn(64, 3, 224, 224))
    assert cwg.matmul_grad_convs(sizes, 64) == []
    grouped = nn.Conv2d(8, 64, 3, padding=1, groups=2)
    assert cwg.matmul_grad_convs([("g", grouped, (1, 1))], 1) == []  # groups: never


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fit_uses_the_product_for_the_fit_and_trains_as_without(precision):
    results = {}
    for enabled in (True, False):
        torch.manual_seed(0)  # the same initial weights
        learn = make_learner(model=weight_bound_model(), splitter=lambda m: [m[:4], m[4:]])
        if precision == "bf16":
            learn.to_bf16()
            learn.mixed_precision.fp32_convs = True  # the conv runs in float32 there
        learn.conv_weight_grad.enabled = enabled
        kinds = set()
        learn.model[4].register_forward_hook(
            lambda m, a, out, kinds=kinds: (
                kinds.add(type(out.grad_fn).__name__) if m.training else None
            )
        )
        learn.fit_one_cycle(2, max_lr=1e-2)
        assert learn.conv_weight_grad.convs == (["4"] if enabled else [])
        uses = any("MatmulGrad" in k for k in kinds)
        assert uses == enabled, kinds
        assert len(learn.model[4]._forward_pre_hooks) == 0  # the hooks end with the fit
        results[enabled] = (learn.recorder.raw_losses, learn.model[4].weight.detach().clone())
    (losses_on, w_on), (losses_off, w_off) = results[True], results[False]
    torch.testing.assert_close(
        torch.tensor(losses_on), torch.tensor(losses_off), rtol=1e-3, atol=1e-3
    )
    torch.testing.assert_close(w_on, w_off, rtol=1e-3, atol=1e-4)


def test_enabled_must_be_a_bool_and_defaults_to_where_the_cpu_has_amx(monkeypatch):
    with pytest.raises(TypeError, match="enabled should be True, False or None, got 'yes'"):
        cwg.ConvWeightGrad("yes")
    for flags, on in ((("amx_bf16", "avx512_bf16"), True), (("avx512_bf16",), False), ((), False)):
        monkeypatch.setattr(hardware, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert cwg.ConvWeightGrad().enabled is on
        assert cwg.ConvWeightGrad(True).enabled is True


def test_a_callback_changing_the_batch_in_before_batch_trains():
    """The probe pass ran on the batch before a later callback's before_batch changed it
    (one channel of three): the fit failed inside the probe ('expected input ... to have 1
    channels'). Now that fit keeps torch's gradients."""

    class Gray(vision.Callback):
        def before_batch(self) -> None:
            self.learn.xb = (self.xb[0][:, :1],)

    model = weight_bound_model()
    model[0] = nn.Conv2d(1, 8, 3, padding=1)
    learn = make_learner(model=model, splitter=None, cbs=Gray())
    learn.conv_weight_grad.enabled = True  # on every CPU (by default where it has AMX)
    learn.fit(1)
    assert learn.conv_weight_grad.convs == [] and len(learn.recorder.raw_losses) > 0
