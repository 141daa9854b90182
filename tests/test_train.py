"""Tests for sigprop.train: what fit records, determinism, divergence handling, evaluate, optimizers, errors."""

import copy
import dataclasses
import math
import warnings

import pytest
import torch
from conftest import DEVICES, gen
from torch import nn

from sigprop.data import make_multiscale_regression, make_spirals
from sigprop.diagnostics import weight_layers
from sigprop.models import mlp
from sigprop.runtime import seed_everything
from sigprop.train import DivergenceWarning, History, evaluate, fit, make_optimizer


@pytest.fixture(scope="module")
def spirals():
    return make_spirals(50, 3, generator=gen())  # 112 training points, 38 test points


def small_net(seed=0, activation="tanh", width=16):
    torch.manual_seed(seed)
    return mlp(2, 3, depth=2, width=width, activation=activation)


# --- fit: what it records -----------------------------------------------------------------------------


def test_fit_records_one_value_per_step_and_per_epoch(spirals):
    h = fit(small_net(), spirals, epochs=3, batch_size=32, progress=False, label="run")
    steps_per_epoch = math.ceil(112 / 32)  # 4: the last batch holds 16 points
    assert h.steps == len(h.loss) == len(h.grad_norm) == 3 * steps_per_epoch
    assert h.epochs == len(h.epoch_loss) == len(h.train_accuracy) == len(h.test_accuracy) == len(h.test_loss) == 3
    assert h.update_ratio == {} and h.layer_grad_norm == {}
    assert not h.diverged and h.diverged_at_step is None and h.message == ""
    assert h.label == "run"
    assert all(0.0 <= a <= 1.0 for a in h.train_accuracy + h.test_accuracy)
    # epoch_loss is the mean of that epoch's step losses.
    for e in range(3):
        chunk = h.loss[e * steps_per_epoch:(e + 1) * steps_per_epoch]
        assert h.epoch_loss[e] == pytest.approx(sum(chunk) / len(chunk), rel=1e-12)
    assert h.final_test_accuracy == h.test_accuracy[-1]


def test_fit_first_step_matches_a_hand_computation(spirals):
    net = small_net()
    copy_net = copy.deepcopy(net)
    lr, batch = 0.2, 32
    h = fit(net, spirals, epochs=1, batch_size=batch, lr=lr, track_update_ratio=True,
            track_layer_grad_norm=True, progress=False)
    # fit's default generator is seeded with 0; its first permutation picks the first batch.
    idx = torch.randperm(len(spirals.x_train), generator=gen(0))[:batch]
    loss = nn.CrossEntropyLoss()(copy_net(spirals.x_train[idx]), spirals.y_train[idx])
    loss.backward()
    assert h.loss[0] == loss.item()
    total = torch.stack([p.grad.norm() for p in copy_net.parameters()]).norm().item()
    assert h.grad_norm[0] == pytest.approx(total, rel=1e-6)
    for name, layer in weight_layers(copy_net):
        g, w = layer.weight.grad, layer.weight.detach()
        assert h.layer_grad_norm[name][0] == pytest.approx(g.norm().item(), rel=1e-6)
        # Plain SGD: dW = -lr g, and the ratio is taken against the weights after the step.
        expected = math.log10((lr * g).std(unbiased=False).item() / (w - lr * g).std(unbiased=False).item())
        assert h.update_ratio[name][0] == pytest.approx(expected, abs=1e-5)


def test_fit_tracks_update_ratio_and_layer_grad_norm_every_step(spirals):
    h = fit(small_net(), spirals, epochs=2, batch_size=56, track_update_ratio=True,
            track_layer_grad_norm=True, progress=False)
    assert list(h.update_ratio) == list(h.layer_grad_norm) == ["linear1", "linear2", "out"]
    for name in h.update_ratio:
        assert len(h.update_ratio[name]) == len(h.layer_grad_norm[name]) == h.steps == 4
        assert all(math.isfinite(r) for r in h.update_ratio[name])
    # The total gradient norm covers every parameter, so it bounds the weight-gradient norms.
    for i in range(h.steps):
        assert h.grad_norm[i] ** 2 >= sum(h.layer_grad_norm[n][i] ** 2 for n in h.layer_grad_norm) * (1 - 1e-6)


def test_fit_calls_before_step_once_per_step_after_backward(spirals):
    calls = []
    net = small_net()

    def before_step(model):
        assert model is net
        total = torch.stack([p.grad.norm() for p in model.parameters()]).norm().item()
        calls.append(total)
        nn.utils.clip_grad_norm_(model.parameters(), 0.01)

    h = fit(net, spirals, epochs=2, batch_size=32, before_step=before_step, progress=False)
    assert len(calls) == h.steps == 8
    # grad_norm is recorded before the hook runs, so it is the unclipped norm the hook saw.
    assert h.grad_norm == pytest.approx(calls, rel=1e-6)
    assert max(h.grad_norm) > 0.01


def test_fit_learns_spirals_with_sgd(spirals):
    h = fit(small_net(activation="relu", width=32), spirals, epochs=20, batch_size=16, lr=0.5, progress=False)
    assert h.epoch_loss[-1] < 0.8 * h.epoch_loss[0]  # measured: 1.09 -> 0.81


def test_fit_with_adam(spirals):
    h = fit(small_net(activation="relu", width=32), spirals, epochs=20, batch_size=16, lr=0.03,
            optimizer="adam", progress=False)
    assert not h.diverged and h.steps == 140
    assert h.epoch_loss[-1] < 0.5 * h.epoch_loss[0]  # measured: 1.09 -> 0.29
    assert h.train_accuracy[-1] > 0.7  # measured: 0.87


def test_fit_accepts_a_ready_optimizer_and_ignores_lr(spirals):
    net = small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    h = fit(net, spirals, epochs=1, batch_size=32, lr=-1.0, optimizer=opt, progress=False)
    assert h.steps == 4
    assert opt.state  # momentum buffers exist: this optimizer took the steps


def test_fit_on_regression_records_nan_accuracy():
    data = make_multiscale_regression(80, in_features=4, scales=(1.0, 3.0), generator=gen())
    torch.manual_seed(0)
    net = mlp(4, 2, depth=1, width=8)
    h = fit(net, data, epochs=2, batch_size=20, lr=0.01, loss_fn=nn.MSELoss(), progress=False)
    assert h.epochs == 2 and all(math.isnan(a) for a in h.test_accuracy + h.train_accuracy)
    assert all(math.isfinite(v) for v in h.test_loss)
    assert math.isnan(History().final_test_accuracy)


def test_fit_with_progress_bar(spirals, capsys):
    h = fit(small_net(), spirals, epochs=1, batch_size=64, progress=True, label="bar")
    assert h.steps == 2


@pytest.mark.parametrize("device", DEVICES)
def test_fit_on_device(device, spirals):
    data = spirals.to(device)
    net = small_net().to(device)
    h = fit(net, data, epochs=2, batch_size=32, progress=False, track_update_ratio=True)
    assert h.steps == 8 and h.epochs == 2
    assert all(math.isfinite(v) for v in h.loss)
    assert all(p.device.type == device for p in net.parameters())


# --- determinism --------------------------------------------------------------------------------------


def _seeded_run(seed, spirals):
    g = seed_everything(seed)
    net = mlp(2, 3, depth=3, width=16, activation="relu")  # initialized from the global stream
    return fit(net, spirals, epochs=2, batch_size=16, lr=0.3, momentum=0.5, track_update_ratio=True,
               track_layer_grad_norm=True, generator=g, progress=False)


def test_fit_is_bit_for_bit_repeatable_after_seed_everything(spirals):
    first, second = _seeded_run(0, spirals), _seeded_run(0, spirals)
    assert dataclasses.asdict(first) == dataclasses.asdict(second)  # exact float equality, every list
    assert first.loss == second.loss and first.update_ratio == second.update_ratio
    assert first.test_accuracy == second.test_accuracy
    other = _seeded_run(1, spirals)
    assert other.loss != first.loss


def test_fit_default_generator_fixes_the_batch_order(spirals):
    a = fit(small_net(), spirals, epochs=1, batch_size=16, progress=False)
    torch.rand(100)  # the global stream must not matter once the model exists
    b = fit(small_net(), spirals, epochs=1, batch_size=16, progress=False)
    assert a.loss == b.loss
    c = fit(small_net(), spirals, epochs=1, batch_size=16, progress=False, generator=gen(5))
    assert c.loss != a.loss


# --- divergence ---------------------------------------------------------------------------------------


def _assert_clean_divergence(h, total_steps):
    assert h.diverged
    assert h.diverged_at_step == h.steps < total_steps
    assert all(math.isfinite(v) for v in h.loss) and all(math.isfinite(v) for v in h.grad_norm)
    assert f"at step {h.steps}" in h.message and "epoch 1" in h.message
    assert h.message in repr(h)


def test_fit_stops_on_a_huge_learning_rate(spirals):
    with pytest.warns(DivergenceWarning, match=r"diverged: loss became (nan|inf|-inf) at step \d+") as record:
        h = fit(small_net(activation="relu"), spirals, epochs=5, batch_size=32, lr=1e6, track_update_ratio=True,
                track_layer_grad_norm=True, progress=False, label="hot")
    _assert_clean_divergence(h, 5 * 4)
    assert str(record[0].message).startswith("hot diverged")
    assert record[0].filename == __file__  # stacklevel points at the caller of fit
    # The per-layer records stop at the same step as the losses.
    assert all(len(v) == h.steps for v in h.update_ratio.values())
    assert all(len(v) == h.steps for v in h.layer_grad_norm.values())
    assert h.epochs_to(0.0) is None


class InfAtStep(nn.Module):
    """Cross-entropy, except that training call number ``at`` (1-based) returns +inf."""

    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, out, y):
        if torch.is_grad_enabled():  # evaluate() runs under no_grad: count training steps only
            self.calls += 1
            if self.calls == self.at:
                return torch.tensor(math.inf, device=out.device)
        return nn.functional.cross_entropy(out, y)


def test_fit_stops_when_the_loss_is_inf_at_step_3(spirals):
    with pytest.warns(DivergenceWarning, match=r"training diverged: loss became inf at step 2 \(epoch 1\)"):
        h = fit(small_net(), spirals, epochs=3, batch_size=16, loss_fn=InfAtStep(3), progress=False)
    assert h.steps == 2 and h.diverged_at_step == 2
    _assert_clean_divergence(h, 3 * 7)
    assert h.epochs == 0 and h.test_accuracy == []
    assert h.message == "diverged: loss became inf at step 2 (epoch 1); the run was stopped there"


def test_fit_divergence_in_a_later_epoch_keeps_earlier_epochs(spirals):
    with pytest.warns(DivergenceWarning, match=r"at step 9 \(epoch 2\)"):
        h = fit(small_net(), spirals, epochs=3, batch_size=16, loss_fn=InfAtStep(10), progress=False)
    assert h.steps == 9 and h.epochs == 1 and len(h.test_accuracy) == 1


def test_fit_quiet_warns_not_and_shows_no_bar_but_still_records_and_stops(spirals, monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        h = fit(small_net(), spirals, epochs=3, batch_size=16, loss_fn=InfAtStep(3), quiet=True)
    assert h.diverged and h.steps == 2 and "diverged: loss became inf at step 2" in h.message
    assert capsys.readouterr().err == ""  # no progress bar either


def test_fit_without_divergence_issues_no_warning(spirals):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        fit(small_net(), spirals, epochs=1, batch_size=32, progress=False)


# --- History ------------------------------------------------------------------------------------------


def test_history_epochs_to():
    h = History(test_accuracy=[0.2, 0.5, 0.9], train_accuracy=[0.6, 0.95, 0.99], epoch_loss=[1, 1, 1])
    assert h.epochs_to(0.5) == 2
    assert h.epochs_to(0.9) == 3
    assert h.epochs_to(0.95) is None
    assert h.epochs_to(0.9, split="train") == 2
    assert h.epochs_to(0.0) == 1
    assert History().epochs_to(0.1) is None


def test_history_repr():
    h = History(label="a", loss=[1.0, 0.5], epoch_loss=[0.75], test_accuracy=[0.5])
    assert repr(h) == "History('a': 1 epochs, 2 steps, test accuracy 0.500)"


# --- evaluate -----------------------------------------------------------------------------------------


def test_evaluate_matches_a_hand_computation_in_eval_mode(spirals):
    torch.manual_seed(0)
    net = mlp(2, 3, depth=2, width=16, norm="batch")
    net.train()
    loss, acc = evaluate(net, spirals.x_test, spirals.y_test, batch_size=7)  # uneven batches: 38 = 5 * 7 + 3
    assert net.training  # the mode is restored
    net.eval()
    with torch.no_grad():
        out = net(spirals.x_test)
    assert loss == pytest.approx(nn.functional.cross_entropy(out, spirals.y_test).item(), rel=1e-5)
    assert acc == (out.argmax(1) == spirals.y_test).sum().item() / len(spirals.y_test)
    net.eval()
    evaluate(net, spirals.x_test, spirals.y_test)
    assert not net.training


def test_evaluate_regression_returns_nan_accuracy():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    x, y = torch.randn(10, 3), torch.randn(10, 2)
    loss, acc = evaluate(net, x, y, loss_fn=nn.MSELoss(), batch_size=4)
    assert math.isnan(acc)
    with torch.no_grad():
        assert loss == pytest.approx(nn.functional.mse_loss(net(x), y).item(), rel=1e-5)


# --- make_optimizer -----------------------------------------------------------------------------------


def test_make_optimizer_by_name():
    net = nn.Linear(2, 2)
    sgd = make_optimizer(net, "sgd", 0.1, momentum=0.9, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["lr"] == 0.1 and sgd.param_groups[0]["momentum"] == 0.9
    assert sgd.param_groups[0]["weight_decay"] == 1e-4
    adam = make_optimizer(net, "adam", 1e-3)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 1e-3


# --- fit: bad input -----------------------------------------------------------------------------------


def test_mean_update_ratio_skips_unchanged_steps_and_is_minus_inf_for_a_frozen_layer():
    h = History(update_ratio={"a": [-2.0, float("-inf"), -4.0], "b": [float("-inf"), float("-inf")]})
    assert h.mean_update_ratio("a") == -3.0
    assert h.mean_update_ratio("b") == float("-inf")
    with pytest.raises(ValueError, match="no update ratios for layer 'c'"):
        h.mean_update_ratio("c")
