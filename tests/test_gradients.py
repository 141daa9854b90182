"""Tests for sigprop.gradients: clipping against torch.nn.utils,
Jacobian products against torch.autograd.functional.jacobian, and the RNN's closed form."""

import math

import pytest
import torch
from conftest import DEVICES, FLOAT64_DEVICES
from torch import nn

from sigprop.gradients import (
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


