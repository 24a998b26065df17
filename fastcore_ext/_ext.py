"""Load the compiled kernels (fastcore_ext._C) or fail with an error that says why.

There is no pure-Python fallback: a missing or broken build is an error, never a silent
slow path.
"""

import importlib
import os

import torch

_loaded = False


def load() -> None:
    """Import fastcore_ext._C, which registers the ops under torch.ops.fastcore_ext."""
    global _loaded
    if _loaded:
        return
    try:
        importlib.import_module("fastcore_ext._C")
    except ImportError as e:
        here = os.path.dirname(os.path.abspath(__file__))
        raise ImportError(
            f"fastcore_ext's compiled kernels (fastcore_ext._C) could not be loaded from {here}: "
            f"{e}. Build them against the torch that runs them (torch {torch.__version__}): "
            "`pip install --no-build-isolation .` (or `make install`) in the project folder. "
            "A build made for another torch or Python version cannot load."
        ) from e
    _loaded = True


def has_cuda_kernels() -> bool:
    """True when the CUDA kernels were compiled into _C (FORCE_CUDA=1 or a GPU at build time)."""
    load()
    return torch._C._dispatch_has_kernel_for_dispatch_key("fastcore_ext::augment_normalize", "CUDA")
