"""Integrity of saved files: a flipped byte in a tensor's data (or anywhere else) of a
checkpoint or an export is refused on loading, with an error naming the file and the first
tensor that differs; files written without checksums still load."""

from __future__ import annotations

import io
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from fakes import make_learner

from fastcore_ext.callback import SaveModelCallback
from fastcore_ext.checkpoint import DamagedFileError, atomic_save, load_file
from fastcore_ext.data import ImageDataBunch, demo_dataset, imagenet_stats
from fastcore_ext.exported import load_learner
from fastcore_ext.vision import create_cnn, models


def member_offset(path: Path, suffix: str) -> tuple[int, int]:
    """(offset of the first data byte, size) of the zip member whose name ends with
    `suffix`, read from its local header."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(suffix))
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    assert header[:4] == b"PK\x03\x04"
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def flip_byte(path: Path, offset: int, mask: int = 0xFF) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def walk(obj, prefix=""):
    """(name, tensor) in save order, names joined with '/' (the test's own walk)."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from walk(v, f"{prefix}/{i}" if prefix else str(i))


def differing(good: Path, bad: Path) -> list[str]:
    """Names of the tensors that differ between two files, read with plain torch.load."""
    a = dict(walk(torch.load(good, weights_only=True)))
    b = dict(walk(torch.load(bad, weights_only=True)))
    return [k for k in a if not torch.equal(a[k], b[k])]


def damage_storage(path: Path, member: str) -> list[str]:
    """Flip a byte in the middle of storage record `member` of `path`; returns the names of
    the tensors that now differ (found by comparing with a copy)."""
    good = path.with_name("good-copy.pth")
    shutil.copy(path, good)
    start, size = member_offset(path, member)
    flip_byte(path, start + size // 2)
    names = differing(good, path)
    assert names, "the flipped byte changed no tensor"
    return names


@pytest.fixture
def learn(tmp_path):
    learn = make_learner(path=tmp_path)
    learn.fit(1, lr=0.1)
    return learn


def test_checkpoint_with_a_flipped_byte_in_tensor_data_is_refused(learn, tmp_path):
    path = learn.save("stage-1")
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    names = damage_storage(path, "data/0")
    learn.fit(1, lr=0.1)  # move the weights, so that a partial load would show
    moved = {k: v.clone() for k, v in learn.model.state_dict().items()}
    assert any(not torch.equal(before[k], moved[k]) for k in before)
    with pytest.raises(DamagedFileError) as e:
        learn.load("stage-1")
    assert str(path) in str(e.value) and repr(names[0]) in str(e.value)
    assert f"{len(names)} of " in str(e.value)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, moved[k]), k  # nothing loaded


def test_checkpoint_damaged_in_optimizer_state_names_that_tensor(learn, tmp_path):
    path = learn.save("stage-1")
    with zipfile.ZipFile(path) as z:
        storages = [i.filename for i in z.infolist() if "/data/" in i.filename]
    names = damage_storage(path, storages[-1].split("/", 1)[1])
    with pytest.raises(DamagedFileError, match=str(path)) as e:
        learn.load("stage-1")
    assert repr(names[0]) in str(e.value)


def test_resume_refuses_a_damaged_epoch_checkpoint(tmp_path):
    first = make_learner(path=tmp_path)
    first.fit_one_cycle(3, max_lr=0.1, cbs=SaveModelCallback(every_epoch=True, with_opt=True))
    path = tmp_path / "models" / "model_1.pth"
    names = damage_storage(path, "data/0")
    fresh = make_learner(path=tmp_path)  # a new process resuming after epoch 1
    with pytest.raises(DamagedFileError, match=str(path)) as e:
        fresh.load("model_1")
    assert repr(names[0]) in str(e.value)
    fresh.load("model_0")  # the intact ones still resume
    fresh.fit_one_cycle(3, max_lr=0.1, start_epoch=1)


def test_intact_checkpoint_loads_and_the_record_is_invisible_to_torch_load(learn, tmp_path):
    path = learn.save("stage-1")
    saved = {k: v.clone() for k, v in learn.model.state_dict().items()}
    content = torch.load(path, weights_only=True)
    entries = {
        "format",
        "version",
        "model",
        "epoch",
        "epochs_trained",
        "rng",
        "data_seed",
        "opt",
        "opt_groups",
        "classes",
    }
    assert set(content) == entries
    learn.fit(1, lr=0.1)
    learn.load("stage-1")
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_damage_outside_the_tensors_is_refused(tmp_path):
    path = atomic_save({"note": "abcdefgh", "w": torch.arange(6.0)}, tmp_path / "f.pth")
    start, size = member_offset(path, "data.pkl")
    with open(path, "rb") as f:
        f.seek(start)
        pkl = f.read(size)
    flip_byte(path, start + pkl.index(b"abcdefgh") + 3, mask=0x01)  # 'd' -> 'e': still loads
    assert torch.load(path, weights_only=True)["note"] != "abcdefgh"
    with pytest.raises(DamagedFileError, match="data.pkl") as e:
        load_file(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("where", ["local_name", "central_version"])
def test_a_damaged_zip_directory_is_refused_naming_the_file(tmp_path, where):
    """One bit flipped in a record name of a local header, or in the "version needed" of the
    central directory: torch.load reads the file, then zipfile raised a UnicodeDecodeError or
    a NotImplementedError naming no file (a raw traceback from the command line's predict)."""
    path = atomic_save({"w": torch.arange(6.0)}, tmp_path / "f.pth")
    data = bytearray(path.read_bytes())
    if where == "local_name":
        data[30] ^= 0x80  # the first byte of the first record's name
    else:
        data[data.index(b"PK\x01\x02") + 6] ^= 0x40  # the first central entry's version
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as e:  # DamagedFileError, or torch's refusal
        load_file(path)
    assert str(path) in str(e.value) and "damaged" in str(e.value)


def test_truncated_file_is_refused(tmp_path):
    path = atomic_save({"w": torch.randn(1000)}, tmp_path / "f.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=str(path)):
        load_file(path)


def test_file_without_checksums_loads_and_its_zip_crcs_are_still_checked(tmp_path):
    old = tmp_path / "old.pth"
    w = torch.randn(50, generator=torch.Generator().manual_seed(0))
    torch.save({"model": {"w": w}}, old)  # what the previous version wrote
    assert torch.equal(load_file(old)["model"]["w"], w)
    start, size = member_offset(old, "data/0")
    flip_byte(old, start + size // 2)
    with pytest.raises(DamagedFileError, match="data/0"):
        load_file(old)


@pytest.mark.parametrize(
    "t",
    [
        torch.randn(4, 6).t(),  # non-contiguous
        torch.randn(3, 5).to(torch.bfloat16),
        torch.tensor(2.5),  # 0-dim
        torch.zeros(0, 3),  # empty
        torch.tensor([True, False, True]),
        torch.randn(4, dtype=torch.complex64),
        torch.arange(10)[2:7],  # a view into a larger storage
    ],
    ids=["transposed", "bf16", "0d", "empty", "bool", "complex", "view"],
)
def test_every_kind_of_tensor_round_trips_without_a_false_alarm(tmp_path, t):
    path = atomic_save({"t": t, "nested": [t, (t,)]}, tmp_path / "f.pth")
    out = load_file(path)
    assert torch.equal(out["t"], t) and torch.equal(out["nested"][1][0], t)


@pytest.mark.slow
def test_export_with_a_flipped_byte_in_tensor_data_is_refused(tmp_path):
    folder = demo_dataset(tmp_path / "demo", n_per_class=2, size=32)
    data = ImageDataBunch.from_folder(folder, size=16, bs=4, num_workers=0, seed=2)
    learn = create_cnn(
        data.normalize(imagenet_stats), models.resnet18, pretrained=False, lin_ftrs=[16],
        seed=0, path=tmp_path,
    )  # fmt: skip
    learn.progress.stream = io.StringIO()
    path = learn.export()
    assert load_learner(path).data.classes == data.classes  # intact: loads
    with zipfile.ZipFile(path) as z:
        storages = [i.filename for i in z.infolist() if "/data/" in i.filename]
    names = damage_storage(path, storages[len(storages) // 2].split("/", 1)[1])
    with pytest.raises(DamagedFileError) as e:
        load_learner(path)
    assert str(path) in str(e.value) and repr(names[0]) in str(e.value)
