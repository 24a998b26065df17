"""An unchanged single-process script trains under torchrun: without `seed=`, every process
takes the same data seed (rank 0's draw, through torchrun's agent store or broadcast over an
existing process group; derived from torchrun's run id where torchrun keeps no agent store),
so splits and shuffles agree and the weights end identical. (tests/test_distributed.py checks
that a seeded script draws the one-process seed under torchrun.)"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import WORLD, free_port, run_ranks
from PIL import Image

from fastcore_ext.data import ImageDataBunch
from fastcore_ext.data import bunch as bunch_mod

REPO = Path(__file__).resolve().parents[1]


def _image_folder(root: Path, n: int = 24) -> Path:
    """Two classes of 16 px PNGs (dark / red) in class folders, split by valid_pct."""
    rng = np.random.default_rng(0)
    for i in range(n):
        cls = ("dark", "red")[i % 2]
        img = rng.integers(0, 120, (16, 16, 3), dtype=np.uint8)
        if cls == "red":
            img[..., 0] += 120
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    return root


def _unseeded(root: Path) -> ImageDataBunch:
    return ImageDataBunch.from_folder(
        root, valid_pct=0.25, size=16, bs=4, num_workers=0, ds_tfms=None, device="cpu"
    )


def _as_process(monkeypatch, global_seed: int, run_id: str | None) -> ImageDataBunch:
    """Build an unseeded bunch as a fresh process would: its own global RNG state, no bunch
    built before, the environment of a worker of a torchrun without an agent store (its run
    id; or no torchrun)."""
    monkeypatch.setattr(bunch_mod, "_unseeded", itertools.count())
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    torchrun = {"TORCHELASTIC_RUN_ID": run_id, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    for k, v in torchrun.items():
        if run_id is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    torch.manual_seed(global_seed)
    np.random.seed(global_seed)  # ImageDataBunch (v1) draws from numpy's, as fastai v1
    return _unseeded(_as_process.root)


@pytest.fixture
def folder(tmp_path):
    _as_process.root = _image_folder(tmp_path / "imgs")
    return _as_process.root


def test_processes_of_one_torchrun_launch_agree_without_a_seed(folder, monkeypatch):
    a = _as_process(monkeypatch, 0, "run-1")
    b = _as_process(monkeypatch, 1, "run-1")  # another worker: another global RNG state
    assert a.seed == b.seed
    assert a.train_ds.items == b.train_ds.items and a.valid_ds.items == b.valid_ds.items
    assert torch.equal(
        torch.cat(a.train_dl.batch_indices(2)), torch.cat(b.train_dl.batch_indices(2))
    )
    assert _as_process(monkeypatch, 0, "run-2").seed != a.seed  # another launch


def test_second_unseeded_bunch_of_a_process_gets_another_seed(folder, monkeypatch):
    first = _as_process(monkeypatch, 0, "run-1")
    second = _unseeded(folder)  # the same process builds another one
    assert second.seed != first.seed


def test_without_torchrun_the_seed_comes_from_the_global_rng(folder, monkeypatch):
    a = _as_process(monkeypatch, 0, None)
    b = _as_process(monkeypatch, 0, None)
    c = _as_process(monkeypatch, 1, None)
    assert a.seed == b.seed and a.seed != c.seed


def _broadcast_worker(rank: int, port: int, root: str, out: str) -> None:
    import torch.distributed as dist

    os.environ.pop("TORCHELASTIC_RUN_ID", None)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        torch.manual_seed(100 + rank)  # the processes' own draws differ
        data = _unseeded(Path(root))
        torch.save(
            {"seed": data.seed, "train": [str(p) for p in data.train_ds.items]},
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_an_existing_process_group_broadcasts_rank_0s_seed(folder, tmp_path):
    port = free_port()
    codes = run_ranks(_broadcast_worker, lambda r: (r, port, str(folder), str(tmp_path)))
    assert codes == [0, 0]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD))
    assert r0 == r1


_SCRIPT = textwrap.dedent(
    """
    # A user's single-process training script: no seed anywhere.
    import os, sys
    import torch
    from torch import nn
    from fastcore_ext.data import ImageDataBunch
    from fastcore_ext.learner import Learner

    root, out = sys.argv[1], sys.argv[2]
    data = ImageDataBunch.from_folder(root, valid_pct=0.25, size=16, bs=4, num_workers=0,
                                      ds_tfms=None, device="cpu")
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, data.c))
    learn = Learner(data, model, path=out)
    learn.fit_one_cycle(2, max_lr=0.05)

    # what the test reads back: each process's data seed, split and final weights
    torch.save({"seed": data.seed, "valid": [str(p) for p in data.valid_ds.items],
                "model": learn.model.state_dict()},
               os.path.join(out, "rank" + os.environ["RANK"] + ".pt"))
    """
)


@pytest.mark.slow
def test_an_unchanged_script_trains_under_torchrun(folder, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           str(WORLD), str(script), str(folder), str(out)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        log, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"torchrun still ran after 240 s:\n{log.decode()[-3000:]}")
    assert proc.returncode == 0, log.decode()[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert r0["seed"] == r1["seed"] and r0["valid"] == r1["valid"]
    assert r0["model"].keys() == r1["model"].keys()
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k
