"""examples/lesson1.ipynb executed by a real Jupyter kernel (nbclient + ipykernel, this
Python), as the lesson's users run it: the epoch table arrives as fastai's HTML table, every
figure as an inline PNG, and nothing is written outside the learner's models folder. Also
the names fastai v1's star import gave the lesson notebooks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "lesson1.ipynb"
KERNEL = "fastcore-ext-tests"

# Cells (by their source) whose output must be an inline image/png.
FIGURE_CELLS = [
    "data.show_batch(rows=3, figsize=(7, 6))",
    "interp.plot_top_losses(9, figsize=(15, 11))",
    "interp.plot_confusion_matrix(figsize=(12, 12))",
    "learn.recorder.plot()",
]
FIT_CELLS = [
    "learn.fit_one_cycle(epochs[0])",
    "learn.fit_one_cycle(epochs[1])",
    "learn.unfreeze()\nlearn.fit_one_cycle(epochs[2], max_lr=slice(1e-6, 1e-4))",
]


def test_star_import_gives_what_fastai_v1_gave_the_notebooks():
    ns: dict = {}
    exec("from fastcore_ext.vision import *", ns)
    for name in ["np", "plt", "torch", "nn", "F", "Path", "partial", "open_image", "doc"]:
        assert name in ns, name
    exec("np.random.seed(2); x = np.random.rand(2)", ns)
    exec("y = F.relu(torch.tensor([-1.0, 2.0])); f = partial(max, 3)", ns)
    assert ns["y"].tolist() == [0.0, 2.0] and ns["f"](1) == 3
    assert ns["plt"].__name__ == "matplotlib.pyplot" and ns["nn"].Linear is not None


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _kernel_spec(folder: Path) -> Path:
    """A kernelspec running this very Python (the venv of the tests), found through
    JUPYTER_PATH: a fresh CI venv needs no `ipykernel install`."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    return folder


def _source(cell) -> str:
    return "".join(cell.source) if isinstance(cell.source, list) else cell.source


@pytest.mark.slow
def test_lesson_notebook_in_a_jupyter_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_spec(tmp_path / "jupyter")))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("LESSON_FAST", "1")
    monkeypatch.setenv("FASTCORE_EXT_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for name in ("FASTCORE_EXT_PLOTS", "FASTCORE_EXT_DATA", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)

    # the data set exists before the notebook runs, so its listing can be compared
    from fastcore_ext.data import demo_dataset

    data_path = demo_dataset(n_per_class=6, size=32)  # where the notebook's call finds it
    assert data_path.is_relative_to(home)
    data_before = _listing(data_path)
    home_before = _listing(home)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(work)}}
    )
    client.execute()

    cells = {_source(c): c for c in nb.cells if c.cell_type == "code"}
    errors = [o for c in cells.values() for o in c.outputs if o.output_type == "error"]
    assert errors == []
    path_cell = cells["path = demo_dataset(n_per_class=n_per_class, size=img_px)\npath"]
    shown = "".join(o.get("data", {}).get("text/plain", "") for o in path_cell.outputs)
    assert str(data_path) in shown, f"the notebook used another data set: {shown}"

    for src in FIGURE_CELLS:
        kinds = [set(o.get("data", {})) for o in cells[src].outputs]
        assert any("image/png" in k for k in kinds), f"{src}: no inline image, got {kinds}"
    for src in FIT_CELLS:
        html = "".join(o.get("data", {}).get("text/html", "") for o in cells[src].outputs)
        assert "<table" in html and "<th>train_loss</th>" in html, f"{src}: no epoch table"
        assert "<th>error_rate</th>" in html and html.count("<tr>") >= 1
        assert "<progress" not in html  # the bars are gone once the fit ends
    stdout = "".join(o.get("text", "") for c in cells.values() for o in c.outputs)
    assert "Plot saved" not in stdout and "\r" not in stdout

    # nothing written but the learner's models folder: not in the data set, not in the
    # working directory, not elsewhere under the library's home
    new = [p for p in _listing(data_path) if p not in data_before]
    assert new and all(p == "models" or p.startswith("models/") for p in new), new
    assert "models/stage-1.pth" in new
    assert _listing(work) == []
    models = data_path.relative_to(home).as_posix() + "/models"
    assert [p for p in _listing(home) if p not in home_before and not p.startswith(models)] == []


# Each cell's source -> how many inline PNGs it must show (the plots' own display: no
# %matplotlib inline before the last two, one figure each wherever the call is).
PLOT_CELLS = {
    "data.show_batch(rows=2);": 1,  # fastai notebooks end plot lines with ';'
    "data.show_batch(rows=2)\nprint('after')": 1,
    "def grid():\n    data.show_batch(rows=2)\n\ngrid()": 1,
    "fig = data.show_batch(rows=2)\nfig": 1,  # shown by the call, not again as the result
    "img = open_image(img_file)\nimg.show(figsize=(2, 2))\nimg.shape": 1,
    "fig": 1,  # a later cell shows it again, as any figure
    "data.show_batch(rows=2)\ndata.show_batch(rows=2, ds_type='valid')": 2,
    "data.show_batch(max_n=4, nrows=1);": 1,  # fastai v2's spellings (fastbook)
    "data.train_dl.show_batch(max_n=4)\ndata.valid_dl.show_batch(max_n=2)": 2,
    "%matplotlib inline\ndata.show_batch(rows=2)": 1,  # the inline backend: still once
    # pyplot's current figure, as fastai's: what the cell adds is in the picture and saved
    "f = data.show_batch(rows=2)\nplt.title('mine')\nplt.savefig('mine.png')\n"
    "print(plt.gcf() is f, f.axes[-1].get_title())": 1,
    "plt.ioff()\ndata.show_batch(rows=2)\nplt.show()\nplt.ion()": 1,  # at plt.show()
    "learn = cnn_learner(data, models.resnet18, pretrained=False)\nlearn.lr_find(end_lr=1)\n"
    "learn.recorder.plot()\nplt.ylim(0, 10);": 1,
    # into the user's Axes, the call last in the cell: the user's figure, once
    "fig2, ax = plt.subplots()\nopen_image(img_file).show(ax=ax)": 1,
    "_, axs = plt.subplots(1, 2)\ndata.show_batch(max_n=2, ctxs=axs)": 1,
}


@pytest.mark.slow
def test_plots_show_once_wherever_they_are_called(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_spec(tmp_path / "jupyter")))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("FASTCORE_EXT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for name in ("FASTCORE_EXT_PLOTS", "FASTCORE_EXT_DATA", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)
    setup = (
        "from fastcore_ext.vision import *\n"
        "path = demo_dataset(n_per_class=4, size=32)\n"
        "data = ImageDataBunch.from_folder(path, size=32, bs=8, num_workers=0)\n"
        "img_file = get_image_files(path)[0]\n"
        "data.show_batch(rows=2)"  # the cell importing pyplot: before IPython's inline set-up
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in [setup, *PLOT_CELLS]]
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=120, resources={"metadata": {"path": str(work)}}
    )
    client.execute()

    cells = {_source(c): c for c in nb.cells}
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert errors == []
    for src, n in {setup: 1, **PLOT_CELLS}.items():
        outputs = cells[src].outputs
        pngs = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == n, f"{src!r}: {len(pngs)} images, outputs {outputs}"
        text = "".join(o.get("data", {}).get("text/plain", "") for o in outputs if o not in pngs)
        assert "Figure" not in text, f"{src!r}: a figure shown as text: {text}"
    after = "".join(o.get("text", "") for o in cells[list(PLOT_CELLS)[1]].outputs)
    assert after == "after\n"
    mine = "".join(o.get("text", "") for o in cells[list(PLOT_CELLS)[10]].outputs)
    assert mine == "True mine\n"
    assert _listing(work) == ["mine.png"]  # the library saved nothing in a notebook
    assert np.asarray(Image.open(work / "mine.png").convert("L")).std() > 10  # not blank
