"""Files the library writes atomically get the permissions a plain open() would give them
(0666 less the umask), and an image rewritten in place keeps its own (they came out 0600:
mkstemp's, so another user or a serving account could not read a saved model)."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import types

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from fastcore_ext import files, plots
from fastcore_ext.data import verify_images


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_is_the_process_umask():
    mask = os.umask(0o027)
    try:
        files.umask.cache_clear()
        assert files.umask() == 0o027
    finally:
        os.umask(mask)
        files.umask.cache_clear()
    assert files.umask() == mask


def test_match_mode_new_and_replacing(tmp_path):
    fd, tmp = tempfile.mkstemp(dir=tmp_path)
    assert _mode(tmp) == 0o600  # what mkstemp gives
    files.match_mode(fd)
    assert _mode(tmp) == 0o666 & ~files.umask()
    old = tmp_path / "old"
    old.write_bytes(b"x")
    old.chmod(0o640)
    files.match_mode(fd, replaces=old)
    assert _mode(tmp) == 0o640
    files.match_mode(fd, replaces=tmp_path / "missing")  # nothing to copy: a new file's
    assert _mode(tmp) == 0o666 & ~files.umask()
    os.close(fd)


def test_a_saved_plot_is_readable_as_any_new_file(tmp_path):
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1])
    path = plots.save_png(fig, tmp_path / "p.png")
    assert _mode(path) == 0o666 & ~files.umask()


def test_verify_images_keeps_the_mode_of_the_images_it_shrinks(tmp_path):
    img = tmp_path / "cat" / "big.jpg"
    img.parent.mkdir()
    Image.fromarray(np.full((64, 96, 3), 120, np.uint8)).save(img)
    img.chmod(0o604)
    assert verify_images(tmp_path, max_size=32) == []
    with Image.open(img) as im:
        assert max(im.size) == 32
    assert _mode(img) == 0o604
    verify_images(tmp_path, max_size=16, dest="small")
    assert _mode(tmp_path / "cat" / "small" / "big.jpg") == 0o604


def test_a_saved_checkpoint_is_readable_as_any_new_file(tmp_path):
    import torch

    from fastcore_ext.checkpoint import atomic_save

    path = atomic_save({"w": torch.zeros(3)}, tmp_path / "m.pth")
    assert _mode(path) == 0o666 & ~files.umask()


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    with files.atomic_write(path) as f:
        f.write(b"first")
    assert path.read_bytes() == b"first"
    for exc in (RuntimeError("disk full"), KeyboardInterrupt()):
        try:
            with files.atomic_write(path) as f:
                f.write(b"half of the seco")
                raise exc
        except (RuntimeError, KeyboardInterrupt) as e:
            assert e is exc
            # an error says which file and the free space (torch's names neither)
            notes = getattr(e, "__notes__", [])
            if isinstance(e, RuntimeError):
                assert (
                    len(notes) == 1
                    and f"while writing {str(path)!r} (stopped after 0.0 MiB, with " in notes[0]
                )
                assert "MiB free there); the file there before, if any, is unchanged" in notes[0]
            else:
                assert notes == []
        assert path.read_bytes() == b"first"  # the old file, untouched
        assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]  # no temporary


def test_a_full_disk_is_named(tmp_path, monkeypatch):
    """torch's writer on a full disk says "unexpected pos 25888256 vs 25888152"; the note gave
    the free space after the partial file was deleted, which read as if there was room."""
    path = tmp_path / "m.pth"
    for exc in (OSError(errno.ENOSPC, "No space left on device"), RuntimeError("unexpected pos")):
        monkeypatch.setattr(files.shutil, "disk_usage", lambda p: types.SimpleNamespace(free=2**20))
        try:
            with files.atomic_write(path) as f:
                f.write(bytes(3 * 2**20))
                raise exc
        except (OSError, RuntimeError) as e:
            note = e.__notes__[0]
            assert "(stopped after 3.0 MiB, with 1.0 MiB free there)" in note
            if isinstance(e, OSError):
                assert note.startswith("no space left on the device while writing ")
            else:
                assert "free there): the disk is probably full; the file there before" in note


def test_a_ctrl_c_inside_the_writer_comes_out_as_keyboardinterrupt(tmp_path):
    """Ctrl-C while torch.save writes came out as torch's RuntimeError ('unexpected pos ...',
    the KeyboardInterrupt its __context__), noted 'MiB free there' (a disk-space hint):
    `except KeyboardInterrupt` missed it."""
    path = tmp_path / "m.pth"
    path.write_bytes(b"before")
    try:
        with files.atomic_write(path) as f:
            f.write(b"half")
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")  # noqa: B904 (as torch raises it)
    except KeyboardInterrupt as e:
        assert isinstance(e.__cause__, RuntimeError)
        assert e.__notes__ == [
            f"while writing {str(path)!r}: the file there before, if any, is unchanged"
        ]
    else:
        raise AssertionError("no KeyboardInterrupt")
    assert path.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]


def test_a_folder_that_refuses_the_temporary_file_names_the_file_to_write(tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise PermissionError(1, "Operation not permitted", str(tmp_path / ".m.pth.1.x.tmp"))

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    try:
        with files.atomic_write(tmp_path / "m.pth") as f:
            f.write(b"x")
    except PermissionError as e:
        assert f"while writing {str(tmp_path / 'm.pth')!r} (" in e.__notes__[0]
    else:
        raise AssertionError("no PermissionError")


def test_atomic_write_keeps_the_replaced_files_mode_else_mode_of(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    path.chmod(0o640)
    with files.atomic_write(path, mode_of=tmp_path / "missing") as f:
        f.write(b"new")
    assert _mode(path) == 0o640
    src = tmp_path / "src"
    src.write_bytes(b"")
    src.chmod(0o604)
    with files.atomic_write(tmp_path / "new.bin", mode_of=src) as f:
        f.write(b"x")
    assert _mode(tmp_path / "new.bin") == 0o604


def test_atomic_write_removes_temporaries_of_dead_processes_only(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".f.bin.{dead}.abc.tmp"
    live = tmp_path / f".f.bin.{os.getppid()}.abc.tmp"  # our parent: alive
    other = tmp_path / f".g.bin.{dead}.abc.tmp"  # another file's
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    with files.atomic_write(tmp_path / "f.bin") as f:
        f.write(b"x")
    assert not stale.exists() and live.exists() and other.exists()
