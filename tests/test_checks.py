"""checks: the shared argument checks take Python, numpy and one-element torch numbers alike
and hand back Python ints and floats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastcore_ext.checks import check_int, check_number, check_real, int_or_none, real_or_none


@pytest.mark.parametrize(
    "value", [8, np.int64(8), np.int32(8), np.uint8(8), torch.tensor(8), torch.tensor([8])]
)
def test_check_int_takes_any_integer_and_returns_a_python_int(value):
    got = check_int("bs", value, 1)
    assert got == 8 and type(got) is int


@pytest.mark.parametrize(
    "value", [True, np.float64(8.0), 8.0, "8", torch.tensor(8.0), torch.tensor(True), None]
)
def test_check_int_refuses_what_is_not_an_integer(value):
    with pytest.raises(TypeError, match="bs should be an int, got"):
        check_int("bs", value, 1)


def test_check_int_range_names_the_argument():
    with pytest.raises(ValueError, match="bs should be >= 1, got 0"):
        check_int("bs", np.int64(0), 1)


@pytest.mark.parametrize(
    "value",
    [
        1e-3,
        np.float64(1e-3),
        np.float32(1e-3),
        np.float16(1e-3),
        torch.tensor(1e-3),
        torch.tensor([1e-3]),
        torch.tensor(1e-3, dtype=torch.float64),
        torch.tensor(1e-3, dtype=torch.bfloat16),
    ],
)
def test_real_checks_take_numpy_and_tensor_floats(value):
    expected = float(value.item()) if isinstance(value, torch.Tensor) else float(value)
    for got in (check_real("lr", value), check_number("lr", value, 0.0), real_or_none(value)):
        assert got == expected and type(got) is float


@pytest.mark.parametrize(
    "value", [True, np.bool_(True), torch.tensor(True), torch.tensor([1.0, 2.0]), "1", 1j, None]
)
def test_real_checks_refuse_what_is_not_one_real_number(value):
    assert real_or_none(value) is None
    with pytest.raises(TypeError, match="lr should be a real number, got"):
        check_real("lr", value)
    with pytest.raises(TypeError, match="lr should be a number, got"):
        check_number("lr", value, 0.0)


def test_int_or_none_gives_python_ints():
    assert type(int_or_none(np.int64(3))) is int and int_or_none(np.bool_(True)) is None
    assert int_or_none(torch.tensor(True)) is None and int_or_none(3.0) is None
