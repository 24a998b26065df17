"""Files the library writes atomically get the permissions a plain open() would give them
(0666 less the umask), and an image rewritten in place keeps its own (they came out 0600:
mkstemp's, so another user or a serving account could not read a saved model)."""

from __future__ import annotations

import os
import stat
import tempfile

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
