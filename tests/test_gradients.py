"""Tests for sigprop.gradients: clipping against torch.nn.utils, activation slopes against autograd,
Jacobian products against torch.autograd.functional.jacobian, and the RNN's closed form."""

import math

import pytest
import torch
from conftest import DEVICES, FLOAT64_DEVICES
from torch import nn

from sigprop.gradients import (
    ACTIVATIONS,
    activation,
    activation_derivative,
    clip_grad_norm_,
    clip_grad_value_,
    jacobian_product_norms,
    layer_jacobians,
    rnn_gradient_through_time,
    rnn_jacobians,
    singular_values,
)

TOL = dict(rtol=1e-12, atol=1e-12)


def _params_with_grads(device, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (3,), (4, 4, 2), (1,)]
    params = []
    for shape in shapes:
        p = torch.zeros(shape, dtype=torch.float64, device=device, requires_grad=True)
        p.grad = (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(device)
        params.append(p)
    return params


def _clone_grads(params):
    out = []
    for p in params:
        q = p.detach().clone().requires_grad_(True)
        q.grad = p.grad.clone()
        out.append(q)
    return out


# --------------------------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, 0.5, float("inf")])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 100.0])
def test_clip_grad_norm_matches_torch(device, norm_type, scale):
    ours = _params_with_grads(device, scale)
    theirs = _clone_grads(ours)
    total_ours = clip_grad_norm_(ours, max_norm=1.5, norm_type=norm_type)
    total_theirs = nn.utils.clip_grad_norm_(theirs, max_norm=1.5, norm_type=norm_type)
    torch.testing.assert_close(total_ours, total_theirs, **TOL)
    assert total_ours.device == total_theirs.device
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p.grad, q.grad, **TOL)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("norm_type", [1.0, 2.0, float("inf")])
def test_clipped_total_norm_equals_threshold_when_above(device, norm_type):
    params = _params_with_grads(device, scale=10.0)
    before = clip_grad_norm_(params, max_norm=0.7, norm_type=norm_type)
    assert before > 0.7
    after = clip_grad_norm_(params, max_norm=1e9, norm_type=norm_type)  # only measures
    # The 1e-6 in max_norm / (n + 1e-6) leaves the clipped norm below the threshold by ~1e-6 relative.
    assert after == pytest.approx(0.7, rel=1e-6)
    assert after <= 0.7


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
def test_clip_grad_norm_leaves_small_gradients_alone_and_keeps_direction(device):
    params = _params_with_grads(device, scale=1e-3)
    before = [p.grad.clone() for p in params]
    clip_grad_norm_(params, max_norm=10.0)
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p.grad, b, rtol=0, atol=0)
    big = _params_with_grads(device, scale=100.0)
    direction = torch.cat([p.grad.flatten() for p in big])
    clip_grad_norm_(big, max_norm=1.0)
    clipped = torch.cat([p.grad.flatten() for p in big])
    torch.testing.assert_close(clipped / clipped.norm(), direction / direction.norm(), **TOL)


@pytest.mark.parametrize("device", DEVICES)
def test_clip_grad_norm_on_a_model_in_float32(device):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to(device)
    twin = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to(device)
    twin.load_state_dict(net.state_dict())
    x = 50 * torch.randn(16, 4, device=device)
    for m in (net, twin):
        m(x).pow(2).sum().backward()
    ours = clip_grad_norm_(net.parameters(), 0.1)  # a generator, as in a training loop
    theirs = nn.utils.clip_grad_norm_(twin.parameters(), 0.1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0)
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_skips_missing_grads_and_handles_none_at_all():
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    a.grad = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)
    total = clip_grad_norm_([a, b], 1.0)
    assert total.item() == pytest.approx(5.0, rel=1e-15)
    assert b.grad is None
    torch.testing.assert_close(clip_grad_norm_([b], 1.0), torch.tensor(0.0))
    torch.testing.assert_close(clip_grad_norm_([b], 1.0), nn.utils.clip_grad_norm_([b], 1.0))


def test_clip_grad_norm_nonfinite():
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    w.grad = torch.tensor([float("inf"), 1.0], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="non-finite|inf"):
        clip_grad_norm_(w, 1.0, error_if_nonfinite=True)
    # Without the flag, like torch, the gradient is scaled by max_norm / inf = 0 (and inf * 0 = nan).
    twin = w.detach().clone().requires_grad_(True)
    twin.grad = w.grad.clone()
    total = clip_grad_norm_(w, 1.0)
    torch.testing.assert_close(total, nn.utils.clip_grad_norm_(twin, 1.0))
    torch.testing.assert_close(w.grad, twin.grad, equal_nan=True)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("clip_value", [0.0, 0.05, 1.0, 1e3])
def test_clip_grad_value_matches_torch(device, clip_value):
    ours = _params_with_grads(device, scale=1.0)
    theirs = _clone_grads(ours)
    assert clip_grad_value_(ours, clip_value) is None
    nn.utils.clip_grad_value_(theirs, clip_value)
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0)
        assert p.grad.abs().max() <= clip_value


def test_clipping_rejects_bad_input():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="Tensor or an iterable of Tensors"):
        clip_grad_norm_(3.0, 1.0)
    with pytest.raises(TypeError, match="must hold Tensors"):
        clip_grad_norm_([w, "w"], 1.0)
    with pytest.raises(TypeError, match="max_norm must be a number"):
        clip_grad_norm_([w], "1")
    with pytest.raises(ValueError, match="max_norm must be non-negative"):
        clip_grad_norm_([w], -1.0)
    with pytest.raises(ValueError, match="max_norm must be finite"):
        clip_grad_norm_([w], float("nan"))
    with pytest.raises(ValueError, match="norm_type must be positive"):
        clip_grad_norm_([w], 1.0, norm_type=0)
    with pytest.raises(TypeError, match="norm_type must be a number"):
        clip_grad_norm_([w], 1.0, norm_type="fro")
    with pytest.raises(TypeError, match="foreach must be a bool"):
        clip_grad_norm_([w], 1.0, foreach="yes")
    with pytest.raises(TypeError, match="Tensor or an iterable of Tensors"):
        clip_grad_value_(None, 1.0)
    with pytest.raises(TypeError, match="clip_value must be a number"):
        clip_grad_value_([w], None)
    with pytest.raises(ValueError, match="clip_value must be non-negative"):
        clip_grad_value_([w], -0.5)
    with pytest.raises(TypeError, match="foreach must be a bool"):
        clip_grad_value_([w], 1.0, foreach=1)


# ------------------------------------------------------------------------------------------ activations
@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_derivative_matches_autograd(device, name):
    # Avoid x = 0 exactly here (kinks are tested below); include large |x| where sigmoid/tanh saturate.
    x = torch.linspace(-25, 25, 2001, dtype=torch.float64, device=device)
    x = (x + 1e-3).requires_grad_(True)
    y = activation(name)(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(activation_derivative(name)(x.detach()), grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_derivative_at_zero_matches_autograd(name):
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(activation(name)(x).sum(), x)
    torch.testing.assert_close(activation_derivative(name)(x.detach()), grad, rtol=1e-12, atol=0)


def test_activations_match_torch_modules():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    modules = {"sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(),
               "gelu": nn.GELU(), "selu": nn.SELU(), "elu": nn.ELU(), "softplus": nn.Softplus(),
               "identity": nn.Identity()}
    for name in ACTIVATIONS:
        torch.testing.assert_close(activation(name)(x), modules[name](x), rtol=0, atol=0)


def test_derivative_maxima():
    x = torch.linspace(-10, 10, 200001, dtype=torch.float64)  # step 1e-4, contains 0
    assert activation_derivative("sigmoid")(x).max().item() == pytest.approx(0.25, abs=1e-15)
    assert activation_derivative("tanh")(x).max().item() == pytest.approx(1.0, abs=1e-15)
    assert activation_derivative("relu")(x).max().item() == 1.0
    # GELU overshoots 1: its largest slope is about 1.129 at x = sqrt(2).
    d = activation_derivative("gelu")(x)
    assert d.max().item() == pytest.approx(1.1289, abs=1e-4)
    assert x[d.argmax()].item() == pytest.approx(math.sqrt(2), abs=1e-3)
    # The sigmoid's slope is below 1/4 everywhere but 0, so 20 layers of it shrink a gradient by >= 4^20.
    assert 0.25**20 < 1e-12


def test_activation_rejects_bad_names():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activation("swish")
    with pytest.raises(ValueError, match="expected one of"):
        activation_derivative("ReLU")
    with pytest.raises(TypeError, match="activation name must be a str"):
        activation_derivative(nn.ReLU())


# ------------------------------------------------------------------------------------------- Jacobians
def _mlp(widths, act, dtype=torch.float64, device="cpu", flatten=False):
    torch.manual_seed(1)
    layers = [nn.Flatten()] if flatten else []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(device=device, dtype=dtype)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("act", [nn.Tanh, nn.Sigmoid, nn.ReLU])
def test_layer_jacobians_match_autograd(device, act):
    net = _mlp([6, 5, 7, 4, 3], act, device=device)
    x = torch.randn(1, 6, dtype=torch.float64, device=device)
    js = layer_jacobians(net, x)
    assert [tuple(j.shape) for j in js] == [(5, 6), (7, 5), (4, 7), (3, 4)]
    # The product of the layer Jacobians is the whole network's Jacobian (chain rule).
    full = torch.autograd.functional.jacobian(lambda v: net(v.unsqueeze(0)).squeeze(0), x[0])
    torch.testing.assert_close(js[3] @ js[2] @ js[1] @ js[0], full, **TOL)
    # Each one is diag(phi'(z)) W for its layer.
    z = net[0](x)[0]
    dphi = activation_derivative({nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU: "relu"}[act])
    torch.testing.assert_close(js[0], dphi(z)[:, None] * net[0].weight, **TOL)
    torch.testing.assert_close(js[3], net[-1].weight, **TOL)


def test_layer_jacobians_skip_a_flatten_preamble():
    net = _mlp([4, 3, 2], nn.Tanh, flatten=True)
    x = torch.randn(1, 2, 2, dtype=torch.float64)
    js = layer_jacobians(net, x)
    full = torch.autograd.functional.jacobian(lambda v: net(v.reshape(1, 2, 2)).squeeze(0), x.reshape(4))
    torch.testing.assert_close(js[1] @ js[0], full, **TOL)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("ord", ["fro", 2])
def test_jacobian_product_norms_match_autograd(device, ord):
    net = _mlp([5, 6, 6, 6, 2], nn.Tanh, device=device)
    x = torch.randn(1, 5, dtype=torch.float64, device=device)
    norms = jacobian_product_norms(layer_jacobians(net, x), ord=ord)
    assert norms.shape == (4,)
    # Entry l is ||dh_L / dh_l||: differentiate the top of the network with respect to layer l's input.
    h = x
    for layer_index, start in enumerate([0, 2, 4, 6]):
        rest = net[start:]
        full = torch.autograd.functional.jacobian(lambda v, rest=rest: rest(v.unsqueeze(0)).squeeze(0), h[0])
        torch.testing.assert_close(norms[layer_index], torch.linalg.matrix_norm(full, ord=ord), **TOL)
        h = net[start:start + 2](h)


def test_jacobian_product_norms_of_scaled_identities():
    js = [2.0 * torch.eye(3, dtype=torch.float64), 0.5 * torch.eye(3, dtype=torch.float64),
          3.0 * torch.eye(3, dtype=torch.float64)]
    torch.testing.assert_close(jacobian_product_norms(js, ord=2), torch.tensor([3.0, 1.5, 3.0],
                                                                               dtype=torch.float64))
    torch.testing.assert_close(jacobian_product_norms(js), math.sqrt(3) * torch.tensor(
        [3.0, 1.5, 3.0], dtype=torch.float64))


def test_singular_values_of_a_layer_jacobian():
    net = _mlp([4, 4, 2], nn.Tanh)
    js = layer_jacobians(net, torch.randn(1, 4, dtype=torch.float64))
    s = singular_values(js[0])
    assert s.shape == (4,)
    assert torch.all(s[:-1] >= s[1:])
    torch.testing.assert_close(s[0], torch.linalg.matrix_norm(js[0], ord=2), **TOL)
    torch.testing.assert_close(s.pow(2).sum().sqrt(), torch.linalg.matrix_norm(js[0]), **TOL)


def test_jacobian_utilities_reject_bad_input():
    net = _mlp([3, 4, 2], nn.Tanh)
    with pytest.raises(TypeError, match="model must be an nn.Sequential"):
        layer_jacobians(nn.Linear(3, 2), torch.randn(1, 3))
    with pytest.raises(TypeError, match="x must be a Tensor"):
        layer_jacobians(net, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"batch dimension of 1, shape \(1, \*\), got \(5, 3\)"):
        layer_jacobians(net, torch.randn(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"got \(3,\)"):
        layer_jacobians(net, torch.randn(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="containing nn.Linear layers, found none"):
        layer_jacobians(nn.Sequential(nn.Tanh()), torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"first nn.Linear to receive shape \(1, D\)"):
        layer_jacobians(_mlp([3, 2], nn.Tanh), torch.randn(1, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="ord must be 'fro' or 2"):
        jacobian_product_norms([torch.eye(2)], ord=1)
    with pytest.raises(ValueError, match="non-empty list"):
        jacobian_product_norms([])
    with pytest.raises(ValueError, match="expected 2-D Jacobians"):
        jacobian_product_norms([torch.ones(2)])
    with pytest.raises(ValueError, match="do not chain"):
        jacobian_product_norms([torch.ones(3, 2), torch.ones(2, 2)])
    with pytest.raises(TypeError, match="jacobian must be a Tensor"):
        singular_values([[1.0]])
    with pytest.raises(ValueError, match="expected a 2-D Jacobian"):
        singular_values(torch.ones(2, 2, 2))


# ------------------------------------------------------------------------------- through time (RNN)
@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid"])
def test_rnn_jacobians_match_autograd(device, nonlinearity):
    g = torch.Generator().manual_seed(3)
    w = (0.9 * torch.randn(5, 5, generator=g, dtype=torch.float64) / math.sqrt(5)).to(device)
    xs = torch.randn(6, 5, generator=g, dtype=torch.float64).to(device)
    phi = activation(nonlinearity)
    js = rnn_jacobians(w, xs, nonlinearity)
    norms = jacobian_product_norms(js, ord=2)

    def unroll(h, start):  # h_start -> h_T
        for x_t in xs[start:]:
            h = phi(w @ h + x_t)
        return h

    h = torch.zeros(5, dtype=torch.float64, device=device)
    for t in range(6):
        full = torch.autograd.functional.jacobian(lambda v, t=t: unroll(v, t), h)  # dh_T / dh_t
        torch.testing.assert_close(norms[t], torch.linalg.matrix_norm(full, ord=2), **TOL)
        h = phi(w @ h + xs[t])


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("scale", [0.5, 0.9, 1.0, 1.1])
def test_linear_orthogonal_rnn_norm_is_exactly_a_power(device, scale):
    steps = 30
    norms = rnn_gradient_through_time(16, steps, weight_scale=scale, nonlinearity="identity",
                                      generator=torch.Generator().manual_seed(0), device=device)
    expected = scale ** (steps - torch.arange(steps, dtype=torch.float64, device=device))  # s^(T - t)
    torch.testing.assert_close(norms, expected, rtol=1e-10, atol=0)


def test_tanh_rnn_gradient_vanishes_below_one_and_is_capped_above():
    g = torch.Generator().manual_seed(0)
    small = rnn_gradient_through_time(32, 50, weight_scale=0.8, generator=g)
    assert small[0] < 1e-4 * small[-1]
    # tanh' <= 1, so ||dh_T/dh_t|| <= s^(T-t): saturation only ever shrinks the orthogonal product.
    big = rnn_gradient_through_time(32, 50, weight_scale=1.5, generator=g)
    bound = 1.5 ** (50 - torch.arange(50, dtype=torch.float64))
    assert torch.all(big <= bound * (1 + 1e-12))
    gauss = rnn_gradient_through_time(32, 10, weight="gaussian", ord="fro", generator=g)
    assert gauss.shape == (10,) and torch.all(gauss > 0)


def test_rnn_helpers_reject_bad_input():
    w, xs = torch.eye(3), torch.zeros(4, 3)
    with pytest.raises(ValueError, match="unknown activation"):
        rnn_jacobians(w, xs, "swish")
    with pytest.raises(TypeError, match="weight_hh and inputs must be Tensors"):
        rnn_jacobians([[1.0]], xs)
    with pytest.raises(ValueError, match=r"square weight_hh of shape \(H, H\), got \(3, 2\)"):
        rnn_jacobians(torch.ones(3, 2), xs)
    with pytest.raises(ValueError, match=r"inputs of shape \(T, 3\)"):
        rnn_jacobians(w, torch.zeros(4, 2))
    with pytest.raises(TypeError, match="h0 must be a Tensor"):
        rnn_jacobians(w, xs, h0=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"h0 of shape \(3,\)"):
        rnn_jacobians(w, xs, h0=torch.zeros(2))
    with pytest.raises(TypeError, match="hidden_size must be an int"):
        rnn_gradient_through_time(4.0, 3)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        rnn_gradient_through_time(4, 0)
    with pytest.raises(ValueError, match="non-negative"):
        rnn_gradient_through_time(4, 3, weight_scale=-1.0)
    with pytest.raises(TypeError, match="weight_scale must be a number"):
        rnn_gradient_through_time(4, 3, weight_scale="big")
    with pytest.raises(ValueError, match="'orthogonal' or 'gaussian'"):
        rnn_gradient_through_time(4, 3, weight="uniform")
    with pytest.raises(ValueError, match="unknown activation"):
        rnn_gradient_through_time(4, 3, nonlinearity="swish")
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        rnn_gradient_through_time(4, 3, generator=0)
