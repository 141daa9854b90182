"""Claims made in chapter 0's exercises and solutions, checked with the chapter's own settings."""

import numpy as np
import pytest
import torch

from sigprop.data import load_digits_split
from sigprop.diagnostics import layer_stats
from sigprop.models import mlp
from sigprop.train import fit


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def _sick(depth=8, init=0.01):
    return mlp(64, 10, depth=depth, width=64, activation="sigmoid", init=init,
               generator=torch.Generator().manual_seed(0))


def test_ex1_depth4_sick_gradient_ratio_is_about_0_02_cubed(digits):
    g = layer_stats(_sick(depth=4), digits.x_train[:512], digits.y_train[:512]).grad_norm
    assert 4e-6 < g[0] / g[-2] < 1.6e-5  # 0.02**3 = 8e-6


def test_ex2_xavier_sigmoid_gradient_ratio_near_4_to_minus_7_yet_no_learning(digits):
    net = _sick(init="xavier_normal")
    g = layer_stats(net, digits.x_train[:512], digits.y_train[:512]).grad_norm
    assert 1e-5 < g[0] / g[-2] < 1.2e-4  # 4**-7 = 6.1e-5, versus 1e-12 for the sick network
    history = fit(net, digits, epochs=12, lr=0.1, progress=False, generator=torch.Generator().manual_seed(0))
    assert max(history.test_accuracy) < 0.15


@pytest.mark.parametrize("lr", [1.0, 10.0])
def test_ex4_larger_learning_rate_does_not_reach_the_first_layer(digits, lr):
    history = fit(_sick(), digits, epochs=12, lr=lr, progress=False, track_update_ratio=True,
                  generator=torch.Generator().manual_seed(0))
    ratios = np.asarray(history.update_ratio["linear1"])
    assert np.all(ratios[np.isfinite(ratios)] < -11)
    assert max(history.test_accuracy) < 0.15
    if lr == 10.0:
        assert max(history.loss) > 10 * np.log(10)  # spikes far above a uniform guess's 2.30


def test_ex3_he_scale_keeps_relu_activation_std_within_2x_over_32_layers(digits):
    net = mlp(64, 10, depth=32, width=64, activation="relu", init=(2 / 64) ** 0.5,
              generator=torch.Generator().manual_seed(0))
    std = layer_stats(net, digits.x_train[:256], digits.y_train[:256]).activation_std[:-1]
    assert 0.5 < std[-1] / std[0] < 2.0


def test_intro_arithmetic():
    # "Multiply a number by 0.9 fifty times and almost nothing is left; by 1.1 ... a hundred times larger."
    assert 0.9**50 < 0.01
    assert 100 < 1.1**50 < 120
