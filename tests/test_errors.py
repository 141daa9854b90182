"""Bad arguments: one case per distinct error the library raises, with the exception type and the message.

The convention (``sigprop/_validation.py``): ``TypeError`` for a wrong type, ``ValueError`` for a wrong
value, and a message naming the argument, what was expected and what arrived. The helpers are checked
once at the top; below, one row per check site of each public function (a site that validates its
argument through a helper gets one row, which shows the argument is checked at all).
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from sigprop import _validation as v
from sigprop.activations import gaussian_expectation, mean_field_chi1
from sigprop.data import load_digits_split, make_multiscale_regression, make_spirals
from sigprop.diagnostics import UpdateRatio, layer_stats, per_layer_factor, weight_layers
from sigprop.gradients import (
    activation,
    clip_grad_norm_,
    clip_grad_value_,
    jacobian_product_norms,
    layer_jacobians,
    rnn_gradient_through_time,
    rnn_jacobians,
    singular_values,
)
from sigprop.init import (
    calculate_gain,
    fan_in_and_fan_out,
    init_std,
    initialize,
    kaiming_normal_,
    lsuv_,
    orthogonal_,
    reset_parameters_,
    xavier_uniform_,
)
from sigprop.models import make_norm, mlp, small_cnn
from sigprop.plots import (
    color_for,
    depth_colors,
    fixed_axes,
    log_axis,
    plot_depth_profile,
    plot_histograms,
    plot_training_curves,
    plot_update_ratios,
)
from sigprop.runtime import experiment_scale, get_device, seed_everything
from sigprop.train import History, fit, make_optimizer


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _grad():
    w = torch.zeros(3, requires_grad=True)
    w.grad = torch.ones(3)
    return [w]


_SPIRALS = make_spirals(20)
_X, _Y = torch.randn(4, 3), torch.zeros(4, dtype=torch.int64)

CASES = {
    # -- the helpers ------------------------------------------------------------------------------------
    "int: a float": (lambda: v.check_int("depth", 2.0), TypeError, r"depth must be an int, got float 2\.0"),
    "int: a bool": (lambda: v.check_int("depth", True), TypeError, "depth must be an int, got bool True"),
    "int: below minimum": (lambda: v.check_int("depth", 0, minimum=1), ValueError, "depth must be at least 1, got 0"),
    "int: above maximum": (lambda: v.check_int("n", 5, maximum=3), ValueError, "n must be at most 3, got 5"),
    "number: a str": (lambda: v.check_number("lr", "0.1"), TypeError, "lr must be a number, got str '0.1'"),
    "number: nan": (lambda: v.check_number("lr", math.nan), ValueError, "lr must be a finite number, got nan"),
    "number: not positive": (lambda: v.check_number("lr", 0, positive=True), ValueError,
                             r"lr must be positive, got 0\.0"),
    "number: below minimum": (lambda: v.check_number("std", -1, minimum=0.0), ValueError,
                              r"std must be at least 0\.0, got -1\.0"),
    "choice: not a str": (lambda: v.check_choice("mode", 3, ("a",)), TypeError, "mode must be a str, one of"),
    "choice: unknown": (lambda: v.check_choice("mode", "b", ("a",)), ValueError,
                        r"unknown mode 'b'; expected one of \('a',\)"),
    "generator": (lambda: v.check_generator(3), TypeError, "generator must be a torch.Generator or None, got int 3"),
    "tensor": (lambda: v.check_tensor("x", [1]), TypeError, r"x must be a torch.Tensor, got list \[1\]"),
    "a long value is not shown": (lambda: v.check_tensor("x", list(range(100))), TypeError,
                                  "x must be a torch.Tensor, got list$"),
    # -- runtime ----------------------------------------------------------------------------------------
    "device name": (lambda: get_device("tpu7"), ValueError, "expected a device such as 'cpu', 'cuda' or 'mps'"),
    "device type": (lambda: get_device(3), TypeError, "prefer must be a str or torch.device, got int"),
    "seed type": (lambda: seed_everything(1.5), TypeError, r"seed must be an int, got float 1\.5"),
    "seed value": (lambda: seed_everything(-1), ValueError, "seed must be at least 0, got -1"),
    # -- models -----------------------------------------------------------------------------------------
    "mlp depth type": (lambda: mlp(depth=2.0), TypeError, r"depth must be an int, got float 2\.0"),
    "mlp width value": (lambda: mlp(width=0), ValueError, "width must be at least 1, got 0"),
    "mlp activation name": (lambda: mlp(activation="swish"), ValueError, "unknown activation 'swish'; expected"),
    "mlp activation type": (lambda: mlp(activation=nn.ReLU()), TypeError, "activation must be a str"),
    "mlp bias": (lambda: mlp(bias=1), TypeError, "bias must be a bool, got int 1"),
    "mlp generator": (lambda: mlp(generator=0), TypeError, "generator must be a torch.Generator"),
    "init a bool": (lambda: mlp(init=True), TypeError, r"init must be a scheme name, a std \(float\) or a callable"),
    "init a list": (lambda: mlp(init=[1]), TypeError, "init must be a scheme name.*got list"),
    "init std": (lambda: mlp(init=-0.1), ValueError, "init std must be at least 0.0, got -0.1"),
    "init scheme": (lambda: mlp(init="xavier"), ValueError, "unknown init scheme 'xavier'"),
    "norm name": (lambda: mlp(norm="group"), ValueError, "unknown norm 'group'; expected None, 'none', one of"),
    "norm type": (lambda: make_norm(3, 4), TypeError, "norm must be None, a name or a callable, got int"),
    "norm factory": (lambda: make_norm(lambda n: torch.zeros(n), 4), TypeError,
                     "norm factory must return an nn.Module, got Tensor"),
    "cnn channels empty": (lambda: small_cnn(channels=()), ValueError, "channels must name at least one block"),
    "cnn channels type": (lambda: small_cnn(channels=5), TypeError, "channels must be a sequence of ints, got int 5"),
    "cnn channel entry": (lambda: small_cnn(channels=(8, 0)), ValueError,
                          "each entry of channels must be at least 1, got 0"),
    "cnn sizes": (lambda: small_cnn(num_classes="10"), TypeError, "num_classes must be an int, got str"),
    # -- activations and init ---------------------------------------------------------------------------
    "gain name": (lambda: calculate_gain("swish"), ValueError, "unknown nonlinearity 'swish'; expected one of"),
    "gain type": (lambda: calculate_gain(nn.ReLU()), TypeError, "nonlinearity must be a str"),
    "gain param": (lambda: calculate_gain("leaky_relu", True), TypeError,
                   r"param \(the negative slope\) must be a number, got bool True"),
    "chi1 weight_var": (lambda: mean_field_chi1("relu", -1.0), ValueError, "weight_var must be at least 0.0"),
    "chi1 q": (lambda: mean_field_chi1("relu", 1.0, q=0.0), ValueError, r"q must be positive, got 0\.0"),
    "expectation q type": (lambda: gaussian_expectation(torch.exp, q="1"), TypeError, "q must be a number"),
    "fans of a vector": (lambda: fan_in_and_fan_out(torch.empty(5)), ValueError,
                         r"at least 2 dimensions .* got shape \(5,\)"),
    "empty weight": (lambda: xavier_uniform_(torch.empty(0, 3)), ValueError, r"empty tensor, got shape \(0, 3\)"),
    "weight type": (lambda: kaiming_normal_(np.zeros((2, 2))), TypeError, "tensor must be a torch.Tensor, got ndarray"),
    "kaiming mode": (lambda: kaiming_normal_(torch.empty(2, 2), mode="fan_avg"), ValueError,
                     "unknown mode 'fan_avg'; expected one of"),
    "sampler generator": (lambda: orthogonal_(torch.empty(2, 2), generator=1), TypeError,
                          "generator must be a torch.Generator or None, got int 1"),
    "initialize model": (lambda: initialize(torch.zeros(2), "zeros"), TypeError,
                         "model must be an nn.Module, got Tensor"),
    "initialize scheme": (lambda: initialize(_net(), "he"), ValueError, "unknown init scheme 'he'"),
    "normal needs std": (lambda: initialize(_net(), "normal"), ValueError, "scheme 'normal' needs std"),
    "std only for normal": (lambda: initialize(_net(), "zeros", std=0.1), ValueError,
                            "std is only used by scheme 'normal'"),
    "std value": (lambda: init_std(torch.empty(2, 2), "normal", std=-1), ValueError, "std must be at least 0.0"),
    "initialize gain": (lambda: initialize(_net(), "zeros", gain=-2), ValueError, "gain must be at least 0.0, got -2"),
    "initialize linear_output": (lambda: initialize(_net(), "zeros", linear_output=1), TypeError,
                                 "linear_output must be a bool, got int"),
    "reset generator": (lambda: reset_parameters_(_net(), generator=1), TypeError,
                        "generator must be a torch.Generator"),
    "lsuv batch": (lambda: lsuv_(_net(), [1.0]), TypeError, "batch must be a torch.Tensor, got list"),
    "lsuv tol": (lambda: lsuv_(_net(), _X, tol=0), ValueError, r"tol must be positive, got 0\.0"),
    "lsuv max_iters": (lambda: lsuv_(_net(), _X, max_iters=0), ValueError, "max_iters must be at least 1, got 0"),
    "lsuv no layer": (lambda: lsuv_(nn.ReLU(), _X), ValueError, r"no nn.Linear or nn.Conv\{1,2,3\}d layer for LSUV"),
    # -- gradients --------------------------------------------------------------------------------------
    "clip parameters type": (lambda: clip_grad_norm_(3, 1.0), TypeError,
                             "parameters must be a Tensor or an iterable of Tensors, got int"),
    "clip parameters entries": (lambda: clip_grad_norm_([1.0], 1.0), TypeError,
                                "parameters must hold Tensors, got an element of type float"),
    "clip max_norm type": (lambda: clip_grad_norm_(_grad(), "1"), TypeError, "max_norm must be a number"),
    "clip max_norm value": (lambda: clip_grad_norm_(_grad(), -1.0), ValueError, "max_norm must be at least 0.0"),
    "clip norm_type": (lambda: clip_grad_norm_(_grad(), 1.0, norm_type=0), ValueError, "norm_type must be positive"),
    "clip value": (lambda: clip_grad_value_(_grad(), -1.0), ValueError, "clip_value must be at least 0.0"),
    "activation name": (lambda: activation("swish"), ValueError, "unknown activation 'swish'"),
    "jacobians model": (lambda: layer_jacobians(nn.Linear(3, 2), torch.randn(1, 3)), TypeError,
                        "model must be an nn.Sequential"),
    "jacobians x type": (lambda: layer_jacobians(_net(), [1.0]), TypeError, "x must be a torch.Tensor"),
    "jacobians batch": (lambda: layer_jacobians(_net(), torch.randn(5, 3)), ValueError,
                        r"batch dimension of 1, shape \(1, \*\), got \(5, 3\)"),
    "jacobians no linear": (lambda: layer_jacobians(nn.Sequential(nn.Tanh()), torch.randn(1, 3)), ValueError,
                            "containing nn.Linear layers, found none"),
    "jacobians input shape": (lambda: layer_jacobians(nn.Sequential(nn.Linear(3, 2)), torch.randn(1, 2, 3)),
                              ValueError, r"first nn.Linear to receive shape \(1, D\)"),
    "product ord": (lambda: jacobian_product_norms([torch.eye(2)], ord=1), ValueError, "ord must be 'fro' or 2"),
    "product empty": (lambda: jacobian_product_norms([]), ValueError, "non-empty list"),
    "product not 2-D": (lambda: jacobian_product_norms([torch.ones(3)]), ValueError, "expected 2-D Jacobians"),
    "product chain": (lambda: jacobian_product_norms([torch.ones(2, 3), torch.ones(2, 3)]), ValueError,
                      "do not chain"),
    "svd type": (lambda: singular_values([1.0]), TypeError, "jacobian must be a torch.Tensor"),
    "svd shape": (lambda: singular_values(torch.ones(3)), ValueError, "expected a 2-D Jacobian"),
    "rnn weight type": (lambda: rnn_jacobians([1.0], torch.zeros(2, 3)), TypeError, "weight_hh must be a torch.Tensor"),
    "rnn square": (lambda: rnn_jacobians(torch.ones(3, 2), torch.zeros(2, 3)), ValueError,
                   r"square weight_hh of shape \(H, H\), got \(3, 2\)"),
    "rnn inputs": (lambda: rnn_jacobians(torch.eye(3), torch.zeros(2, 4)), ValueError, r"inputs of shape \(T, 3\)"),
    "rnn h0 type": (lambda: rnn_jacobians(torch.eye(3), torch.zeros(2, 3), h0=[0.0]), TypeError,
                    "h0 must be a torch.Tensor"),
    "rnn h0 shape": (lambda: rnn_jacobians(torch.eye(3), torch.zeros(2, 3), h0=torch.zeros(2)), ValueError,
                     r"h0 of shape \(3,\)"),
    "bptt sizes": (lambda: rnn_gradient_through_time(8.0, 3), TypeError, "hidden_size must be an int"),
    "bptt scale": (lambda: rnn_gradient_through_time(8, 3, weight_scale=-1), ValueError,
                   "weight_scale must be at least 0.0"),
    "bptt weight": (lambda: rnn_gradient_through_time(8, 3, weight="unitary"), ValueError, "unknown weight 'unitary'"),
    # -- diagnostics ------------------------------------------------------------------------------------
    "probe model type": (lambda: weight_layers([]), TypeError, "model must be an nn.Module, got list"),
    "probe no layer": (lambda: weight_layers(nn.ReLU()), ValueError, "model has no nn.Linear or nn.Conv layer"),
    "stats x type": (lambda: layer_stats(_net(), np.zeros((4, 3)), _Y), TypeError, "x must be a torch.Tensor"),
    "stats batch sizes": (lambda: layer_stats(_net(), _X, _Y[:3]), ValueError,
                          "same non-zero number of samples, got 4 and 3"),
    "stats sample_size": (lambda: layer_stats(_net(), _X, _Y, sample_size=0), ValueError,
                          "sample_size must be at least 1, got 0"),
    "update ratio order": (lambda: UpdateRatio(_net()).after_step(), RuntimeError,
                           r"after_step\(\) called without before_step\(\)"),
    "factor too short": (lambda: per_layer_factor([1.0]), ValueError, "at least 2 values"),
    "factor start": (lambda: per_layer_factor([0.0, 1.0]), ValueError, "start with a positive finite value"),
    "factor end": (lambda: per_layer_factor([1.0, math.nan]), ValueError, "end with a non-negative finite value"),
    # -- train ------------------------------------------------------------------------------------------
    "history split": (lambda: History().epochs_to(0.5, split="val"), ValueError, "unknown split 'val'"),
    "history layer": (lambda: History().mean_update_ratio("c"), ValueError, "no update ratios for layer 'c'"),
    "optimizer lr value": (lambda: make_optimizer(_net(), "sgd", lr=0), ValueError, r"lr must be positive, got 0\.0"),
    "optimizer lr type": (lambda: make_optimizer(_net(), "sgd", lr="0.1"), TypeError, "lr must be a number"),
    "optimizer name": (lambda: make_optimizer(_net(), "rmsprop", 0.1), ValueError, "unknown optimizer 'rmsprop'"),
    "optimizer momentum": (lambda: make_optimizer(_net(), "sgd", 0.1, momentum=-1), ValueError,
                           "momentum must be at least 0.0"),
    "fit model": (lambda: fit(lambda x: x, _SPIRALS), TypeError, "model must be an nn.Module, got function"),
    "fit data": (lambda: fit(_net(), (1, 2)), TypeError, "data must be a sigprop.data.DataSplit, got tuple"),
    "fit epochs type (like mlp's depth)": (lambda: fit(mlp(2, 3), _SPIRALS, epochs=2.0), TypeError,
                                           r"epochs must be an int, got float 2\.0"),
    "fit batch_size": (lambda: fit(mlp(2, 3), _SPIRALS, batch_size=0), ValueError, "batch_size must be at least 1"),
    "fit before_step": (lambda: fit(mlp(2, 3), _SPIRALS, before_step=3), TypeError, "before_step must be callable"),
    "fit quiet": (lambda: fit(mlp(2, 3), _SPIRALS, quiet=1), TypeError, "quiet must be a bool, got int 1"),
    # -- data -------------------------------------------------------------------------------------------
    "digits dtype": (lambda: load_digits_split(dtype=torch.int64), TypeError, "dtype must be a floating torch.dtype"),
    "digits fraction type": (lambda: load_digits_split(test_fraction="0.25"), TypeError,
                             "test_fraction must be a number, got str"),
    "digits fraction value": (lambda: load_digits_split(test_fraction=1.0), ValueError,
                              r"test_fraction must be in \(0, 1\)"),
    "digits seed": (lambda: load_digits_split(seed=-1), ValueError, "seed must be at least 0"),
    "spirals n type": (lambda: make_spirals(2.5), TypeError, r"n_per_class must be an int, got float 2\.5"),
    "spirals n value": (lambda: make_spirals(1), ValueError, "n_per_class must be at least 2, got 1"),
    "spirals classes": (lambda: make_spirals(10, num_classes=1), ValueError, "num_classes must be at least 2"),
    "spirals noise": (lambda: make_spirals(10, noise=-0.1), ValueError, "noise must be at least 0.0, got -0.1"),
    "multiscale n": (lambda: make_multiscale_regression(3), ValueError, "n_samples must be at least 4, got 3"),
    "multiscale features": (lambda: make_multiscale_regression(in_features=0), ValueError,
                            "in_features must be at least 1"),
    "multiscale no scales": (lambda: make_multiscale_regression(scales=()), ValueError, "scales must be a non-empty"),
    "multiscale scale": (lambda: make_multiscale_regression(scales=(1.0, -2.0)), ValueError,
                         r"each entry of scales must be positive, got -2\.0"),
    "subset size": (lambda: _SPIRALS.subset(1000), ValueError, "n_train must be at most 45, got 1000"),
    "subset type": (lambda: _SPIRALS.subset(10.0), TypeError, "n_train must be an int"),
    # -- plots ------------------------------------------------------------------------------------------
    "colour label": (lambda: color_for(3), TypeError, "label must be a str, got int 3"),
    "depth colours": (lambda: depth_colors(0), ValueError, "n must be at least 1, got 0"),
    "fixed axes": (lambda: fixed_axes(0), ValueError, "ncols must be at least 1, got 0"),
    "log axis limits": (lambda: log_axis(fixed_axes()[1], 10, 1), ValueError, "low must be below high"),
    "log axis which": (lambda: log_axis(fixed_axes()[1], 1, 10, axis="z"), ValueError, "unknown axis 'z'"),
    "depth profile empty": (lambda: plot_depth_profile({}), ValueError, r"stats is empty: pass \{label: LayerStats\}"),
    "curves empty": (lambda: plot_training_curves({}), ValueError, r"histories is empty: pass \{label: History\}"),
    "curves smooth": (lambda: plot_training_curves({"a": History()}, smooth=0), ValueError,
                      "smooth must be at least 1, got 0"),
    "update ratios missing": (lambda: plot_update_ratios(History()), ValueError, "history has no update ratios"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument_raises_a_clear_error(case):
    call, error, match = CASES[case]
    with pytest.raises(error, match=match):
        call()


def test_unknown_scale_is_rejected(monkeypatch):
    monkeypatch.setenv("SIGPROP_SCALE", "huge")
    with pytest.raises(ValueError, match=r"SIGPROP_SCALE must be one of \('small', 'large'\), got 'huge'"):
        experiment_scale()


@pytest.mark.parametrize(("kind", "layers", "match"), [
    ("weights", None, "unknown kind 'weights'"),
    ("activation", ["linear9"], r"unknown layers \['linear9'\]; expected some of \['linear1'"),
    ("activation", [], "layers is empty"),
])
def test_histograms_reject_bad_kind_and_layers(kind, layers, match):
    stats = layer_stats(mlp(4, 2, depth=2), torch.randn(8, 4), torch.zeros(8, dtype=torch.int64))
    with pytest.raises(ValueError, match=match):
        plot_histograms(stats, kind=kind, layers=layers)


def test_depth_profile_rejects_an_unknown_stat():
    stats = layer_stats(mlp(4, 2, depth=2), torch.randn(8, 4), torch.zeros(8, dtype=torch.int64))
    with pytest.raises(ValueError, match="unknown stat 'names'; expected one of"):
        plot_depth_profile({"a": stats}, stat="names")
