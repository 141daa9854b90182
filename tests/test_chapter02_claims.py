"""Claims of chapter 2 (initialization) that need more runs than the chapter can afford, and its exercises."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sigprop.data import load_digits_split
from sigprop.diagnostics import layer_stats, per_layer_factor
from sigprop.init import fan_in_and_fan_out, initialize, lsuv_
from sigprop.models import mlp
from sigprop.train import fit


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def fresh(digits, init, depth=20, width=64, activation="relu", seed=0, k=1.0):
    """The chapter's `fresh`: an MLP for the digits with a sigprop.init scheme, 'lsuv', or a float std."""
    g = torch.Generator().manual_seed(seed)
    net = mlp(64, 10, depth=depth, width=width, activation=activation,
              init="default" if isinstance(init, str) else init, generator=g)
    if init == "lsuv":
        lsuv_(net, digits.x_train[:256], generator=g)
    elif isinstance(init, str):
        initialize(net, init, nonlinearity=activation, gain=k, generator=g)
    return net


def train_deep(digits, net):
    return fit(net, digits, epochs=12, batch_size=32, lr=0.005, momentum=0.9,
               generator=torch.Generator().manual_seed(0), quiet=True)


def test_wider_xavier_network_still_stalls(digits):
    """'A larger network converges better even with a poor initialization': not at width 256."""
    history = train_deep(digits, fresh(digits, "xavier_normal", width=256))
    assert max(history.test_accuracy) < 0.4, history.test_accuracy  # "below 40%"


def _second_moments(net, x):
    """q_l = E[h_l^2] after every activation of an MLP, by one forward pass."""
    q, h = [], x
    with torch.no_grad():
        for name, module in net.named_children():
            h = module(h)
            if name.startswith("act"):
                q.append(h.pow(2).mean().item())
    return np.array(q)


def test_finite_width_bias_holds_for_networks_built_by_fresh(digits):
    """Section 'Is He's rule exactly flat?' draws bare batched matrices; the library's networks agree.

    He's rule at width 32, 50 layers: the predicted mean of log(q_50 / q_1) is -5/2 * 49/32 = -3.8, so
    the median network ends far below 1 although E[q_50 / q_1] = 1.
    """
    ratios = []
    for seed in range(20):
        q = _second_moments(fresh(digits, "kaiming_normal", depth=50, width=32, seed=seed),
                            digits.x_train[:64])
        ratios.append(q[-1] / q[0])
    ratios = np.array(ratios)
    assert np.median(ratios) < 0.2 and np.mean(ratios < 1) >= 0.7, ratios
    assert -6 < np.log(ratios).mean() < -2, np.log(ratios).mean()


def _moment_gain(f, n=1_000_000):
    z = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return 1 / f(z).pow(2).mean().sqrt().item()


def _ratios_30(digits, activation, gain, seeds=20):
    """Activation std at layer 30 over layer 1, one value per seed (the moment-gain exercise's solution)."""
    out = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        net = mlp(64, 10, depth=30, width=64, activation=activation, generator=g)
        initialize(net, "kaiming_normal", nonlinearity="linear", gain=gain, generator=g)
        s = layer_stats(net, digits.x_train[:256], digits.y_train[:256], sample_size=1).activation_std
        out.append(s[29] / s[0])
    return np.array(out)


def test_ex2_moment_gains_over_seeds(digits):
    """ELU's moment gain holds over 30 layers; GELU's sits on an unstable balance, mostly growing."""
    g_gelu, g_elu = _moment_gain(F.gelu), _moment_gain(F.elu)
    assert 1.52 < g_gelu < 1.55 and 1.23 < g_elu < 1.27
    elu = _ratios_30(digits, "elu", g_elu)
    assert np.all((elu > 0.5) & (elu < 1.5)), elu                  # "between about 0.6 and 1.4"
    elu_sqrt2 = _ratios_30(digits, "elu", math.sqrt(2))
    assert np.all(elu_sqrt2 > 1.5) and 2 < np.median(elu_sqrt2) < 3.5, elu_sqrt2  # "about 2.5"
    gelu_sqrt2 = _ratios_30(digits, "gelu", math.sqrt(2))
    assert np.all(gelu_sqrt2 < 1) and 0.1 < np.median(gelu_sqrt2) < 0.4, gelu_sqrt2  # "about 0.2"
    gelu = _ratios_30(digits, "gelu", g_gelu)
    assert 17 <= np.sum(gelu > 1) <= 19, gelu                        # "in 19 of 20 seeds"
    assert gelu.max() / gelu.min() > 10 and 3 < np.median(gelu) < 8, gelu


def test_ex5_diagnosis(digits):
    """The raw-pixel Xavier network passes the initial-loss check and hides two faults."""
    raw = load_digits_split(standardize=False)
    net = mlp(64, 10, depth=16, width=64, init="xavier_normal", generator=torch.Generator().manual_seed(0))
    stats = layer_stats(net, raw.x_train[:256], raw.y_train[:256], sample_size=1)
    standardized = layer_stats(net, digits.x_train[:256], digits.y_train[:256], sample_size=1)
    s = stats.activation_std[:-1]
    assert abs(stats.loss - math.log(10)) < 0.01
    assert 6 < s[0] / standardized.activation_std[0] < 8.5        # "about 7 times too hot"
    assert 0.67 < per_layer_factor(s) < 0.71 and s[-1] / s[0] < 0.01 and s[-1] < 0.05
    before = fit(net, raw, epochs=10, lr=0.01, momentum=0.9, quiet=True)
    fixed = mlp(64, 10, depth=16, width=64, init="kaiming_normal", generator=torch.Generator().manual_seed(0))
    after = fit(fixed, digits, epochs=10, lr=0.01, momentum=0.9, quiet=True)
    assert max(before.test_accuracy) < 0.7 and after.epochs_to(0.8) is not None


def test_ex6_fixed_sigma_at_width_512(digits):
    """N(0, 0.05^2) at width 512: sigma sqrt(n/2) = 0.8 per layer, 0.8^19 ~ 0.014 over 20 layers."""
    ratios = []
    for seed in range(20):
        s = layer_stats(fresh(digits, 0.05, depth=20, width=512, seed=seed), digits.x_train[:256],
                        digits.y_train[:256], sample_size=1).activation_std[:-1]
        ratios.append(s[-1] / s[0])
    assert 0.011 < np.median(ratios) < 0.017, np.median(ratios)
    assert 0.78 < np.median(ratios) ** (1 / 19) < 0.81


def test_ex4_fans():
    assert fan_in_and_fan_out(nn.Conv2d(3, 64, 7).weight) == (147, 3136)
    assert fan_in_and_fan_out(nn.Conv2d(64, 64, 3, groups=64).weight) == (9, 576)
    assert fan_in_and_fan_out(nn.Conv1d(128, 256, 5).weight) == (640, 1280)


def test_ex1_uniform_variance_and_he_bound():
    a = math.sqrt(6 / 100)
    u = torch.empty(1_000_000).uniform_(-a, a, generator=torch.Generator().manual_seed(0))
    assert u.var().item() == pytest.approx(a**2 / 3, rel=0.01) == pytest.approx(2 / 100, rel=0.01)


def test_ex3_leaky_relu_second_moment():
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for slope in (0.01, 0.2, math.sqrt(5)):
        assert (F.leaky_relu(z, slope) ** 2).mean().item() == pytest.approx((1 + slope**2) / 2, rel=0.01)
