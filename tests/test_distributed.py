"""Distributed training (fastcore_ext.distributed): 2 CPU processes with gloo on 127.0.0.1.

The multi-process tests start their processes with multiprocessing's spawn (and torchrun
through `launch`) and wait for them with a timeout, killing them past it, so a hang fails
the test instead of blocking CI. NCCL (several GPUs) is not exercised here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
from fakes import WORLD, free_port, run_ranks, tiny_model, torchrun_env, two_groups
from PIL import Image

from fastcore_ext import checkpoint, distributed, lesson
from fastcore_ext.augment import get_transforms
from fastcore_ext.callback import CSVLogger
from fastcore_ext.callback.core import Callback
from fastcore_ext.data import ImageDataBunch
from fastcore_ext.inference import _preds_dl
from fastcore_ext.interpret import ClassificationInterpretation
from fastcore_ext.learner import Learner
from fastcore_ext.metrics import accuracy, error_rate
from fastcore_ext.ranks import from_launch_rank_0

N_TRAIN, N_VALID = 24, 13  # 13: uneven validation blocks (6 and 7 items)


# ---- helpers ---------------------------------------------------------------------------------
def _image_folder(root: Path) -> Path:
    """train/ and valid/ with two classes of 16 px PNGs told apart by their red level."""
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("valid", N_VALID)):
        for i in range(n):
            cls = ("dark", "red")[i % 2]
            img = rng.integers(0, 120, (16, 16, 3), dtype=np.uint8)
            if cls == "red":
                img[..., 0] += 120
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i}.png")
    return root


def _learner(root: Path, out: Path) -> Learner:
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, seed=3, device="cpu")
    torch.manual_seed(0)
    learn = Learner(
        data, tiny_model(), metrics=[error_rate, accuracy], splitter=two_groups, path=out, seed=1
    )
    learn.progress.stream = io.StringIO()
    return learn


# ---- 2 processes: a fit, then a crash -----------------------------------------------------
class _Crash(Callback):
    def before_batch(self) -> None:
        if self.learn.training and self.learn.train_iter == 2:
            raise RuntimeError("rank 1 crashed on purpose")


def _worker(rank: int, port: int, root: Path, out: Path) -> None:
    """What one torchrun worker would do: a fit_one_cycle and what follows it, then a second
    fit in which rank 1 crashes. Writes its results, then any error, into `out`."""
    torch.set_num_threads(1)
    torchrun_env(rank, port)
    writes = []
    serialize = checkpoint._serialize

    def counting_serialize(obj, f):  # the module's documented test seam
        writes.append(f.name)
        serialize(obj, f)

    checkpoint._serialize = counting_serialize
    try:
        learn = _learner(root, out)  # under torchrun: it initializes the group itself
        assert learn.distributed is not None and distributed.world_size() == WORLD
        n_batches = len(learn.data.train_dl), len(learn.data.valid_dl)
        learn.fit_one_cycle(2, 1e-2, cbs=[CSVLogger()])
        values, losses = learn.recorder.values, learn.recorder.raw_losses
        learn.save("final")
        preds = learn.get_preds(with_loss=True)
        interp = ClassificationInterpretation.from_learner(learn)
        interp.print_classification_report()
        before = {k: v.clone() for k, v in learn.model.state_dict().items()}
        suggestions = learn.lr_find(end_lr=1, num_it=12)
        restored = all(torch.equal(v, before[k]) for k, v in learn.model.state_dict().items())
        # an explicit context on the group that exists: entered, and left as it was
        other = _learner(root, out)
        other.remove_cb(other.distributed)  # as if created outside torchrun
        other.distributed = None
        other.data.valid_dl.set_shard(0, 1)
        other.data.train_dl.set_shard(0, 1)
        with other.distrib_ctx():
            in_ctx = other.data.valid_dl.world_size, other.distributed is not None
        after_ctx = other.data.valid_dl.world_size, other.distributed, dist.is_initialized()
        torch.save(
            {
                "state": learn.model.state_dict(),
                "values": values,
                "losses": losses,
                "printed": learn.progress.stream.getvalue(),
                "writes": len(writes),
                "n_batches": n_batches,
                "preds": preds,
                "confusion": torch.from_numpy(interp.confusion_matrix()),
                "suggestions": tuple(suggestions),
                "restored": restored,
                "lr_find_losses": learn.recorder.raw_losses,
                "ctx": (in_ctx, after_ctx),
            },
            out / f"rank{rank}.pt",
        )
        learn.fit_one_cycle(3, 1e-2, cbs=[_Crash()] if rank == 1 else None)
    except BaseException:
        (out / f"error{rank}.txt").write_text(traceback.format_exc())
        raise
    (out / f"done{rank}.txt").write_text("finished")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One run of 2 processes (`_worker`); returns (folder of the images, output folder,
    exit codes, results of rank 0, results of rank 1)."""
    root = _image_folder(tmp_path_factory.mktemp("images"))
    out = tmp_path_factory.mktemp("out")
    port = free_port()
    codes = run_ranks(_worker, lambda r: (r, port, root, out))
    errors = {p.name: p.read_text() for p in out.glob("error*.txt")}
    missing = [r for r in range(WORLD) if not (out / f"rank{r}.pt").is_file()]
    assert not missing, f"ranks {missing} wrote no results; exit codes {codes}; {errors}"
    results = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return root, out, codes, results


def test_weights_identical_on_every_rank(ddp_run):
    _, _, _, (r0, r1) = ddp_run
    assert r0["state"].keys() == r1["state"].keys()
    for k, v in r0["state"].items():  # parameters and BatchNorm buffers, bit for bit
        assert torch.equal(v, r1["state"][k]), k
    assert r0["values"] == r1["values"]  # same losses and metrics everywhere
    # per process: 12 training items = 3 batches of 4; validation blocks of 6 and 7 items
    assert r0["n_batches"] == (3, 2) and r1["n_batches"] == (3, 2)


def test_metrics_equal_a_single_process_evaluation(ddp_run):
    root, out, _, (r0, _) = ddp_run
    single = _learner(root, out)
    single.load("final", with_opt=False)
    for k, v in single.model.state_dict().items():
        assert torch.equal(v, r0["state"][k]), k
    probs, targs, losses = single.get_preds(with_loss=True)
    assert len(targs) == N_VALID
    train_loss, valid_loss, err, acc = r0["values"][-1]
    torch.testing.assert_close(valid_loss, losses.mean().item())
    assert err == error_rate(probs, targs).item()
    assert acc == accuracy(probs, targs).item()
    assert len(r0["losses"]) == 6 and all(np.isfinite(r0["losses"]))

    # get_preds gathered every item once, in valid_ds order
    d_probs, d_targs, d_losses = r0["preds"]
    assert torch.equal(d_targs, targs)
    torch.testing.assert_close(d_probs, probs)
    torch.testing.assert_close(d_losses, losses)
    conf = ClassificationInterpretation(single, probs, targs, losses).confusion_matrix()
    assert torch.equal(r0["confusion"], torch.from_numpy(conf))


def test_rank_zero_alone_prints_and_writes(ddp_run):
    _, out, _, (r0, r1) = ddp_run
    assert r0["writes"] == 1 and r1["writes"] == 0  # learn.save("final"), written once
    assert (out / "models" / "final.pth").is_file()
    assert "train_loss" in r0["printed"] and "error_rate" in r0["printed"]
    assert r1["printed"] == ""
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["epoch", "train_loss", "valid_loss"] and len(rows) == 3
    assert not list(out.glob("models/.*.tmp"))


def test_lr_find_and_distrib_ctx(ddp_run):
    _, _, _, (r0, r1) = ddp_run
    assert r0["restored"] and r1["restored"]
    assert r0["suggestions"] == r1["suggestions"]
    assert r0["lr_find_losses"] == r1["lr_find_losses"] and len(r0["lr_find_losses"]) == 12
    # inside: sharded; after: whole set, and the group it did not create still there
    assert r0["ctx"] == ((WORLD, True), (1, None, True))


def test_crashing_rank_makes_the_other_fail(ddp_run):
    _, out, codes, _ = ddp_run
    assert codes[0] != 0 and codes[1] != 0, f"exit codes {codes}"
    assert "crashed on purpose" in (out / "error1.txt").read_text()
    survivor = (out / "error0.txt").read_text()
    assert "crashed on purpose" not in survivor
    assert "Error" in survivor  # gloo: "Connection closed by peer"
    assert "the fit stopped at epoch 0" in survivor
    assert not (out / "done0.txt").exists()


# ---- single-process behaviour ------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _image_folder(tmp_path_factory.mktemp("images1"))


def test_shards_partition_the_data(images):
    data = ImageDataBunch.from_folder(
        images, ds_tfms=get_transforms(), size=16, bs=4, num_workers=0, seed=3, device="cpu"
    )
    train, valid = data.train_dl, data.valid_dl
    full = torch.cat(train.batch_indices(epoch=5))
    for world in (2, 3):
        blocks = []
        for r in range(world):
            valid.set_shard(r, world)
            blocks.append(torch.cat(valid.batch_indices()) if len(valid) else torch.arange(0))
        assert torch.equal(torch.cat(blocks), torch.arange(N_VALID))  # once each, in order
        shards = []
        for r in range(world):
            train.set_shard(r, world)
            idx = torch.cat(train.batch_indices(epoch=5))
            assert len(idx) == (N_TRAIN // world) // 4 * 4
            shards.append(idx)
        # the same permutation everywhere, each process its own block of it
        assert torch.equal(torch.cat(shards), full[: sum(len(s) for s in shards)])
        assert len(set(torch.cat(shards).tolist())) == sum(len(s) for s in shards)
    train.set_shard(0, 2)
    assert not torch.equal(
        torch.cat(train.batch_indices(epoch=0)), torch.cat(train.batch_indices(epoch=1))
    )
    # each process draws its own augmentations (rank 0 those of a single process)
    x, _ = next(train.uint8_batches(0))
    out = []
    for r, world in ((0, 2), (1, 2), (0, 1)):
        train.set_shard(r, world)
        out.append(train.augment(x, train._generator(0)))
    assert not torch.equal(out[0], out[1])
    assert torch.equal(out[0], out[2])


def test_shard_argument_errors(images):
    data = ImageDataBunch.from_folder(images, size=16, bs=4, num_workers=0, seed=3, device="cpu")
    with pytest.raises(ValueError, match="world_size"):
        data.train_dl.set_shard(0, 0)
    with pytest.raises(ValueError, match=r"rank: expected an int in \[0, 2\)"):
        data.train_dl.set_shard(2, 2)
    with pytest.raises(ValueError, match="fewer than bs=4"):
        data.train_dl.set_shard(0, 7)  # 24 // 7 = 3 items per process
    kept = data.train_dl.new(drop_last=False)
    kept.set_shard(0, 7)  # a partial batch is one
    with pytest.raises(ValueError, match="get 0 training items each, so an epoch"):
        kept.set_shard(0, 25)


def test_a_training_loader_keeping_its_partial_batch_gives_every_process_as_many(images):
    """drop_last=False (fastai's default for shuffle=False): every process still gets
    n // world_size items, so the same number of batches (DDP's collectives wait for all),
    the last of them partial; get_preds' in-order copy still reads every item once."""
    data = ImageDataBunch.from_folder(images, size=16, bs=4, num_workers=0, seed=3, device="cpu")
    train = data.train_dl.new(bs=5, shuffle=False, drop_last=False)
    for world in (2, 5):
        sizes = []
        for r in range(world):
            train.set_shard(r, world)
            sizes.append([len(b) for b in train.batch_indices()])
        each = N_TRAIN // world
        assert sizes == [[5] * (each // 5) + ([each % 5] if each % 5 else [])] * world
        ordered = _preds_dl(SimpleNamespace(train_dl=train), "train")
        blocks = []
        for r in range(world):
            ordered.set_shard(r, world)
            blocks.append(torch.cat(ordered.batch_indices()))
        assert torch.equal(torch.cat(blocks), torch.arange(N_TRAIN))


def test_before_a_group_exists_the_main_process_is_torchruns_rank_0(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not dist.is_initialized() and not distributed.is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert distributed.is_main_process()


def test_single_process_distrib_is_a_no_op(images, tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert not distributed.launched_by_torchrun()
    learn = _learner(images, tmp_path)
    assert learn.distrib() is learn and learn.distributed is None
    with learn.distrib_ctx() as same:
        assert same is learn and learn.distributed is None
        assert learn.data.train_dl.world_size == 1
    assert distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_main_process() and not distributed.is_distributed()
    t = torch.arange(6).reshape(3, 2)
    assert distributed.all_gather_cat(t) is t
    with pytest.raises(ValueError, match="timeout should be a number of seconds > 0"):
        learn.distrib(timeout=0)


def test_torchrun_environment(monkeypatch, images, tmp_path):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not distributed.launched_by_torchrun()  # LOCAL_RANK missing
    monkeypatch.setenv("LOCAL_RANK", "zero")
    assert distributed.launched_by_torchrun()
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR is not set"):
        _learner(images, tmp_path)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    monkeypatch.setenv("RANK", "first")
    with pytest.raises(ValueError, match="RANK should be an int"):
        _learner(images, tmp_path)


def test_launch_command():
    cmd = distributed.launch_command(4, ["train", "--epochs", "1"])
    assert cmd[0] == sys.executable
    assert cmd[1:] == [
        "-m",
        "fastcore_ext.launch",
        "--standalone",
        "--nproc-per-node",
        "4",
        "-m",
        "fastcore_ext",
        "train",
        "--epochs",
        "1",
    ]
    with pytest.raises(ValueError, match="nproc should be an int >= 1"):
        distributed.launch_command(0, ["train"])
    with pytest.raises(TypeError, match="argv should be a list of str"):
        distributed.launch_command(2, "train")
    with pytest.raises(ValueError, match="timeout should be"):
        distributed.launch(2, ["train"], timeout=-1)


_PROBE = textwrap.dedent(
    """
    import os, sys, time
    out, mode = sys.argv[1], sys.argv[2]
    rank = os.environ["RANK"]
    with open(os.path.join(out, "rank" + rank), "w") as f:
        f.write(os.environ["WORLD_SIZE"] + " " + os.environ["LOCAL_RANK"])
    if mode == "fail":
        if rank == "1":
            sys.exit(3)
        time.sleep(120)  # torchrun must stop this one
    """
)


def test_launch_runs_torchrun(tmp_path, monkeypatch):
    (tmp_path / "ddp_probe.py").write_text(_PROBE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    ok = tmp_path / "ok"
    ok.mkdir()
    assert distributed.launch(2, [str(ok), "ok"], module="ddp_probe", timeout=60) == 0
    assert sorted(p.read_text() for p in ok.iterdir()) == ["2 0", "2 1"]
    failed = tmp_path / "failed"
    failed.mkdir()
    start = time.monotonic()
    code = distributed.launch(2, [str(failed), "fail"], module="ddp_probe", timeout=60)
    assert code != 0
    assert time.monotonic() - start < 60


_WAITER = textwrap.dedent(
    """
    import os, sys, time
    out = sys.argv[1]
    rank = os.environ["RANK"]
    with open(os.path.join(out, "pid" + rank), "w") as f:
        f.write(str(os.getpid()))
    try:
        time.sleep(120)
    except KeyboardInterrupt:  # as a fit saves after a Ctrl-C
        time.sleep(1)
        with open(os.path.join(out, "saved" + rank), "w") as f:
            f.write("ok")
        sys.exit(130)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state  # a zombie left to an init that does not reap is gone


def _sigint_default() -> None:
    """SIGINT back to its default in the child before exec, as in a terminal: pytest run as a
    shell's background job (``cmd &``) starts with SIGINT ignored, which a child would inherit
    (Python then never raises KeyboardInterrupt, and the launcher waits forever)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_ctrl_c_reaches_every_worker_and_waits_for_them(tmp_path):
    """Ctrl-C to the launching process (as the terminal sends it): every worker gets it, ends
    as after its own Ctrl-C, and the launcher returns only after they have (none left); a
    second Ctrl-C soon after does not cut their saves short (it stopped them: nothing saved)."""
    (tmp_path / "ddp_waiter.py").write_text(_WAITER)
    out = tmp_path / "out"
    out.mkdir()
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(root)]))
    code = (
        "import sys\n"
        "from fastcore_ext.launch import launch\n"
        "try:\n"
        f"    launch(2, [{str(out)!r}], module='ddp_waiter')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(130)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_sigint_default,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(list(out.glob("pid*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(out.glob("pid*"))) == 2, "the workers did not start"
    time.sleep(0.5)
    parent.send_signal(signal.SIGINT)
    time.sleep(0.3)
    parent.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
    stdout, stderr = parent.communicate(timeout=60)
    assert parent.returncode == 130 and stdout == "interrupted\n"
    assert "waiting for the processes to save" in stderr
    assert "Traceback" not in stderr  # torchrun's agent traceback (SignalException) is one line
    assert "torchrun stopped the processes on SIGINT" in stderr
    assert sorted(p.name for p in out.glob("saved*")) == ["saved0", "saved1"]
    pids = [int(p.read_text()) for p in out.glob("pid*")]
    time.sleep(0.5)
    assert not [pid for pid in pids if _alive(pid)]


class _BadData:
    """What BadImages.of reads of a bunch: each process met another unreadable file."""

    def __init__(self, rank: int) -> None:
        self.path = Path("/data")
        self.bad_items = [Path(f"/data/train/bad{rank}.jpg")]
        self.dropped_items: list[Path] = []


def _bad_images_worker(rank: int, port: int, out: Path) -> None:
    torchrun_env(rank, port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        found = lesson.BadImages.of(_BadData(rank))
        (out / f"bad{rank}.json").write_text(json.dumps(found.to_json()))
    finally:
        dist.destroy_process_group()


def test_the_lesson_counts_the_unreadable_images_of_every_process(tmp_path):
    """Under --nproc 2 summary.json counted only rank 0's shards' unreadable files (5 of 6)."""
    port = free_port()
    assert run_ranks(_bad_images_worker, lambda r: (r, port, tmp_path)) == [0] * WORLD
    for r in range(WORLD):
        found = json.loads((tmp_path / f"bad{r}.json").read_text())
        assert found["skipped"] == 2
        assert found["skipped_files"] == ["train/bad0.jpg", "train/bad1.jpg"]


_AGREE = textwrap.dedent(
    """
    import os, sys
    from fastcore_ext.ranks import from_launch_rank_0
    rank = os.environ["RANK"]
    got = [from_launch_rank_0("a", "from rank " + rank), from_launch_rank_0("b", rank * 3)]
    with open(os.path.join(sys.argv[1], "got" + rank), "w") as f:
        f.write("|".join(got))
    """
)


def test_before_a_group_exists_torchrun_workers_get_rank_0s_values(tmp_path, monkeypatch):
    (tmp_path / "ddp_agree.py").write_text(_AGREE)
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(root)]))
    assert distributed.launch(2, [str(tmp_path)], module="ddp_agree", timeout=120) == 0
    for r in range(WORLD):
        assert (tmp_path / f"got{r}").read_text() == "from rank 0|000"
    monkeypatch.delenv("RANK", raising=False)  # one process: its own value
    assert from_launch_rank_0("a", "mine") == "mine"


_SEEDED = textwrap.dedent(
    """
    import os, sys
    import numpy as np, torch
    from fastcore_ext.data import ImageDataBunch, ImageDataLoaders
    root, out = sys.argv[1], sys.argv[2]
    np.random.seed(2)
    torch.manual_seed(42)
    v1 = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, device="cpu")
    v2 = ImageDataLoaders.from_folder(root, size=16, bs=4, num_workers=0, device="cpu")
    with open(os.path.join(out, "seeds" + os.environ.get("RANK", "single")), "w") as f:
        f.write(f"{v1.seed} {v2.seed}")
    """
)


def test_a_seeded_script_draws_the_same_data_seed_under_torchrun(images, tmp_path, monkeypatch):
    """np.random.seed(2) / torch.manual_seed(42) before the data: under torchrun the seed
    (so the split) came from torchrun's run id, another at every launch and unlike one
    process's; now it is rank 0's draw, the one process's."""
    (tmp_path / "ddp_seeded.py").write_text(_SEEDED)
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(root)]))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    args = [str(images), str(tmp_path)]
    subprocess.run([sys.executable, "-m", "ddp_seeded", *args], check=True, timeout=120)
    single = (tmp_path / "seedssingle").read_text()
    for _ in range(2):  # two launches
        assert distributed.launch(2, args, module="ddp_seeded", timeout=120) == 0
        assert [(tmp_path / f"seeds{r}").read_text() for r in range(WORLD)] == [single] * WORLD


def _save_on_rank_0_worker(rank: int, port: int, out: Path) -> None:
    torchrun_env(rank, port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        if rank == 0:  # fastai's idiom: only rank 0 saves
            checkpoint.atomic_save({"w": torch.arange(3)}, out / "w.pth")
        dist.barrier()  # both go on; rank 1 then reads the complete file
        assert torch.equal(checkpoint.load_file(out / "w.pth")["w"], torch.arange(3))
    finally:
        dist.destroy_process_group()


def test_a_save_on_rank_0_alone_does_not_wait_for_the_others(tmp_path):
    """`if rank == 0: learn.save(...)` hung: the save ended in a barrier the other processes
    never reached (until the group's 30-minute timeout)."""
    port = free_port()
    assert (
        run_ranks(_save_on_rank_0_worker, lambda r: (r, port, tmp_path), timeout=60) == [0] * WORLD
    )


def _fresh_worker(rank: int, port: int, root: Path, out: Path) -> None:
    torch.set_num_threads(1)
    torchrun_env(rank, port)
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, seed=3, device="cpu")
    torch.manual_seed(rank)  # each process its own random init
    learn = Learner(data, tiny_model(), splitter=two_groups, path=out)
    assert learn.distributed is not None
    torch.save(learn.model.state_dict(), out / f"fresh{rank}.pt")


def test_a_new_learner_has_rank_0s_weights_in_every_process(images, tmp_path):
    """Before its first fit each process held its own random init, so validate() (and an
    lr_find's restore) mixed several models."""
    port = free_port()
    assert run_ranks(_fresh_worker, lambda r: (r, port, images, tmp_path)) == [0] * WORLD
    r0, r1 = (torch.load(tmp_path / f"fresh{r}.pt") for r in range(WORLD))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k


def test_a_data_difference_between_processes_is_said_in_words():
    """A class folder missing in one process's copy was reported as two tuples and the advice
    to pass a seed (the seeds were equal); now what differs is named."""
    from fastcore_ext.callback.ddp import _data_difference

    mine = (7, (216, 11), (59, 12), ["circle", "square", "star"])
    missing = (7, (198, 13), (55, 14), ["circle", "square"])
    msg = _data_difference(mine, missing, 1)
    assert msg.startswith("the classes differ: rank 0 has 3, rank 1 2; only rank 0 has ['star']")
    assert "seed" not in msg
    msg = _data_difference(mine, (8, *mine[1:]), 1)
    assert msg.startswith("the split seeds differ (rank 0: 7, rank 1: 8)") and "seed=" in msg
    msg = _data_difference(mine, (7, (215, 11), (59, 12), mine[3]), 1)
    assert "different numbers of files (train/valid items: rank 0 216/59, rank 1 215/59)" in msg
    msg = _data_difference(mine, (*mine[:3], ["square", "circle", "star"]), 1)
    assert "rank 0 has 3, rank 1 3, the same names in another order" in msg
    assert "rank 1 has no classes" in _data_difference(mine, (*mine[:3], None), 1)
    msg = _data_difference(mine, (7, (216, 99), (59, 12), mine[3]), 1)
    assert "other files or another order of them (train/valid items: rank 0 216/59" in msg
