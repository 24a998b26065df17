"""Every plot returns its Figure and, outside a notebook, writes a PNG of figsize x dpi pixels
that is not blank, under ./plots (or the folder set_plot_dir / FASTCORE_EXT_PLOTS names),
never under the learner's or the bunch's path; the shared helper's saving is atomic, says
where once, and is off inside a Jupyter kernel or when asked."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import make_learner
from matplotlib.figure import Figure
from PIL import Image

from fastcore_ext import plots
from fastcore_ext.augment import get_transforms
from fastcore_ext.data import ImageDataBunch, demo_dataset
from fastcore_ext.files import PLOTS_MARKER
from fastcore_ext.interpret import ClassificationInterpretation
from fastcore_ext.metrics import accuracy, error_rate

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

MIN_VARIANCE = 300.0  # grey levels^2 of the whole PNG; a blank (one-color) image has 0
MIN_INK = 1e-3  # fraction of the pixels that the plotted data itself changes


@pytest.fixture(autouse=True)
def _plots_in_tmp_cwd(monkeypatch, tmp_path):
    """Each test runs in its own working directory with the default plot dir."""
    monkeypatch.delenv(plots.PLOTS_ENV, raising=False)
    monkeypatch.setattr(plots, "_data_roots", [])
    monkeypatch.chdir(tmp_path)


def _pixels(fig: Figure) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.int16)


def check_png(path: Path, fig: Figure) -> None:
    """The PNG exists, has the figure's size in pixels, its grey levels vary (not blank), and
    the data drawn (lines, images, cell texts, markers) changes at least MIN_INK of its pixels
    (not an empty frame with axes and labels only). Strips the figure's data afterwards."""
    assert isinstance(fig, Figure)
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as img:
        assert img.format == "PNG"
        w, h = fig.get_size_inches() * fig.dpi
        assert img.size == (round(w), round(h))
        saved = np.asarray(img.convert("RGB"), dtype=np.int16)
    grey = saved.mean(axis=2)
    assert grey.var() > MIN_VARIANCE, f"{path.name} looks blank (variance {grey.var():.1f})"
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.images, *ax.collections, *ax.patches, *ax.texts]:
            artist.remove()
    ink = (np.abs(saved - _pixels(fig)).max(axis=2) > 0).mean()
    assert ink > MIN_INK, f"{path.name} shows no data (only {ink:.2%} of pixels are data)"


def test_blank_figures_fail_the_check(tmp_path):
    """The check itself: an empty figure and a figure of empty axes are rejected."""
    empty = Figure(figsize=(4, 3))
    with pytest.raises(AssertionError, match="blank"):
        check_png(plots.save_png(empty, tmp_path / "empty.png"), empty)
    frame = Figure(figsize=(4, 3))
    ax = frame.add_subplot()
    ax.set_title("title")
    ax.set_xlabel("x")
    with pytest.raises(AssertionError, match="no data"):
        check_png(plots.save_png(frame, tmp_path / "frame.png"), frame)


# ---- the shared helper ----------------------------------------------------------------------
def _line_figure() -> Figure:
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2, 3], [0, 3, 1, 2], linewidth=6)
    ax.fill_between([0, 3], [0, 0], [1, 1], color="C1")
    return fig


def test_finish_saves_in_the_working_directory_and_names_each_file(tmp_path, capsys):
    fig = _line_figure()
    assert plots.finish(fig, "my plot/v1") is fig
    path = tmp_path / "plots" / "my_plot_v1.png"
    check_png(path, fig)
    assert plots.saved_file(fig) == path
    assert capsys.readouterr().out.splitlines() == [
        "Plot saved: plots/my_plot_v1.png (fastcore_ext.plots.set_plot_dir to change the folder)"
    ]
    first = path.read_bytes()
    second = _line_figure()
    second.axes[0].plot([0, 3], [3, 0], linewidth=8, color="C3")  # another picture
    plots.finish(second, "my plot/v1")  # the same name again: a file of its own
    plots.finish(_line_figure(), "other")
    plots.finish(_line_figure(), "my plot/v1")
    assert capsys.readouterr().out.splitlines() == [
        "Plot saved: plots/my_plot_v1-2.png",
        "Plot saved: plots/other.png",
        "Plot saved: plots/my_plot_v1-3.png",
    ]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir() if p.name != PLOTS_MARKER) == [
        "my_plot_v1-2.png",
        "my_plot_v1-3.png",
        "my_plot_v1.png",
        "other.png",
    ]
    assert path.read_bytes() == first  # the first plot is kept
    check_png(tmp_path / "plots" / "my_plot_v1-2.png", second)
    assert plots.saved_file(second) == tmp_path / "plots" / "my_plot_v1-2.png"


def test_finish_replaces_an_earlier_figure_silently(tmp_path, capsys):
    """A graph redrawn after each epoch (ShowGraph) updates its own file; the next series of
    redraws gets a new one."""
    first = plots.finish(_line_figure(), "graph")
    update = _line_figure()
    update.axes[0].plot([0, 3], [3, 0], linewidth=8, color="C3")
    plots.finish(update, "graph", replaces=first)
    assert plots.saved_file(update) == tmp_path / "plots" / "graph.png"
    check_png(tmp_path / "plots" / "graph.png", update)
    plots.finish(_line_figure(), "graph", replaces=None)  # a new series
    assert sorted(p.name for p in (tmp_path / "plots").iterdir() if p.name != PLOTS_MARKER) == [
        "graph-2.png",
        "graph.png",
    ]
    assert [line.split(" (")[0] for line in capsys.readouterr().out.splitlines()] == [
        "Plot saved: plots/graph.png",
        "Plot saved: plots/graph-2.png",
    ]
    with pytest.raises(TypeError, match="replaces should be a matplotlib Figure or None, got"):
        plots.finish(_line_figure(), "graph", replaces="graph.png")


def test_outside_the_working_directory_the_path_is_absolute(tmp_path, capsys):
    plots.set_plot_dir(tmp_path / "elsewhere")
    (tmp_path / "work").mkdir()
    os.chdir(tmp_path / "work")
    plots.finish(_line_figure(), "x")
    shown = (tmp_path / "elsewhere" / "x.png").resolve()
    assert capsys.readouterr().out.startswith(f"Plot saved: {shown} (")


def test_shown_not_saved_inside_a_jupyter_kernel(tmp_path, monkeypatch, capsys):
    class Kernel:
        kernel = object()
        execution_count = 7

    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: Kernel())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw: shown.append(obj))
    assert plots.in_notebook()
    fig = plots.image_grid(1, None, ["t"], (2, 2))[0]
    assert plots.finish(fig, "x") is fig and isinstance(fig, plots.PlotFigure)
    assert len(shown) == 1 and shown[0]["image/png"].startswith(b"\x89PNG")
    assert shown[0]["text/plain"].startswith("<PlotFigure size")
    fig._ipython_display_()  # the same cell's result: not shown again
    assert len(shown) == 1
    Kernel.execution_count = 8  # a later cell: shown again
    fig._ipython_display_()
    assert len(shown) == 2
    plots.finish(_line_figure(), "plain")  # a plain Figure is shown too
    assert len(shown) == 3
    assert not (tmp_path / "plots").exists() and capsys.readouterr().out == ""
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # plain python: saved
    assert not plots.in_notebook()
    plots.finish(_line_figure(), "x")
    assert (tmp_path / "plots" / "x.png").is_file()


def test_set_plot_dir_then_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(plots.PLOTS_ENV, str(tmp_path / "from_env"))
    plots.finish(_line_figure(), "x")
    assert (tmp_path / "from_env" / "x.png").is_file()
    plots.set_plot_dir(tmp_path / "chosen")  # wins over the environment
    plots.finish(_line_figure(), "y")
    assert (tmp_path / "chosen" / "y.png").is_file()
    plots.set_plot_dir(False)
    plots.finish(_line_figure(), "z")
    plots.set_plot_dir(None)
    monkeypatch.setenv(plots.PLOTS_ENV, "off")
    plots.finish(_line_figure(), "w")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == [
        "chosen/y.png",
        "from_env/x.png",
    ]
    with pytest.raises(TypeError, match="folder should be a path, False or None, got 3"):
        plots.set_plot_dir(3)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "plots" / "p.png"
    plots.save_png(_line_figure(), path)
    before = path.read_bytes()

    def broken_savefig(self, f, **kwargs):
        f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(KeyboardInterrupt):
        plots.save_png(_line_figure(), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["p.png"]  # no temporary file left


def test_finish_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="fig"):
        plots.finish("not a figure", "x")
    with pytest.raises(ValueError, match="name"):
        plots.finish(_line_figure(), "///")
    with pytest.raises(ValueError, match="figsize"):
        plots.check_figsize((3, 0), (1, 1))
    assert plots.check_figsize(None, (6, 4)) == (6, 4)


# ---- recorder plots -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A learner after lr_find and then a 2-epoch fit with two metrics, path in a tmp folder."""
    learn = make_learner(metrics=[accuracy, error_rate], path=tmp_path_factory.mktemp("learn"))
    learn.lr_find(num_it=30)
    sweep = (
        list(learn.recorder.group_lrs),
        list(learn.recorder.losses),
        learn.recorder.suggestions,
    )
    learn.fit_one_cycle(2, slice(1e-3, 1e-2))
    return learn, sweep


def test_recorder_plots_write_pngs(fitted, tmp_path):
    learn, _ = fitted
    rec, folder = learn.recorder, tmp_path / "plots"
    fig = rec.plot_losses()
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["Train", "Validation"]
    assert list(lines[1].get_xdata()) == [rec.nb_batches[0], sum(rec.nb_batches)]
    assert list(lines[1].get_ydata()) == rec.valid_losses
    check_png(folder / "losses.png", fig)

    fig = rec.plot_lr()
    assert len(fig.axes[0].get_lines()) == 2 and fig.axes[0].get_yscale() == "log"  # 10x apart
    check_png(folder / "lr.png", fig)
    fig = rec.plot_lr(show_moms=True)
    assert [ax.get_ylabel() for ax in fig.axes] == ["Learning rate", "Momentum"]
    check_png(folder / "lr_moms.png", fig)

    fig = rec.plot_metrics()
    assert [ax.get_title() for ax in fig.axes] == ["accuracy", "error_rate"]
    for k, ax in enumerate(fig.axes):
        assert list(ax.get_lines()[0].get_ydata()) == [m[k] for m in rec.metrics]
        assert list(ax.get_xticks()) == rec.epochs  # one tick per epoch, whole numbers
    check_png(folder / "metrics.png", fig)


@contextlib.contextmanager
def lr_find_run(rec, lrs, losses, suggestions):
    """The recorder holding a given lr_find run, put back afterwards."""
    saved = (rec.group_lrs, rec.losses, rec.suggestions, rec.suggestion_points)
    rec.group_lrs, rec.losses, rec.suggestions = lrs, losses, suggestions
    rec.suggestion_points = None  # marked at the recorded loss nearest each suggestion
    try:
        yield rec
    finally:
        rec.group_lrs, rec.losses, rec.suggestions, rec.suggestion_points = saved


def test_lr_find_plot_writes_png(fitted, tmp_path):
    learn, (lrs, losses, suggestions) = fitted
    with lr_find_run(learn.recorder, lrs, losses, suggestions) as rec:
        fig = rec.plot(skip_start=2, skip_end=2, figsize=(5, 3.5))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() == "Learning rate finder"
    assert list(ax.get_lines()[0].get_xdata()) == [g[-1] for g in lrs[2:-2]]
    assert [t.get_text().split(":")[0] for t in ax.get_legend().get_texts()] == [
        "valley",
        "steep",
        "minimum",
    ]
    check_png(tmp_path / "plots" / "lr_find.png", fig)
    assert not (learn.path / "plots").exists()


def test_lr_find_plot_with_fastai_v1_suggestion(fitted, capsys):
    learn, (lrs, losses, suggestions) = fitted
    with lr_find_run(learn.recorder, lrs, losses, suggestions) as rec:
        capsys.readouterr()
        fig = rec.plot(suggestion=True)
        assert capsys.readouterr().out.startswith(
            f"Min numerical gradient: {suggestions.steep:.2E}\n"
            f"Min loss divided by 10: {suggestions.minimum:.2E}\n"
        )  # (then the file saved)
        assert rec.min_grad_lr == suggestions.steep and fig.axes[0].get_legend() is not None
        fig = rec.plot(suggestion=False)
        assert fig.axes[0].get_legend() is None
        assert capsys.readouterr().out == "Plot saved: plots/lr_find-2.png\n"
        with pytest.raises(TypeError, match="suggestion should be a bool"):
            rec.plot(suggestion=1)


def test_recorder_plot_errors(fitted):
    learn, _ = fitted
    rec = learn.recorder
    with pytest.raises(ValueError, match="figsize"):
        rec.plot_losses(figsize=(0, 3))
    with pytest.raises(ValueError, match="skip_start"):
        rec.plot_lr(skip_start=-1)
    with pytest.raises(ValueError, match="skip_end"):
        rec.plot_losses(skip_end=1.5)
    bare = make_learner()
    bare.fit(1)
    with pytest.raises(ValueError, match="metrics="):
        bare.recorder.plot_metrics()


def test_skip_keeps_at_least_two_batches(fitted):
    learn, _ = fitted
    rec = learn.recorder
    n = len(rec.losses)
    fig = rec.plot_losses(skip_start=3, skip_end=2)
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == list(range(4, n - 1))
    fig = rec.plot_losses(skip_start=n)  # nothing would be left: everything is drawn
    assert len(fig.axes[0].get_lines()[0].get_xdata()) == n


# ---- show_batch and the interpretation plots on real image files ----------------------------
@pytest.fixture(scope="module")
def bunch(tmp_path_factory):
    root = demo_dataset(tmp_path_factory.mktemp("plots_demo") / "demo", n_per_class=4, size=32)
    data = ImageDataBunch.from_folder(
        root, ds_tfms=get_transforms(), size=24, bs=8, num_workers=0, seed=0
    ).normalize(([0.5] * 3, [0.25] * 3))
    assert data.path == root
    return data


def test_show_batch_writes_pngs(bunch, tmp_path):
    before = sorted(bunch.path.rglob("*"))
    fig = bunch.show_batch(rows=2, figsize=(4, 4))
    check_png(tmp_path / "plots" / "show_batch_train.png", fig)
    fig = bunch.show_batch(rows=3, ds_type="valid")
    check_png(tmp_path / "plots" / "show_batch_valid.png", fig)
    assert sorted(bunch.path.rglob("*")) == before  # nothing written into the data set


def test_loader_show_batch_writes_pngs(bunch, tmp_path):
    """dls.train / dls.valid.show_batch and unique=True: each its own file, nothing in the
    data set."""
    before = sorted(bunch.path.rglob("*"))
    folder = tmp_path / "plots"
    check_png(folder / "show_batch_train.png", bunch.train.show_batch(max_n=4, nrows=1))
    check_png(folder / "show_batch_valid.png", bunch.valid.show_batch(nrows=1, ncols=3))
    check_png(
        folder / "show_batch_train_unique.png",
        bunch.train.show_batch(max_n=8, nrows=2, unique=True),
    )
    check_png(folder / "show_batch_train_unique-2.png", bunch.show_batch(rows=2, unique=True))
    assert sorted(bunch.path.rglob("*")) == before


def test_show_batch_of_a_given_batch_into_given_axes(bunch, tmp_path):
    """fastai v2's b (also as the first positional argument) and ctxs: the batch given is
    shown (its labels as titles, its pixels denormalized); into the user's Axes nothing is
    saved and their Figure comes back."""
    import matplotlib.pyplot as plt

    x, y = bunch.valid.one_batch()
    expected = [bunch.classes[k] for k in y[:4].tolist()]
    for fig in (bunch.valid.show_batch(b=(x, y), max_n=4), bunch.show_batch((x, y), max_n=4)):
        shown = [ax for ax in fig.axes if ax.get_images()]
        assert [ax.get_title() for ax in shown] == expected
        pixels = np.asarray(shown[0].get_images()[0].get_array())
        np.testing.assert_allclose(
            pixels, bunch.valid.decode((x,))[0][0].permute(1, 2, 0).numpy() / 255, atol=1e-6
        )
    assert len(bunch.train.show_batch(b=(x[:3],)).axes) >= 3  # no labels: untitled
    saved = sorted(p.name for p in (tmp_path / "plots").iterdir())
    user, axs = plt.subplots(2, 2)
    assert bunch.train.show_batch(ctxs=axs) is None
    assert all(ax.get_images() for ax in axs.flat)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == saved
    plt.close(user)
    with pytest.raises(TypeError, match="b: expected a batch"):
        bunch.train.show_batch(b=x)
    with pytest.raises(TypeError, match="ctxs should be matplotlib Axes"):
        bunch.train.show_batch(ctxs="axes")
    with pytest.raises(ValueError, match="b, unique"):
        bunch.train.show_batch(b=(x, y), unique=True)


def test_interpretation_plots_write_pngs(bunch, tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, bunch.c),
    )
    learn = make_learner(data=bunch, model=model, splitter=None, path=tmp_path)
    learn.progress.stream = io.StringIO()
    interp = ClassificationInterpretation.from_learner(learn)
    folder = tmp_path / "plots"
    check_png(folder / "top_losses.png", interp.plot_top_losses(9, figsize=(8, 7)))
    check_png(folder / "top_losses_smallest.png", interp.plot_top_losses(4, largest=False))
    check_png(folder / "confusion_matrix.png", interp.plot_confusion_matrix())
    check_png(
        folder / "confusion_matrix_normalized.png", interp.plot_confusion_matrix(normalize=True)
    )
    check_png(folder / "confusion_matrix_top4.png", interp.plot_confusion_matrix(top=4))


def test_plots_never_inside_a_data_set(tmp_path, capsys):
    data = tmp_path / "pets"
    (data / "images").mkdir(parents=True)
    plots.keep_out_of(data / "images")
    plots.keep_out_of(data)  # the outermost folder holding the plot dir decides
    os.chdir(data / "images")  # a script run from inside its data set
    plots.finish(_line_figure(), "x")
    assert (tmp_path / "pets_plots" / "x.png").is_file()
    assert f"Plot saved: {tmp_path / 'pets_plots' / 'x.png'} " in capsys.readouterr().out
    plots.set_plot_dir(data / "figures")  # chosen inside too: moved out
    assert plots.plot_dir() == tmp_path / "pets_plots"
    plots.set_plot_dir(tmp_path / "figures")  # outside: kept
    assert plots.plot_dir() == tmp_path / "figures"
    plots.set_plot_dir(None)
    assert not list(data.rglob("*.png"))


def test_script_in_its_data_folder_twice(tmp_path):
    """A user's script run from the folder of its images (from_name_re's pattern would match
    a PNG left there on the next run): both runs pass, plots land beside the folder."""
    import subprocess
    import sys

    images = _pets_style_folder(tmp_path / "pets")
    script = (
        "from fastcore_ext.vision import *\n"
        "p = Path('.')\n"
        "data = ImageDataBunch.from_name_re(p, get_image_files(p), r'/([^/]+)_\\d+.jpg$', "
        "size=32, bs=4, num_workers=0)\n"
        "data.show_batch(rows=2)\n"
        "print(data.classes)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != plots.PLOTS_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", script], cwd=images, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert "['Abyssinian', 'Bengal', 'beagle']" in run.stdout
    assert (tmp_path / "pets_plots" / "show_batch_train.png").is_file()
    assert sorted(p.suffix for p in images.rglob("*") if p.is_file()) == [".jpg"] * 18


def test_plots_of_a_script_without_data_stay_out_of_the_classes(tmp_path):
    """A script that built no data set (open_image + show_image, load_learner + predict) run
    inside one saves into ./plots there; the folder the library made is marked, so the next
    build of the set neither lists its PNGs nor makes it a class."""
    from fastcore_ext.data import ImageDataBunch, get_image_files

    root = tmp_path / "set"
    for k, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            px = np.full((16, 16, 3), 60 + 120 * k + i, np.uint8)
            Image.fromarray(px).save(root / name / f"{i}.png")
    os.chdir(root)  # the script's working directory: inside the data set, never registered
    plots.finish(_line_figure(), "show_image")
    made = root / "plots"
    assert (made / "show_image.png").is_file() and (made / PLOTS_MARKER).is_file()
    assert len(get_image_files(root)) == 8  # the PNG of the plot is not listed
    data = ImageDataBunch.from_folder(root, valid_pct=0.25, seed=0, size=16, bs=2)
    assert data.classes == ["cat", "dog"] and len(data.train_ds) + len(data.valid_ds) == 8
    mine = tmp_path / "figures"  # a folder the user made gets no marker
    mine.mkdir()
    plots.set_plot_dir(mine)
    try:
        plots.finish(_line_figure(), "x")
    finally:
        plots.set_plot_dir(None)
    assert not (mine / PLOTS_MARKER).exists() and len(get_image_files(tmp_path)) == 9


# ---- the lesson script, twice on one folder -------------------------------------------------
def _pets_style_folder(folder: Path, n_per_class: int = 6, size: int = 32) -> Path:
    """Flat folder of <Class>_<number>.jpg files (the Pets layout), one color per class."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, name in enumerate(["Abyssinian", "beagle", "Bengal"]):
        for i in range(1, n_per_class + 1):
            px = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            px[..., k] += 180
            Image.fromarray(px).save(folder / f"{name}_{i}.jpg")
    return folder


@pytest.mark.slow
def test_lesson_script_twice_on_one_folder(tmp_path):
    """The lesson's own code run twice on one Pets-style folder: both runs pass, and the
    folder only gains models/ (fastai's convention); plots land in the working directory."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    # 16 images a class: with 6 (15 training images, two batches) lr_find's losses vary 10x
    # from batch to batch after two epochs (0.07 to 3.7 seen), and stop_div ended one sweep
    # of 8 after a few points (CI, 2026-12-05)
    images = _pets_style_folder(tmp_path / "images", n_per_class=16)
    before = sorted(p.relative_to(images).as_posix() for p in images.rglob("*"))
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != plots.PLOTS_ENV}
    env["TORCH_HOME"] = str(tmp_path / "torch_home")  # no cached weights: from scratch
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(root / "examples" / "lesson1.py"), "--fast", "--images"]
    for run in (1, 2):
        res = subprocess.run(
            [*cmd, str(images)], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, f"run {run}:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
        after = sorted(p.relative_to(images).as_posix() for p in images.rglob("*"))
        new = [p for p in after if p not in before]
        assert new and all(p == "models" or p.startswith("models/") for p in new), new
        assert "final error rate" in res.stdout
    assert (work / "plots" / "show_batch_train.png").is_file()


def test_image_grid_shape_axes_and_title_size():
    from fastcore_ext.plots import image_grid

    fig, axes, size = image_grid(5, None, ["a\nb", "a much longer title line"], cell=(2.0, 2.5))
    assert len(axes) == 5 and len(fig.axes) == 6  # 3 columns x 2 rows, the last cell unused
    assert all(not ax.axison for ax in fig.axes)
    assert tuple(fig.get_size_inches()) == (6.0, 5.4)  # 3 x 2.0 wide, 2 x 2.5 + 0.4 high
    assert 5 <= size <= 12
    _, _, small = image_grid(5, (3, 3), ["a much longer title line"], cell=(2.0, 2.5))
    assert small < size  # a smaller figure gets smaller titles
    assert image_grid(1, None, [], cell=(2.0, 2.5))[0].get_size_inches().tolist() == [4.0, 3.0]


@pytest.mark.parametrize(
    ("k", "nrows", "ncols", "geometry"),
    [
        (9, None, None, (3, 3)),
        (8, None, None, (3, 3)),  # ceil(sqrt(8)) = 3 columns
        (4, 1, None, (1, 4)),
        (4, 3, None, (3, 2)),  # nrows as given, ceil(4 / 3) columns (fastai's get_grid)
        (5, None, 2, (3, 2)),
        (3, 1, 3, (1, 3)),
        (2, 2, 3, (2, 3)),  # more cells than images: the rest blank
    ],
)
def test_image_grid_nrows_ncols(k, nrows, ncols, geometry):
    from fastcore_ext.plots import image_grid

    fig, axes, _ = image_grid(k, None, ["t"], cell=(2.0, 2.0), nrows=nrows, ncols=ncols)
    assert len(axes) == k and len(fig.axes) == geometry[0] * geometry[1]
    assert axes[0].get_subplotspec().get_gridspec().get_geometry() == geometry
    rows, cols = geometry
    assert tuple(fig.get_size_inches()) == (max(4.0, 2.0 * cols), max(3.0, 2.0 * rows + 0.4))


def test_image_grid_bad_nrows_ncols():
    from fastcore_ext.plots import image_grid

    with pytest.raises(ValueError, match="nrows should be >= 1, got 0"):
        image_grid(4, None, [], cell=(2.0, 2.0), nrows=0)
    with pytest.raises(TypeError, match="ncols should be an int, got bool True"):
        image_grid(4, None, [], cell=(2.0, 2.0), ncols=True)
    with pytest.raises(ValueError, match="nrows, ncols: a 1 x 3 grid has fewer than the 4 cells"):
        image_grid(4, None, [], cell=(2.0, 2.0), nrows=1, ncols=3)


# ---- show_image ------------------------------------------------------------------------------
def test_show_image_of_a_tensor_a_pil_image_and_one_channel(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    chw = torch.randint(0, 256, (3, 40, 70), dtype=torch.uint8, generator=g)
    ax = plots.show_image(chw, title="grizzly")
    assert ax.get_title() == "grizzly" and not ax.axison
    drawn = np.asarray(ax.get_images()[0].get_array())
    np.testing.assert_array_equal(drawn, chw.permute(1, 2, 0).numpy())
    assert tuple(ax.figure.get_size_inches()) == (2.0, 2.0)  # 70 // 32, 40 // 32 -> at least 2
    assert plots.saved_file(ax.figure) == tmp_path / "plots" / "show_image.png"
    assert capsys.readouterr().out.startswith("Plot saved: plots/show_image.png")

    pil = Image.fromarray(chw.permute(1, 2, 0).numpy())
    ax = plots.show_image(pil, figsize=(3, 2))
    np.testing.assert_array_equal(np.asarray(ax.get_images()[0].get_array()), np.asarray(pil))
    assert tuple(ax.figure.get_size_inches()) == (3.0, 2.0)
    assert plots.saved_file(ax.figure) == tmp_path / "plots" / "show_image-2.png"

    gray = torch.rand(1, 300, 10, generator=g)
    ax = plots.show_image(gray, cmap="gray")
    assert ax.get_images()[0].get_array().shape == (300, 10)
    assert ax.get_images()[0].get_cmap().name == "gray"
    assert tuple(ax.figure.get_size_inches()) == (2.0, 5.0)  # 2 to 5 inches a side


def test_show_image_into_given_axes(tmp_path):
    fig = Figure()
    axes = fig.subplots(1, 2)
    hwc = np.zeros((8, 8, 3), dtype=np.uint8)
    assert plots.show_image(hwc, ax=axes[0], title="a") is axes[0]
    assert plots.show_image(hwc, ctx=axes[1]) is axes[1]  # fastai's name
    assert axes[0].get_title() == "a" and len(axes[1].get_images()) == 1
    assert not (tmp_path / "plots").exists()  # the caller's figure: not saved
    with pytest.raises(ValueError, match="ax and ctx name the same Axes"):
        plots.show_image(hwc, ax=axes[0], ctx=axes[1])
    with pytest.raises(TypeError, match="ax should be a matplotlib Axes or None, got str"):
        plots.show_image(hwc, ax="left")
    with pytest.raises(
        ValueError, match=r"im should be an image.*got Tensor of shape \(2, 3, 4, 5\)"
    ):
        plots.show_image(torch.zeros(2, 3, 4, 5))
    with pytest.raises(TypeError, match="title should be a str or None"):
        plots.show_image(hwc, title=3)


def test_a_plot_is_pyplots_current_figure_as_fastais(bunch, tmp_path):
    """`dls.show_batch(); plt.savefig(...)` saves the batch (fastai's habit), plt.title titles
    it; with a backend showing no window (Agg here) only the latest library figure stays open
    in pyplot: 25 plots, one figure, no 'more than 20 figures' warning."""
    import matplotlib.pyplot as plt

    plt.close("all")
    fig = bunch.show_batch(rows=2)
    assert plt.gcf() is fig and plt.get_fignums() == [fig.number]
    plt.title("mine")
    plt.savefig(tmp_path / "mine.png")
    check_png(tmp_path / "mine.png", fig)
    with plots.autosave(False), warnings.catch_warnings():
        warnings.simplefilter("error")
        figs = [bunch.show_batch(rows=2) for _ in range(25)]
    assert plt.get_fignums() == [figs[-1].number] and plt.gcf() is figs[-1]
    figs[0].savefig(tmp_path / "first.png")  # closed in pyplot, still a Figure
    user = plt.figure()  # the user's own figures are left alone
    bunch.show_batch(rows=2)
    assert user.number in plt.get_fignums()
    plt.close("all")


def test_with_a_window_backend_every_plot_stays_for_plt_show(bunch, monkeypatch):
    """A backend that shows windows (TkAgg, QtAgg...): plots stay open for plt.show(), as
    fastai's; a figure an update replaces (ShowGraph's) is closed."""
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.setattr(plots, "_backend", lambda: "tkagg")
    with plots.autosave(False):
        figs = [bunch.show_batch(rows=2) for _ in range(3)]
    assert plt.get_fignums() == [f.number for f in figs]
    newer = plots.new_figure()
    newer.add_subplot().plot([0, 1])
    with plots.autosave(False):
        plots.finish(newer, "graph", replaces=figs[-1])
    assert plt.get_fignums() == [figs[0].number, figs[1].number, newer.number]
    plt.close("all")


def test_fastais_subplots_and_show_images(tmp_path, monkeypatch):
    """fastbook ch. 5's subplots and show_images were missing (NameError)."""
    from fastcore_ext.vision import show_images, subplots

    monkeypatch.chdir(tmp_path)
    fig, axs = subplots(2, 3, imsize=2, suptitle="grid")
    assert axs.shape == (2, 3) and tuple(fig.get_size_inches()) == (6, 4)
    assert subplots()[1].shape == (1,)  # one Axes in an array, as fastai's
    ims = [np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 200, np.uint8), torch.rand(3, 8, 8)]
    fig = show_images(ims, titles=["a", "b", "c"])
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c"]
    assert any(p.name.startswith("show_images") for p in (tmp_path / "plots").iterdir())
    assert len([ax for ax in show_images(ims, nrows=2).axes if ax.get_images()]) == 3
    with pytest.raises(ValueError, match=r"ims: 3 images do not fit a grid of 1 x 2"):
        show_images(ims, ncols=2)
    with pytest.raises(ValueError, match=r"titles: expected one per image \(3\), got 1"):
        show_images(ims, titles=["a"])
