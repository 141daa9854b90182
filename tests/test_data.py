"""Tests for sigprop.data: fixed splits, standardization with training statistics, synthetic sets, errors."""

import math

import pytest
import torch
from conftest import DEVICES, gen
from sklearn.datasets import load_digits

from sigprop.data import DataSplit, load_digits_split, make_multiscale_regression, make_spirals


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def raw_digits():
    return load_digits_split(standardize=False, dtype=torch.float64)


# --- load_digits_split --------------------------------------------------------------------------------


def test_digits_shapes_dtypes_and_classes(digits):
    assert digits.x_train.shape == (1348, 64) and digits.x_test.shape == (449, 64)
    assert digits.y_train.shape == (1348,) and digits.y_test.shape == (449,)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert digits.num_classes == 10 and digits.in_features == 64
    assert digits.name == "digits"
    assert set(torch.cat([digits.y_train, digits.y_test]).tolist()) == set(range(10))


def test_digits_split_partitions_the_whole_dataset(raw_digits):
    full = load_digits()
    labels = torch.cat([raw_digits.y_train, raw_digits.y_test])
    assert torch.equal(torch.bincount(labels, minlength=10), torch.bincount(torch.as_tensor(full.target)))
    # Every image appears exactly once across the two sides: compare the sorted rows.
    ours = torch.cat([raw_digits.x_train, raw_digits.x_test])
    theirs = torch.as_tensor(full.data, dtype=torch.float64)
    key = lambda x: sorted(map(tuple, x.tolist()))
    assert key(ours) == key(theirs)


def test_digits_split_is_fixed_and_ignores_the_global_random_stream(digits):
    torch.manual_seed(12345)
    torch.rand(1000)
    again = load_digits_split()
    for a, b in zip((digits.x_train, digits.y_train, digits.x_test, digits.y_test),
                    (again.x_train, again.y_train, again.x_test, again.y_test), strict=True):
        assert torch.equal(a, b)


def test_digits_split_seed_changes_the_split(digits):
    other = load_digits_split(seed=1)
    assert not torch.equal(digits.y_train, other.y_train)
    assert other.x_train.shape == digits.x_train.shape


def test_digits_standardized_with_training_statistics(digits, raw_digits):
    x = digits.x_train.double()
    raw = raw_digits.x_train
    mean, std = raw.mean(dim=0), raw.std(dim=0, unbiased=False)
    varying = std > 0
    assert 0 < varying.sum() < 64  # the border pixels are constant in training
    torch.testing.assert_close(x.mean(dim=0), torch.zeros(64, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(x.std(dim=0, unbiased=False)[varying],
                               torch.ones(int(varying.sum()), dtype=torch.float64), rtol=0, atol=1e-5)
    assert torch.all(x[:, ~varying] == 0)  # constant pixels are only centred
    # The test set is transformed with the training mean and std, not its own.
    safe_std = torch.where(varying, std, torch.ones_like(std))
    expected_test = (raw_digits.x_test - mean) / safe_std
    torch.testing.assert_close(digits.x_test.double(), expected_test, rtol=1e-6, atol=1e-5)
    assert digits.x_test.mean(dim=0).abs().max() > 1e-3  # so not standardized with its own statistics


def test_digits_raw_mode_keeps_pixel_range_0_to_16(raw_digits):
    x = torch.cat([raw_digits.x_train, raw_digits.x_test])
    assert x.min() == 0 and x.max() == 16
    assert torch.equal(x, x.round())
    assert raw_digits.name == "digits (raw)"


def test_digits_image_mode_reshapes_to_one_channel_8x8(digits):
    images = load_digits_split(image=True)
    assert images.x_train.shape == (1348, 1, 8, 8) and images.x_test.shape == (449, 1, 8, 8)
    assert images.in_features == 64
    assert torch.equal(images.x_train.reshape(-1, 64), digits.x_train)


def test_digits_test_fraction_sets_the_split_size():
    split = load_digits_split(test_fraction=0.5)
    assert len(split.x_test) == round(1797 * 0.5) and len(split.x_train) + len(split.x_test) == 1797


@pytest.mark.parametrize("device", DEVICES)
def test_digits_on_device(device):
    split = load_digits_split(device=device)
    assert split.device.type == device
    assert split.y_test.device.type == device


# --- DataSplit ----------------------------------------------------------------------------------------


def test_datasplit_to_changes_input_dtype_but_not_labels(digits):
    moved = digits.to("cpu", torch.float64)
    assert moved.x_train.dtype == torch.float64 and moved.x_test.dtype == torch.float64
    assert moved.y_train.dtype == torch.int64
    assert moved.num_classes == 10 and moved.name == "digits"
    same = digits.to()
    assert same.x_train.dtype == torch.float32 and same.device.type == "cpu"


def test_datasplit_repr_names_the_shapes(digits):
    text = repr(digits)
    assert "digits" in text and "(1348, 64)" in text and "(449, 64)" in text and "classes=10" in text


def test_datasplit_in_features_of_a_handmade_split():
    split = DataSplit(torch.zeros(5, 3, 4), torch.zeros(5), torch.zeros(2, 3, 4), torch.zeros(2))
    assert split.in_features == 12 and split.num_classes is None


# --- make_spirals -------------------------------------------------------------------------------------


def test_spirals_shapes_and_classes():
    split = make_spirals(50, 3, generator=gen())
    assert split.x_train.shape == (112, 2) and split.x_test.shape == (38, 2)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert split.num_classes == 3 and split.in_features == 2
    labels = torch.cat([split.y_train, split.y_test])
    assert torch.equal(torch.bincount(labels), torch.full((3,), 50))


@pytest.mark.parametrize("k", [2, 5])
def test_spirals_number_of_arms(k):
    split = make_spirals(20, k, generator=gen())
    assert split.num_classes == k
    assert sorted(set(torch.cat([split.y_train, split.y_test]).tolist())) == list(range(k))


def test_spirals_noise_is_angular_so_radii_stay_in_0_05_to_1():
    split = make_spirals(100, 3, noise=0.5, generator=gen())
    r = torch.cat([split.x_train, split.x_test]).norm(dim=1)
    assert r.min() >= 0.05 - 1e-6 and r.max() <= 1.0 + 1e-6


def test_spirals_without_noise_lie_on_the_arms():
    k, turns = 3, 1.0
    split = make_spirals(30, k, noise=0.0, turns=turns, generator=gen())
    x = split.x_train.double()
    r = x.norm(dim=1)
    theta = torch.atan2(x[:, 1], x[:, 0])
    expected = 2 * math.pi * (turns * r + split.y_train.double() / k)
    # Same angle modulo 2 pi: the difference's cosine is 1.
    torch.testing.assert_close(torch.cos(theta - expected), torch.ones_like(r), rtol=0, atol=1e-5)


def test_spirals_are_repeatable_for_a_seed_and_differ_across_seeds():
    a, b, c = make_spirals(40, generator=gen(0)), make_spirals(40, generator=gen(0)), make_spirals(40, generator=gen(1))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.equal(make_spirals(40).x_train, a.x_train)  # no generator: seed 0


@pytest.mark.parametrize("device", DEVICES)
def test_spirals_on_device(device):
    split = make_spirals(20, generator=gen(), device=device)
    assert split.device.type == device and split.y_train.device.type == device


# --- make_multiscale_regression -----------------------------------------------------------------------


def test_multiscale_shapes_and_dtypes():
    split = make_multiscale_regression(100, in_features=5, scales=(1.0, 10.0), generator=gen())
    assert split.x_train.shape == (75, 5) and split.x_test.shape == (25, 5)
    assert split.y_train.shape == (75, 2) and split.y_test.shape == (25, 2)
    assert split.y_train.dtype == torch.float32 and split.x_train.dtype == torch.float32
    assert split.num_classes is None and split.in_features == 5


def test_multiscale_target_std_matches_each_scale():
    scales = (1.0, 100.0, 10_000.0)
    split = make_multiscale_regression(4000, scales=scales, noise=0.1, generator=gen())
    y = torch.cat([split.y_train, split.y_test]).double()
    std = y.std(dim=0)
    # Signal of unit std plus independent noise of std 0.1: std = scale * sqrt(1 + 0.01) = 1.005 scale,
    # up to the noise term's sampling error (~0.1 * sqrt(2 / 4000) relative): 3% is wide.
    torch.testing.assert_close(std / torch.tensor(scales, dtype=torch.float64),
                               torch.full((3,), math.sqrt(1.01), dtype=torch.float64), rtol=0.03, atol=0)
    # The means are small next to the scales: centred signals.
    assert torch.all(y.mean(dim=0).abs() < 0.05 * torch.tensor(scales, dtype=torch.float64))
    # Each training split alone is also within 5% of its scale.
    torch.testing.assert_close(split.y_train.double().std(dim=0) / torch.tensor(scales, dtype=torch.float64),
                               torch.ones(3, dtype=torch.float64), rtol=0.05, atol=0)


def test_multiscale_without_noise_has_exactly_the_scales():
    scales = (2.0, 50.0)
    split = make_multiscale_regression(500, scales=scales, noise=0.0, generator=gen())
    y = torch.cat([split.y_train, split.y_test]).double()
    torch.testing.assert_close(y.std(dim=0), torch.tensor(scales, dtype=torch.float64), rtol=1e-5, atol=0)


def test_multiscale_is_repeatable_for_a_seed():
    a = make_multiscale_regression(200, generator=gen(4))
    b = make_multiscale_regression(200, generator=gen(4))
    c = make_multiscale_regression(200, generator=gen(5))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)


@pytest.mark.parametrize("device", DEVICES)
def test_multiscale_on_device(device):
    split = make_multiscale_regression(40, generator=gen(), device=device)
    assert split.device.type == device and split.y_train.device.type == device


# --- splits that would leave one side empty -----------------------------------------------------------
# A valid-looking test_fraction on a tiny set rounds to zero test (or zero training) samples; fit() then
# fails with ZeroDivisionError deep inside evaluate(). The data functions should refuse up front.


@pytest.mark.parametrize("make", [
    lambda: make_spirals(2, 2, test_fraction=0.1),           # 4 points, round(0.4) = 0 test samples
    lambda: make_spirals(2, 2, test_fraction=0.9),           # round(3.6) = 4 test samples, 0 training
    lambda: make_multiscale_regression(4, test_fraction=0.1),
    lambda: load_digits_split(test_fraction=1e-4),           # round(0.18) = 0 test images
])
def test_split_refuses_to_leave_a_side_empty(make):
    with pytest.raises(ValueError, match="empty"):
        make()


def test_subset_draws_training_samples_with_the_generator_and_keeps_the_test_set():
    digits = load_digits_split()
    small = digits.subset(100, generator=torch.Generator().manual_seed(1))
    idx = torch.randperm(len(digits.x_train), generator=torch.Generator().manual_seed(1))[:100]
    assert torch.equal(small.x_train, digits.x_train[idx]) and torch.equal(small.y_train, digits.y_train[idx])
    assert small.x_test is digits.x_test and small.num_classes == 10 and "100 training samples" in small.name
    assert torch.equal(digits.subset(100).x_train, digits.subset(100).x_train)  # no generator: seed 0
