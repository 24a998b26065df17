"""fastai v2's training APIs: fit_sgdr, ReduceLROnPlateau, show_training_loop, MixUp and
CutMix."""

from __future__ import annotations

import io
import math
from functools import partial

import pytest
import torch
from fakes import N_BATCHES, easy_bunch, make_learner, scripted
from torch import nn
from torch.nn import functional as F

from fastcore_ext.callback import (
    Callback,
    CancelFitException,
    CutMix,
    EarlyStoppingCallback,
    MixUp,
    ReduceLROnPlateau,
    SaveModelCallback,
)
from fastcore_ext.callback.mixup import reduce_loss
from fastcore_ext.data import ImageDataBunch, demo_dataset
from fastcore_ext.learner import Learner, set_seed
from fastcore_ext.metrics import error_rate
from fastcore_ext.optim import SGD


class AppliedLR(Callback):
    """The lr each optimizer step really used, read back from the last layer's weight: with
    SGD, momentum 0 and no weight decay a step is `p -= lr * grad`, so lr = delta / grad (the
    median over the weight's elements, in float32)."""

    order = 100

    def __init__(self):
        super().__init__()
        self.lrs: list[float] = []

    def before_step(self):
        w = self.learn.model[-1].weight
        self._before, self._grad = w.detach().clone(), w.grad.detach().clone()

    def after_step(self):
        delta = self._before - self.learn.model[-1].weight.detach()
        keep = self._grad.abs() > 1e-3
        self.lrs.append(float((delta[keep] / self._grad[keep]).median()))


def sgd_learner(**kwargs):
    """The tiny learner with plain SGD (momentum 0, wd 0): AppliedLR can read its lrs."""
    return make_learner(opt_func=partial(SGD, mom=0.0), wd=0.0, **kwargs)


def fastai_sgdr(lr_max: float, cycles: list[int], n_batches: int) -> list[float]:
    """fastai v2's fit_sgdr lrs, one per step: in each cycle SchedCos(lr_max, 0) at the
    step's position in it (fastai's combine_scheds of the cycles' fractions of the fit)."""
    out = []
    for n_epochs in cycles:
        steps = n_epochs * n_batches
        for k in range(steps):
            pos = k / steps
            out.append(lr_max + (1 + math.cos(math.pi * (1 - pos))) * (0 - lr_max) / 2)
    return out


# ---- fit_sgdr ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, cycles, top",
    [
        (dict(n_cycles=3, cycle_len=1, lr_max=slice(1e-3, 1e-2)), [1, 2, 4], 1e-2),
        (dict(n_cycles=2, cycle_len=2, lr_max=3e-3, cycle_mult=3), [2, 6], 3e-3),
    ],
)
def test_fit_sgdr_is_fastais_schedule(kwargs, cycles, top):
    """Every step's lr is fastai v2's: run in fastai 2.8.12 (fit_sgdr on a learner of 8
    batches an epoch and two layer groups, recorder.group_lrs), both cases matched these formulas
    to 1e-5 relative (fastai computes positions in float32) but for one step: with 3 cycles
    of 1, 2, 4 epochs fastai's first step of the third cycle had lr 7.9e-16 (its float32
    cycle boundary 3/7 lies above the epoch's position, so it evaluated the second cycle's
    end), where SGDR restarts at lr_max, as here. Momentum stays at `mom`."""
    learn = make_learner()
    learn.fit_sgdr(**kwargs)
    want = fastai_sgdr(top, cycles, N_BATCHES)
    got = learn.recorder.lrs
    assert len(got) == len(want) == sum(cycles) * N_BATCHES
    assert got == pytest.approx(want, rel=1e-12, abs=1e-18)
    first = [g[0] for g in learn.recorder.group_lrs]  # slice(1e-3, 1e-2): the first group's peak
    assert first == pytest.approx([lr * first[0] / top for lr in want], rel=1e-12, abs=1e-18)
    assert all(m == [0.9, 0.9] for m in learn.recorder.group_moms)
    assert learn.recorder.epochs[-1] == sum(cycles) - 1


def test_fit_sgdr_steps_with_the_schedule_and_restarts():
    """The optimizer's device schedule is what the steps use: each cycle starts again at
    lr_max (the step after the end of a cycle, near 0), and each step's lr is the cosine's."""
    learn = sgd_learner()
    applied = AppliedLR()
    learn.fit_sgdr(2, 1, lr_max=0.05, cbs=applied, mom=0.0)
    want = fastai_sgdr(0.05, [1, 2], N_BATCHES)
    assert len(applied.lrs) == len(want)
    for got, w in zip(applied.lrs, want, strict=True):
        assert got == pytest.approx(w, rel=2e-2, abs=5e-5)
    assert applied.lrs[N_BATCHES] == pytest.approx(0.05, rel=1e-2)  # the restart
    assert applied.lrs[N_BATCHES - 1] < 0.01


@pytest.mark.filterwarnings("ignore:start_epoch=")  # the schedule alone, no checkpoint
def test_fit_sgdr_resumes_at_start_epoch_and_cycle_mult_1():
    """start_epoch resumes inside a cycle at its position; cycle_mult=1 gives equal cycles
    (fastai's epoch count divides by zero there)."""
    learn = make_learner()
    learn.fit_sgdr(2, 2, lr_max=1e-2, cycle_mult=1, start_epoch=1)
    want = fastai_sgdr(1e-2, [2, 2], N_BATCHES)[N_BATCHES:]
    assert learn.recorder.lrs == pytest.approx(want, rel=1e-12, abs=1e-18)


def test_fit_sgdr_with_mixup_resumes_bit_exact_mid_cycle(tmp_path):
    """Checkpoints after each epoch of fit_sgdr(2, 1) (cycles of 1 and 2 epochs) with MixUp;
    a fresh learner (other weights, other generator state) loads the one after epoch 1 and
    resumes at epoch 2, in the second cycle: the schedule's position and MixUp's draws (the
    saved generator state) continue, and the weights equal the uninterrupted run's."""
    torch.manual_seed(0)
    full = make_learner(path=tmp_path)
    saver = SaveModelCallback(every_epoch=True, with_opt=True)
    full.fit_sgdr(2, 1, lr_max=1e-2, cbs=[saver, MixUp()])
    torch.manual_seed(123)
    resumed = make_learner(path=tmp_path, model_seed=7)
    resumed.load("model_1")
    resumed.fit_sgdr(2, 1, lr_max=1e-2, cbs=MixUp(), start_epoch=2)
    assert resumed.recorder.group_lrs == full.recorder.group_lrs[2 * N_BATCHES :]
    full_state, resumed_state = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(resumed_state[k], full_state[k]) for k in full_state)


def test_fit_sgdr_checks_its_arguments_and_reset_opt_clears_state():
    learn = make_learner()
    with pytest.raises(ValueError, match="n_cycles"):
        learn.fit_sgdr(0, 1)
    with pytest.raises(TypeError, match="cycle_len"):
        learn.fit_sgdr(1, 1.5)
    with pytest.raises(ValueError, match="start_epoch"):
        learn.fit_sgdr(1, 1, start_epoch=1)
    learn.fit(1, 1e-3)
    assert learn.opt.state

    class StateAtStart(Callback):
        def before_fit(self):
            self.empty = not self.learn.opt.state

    seen = StateAtStart()
    learn.fit_sgdr(1, 1, reset_opt=True, cbs=seen)
    assert seen.empty


# ---- ReduceLROnPlateau ------------------------------------------------------------------------
SCORES = [0.5, 0.6, 0.55, 0.54, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]


def test_reduce_lr_on_plateau_is_fastais_in_fit():
    """fastai 2.8.12, fit(11, 1e-2) with a metric 'score' giving SCORES and
    ReduceLROnPlateau(monitor='score', patience=2, factor=2., min_lr=2e-3), printed
    'Epoch 3: reducing lr to 0.005', 'Epoch 6: reducing lr to 0.0025', 'Epoch 8: reducing lr
    to 0.002' (min_lr) and nothing after; its lr after each epoch was 0.01 x3, 0.005 x3,
    0.0025 x2, 0.002 x3. Here the steps' lrs are read back from the weights."""
    learn = sgd_learner(metrics=scripted("score", SCORES))
    applied = AppliedLR()
    cb = ReduceLROnPlateau(monitor="score", patience=2, factor=2.0, min_lr=2e-3)
    learn.fit(11, 1e-2, cbs=[cb, applied])
    said = [line for line in learn.progress.stream.getvalue().splitlines() if "reducing" in line]
    assert said == [
        "Epoch 3: reducing lr to 0.005",
        "Epoch 6: reducing lr to 0.0025",
        "Epoch 8: reducing lr to 0.002",
    ]
    per_epoch = [0.01] * 4 + [0.005] * 3 + [0.0025] * 2 + [0.002] * 2  # lr of epochs 0..10
    want = [lr for lr in per_epoch for _ in range(N_BATCHES)]
    assert applied.lrs == pytest.approx(want, rel=1e-3)
    assert [g["lr"] for g in learn.opt.param_groups] == [0.002] * 4


def test_reduce_lr_on_plateau_lowers_the_device_schedule():
    """In fit_one_cycle the optimizer evaluates the schedule on the device: a reduction
    scales each group's peak lr, and the very next step uses the schedule's lr / factor.
    The score worsens after epoch 0, so the peak goes 0.05 -> 0.005 (after epoch 1) ->
    0.0005 (after epoch 2)."""
    learn = sgd_learner(metrics=scripted("score", [0.5, 0.4, 0.3]))
    applied = AppliedLR()
    reduce = ReduceLROnPlateau(monitor="score")
    learn.fit_one_cycle(3, 0.05, moms=(0.0, 0.0, 0.0), cbs=[reduce, applied])
    assert learn.opt.one_cycle["lr_max"] == pytest.approx([0.0005] * 4)
    # the schedule at peak 0.0005 (its final one), step by step
    sched = [learn.opt.hypers_at(k)[0][-1] for k in range(3 * N_BATCHES + 1)]
    scale = [100] * (2 * N_BATCHES) + [10] * N_BATCHES  # epochs 0-1 at 0.05, epoch 2 at 0.005
    want = [lr * f for lr, f in zip(sched[:-1], scale, strict=True)]
    assert applied.lrs == pytest.approx(want, rel=1e-3)
    said = [line for line in learn.progress.stream.getvalue().splitlines() if "reducing" in line]
    assert [line.split(" to ")[0] for line in said] == [
        "Epoch 1: reducing lr",
        "Epoch 2: reducing lr",
    ]
    told = [float(line.split(" to ")[1]) for line in said]  # the next step's lr, last group
    # (after the last epoch there is none: the last step's, at the new peak)
    want = [sched[2 * N_BATCHES] * 10, sched[3 * N_BATCHES - 1]]
    assert told == pytest.approx(want, rel=1e-12)


def test_reduce_lr_on_plateau_lasts_across_sgdr_restarts():
    """fit_sgdr restarts each cycle at the schedule's current peak: a reduction in the
    second cycle (after epoch 2) holds for the third (epochs 3-6)."""
    scores = [0.5, 0.6, 0.4, 0.7, 0.8, 0.9, 1.0]  # worse only at epoch 2
    learn = make_learner(metrics=scripted("score", scores))
    learn.fit_sgdr(3, 1, lr_max=1e-2, cbs=ReduceLROnPlateau(monitor="score"))
    lrs = learn.recorder.lrs
    want = fastai_sgdr(1e-2, [1, 2], N_BATCHES) + fastai_sgdr(1e-3, [4], N_BATCHES)
    assert lrs == pytest.approx(want, rel=1e-12, abs=1e-18)


def test_reduce_lr_on_plateau_checks_its_arguments():
    with pytest.raises(ValueError, match="patience"):
        ReduceLROnPlateau(patience=-1)
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="min_lr"):
        ReduceLROnPlateau(min_lr=-1)
    with pytest.raises(TypeError, match="monitor"):
        ReduceLROnPlateau(monitor=3)


# ---- show_training_loop -----------------------------------------------------------------------
def test_show_training_loop_lists_the_callbacks_of_each_event(capsys):
    """fastai v2's layout ('Start Fit', then ' - event: [callbacks]' indented by level); only
    callbacks whose class defines the event are listed, in the order they run."""
    learn = make_learner(cbs=EarlyStoppingCallback())
    learn.show_training_loop()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Start Fit"
    assert lines[1] == (
        "   - before_fit           : "
        "[ConvWeightGrad, TerminateOnNaN, Recorder, ProgressCallback, EarlyStoppingCallback]"
    )
    by_event = {
        ln.split(":")[0].strip(" -"): ln.split(":", 1)[1].strip() for ln in lines if ": [" in ln
    }
    assert by_event["after_epoch"] == "[Recorder, ProgressCallback, EarlyStoppingCallback]"
    assert by_event["after_loss"] == "[TerminateOnNaN, Recorder]"
    assert by_event["before_step"] == "[]"
    assert lines[-1] == " - after_fit            : [ConvWeightGrad, Recorder, ProgressCallback]"
    assert [ln.strip() for ln in lines if not ln.strip().startswith("-")][:4] == [
        "Start Fit",
        "Start Epoch Loop",
        "Start Train",
        "Start Batch Loop",
    ]
    with pytest.raises(ValueError, match="event"):
        learn.ordered_cbs("before_everything")


# ---- MixUp / CutMix --------------------------------------------------------------------------
class Batches(Callback):
    """Each batch as the loader gave it (kept by `First`, before the mixer) and as the model
    saw it, with the mixer's lam and shuffled targets and the loss, per phase."""

    order = 50

    def __init__(self, mixer):
        super().__init__()
        self.mixer = mixer
        self.rows: list[dict] = []

    def keep_loader_batch(self):
        self.orig = (self.learn.xb[0].clone(), self.learn.yb[0].clone())

    def after_loss(self):
        learn, mixer = self.learn, self.mixer
        training = learn.training
        self.rows.append(
            dict(
                training=training,
                x=self.orig[0],
                y=self.orig[1],
                seen_x=learn.xb[0].clone(),
                seen_y=learn.yb[0].clone(),
                pred=learn.pred.detach().clone(),
                loss=float(learn.loss),
                lam=mixer.lam.clone() if training else None,
                y1=mixer.yb1[0].clone() if training else None,
            )
        )


class First(Callback):
    """Has `Batches` keep the loader's batch, ahead of the mixer."""

    order = -50

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def before_batch(self):
        self.batches.keep_loader_batch()


def watch(mixer):
    batches = Batches(mixer)
    return [mixer, First(batches), batches], batches


def test_mixup_mixes_training_inputs_and_loss_only():
    learn = make_learner(metrics=error_rate)
    cbs, seen = watch(MixUp())
    loss_func = learn.loss_func
    learn.fit(1, 1e-2, cbs=cbs)
    train = [r for r in seen.rows if r["training"]]
    valid = [r for r in seen.rows if not r["training"]]
    assert len(train) == N_BATCHES and len(valid) == 3
    for r in train:
        x, y, lam = r["x"], r["y"], r["lam"]
        assert lam.shape == y.shape and bool((lam >= 0.5).all() and (lam <= 1).all())
        for i in range(len(y)):  # item i is lerp(x[j], x[i], lam[i]) for the j of y1[i]
            mixes = [
                j
                for j in range(len(y))
                if torch.allclose(r["seen_x"][i], torch.lerp(x[j], x[i], lam[i]), atol=1e-6)
                and r["y1"][i] == y[j]
            ]
            assert mixes
        assert torch.equal(r["seen_y"], y)  # class targets stay: the loss is mixed
        per_item = F.cross_entropy(r["pred"], y, reduction="none")
        per_item1 = F.cross_entropy(r["pred"], r["y1"], reduction="none")
        want = (lam * per_item + (1 - lam) * per_item1).mean()
        assert r["loss"] == pytest.approx(float(want), rel=1e-5)
    assert sum(not torch.equal(r["seen_x"], r["x"]) for r in train) == N_BATCHES
    for r in valid:  # plain batches, plain loss
        assert torch.equal(r["seen_x"], r["x"]) and torch.equal(r["seen_y"], r["y"])
        assert r["loss"] == pytest.approx(float(F.cross_entropy(r["pred"], r["y"])), rel=1e-5)
    assert learn.loss_func is loss_func
    loss, err = learn.validate()  # the epoch's metrics are those of the unmixed data
    assert learn.recorder.valid_losses[-1] == pytest.approx(loss, rel=1e-5)
    assert learn.recorder.metrics[-1][0] == pytest.approx(err)


def test_cutmix_pastes_a_box_and_weights_the_loss_by_its_area():
    learn = make_learner(data=easy_bunch(size=16))
    cbs, seen = watch(CutMix())
    learn.fit_one_cycle(1, 1e-2, cbs=cbs)
    train = [r for r in seen.rows if r["training"]]
    boxes = 0
    for r in train:
        x, mixed, lam = r["x"], r["seen_x"], float(r["lam"])
        changed = (mixed != x).any(dim=0).any(dim=0)  # [H, W]: pixels of the box
        rows, cols = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
        if len(rows):
            boxes += 1
            h = int(rows.max() - rows.min() + 1)
            w = int(cols.max() - cols.min() + 1)
            assert int(changed.sum()) == h * w  # one rectangle
            assert lam == pytest.approx(1 - h * w / 256, abs=1e-6)
        else:
            assert lam == pytest.approx(1.0) or bool((r["y1"] == r["y"]).all())
        for i in range(len(x)):  # inside the box: some image of the batch
            assert any(torch.equal(mixed[i][:, changed], x[j][:, changed]) for j in range(len(x)))
        per_item = F.cross_entropy(r["pred"], r["y"], reduction="none")
        per_item1 = F.cross_entropy(r["pred"], r["y1"], reduction="none")
        want = (lam * per_item + (1 - lam) * per_item1).mean()
        assert r["loss"] == pytest.approx(float(want), rel=1e-5)
    assert boxes >= N_BATCHES // 2
    assert all(torch.equal(r["seen_x"], r["x"]) for r in seen.rows if not r["training"])


def test_mixup_mixes_float_targets_instead_of_the_loss():
    """One-hot (float) targets: fastai's stack_y=False path, the targets are lerp-ed and the
    loss function sees them."""
    data = easy_bunch()
    for dl in (data.train_dl, data.valid_dl):
        dl.y = F.one_hot(dl.y, 2).float()
    learn = make_learner(data=data, loss_func=nn.BCEWithLogitsLoss())
    cbs, seen = watch(MixUp())
    learn.fit(1, 1e-2, cbs=cbs)
    for r in seen.rows:
        if r["training"]:
            want = torch.lerp(r["y1"], r["y"], r["lam"][:, None])
            assert torch.allclose(r["seen_y"], want)
            bce = F.binary_cross_entropy_with_logits(r["pred"], want)
            assert r["loss"] == pytest.approx(float(bce), rel=1e-5)
        else:
            assert torch.equal(r["seen_y"], r["y"])


@pytest.mark.parametrize("mixer", [MixUp, CutMix])
def test_mixing_is_seeded_by_the_fit(mixer):
    """set_seed before the fit: the same draws, the same weights; another seed, others."""

    def weights(seed):
        learn = make_learner()
        set_seed(seed)
        learn.fit(1, 1e-2, cbs=mixer())
        return [p.detach().clone() for p in learn.model.parameters()]

    a, b, c = weights(1), weights(1), weights(2)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))


def test_mixup_and_cutmix_on_a_vision_learner():
    """`vision_learner(dls, resnet18, cbs=MixUp())` and `fit_one_cycle(1, cbs=CutMix())`;
    the callbacks are exported by the star import, as fastai.vision.all's."""
    namespace: dict = {}
    exec("from fastcore_ext.vision import *", namespace)
    for name in ("MixUp", "CutMix", "MixHandler", "reduce_loss", "ReduceLROnPlateau"):
        assert name in namespace
    data = easy_bunch(n_train=8, n_valid=4, size=32, bs=4)
    learn = namespace["vision_learner"](
        data, namespace["resnet18"], pretrained=False, cbs=namespace["MixUp"]()
    )
    learn.progress.stream = io.StringIO()
    learn.fit_one_cycle(1)
    (mixup,) = [cb for cb in learn.cbs if type(cb).__name__ == "MixUp"]
    with pytest.raises(ValueError, match="one mixing callback at a time"):
        learn.fit_one_cycle(1, cbs=namespace["CutMix"]())
    learn.remove_cb(mixup)
    learn.fit_one_cycle(1, cbs=namespace["CutMix"]())
    assert len(learn.recorder.train_losses) == 1
    assert not [cb for cb in learn.cbs if type(cb).__name__ in ("MixUp", "CutMix")]


def test_mixup_stepped_by_hand_as_fastais_docs_picture_it(tmp_path):
    """fastai's MixUp picture: ``with Learner(...) as learn``, ``learn._split(b)``,
    ``learn('before_batch')``, then ``dls.show_batch(b=(mixup.x, mixup.y), ctxs=axs)``."""
    import matplotlib.pyplot as plt

    root = demo_dataset(tmp_path / "demo", n_per_class=3, size=32)
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, seed=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, data.c))
    mixup = MixUp(1.0)
    events: list[str] = []

    class Seen(Callback):
        def before_fit(self):
            events.append("before_fit")

        def before_batch(self):
            events.append("before_batch")

        def after_fit(self):
            events.append("after_fit")

    torch.manual_seed(0)
    with Learner(data, model, cbs=[mixup, Seen()], path=tmp_path, precision="fp32") as learn:
        learn.progress.stream = io.StringIO()
        learn.epoch, learn.training = 0, True
        learn.dl = data.train_dl
        b = data.one_batch()
        learn._split(b)
        assert learn.x is b[0] and learn.y is b[1] and mixup.y is b[1]
        learn("before_train")
        learn(["before_batch"])
        assert mixup.x.shape == b[0].shape and not torch.equal(mixup.x, b[0])
        assert (mixup.lam >= 0.5).all()
    assert events == ["before_fit", "before_batch", "after_fit"]
    _, axs = plt.subplots(2, 2)
    assert data.show_batch(b=(mixup.x, mixup.y), ctxs=axs.flatten()) is None
    assert all(ax.get_images() for ax in axs.flat)
    plt.close(axs[0, 0].figure)
    with pytest.raises(ValueError, match="event_name should be one of"):
        learn("before_bacth")
    with pytest.raises(TypeError, match="b: expected a batch"):
        learn._split(None)


def test_reduce_loss_and_a_summed_loss_under_mixup():
    """fastai's reduce_loss; the mixed loss keeps the loss function's own reduction."""
    loss = torch.tensor([1.0, 2.0, 4.0])
    assert float(reduce_loss(loss)) == pytest.approx(7 / 3)
    assert float(reduce_loss(loss, "sum")) == 7.0 and reduce_loss(loss, "none") is loss
    with pytest.raises(ValueError, match="reduction"):
        reduce_loss(loss, "max")
    learn = make_learner(loss_func=nn.CrossEntropyLoss(reduction="sum"))
    cbs, seen = watch(MixUp())
    learn.fit(1, 1e-3, cbs=cbs)
    r = next(r for r in seen.rows if r["training"])
    per_item = F.cross_entropy(r["pred"], r["y"], reduction="none")
    per_item1 = F.cross_entropy(r["pred"], r["y1"], reduction="none")
    want = torch.lerp(per_item1, per_item, r["lam"]).sum()
    assert r["loss"] == pytest.approx(float(want), rel=1e-5)


class StopAt(Callback):
    """Raises `exc` at the third training batch's after_loss."""

    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def after_loss(self):
        if self.learn.training and self.learn.train_iter == 3:
            raise self.exc


@pytest.mark.parametrize("exc", [CancelFitException(), RuntimeError("boom")])
def test_mixup_puts_the_loss_function_back_when_training_stops(exc):
    learn = make_learner()
    loss_func = learn.loss_func
    if isinstance(exc, CancelFitException):
        learn.fit(1, 1e-3, cbs=[MixUp(), StopAt(exc)])
    else:
        with pytest.raises(RuntimeError, match="boom"):
            learn.fit(1, 1e-3, cbs=[MixUp(), StopAt(exc)])
    assert learn.loss_func is loss_func


def test_mixers_check_alpha():
    with pytest.raises(ValueError, match="alpha"):
        MixUp(alpha=0)
    with pytest.raises(ValueError, match="alpha"):
        CutMix(alpha=float("nan"))
