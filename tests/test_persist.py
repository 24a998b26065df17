"""Learner.save / load: atomic writes (an error, Ctrl-C or SIGKILL mid-write), what a
checkpoint holds, bit-exact resume on the CPU, clear errors for files that do not fit;
seed reproducibility with 0 and 2 workers; memory that does not grow across epochs."""

from __future__ import annotations

import copy
import gc
import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import weakref

import numpy as np
import pytest
import torch
from fakes import easy_bunch, make_learner, tiny_arch
from torch import nn

import fastcore_ext.checkpoint as checkpoint
from fastcore_ext.callback import Callback, SaveModelCallback
from fastcore_ext.checkpoint import atomic_save
from fastcore_ext.data import ImageDataBunch, demo_dataset, imagenet_stats
from fastcore_ext.learner import CHECKPOINT_FORMAT
from fastcore_ext.vision import create_cnn


def dropout_model() -> nn.Sequential:
    """The fake bunch's model with dropout in both layer groups (dropout draws from torch's
    global generator, the randomness a resume must reproduce)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.Dropout2d(0.2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(8, 2),
    )


def learner(tmp_path, **kwargs):
    kwargs.setdefault("model", dropout_model())
    return make_learner(path=tmp_path, **kwargs)


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- save / load round trip ------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    learn = learner(tmp_path)
    learn.fit_one_cycle(2, max_lr=1e-2)
    path = learn.save("stage-1")
    assert path == tmp_path / "models" / "stage-1.pth"
    saved_model = state_of(learn.model)
    saved_opt = copy.deepcopy(learn.opt.state_dict())

    ckpt = torch.load(path, weights_only=True)  # tensors and plain values only
    assert ckpt["format"] == CHECKPOINT_FORMAT
    assert ckpt["epoch"] == 2 and ckpt["opt"]["schedule_step"] == 2 * len(learn.data.train_dl)
    assert ckpt["opt"]["one_cycle"]["total_steps"] == 2 * len(learn.data.train_dl)

    learn.fit(1, lr=0.5)  # move everything
    learn.load("stage-1")
    assert_same_state(state_of(learn.model), saved_model)
    loaded_opt = learn.opt.state_dict()
    assert loaded_opt["schedule_step"] == saved_opt["schedule_step"]
    assert loaded_opt["one_cycle"] == saved_opt["one_cycle"]
    for sid, st in saved_opt["state"].items():
        for key, value in st.items():
            assert torch.equal(loaded_opt["state"][sid][key], value), key
    assert learn.epochs_done == 2


def test_checkpoint_is_a_copy_that_save_writes_later(tmp_path):
    """learn.checkpoint(): what save writes, as copies on the CPU; training on does not change
    it, and written with atomic_save it loads as the save at that moment (the command line's
    --resume keeps one per epoch and writes it on Ctrl-C)."""
    learn = learner(tmp_path)
    learn.fit_one_cycle(1, max_lr=1e-2)
    snapshot, then = learn.checkpoint(), state_of(learn.model)
    learn.save("then")
    learn.fit(1, lr=0.5)  # move everything
    assert_same_state(snapshot["model"], then)
    atomic_save(snapshot, tmp_path / "models" / "snap.pth")
    written, saved = (torch.load(tmp_path / "models" / f, weights_only=True)
                      for f in ("snap.pth", "then.pth"))  # fmt: skip
    assert written.keys() == saved.keys() and written["epoch"] == saved["epoch"] == 1
    for sid, st in saved["opt"]["state"].items():
        for key, value in st.items():
            assert torch.equal(written["opt"]["state"][sid][key], value), key
    learn.load("snap")
    assert_same_state(state_of(learn.model), then)
    assert "opt" not in learn.checkpoint(with_opt=False)


def test_load_restores_rng_states(tmp_path):
    learn = learner(tmp_path)
    torch.manual_seed(3)
    random.seed(4)
    np.random.seed(5)
    learn.save("rng")
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.rand(10), random.random(), np.random.rand(4)  # move all three on
    learn.load("rng")
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]
    torch.rand(10)
    learn.load("rng", with_rng=False)  # the generators stay where they are
    assert not torch.equal(torch.rand(3), expected[0])


def test_save_without_opt_and_plain_state_dict_files(tmp_path):
    learn = learner(tmp_path)
    learn.fit(1)
    learn.save("weights-only", with_opt=False)
    assert "opt" not in torch.load(tmp_path / "models" / "weights-only.pth", weights_only=True)
    with pytest.warns(UserWarning, match="holds no optimizer state"):
        learn.load("weights-only")
    learn.load("weights-only", with_opt=False)  # no warning asked for

    other = learner(tmp_path, model_seed=1)
    torch.save(other.model.state_dict(), tmp_path / "models" / "plain.pth")
    learn.load("plain", with_opt=False)
    assert_same_state(state_of(learn.model), state_of(other.model))


# ---- atomic writes ---------------------------------------------------------------------------
def _fail_halfway(exc: BaseException):
    """A writer that writes half of the real bytes, then raises `exc`."""

    def write(obj, f):
        buf = io.BytesIO()
        torch.save(obj, buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        raise exc

    return write


@pytest.mark.parametrize(
    "exc", [OSError("disk full"), KeyboardInterrupt()], ids=["error", "ctrl-c"]
)
def test_save_failing_mid_write_keeps_the_previous_file(tmp_path, monkeypatch, exc):
    learn = learner(tmp_path)
    path = learn.save("model")
    before = path.read_bytes()
    weights = state_of(learn.model)
    learn.fit(1, lr=0.1)

    monkeypatch.setattr(checkpoint, "_serialize", _fail_halfway(exc))
    with pytest.raises(type(exc)):
        learn.save("model")
    assert path.read_bytes() == before
    assert files_in(path.parent) == ["model.pth"]  # no temporary file left
    monkeypatch.undo()
    learn.load("model")
    assert_same_state(state_of(learn.model), weights)


def test_killed_writer_leaves_the_previous_file_and_its_temporary_is_cleaned(tmp_path):
    """A process SIGKILLed mid-write (nothing can clean up): the old file is intact and
    loadable; the next save removes the dead process's temporary file."""
    learn = learner(tmp_path)
    path = learn.save("model")
    before = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import time, torch
        import fastcore_ext.checkpoint as ck
        def slow(obj, f):
            f.write(b"x" * 1000)
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        ck._serialize = slow
        ck.atomic_save({{"a": torch.zeros(3)}}, {str(path)!r})
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    leftovers = [n for n in files_in(path.parent) if n != "model.pth"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.pth.")
    assert path.read_bytes() == before
    learn.load("model")
    learn.save("model")
    assert files_in(path.parent) == ["model.pth"]


# ---- resume ----------------------------------------------------------------------------------
def test_resume_mid_cycle_is_bit_exact(tmp_path):
    """Checkpoints at the end of every epoch of a 4-epoch cycle; a fresh learner (other
    initial weights, other RNG state) loads the one after epoch 2 and finishes the cycle:
    weights, BatchNorm statistics and the optimizer state equal the uninterrupted run's."""
    torch.manual_seed(0)
    full = learner(tmp_path)
    saver = SaveModelCallback(every_epoch=True, with_opt=True)
    full.fit_one_cycle(4, max_lr=1e-2, cbs=saver)
    assert files_in(tmp_path / "models") == [f"model_{e}.pth" for e in range(4)]
    lrs_tail = full.recorder.group_lrs[2 * len(full.data.train_dl) :]

    torch.manual_seed(123)  # another state of the global generator before the resume
    resumed = learner(tmp_path, model_seed=7)
    resumed.load("model_1")
    assert resumed.epochs_done == 2
    resumed.fit_one_cycle(4, max_lr=1e-2, start_epoch=resumed.epochs_done)
    assert_same_state(state_of(resumed.model), state_of(full.model))
    assert resumed.opt.schedule_step == full.opt.schedule_step
    full_opt, resumed_opt = full.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    for sid in full_opt:
        for key in full_opt[sid]:
            assert torch.equal(resumed_opt[sid][key], full_opt[sid][key])
    assert resumed.recorder.group_lrs == lrs_tail
    assert resumed.recorder.epochs == [2, 3]


def test_resume_without_rng_state_differs(tmp_path):
    """The test above can fail: without the saved generator state the dropout masks of the
    resumed epochs differ, and so do the weights."""
    torch.manual_seed(0)
    full = learner(tmp_path)
    full.fit_one_cycle(3, max_lr=1e-2, cbs=SaveModelCallback(every_epoch=True, with_opt=True))
    resumed = learner(tmp_path)
    resumed.load("model_0", with_rng=False)
    resumed.fit_one_cycle(3, max_lr=1e-2, start_epoch=1)
    assert not torch.equal(resumed.model[-1].weight, full.model[-1].weight)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return demo_dataset(tmp_path_factory.mktemp("persist") / "demo", n_per_class=4, size=32)


def image_learner(folder, tmp_path, num_workers=0, seed=0, **kwargs):
    data = ImageDataBunch.from_folder(
        folder, size=16, bs=8, num_workers=num_workers, seed=11
    ).normalize(imagenet_stats)
    learn = create_cnn(
        data, tiny_arch, pretrained=False, lin_ftrs=[16], seed=seed, path=tmp_path, **kwargs
    )
    learn.progress.stream = io.StringIO()
    return learn


def test_resume_with_augmented_image_data_is_bit_exact(image_folder, tmp_path):
    """Shuffle and augmentation come from (data seed, epoch): a resumed fit on a fresh bunch
    sees the same batches as the uninterrupted one."""
    full = image_learner(image_folder, tmp_path)
    full.fit_one_cycle(3, max_lr=1e-2, cbs=SaveModelCallback(every_epoch=True, with_opt=True))
    resumed = image_learner(image_folder, tmp_path, seed=5)
    resumed.load("model_0")
    resumed.fit_one_cycle(3, max_lr=1e-2, start_epoch=1)
    assert_same_state(state_of(resumed.model), state_of(full.model))


def test_resume_of_a_second_fit_is_bit_exact(image_folder, tmp_path):
    """A learner's second fit draws data epochs after its first's (new shuffles and
    augmentations); its checkpoint says where, so a fresh learner resumes it exactly."""
    full = image_learner(image_folder, tmp_path)
    full.fit_one_cycle(2, max_lr=1e-2)
    full.fit_one_cycle(3, max_lr=1e-2, cbs=SaveModelCallback(every_epoch=True, with_opt=True))
    assert full.epochs_trained == 5 and full.epochs_done == 3
    resumed = image_learner(image_folder, tmp_path, seed=5)
    resumed.load("model_0")
    assert (resumed.epochs_done, resumed.epochs_trained) == (1, 3)
    resumed.fit_one_cycle(3, max_lr=1e-2, start_epoch=1)
    assert_same_state(state_of(resumed.model), state_of(full.model))
    assert resumed.epochs_trained == 5


# ---- files that do not fit -------------------------------------------------------------------
def test_load_into_another_architecture_is_a_clear_error(tmp_path):
    learn = learner(tmp_path)
    learn.save("two-classes")
    other_model = dropout_model()
    other_model[0] = nn.Conv2d(3, 8, 5, padding=2)  # another first layer
    other = learner(tmp_path, model=other_model)
    before = state_of(other.model)
    opt_before = other.opt.state_dict()
    with pytest.raises(ValueError, match=r"does not fit this model.*shape.*0\.weight"):
        other.load("two-classes")
    assert_same_state(state_of(other.model), before)  # nothing changed
    assert other.opt.state_dict()["schedule_step"] == opt_before["schedule_step"]

    with pytest.warns(UserWarning, match="matching tensors"):
        other.load("two-classes", strict=False, with_opt=False)
    assert torch.equal(other.model[-1].weight, learn.model[-1].weight)
    assert torch.equal(other.model[0].weight, before["0.weight"])

    deeper = learner(tmp_path, model=nn.Sequential(*dropout_model(), nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"2 missing \(7\.weight; 7\.bias\)"):
        deeper.load("two-classes")


def test_load_errors_name_the_file(tmp_path):
    learn = learner(tmp_path)
    with pytest.raises(
        FileNotFoundError,
        match=r"name: no such file: .*nope.pth \(no checkpoint "
        r"is in .*models; learn.save\(name\) writes one\)",
    ):
        learn.load("nope")
    bad = tmp_path / "models" / "bad.pth"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"not a torch file")
    with pytest.raises(FileNotFoundError, match=r"nope.pth \(models/ holds bad; learn.save"):
        learn.load("nope")
    with pytest.raises(ValueError, match="bad.pth"):
        learn.load("bad")
    torch.save({"x": [1, 2]}, tmp_path / "models" / "junk.pth")
    with pytest.raises(ValueError, match="no model state_dict"):
        learn.load("junk")
    with pytest.raises(TypeError, match="name should be a non-empty str"):
        learn.save(3)


def test_load_optimizer_that_does_not_fit(tmp_path):
    learn = learner(tmp_path)
    learn.fit(1)
    learn.save("m")
    one_group = learner(tmp_path, splitter=lambda m: [m])
    with pytest.raises(ValueError, match="optimizer state does not fit"):
        one_group.load("m")
    one_group.load("m", with_opt=False)


# ---- reproducibility and memory --------------------------------------------------------------
@pytest.mark.parametrize("num_workers", [0, 2])
def test_same_seed_same_weights(image_folder, tmp_path, num_workers):
    runs = []
    for seed in (0, 0, 1):
        learn = image_learner(image_folder, tmp_path, num_workers=num_workers, seed=seed)
        learn.fit_one_cycle(2, max_lr=1e-2)
        runs.append(state_of(learn.model))
        learn.data.train_dl.close()
    assert_same_state(runs[0], runs[1])
    assert not torch.equal(runs[0]["1.8.weight"], runs[2]["1.8.weight"])  # the seed matters


class _MemoryProbe(Callback):
    """Python heap (tracemalloc) at the end of each epoch, and weak references to every
    training batch's input, output and loss (a kept graph keeps them alive)."""

    order = 100

    def __init__(self):
        super().__init__()
        self.heap: list[int] = []
        self.refs: list[weakref.ref] = []

    def after_batch(self):
        if self.learn.training:
            learn = self.learn
            self.refs += [weakref.ref(t) for t in (learn.xb[0], learn.pred, learn.loss_grad)]

    def after_epoch(self):
        gc.collect()
        self.heap.append(tracemalloc.get_traced_memory()[0])


def test_memory_does_not_grow_across_epochs(tmp_path):
    learn = learner(tmp_path, data=easy_bunch(n_train=64, bs=16))
    probe = _MemoryProbe()
    tracemalloc.start()
    try:
        learn.fit_one_cycle(5, max_lr=1e-2, cbs=probe)
    finally:
        tracemalloc.stop()
    gc.collect()
    assert len(probe.refs) == 5 * 4 * 3
    assert all(r() is None for r in probe.refs)  # no batch, output or graph outlives the fit
    per_batch = 400  # bytes: the recorder's floats and lists for one training batch
    assert probe.heap[-1] - probe.heap[1] < 3 * 4 * per_batch + 16_000
