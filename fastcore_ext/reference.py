"""Readable pure-torch versions of every op: the specification and the test oracle.

Nothing here is called on a hot path; the tests compare the kernels with these.
"""

import torch

# ---- Kernel 1: fused augmentation + normalization ----------------------------------------

# (augment_normalize_reference goes here)


# ---- Kernel 2: fused optimizer step -------------------------------------------------------

# (the optimizer step references go here)
