"""Typed Python wrappers of the custom ops (torch.ops.fastcore_ext.*), with their argument
checks and their fake (meta) implementations for torch.compile."""

import torch

from fastcore_ext import _ext

_ext.load()

# ---- Kernel 1: fused augmentation + normalization ----------------------------------------

# (augment_normalize and its fake kernel go here)


# ---- Kernel 2: fused optimizer step -------------------------------------------------------

# (the fused optimizer ops and their fake kernels go here)
