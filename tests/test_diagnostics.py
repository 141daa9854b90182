"""Tests for sigprop.diagnostics: hook hygiene, every layer statistic against a hand computation, update ratios."""

import math

import numpy as np
import pytest
import torch
from conftest import DEVICES, gen
from torch import nn

from sigprop.diagnostics import (
    SATURATION_THRESHOLD,
    LayerProbe,
    LayerStats,
    UpdateRatio,
    layer_stats,
    per_layer_factor,
    weight_layers,
)
from sigprop.models import mlp, small_cnn


def no_forward_hooks(model):
    return all(len(m._forward_hooks) == 0 for m in model.modules())


def tiny(activation="tanh", seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return mlp(3, 2, depth=2, width=5, activation=activation).to(dtype)


def batch(n=16, seed=1, dtype=torch.float64):
    g = gen(seed)
    return torch.randn(n, 3, generator=g, dtype=dtype), torch.randint(2, (n,), generator=g)


def by_hand(net, x, y, act):
    """The tiny MLP's forward pass written out, and the autograd gradients of the pre-activations."""
    w1, b1 = net.linear1.weight, net.linear1.bias
    w2, b2 = net.linear2.weight, net.linear2.bias
    w3, b3 = net.out.weight, net.out.bias
    z1 = x @ w1.T + b1  # (N, 5)
    h1 = act(z1)
    z2 = h1 @ w2.T + b2  # (N, 5)
    h2 = act(z2)
    z3 = h2 @ w3.T + b3  # (N, 2)
    loss = nn.functional.cross_entropy(z3, y)
    grads = torch.autograd.grad(loss, [z1, z2, z3, w1, w2, w3])
    return dict(z=[z1, z2, z3], h=[h1, h2, z3], w=[w1, w2, w3], gz=grads[:3], gw=grads[3:], loss=loss)


# --- weight_layers ------------------------------------------------------------------------------------


def test_weight_layers_names_in_order():
    assert [n for n, _ in weight_layers(mlp(depth=3))] == ["linear1", "linear2", "linear3", "out"]
    assert [n for n, _ in weight_layers(small_cnn())] == ["conv1", "conv2", "out"]
    nested = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), nn.Conv1d(1, 1, 1))
    assert [n for n, _ in weight_layers(nested)] == ["0.0", "1"]


# --- LayerProbe ---------------------------------------------------------------------------------------


def test_probe_hooks_exist_inside_and_are_removed_on_exit():
    net = mlp(4, 3, depth=2, width=6)
    with LayerProbe(net) as probe:
        assert not no_forward_hooks(net)
        assert len(net.linear1._forward_hooks) == 1 and len(net.act1._forward_hooks) == 1
        assert len(net.out._forward_hooks) == 1
        net(torch.randn(5, 4)).sum().backward()
    assert no_forward_hooks(net)
    assert probe._handles == []


def test_probe_hooks_are_removed_after_an_exception():
    net = mlp(4, 3, depth=2, width=6)
    with pytest.raises(RuntimeError, match="boom"), LayerProbe(net):
        net(torch.randn(5, 4))
        raise RuntimeError("boom")
    assert no_forward_hooks(net)
    # Nothing is recorded by forward passes after the probe has closed.
    with LayerProbe(net) as probe:
        pass
    net(torch.randn(5, 4))
    assert probe.outputs == {}


def test_probe_leaves_the_users_own_hooks_alone():
    net = mlp(4, 3, depth=1, width=6)
    handle = net.linear1.register_forward_hook(lambda m, i, o: None)
    with LayerProbe(net):
        assert len(net.linear1._forward_hooks) == 2
    assert len(net.linear1._forward_hooks) == 1
    handle.remove()
    assert no_forward_hooks(net)


def test_probe_records_pre_activation_activation_and_its_gradient():
    net, (x, y) = tiny("tanh"), batch()
    with LayerProbe(net) as probe:
        nn.functional.cross_entropy(net(x), y).backward()
    ref = by_hand(net, x, y, torch.tanh)
    assert sorted(probe.outputs) == sorted(probe.grads) == ["linear1", "linear2", "out"]
    assert sorted(probe.activations) == ["linear1", "linear2"]  # no activation follows `out`
    for i, name in enumerate(["linear1", "linear2", "out"]):
        torch.testing.assert_close(probe.outputs[name], ref["z"][i], rtol=0, atol=1e-14)
        torch.testing.assert_close(probe.grads[name], ref["gz"][i], rtol=0, atol=1e-14)
    for i, name in enumerate(["linear1", "linear2"]):
        torch.testing.assert_close(probe.activations[name], ref["h"][i], rtol=0, atol=1e-14)


def test_probe_pairs_each_layer_with_the_activation_after_its_norm():
    net = mlp(4, 3, depth=2, width=6, norm="batch")
    probe = LayerProbe(net)
    assert {k: v[0] for k, v in probe.activations_of.items()} == {"linear1": "act1", "linear2": "act2"}
    x = torch.randn(8, 4, generator=gen())
    with probe:
        net(x)
    with torch.no_grad():
        z1 = net.linear1(x)
    torch.testing.assert_close(probe.outputs["linear1"], z1, rtol=0, atol=0)  # z before the norm, (N, 6)
    assert torch.all(probe.activations["linear1"] >= 0)  # after the ReLU


# --- layer_stats: against a hand computation ----------------------------------------------------------


@pytest.mark.parametrize("activation, act", [("tanh", torch.tanh), ("relu", torch.relu),
                                             ("sigmoid", torch.sigmoid)])
def test_layer_stats_match_a_hand_computation(activation, act):
    net, (x, y) = tiny(activation), batch()
    stats = layer_stats(net, x, y)
    ref = by_hand(net, x, y, act)
    assert stats.names == ["linear1", "linear2", "out"]
    np.testing.assert_array_equal(stats.depth, [1, 2, 3])
    tol = dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(stats.activation_mean, [h.mean().item() for h in ref["h"]], **tol)
    np.testing.assert_allclose(stats.activation_std, [h.std(unbiased=False).item() for h in ref["h"]], **tol)
    np.testing.assert_allclose(stats.grad_norm, [g.norm().item() for g in ref["gz"]], **tol)
    np.testing.assert_allclose(stats.grad_std, [g.std(unbiased=False).item() for g in ref["gz"]], **tol)
    np.testing.assert_allclose(stats.weight_grad_norm, [g.norm().item() for g in ref["gw"]], **tol)
    np.testing.assert_allclose(stats.weight_norm, [w.norm().item() for w in ref["w"]], **tol)
    ratio = [g.std(unbiased=False).item() / w.std(unbiased=False).item() for g, w in zip(ref["gw"], ref["w"],
                                                                                           strict=True)]
    np.testing.assert_allclose(stats.grad_data_ratio, ratio, **tol)
    assert stats.loss == pytest.approx(ref["loss"].item(), rel=1e-12)
    # Saturation is defined for tanh and sigmoid, dead units for ReLU, neither for the output layer.
    h1, h2 = ref["h"][:2]
    if activation == "tanh":
        expected = [(h.abs() > SATURATION_THRESHOLD).double().mean().item() for h in (h1, h2)]
        np.testing.assert_allclose(stats.saturated[:2], expected)
    elif activation == "sigmoid":
        expected = [((2 * h - 1).abs() > SATURATION_THRESHOLD).double().mean().item() for h in (h1, h2)]
        np.testing.assert_allclose(stats.saturated[:2], expected)
    else:
        assert np.isnan(stats.saturated).all()
    if activation == "relu":
        expected = [(h == 0).all(dim=0).double().mean().item() for h in (h1, h2)]
        np.testing.assert_allclose(stats.dead[:2], expected)
    else:
        assert np.isnan(stats.dead).all()
    assert math.isnan(stats.saturated[2]) and math.isnan(stats.dead[2])


def test_layer_stats_keep_samples_of_every_layer():
    net, (x, y) = tiny("tanh"), batch(n=16)
    stats = layer_stats(net, x, y, sample_size=30)
    ref = by_hand(net, x, y, torch.tanh)
    assert sorted(stats.activations) == sorted(stats.gradients) == stats.names
    assert len(stats.activations["linear1"]) == 30  # 16 x 5 = 80 values, subsampled to 30
    assert len(stats.activations["out"]) == 30 and len(stats.gradients["out"]) == 30  # 16 x 2 = 32 values
    # The subsample draws from the layer's own values.
    assert np.isin(stats.activations["linear1"], ref["h"][0].detach().float().numpy()).all()
    full = layer_stats(net, x, y, sample_size=10_000)
    np.testing.assert_allclose(np.sort(full.activations["linear1"]),
                               np.sort(ref["h"][0].detach().float().reshape(-1).numpy()))
    again = layer_stats(net, x, y, sample_size=30, generator=gen(0))
    np.testing.assert_array_equal(stats.activations["linear2"], again.activations["linear2"])


def test_layer_stats_saturation_of_a_tanh_net_with_huge_weights():
    torch.manual_seed(0)
    net = mlp(16, 4, depth=3, width=32, activation="tanh", init=100.0, generator=gen())
    x, y = torch.randn(64, 16, generator=gen(1)), torch.randint(4, (64,), generator=gen(2))
    stats = layer_stats(net, x, y)
    # z ~ N(0, 100^2 * fan_in): |z| < arctanh(0.97) = 2.1 has probability < 0.5% in every hidden layer.
    assert (stats.saturated[:-1] > 0.99).all()
    assert (stats.activation_std[:-1] > 0.98).all()  # every unit sits at -1 or +1


def test_layer_stats_saturation_of_a_sigmoid_net_with_huge_weights():
    net = mlp(16, 4, depth=2, width=32, activation="sigmoid", init=100.0, generator=gen())
    x, y = torch.randn(64, 16, generator=gen(1)), torch.randint(4, (64,), generator=gen(2))
    assert (layer_stats(net, x, y).saturated[:-1] > 0.99).all()


def test_layer_stats_tanh_net_with_tiny_weights_is_not_saturated():
    net = mlp(16, 4, depth=2, width=32, activation="tanh", init=0.01, generator=gen())
    x, y = torch.randn(64, 16, generator=gen(1)), torch.randint(4, (64,), generator=gen(2))
    assert (layer_stats(net, x, y).saturated[:-1] == 0).all()


def test_layer_stats_dead_relu_net_with_large_negative_biases():
    torch.manual_seed(0)
    net = mlp(16, 4, depth=3, width=32, activation="relu")
    with torch.no_grad():
        for name in ("linear1", "linear2", "linear3"):
            getattr(net, name).bias.fill_(-100.0)
    x, y = torch.randn(64, 16, generator=gen(1)), torch.randint(4, (64,), generator=gen(2))
    stats = layer_stats(net, x, y)
    np.testing.assert_array_equal(stats.dead[:-1], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(stats.activation_std[:-1], [0.0, 0.0, 0.0])
    # Dead units pass no gradient back: dL/dz of every hidden layer is zero.
    np.testing.assert_array_equal(stats.grad_norm[:-1], [0.0, 0.0, 0.0])


def test_layer_stats_dead_fraction_of_a_conv_net_counts_units_dead_everywhere():
    torch.manual_seed(0)
    net = small_cnn(channels=(4, 6))
    with torch.no_grad():
        net.conv1.bias[:2] = -100.0  # 2 of 4 channels can never fire
    x, y = torch.randn(8, 1, 8, 8, generator=gen(1)), torch.randint(10, (8,), generator=gen(2))
    stats = layer_stats(net, x, y)
    assert stats.names == ["conv1", "conv2", "out"]
    assert stats.dead[0] == pytest.approx(0.5)


def test_layer_stats_first_layer_without_its_own_activation_uses_z():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.Tanh())
    x = torch.randn(6, 3, generator=gen(1))
    stats = layer_stats(net, x, torch.zeros(6, 4), loss_fn=nn.MSELoss())
    with torch.no_grad():
        z1 = net[0](x)
    assert stats.activation_std[0] == pytest.approx(z1.std(unbiased=False).item(), rel=1e-6)
    assert math.isnan(stats.saturated[0]) and not math.isnan(stats.saturated[1])


def test_layer_stats_clear_gradients_and_keep_the_mode():
    net, (x, y) = tiny("relu"), batch()
    nn.functional.cross_entropy(net(x), y).backward()  # stale gradients from "training"
    net.eval()
    layer_stats(net, x, y)
    assert all(p.grad is None for p in net.parameters())
    assert not net.training
    net.train()
    layer_stats(net, x, y)
    assert net.training
    assert no_forward_hooks(net)


@pytest.mark.parametrize("device", DEVICES)
def test_layer_stats_on_device(device):
    torch.manual_seed(0)
    net = mlp(8, 3, depth=2, width=16, norm="batch", device=device)
    x, y = torch.randn(32, 8, device=device), torch.randint(3, (32,), device=device)
    stats = layer_stats(net, x, y)
    assert stats.names == ["linear1", "linear2", "out"]
    assert np.isfinite(stats.activation_std).all() and np.isfinite(stats.grad_norm).all()
    assert all(isinstance(v, np.ndarray) for v in stats.activations.values())


def test_layer_stats_table_has_one_row_per_layer():
    stats = layer_stats(tiny("tanh"), *batch())
    lines = stats.table().splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["layer", "activation_mean", "activation_std", "activation_input_std", "saturated",
                                "dead", "grad_norm", "grad_data_ratio"]
    assert lines[1].startswith("linear1") and lines[3].startswith("out")
    assert str(stats) == stats.table()
    assert isinstance(stats, LayerStats)


# --- UpdateRatio --------------------------------------------------------------------------------------


def test_update_ratio_matches_a_hand_computation_for_one_sgd_step():
    net, (x, y) = tiny("tanh"), batch()
    lr = 0.1
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    tracker = UpdateRatio(net)
    assert tracker.history == {"linear1": [], "linear2": [], "out": []}
    nn.functional.cross_entropy(net(x), y).backward()
    before = {n: m.weight.detach().clone() for n, m in weight_layers(net)}
    grads = {n: m.weight.grad.detach().clone() for n, m in weight_layers(net)}
    tracker.before_step()
    opt.step()
    tracker.after_step()
    for name, layer in weight_layers(net):
        after = layer.weight.detach()
        expected = math.log10((after - before[name]).std(unbiased=False).item() / after.std(unbiased=False).item())
        assert tracker.history[name] == [pytest.approx(expected, abs=1e-12)]
        # For plain SGD the update is -lr * g exactly.
        by_grad = math.log10(lr * grads[name].std(unbiased=False).item() / after.std(unbiased=False).item())
        assert tracker.history[name][0] == pytest.approx(by_grad, abs=1e-10)


def test_update_ratio_records_one_value_per_step_and_reference():
    net, (x, y) = tiny("relu"), batch()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    tracker = UpdateRatio(net)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        tracker.before_step()
        opt.step()
        tracker.after_step()
    assert all(len(v) == 3 for v in tracker.history.values())
    assert UpdateRatio.REFERENCE == -3.0


def test_update_ratio_of_a_step_that_changes_nothing_is_minus_infinity():
    net = tiny()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)  # no gradients: SGD skips every parameter
    tracker = UpdateRatio(net)
    tracker.before_step()
    opt.step()
    tracker.after_step()
    assert all(v == [-math.inf] for v in tracker.history.values())


def test_update_ratio_after_step_without_before_step_raises():
    tracker = UpdateRatio(tiny())
    with pytest.raises(RuntimeError, match=r"UpdateRatio.after_step\(\) called without before_step\(\)"):
        tracker.after_step()
    tracker.before_step()
    tracker.after_step()
    with pytest.raises(RuntimeError, match="called without before_step"):  # each after needs its own before
        tracker.after_step()




def test_activation_input_std_is_the_spread_across_inputs_not_across_units():
    # Every input gives the same activations (a huge bias swamps the input): the overall std stays
    # large, the across-input std is 0. An identity layer on random inputs: both equal the input's std.
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.tensor([-3.0, -1.0, 1.0, 3.0]))
    stats = layer_stats(net, *batch())
    assert stats.activation_std[0] > 0.5 and stats.activation_input_std[0] == 0
    x, y = batch(n=4096)
    same = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Identity(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        same[0].weight.copy_(torch.eye(3))
    s = layer_stats(same, x, y)
    expected = x.std(dim=0, unbiased=False).mean().item()
    assert s.activation_input_std[0] == pytest.approx(expected, rel=1e-12)


def test_activation_input_std_of_a_conv_layer_is_per_unit_and_position():
    net = small_cnn(channels=(4,))
    x = torch.randn(8, 1, 8, 8, generator=gen(2))
    s = layer_stats(net, x, torch.zeros(8, dtype=torch.int64))
    with torch.no_grad():
        h = net.act1(net.conv1(x))  # (N, C, H, W)
    assert s.activation_input_std[0] == pytest.approx(h.reshape(8, -1).std(dim=0, unbiased=False).mean().item())


@pytest.mark.parametrize(("profile", "factor"), [
    ([1.0, 0.5, 0.25, 0.125], 0.5),
    (np.array([2.0, 4.0]), 2.0),
    (torch.tensor([1.0, 3.0, 0.1, 1e-3], dtype=torch.float64), 0.1),  # only the ends enter: (1e-3 / 1) ** (1 / 3)
    ([1e-3, 0.0], 0.0),  # underflowed to 0 at the end
])
def test_per_layer_factor_is_the_geometric_mean_of_successive_ratios(profile, factor):
    assert per_layer_factor(profile) == pytest.approx(factor, rel=1e-12)
    p = np.asarray(profile, dtype=float)
    if p[-1] > 0:
        assert per_layer_factor(profile) == pytest.approx(np.exp(np.mean(np.log(p[1:] / p[:-1]))), rel=1e-12)
