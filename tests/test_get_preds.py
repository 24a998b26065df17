"""Learner.get_preds and validate: one inference pass, checked against a manual pass over the same
data."""

from __future__ import annotations

import copy

import pytest
import torch
from fakes import easy_bunch, make_learner, tiny_model
from torch import nn
from torch.nn import functional as F

from fastcore_ext import plots
from fastcore_ext.augment import get_transforms
from fastcore_ext.callback import Callback
from fastcore_ext.data import DatasetType, ImageDataBunch, demo_dataset
from fastcore_ext.metrics import accuracy, error_rate

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")


def valid_xy(learn) -> tuple[torch.Tensor, torch.Tensor]:
    dl = learn.data.valid_dl
    return dl.x, dl.y


def manual_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model on x in eval mode, in one call (the oracle of every test here)."""
    model.eval()
    with torch.no_grad():
        return model(x).float()


class ShuffledDL:
    """A loader that shuffles every pass and tells its order through batch_indices(), like
    fastcore_ext.data's training DeviceDataLoader."""

    shuffle = True
    drop_last = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int) -> None:
        self.x, self.y, self.bs, self.epoch = x, y, bs, 0

    def batch_indices(self) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(1000 + self.epoch)
        return list(torch.randperm(len(self.x), generator=g).split(self.bs))

    def __iter__(self):
        batches = self.batch_indices()
        self.epoch += 1
        for idx in batches:
            yield self.x[idx], self.y[idx]


def test_valid_matches_a_manual_pass_in_valid_order(device):
    learn = make_learner(data=easy_bunch(device=device))
    learn.fit(1, lr=1e-2)
    x, y = valid_xy(learn)
    probs, targs = learn.get_preds()
    expected = torch.softmax(manual_logits(learn.model, x), dim=-1).cpu()
    assert probs.dtype == torch.float32 and probs.device.type == "cpu"
    assert probs.shape == (len(x), 2)
    torch.testing.assert_close(probs, expected)
    assert targs.dtype == torch.int64 and targs.device.type == "cpu"
    assert torch.equal(targs, y.cpu())


def test_with_loss_equals_cross_entropy_per_item(device):
    learn = make_learner(data=easy_bunch(device=device))
    learn.fit(1, lr=1e-2)
    x, y = valid_xy(learn)
    probs, targs, losses = learn.get_preds(with_loss=True)
    expected = F.cross_entropy(manual_logits(learn.model, x), y, reduction="none").cpu()
    assert losses.shape == (len(x),) and losses.dtype == torch.float32
    torch.testing.assert_close(losses, expected)
    # the mean of the per-item losses is the validation loss the recorder printed
    assert losses.mean().item() == pytest.approx(learn.recorder.valid_losses[-1], rel=1e-5)


def test_with_input_comes_first_and_equals_the_batches():
    learn = make_learner()
    x, y = valid_xy(learn)
    inputs, probs, targs, losses = learn.get_preds(with_input=True, with_loss=True)
    assert torch.equal(inputs, x)
    assert torch.equal(targs, y)
    assert probs.shape == (len(x), 2) and losses.shape == (len(x),)
    inputs2, probs2, targs2 = learn.get_preds(with_input=True)
    assert torch.equal(inputs2, x) and torch.equal(probs2, probs)


def test_no_graph_is_kept_and_modes_are_restored():
    learn = make_learner()
    learn.model.train()
    learn.model[1].eval()  # a mixed state: the BN layer in eval, the rest training
    modes = [m.training for m in learn.model.modules()]
    probs, targs, losses = learn.get_preds(with_loss=True)
    for t in (probs, targs, losses):
        assert not t.requires_grad and t.grad_fn is None
    assert all(p.grad is None for p in learn.model.parameters())
    assert [m.training for m in learn.model.modules()] == modes


def test_modes_are_restored_when_the_pass_fails():
    learn = make_learner()
    learn.model.train()

    def broken():
        yield torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.int64)
        raise RuntimeError("loader died")

    with pytest.raises(RuntimeError, match="loader died"):
        learn.get_preds(dl=broken())
    assert all(m.training for m in learn.model.modules())


def test_eval_mode_is_used():
    """Dropout and BatchNorm make a train-mode pass differ: the result must be the eval one."""
    learn = make_learner()
    learn.fit(1, lr=1e-2)
    x, _ = valid_xy(learn)
    learn.model.train()
    probs, _ = learn.get_preds()
    torch.testing.assert_close(probs, torch.softmax(manual_logits(learn.model, x), dim=-1))


def test_act_and_loss_functions():
    learn = make_learner()
    x, y = valid_xy(learn)
    logits = manual_logits(learn.model, x)
    raw, _ = learn.get_preds(act=lambda t: t)
    torch.testing.assert_close(raw, logits)
    sig, _ = learn.get_preds(act=torch.sigmoid)
    torch.testing.assert_close(sig, torch.sigmoid(logits))

    weight = torch.tensor([0.3, 1.7])
    learn.loss_func = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    _, _, losses = learn.get_preds(with_loss=True)
    expected = F.cross_entropy(logits, y, weight=weight, label_smoothing=0.1, reduction="none")
    torch.testing.assert_close(losses, expected)
    assert learn.loss_func.reduction == "mean"  # the learner's own loss is untouched

    learn.loss_func = F.cross_entropy
    _, _, losses = learn.get_preds(with_loss=True)
    torch.testing.assert_close(losses, F.cross_entropy(logits, y, reduction="none"))

    learn.loss_func = lambda out, targ: F.cross_entropy(out, targ)
    with pytest.raises(ValueError, match="loss_func"):
        learn.get_preds(with_loss=True)
    probs, _ = learn.get_preds()  # without losses any loss function is fine
    assert probs.shape == (len(x), 2)


def test_dl_overrides_and_reorder():
    learn = make_learner()
    x, y = valid_xy(learn)
    dl = ShuffledDL(x, y, bs=7)
    order = torch.cat(dl.batch_indices())
    assert not torch.equal(order, torch.arange(len(x)))
    expected = torch.softmax(manual_logits(learn.model, x), dim=-1)

    probs, targs = learn.get_preds(dl=dl)  # reorder=True: back in data set order
    torch.testing.assert_close(probs, expected)
    assert torch.equal(targs, y)

    order = torch.cat(dl.batch_indices())  # the pass above advanced the loader's epoch
    probs, targs = learn.get_preds(dl=dl, reorder=False)
    torch.testing.assert_close(probs, expected[order])
    assert torch.equal(targs, y[order])

    batches = [(x[:5], y[:5]), (x[5:9], y[5:9])]
    probs, targs = learn.get_preds(dl=batches)
    torch.testing.assert_close(probs, expected[:9])
    assert torch.equal(targs, y[:9])


def test_train_without_an_ordered_copy_is_refused():
    """tests/fakes.FakeDL has no shuffle/drop_last attributes: say so and point to dl=."""
    learn = make_learner()
    with pytest.raises(ValueError, match="dl="):
        learn.get_preds(ds_type="train")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"ds_type": "test"}, ValueError, "ds_type"),
        ({"ds_type": 1}, ValueError, "ds_type"),
        ({"with_loss": 1}, TypeError, "with_loss"),
        ({"with_input": "yes"}, TypeError, "with_input"),
        ({"reorder": None}, TypeError, "reorder"),
        ({"act": "softmax"}, TypeError, "act"),
        ({"dl": 3}, TypeError, "dl"),
        ({"dl": []}, ValueError, "no batch"),
        ({"dl": [torch.zeros(2, 3, 8, 8)]}, TypeError, "pairs"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    learn = make_learner()
    with pytest.raises(error, match=match):
        learn.get_preds(**kwargs)


def test_model_output_of_the_wrong_shape():
    learn = make_learner(model=nn.Sequential(tiny_model(), nn.Unflatten(1, (2, 1))), splitter=None)
    with pytest.raises(ValueError, match=r"Tensor\[B, c\]"):
        learn.get_preds()


def test_train_set_in_order_with_the_training_transforms(tmp_path):
    """ds_type='train' on a real bunch: every training item in train_ds order (no shuffle, no
    drop_last) through the training augmentation, the same twice, the loader's epoch kept."""
    root = demo_dataset(tmp_path / "demo", n_per_class=4, size=24)
    data = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=16, bs=5, num_workers=0, seed=3
    )
    n = len(data.train_ds)
    assert n % 5 != 0  # so drop_last would lose items
    learn = make_learner(data=data, model=_small_cnn(data.c), splitter=None, metrics=error_rate)
    epoch = data.train_dl.epoch
    probs, targs = learn.get_preds(ds_type="train")
    assert data.train_dl.epoch == epoch and data.train_dl.shuffle
    assert probs.shape == (n, data.c)
    assert targs.tolist() == data.train_ds.labels
    again, _ = learn.get_preds(ds_type="train")
    assert torch.equal(again, probs)

    # the same items without augmentation (the validation transform) give other outputs
    plain = [(data.valid_dl.augment(x, None), y) for x, y in _ordered_uint8(data.train_dl)]
    unaugmented, targs2 = learn.get_preds(dl=plain)
    assert torch.equal(targs2, targs)
    assert not torch.allclose(unaugmented, probs)
    # fastai v1's DatasetType.Fix: that un-augmented pass, in order
    fixed, targs3 = learn.get_preds(ds_type=DatasetType.Fix)
    assert torch.equal(fixed, unaugmented) and torch.equal(targs3, targs)
    loss, err = learn.validate(DatasetType.Fix)
    assert err == pytest.approx(float((fixed.argmax(1) != targs).float().mean()))
    assert data.train_dl.epoch == epoch


def _ordered_uint8(train_dl):
    ordered = copy.copy(train_dl)
    ordered.shuffle = ordered.drop_last = ordered.training_pass = False
    return list(ordered.uint8_batches())


def _small_cnn(c: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, c),
    )


# ---- the context of every inference pass -------------------------------------------------------
class Probe(nn.Module):
    """The tiny model, noting for each call: (training, inference mode, grad mode, autocast
    dtype or None, input channels-last)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_model()
        self.calls: list[tuple[bool, bool, bool, torch.dtype | None, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        amp = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        self.calls.append(
            (
                self.training,
                torch.is_inference_mode_enabled(),
                torch.is_grad_enabled(),
                amp,
                nhwc,
            )
        )
        return self.net(x)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_validation_get_preds_and_predict_run_in_inference_mode_precision_and_layout(precision):
    model = Probe()
    learn = make_learner(model=model, splitter=lambda m: [m.net[:3], m.net[3:]])
    if precision == "bf16":
        learn.to_bf16().to_channels_last()
        learn.mixed_precision.fp32_convs = False  # its one-item probe pass (AMX) is not counted
    learn.conv_weight_grad.enabled = False  # nor ConvWeightGrad's
    amp = torch.bfloat16 if precision == "bf16" else None
    nhwc = precision == "bf16"
    n_train, n_valid = len(learn.data.train_dl), len(learn.data.valid_dl)
    learn.fit(1)
    assert model.calls[:n_train] == [(True, False, True, amp, nhwc)] * n_train
    assert model.calls[n_train:] == [(False, True, False, amp, nhwc)] * n_valid
    model.calls.clear()
    model.train()
    probs, _ = learn.get_preds()
    learn.data.preprocess = lambda item: item  # the bunch's items are model inputs already
    _, _, one = learn.predict(learn.data.valid_dl.x[:1])
    assert model.calls == [(False, True, False, amp, nhwc)] * (n_valid + 1)
    assert model.training and model.net[1].training  # modes came back
    for t in (probs, one):  # normal tensors, usable with autograd afterwards
        assert not t.is_inference() and t.dtype == torch.float32
        (t * torch.ones_like(t, requires_grad=True)).sum().backward()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_validate_equals_the_epoch_table_and_a_manual_pass(precision):
    model = Probe()
    learn = make_learner(
        model=model, splitter=lambda m: [m.net[:3], m.net[3:]], metrics=[error_rate, accuracy]
    )
    if precision == "bf16":
        learn.to_bf16().to_channels_last()
    learn.fit(1)
    rec = learn.recorder
    table = [rec.valid_losses[-1], *rec.metrics[-1]]
    model.calls.clear()
    model.train()
    got = learn.validate()
    assert got == table  # the same computation as the epoch's validation phase
    amp = torch.bfloat16 if precision == "bf16" else None
    n_valid = len(learn.data.valid_dl)
    assert model.calls == [(False, True, False, amp, precision == "bf16")] * n_valid
    assert model.training  # modes came back
    assert (rec.valid_losses[-1], rec.metrics[-1]) == (table[0], table[1:])  # recorder untouched
    if precision == "fp32":  # against a pass by hand
        x, y = valid_xy(learn)
        logits = manual_logits(model.net, x)
        want_loss = F.cross_entropy(logits, y).item()
        want_err = (logits.argmax(1) != y).float().mean().item()
        assert got[0] == pytest.approx(want_loss, rel=1e-5)
        assert got[1] == pytest.approx(want_err) and got[2] == pytest.approx(1 - want_err)
    # any dl of (x, y): the loss is averaged over items, not batches
    x, y = valid_xy(learn)
    assert learn.validate(dl=[(x[:10], y[:10]), (x[10:], y[10:])])[0] == pytest.approx(got[0])


def test_validate_bad_arguments():
    learn = make_learner()
    with pytest.raises(ValueError, match="ds_type 'test': FakeBunch keeps no test set"):
        learn.validate("test")
    with pytest.raises(ValueError, match="dl yielded no batch"):
        learn.validate(dl=[])
    with pytest.raises(TypeError, match=r"dl should yield \(x, y\) pairs"):
        learn.validate(dl=[1])
    with pytest.raises(TypeError, match="dl should be an iterable"):
        learn.validate(dl=3)


def test_unlabelled_batches_give_no_targets():
    """get_preds(dl=[(x, None), ...]) for images without labels (fastai v2's test_dl gives
    None targets): it raised AttributeError on None.shape."""
    learn = make_learner()
    x, y = valid_xy(learn)
    labelled = learn.get_preds(dl=[(x[:3], y[:3]), (x[3:], y[3:])])
    probs, targs = learn.get_preds(dl=[(x[:3], None), (x[3:], None)])
    assert targs is None and torch.equal(probs, labelled[0])
    inputs, probs, targs = learn.get_preds(dl=[(x, None)], with_input=True)
    assert targs is None and torch.equal(inputs, x.cpu())
    with pytest.raises(ValueError, match="with_loss needs targets"):
        learn.get_preds(dl=[(x, None)], with_loss=True)
    with pytest.raises(ValueError, match="batches with targets and batches with y None"):
        learn.get_preds(dl=[(x[:3], y[:3]), (x[3:], None)])
    with pytest.raises(RuntimeError) as raised:  # torch's error, with what x was
        learn.get_preds(dl=[(x.to(torch.uint8), y)])
    assert raised.value.__notes__ == [
        "dl, batch 0: x has dtype torch.uint8; a model of float layers takes float images "
        "(normalized: learn.data.preprocess(files) makes them; x.float() / 255 scales uint8 "
        "pixels)"
    ]


def test_the_v1_test_set_of_data_without_one_says_what_to_do():
    from fastcore_ext.data import DatasetType

    learn = make_learner()
    with pytest.raises(
        ValueError, match=r"ds_type 'test': FakeBunch keeps no test set; pass get_preds\(dl="
    ):
        learn.get_preds(DatasetType.Test)


def _bad_batches(x: torch.Tensor, y: torch.Tensor) -> list:
    """(batch, error, message) of what users pass to get_preds / validate(dl=...): the
    second batch is the bad one, so the message must name batch 1."""
    return [
        ((x.double(), y), TypeError, r"dl, batch 1: x should be torch.float32 .* got dtype "
         r"torch.float64: cast it with x.float\(\)"),
        ((x.half(), y), TypeError, r"x should be torch.float32 .*got dtype torch.float16"),
        ((x.numpy(), y), TypeError, r"x should be a torch.Tensor .*torch.from_numpy\(x\)"),
        ((x[:, :1], y), ValueError, r"x should be images \[B, 3, H, W\] .*got shape "
         r"\(8, 1, 8, 8\) \(grayscale\?"),
        ((x[0], y[:1]), ValueError, r"got shape \(3, 8, 8\) \(one image\? x\[None\]"),
        ((x.permute(0, 2, 3, 1), y), ValueError, r"got shape \(8, 8, 8, 3\) \(channels last\?"),
        ((x, y[:5]), ValueError, r"y should hold one target per item \(8\), got 5"),
        ((x, y.float()), TypeError, "y should be int64 class indices, got dtype torch.float32"),
        ((x, y.int()), TypeError, r"got dtype torch.int32: cast it with y.long\(\)"),
        ((x, F.one_hot(y, 2)), ValueError, r"y should be class indices \[B\], got shape "
         r"\(8, 2\) \(one-hot\? y.argmax\(1\)"),
        ((x, y + 2), ValueError, r"y should hold class indices in \[0, 2\) .*got values from 2 "
         r"to 3"),
        ((x, y - 1), ValueError, r"in \[0, 2\) .*got values from -1 to 0"),
        ((x, y.tolist()), TypeError, r"y should be a torch.Tensor of int64 class indices"),
    ]  # fmt: skip


def test_get_preds_and_validate_check_each_batch_of_dl():
    """float64 x raised torch's "expected scalar type Double", a numpy x "'numpy.ndarray' has no
    attribute 'dim'", 1-channel and 3-D x conv2d's errors, a y of the wrong length blamed the
    model's output shape, y out of range or float an IndexError / RuntimeError from the loss."""
    learn = make_learner()
    x, y = valid_xy(learn)
    x, y = x[:8], y[:8].clone()
    y[:2] = torch.tensor([0, 1])  # both classes, so ranges are from 0 to 1
    for batch, error, match in _bad_batches(x, y):
        with pytest.raises(error, match=match):
            learn.validate(dl=[(x, y), batch])
        with pytest.raises(error, match=match):
            learn.get_preds(dl=[(x, y), batch])
    probs, _ = learn.get_preds(dl=[(x, y)])  # a good batch still passes
    assert probs.shape == (8, 2)


def test_validate_needs_targets_and_says_so():
    """validate(dl=[(x, None)]) failed inside cross_entropy ("'target' must be Tensor, not
    NoneType")."""
    learn = make_learner()
    x, _ = valid_xy(learn)
    with pytest.raises(ValueError, match=r"dl, batch 0: y is None, but validate computes the loss"):
        learn.validate(dl=[(x, None)])


def test_batches_after_to_fp32_and_on_another_device_are_named():
    learn = make_learner(precision="bf16")
    x, y = valid_xy(learn)
    learn.get_preds(dl=[(x.bfloat16(), y)])  # the autocast dtype is the model's too
    learn.to_fp32()
    with pytest.raises(TypeError, match="got dtype torch.bfloat16: cast it with x.float()"):
        learn.get_preds(dl=[(x.bfloat16(), y)])
    with pytest.raises(ValueError, match=r"x should be on the model's device cpu, got meta"):
        learn.get_preds(dl=[(x.to("meta"), y)])


def test_the_data_loaders_batches_pass_the_checks(device):
    """The learner's own loaders (float32 on its device, int64 targets) pass, on every device:
    on a GPU no range check waits for the device."""
    learn = make_learner(data=easy_bunch(device=device))
    assert learn.get_preds()[0].shape == (40, 2)
    assert len(learn.validate()) == 1


# ---- fastai v2's names: ds_idx, with_decoded ---------------------------------------------------
def test_ds_idx_names_the_data_set_as_fastai_v2():
    """fastai v2's get_preds(ds_idx=0|1) / validate(ds_idx=): 0 the training set, 1 the
    validation set; v1's ds_type still works, and both at once are refused."""
    learn = make_learner(metrics=accuracy)
    probs, targs = learn.get_preds()
    probs1, targs1 = learn.get_preds(ds_idx=1)
    assert torch.equal(probs1, probs) and torch.equal(targs1, targs)
    assert learn.validate(ds_idx=1) == learn.validate()
    for call in (learn.get_preds, learn.validate):
        with pytest.raises(ValueError) as train:  # the fake loaders cannot be read in order
            call(ds_type="train")
        with pytest.raises(ValueError) as idx0:
            call(ds_idx=0)
        assert str(idx0.value) == str(train.value)
        with pytest.raises(TypeError, match="ds_type .* or ds_idx .*not both"):
            call(ds_type="valid", ds_idx=1)
        for bad in (2, -1, True, "1"):
            with pytest.raises(ValueError, match=r"ds_idx should be 0 \(train\) or 1 \(valid\)"):
                call(ds_idx=bad)
    with pytest.raises(ValueError, match="ds_idx=0 or 1"):
        learn.get_preds(0)  # positional: v1's ds_type here, and the message says so


def test_with_decoded_in_fastai_v2s_order():
    """fastai v2: (inputs, preds, targs, decoded, losses) with each flag; decoded the
    argmax of the predictions (CrossEntropyLossFlat.decodes)."""
    learn = make_learner()
    x, y = valid_xy(learn)
    probs, targs, decoded = learn.get_preds(with_decoded=True)
    expected = manual_logits(learn.model, x).argmax(dim=1)
    assert decoded.dtype == torch.int64 and torch.equal(decoded, expected)
    assert torch.equal(targs, y)
    inputs, probs2, targs2, decoded2, losses = learn.get_preds(
        with_input=True, with_decoded=True, with_loss=True
    )
    assert torch.equal(inputs, x) and torch.equal(probs2, probs) and torch.equal(targs2, y)
    assert torch.equal(decoded2, expected)
    assert losses.shape == (len(y),) and losses.dtype == torch.float32
    with pytest.raises(TypeError, match="with_decoded"):
        learn.get_preds(with_decoded=1)


def test_the_users_callbacks_take_part_in_validate_and_get_preds():
    """fastai's validate and get_preds run the callbacks: one that changes the predictions in
    after_pred (a model returning a tuple) or the batch in before_batch gives validate the
    table's numbers; this library's own callbacks get no event there."""

    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            feats = self.body(x)
            return self.head(feats), feats

    class First(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[str] = []

        def before_validate(self) -> None:
            self.events.append("before_validate")
            assert self.learn.dl is not None  # the pass's loader, as fastai's learn.dl

        def after_pred(self) -> None:
            self.learn.pred = self.pred[0]

        def after_loss(self) -> None:
            self.events.append("after_loss")

        def after_validate(self) -> None:
            self.events.append("after_validate")

    torch.manual_seed(0)
    first = First()
    learn = make_learner(model=Pair(), splitter=None, cbs=first, metrics=error_rate)
    learn.fit(1)
    table = [learn.recorder.valid_losses[-1], learn.recorder.metrics[-1][0]]
    first.events.clear()
    assert learn.validate() == pytest.approx(table, rel=1e-6)
    assert first.events[0] == "before_validate" and first.events[-1] == "after_validate"
    assert "after_loss" in first.events and learn.xb is None  # the last batch forgotten
    probs, targets = learn.get_preds()
    assert probs.shape == (len(targets), 2)
    assert len(learn.recorder.valid_losses) == 1  # the recorder saw none of these passes

    class Halve(Callback):  # before_batch changes the batch
        def before_batch(self) -> None:
            self.learn.xb = (self.xb[0] * 0.5,)

    learn.add_cb(Halve())
    learn.fit(1)
    assert learn.validate()[0] == pytest.approx(learn.recorder.valid_losses[-1], rel=1e-6)


def test_predict_runs_the_users_after_pred_on_a_real_bunch(tmp_path):
    """predict (and show_results) give the user's callbacks the pass's events too: a model
    returning (logits, features) with an after_pred keeping the logits predicts (it failed
    on the tuple)."""
    root = demo_dataset(tmp_path / "demo", n_per_class=3, size=24)
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, seed=3)

    class Pair(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(4, c)

        def forward(self, x):
            feats = self.body(x)
            return self.head(feats), feats

    class First(Callback):
        def after_pred(self) -> None:
            self.learn.pred = self.pred[0]

    torch.manual_seed(0)
    learn = make_learner(data=data, model=Pair(data.c), splitter=None, cbs=First())
    category, idx, probs = learn.predict(data.valid_ds.items[0])
    assert probs.shape == (data.c,) and str(category) == data.classes[int(idx)]
    plots.set_plot_dir(tmp_path / "plots")
    learn.show_results(max_n=2)
