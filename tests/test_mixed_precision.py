"""Mixed precision: precision="auto" (bf16 + channels-last where the CPU flags say bf16 is
native, stubbed here), the MixedPrecision callback, to_bf16 (autocast on the CPU and CUDA,
float32 weights), to_fp16 (CUDA autocast + GradScaler driving the fused optimizer; a clear
error on the CPU), to_fp32; a step skipped for overflowed grads leaves the schedule's host
mirror equal to the device counter."""

from __future__ import annotations

import math

import pytest
import torch
from fakes import InfGrads, easy_bunch, make_learner, weight_bound_model

import fastcore_ext.learner as learner_mod
from fastcore_ext import hardware, vision
from fastcore_ext.callback import Callback, mixed_precision
from fastcore_ext.callback.mixed_precision import MixedPrecision
from fastcore_ext.schedule import one_cycle


class Dtypes(Callback):
    """The dtype of the model output, per phase."""

    def __init__(self):
        super().__init__()
        self.train: set[torch.dtype] = set()
        self.valid: set[torch.dtype] = set()

    def after_pred(self):
        (self.train if self.learn.training else self.valid).add(self.learn.pred.dtype)


def test_bf16_fit_on_cpu_learns_with_float32_weights():
    learn = make_learner().to_bf16()
    assert learn.precision == "bf16"
    seen = Dtypes()
    learn.fit_one_cycle(4, max_lr=1e-2, cbs=seen)
    assert seen.train == seen.valid == {torch.bfloat16}  # forward passes ran in bfloat16
    losses = learn.recorder.raw_losses
    assert sum(losses[-4:]) < 0.6 * sum(losses[:4])
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    state = learn.opt.state_dict()["state"]
    assert all(v.dtype == torch.float32 for st in state.values() for v in st.values())
    assert learn.scaler is None
    probs, _ = learn.get_preds()
    assert probs.dtype == torch.float32 and torch.allclose(probs.sum(1), torch.ones(len(probs)))


def test_to_fp32_and_precision_names():
    learn = make_learner().to_bf16().to_fp32()
    assert learn.precision == "fp32" and learn.amp_dtype is None and learn.scaler is None
    seen = Dtypes()
    learn.fit(1, cbs=seen)
    assert seen.train == seen.valid == {torch.float32}


def test_fp16_on_the_cpu_warns_and_keeps_the_precision(device):
    learn = make_learner(data=easy_bunch(device=device))
    if device.type == "cpu":  # fastbook's .to_fp16() runs: the learner keeps its precision
        for precision in ("fp32", "bf16"):
            learn = make_learner(data=easy_bunch(device=device), precision=precision)
            with pytest.warns(UserWarning, match=rf"to_fp16: .*GPU recipe .* '{precision}' \("):
                assert learn.to_fp16() is learn
            assert learn.precision == precision and learn.scaler is None
        return
    learn.to_fp16()
    assert learn.precision == "fp16" and learn.scaler is not None
    seen = Dtypes()
    learn.fit_one_cycle(4, max_lr=1e-2, cbs=seen)
    assert seen.train == {torch.float16}
    assert learn._sched_step == learn.opt.schedule_step
    losses = learn.recorder.raw_losses
    assert sum(losses[-4:]) < 0.6 * sum(losses[:4])


def test_lr_find_under_bf16_restores_everything():
    learn = make_learner().to_bf16()
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.lr_find(num_it=12)
    assert all(torch.equal(a, p) for a, p in zip(before, learn.model.parameters(), strict=True))
    assert learn.precision == "bf16"


def test_skipped_steps_keep_the_schedule_mirror_on_the_device_counter():
    """Loss scaling (the fp16 path, driven on the CPU here): a step whose grads hold an inf
    is skipped by the fused optimizer (params and state unchanged) and the scale halves, while
    the schedule position advances, once per batch as fastai's ParamScheduler: the learner's
    host mirror follows the device counter, and the recorded lr of every batch is the one-cycle
    value at that batch."""
    learn = make_learner()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=10**6)
    learn.add_cb(MixedPrecision(torch.bfloat16, scaler))
    bad = {0, 1, 5}
    probe = InfGrads(bad)
    n = len(learn.data.train_dl)
    learn.fit_one_cycle(2, max_lr=1e-2, cbs=probe)
    counter = learn.opt.schedule_step
    assert counter == 2 * n
    assert learn._sched_step == counter
    assert learn.scaler.get_scale() == 2.0 ** (10 - len(bad))

    def same(i: int, j: int) -> bool:
        pairs = zip(probe.params[i], probe.params[j], strict=True)
        return all(torch.equal(a, b) for a, b in pairs)

    assert all(same(i, i + 1) for i in bad)  # nothing moved at a skipped step
    assert not same(2, 3)
    lrs = [g[0] for g in learn.recorder.group_lrs]
    assert lrs == [one_cycle(i / (2 * n), 1e-2)[0] for i in range(2 * n)]


# ---- precision="auto" -------------------------------------------------------------------------
@pytest.fixture
def cpu_flags(monkeypatch):
    """Stub the CPU flags hardware reads; the auto choice is announced afresh per test."""
    monkeypatch.setattr(mixed_precision, "_announced", set())

    def stub(flags: str) -> None:
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags.split()))

    return stub


def test_auto_picks_bf16_and_channels_last_where_native_and_says_so_once(cpu_flags, capsys):
    """The choice is printed when the first fit starts (not when the learner is made: one
    made for inference prints nothing), once per process."""
    cpu_flags("avx2 avx512f avx512_bf16")
    learn = make_learner(precision="auto")
    assert learn.precision == "bf16" and learn.channels_last
    assert learn.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    other = make_learner(precision="auto")
    learn.get_preds()
    assert capsys.readouterr().err == ""
    learn.fit(1)
    other.fit(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "fastcore_ext: precision auto -> bf16 autocast + channels-last (avx512_bf16; a "
        "model trained from scratch runs its first epoch in fp32); learn.to_fp32() opts out"
    ]
    assert learn.mixed_precision.fp32_epochs == mixed_precision.AUTO_FP32_EPOCHS == 1
    learn.to_fp32()  # opts out of both
    assert learn.precision == "fp32" and not learn.channels_last
    assert learn.model[0].weight.is_contiguous()


def test_auto_picks_fp32_without_native_bf16(cpu_flags, capsys):
    cpu_flags("avx2 fma")
    learn = make_learner(precision="auto")
    assert learn.precision == "fp32" and not learn.channels_last
    assert capsys.readouterr().err == ""
    learn.lr_find(num_it=4)  # a sweep trains too: it says the choice
    assert (
        capsys.readouterr().err
        == "fastcore_ext: precision auto -> fp32 (no native bfloat16 on cpu)\n"
    )


def test_bf16_asked_where_it_is_not_native_warns_that_it_is_emulated(cpu_flags, recwarn):
    """to_bf16 / precision='bf16' on a CPU without AVX512-BF16 or AMX-BF16 (10-29x slower
    than float32 on an AVX2-only Zen 3) says so; where bf16 is native, nothing is said."""
    cpu_flags("avx2 fma")
    with pytest.warns(
        UserWarning,
        match=r"bfloat16 is not native on data.device \(cpu\): "
        r"this CPU has neither of amx_bf16, avx512_bf16, so torch emulates it",
    ):
        learn = make_learner().to_bf16()
    assert learn.precision == "bf16"
    with pytest.warns(UserWarning, match=r"learn.to_fp32\(\) trains in float32"):
        make_learner(precision="bf16")
    cpu_flags("avx2 avx512_bf16")
    recwarn.clear()
    make_learner().to_bf16()
    make_learner(precision="auto")
    assert not [w for w in recwarn if "not native" in str(w.message)]


def test_a_precision_chosen_after_auto_is_not_announced_as_auto(cpu_flags, capsys):
    """to_fp32 (or to_bf16) after 'auto': the line describing auto's choice would be false
    ('learn.to_fp32() opts out' after the user did): the fit prints nothing."""
    cpu_flags("avx512_bf16")
    learn = make_learner(precision="auto")
    assert learn.precision_note is not None
    learn.to_fp32()
    assert learn.precision_note is None
    learn.fit(1)
    assert capsys.readouterr().err == ""


def test_precision_argument_and_the_module_default(cpu_flags, monkeypatch):
    cpu_flags("avx512_bf16")
    assert learner_mod.DEFAULT_PRECISION == "auto"
    assert make_learner(precision=None).precision == "bf16"
    monkeypatch.setattr(learner_mod, "DEFAULT_PRECISION", "fp32")  # the one-line switch
    assert make_learner(precision=None).precision == "fp32"
    learn = make_learner(precision="bf16")
    assert learn.precision == "bf16" and not learn.channels_last  # forced: layout untouched
    with pytest.raises(ValueError, match=r"precision should be one of .* got 'bf32'"):
        make_learner(precision="bf32")
    with pytest.raises(ValueError, match=r"precision='fp16' needs a CUDA device.* 'auto' \("):
        make_learner(precision="fp16")


def test_explicit_channels_last_survives_to_fp32(cpu_flags):
    cpu_flags("avx512_bf16")
    learn = make_learner(precision="auto").to_channels_last().to_fp32()
    assert learn.channels_last and learn.precision == "fp32"


def test_layout_changes_between_fits(cpu_flags):
    """The automatic bf16 + channels-last, then to_fp32 (back to NCHW), then
    to_channels_last: each fit goes on from the optimizer state of the one before."""
    cpu_flags("avx512_bf16")
    learn = make_learner(precision="auto")
    assert learn.channels_last
    learn.fit_one_cycle(1, max_lr=1e-2)
    learn.to_fp32()
    assert not learn.channels_last
    learn.fit_one_cycle(1, max_lr=1e-2)
    learn.to_channels_last()
    learn.fit(1, lr=1e-3)
    conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert learn.opt.state[conv.weight]["exp_avg"].stride() == conv.weight.stride()
    assert all(math.isfinite(v) for v in learn.recorder.train_losses)


def test_bf16_keeps_weights_optimizer_state_and_batchnorm_statistics_float32():
    learn = make_learner(precision="bf16").to_channels_last()
    learn.fit_one_cycle(1, max_lr=1e-2)
    bn = learn.model[1]
    assert bn.running_mean.dtype == bn.running_var.dtype == torch.float32
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))  # it ran
    assert all(
        t.dtype == torch.float32 for t in learn.model.state_dict().values() if t.is_floating_point()
    )
    state = learn.opt.state_dict()["state"]
    assert all(v.dtype == torch.float32 for st in state.values() for v in st.values())


class EpochDtypes(Callback):
    """The dtypes of the model output per training epoch, and of the validation passes."""

    def __init__(self):
        super().__init__()
        self.train: list[set[torch.dtype]] = []
        self.valid: set[torch.dtype] = set()

    def before_epoch(self):
        self.train.append(set())

    def after_pred(self):
        if self.learn.training:
            self.train[-1].add(self.learn.pred.dtype)
        else:
            self.valid.add(self.learn.pred.dtype)


def test_the_first_fp32_epochs_of_a_learner_run_in_float32():
    """to_bf16(fp32_epochs=2): the learner's first two epochs, counted over its fits, train
    in float32 (an lr_find before them too), later ones in bfloat16; every inference pass,
    their validation included, in bfloat16 (validate() gives the table's row)."""
    learn = make_learner().to_bf16(fp32_epochs=2)
    assert repr(learn.mixed_precision) == "MixedPrecision(bf16, fp32_epochs=2)"
    sweep = Dtypes()
    learn.add_cb(sweep)
    learn.lr_find(num_it=4, show_plot=False)
    learn.remove_cb(sweep)
    assert sweep.train == {torch.float32}
    first = EpochDtypes()
    learn.fit_one_cycle(1, 1e-2, cbs=first)
    assert first.train == [{torch.float32}] and first.valid == {torch.bfloat16}
    assert learn.validate()[0] == learn.recorder.final_record[1]  # it was float32 validation
    second = EpochDtypes()
    learn.fit_one_cycle(3, 1e-2, cbs=second)
    assert second.train == [{torch.float32}, {torch.bfloat16}, {torch.bfloat16}]
    assert not learn.mixed_precision.fp32_epoch
    xb, _ = next(iter(learn.data.valid_dl))
    with learn.autocast():
        assert learn.model(xb).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp32_epochs should be >= 0, got -1"):
        learn.to_bf16(fp32_epochs=-1)


def test_auto_bf16_starts_in_fp32_from_scratch_only(cpu_flags, monkeypatch):
    """precision 'auto' on a bf16 CPU: create_cnn's random model trains its first epoch in
    float32; with pretrained weights (stubbed here), bf16 from the first epoch."""
    cpu_flags("avx2 avx512f avx512_bf16")
    data = easy_bunch(n_train=16, n_valid=8, size=32, bs=8)
    scratch = vision.create_cnn(data, "resnet18", pretrained=False, precision="auto")
    assert scratch.mixed_precision.fp32_epochs == 1
    random_body = vision.body_and_model  # offline: random weights stand in for ImageNet's
    monkeypatch.setattr(
        vision, "body_and_model", lambda arch, _, cut: random_body(arch, False, cut)
    )
    trained = vision.create_cnn(data, "resnet18", pretrained=True, precision="auto")
    assert trained.mixed_precision.fp32_epochs == 0


def test_mixed_precision_callback_is_attached_and_removed():
    learn = make_learner()
    assert learn.mixed_precision is None and learn.scaler is None
    learn.to_bf16().to_bf16()
    assert [type(cb) for cb in learn.cbs].count(MixedPrecision) == 1
    assert learn.amp_dtype is torch.bfloat16
    learn.to_fp32()
    assert not any(isinstance(cb, MixedPrecision) for cb in learn.cbs)
    with pytest.raises(ValueError, match="dtype should be torch.bfloat16 or torch.float16"):
        MixedPrecision(torch.float32)
    with pytest.raises(TypeError, match="scaler should be a torch.amp.GradScaler"):
        MixedPrecision(torch.bfloat16, scaler=2.0)


def test_auto_choice_is_printed_by_rank_zero_only(cpu_flags, monkeypatch, capsys):
    cpu_flags("avx512_bf16")
    monkeypatch.setattr(mixed_precision, "is_main_process", lambda: False)
    assert make_learner(precision="auto").precision == "bf16"
    assert capsys.readouterr().err == ""


def narrow_model() -> torch.nn.Sequential:
    """A stride-2 3x3 conv that meets a 1x1 feature map (after a global pool), as a resnet's
    layer4 does on 16 px images: its weight taps other than the centre see only padding."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 2),
    )


def test_narrow_strided_convs_names_the_layers_and_leaves_the_model_as_it_was():
    model = narrow_model()
    model[1].eval()  # a mixed state must come back as it was
    stats = model[1].running_mean.clone()
    found = mixed_precision.narrow_strided_convs(model, torch.randn(8, 3, 8, 8))
    assert found == ["3: input 1x1, kernel 3x3, stride 2x2"]
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True, True]
    assert torch.equal(model[1].running_mean, stats)
    wide = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1))
    assert mixed_precision.narrow_strided_convs(wide, torch.randn(2, 3, 2, 2)) == []
    assert mixed_precision.narrow_strided_convs(wide, torch.randn(2, 3, 2, 1)) == [
        "0: input 2x1, kernel 3x3, stride 2x2"
    ]
    pointwise = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, stride=2))  # no tap sees padding
    assert mixed_precision.narrow_strided_convs(pointwise, torch.randn(2, 3, 1, 1)) == []


def test_the_probe_of_conv_input_sizes_is_not_seen_by_the_users_hooks():
    """A bf16 fit on the CPU probes its convolutions' input sizes with one zero item: a
    user's forward hook recorded it as a batch of the fit (fastai's sees only the fit's)."""
    learn = make_learner(model=narrow_model(), data=easy_bunch(bs=8))
    learn.to_bf16()
    shapes, outputs = [], []
    learn.model[0].register_forward_pre_hook(lambda m, args: shapes.append(args[0].shape[0]))
    learn.model[3].register_forward_hook(lambda m, args, out: outputs.append(out.shape[0]))
    with pytest.warns(UserWarning, match="trains in float32"):
        learn.fit(1, 1e-3)
    assert 1 not in shapes and 1 not in outputs and len(shapes) == len(outputs) > 0
    assert len(learn.model[0]._forward_pre_hooks) == 1  # the user's, put back
    assert len(learn.model[3]._forward_hooks) == 1


def test_bf16_fit_on_the_cpu_trains_narrow_strided_convs_right():
    """The CPU's bf16 conv left garbage / NaN in the padding-only taps' gradient (NaN weights
    in CI on a Xeon with AMX); such a fit trains in float32 instead, with a warning: without
    weight decay the padding-only taps then never move."""
    learn = make_learner(model=narrow_model(), splitter=lambda m: [m[:3], m[3:]], wd=0.0)
    learn.to_bf16()
    before = learn.model[3].weight.detach().clone()
    seen = Dtypes()
    with pytest.warns(
        UserWarning, match=r"trains in float32.*3: input 1x1, kernel 3x3, stride 2x2"
    ):
        learn.fit_one_cycle(2, max_lr=1e-2, cbs=seen)
    after = learn.model[3].weight.detach()
    assert torch.isfinite(after).all()
    outer = torch.ones(3, 3, dtype=torch.bool)
    outer[1, 1] = False
    assert torch.equal(after[:, :, outer], before[:, :, outer])
    assert not torch.equal(after[:, :, 1, 1], before[:, :, 1, 1])
    assert seen.train == {torch.float32} and seen.valid == {torch.bfloat16}
    assert not learn.mixed_precision.fp32_fit  # the next fit checks again
    probs, _ = learn.get_preds()  # outside a fit: bf16 (its forward pass is right)
    assert probs.dtype == torch.float32 and torch.isfinite(probs).all()
    assert learn.validate()[0] == learn.recorder.final_record[1]  # as the epoch's validation


def test_weight_bound_convs_of_resnet18_at_64_and_224_px():
    body = vision.create_body("resnet18", pretrained=False)
    sizes = mixed_precision.conv_input_sizes(body, torch.randn(64, 3, 64, 64))
    assert len(sizes) == 20  # every conv once, with its input's size
    names = [n for n, _ in mixed_precision.weight_bound_convs(sizes, 64)]
    assert names == [
        "6.0.conv2", "6.1.conv1", "6.1.conv2",  # layer3, 4x4 inputs: 589,824 > 2 x 262,144
        "7.0.conv1", "7.0.conv2", "7.1.conv1", "7.1.conv2",  # layer4 (4x4 then 2x2 inputs)
    ]  # fmt: skip
    sizes = mixed_precision.conv_input_sizes(body, torch.randn(64, 3, 224, 224))
    assert mixed_precision.weight_bound_convs(sizes, 64) == []  # layer4 at 7x7: 1.5x
    assert mixed_precision.weight_bound_convs(sizes, 4) != []  # a tiny batch: weight-bound


def test_fp32_convs_run_in_float32_nchw_inside_bf16_autocast_and_come_off():
    model = weight_bound_model().to(memory_format=torch.channels_last)
    conv = model[4]
    seen = []
    conv.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    hooks = mixed_precision.Fp32Convs([conv])
    assert conv.weight.is_contiguous()  # NCHW again
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        assert torch.is_autocast_enabled("cpu")  # back on after the conv
    assert out.dtype == torch.bfloat16  # the linear layer after it: bf16 again
    ((inp, conv_out),) = seen
    assert inp.dtype == conv_out.dtype == torch.float32 and inp.is_contiguous()
    out.float().sum().backward()  # gradients flow through the cast
    assert conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a failing forward: autocast restored
        with pytest.raises(RuntimeError):
            model[4](torch.randn(4, 5, 2, 2))
        assert torch.is_autocast_enabled("cpu")
    hooks.remove()
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert seen[0][1].dtype == torch.bfloat16


@pytest.mark.parametrize("fp32_convs", [True, False])
def test_bf16_fit_runs_weight_bound_convs_in_float32_for_the_fit(fp32_convs):
    learn = make_learner(model=weight_bound_model(), splitter=lambda m: [m[:4], m[4:]])
    learn.to_bf16().to_channels_last()
    mp = learn.mixed_precision
    mp.fp32_convs = fp32_convs
    dtypes = set()  # (training, dtype) of the conv's outputs (the fit's probe: eval, float32)
    learn.model[4].register_forward_hook(lambda m, args, out: dtypes.add((m.training, out.dtype)))
    learn.fit_one_cycle(2, max_lr=1e-2)
    assert mp.weight_bound == (["4"] if fp32_convs else [])
    assert {d for training, d in dtypes if training} == (
        {torch.float32} if fp32_convs else {torch.bfloat16}
    )
    assert learn.recorder.raw_losses[-1] < learn.recorder.raw_losses[0]
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert len(learn.model[4]._forward_pre_hooks) == 0  # the hooks end with the fit
    dtypes.clear()
    learn.get_preds()
    assert dtypes == {(False, torch.bfloat16)}
    assert learn.validate()[0] == learn.recorder.final_record[1]


def test_fp32_convs_default_follows_amx(cpu_flags):
    cpu_flags("avx512_bf16 amx_bf16")
    assert MixedPrecision(torch.bfloat16).fp32_convs is True
    cpu_flags("avx512_bf16")
    assert MixedPrecision(torch.bfloat16).fp32_convs is False
    with pytest.raises(TypeError, match="fp32_convs should be True, False or None, got 'yes'"):
        MixedPrecision(torch.bfloat16, fp32_convs="yes")
