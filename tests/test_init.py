"""Tests for sigprop.init: every formula on large samples, torch parity, orthogonality, LSUV, errors."""

import math

import pytest
import torch
from conftest import DEVICES, FLOAT64_DEVICES, gen
from torch import nn

from sigprop.init import (
    SCHEMES,
    calculate_gain,
    fan_in_and_fan_out,
    init_std,
    initialize,
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    lsuv_,
    orthogonal_,
    reset_parameters_,
    xavier_normal_,
    xavier_uniform_,
)

# Relative tolerance on a sample variance. With n >= 1.2e5 draws the variance estimate's relative standard
# error is sqrt(2 / n) <= 0.0041 (normal) and sqrt(0.8 / n) <= 0.0026 (uniform): 3% is > 7 standard errors.
VAR_RTOL = 0.03
# Large weights: a wide and a tall Linear, and a conv whose fans (1152, 2304) differ.
SHAPES = [(300, 400), (600, 200), (256, 128, 3, 3)]


def fans(shape):
    field = math.prod(shape[2:])
    return shape[1] * field, shape[0] * field


def assert_var(tensor, expected_var):
    var = tensor.double().var(unbiased=False).item()
    assert var == pytest.approx(expected_var, rel=VAR_RTOL), f"Var {var:.4g} vs formula {expected_var:.4g}"
    assert abs(tensor.double().mean().item()) < 5 * math.sqrt(expected_var / tensor.numel())


# --- fans ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (8, 4, 3), (16, 3, 5, 5), (4, 2, 3, 3, 3), (7, 1)])
def test_fans_equal_torch(shape):
    w = torch.empty(shape)
    assert fan_in_and_fan_out(w) == torch.nn.init._calculate_fan_in_and_fan_out(w)
    assert fan_in_and_fan_out(w) == fans(shape)


def test_fans_of_a_grouped_conv_count_channels_per_group():
    conv = nn.Conv2d(8, 16, kernel_size=3, groups=4)  # weight (16, 2, 3, 3)
    assert fan_in_and_fan_out(conv.weight) == (2 * 9, 16 * 9)


# --- the variance formulas on large samples --------------------------------------------------------
# Parity with torch.nn.init (below) checks every formula torch has, bit for bit; what is left to check on
# large samples is what torch cannot vouch for: a gain torch does not know, and the normal/uniform twins.


@pytest.mark.parametrize("sampler", [kaiming_uniform_, kaiming_normal_])
def test_kaiming_variance_with_a_gain_torch_does_not_know(sampler):
    shape = (256, 128, 3, 3)  # a conv: fan_in = 128 * 9
    w = sampler(torch.empty(shape), nonlinearity="gelu", generator=gen())
    assert_var(w, calculate_gain("gelu") ** 2 / fans(shape)[0])


def test_lecun_normal_variance():
    shape = SHAPES[2]
    assert_var(lecun_normal_(torch.empty(shape), generator=gen()), 1 / fans(shape)[0])


def test_uniform_and_normal_twins_share_variance_but_not_support():
    shape = SHAPES[0]
    u = xavier_uniform_(torch.empty(shape), generator=gen(1))
    n = xavier_normal_(torch.empty(shape), generator=gen(2))
    bound = math.sqrt(6 / sum(fans(shape)))  # sqrt(3) * std
    assert u.abs().max().item() <= bound
    assert u.abs().max().item() > 0.99 * bound
    assert n.abs().max().item() > 1.5 * bound  # the normal's tails reach past the uniform's edge
    assert u.var().item() == pytest.approx(n.var().item(), rel=2 * VAR_RTOL)


# --- parity with torch.nn.init: same generator, same bits ---------------------------------------------


@pytest.mark.parametrize("shape", [(30, 40), (8, 4, 3, 3)])
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), [
    (xavier_uniform_, torch.nn.init.xavier_uniform_, {"gain": 1.3}),
    (xavier_normal_, torch.nn.init.xavier_normal_, {"gain": 0.7}),
    (kaiming_uniform_, torch.nn.init.kaiming_uniform_, {"a": 0.1, "mode": "fan_out"}),
    (kaiming_uniform_, torch.nn.init.kaiming_uniform_, {"a": math.sqrt(5)}),  # nn.Linear's default
    (kaiming_normal_, torch.nn.init.kaiming_normal_, {"nonlinearity": "relu"}),
    (kaiming_normal_, torch.nn.init.kaiming_normal_, {"nonlinearity": "tanh", "mode": "fan_out"}),
    (kaiming_normal_, torch.nn.init.kaiming_normal_, {"nonlinearity": "selu"}),
    (orthogonal_, torch.nn.init.orthogonal_, {"gain": 2.0}),
])
def test_samplers_match_torch_bit_for_bit(ours, theirs, kwargs, shape):
    a = ours(torch.empty(shape, dtype=torch.float64), generator=gen(3), **kwargs)
    b = theirs(torch.empty(shape, dtype=torch.float64), generator=gen(3), **kwargs)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# --- orthogonal ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "kind"), [
    ((20, 50), "wide"), ((50, 20), "tall"), ((30, 30), "square"),
    ((8, 4, 3, 3), "wide"),    # flattened (8, 36)
    ((64, 2, 3, 3), "tall"),   # flattened (64, 18)
    ((6, 5, 7), "wide"),       # Conv1d, flattened (6, 35)
])
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2)])
def test_orthogonal_is_orthogonal(shape, kind, gain):
    w = orthogonal_(torch.empty(shape, dtype=torch.float64), gain=gain, generator=gen())
    flat = w.reshape(shape[0], -1)  # (out, in * prod(kernel))
    gram = flat @ flat.T if kind in ("wide", "square") else flat.T @ flat
    eye = torch.eye(gram.shape[0], dtype=torch.float64)
    torch.testing.assert_close(gram, gain**2 * eye, rtol=0, atol=1e-12)
    singular = torch.linalg.svdvals(flat)
    torch.testing.assert_close(singular, torch.full_like(singular, gain), rtol=0, atol=1e-12)


def test_orthogonal_is_haar_not_biased():
    # Haar-uniform orthogonal matrices have E[trace] = 0 and E[Q_00] = 0; unsigned QR would bias these.
    traces = torch.stack([orthogonal_(torch.empty(4, 4), generator=gen(s)).trace() for s in range(2000)])
    assert abs(traces.mean().item()) < 4 * traces.std().item() / math.sqrt(2000)


def test_init_std_orthogonal_matches_entry_std():
    for shape in [(100, 400), (400, 100)]:
        w = orthogonal_(torch.empty(shape), gain=1.5, generator=gen())
        want = init_std(w, "orthogonal", nonlinearity="linear", gain=1.5)
        assert w.std().item() == pytest.approx(want, rel=0.02)


# --- initialize -------------------------------------------------------------------------------------


def expected_var(scheme, shape, gain, std):
    """The variance formulas written out by hand for a tanh network (gain 5/3), independent of init_std."""
    fan_in, fan_out = fans(shape)
    rows, cols = shape[0], math.prod(shape[1:])  # the orthogonal matrix is (out, in * prod(kernel))
    act = 25 / 9
    return gain**2 * {
        "default": 1 / (3 * fan_in),
        "zeros": 0.0,
        "normal": std**2,
        "lecun_normal": 1 / fan_in,
        "xavier_uniform": 2 / (fan_in + fan_out),
        "xavier_normal": 2 / (fan_in + fan_out),
        "kaiming_uniform": act / fan_in,
        "kaiming_normal": act / fan_in,
        "orthogonal": act / max(rows, cols),  # unit-norm rows (wide) or columns (tall)
    }[scheme]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_initialize_variance(scheme):
    model = nn.Sequential(nn.Linear(400, 300), nn.Tanh(), nn.Conv2d(3, 128, kernel_size=(16, 16)))
    std = 0.05 if scheme == "normal" else None
    initialize(model, scheme, nonlinearity="tanh", std=std, gain=0.5, generator=gen(), linear_output=False)
    for layer in (model[0], model[2]):
        want = expected_var(scheme, tuple(layer.weight.shape), 0.5, 0.05)
        assert init_std(layer.weight, scheme, nonlinearity="tanh", std=std, gain=0.5) ** 2 == (
            pytest.approx(want, rel=1e-12))
        if scheme == "zeros":
            assert layer.weight.abs().max().item() == 0
        else:
            assert_var(layer.weight, want)
        if scheme == "default":
            assert layer.bias.abs().max().item() > 0  # PyTorch's own bias init
        else:
            assert layer.bias.abs().max().item() == 0


@pytest.mark.parametrize("scheme", ["kaiming_normal", "kaiming_uniform", "orthogonal", "xavier_normal"])
def test_the_output_layer_gets_gain_1_not_the_activations(scheme):
    def build(linear_output):
        model = nn.Sequential(nn.Linear(600, 500), nn.ReLU(), nn.Linear(500, 400))
        return initialize(model, scheme, nonlinearity="relu", generator=gen(3), linear_output=linear_output)

    ours, pytorch_style = build(True), build(False)
    torch.testing.assert_close(ours[0].weight, pytorch_style[0].weight, rtol=0, atol=0)  # hidden: ReLU's gain
    act = 1.0 if scheme == "xavier_normal" else math.sqrt(2)  # Xavier uses no activation gain anyway
    torch.testing.assert_close(ours[2].weight * act, pytorch_style[2].weight, rtol=1e-6, atol=0)


def test_initialize_kaiming_fan_out_mode():
    model = nn.Linear(200, 600)
    initialize(model, "kaiming_normal", nonlinearity="relu", mode="fan_out", generator=gen())
    assert_var(model.weight, 2 / 600)


def test_initialize_leaky_relu_param():
    model = nn.Linear(600, 400)
    initialize(model, "kaiming_normal", nonlinearity="leaky_relu", param=0.3, generator=gen())
    assert_var(model.weight, 2 / (1 + 0.09) / 600)


def test_initialize_skips_other_layers_and_returns_model():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))
    bn_weight = model[1].weight.clone()
    assert initialize(model, "xavier_normal", generator=gen()) is model
    assert torch.equal(model[1].weight, bn_weight)


def test_pytorch_linear_default_is_one_third_over_fan_in():
    # Measured, not quoted: nn.Linear's reset is kaiming_uniform_(a=sqrt(5)), so Var[w] = 1 / (3 fan_in),
    # a third of LeCun's 1 / fan_in and a sixth of He's 2 / fan_in; the bias is U(-1/sqrt(fan_in), ...).
    w = reset_parameters_(nn.Linear(1024, 512), gen()).weight
    assert_var(w, 1 / (3 * 1024))
    assert w.abs().max().item() <= 1 / math.sqrt(1024)


@pytest.mark.parametrize("build", [
    lambda: nn.Sequential(nn.Linear(7, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3, bias=False)),
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Conv1d(4, 2, 2), nn.ConvTranspose2d(2, 2, 3)),
])
def test_reset_parameters_replays_pytorchs_default_bit_for_bit(build):
    torch.manual_seed(123)
    theirs = build()
    torch.manual_seed(0)  # whatever the global stream does, the generator decides
    ours = reset_parameters_(build(), torch.Generator().manual_seed(123))
    for (name, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_initialize_default_redraws_from_the_generator_and_keeps_pytorchs_draw_without_one():
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2))
    before = [p.clone() for p in model.parameters()]
    initialize(model, "default")
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))
    initialize(model, "default", generator=gen(9))
    twin = reset_parameters_(nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2)), gen(9))
    assert all(torch.equal(p, q) for p, q in zip(twin.parameters(), model.parameters(), strict=True))


# --- generators and reproducibility ------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [xavier_uniform_, xavier_normal_, kaiming_uniform_, kaiming_normal_,
                                     lecun_normal_, orthogonal_])
def test_same_seed_same_tensor(sampler):
    a = sampler(torch.empty(20, 30), generator=gen(7))
    torch.manual_seed(99)  # the global stream does not matter when a generator is given
    b = sampler(torch.empty(20, 30), generator=gen(7))
    c = sampler(torch.empty(20, 30), generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(5)
    d = sampler(torch.empty(20, 30))
    torch.manual_seed(5)
    assert torch.equal(d, sampler(torch.empty(20, 30)))  # generator=None: the global stream


@pytest.mark.parametrize("scheme", SCHEMES)
def test_initialize_same_seed_same_model(scheme):
    def build(global_seed):
        torch.manual_seed(global_seed)
        model = nn.Sequential(nn.Linear(10, 20), nn.Tanh(), nn.Conv1d(20, 5, 3))
        std = 0.1 if scheme == "normal" else None
        return initialize(model, scheme, nonlinearity="tanh", std=std, generator=gen(11))

    for p, q in zip(build(1).parameters(), build(2).parameters(), strict=True):
        assert torch.equal(p, q)


def test_lsuv_same_seed_same_model():
    batch = torch.randn(64, 10, generator=gen(1))

    def build(global_seed):
        torch.manual_seed(global_seed)
        return lsuv_(nn.Sequential(nn.Linear(10, 20), nn.Tanh(), nn.Linear(20, 5)), batch, generator=gen(11))

    for p, q in zip(build(1).parameters(), build(2).parameters(), strict=True):
        assert torch.equal(p, q)


# --- devices and dtypes --------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sampler", [xavier_uniform_, xavier_normal_, kaiming_uniform_, kaiming_normal_,
                                     lecun_normal_, orthogonal_])
def test_samplers_on_device(device, sampler):
    w = torch.empty(200, 300, device=device)
    assert sampler(w) is w and w.device.type == device
    # a CPU generator (what seed_everything returns) also seeds a weight on another device
    a = sampler(torch.empty(200, 300, device=device), generator=gen(4))
    b = sampler(torch.empty(200, 300, device=device), generator=gen(4))
    assert a.device.type == device and torch.equal(a, b)
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
def test_initialize_and_lsuv_on_device_in_float64(device):
    model = nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 10)).to(device, torch.float64)
    initialize(model, "kaiming_normal", generator=gen())
    assert model[0].weight.dtype == torch.float64 and model[0].weight.device.type == device
    batch = torch.randn(256, 30, dtype=torch.float64, generator=gen()).to(device)
    lsuv_(model, batch, generator=gen())
    assert all(abs(s - 1) < 0.05 for s in model.lsuv_stds.values())


# --- LSUV --------------------------------------------------------------------------------------------


def output_stds(model, batch):
    stds = []
    hooks = [m.register_forward_hook(lambda m, i, o: stds.append(o.std(unbiased=False).item()))
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    return stds


def test_lsuv_gives_unit_output_variance_per_layer_mlp():
    torch.manual_seed(0)
    layers = [nn.Linear(64, 128), nn.ReLU()]
    for _ in range(8):
        layers += [nn.Linear(128, 128), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(128, 10))
    batch = 3.0 * torch.randn(500, 64, generator=gen()) + 1.0  # deliberately unstandardized
    assert lsuv_(model, batch, generator=gen()) is model
    stds = output_stds(model, batch)
    assert len(stds) == 10 == len(model.lsuv_stds)
    for s in stds:
        assert abs(s**2 - 1) < 0.05
    assert list(model.lsuv_stds.values()) == pytest.approx(stds, rel=1e-6)


def test_lsuv_on_a_conv_net():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Tanh(), nn.Conv2d(8, 16, 3), nn.Tanh(),
                          nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    batch = torch.randn(64, 1, 8, 8, generator=gen())
    lsuv_(model, batch, tol=0.01, generator=gen())
    for s in output_stds(model, batch):
        assert abs(s**2 - 1) < 0.01


class Reversed(nn.Module):
    """Layers registered in the opposite order to the one forward() calls them in."""

    def __init__(self):
        super().__init__()
        self.second = nn.Linear(32, 8)
        self.first = nn.Linear(16, 32)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def test_lsuv_follows_the_forward_order():
    model = Reversed()
    batch = torch.randn(400, 16, generator=gen())
    lsuv_(model, batch, generator=gen())
    assert list(model.lsuv_stds) == ["first", "second"]
    assert all(abs(s**2 - 1) < 0.05 for s in output_stds(model, batch))


def test_lsuv_warns_on_a_dead_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.warns(UserWarning, match="has variance 0"):
        lsuv_(model, torch.zeros(8, 4))
