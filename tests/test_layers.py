"""fastai's Lambda and sequential (fastcore_ext.layers)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastcore_ext.layers import Lambda, sequential


def test_sequential_wraps_functions_as_fastbook_writes_it():
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(4, 3), nn.Linear(3, 1)
    model = sequential(lin1, F.relu, lin2)
    assert isinstance(model, nn.Sequential) and isinstance(model[1], Lambda)
    x = torch.randn(5, 4)
    torch.testing.assert_close(model(x), lin2(F.relu(lin1(x))))
    assert [p.shape for p in model.parameters()] == [(3, 4), (3,), (1, 3), (1,)]
    assert "Lambda(relu)" in repr(model)


def test_lambda_and_sequential_refuse_what_is_no_function():
    with pytest.raises(TypeError, match="argument 1 should be an nn.Module or a function"):
        sequential(nn.Linear(2, 2), 3)
    with pytest.raises(TypeError, match=r"a class: pass an instance, e\.g\. nn\.ReLU\(\)"):
        sequential(nn.ReLU)
    with pytest.raises(TypeError, match="func should be a function"):
        Lambda("relu")
    assert Lambda(torch.flatten)(torch.ones(2, 3)).shape == (6,)


def test_sequential_of_an_ordered_dict_keeps_the_names():
    from collections import OrderedDict

    model = sequential(OrderedDict([("lin", nn.Linear(2, 3)), ("act", F.relu)]))
    assert [name for name, _ in model.named_children()] == ["lin", "act"]
    assert isinstance(model.act, Lambda) and model(torch.ones(1, 2)).shape == (1, 3)
