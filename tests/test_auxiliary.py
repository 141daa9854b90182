"""Multi-head models, loss weightings (fixed, uncertainty, GradNorm) and hedge backpropagation."""

import math

import pytest
import torch
from conftest import DEVICES, gen
from torch import nn

from sigprop.auxiliary import (
    FixedWeighting,
    GradNorm,
    HedgeMLP,
    MainAuxNet,
    MultiHeadMLP,
    OnlineSGD,
    UncertaintyWeighting,
    fit_multitask,
    run_online,
)
from sigprop.models import mlp


@pytest.mark.parametrize("device", DEVICES)
def test_multihead_trunk_is_the_plain_mlp_and_heads_reach_only_the_layers_below(device):
    net = MultiHeadMLP(8, 3, depth=4, width=16, heads_at=(1, 2), init="kaiming_normal",
                       generator=gen(0), device=device)
    plain = mlp(8, 3, depth=4, width=16, init="kaiming_normal", generator=gen(0), device=device)
    x = torch.randn(5, 8, generator=gen(1)).to(device)
    main, head1, head2 = net(x)
    torch.testing.assert_close(main, plain(x), rtol=0, atol=0)
    assert head1.shape == head2.shape == (5, 3)
    head2.sum().backward()  # the head after layer 2 sends gradient to layers 1-2 only
    assert net.trunk.linear2.weight.grad.abs().sum() > 0 and net.trunk.linear1.weight.grad.abs().sum() > 0
    assert net.trunk.linear3.weight.grad is None and net.trunk.out.weight.grad is None



@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", ["batch", nn.BatchNorm1d], ids=["sigprop", "torch"])
def test_multihead_heads_read_the_normalized_activation_of_their_layer(device, norm):
    # Chapter 5's batch-normalized trunk: the head after layer 2 sees h_2 = relu(BN(W_2 h_1)).
    net = MultiHeadMLP(8, 3, depth=3, width=16, heads_at=(2,), norm=norm, generator=gen(0), device=device)
    x = torch.randn(6, 8, generator=gen(1)).to(device)
    main, head = net(x)
    below = net.trunk[:6]
    assert [name for name, _ in below.named_children()] == ["linear1", "norm1", "act1", "linear2", "norm2", "act2"]
    torch.testing.assert_close(head, net.heads["head2"](below(x)), rtol=0, atol=0)
    torch.testing.assert_close(main, net.trunk(x), rtol=0, atol=0)

def test_multihead_rejects_heads_outside_the_hidden_layers():
    with pytest.raises(ValueError, match=r"hidden layers 1 \.\. 3 .* got 4"):
        MultiHeadMLP(8, 3, depth=4, heads_at=(2, 4))
    with pytest.raises(ValueError, match="repeated"):
        MultiHeadMLP(8, 3, depth=4, heads_at=(2, 2))
    with pytest.raises(TypeError, match="sequence of layer numbers"):
        MultiHeadMLP(8, 3, depth=4, heads_at=2)


@pytest.mark.parametrize("device", DEVICES)
def test_main_aux_net_aux_output_ignores_the_aux_input(device):
    net = MainAuxNet(6, 2, 3, encoder_depth=2, head_depth=1, width=8, generator=gen(0), device=device)
    x_main = torch.randn(4, 6, generator=gen(1)).to(device)
    x_aux = torch.randn(4, 2, generator=gen(2)).to(device).requires_grad_()
    main, aux = net(x_main, x_aux)
    assert main.shape == aux.shape == (4, 3)
    assert not aux.requires_grad or torch.autograd.grad(aux.sum(), x_aux, allow_unused=True)[0] is None
    assert net.shared_layer is net.encoder[2]


@pytest.mark.parametrize("device", DEVICES)
def test_uncertainty_weighting_with_fixed_losses_drives_log_variance_to_log_loss(device):
    losses = torch.tensor([0.05, 1.0, 20.0], device=device)
    weighting = UncertaintyWeighting(3).to(device)
    opt = torch.optim.SGD(weighting.parameters(), lr=1.0)  # the curvature at the optimum is 1/2
    for _ in range(200):
        opt.zero_grad()
        weighting(losses).backward()
        opt.step()
    torch.testing.assert_close(weighting.log_var.detach(), losses.log(), rtol=0, atol=1e-4)
    torch.testing.assert_close(weighting.weights, 0.5 / losses, rtol=1e-3, atol=0)


def test_fixed_weighting_decays_only_the_auxiliary_weights():
    weighting = FixedWeighting([1.0, 0.3, 0.6], aux_decay_steps=4)
    losses = torch.ones(3, requires_grad=True)
    seen = []
    for _ in range(6):
        seen.append(weighting.weights.tolist())
        weighting(losses)
    assert seen[0] == pytest.approx([1.0, 0.3, 0.6]) and seen[2] == pytest.approx([1.0, 0.15, 0.3])
    assert seen[4] == seen[5] == [1.0, 0.0, 0.0]
    with torch.no_grad():  # evaluation does not advance the schedule
        weighting(losses)
    assert weighting.step_count == 6


def _two_scale_task(device, steps=150, alpha=1.5, seed=0):
    """Two regression targets 100x apart on one shared layer: the large one has the large gradient."""
    g = gen(seed)
    x = torch.randn(256, 4, generator=g).to(device)
    y = torch.stack([torch.sin(x[:, 0]), 100 * torch.cos(x[:, 1])], dim=1)  # (N, 2)
    torch.manual_seed(seed)  # nn.Linear's default init draws from the global stream
    shared, heads = nn.Linear(4, 16).to(device), nn.Linear(16, 2).to(device)
    gradnorm = GradNorm(2, alpha=alpha, lr=0.05)
    opt = torch.optim.SGD([*shared.parameters(), *heads.parameters()], lr=1e-5)
    trace = []
    for _ in range(steps):
        out = heads(torch.tanh(shared(x)))  # (N, 2)
        losses = ((out - y) ** 2).mean(dim=0)  # (2,)
        total = gradnorm(losses, shared.weight)
        opt.zero_grad()
        total.backward()
        opt.step()
        trace.append(gradnorm.weights)
    return torch.stack(trace)


@pytest.mark.parametrize("device", DEVICES)
def test_gradnorm_weights_stay_positive_sum_to_tasks_and_move_to_the_small_scale_task(device):
    trace = _two_scale_task(device)
    assert (trace > 0).all()
    torch.testing.assert_close(trace.sum(dim=1), torch.full((len(trace),), 2.0), rtol=0, atol=1e-5)
    assert trace[-1, 0] > 1.5 > 0.5 > trace[-1, 1], trace[-1]  # task 0 has the 100x smaller scale
    assert trace[len(trace) // 2:, 0].min() > 1.5  # and it stays there


def test_gradnorm_needs_the_shared_layer_and_two_tasks():
    with pytest.raises(TypeError, match="shared="):
        GradNorm(2)(torch.ones(2))
    with pytest.raises(ValueError, match="num_tasks must be at least 2"):
        GradNorm(1)
    with pytest.raises(ValueError, match=r"shape \(2,\), one per task"):
        GradNorm(2)(torch.ones(3), torch.ones(1, requires_grad=True))


@pytest.mark.parametrize("device", DEVICES)
def test_hedge_alpha_stays_a_probability_vector_above_its_floor(device):
    g = gen(0)
    x = torch.randn(300, 5, generator=g).to(device)
    y = (x[:, 0] * x[:, 1] > 0).long()
    hedge = HedgeMLP(5, 2, depth=5, width=16, smoothing=0.2, lr=0.05, generator=g, device=device)
    record = run_online(hedge, x, y, progress=False)
    assert record.alpha.shape == (300, 5) and not record.diverged
    torch.testing.assert_close(record.alpha.sum(dim=1), torch.ones(300, dtype=record.alpha.dtype))
    assert (record.alpha >= 0.2 / 5 - 1e-7).all()
    assert record.alpha[-1].max() > 0.2 + 1e-3  # the weights did move away from uniform
    assert record.cumulative_error[-1] < 0.5


def test_hedge_prediction_is_the_alpha_weighted_vote():
    hedge = HedgeMLP(3, 4, depth=3, width=8, generator=gen(0))
    hedge.alpha.copy_(torch.tensor([0.0, 0.0, 1.0]))
    x = torch.randn(6, 3, generator=gen(1))
    torch.testing.assert_close(hedge.predict_proba(x), hedge(x)[2].softmax(dim=-1))


def test_hedge_rejects_bad_parameters():
    with pytest.raises(ValueError, match=r"beta must be below 1.0, got 1.0"):
        HedgeMLP(3, 2, beta=1.0)
    with pytest.raises(ValueError, match=r"smoothing must be at most 1.0, got 1.5"):
        HedgeMLP(3, 2, smoothing=1.5)
    with pytest.raises(TypeError, match="lr must be a number, got str"):
        HedgeMLP(3, 2, lr="fast")
    with pytest.raises(TypeError, match="learn_one"):
        run_online(nn.Linear(3, 2), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


def test_online_sgd_predicts_before_it_learns():
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
        net.bias.zero_()
    learner = OnlineSGD(net, lr=10.0)
    mistake, _ = learner.learn_one(torch.tensor([1.0, 0.0]), torch.tensor(1))
    assert mistake  # predicted class 0 before the step
    assert not learner.learn_one(torch.tensor([1.0, 0.0]), torch.tensor(1))[0]  # the big step flipped it


@pytest.mark.parametrize("device", DEVICES)
def test_fit_multitask_records_losses_weights_and_evaluations(device):
    g = gen(0)
    x = torch.randn(64, 8, generator=g).to(device)
    y = (x[:, 0] > 0).long()
    net = MultiHeadMLP(8, 2, depth=3, width=8, heads_at=(1,), generator=g, device=device)
    history = fit_multitask(net, x, (y, y), nn.CrossEntropyLoss(), FixedWeighting([1.0, 0.3]), epochs=2,
                            batch_size=16, lr=0.1, evaluate=lambda m: {"acc": 1.0}, progress=False)
    assert history.steps == 8 and len(history.task_loss[0]) == 2 and history.weights[0] == pytest.approx([1, 0.3])
    assert history.evals == [{"acc": 1.0}, {"acc": 1.0}]
    w0 = history.loss[0]
    assert w0 == pytest.approx(history.task_loss[0][0] + 0.3 * history.task_loss[0][1], rel=1e-5)


def test_fit_multitask_stops_on_divergence_and_rejects_mismatched_inputs():
    x = torch.randn(32, 4, generator=gen(0))
    y = 1e3 * torch.randn(32, 1, generator=gen(1))
    net = MultiHeadMLP(4, 1, depth=3, width=8, heads_at=(1,), generator=gen(0))
    history = fit_multitask(net, x, (y, y), nn.MSELoss(), lr=10.0, progress=False)
    assert history.diverged and "diverged" in history.message and all(math.isfinite(v) for v in history.loss)
    with pytest.raises(ValueError, match="same number of samples"):
        fit_multitask(net, x, (y[:10], y), nn.MSELoss(), progress=False)
    with pytest.raises(ValueError, match="3 loss functions for 2 targets"):
        fit_multitask(net, x, (y, y), [nn.MSELoss()] * 3, progress=False)
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit_multitask(net, x, (y, y), nn.MSELoss(), optimizer="rmsprop", progress=False)
