"""Claims made in chapter 1's exercises and solutions, checked with the chapter's own settings.

The claims in the chapter's running text are asserted in its hidden cells; these are the ones the
reader meets only in the (folded) solutions.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from sigprop.data import load_digits_split
from sigprop.diagnostics import LayerProbe, layer_stats, per_layer_factor
from sigprop.gradients import clip_grad_norm_, clip_grad_value_, rnn_gradient_through_time
from sigprop.models import mlp
from sigprop.train import fit


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def probe(digits):
    return digits.x_train[:256], digits.y_train[:256]


def _net(activation, gain, depth=10, seed=0):
    """The chapter's `net`: an MLP with weights N(0, gain^2 / n_in) and zero biases."""
    generator = torch.Generator().manual_seed(seed)

    def init(weight):
        weight.normal_(0.0, gain / math.sqrt(weight.shape[1]), generator=generator)

    return mlp(64, 10, depth=depth, width=64, activation=activation, init=init)


def _factor(delta):
    """Growth of a gradient norm per layer on the way down (per_layer_factor reads upwards)."""
    return 1 / per_layer_factor(delta)


def test_ex1_sigmoid_balances_only_near_gain_10_with_half_the_units_saturated(probe):
    assert 0.25**20 == pytest.approx(9.09e-13, rel=1e-3)
    stats = {gain: layer_stats(_net("sigmoid", gain, depth=20), *probe) for gain in (4, 8, 10, 12)}
    factors = {gain: _factor(s.grad_norm[:20]) for gain, s in stats.items()}
    assert factors[4] < 0.7 and factors[8] < 0.95 and factors[12] > 1.05, factors
    assert 0.9 < factors[10] < 1.1, factors
    assert 0.4 < np.nanmean(stats[10].saturated[:-1]) < 0.65


def test_ex2_linear_rnn_at_0_95_falls_below_one_percent_after_90_steps():
    assert math.log(0.01) / math.log(0.95) == pytest.approx(89.8, abs=0.05)
    norms = rnn_gradient_through_time(64, 200, weight_scale=0.95, nonlinearity="identity",
                                      generator=torch.Generator().manual_seed(0))
    distance = 200 - np.arange(200)
    assert distance[norms.numpy() < 0.01].min() == 90


@pytest.mark.parametrize("k", [1.2, 0.8])
def test_ex3_relu_gradient_ratio_is_k_to_the_ninth_within_15_percent(probe, k):
    g = layer_stats(_net("relu", k * math.sqrt(2)), *probe).grad_norm
    assert g[0] / g[9] == pytest.approx(k**9, rel=0.15)


def test_ex4_tanh_gain_half_weight_gradients_level_while_delta_vanishes(probe):
    s = layer_stats(_net("tanh", 0.5, depth=20), *probe)
    assert s.grad_norm[0] / s.grad_norm[19] < 1e-4
    w = s.weight_grad_norm[:20]
    assert w.max() / w.min() < 2.0
    assert w.max() < 1e-4  # level, and tiny


def _first_gradient(probe):
    model = _net("relu", 1.5 * math.sqrt(2))
    nn.functional.cross_entropy(model(probe[0]), probe[1]).backward()
    return model


def _flat(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_ex5_clipping_by_value_bends_the_direction_and_still_learns(digits, probe):
    original, by_value, by_norm = (_first_gradient(probe) for _ in range(3))
    clamped = {name: (p.grad.abs() > 0.1).float().mean().item() for name, p in original.named_parameters()}
    clip_grad_value_(by_value.parameters(), 0.1)
    clip_grad_norm_(by_norm.parameters(), 1.0)
    cos = nn.functional.cosine_similarity
    assert cos(_flat(original), _flat(by_norm), dim=0).item() == pytest.approx(1.0, abs=1e-5)
    assert 0.4 < cos(_flat(original), _flat(by_value), dim=0).item() < 0.65
    assert all(clamped[f"linear{i}.weight"] > 0.7 for i in (1, 2, 3)), clamped
    assert all(clamped[f"linear{i}.weight"] < 0.5 for i in (8, 9, 10)), clamped
    history = fit(_net("relu", 1.5 * math.sqrt(2)), digits, epochs=10, batch_size=128, lr=0.1,
                  before_step=lambda m: clip_grad_value_(m.parameters(), 0.1), quiet=True,
                  generator=torch.Generator().manual_seed(0))
    assert not history.diverged and 0.78 < max(history.test_accuracy) < 0.93


def _silent(model, x):
    with LayerProbe(model) as p:
        model(x)
    return np.array([(p.outputs[n] <= 0).all(dim=0).float().mean().item() for n in list(p.outputs)[:-1]])


def test_ex6_one_large_step_silences_as_many_leaky_units_as_relu_units(probe):
    after = {}
    for activation in ("relu", "leaky_relu"):
        model = _net(activation, math.sqrt(2))
        nn.functional.cross_entropy(model(probe[0]), probe[1]).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 1.0 * p.grad
        after[activation] = _silent(model, probe[0])
    assert after["relu"].max() > 0.25
    assert np.abs(after["relu"] - after["leaky_relu"]).max() < 0.1, after
