"""The compiled library loads and registers every op schema."""

import torch

from fastcore_ext import _ext


def test_ops_registered():
    _ext.load()
    schema = str(torch.ops.fastcore_ext.augment_normalize.default._schema)
    assert schema.startswith("fastcore_ext::augment_normalize(Tensor images, Tensor matrices")


def test_load_is_idempotent():
    _ext.load()
    _ext.load()
