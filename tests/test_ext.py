"""The compiled library loads and registers every op schema."""

import pytest
import torch

from fastcore_ext import _ext

OPS = ["augment_normalize", "fused_adam_", "fused_sgd_"]


@pytest.mark.parametrize("name", OPS)
def test_op_registered_with_cpu_kernel(name):
    _ext.load()
    schema = str(getattr(torch.ops.fastcore_ext, name).default._schema)
    assert schema.startswith(f"fastcore_ext::{name}(")
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastcore_ext::{name}", "CPU")


def test_cuda_kernels_flag_matches_dispatcher():
    has = _ext.has_cuda_kernels()
    for name in OPS:
        key = f"fastcore_ext::{name}"
        assert torch._C._dispatch_has_kernel_for_dispatch_key(key, "CUDA") == has
