"""Tests for sigprop.models: layer names and order, norms, initialization, forward shapes, errors."""

import math

import pytest
import torch
from conftest import DEVICES, gen
from torch import nn

from sigprop.models import NORMS, make_activation, make_norm, mlp, small_cnn


def names(model):
    return [name for name, _ in model.named_children()]


# --- make_activation and make_norm --------------------------------------------------------------------


def test_make_norm_by_name_none_and_factory():
    assert make_norm(None, 8) is None and make_norm("none", 8) is None
    assert isinstance(make_norm("batch", 8), nn.BatchNorm1d) and make_norm("batch", 8).num_features == 8
    assert isinstance(make_norm("layer", 8), nn.LayerNorm) and make_norm("layer", 8).normalized_shape == (8,)
    layer = make_norm(lambda n: nn.GroupNorm(2, n), 8)
    assert isinstance(layer, nn.GroupNorm) and layer.num_channels == 8
    assert set(NORMS) == {"batch", "layer"}


# --- mlp: structure -----------------------------------------------------------------------------------


def test_mlp_layer_names_and_depth():
    net = mlp(64, 10, depth=3, width=32, activation="tanh")
    assert names(net) == ["linear1", "act1", "linear2", "act2", "linear3", "act3", "out"]
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert len(linears) == 4  # depth + 1
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 32), (32, 32), (32, 10)]
    assert all(isinstance(getattr(net, f"act{i}"), nn.Tanh) for i in (1, 2, 3))


@pytest.mark.parametrize("norm, cls", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_mlp_inserts_norm_between_linear_and_activation(norm, cls):
    net = mlp(8, 3, depth=2, width=6, norm=norm)
    assert names(net) == ["linear1", "norm1", "act1", "linear2", "norm2", "act2", "out"]
    assert isinstance(net.norm1, cls) and isinstance(net.norm2, cls)


def test_mlp_norm_none_string_adds_nothing():
    assert names(mlp(8, 3, depth=1, width=4, norm="none")) == ["linear1", "act1", "out"]


def test_mlp_accepts_a_norm_factory():
    calls = []

    def factory(n):
        calls.append(n)
        return nn.GroupNorm(2, n)

    net = mlp(8, 3, depth=2, width=6, norm=factory)
    assert calls == [6, 6]
    assert isinstance(net.norm1, nn.GroupNorm) and net.norm1 is not net.norm2


def test_mlp_without_bias():
    net = mlp(8, 3, depth=2, width=6, bias=False)
    assert all(m.bias is None for m in net if isinstance(m, nn.Linear))


def test_mlp_modules_are_distinct_objects():
    net = mlp(8, 3, depth=3, width=6)
    assert net.act1 is not net.act2


# --- mlp: initialization ------------------------------------------------------------------------------


@pytest.mark.parametrize("std", [0.01, 0.5, 2.0])
def test_mlp_float_init_gives_weight_std(std):
    net = mlp(256, 256, depth=2, width=256, init=std, generator=gen())
    for m in net:
        if isinstance(m, nn.Linear):
            # 65,536 draws: the sample std's relative standard error is 1 / sqrt(2 n) = 0.3%; 2% is > 6 of them.
            assert m.weight.std().item() == pytest.approx(std, rel=0.02)
            assert abs(m.weight.mean().item()) < 0.02 * std
            assert torch.all(m.bias == 0)


def test_mlp_float_init_zero_and_int():
    net = mlp(8, 3, depth=1, width=4, init=0)
    assert all(torch.all(m.weight == 0) for m in net if isinstance(m, nn.Linear))


def test_mlp_callable_init_applied_to_each_weight_and_biases_zeroed():
    seen = []

    def init(w):
        seen.append(tuple(w.shape))
        w.fill_(0.25)

    net = mlp(8, 3, depth=2, width=6, init=init)
    assert seen == [(6, 8), (6, 6), (3, 6)]
    for m in net:
        if isinstance(m, nn.Linear):
            assert torch.all(m.weight == 0.25) and torch.all(m.bias == 0)


def test_mlp_named_init_uses_the_scheme_for_the_activation():
    net = mlp(512, 512, depth=1, width=512, activation="relu", init="kaiming_normal", generator=gen())
    # He et al. (2015): std = sqrt(2 / fan_in) for ReLU; 262,144 draws, so 2% is > 10 standard errors.
    assert net.linear1.weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.02)


def test_mlp_default_init_keeps_pytorch_defaults():
    net = mlp(8, 3, depth=1, width=4)
    bound = 1 / math.sqrt(8)  # PyTorch's Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias
    assert net.linear1.bias.abs().max() <= bound and net.linear1.bias.abs().max() > 0


def test_make_activation_gives_a_fresh_module_each_time():
    assert make_activation("tanh") is not make_activation("tanh")


# --- the generator decides, for every init ------------------------------------------------------------

INITS = ["default", "zeros", "lecun_normal", "xavier_uniform", "xavier_normal", "kaiming_uniform",
         "kaiming_normal", "orthogonal", 0.05]


@pytest.mark.parametrize("builder", [
    lambda init, g: mlp(8, 3, depth=2, width=6, activation="tanh", norm="layer", init=init, generator=g),
    lambda init, g: small_cnn(channels=(4, 6), norm="batch", init=init, generator=g),
], ids=["mlp", "small_cnn"])
@pytest.mark.parametrize("init", INITS, ids=str)
def test_same_seeded_generator_same_parameters_whatever_the_global_stream(builder, init):
    torch.manual_seed(1)
    a = builder(init, gen(1))
    torch.manual_seed(2)
    torch.randn(100)  # consume some of the global stream
    state = torch.get_rng_state()
    b = builder(init, gen(1))
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left alone
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
    if init not in ("zeros",):
        c = builder(init, gen(2))
        assert not torch.equal(next(a.parameters()), next(c.parameters()))


@pytest.mark.parametrize("builder", [lambda **kw: mlp(8, 3, depth=2, width=6, norm="batch", **kw),
                                     lambda **kw: small_cnn(channels=(4, 6), norm="group", **kw)],
                         ids=["mlp", "small_cnn"])
def test_default_init_from_a_generator_is_pytorchs_own_bit_for_bit(builder):
    torch.manual_seed(5)
    theirs = builder()  # PyTorch's reset_parameters, drawn from the global stream
    ours = builder(generator=torch.Generator().manual_seed(5))
    for (name, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        assert torch.equal(p, q), name


# --- mlp: forward on every device ---------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_mlp_forward_shape_on_device(device, norm):
    net = mlp(12, 5, depth=3, width=16, norm=norm, init=0.2, generator=gen(), device=device)
    assert all(p.device.type == device for p in net.parameters())
    out = net(torch.randn(7, 12, device=device))
    assert out.shape == (7, 5) and out.device.type == device
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("device", DEVICES)
def test_mlp_init_is_the_same_on_every_device(device):
    cpu = mlp(6, 2, depth=1, width=4, init=0.5, generator=gen(3))
    dev = mlp(6, 2, depth=1, width=4, init=0.5, generator=gen(3), device=device)
    torch.testing.assert_close(dev.linear1.weight.cpu(), cpu.linear1.weight, rtol=0, atol=0)


# --- small_cnn ----------------------------------------------------------------------------------------


def test_small_cnn_layer_names():
    net = small_cnn()
    assert names(net) == ["conv1", "act1", "pool1", "conv2", "act2", "gap", "flatten", "out"]
    assert net.conv1.kernel_size == (3, 3) and net.conv1.padding == (1, 1)
    assert (net.conv1.in_channels, net.conv1.out_channels, net.conv2.out_channels) == (1, 16, 32)
    assert (net.out.in_features, net.out.out_features) == (32, 10)


def test_small_cnn_three_blocks_pools_once():
    net = small_cnn(3, 4, channels=(4, 8, 12), activation="tanh")
    assert names(net) == ["conv1", "act1", "pool1", "conv2", "act2", "conv3", "act3", "gap", "flatten", "out"]
    assert net(torch.zeros(2, 3, 8, 8)).shape == (2, 4)


@pytest.mark.parametrize("norm, cls, groups", [("batch", nn.BatchNorm2d, None), ("layer", nn.GroupNorm, 1),
                                                ("instance", nn.GroupNorm, 16), ("group", nn.GroupNorm, 4)])
def test_small_cnn_norms(norm, cls, groups):
    net = small_cnn(norm=norm)
    assert names(net)[:4] == ["conv1", "norm1", "act1", "pool1"]
    assert isinstance(net.norm1, cls) and isinstance(net.norm2, cls)
    if groups is not None:
        assert net.norm1.num_groups == groups and net.norm1.num_channels == 16


def test_small_cnn_group_norm_works_for_channel_counts_not_divisible_by_4():
    # 'group' builds GroupNorm(min(4, c), c), which refuses c = 6 or 10 (not divisible by 4).
    net = small_cnn(channels=(6, 10), norm="group")
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_small_cnn_float_and_callable_init():
    net = small_cnn(channels=(64, 64), init=0.1, generator=gen())
    assert net.conv2.weight.std().item() == pytest.approx(0.1, rel=0.03)  # 36,864 draws
    assert torch.all(net.conv2.bias == 0) and torch.all(net.out.bias == 0)
    net = small_cnn(init=lambda w: w.fill_(1.0))
    assert torch.all(net.conv1.weight == 1) and torch.all(net.out.weight == 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", [None, "batch", "group"])
def test_small_cnn_forward_shape_on_device(device, norm):
    net = small_cnn(norm=norm, device=device)
    out = net(torch.randn(5, 1, 8, 8, device=device))
    assert out.shape == (5, 10) and out.device.type == device
    assert torch.isfinite(out).all()


