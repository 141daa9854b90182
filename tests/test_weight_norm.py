"""sigprop.weight_norm against PyTorch's weight_norm, and the exact weight-decay identities of chapter 4."""

import copy
import io
import pickle

import pytest
import torch
from conftest import DEVICES, FLOAT64_DEVICES, gen
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm

from sigprop.weight_norm import (
    MeanOnlyBatchNorm,
    WeightNormLinear,
    data_dependent_init_,
    is_weight_normalized,
    norm_except_dim,
    remove_weight_norm,
    weight_norm,
)

TOL = {"rtol": 0, "atol": 1e-12}

# (layer factory, input shape): ConvTranspose2d's weight is (in=4, out=6, 3, 3), so dim=0 is per input channel.
LAYERS = {
    "linear": (lambda: nn.Linear(5, 3), (7, 5)),
    "conv2d": (lambda: nn.Conv2d(2, 4, 3, padding=1), (3, 2, 5, 5)),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(4, 6, 3), (3, 4, 5, 5)),
}


def _pair(kind, dim, device, seed=0):
    """Our parametrized layer and PyTorch's, from the same float64 weights."""
    factory, shape = LAYERS[kind]
    torch.manual_seed(seed)
    base = factory().to(device=device, dtype=torch.float64)
    ours, theirs = weight_norm(copy.deepcopy(base), dim=dim), torch_weight_norm(copy.deepcopy(base), dim=dim)
    x = torch.randn(shape, generator=gen(seed + 1), dtype=torch.float64).to(device)
    return base, ours, theirs, x


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("dim", [0, 1, None, -2])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_forward_and_backward_match_torch(kind, dim, device):
    base, ours, theirs, x = _pair(kind, dim, device)
    # Wrapping does not change the layer: g = ||w||, v = w.
    torch.testing.assert_close(ours(x), base(x), **TOL)
    ours_p, theirs_p = ours.parametrizations.weight, theirs.parametrizations.weight
    assert ours_p.original0.shape == theirs_p.original0.shape
    # Move away from g = ||v|| so the test sees g and v separately.
    with torch.no_grad():
        scale = 0.5 + torch.rand(theirs_p.original0.shape, generator=gen(3), dtype=torch.float64).to(device)
        for p in (ours_p, theirs_p):
            p.original0.mul_(scale)
    target = torch.randn(ours(x).shape, generator=gen(4), dtype=torch.float64).to(device)
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs, **TOL)
    (out_ours * target).sum().backward()
    (out_theirs * target).sum().backward()
    for a, b in ((ours_p.original0, theirs_p.original0), (ours_p.original1, theirs_p.original1),
                 (ours.bias, theirs.bias)):
        torch.testing.assert_close(a.grad, b.grad, **TOL)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
def test_conv_transpose_dim0_is_per_input_channel_as_in_torch(device):
    _, ours, _, _ = _pair("conv_transpose2d", 0, device)
    g = ours.parametrizations.weight.original0
    assert g.shape == (4, 1, 1, 1)  # weight (in=4, out=6, 3, 3): one g per input channel
    _, ours1, _, _ = _pair("conv_transpose2d", 1, device)
    assert ours1.parametrizations.weight.original0.shape == (1, 6, 1, 1)


def test_dim_none_and_minus_one_mean_one_norm_for_the_whole_tensor_as_in_torch():
    layer = nn.Linear(5, 3).double()
    for dim in (None, -1):
        g = weight_norm(copy.deepcopy(layer), dim=dim).parametrizations.weight.original0
        assert g.shape == torch_weight_norm(copy.deepcopy(layer), dim=dim).parametrizations.weight.original0.shape
        torch.testing.assert_close(g, layer.weight.detach().norm(), **TOL)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("dim", [0, None])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_state_dicts_load_both_ways(kind, dim, device):
    _, ours, theirs, x = _pair(kind, dim, device)
    _, other_ours, other_theirs, _ = _pair(kind, dim, device, seed=5)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert "parametrizations.weight.original0" in ours.state_dict()
    other_theirs.load_state_dict(ours.state_dict())
    other_ours.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(other_theirs(x), ours(x), **TOL)
    torch.testing.assert_close(other_ours(x), theirs(x), **TOL)


@pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm. is deprecated:FutureWarning")
def test_loads_state_dicts_of_the_legacy_torch_weight_norm():
    legacy = nn.utils.weight_norm(nn.Linear(5, 3).double())  # keys weight_g, weight_v
    ours = weight_norm(nn.Linear(5, 3).double())
    ours.load_state_dict(legacy.state_dict())
    x = torch.randn(4, 5, generator=gen(), dtype=torch.float64)
    torch.testing.assert_close(ours(x), legacy(x), **TOL)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_gradient_with_respect_to_v_is_orthogonal_to_v(kind, device):
    _, ours, _, x = _pair(kind, 0, device)
    ours(x).pow(2).sum().backward()
    p = ours.parametrizations.weight
    v, grad = p.original1, p.original1.grad
    unit_dims = [d for d in range(v.dim()) if d != 0]
    inner = (v * grad).sum(dim=unit_dims)  # v_i . dL/dv_i, one per g
    assert grad.abs().max() > 1e-3  # the gradient itself is not zero
    torch.testing.assert_close(inner, torch.zeros_like(inner), rtol=0, atol=1e-12)


def test_gradients_follow_the_papers_formulas():
    """dL/dg = dL/dw . v/||v|| and dL/dv = (g/||v||)(I - w w^T/||w||^2) dL/dw, per unit."""
    layer = weight_norm(nn.Linear(6, 4).double())
    p = layer.parametrizations.weight
    with torch.no_grad():
        p.original0.mul_(1.7)
    x = torch.randn(9, 6, generator=gen(), dtype=torch.float64)
    w = layer.weight.detach().requires_grad_()
    nn.functional.linear(x, w, layer.bias).tanh().sum().backward()
    layer(x).tanh().sum().backward()
    g, v, gw = p.original0.detach(), p.original1.detach(), w.grad
    vn = v.norm(dim=1, keepdim=True)
    u = w.detach() / w.detach().norm(dim=1, keepdim=True)  # (4, 6) unit directions
    torch.testing.assert_close(p.original0.grad, (gw * v / vn).sum(dim=1, keepdim=True), **TOL)
    projected = gw - (gw * u).sum(dim=1, keepdim=True) * u
    torch.testing.assert_close(p.original1.grad, g / vn * projected, **TOL)


@pytest.mark.parametrize("device", DEVICES)
def test_removal_leaves_the_same_function_as_a_plain_weight(device):
    layer = weight_norm(nn.Conv2d(2, 4, 3).to(device))
    x = torch.randn(2, 2, 6, 6, generator=gen()).to(device)
    before = layer(x).detach()
    remove_weight_norm(layer)
    assert not parametrize.is_parametrized(layer) and isinstance(layer.weight, nn.Parameter)
    torch.testing.assert_close(layer(x), before)
    torch_removed = parametrize.remove_parametrizations(weight_norm(nn.Linear(3, 2)), "weight")
    assert sorted(n for n, _ in torch_removed.named_parameters()) == ["bias", "weight"]


def test_deepcopy_is_independent_and_pickling_goes_through_the_state_dict():
    layer = weight_norm(nn.Linear(5, 3))
    clone = copy.deepcopy(layer)
    x = torch.randn(4, 5, generator=gen())
    torch.testing.assert_close(clone(x), layer(x), rtol=0, atol=0)
    with torch.no_grad():
        clone.parametrizations.weight.original0.mul_(2)
    assert not torch.allclose(clone(x), layer(x))
    # PyTorch refuses to pickle any parametrized module; its state dict and our own classes pickle.
    with pytest.raises(RuntimeError, match="state_dict"):
        pickle.dumps(layer)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = weight_norm(nn.Linear(5, 3))
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=0)
    plain = WeightNormLinear(5, 3)
    torch.testing.assert_close(pickle.loads(pickle.dumps(plain))(x), plain(x), rtol=0, atol=0)
    norm = MeanOnlyBatchNorm(3)
    assert torch.equal(pickle.loads(pickle.dumps(norm)).running_mean, norm.running_mean)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
def test_weight_norm_linear_equals_parametrized_linear(device):
    torch.manual_seed(0)
    linear = nn.Linear(6, 4).to(device=device, dtype=torch.float64)
    ours = WeightNormLinear.from_linear(linear)
    theirs = torch_weight_norm(copy.deepcopy(linear))
    with torch.no_grad():
        ours.g.mul_(1.5)
        theirs.parametrizations.weight.original0.mul_(1.5)
    x = torch.randn(5, 6, generator=gen(), dtype=torch.float64).to(device)
    torch.testing.assert_close(ours(x), theirs(x), **TOL)
    ours(x).sin().sum().backward()
    theirs(x).sin().sum().backward()
    p = theirs.parametrizations.weight
    torch.testing.assert_close(ours.g.grad, p.original0.grad.squeeze(1), **TOL)
    torch.testing.assert_close(ours.v.grad, p.original1.grad, **TOL)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, **TOL)
    # A fresh layer starts as nn.Linear does: g = ||v|| row by row.
    fresh = WeightNormLinear(6, 4)
    torch.testing.assert_close(fresh.weight, fresh.v)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["ours", "torch", "plain"])
def test_data_dependent_init_standardizes_every_unit_on_the_batch(kind, device):
    wrap = {"ours": weight_norm, "torch": torch_weight_norm, "plain": WeightNormLinear.from_linear}[kind]
    torch.manual_seed(0)
    net = nn.Sequential(wrap(nn.Linear(8, 16)), nn.ReLU(), wrap(nn.Linear(16, 16)), nn.ReLU(),
                        wrap(nn.Linear(16, 3))).to(device)
    x = (3 + 2 * torch.randn(256, 8, generator=gen())).to(device)
    data_dependent_init_(net, x, generator=gen(1))
    h = x
    with torch.no_grad():
        for layer in net:
            h = layer(h)
            if not isinstance(layer, nn.ReLU):  # every layer's pre-activation: mean 0, std 1 per unit
                torch.testing.assert_close(h.mean(0), torch.zeros(h.shape[1], device=device), rtol=0, atol=1e-5)
                torch.testing.assert_close(h.std(0, unbiased=False), torch.ones(h.shape[1], device=device),
                                           rtol=0, atol=1e-5)
    # v is N(0, 0.05^2) and comes from the generator: the same generator gives the same network.
    v = net[0].v if kind == "plain" else net[0].parametrizations.weight.original1
    assert 0.04 < v.std().item() < 0.06
    again = copy.deepcopy(net)
    data_dependent_init_(again, x, generator=gen(1))
    torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)


def test_data_dependent_init_for_convolutions_uses_batch_and_positions():
    net = nn.Sequential(weight_norm(nn.Conv2d(1, 4, 3)), nn.ReLU(), weight_norm(nn.ConvTranspose2d(4, 2, 3), dim=1))
    x = torch.randn(16, 1, 8, 8, generator=gen())
    data_dependent_init_(net, x, generator=gen(1))
    with torch.no_grad():
        for h in (net[0](x), net(x)):
            torch.testing.assert_close(h.mean(dim=(0, 2, 3)), torch.zeros(h.shape[1]), rtol=0, atol=1e-5)
            torch.testing.assert_close(h.std(dim=(0, 2, 3), unbiased=False), torch.ones(h.shape[1]),
                                       rtol=0, atol=1e-5)


def test_mean_only_batch_norm_matches_batch_norm_without_the_division():
    x = (2 + 3 * torch.randn(10, 4, 3, 3, generator=gen(), dtype=torch.float64))
    ours, bn = MeanOnlyBatchNorm(4, momentum=0.2).double(), nn.BatchNorm2d(4, momentum=0.2, affine=False).double()
    for _ in range(3):
        y = ours(x)
        scale = (x.var(dim=(0, 2, 3), unbiased=False) + bn.eps).sqrt().reshape(1, -1, 1, 1)
        torch.testing.assert_close(y, bn(x) * scale, **TOL)
    torch.testing.assert_close(ours.running_mean, bn.running_mean, **TOL)
    ours.eval()
    torch.testing.assert_close(ours(x), x - bn.running_mean.reshape(1, -1, 1, 1), **TOL)


# Bad input: a clear error each.

def test_weight_norm_rejects_bad_arguments():
    with pytest.raises(TypeError, match="dim must be an int or None, got str '0'"):
        weight_norm(nn.Linear(3, 2), dim="0")
    with pytest.raises(TypeError, match="dim must be an int or None, got bool True"):
        weight_norm(nn.Linear(3, 2), dim=True)
    with pytest.raises(ValueError, match=r"dim must be None or in \[-2, 1\] .* got 2"):
        weight_norm(nn.Linear(3, 2), dim=2)
    with pytest.raises(ValueError, match="no parameter called 'kernel'"):
        weight_norm(nn.Linear(3, 2), name="kernel")
    with pytest.raises(TypeError, match="name must be a str"):
        weight_norm(nn.Linear(3, 2), name=0)
    with pytest.raises(TypeError, match="module must be an nn.Module"):
        weight_norm(torch.zeros(3))
    with pytest.raises(ValueError, match="already parametrized"):
        weight_norm(weight_norm(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="no weight norm to remove"):
        remove_weight_norm(nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"dim must be None or in \[-1, 0\]"):
        norm_except_dim(torch.ones(3), dim=1)


def test_data_dependent_init_rejects_bad_arguments():
    x = torch.randn(8, 3, generator=gen())
    with pytest.raises(ValueError, match="no weight-normalized layer"):
        data_dependent_init_(nn.Linear(3, 2), x)
    with pytest.raises(ValueError, match="one g per output unit.*dim=None"):
        data_dependent_init_(weight_norm(nn.Linear(3, 2), dim=None), x)
    with pytest.raises(ValueError, match="expected dim=1"):
        data_dependent_init_(weight_norm(nn.ConvTranspose2d(3, 2, 3)), torch.randn(4, 3, 5, 5))
    with pytest.raises(ValueError, match="at least 2 samples"):
        data_dependent_init_(weight_norm(nn.Linear(3, 2)), x[:1])
    with pytest.raises(ValueError, match="std must be positive, got 0.0"):
        data_dependent_init_(weight_norm(nn.Linear(3, 2)), x, std=0)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        data_dependent_init_(weight_norm(nn.Linear(3, 2)), x.numpy())
    with pytest.raises(ValueError, match="Linear and"):
        data_dependent_init_(weight_norm(nn.Embedding(4, 3)), torch.tensor([0, 1]))
    unused = nn.ModuleDict({"used": weight_norm(nn.Linear(3, 2)), "unused": weight_norm(nn.Linear(3, 2))})
    unused.forward = lambda x: unused["used"](x)
    with pytest.raises(ValueError, match=r"never reached the layers \['unused'\]"):
        data_dependent_init_(unused, x)


def test_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="out_features must be at least 1, got 0"):
        WeightNormLinear(3, 0)
    with pytest.raises(TypeError, match="in_features must be an int, got float 3.0"):
        WeightNormLinear(3.0, 2)
    with pytest.raises(TypeError, match="linear must be an nn.Linear, got Conv2d"):
        WeightNormLinear.from_linear(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="momentum must be at most 1, got 2.0"):
        MeanOnlyBatchNorm(3, momentum=2)
    with pytest.raises(ValueError, match="momentum must be at least 0.0, got -0.1"):
        MeanOnlyBatchNorm(3, momentum=-0.1)
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got int 0"):
        data_dependent_init_(weight_norm(nn.Linear(3, 2)), torch.randn(4, 3), generator=0)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, \*\)"):
        MeanOnlyBatchNorm(3)(torch.zeros(2, 4))
    assert not is_weight_normalized(nn.Linear(3, 2))


# The chapter's exact identities about L2 and weight decay (one step each, float64).

def _one_step(opt_name, weight_decay, penalty, lr=0.1, steps=1):
    torch.manual_seed(0)
    net = nn.Linear(4, 3).double()
    x = torch.randn(8, 4, generator=gen(), dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=gen())
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[opt_name](
        net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        loss = loss + penalty / 2 * sum(p.pow(2).sum() for p in net.parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_sgd_weight_decay_is_the_gradient_of_half_lambda_squared_norm():
    torch.testing.assert_close(_one_step("sgd", 0.3, 0.0), _one_step("sgd", 0.0, 0.3), **TOL)


def test_adam_weight_decay_is_coupled_l2_and_adamw_is_not():
    torch.testing.assert_close(_one_step("adam", 0.3, 0.0, steps=3), _one_step("adam", 0.0, 0.3, steps=3), **TOL)
    # AdamW shrinks the weights by lr * lambda outside the adaptive step: a different point.
    adamw, coupled = _one_step("adamw", 0.3, 0.0, steps=3), _one_step("adam", 0.0, 0.3, steps=3)
    assert (adamw - coupled).abs().max() > 1e-3


def test_adamw_is_adam_followed_by_a_decoupled_shrink():
    torch.manual_seed(0)
    net = nn.Linear(4, 3).double()
    before = torch.cat([p.detach().flatten() for p in net.parameters()])
    adam = _one_step("adam", 0.0, 0.0, lr=0.1)
    adamw = _one_step("adamw", 0.3, 0.0, lr=0.1)
    torch.testing.assert_close(adamw, adam - 0.1 * 0.3 * before, **TOL)


@pytest.mark.parametrize("where", ["batch_norm", "weight_norm"])
def test_scale_invariance_divides_the_gradient_by_c(where):
    """Scaling the weights by c leaves the output unchanged and divides their gradient by c.

    Exact with eps -> 0; BatchNorm's default eps = 1e-5 breaks the invariance slightly when the variance is small.
    """
    torch.manual_seed(0)
    x = torch.randn(16, 5, generator=gen(), dtype=torch.float64)
    if where == "batch_norm":
        bn = nn.BatchNorm1d(4, eps=1e-30)  # PyTorch needs eps > 0; at 1e-30 it is below float64's resolution
        net = nn.Sequential(nn.Linear(5, 4, bias=False), bn, nn.Tanh(), nn.Linear(4, 1)).double()
        param = net[0].weight
    else:
        net = nn.Sequential(weight_norm(nn.Linear(5, 4)), nn.Tanh(), nn.Linear(4, 1)).double()
        param = net[0].parametrizations.weight.original1

    def output_and_grad():
        net.zero_grad()
        out = net(x)
        out.sum().backward()
        return out.detach(), param.grad.clone()

    out1, grad1 = output_and_grad()
    with torch.no_grad():
        param.mul_(3.0)
    out3, grad3 = output_and_grad()
    torch.testing.assert_close(out3, out1, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad3, grad1 / 3.0, rtol=0, atol=1e-12)
