"""Tests for sigprop.activations: the table against torch, the gains against torch.nn.init, the
quadrature against closed forms and Monte Carlo, and the table as the one source for every module."""

import math

import pytest
import torch
from conftest import FLOAT64_DEVICES
from torch import nn

from sigprop import diagnostics, gradients, init, models
from sigprop.activations import (
    ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    TORCH_LINEAR_NAMES,
    calculate_gain,
    gaussian_expectation,
    mean_field_chi1,
    second_moment_gain,
)

NAMES = list(ACTIVATIONS)
TORCH_KNOWS = [*TORCH_LINEAR_NAMES, "sigmoid", "tanh", "relu", "leaky_relu", "selu"]


def _z(n=2_000_000, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", NAMES)
def test_functional_equals_its_module(name):
    x = torch.linspace(-25, 25, 2001, dtype=torch.float64)
    entry = ACTIVATIONS[name]
    module = entry.module()
    assert isinstance(module, entry.module_type)
    torch.testing.assert_close(entry.functional(x), module(x), rtol=0, atol=0)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_autograd_including_the_kink(device, name):
    # Large |x| where sigmoid/tanh saturate and softplus switches to x; x = 0 exactly for the kinks.
    x = torch.cat([torch.linspace(-25, 25, 2001, dtype=torch.float64) + 1e-3, torch.zeros(1, dtype=torch.float64)])
    x = x.to(device).requires_grad_(True)
    (grad,) = torch.autograd.grad(ACTIVATIONS[name].functional(x).sum(), x)
    torch.testing.assert_close(ACTIVATIONS[name].derivative(x.detach()), grad, rtol=1e-12, atol=1e-14)


def test_gelu_slope_overshoots_one_at_sqrt2():
    x = torch.linspace(-10, 10, 200001, dtype=torch.float64)  # step 1e-4
    d = ACTIVATIONS["gelu"].derivative(x)
    assert d.max().item() == pytest.approx(1.1289, abs=1e-4)
    assert x[d.argmax()].item() == pytest.approx(math.sqrt(2), abs=1e-3)


@pytest.mark.parametrize("name", TORCH_KNOWS)
def test_gain_equals_torch_for_every_name_torch_knows(name):
    assert calculate_gain(name) == torch.nn.init.calculate_gain(name)


@pytest.mark.parametrize("param", [None, 0, 0.2, 3, math.sqrt(5)])
def test_leaky_relu_gain_equals_torch(param):
    assert calculate_gain("leaky_relu", param) == torch.nn.init.calculate_gain("leaky_relu", param)


@pytest.mark.parametrize("name", ["elu", "gelu", "silu", "softplus"])
def test_gains_torch_lacks_are_the_second_moment_gain_not_relus(name):
    # torch refuses these names; ours is 1/sqrt(E[phi(z)^2]), checked by Monte Carlo (2e6 samples).
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain(name)
    mc = 1 / ACTIVATIONS[name].functional(_z()).pow(2).mean().sqrt().item()
    assert calculate_gain(name) == second_moment_gain(name) == pytest.approx(mc, rel=2e-3)
    assert abs(calculate_gain(name) - math.sqrt(2)) > 0.1  # never a silent sqrt(2)
    assert ACTIVATIONS[name].gain == calculate_gain(name)


def test_elu_gain_is_the_one_chapter_2_measures():
    assert calculate_gain("elu") == pytest.approx(1.245, abs=5e-4)
    assert calculate_gain("identity") == 1


@pytest.mark.parametrize(("f", "q", "exact"), [
    (lambda z: z**2, 2.5, 2.5),
    (lambda z: z**4, 1.0, 3.0),
    (lambda z: torch.relu(z) ** 2, 3.0, 1.5),  # half the variance: He's E[relu(z)^2] = q / 2
    (lambda z: (z > 0).double(), 0.7, 0.5),    # a jump at 0
    (lambda z: torch.cos(z), 1.0, math.exp(-0.5)),
])
def test_gaussian_expectation_closed_forms(f, q, exact):
    assert gaussian_expectation(f, q) == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize(("name", "weight_var", "q", "exact"), [
    ("relu", 2.0, 1.0, 1.0),        # He's init sits on the edge of chaos for ReLU, at every q
    ("relu", 1.0, 7.3, 0.5),
    ("leaky_relu", 2.0, 1.0, 1 + LEAKY_RELU_SLOPE**2),
    ("identity", 1.5, 4.0, 1.5),
])
def test_chi1_closed_forms(name, weight_var, q, exact):
    assert mean_field_chi1(name, weight_var, q) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(("name", "q"), [("tanh", 1.0), ("tanh", 0.1), ("sigmoid", 2.0), ("elu", 1.0),
                                         ("selu", 1.0), ("gelu", 1.0)])
def test_chi1_matches_monte_carlo(name, q):
    z = math.sqrt(q) * _z(seed=1)
    mc = 1.7 * ACTIVATIONS[name].derivative(z).pow(2).mean().item()
    assert mean_field_chi1(name, 1.7, q) == pytest.approx(mc, rel=3e-3)


def test_chi1_is_the_measured_per_layer_factor_of_a_wide_network():
    # A wide deep tanh network with Var[w] = sigma_w^2 / n: from layer i + 1 down to layer i the squared
    # gradient norm changes by chi_1 at q = Var[z_i], the variance of that layer's pre-activations.
    width, depth, sigma2 = 1024, 12, 1.5
    g = torch.Generator().manual_seed(0)
    h = torch.randn(1, width, generator=g, dtype=torch.float64)
    zs = []
    for _ in range(depth):
        w = torch.randn(width, width, generator=g, dtype=torch.float64) * math.sqrt(sigma2 / width)
        z = (h @ w.T).requires_grad_()
        zs.append(z)
        h = torch.tanh(z)
    (h * torch.randn(h.shape, generator=g, dtype=torch.float64)).sum().backward(inputs=zs)
    sq = [z.grad.pow(2).sum().item() for z in zs]
    predicted = math.prod(mean_field_chi1("tanh", sigma2, z.detach().var().item()) for z in zs[:-1])
    assert sq[0] / sq[-1] == pytest.approx(predicted, rel=0.1)
    assert predicted < 0.7  # the prediction is far from 1 here, so the test can tell


def test_every_module_derives_from_the_one_table():
    assert models.ACTIVATIONS is ACTIVATIONS and gradients.ACTIVATIONS is ACTIVATIONS
    assert init.NONLINEARITIES == TORCH_LINEAR_NAMES + tuple(ACTIVATIONS)
    assert set(diagnostics.ACTIVATION_TYPES) == {a.module_type for a in ACTIVATIONS.values()}
    assert init.calculate_gain is calculate_gain and init.WEIGHT_TYPES is models.WEIGHT_TYPES
    assert diagnostics.WEIGHT_TYPES is models.WEIGHT_TYPES
    assert models.make_activation("leaky_relu").negative_slope == LEAKY_RELU_SLOPE == nn.LeakyReLU().negative_slope
