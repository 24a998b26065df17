"""Shared fixtures: the device parametrization and an isolated data/cache folder."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each test that takes `device` runs on the CPU and, when present, on CUDA."""
    return torch.device(request.param)


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Data, caches and plots of the test session go to a temporary folder, never to $HOME;
    so do the temporary files of the processes the tests start."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("fastcore_ext_home")
    mp.setenv("FASTCORE_EXT_HOME", str(home))
    mp.setenv("FASTCORE_EXT_PLOTS", str(home / "plots"))  # not ./plots in the repository
    mp.delenv("FASTCORE_EXT_DATA", raising=False)
    # the processes the tests start (torchrun leaves a torchelastic_* folder per launch)
    # make their temporary files here too, not in the machine's /tmp
    mp.setenv("TMPDIR", str(tmp_path_factory.mktemp("tmp")))
    yield home
    mp.undo()


@pytest.fixture(autouse=True)
def _default_plot_dir():
    """A test (or a script it runs in-process) that calls set_plot_dir affects only itself."""
    yield
    from fastcore_ext.plots import set_plot_dir

    set_plot_dir(None)
