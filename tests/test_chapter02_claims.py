"""Claims of chapter 2 (initialization) that need more runs than the chapter can afford, and its exercises."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sigprop.data import load_digits_split
from sigprop.diagnostics import layer_stats
from sigprop.init import fan_in_and_fan_out, initialize, lsuv_
from sigprop.models import mlp
from sigprop.train import fit


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def fresh(digits, init, depth=20, width=64, activation="relu", seed=0, gain=1.0):
    """The chapter's `fresh`: an MLP for the digits with a sigprop.init scheme, 'lsuv', or PyTorch's default."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = mlp(64, 10, depth=depth, width=width, activation=activation, init="default", generator=g)
    if init == "lsuv":
        lsuv_(net, digits.x_train[:256], generator=g)
    else:
        initialize(net, init, nonlinearity=activation, gain=gain, generator=g)
    return net


def train_deep(digits, net):
    return fit(net, digits, epochs=12, batch_size=32, lr=0.005, momentum=0.9,
               generator=torch.Generator().manual_seed(0), progress=False)


@pytest.mark.parametrize("seed", [1, 2])
def test_deep_relu_he_orthogonal_lsuv_learn_xavier_does_not(digits, seed):
    """Section 'Training a 20-layer ReLU network', with the two seeds the chapter does not show."""
    epochs = {init: train_deep(digits, fresh(digits, init, seed=seed)).epochs_to(0.8)
              for init in ("kaiming_normal", "orthogonal", "lsuv")}
    assert all(e is not None for e in epochs.values()), epochs
    assert max(epochs["orthogonal"], epochs["lsuv"]) <= epochs["kaiming_normal"], epochs
    xavier = train_deep(digits, fresh(digits, "xavier_normal", seed=seed))
    assert max(xavier.test_accuracy) < 0.3, xavier.test_accuracy


def test_wider_xavier_network_still_stalls(digits):
    """'A larger network converges better even with a poor initialization': not at width 256."""
    history = train_deep(digits, fresh(digits, "xavier_normal", width=256))
    assert max(history.test_accuracy) < 0.3, history.test_accuracy


def _moment_gain(f, n=1_000_000):
    z = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return 1 / f(z).pow(2).mean().sqrt().item()


def _std_1_and_30(digits, activation, gain):
    net = mlp(64, 10, depth=30, width=64, activation=activation)
    initialize(net, "kaiming_normal", nonlinearity="linear", gain=gain, generator=torch.Generator().manual_seed(0))
    s = layer_stats(net, digits.x_train[:256], digits.y_train[:256], sample_size=1).activation_std
    return s[0], s[29]


def test_ex2_moment_gains_elu_holds_gelu_does_not(digits):
    g_gelu, g_elu = _moment_gain(F.gelu), _moment_gain(F.elu)
    assert 1.52 < g_gelu < 1.55 and 1.23 < g_elu < 1.27
    first, last = _std_1_and_30(digits, "elu", g_elu)
    assert 0.7 < last / first < 1.3                      # 0.90 -> 0.85
    first, last = _std_1_and_30(digits, "elu", math.sqrt(2))
    assert last / first > 1.8                            # 1.0 -> 2.4
    first, last = _std_1_and_30(digits, "gelu", g_gelu)
    assert last / first > 4                              # 0.89 -> 5.8
    first, last = _std_1_and_30(digits, "gelu", math.sqrt(2))
    assert last / first < 0.6                            # 0.82 -> 0.34


def test_ex4_fans():
    assert fan_in_and_fan_out(nn.Conv2d(3, 64, 7).weight) == (147, 3136)
    assert fan_in_and_fan_out(nn.Conv2d(64, 64, 3, groups=64).weight) == (9, 576)
    assert fan_in_and_fan_out(nn.Conv1d(128, 256, 5).weight) == (640, 1280)


def test_ex5_compromise_drifts():
    assert (2 / 3) ** 5 == pytest.approx(0.13, abs=0.005)
    assert (4 / 3) ** 5 == pytest.approx(4.2, abs=0.05)


def test_ex6_orthogonal_without_relu_gain_behaves_like_xavier(digits):
    net = fresh(digits, "orthogonal", gain=1 / math.sqrt(2))
    s = layer_stats(net, digits.x_train[:256], digits.y_train[:256], sample_size=1).activation_std
    assert 0.64 < (s[19] / s[0]) ** (1 / 19) < 0.73
    assert max(train_deep(digits, net).test_accuracy) < 0.3


def test_ex1_uniform_variance_and_he_bound():
    a = math.sqrt(6 / 100)
    u = torch.empty(1_000_000).uniform_(-a, a, generator=torch.Generator().manual_seed(0))
    assert u.var().item() == pytest.approx(a**2 / 3, rel=0.01) == pytest.approx(2 / 100, rel=0.01)


def test_ex3_leaky_relu_second_moment():
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for slope in (0.01, 0.2, math.sqrt(5)):
        assert (F.leaky_relu(z, slope) ** 2).mean().item() == pytest.approx((1 + slope**2) / 2, rel=0.01)


def test_he_drift_is_random_xavier_drift_is_systematic(digits):
    """Section 'Is He's rule exactly flat?': He's 50-layer ratio scatters around 1, Xavier's is 2^-24.5."""
    he, xavier = [], []
    for seed in range(5, 10):  # seeds the chapter does not use
        for init, out in (("kaiming_normal", he), ("xavier_normal", xavier)):
            s = layer_stats(fresh(digits, init, depth=50, seed=seed), digits.x_train[:256], digits.y_train[:256],
                            sample_size=1).activation_std
            out.append(s[49] / s[0])
    assert np.all((np.array(he) > 0.03) & (np.array(he) < 3)), he
    assert np.all((np.array(xavier) ** (1 / 49) > 0.66) & (np.array(xavier) ** (1 / 49) < 0.72)), xavier
