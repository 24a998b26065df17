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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", OPS)
def test_op_has_a_cuda_kernel_where_a_gpu_is(name):
    """setup.py builds the CUDA kernels wherever a GPU is visible: a build that left them out
    would run every op on the CPU path of a GPU machine or fail to dispatch."""
    assert _ext.has_cuda_kernels()
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastcore_ext::{name}", "CUDA")
