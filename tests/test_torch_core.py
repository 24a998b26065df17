"""tensor, to_np, trainable_params: fastai.torch_core's behaviour on tiny inputs, by hand."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import PIL.Image
import pytest
import torch
from torch import nn

from fastcore_ext.torch_core import tensor, to_float, to_np, trainable_params


def test_tensor_of_lists_numbers_and_several_values():
    targ = tensor([0, 1, 0, 1, 1, 0])  # fastbook ch. 5
    assert targ.dtype == torch.int64 and targ.tolist() == [0, 1, 0, 1, 1, 0]
    x = tensor(1.5, 2.5, 3.5)
    assert x.dtype == torch.float32 and x.tolist() == [1.5, 2.5, 3.5]
    assert tensor([[0.02, 0.49], [0.3, 0.1]]).dtype == torch.float32  # not float64
    assert tensor(3).dtype == torch.int64 and tensor(3).item() == 3
    assert tensor([1, 2], dtype=torch.float16).dtype == torch.float16
    assert tensor([1.0], requires_grad=True).requires_grad


def test_tensor_of_arrays_images_and_tensors():
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    t = tensor(a)
    assert t.dtype == torch.int32 and t.tolist() == [[0, 1, 2], [3, 4, 5]]
    a[0, 0] = 9
    assert t[0, 0] == 9  # shared, as torch.as_tensor
    assert tensor(np.array([0.5])).dtype == torch.float32
    assert tensor(np.array([7], dtype=np.uint16)).dtype == torch.float32
    img = PIL.Image.new("RGB", (3, 2), (10, 20, 30))
    px = tensor(img)
    assert px.shape == (2, 3, 3) and px.dtype == torch.uint8 and px[1, 2].tolist() == [10, 20, 30]
    same = torch.ones(2)
    assert tensor(same) is same
    with pytest.raises(TypeError, match="tensor: x should hold numbers, got dict"):
        tensor({"a": 1})


def test_to_np():
    t = torch.tensor([[1.0, 2.0]], requires_grad=True) * 2
    a = to_np(t)
    assert isinstance(a, np.ndarray) and a.tolist() == [[2.0, 4.0]]
    b = to_np(torch.tensor([1.5], dtype=torch.bfloat16))
    assert b.dtype == np.float32 and b.tolist() == [1.5]
    pair = to_np((torch.tensor([1]), [torch.tensor([2.0])]))
    assert isinstance(pair, tuple) and pair[0].tolist() == [1] and pair[1][0].tolist() == [2.0]
    Pred = namedtuple("Pred", "probs targs")
    got = to_np(Pred(torch.tensor([0.5]), torch.tensor([1])))
    assert type(got) is Pred and got.probs.tolist() == [0.5]
    assert to_np({"x": torch.tensor([3])})["x"].tolist() == [3]
    arr = np.zeros(2)
    assert to_np(arr) is arr
    with pytest.raises(TypeError, match="to_np: x should be a tensor"):
        to_np("text")


def test_trainable_params():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    assert len(trainable_params(m)) == 6
    for p in m[0].parameters():
        p.requires_grad_(False)
    got = trainable_params(m)
    assert [id(p) for p in got] == [id(p) for p in [*m[1].parameters(), *m[2].parameters()]]
    with pytest.raises(TypeError, match="m should be an nn.Module, got list"):
        trainable_params([])


def test_to_float_makes_the_floating_tensors_of_a_structure_float32():
    Out = namedtuple("Out", "logits idx")
    x = {
        "a": (torch.ones(2, dtype=torch.bfloat16), [torch.zeros(1, dtype=torch.float16)]),
        "b": Out(torch.ones(1, dtype=torch.float64), torch.arange(3)),
        "c": "text",
    }
    y = to_float(x)
    assert y["a"][0].dtype == y["a"][1][0].dtype == y["b"].logits.dtype == torch.float32
    assert type(y["b"]) is Out and y["b"].idx.dtype == torch.int64 and y["c"] == "text"
    t = torch.ones(2)
    assert to_float(t) is t
