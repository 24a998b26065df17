"""Places where the Learner now does what fastai 2.8.12 does, found by comparing the two
numerically: freezing clears the optimizer state, the loss sees float32 predictions under
mixed precision, an exported learner predicts in its own precision, get_preds says when
unreadable images have no row, and a callback may skip ``super().__init__()``."""

from __future__ import annotations

import io
import warnings
from functools import partial

import pytest
import torch
from fakes import break_images, make_learner
from torch import nn

from fastcore_ext.callback import Callback
from fastcore_ext.callback.mixed_precision import auto_precision
from fastcore_ext.data import ImageDataBunch, demo_dataset
from fastcore_ext.exported import load_learner
from fastcore_ext.inference import MissingRowsWarning
from fastcore_ext.interpret import ClassificationInterpretation
from fastcore_ext.losses import LabelSmoothingCrossEntropy
from fastcore_ext.vision import create_cnn, models


def test_unfreeze_starts_the_optimizer_moments_afresh_as_fastai():
    """fastai's freeze_to ends with opt.clear_state(): the stage after unfreeze() does not
    carry stage 1's Adam moments (the head's moments came from the frozen body's features)."""
    learn = make_learner()
    learn.freeze()
    learn.fit_one_cycle(1, 1e-2)
    assert learn.opt.state
    learn.unfreeze()
    assert not learn.opt.state
    learn.freeze_to(1)
    learn.fit(1, 1e-3)
    learn.freeze_to(0)
    assert not learn.opt.state


class _Recording(LabelSmoothingCrossEntropy):
    """Label smoothing that records the dtype of the predictions it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.dtypes.append(pred.dtype)
        return super().forward(pred, target)


def test_under_bf16_the_loss_sees_float32_predictions():
    """fastai's MixedPrecision.after_pred: to_float(pred). CPU autocast leaves log_softmax in
    bf16, so a label-smoothing loss was computed in bf16: validate() (0.1 % off) differed
    from the mean of get_preds' per-item losses."""
    loss = _Recording()
    learn = make_learner(loss_func=loss, precision="bf16")
    learn.fit(1, 1e-2)
    assert set(loss.dtypes) == {torch.float32}  # training and validation batches
    _, _, per_item = learn.get_preds(with_loss=True)
    assert learn.validate()[0] == pytest.approx(per_item.mean().item(), rel=1e-6)


@pytest.fixture(scope="module")
def demo_bunch(tmp_path_factory):
    folder = demo_dataset(tmp_path_factory.mktemp("d") / "demo", n_per_class=4, size=32)
    return ImageDataBunch.from_folder(folder, size=16, bs=8, num_workers=0, seed=2)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_load_learner_predicts_in_the_exported_precision(demo_bunch, tmp_path, precision):
    learn = create_cnn(
        demo_bunch, models.resnet18, pretrained=False, lin_ftrs=[16], path=tmp_path,
        precision=precision,
    )  # fmt: skip
    learn.export()
    loaded = load_learner(tmp_path)
    # bf16 where this CPU runs it natively (as the exporting learner), else fp32
    assert loaded.precision == (precision if precision == "fp32" else auto_precision("cpu")[0])
    item = demo_bunch.valid_ds.items[0]
    if loaded.precision == learn.precision:
        assert torch.equal(loaded.predict(item)[2], learn.predict(item)[2])


def test_get_preds_says_when_unreadable_images_have_no_row(tmp_path):
    folder = demo_dataset(tmp_path / "demo", n_per_class=4, size=32)
    bad = break_images(sorted((folder / "valid").rglob("*.jpg"))[:3])
    data = ImageDataBunch.from_folder(folder, size=16, bs=8, num_workers=0, seed=2)
    learn = make_learner(data=data, model=nn.Sequential(nn.Flatten(), nn.Linear(768, data.c)),
                         splitter=lambda m: [m])  # fmt: skip
    n = len(data.valid_ds)
    for _ in range(2):  # every pass says so (the loader warns once per file)
        with pytest.warns(MissingRowsWarning, match=rf"get_preds: 3 of the {n} valid images"):
            probs, targets = learn.get_preds()
        assert len(probs) == len(targets) == n - 3
    assert sorted(data.bad_items) == sorted(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.get_preds(dl=[(torch.zeros(2, 3, 16, 16), None)])  # the caller's own batches
    # the interpretation maps rows to items itself, and says how its indices differ
    with pytest.warns(MissingRowsWarning, match=r"ClassificationInterpretation: 3 of the") as rec:
        interp = ClassificationInterpretation.from_learner(learn)
    assert not any(str(w.message).startswith("get_preds") for w in rec)
    assert len(interp.idxs) == n - 3


def test_a_training_set_of_unreadable_images_is_an_error_not_a_nan_epoch(tmp_path):
    """Every training image unreadable: the pass yields no batch; the fit says so, naming
    the files, where it printed an epoch of nan (fastai fails at the first file)."""
    folder = demo_dataset(tmp_path / "demo", n_per_class=2, size=32)
    bad = break_images(sorted((folder / "train").rglob("*.jpg"))[:3])
    for f in sorted((folder / "train").rglob("*.jpg"))[3:]:
        f.write_text("not an image")
    data = ImageDataBunch.from_folder(folder, size=16, bs=4, num_workers=0, seed=2)
    learn = make_learner(data=data, model=nn.Sequential(nn.Flatten(), nn.Linear(768, data.c)),
                         splitter=lambda m: [m])  # fmt: skip
    learn.progress.stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader's warning naming the files
        with pytest.raises(
            RuntimeError, match=r"epoch 0: the training loader yielded no batch"
        ) as e:
            learn.fit(1)
    assert "unreadable image(s)" in str(e.value) and str(bad[0]) in str(e.value)


def test_a_callback_whose_init_skips_super_init_can_be_added():
    class Shadow(Callback):
        def __init__(self, every: int) -> None:  # fastai allows this: learn is a class attribute
            self.every, self.seen = every, 0

        def after_batch(self) -> None:
            self.seen += 1

    cb = Shadow(2)
    learn = make_learner(cbs=[cb])
    learn.progress.stream = io.StringIO()
    learn.fit(1)
    assert cb.seen == len(learn.data.train_dl) + len(learn.data.valid_dl)


def test_the_loop_state_reads_as_fastai_s_during_a_one_cycle_fit():
    """opt.hypers inside a batch are the batch's own (after its step too, as fastai's
    ParamScheduler sets them in before_batch; ours showed the next step's), after the fit the
    last batch's; train_iter is the batch's 0-based index until its after_batch counts it (it
    was one ahead); learn.loss is 0 before the first batch (it was None)."""

    class Log(Callback):
        order = 99

        def __init__(self):
            super().__init__()
            self.before, self.after, self.iters, self.first_loss = [], [], [], None

        def before_batch(self):
            if self.first_loss is None:
                self.first_loss = float(self.learn.loss)
            if self.training:
                self.before.append(self.opt.hypers[-1]["lr"])
                self.iters.append(self.learn.train_iter)

        def after_batch(self):
            if self.training:
                self.after.append(self.opt.hypers[-1]["lr"])

    learn = make_learner()
    log = Log()
    learn.fit_one_cycle(2, 1e-2, cbs=log)
    lrs = [g[-1] for g in learn.recorder.group_lrs]
    assert log.before == pytest.approx(lrs, rel=1e-6) and log.after == log.before
    assert log.iters == list(range(len(lrs))) and learn.train_iter == len(lrs)
    assert learn.opt.hypers[-1]["lr"] == pytest.approx(lrs[-1], rel=1e-6)
    assert log.first_loss == 0.0


def test_set_hyper_takes_one_value_per_layer_group_and_keeps_wd_off_norm_and_bias():
    """fastai's opt.set_hyper('lr', [a, b]) on a 2-group learner (ours has a decayed and a
    non-decayed param group per layer group: 4) was a ValueError; set_hyper('wd', x) put
    weight decay on BatchNorm and biases."""
    learn = make_learner()
    opt = learn.opt
    assert len(opt.param_groups) == 4 and opt.group_map.layer == (0, 0, 1, 1)
    opt.set_hyper("lr", [1e-3, 1e-2])
    assert [h["lr"] for h in opt.hypers] == [1e-3, 1e-3, 1e-2, 1e-2]
    opt.set_hyper("wd", 0.1)
    assert [h["wd"] for h in opt.hypers] == [0.1, 0.0, 0.1, 0.0]
    opt.set_hyper("wd", [0.1, 0.2, 0.3, 0.4])  # one per param group: as given
    assert [h["wd"] for h in opt.hypers] == [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match=r"one per layer group \(2\) or one per param group"):
        opt.set_hyper("lr", [1e-3, 1e-2, 1e-1])
    opt.set_hyper("lr", slice(1e-4, 1e-2))  # fastai's slices over the layer groups
    assert [h["lr"] for h in opt.hypers] == pytest.approx([1e-4, 1e-4, 1e-2, 1e-2])
    opt.set_hypers(lr=slice(1e-2), mom=0.8)
    assert [h["lr"] for h in opt.hypers] == pytest.approx([1e-3, 1e-3, 1e-2, 1e-2])
    assert {h["mom"] for h in opt.hypers} == {0.8}
    lists = opt.param_lists  # fastai's: one list per layer group
    assert len(lists) == 2 and sum(map(len, lists)) == len(list(learn.model.parameters()))
    assert learn.final_record is None
    learn.fit(1)
    assert learn.final_record == learn.recorder.final_record
    with pytest.raises(ValueError, match="train_metrics=True is not offered"):
        learn.recorder.train_metrics = True


def test_learner_moms_train_bn_bn_freeze_and_reset_opt_as_fastai():
    """Learner(moms=, train_bn=), BnFreeze, create_opt() and fit(..., reset_opt=True): fastai
    v2's, which were TypeErrors / AttributeErrors."""
    from fastcore_ext.callback import BnFreeze

    learn = make_learner(moms=(0.9, 0.8))  # v1's two values: (0.9, 0.8, 0.9)
    assert learn.moms == (0.9, 0.8, 0.9)
    learn.fit_one_cycle(1, 1e-2)
    moms = [g[-1] for g in learn.recorder.group_moms]
    assert moms[0] == pytest.approx(0.9, abs=1e-3) and min(moms) == pytest.approx(0.8, abs=2e-3)

    learn = make_learner(train_bn=False)
    learn.freeze()
    bn = learn.model[1]
    assert not bn.weight.requires_grad  # frozen with its group (train_bn=True keeps it)
    before = bn.running_mean.clone()
    learn.fit(1, 1e-2, cbs=BnFreeze())
    assert torch.equal(bn.running_mean, before)  # eval mode in training: statistics kept
    learn.fit(1, 1e-2)
    assert not torch.equal(bn.running_mean, before)  # without BnFreeze they move
    assert make_learner().model[1].weight.requires_grad  # the default: train_bn=True
    with pytest.raises(TypeError, match="train_bn"):
        make_learner(train_bn="no")

    learn = make_learner()
    learn.fit(1, 1e-2)
    assert learn.opt.state
    old = learn.opt
    learn.fit(1, 1e-2, reset_opt=True)
    assert learn.opt is not old and learn.opt.state  # a new optimizer, then trained
    learn.create_opt()
    assert not learn.opt.state
    learn.fit_one_cycle(1, 1e-2, reset_opt=True)
    learn.fit_flat_cos(1, 1e-2, reset_opt=True)


def test_losses_reported_are_copies_and_live_and_passes_fire_fit_events_as_fastai():
    """A callback halving loss_grad in place halved the reported losses (fastai copies the
    loss first); recorder.losses were filled only at epoch ends (a logger reading them in
    after_batch saw []); validate / get_preds fired no before_fit / before_epoch /
    after_epoch / after_fit (a callback setting itself up in before_fit crashed) and gave
    after_loss no loss_grad."""

    class Half(Callback):
        def after_loss(self):
            self.learn.loss_grad *= 0.5

    class Log(Callback):
        order = 60  # after the Recorder

        def before_fit(self):
            self.seen, self.events = [], []

        def after_loss(self):
            self.events.append("after_loss")
            assert self.learn.loss_grad is not None

        def after_batch(self):
            if self.training:
                self.seen.append(len(self.recorder.losses))

        def before_epoch(self):
            self.events.append("before_epoch")

        def after_fit(self):
            self.events.append("after_fit")

    torch.manual_seed(0)
    plain = make_learner()
    plain.fit(1, 1e-2)
    torch.manual_seed(0)
    log = Log()
    halved = make_learner(cbs=[Half(), log])
    halved.fit(1, 1e-2)
    assert halved.recorder.raw_losses[0] == pytest.approx(plain.recorder.raw_losses[0])
    # Adam scales a halved gradient back up (up to eps): the losses are not halved
    assert halved.recorder.values[-1][1] == pytest.approx(plain.recorder.values[-1][1], rel=0.01)
    assert log.seen == list(range(1, len(halved.data.train_dl) + 1))
    halved.validate()  # before_fit set the callback up again, as fastai's validate does
    assert log.events[0] == "before_epoch" and log.events[-1] == "after_fit"
    assert "after_loss" in log.events

    class Counter(Callback):
        def before_fit(self):
            self.n = 0

        def after_batch(self):
            self.n += 1

    counter = Counter()
    plain.validate(cbs=counter)  # fastai's cbs= for one pass
    assert counter.n == len(plain.data.valid_dl) and counter not in plain.cbs
    plain.get_preds(cbs=[counter])
    assert counter.n == len(plain.data.valid_dl) and counter not in plain.cbs


def test_a_learner_can_be_deep_copied_and_pickled_as_fastai_s(tmp_path):
    """copy.deepcopy (fastai's ensembles) and pickle (a learner sent to a worker process)
    failed on the progress callback's stdout and on the loaders' decoding workers."""
    import copy
    import pickle

    folder = demo_dataset(tmp_path / "demo", n_per_class=2, size=32)
    data = ImageDataBunch.from_folder(folder, size=16, bs=4, num_workers=1, seed=2)
    learn = create_cnn(data, models.resnet18, pretrained=False, path=tmp_path)
    learn.progress.stream = io.StringIO()
    learn.fit(1)  # the training loader's workers are running
    twin = copy.deepcopy(learn)
    twin.fit(1)
    assert len(twin.recorder.values) == 1 and len(learn.recorder.values) == 1
    again = pickle.loads(pickle.dumps(learn))
    x = data.valid_ds.items[0]
    assert torch.equal(again.predict(x)[2], learn.predict(x)[2])
    learn.export()
    loaded = load_learner(tmp_path / "export.pkl")
    assert torch.equal(copy.deepcopy(loaded).predict(x)[2], loaded.predict(x)[2])


class _Moms(Callback):
    """The momentum of each training batch's step (the first param group's)."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def after_batch(self) -> None:
        if self.learn.training:
            self.seen.append(self.learn.opt.hypers[0]["mom"])


def test_a_fit_after_a_one_cycle_fit_keeps_its_last_momentum_as_fastai(tmp_path):
    """fastai's hypers keep what its ParamScheduler set last, so fit, fit_flat_cos, fit_sgdr
    and lr_find after fit_one_cycle (or fine_tune) run at the last step's momentum (0.9433
    after 8 steps, trial D against fastai 2.8.12); they went back to the optimizer's 0.9."""
    from fastcore_ext.optim import SGD
    from fastcore_ext.schedule import one_cycle

    last = one_cycle(7 / 8, 1e-2, 25.0, 1e5, 0.25, (0.95, 0.85, 0.95))[1]
    assert last == pytest.approx(0.9433, abs=1e-4)
    for then, args in (("fit", (1, 1e-3)), ("fit_flat_cos", (1, 1e-3)), ("fit_sgdr", (1, 1))):
        learn = make_learner()
        learn.fit_one_cycle(1, 1e-2)  # 8 batches
        moms = _Moms()
        getattr(learn, then)(*args, cbs=moms)
        assert moms.seen == pytest.approx([last] * 8), then
    learn = make_learner()  # lr_find puts the optimizer back: the momentum is kept
    learn.fit_one_cycle(1, 1e-2)
    learn.unfreeze()
    learn.lr_find(num_it=30)
    moms = _Moms()
    learn.fit(1, 1e-3, cbs=moms)
    assert moms.seen == pytest.approx([last] * 8), "after lr_find"
    learn = make_learner(path=tmp_path)  # and from a checkpoint saved after the schedule
    learn.fit_one_cycle(1, 1e-2)
    learn.save("after")
    loaded = make_learner(path=tmp_path).load("after")
    moms = _Moms()
    loaded.fit(1, 1e-3, cbs=moms)
    assert moms.seen == pytest.approx([last] * 8), "after load"
    fresh = make_learner()
    moms = _Moms()
    fresh.fit_flat_cos(1, 1e-3, cbs=moms)
    assert moms.seen == pytest.approx([0.9] * 8)  # a new Adam's
    sgd = make_learner(opt_func=partial(SGD, mom=0.0))  # no momentum stays none
    sgd.fit_one_cycle(1, 1e-2)
    moms = _Moms()
    sgd.fit(1, 1e-3, cbs=moms)
    assert moms.seen == [0.0] * 8
