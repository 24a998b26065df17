"""fastai v2's DataLoaders(train_dl, valid_dl) of PyTorch DataLoaders as a learner's data
(fastcore_ext.data.dataloaders): a fit, validate and get_preds on them, what they refuse,
and their split between 2 processes (gloo on 127.0.0.1)."""

from __future__ import annotations

import copy
import io
import traceback
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fakes import free_port, run_ranks, torchrun_env
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from fastcore_ext.data import DataLoaders, TorchLoader
from fastcore_ext.interpret import ClassificationInterpretation
from fastcore_ext.learner import Learner
from fastcore_ext.metrics import accuracy


def _dataset(n: int, seed: int) -> TensorDataset:
    """4 classes of 3 x 8 x 8 float images whose mean level tells the class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.3 + y.view(-1, 1, 1, 1).float()
    return TensorDataset(x, y)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )


def _dls(n_train: int = 96, n_valid: int = 37) -> DataLoaders:
    return DataLoaders(
        DataLoader(_dataset(n_train, 0), batch_size=16, shuffle=True),
        DataLoader(_dataset(n_valid, 1), batch_size=10),
        device="cpu",
    )


def _learner(dls: DataLoaders, path: Path) -> Learner:
    learn = Learner(
        dls, _model(), loss_func=nn.CrossEntropyLoss(), metrics=accuracy, path=path,
        precision="fp32",
    )  # fmt: skip
    learn.progress.stream = io.StringIO()
    return learn


def test_a_fit_on_torch_dataloaders_learns_and_validates_exactly(tmp_path):
    dls = _dls()
    learn = _learner(dls, tmp_path)
    learn.fit_one_cycle(6, 3e-2)
    loss, acc = learn.validate()
    assert [loss, acc] == pytest.approx(learn.recorder.values[-1][1:], rel=1e-6)
    x, y = dls.valid_ds.tensors
    learn.model.eval()
    with torch.no_grad():
        logits = learn.model(x)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert acc > 0.4 and loss < 1.0  # chance: 0.25 and ln 4 = 1.39
    probs, targets = learn.get_preds()
    assert torch.equal(targets, y) and probs.shape == (37, 4)
    assert learn.lr_find(num_it=20, show_plot=False)._fields == ("valley",)  # fastai v2's


def test_the_dataloaders_api(tmp_path):
    dls = _dls()
    assert dls.train is dls[0] is dls.train_dl and dls.valid is dls[1] is dls.valid_dl
    assert len(dls.train_dl) == 6 and len(dls.valid_dl) == 4 and dls.train_dl.bs == 16
    assert dls.c is None and dls.classes is None and dls.path == Path(".")
    x, y = dls.one_batch()
    assert x.shape == (16, 3, 8, 8) and y.shape == (16,) and x.device.type == "cpu"
    assert "train 6 batches, valid 4 batches" in repr(dls)

    class Named(TensorDataset):
        classes = ("a", "b", "c", "d")

    named = DataLoaders(DataLoader(Named(*_dataset(8, 0).tensors), batch_size=4), [], path=tmp_path)
    assert named.c == 4 and named.vocab == ["a", "b", "c", "d"] and named.path == tmp_path
    assert named.path.ls() == [] and dls.path.ls(n_max=0) == []  # fastai's ls(), as a bunch's


def test_the_loaders_are_the_users_own_for_what_the_wrapper_lacks():
    """dls.valid.batch_size, .sampler, .num_workers, .collate_fn raised AttributeError on the
    wrapper (fastai's dls.valid is the user's loader)."""
    valid = DataLoader(_dataset(37, 1), batch_size=10, num_workers=0)
    dls = DataLoaders(DataLoader(_dataset(16, 0), batch_size=4), valid, device="cpu")
    assert dls.valid.batch_size == 10 and dls.valid.sampler is valid.sampler
    assert dls.valid.num_workers == 0 and dls.valid.collate_fn is valid.collate_fn
    assert dls.valid.drop_last is False and dls.valid.dataset is valid.dataset
    with pytest.raises(AttributeError, match="TorchLoader .of a DataLoader. has no attribute 'x'"):
        _ = dls.valid.x
    assert copy.copy(dls.valid).batch_size == 10


def test_a_shuffling_validation_loader_gives_predictions_in_data_set_order(tmp_path):
    """A user's validation DataLoader with shuffle=True: get_preds came in a new random order
    every call, so the interpretation's rows (and plot_top_losses' images) were other items'."""
    valid_ds = _dataset(37, 1)
    dls = DataLoaders(
        DataLoader(_dataset(96, 0), batch_size=16, shuffle=True),
        DataLoader(valid_ds, batch_size=10, shuffle=True),
        device="cpu",
    )
    learn = _learner(dls, tmp_path)
    learn.fit(1, 1e-2)
    probs, targets = learn.get_preds()
    assert torch.equal(targets, valid_ds.tensors[1])
    learn.model.eval()
    with torch.no_grad():
        expected = torch.softmax(learn.model(valid_ds.tensors[0]), dim=1)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)
    interp = ClassificationInterpretation.from_learner(learn)
    assert torch.equal(interp.targets, valid_ds.tensors[1])


class _TwoOutputs(nn.Module):
    """Logits and features, as a tuple or as a dict."""

    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        self.body, self.head, self.as_dict = _model()[:4], nn.Linear(8, 4), as_dict

    def forward(self, x):
        f = self.body(x)
        return {"logits": self.head(f), "feat": f} if self.as_dict else (self.head(f), f)


@pytest.mark.parametrize("as_dict", [False, True])
def test_a_model_returning_a_tuple_or_dict_validates_with_the_users_loss_and_metric(
    tmp_path, as_dict
):
    """fastai passes a model's tuple / dict of outputs to the loss and the metrics: the fit's
    validation raised "'tuple' object has no attribute 'detach'", validate and get_preds
    "expected Tensor as element 0"."""
    key = "logits" if as_dict else 0
    learn = Learner(
        _dls(), _TwoOutputs(as_dict), loss_func=lambda out, y: F.cross_entropy(out[key], y),
        metrics=lambda out, y: (out[key].argmax(1) == y).float().mean(), path=tmp_path,
        precision="fp32",
    )  # fmt: skip
    learn.progress.stream = io.StringIO()
    learn.fit(2, 3e-2)
    loss, acc = learn.validate()
    assert [loss, acc] == pytest.approx(learn.recorder.values[-1][1:], rel=1e-6)
    x, y = learn.dls.valid_ds.tensors
    learn.model.eval()
    with torch.no_grad():
        out = learn.model(x)
    assert loss == pytest.approx(F.cross_entropy(out[key], y).item(), rel=1e-5)
    assert acc == pytest.approx((out[key].argmax(1) == y).float().mean().item())
    preds, targets = learn.get_preds()  # as they come, as fastai's (no activation)
    assert type(preds) is type(out) and torch.equal(targets, y)
    for k in out if as_dict else range(2):
        torch.testing.assert_close(preds[k], out[k], atol=1e-6, rtol=0)


def test_an_opt_func_partial_with_an_lr_sets_the_learners_lr(tmp_path):
    """fastai's create_opt takes opt_func.keywords['lr'] as learn.lr: fit(1) ran at 1e-3."""
    from functools import partial

    from fastcore_ext.optim import SGD

    for opt_func in (partial(SGD, lr=0.05), partial(torch.optim.SGD, lr=0.05)):
        learn = Learner(_dls(), _model(), opt_func=opt_func, path=tmp_path, precision="fp32")
        learn.progress.stream = io.StringIO()
        assert learn.lr == 0.05
        learn.fit(1)
        assert {h["lr"] for h in learn.opt.hypers} == {0.05}
    learn = Learner(_dls(), _model(), opt_func=partial(SGD, lr=0.05), lr=0.01, path=tmp_path)
    assert learn.lr == 0.01  # the Learner's own wins


def test_integer_inputs_reach_a_model_that_casts_them(tmp_path):
    """uint8 images (the model scales them) or int64 ids (an embedding) were refused by
    validate ("x should be float images"), which fastai runs; a float model fed ints gets
    torch's error with a note saying what x was."""
    u8 = TensorDataset((torch.rand(40, 3, 8, 8) * 255).to(torch.uint8), torch.randint(0, 4, (40,)))
    dls = DataLoaders(DataLoader(u8, batch_size=8), DataLoader(u8, batch_size=8), device="cpu")

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _model()

        def forward(self, x):
            return self.net(x.float() / 255)

    learn = _learner(dls, tmp_path)
    learn.model = Scaled()
    learn.fit(1, 1e-2)
    loss, _ = learn.validate()
    assert loss == pytest.approx(learn.recorder.values[-1][1], rel=1e-6)
    learn.model = _model()
    with pytest.raises(RuntimeError) as raised:
        learn.validate()
    assert raised.value.__notes__[0].startswith("data.valid_dl, batch 0: x has dtype torch.uint8")


def test_from_dsets_and_get_preds_of_the_training_set_in_order(tmp_path):
    """fastai v2's DataLoaders.from_dsets (it was missing), and get_preds(ds_idx=0) on torch
    loaders (refused, naming the internal TorchLoader): an in-order copy of the DataLoader."""
    train_ds, valid_ds = _dataset(50, 0), _dataset(37, 1)
    dls = DataLoaders.from_dsets(train_ds, valid_ds, bs=16, device="cpu", path=tmp_path)
    assert isinstance(dls.train_dl.loader.sampler, torch.utils.data.RandomSampler)
    assert dls.train_dl.loader.drop_last and len(dls.train_dl) == 3 and len(dls.valid_dl) == 3
    assert DataLoaders.from_dsets(train_ds, valid_ds, bs=16, val_bs=37).valid_dl.bs == 37
    learn = _learner(dls, tmp_path)
    learn.fit(1)
    probs, targets = learn.get_preds(ds_idx=0)
    assert torch.equal(targets, train_ds.tensors[1]) and probs.shape == (50, 4)
    with pytest.raises(TypeError, match=r"expected the training and the validation dataset, "):
        DataLoaders.from_dsets(train_ds)
    with pytest.raises(ValueError, match=r"val_bs: expected a positive int, got 0"):
        DataLoaders.from_dsets(train_ds, valid_ds, val_bs=0)
    own = DataLoaders([next(iter(dls.train_dl.loader))], dls.valid_dl.loader, device="cpu")
    learn = _learner(own, tmp_path)
    with pytest.raises(ValueError, match=r"ds_type='train' \(ds_idx=0\) reads the training "
                       r"set in order.*the training loader is list. Pass dl="):  # fmt: skip
        learn.get_preds(ds_idx=0)


def test_what_dataloaders_refuse(tmp_path):
    train = DataLoader(_dataset(16, 0), batch_size=4)
    with pytest.raises(TypeError, match=r"expected the training and the validation loader, got 1"):
        DataLoaders(train)
    with pytest.raises(TypeError, match="loader: expected a torch DataLoader .* got int"):
        DataLoaders(train, 3)
    with pytest.raises(TypeError, match="without __len__"):
        DataLoaders(train, (b for b in train))
    with pytest.raises(TypeError, match=r"path: expected a folder"):
        DataLoaders(train, train, path=3)
    with pytest.raises(TypeError, match=r"got a tuple of two loaders: wrap them as fastai's, "):
        Learner((train, train), _model())
    odd = DataLoaders(DataLoader(_dataset(16, 0).tensors[0], batch_size=4), train, device="cpu")
    with pytest.raises(TypeError, match=r"should yield \(x, y\) batches, got Tensor"):
        odd.one_batch()
    learn = _learner(_dls(), tmp_path)
    with pytest.raises(TypeError, match="predict needs data with preprocess"):
        learn.predict(torch.rand(3, 8, 8))


def test_summary_takes_the_shape_of_the_first_batch(tmp_path):
    text = str(_learner(_dls(), tmp_path).summary())
    assert "Sequential (Input shape: 16 x 3 x 8 x 8)" in text
    assert "Conv2d" in text and "16 x 8 x 6 x 6" in text and "Linear" in text


def test_set_epoch_reaches_a_distributed_sampler():
    ds = _dataset(20, 0)
    sampler = DistributedSampler(ds, num_replicas=2, rank=0, shuffle=True)
    loader = TorchLoader(DataLoader(ds, batch_size=5, sampler=sampler), torch.device("cpu"))
    loader.set_epoch(3)
    assert sampler.epoch == 3


def test_set_shard_splits_a_loader_between_processes():
    ds = TensorDataset(torch.arange(23).float().view(-1, 1), torch.arange(23))
    cpu = torch.device("cpu")
    valid = [TorchLoader(DataLoader(ds, batch_size=4), cpu) for _ in range(2)]
    for r, loader in enumerate(valid):
        loader.set_shard(r, 2)
    seen = [torch.cat([y for _, y in loader]).tolist() for loader in valid]
    assert seen == [list(range(11)), list(range(11, 23))]  # in order, every item once
    train = [TorchLoader(DataLoader(ds, batch_size=4, shuffle=True), cpu) for _ in range(2)]
    for r, loader in enumerate(train):
        loader.set_shard(r, 2)
        loader.set_epoch(1)
    parts = [torch.cat([y for _, y in loader]).tolist() for loader in train]
    assert len(parts[0]) == len(parts[1]) == 12 and set(parts[0] + parts[1]) == set(range(23))
    train[0].set_epoch(2)
    assert torch.cat([y for _, y in train[0]]).tolist() != parts[0]  # a new permutation
    train[0].set_shard(0, 1)
    assert len(train[0]) == 6
    custom = TorchLoader(DataLoader(ds, batch_size=4, sampler=list(range(23))), cpu)
    with pytest.raises(TypeError, match="with a sampler of its own"):
        custom.set_shard(0, 2)


# ---- 2 processes ---------------------------------------------------------------------------
def _worker(rank: int, port: int, out: Path) -> None:
    """A torchrun worker's script, unchanged from one process: DataLoaders, fit, validate."""
    torch.set_num_threads(1)
    torchrun_env(rank, port)
    try:
        learn = _learner(_dls(), out)
        assert learn.distributed is not None
        batches = len(learn.data.train_dl), len(learn.data.valid_dl)
        learn.fit_one_cycle(2, 1e-2)
        torch.save(
            {"state": learn.model.state_dict(), "valid": learn.validate(), "batches": batches},
            out / f"rank{rank}.pt",
        )
    except BaseException:
        (out / f"error{rank}.txt").write_text(traceback.format_exc())
        raise


def test_two_processes_share_the_data_and_end_with_the_same_model(tmp_path):
    port = free_port()
    codes = run_ranks(_worker, lambda r: (r, port, tmp_path), timeout=120)
    errors = [f.read_text() for f in tmp_path.glob("error*.txt")]
    assert not errors and codes == [0, 0], errors
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert a["batches"] == b["batches"] == (3, 2)  # 96 / 2 / 16 training, 37 valid in 19 + 18
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    assert a["valid"] == b["valid"]  # over the whole validation set, gathered from both
    learn = _learner(_dls(), tmp_path)
    learn.model.load_state_dict(a["state"])
    assert learn.validate() == pytest.approx(a["valid"], rel=1e-5)


def test_fastbook_chapter_4_custom_loss_and_targets_validate_and_predict():
    """A linear model of one output, (B, 1) float targets and fastbook's mnist_loss and
    batch_accuracy: fit, validate and get_preds take the targets as the loss does (get_preds
    refused anything but int64 class indices), and get_preds returns the raw outputs (a
    softmax over one column is 1 everywhere), as fastai's noop activation."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g)
    y = (x[:, :1] > 0).float()  # (B, 1), as chapter 4's tensor(...).unsqueeze(1)
    dset = list(zip(x, y, strict=True))

    def mnist_loss(predictions, targets):
        predictions = predictions.sigmoid()
        return torch.where(targets == 1, 1 - predictions, predictions).mean()

    def batch_accuracy(xb, yb):
        return ((xb.sigmoid() > 0.5) == yb).float().mean()

    dls = DataLoaders(DataLoader(dset, batch_size=16), DataLoader(dset[:40], batch_size=16))
    torch.manual_seed(0)
    learn = Learner(
        dls, nn.Linear(10, 1), loss_func=mnist_loss, metrics=batch_accuracy, precision="fp32"
    )
    learn.progress.stream = io.StringIO()
    learn.fit(2, lr=0.5)
    loss, acc = learn.validate()
    with torch.no_grad():
        out = learn.model(x[:40])
    assert loss == pytest.approx(float(mnist_loss(out, y[:40])), rel=1e-5)
    assert acc == pytest.approx(float(batch_accuracy(out, y[:40])), rel=1e-6)
    preds, targs = learn.get_preds()
    torch.testing.assert_close(preds, out, rtol=1e-5, atol=1e-6)  # raw: no softmax
    assert torch.equal(targs, y[:40])
    decoded = learn.get_preds(with_decoded=True)[2]
    torch.testing.assert_close(decoded, preds)  # no decodes: the outputs, as fastai's noop
    # a loss with an activation and decodes gives them
    from fastcore_ext.losses import BCEWithLogitsLossFlat

    learn.loss_func = BCEWithLogitsLossFlat()
    probs, _, decoded = learn.get_preds(with_decoded=True)
    torch.testing.assert_close(probs, out.sigmoid(), rtol=1e-5, atol=1e-6)
    assert torch.equal(decoded, probs > 0.5)
    with pytest.raises(ValueError, match=r"y should hold one target per item \(16\), got"):
        learn.validate(dl=[(x[:16], y[:3])])


def test_validate_of_a_model_whose_outputs_the_metrics_do_not_need(tmp_path):
    """Outputs holding a non-tensor (or a structure that changes between batches) trained
    and validated in the fit but validate() refused them: only metrics need the outputs
    joined. A loss function taking reduction= gives get_preds(with_loss=True) per-item
    losses, as fastai's partial(loss_func, reduction='none')."""

    class WithExtra(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _model()

        def forward(self, x):
            return self.net(x), "a note"

    def loss(out, y, reduction="mean"):
        return F.cross_entropy(out[0], y, reduction=reduction)

    learn = Learner(_dls(), WithExtra(), loss_func=loss, path=tmp_path, precision="fp32")
    learn.progress.stream = io.StringIO()
    learn.fit(1, 1e-2)
    assert learn.validate()[0] == pytest.approx(learn.recorder.values[-1][1], rel=1e-6)

    tuple_model = _TwoOutputs(as_dict=False)
    learn = Learner(_dls(), tuple_model, loss_func=loss, path=tmp_path, precision="fp32")
    preds, targets, losses = learn.get_preds(with_loss=True)
    x, y = learn.dls.valid_ds.tensors
    with torch.no_grad():
        expected = F.cross_entropy(tuple_model.eval()(x)[0], y, reduction="none")
    torch.testing.assert_close(losses, expected, atol=1e-5, rtol=1e-5)
