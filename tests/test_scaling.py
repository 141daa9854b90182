"""The tensor scalers against scikit-learn's, on data with a constant column, on every device."""

import numpy as np
import pytest
import torch
from conftest import DEVICES, FLOAT64_DEVICES, gen
from sklearn import preprocessing

from sigprop.scaling import MaxAbsScaler, MinMaxScaler, NotFittedError, StandardScaler

PAIRS = [
    (lambda: MinMaxScaler(), lambda: preprocessing.MinMaxScaler()),
    (lambda: MinMaxScaler(feature_range=(-1, 3)), lambda: preprocessing.MinMaxScaler(feature_range=(-1, 3))),
    (lambda: StandardScaler(), lambda: preprocessing.StandardScaler()),
    (lambda: StandardScaler(with_mean=False), lambda: preprocessing.StandardScaler(with_mean=False)),
    (lambda: MaxAbsScaler(), lambda: preprocessing.MaxAbsScaler()),
]
IDS = ["minmax", "minmax(-1,3)", "standard", "standard(no mean)", "maxabs"]


def _data(device, dtype=torch.float64):
    """Columns of very different scales, one constant non-zero column and one all-zero column."""
    g = gen(0)
    x = torch.randn(50, 5, generator=g, dtype=torch.float64) * torch.tensor([1.0, 100.0, 1e4, 1.0, 1.0],
                                                                              dtype=torch.float64)
    x[:, 3] = 7.5  # constant: scale 1, never a division by zero
    x[:, 4] = 0.0  # all zeros
    new = torch.randn(20, 5, generator=g, dtype=torch.float64) * 50
    return x.to(device, dtype), new.to(device, dtype)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_scalers_match_scikit_learn_with_constant_columns(ours, theirs, device):
    x, new = _data(device)
    mine, ref = ours().fit(x), theirs().fit(x.cpu().numpy())
    for data in (x, new):
        out = mine.transform(data)
        assert out.device == data.device and out.dtype == data.dtype
        np.testing.assert_allclose(out.cpu().numpy(), ref.transform(data.cpu().numpy()), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(mine.inverse_transform(out).cpu().numpy(), data.cpu().numpy(),
                                   rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(mine.scale_.cpu().numpy(), ref.scale_, rtol=1e-12)
    assert torch.isfinite(mine.transform(x)).all()


@pytest.mark.parametrize("device", DEVICES)
def test_fit_transform_in_float32_follows_the_input_device(device):
    x, _ = _data("cpu", torch.float32)
    scaler = StandardScaler().fit(x)  # fitted on the CPU, used on `device`
    out = scaler.transform(x.to(device))
    assert out.device.type == torch.device(device).type
    torch.testing.assert_close(out.cpu(), StandardScaler().fit_transform(x), rtol=0, atol=1e-6)
    std = out[:, :3].std(dim=0, unbiased=False)
    torch.testing.assert_close(std.cpu(), torch.ones(3), rtol=0, atol=1e-5)  # population std: exactly 1
    assert (out[:, 3:] == 0).all()  # constant columns are centred, not divided by zero


def test_minmax_maps_training_range_and_constant_column_to_the_lower_bound():
    x, _ = _data("cpu")
    out = MinMaxScaler(feature_range=(-2, 2)).fit_transform(x)
    assert out[:, :3].amin(dim=0).eq(-2).all() and torch.allclose(out[:, :3].amax(dim=0),
                                                                  torch.full((3,), 2.0, dtype=out.dtype))
    assert (out[:, 3:] == -2).all()


def test_using_a_scaler_before_fit_is_a_clear_error():
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        StandardScaler().transform(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="not fitted yet"):  # NotFittedError is a ValueError
        MaxAbsScaler().inverse_transform(torch.zeros(3, 2))


def test_a_different_number_of_columns_is_a_clear_error():
    scaler = MinMaxScaler().fit(torch.randn(10, 3, generator=gen(0)))
    with pytest.raises(ValueError, match="x has 2 columns, but this MinMaxScaler was fitted on 3 columns"):
        scaler.transform(torch.zeros(4, 2))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"shape \(N, F\).*got shape \(5,\)"):
        StandardScaler().fit(torch.zeros(5))
    with pytest.raises(TypeError, match="floating-point tensor, got dtype torch.int64"):
        StandardScaler().fit(torch.zeros(5, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor of shape"):
        StandardScaler().fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="0 samples"):
        MaxAbsScaler().fit(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="a < b"):
        MinMaxScaler(feature_range=(1, 0))
    with pytest.raises(TypeError, match="pair of numbers"):
        MinMaxScaler(feature_range=1)
    with pytest.raises(TypeError, match="with_mean must be a bool"):
        StandardScaler(with_mean=1)
