"""sigprop.normalization against torch.nn in float64: forward, backward, buffers, train and eval."""

import pytest
import torch
from conftest import FLOAT64_DEVICES, gen
from torch import nn

from sigprop import normalization as sn

ATOL = 1e-10

# (ours, theirs, input shape): every constructor argument the chapter relies on, on both sides.
PAIRS = {
    "bn1d": (lambda: sn.BatchNorm1d(5), lambda: nn.BatchNorm1d(5), (8, 5)),
    "bn1d_len": (lambda: sn.BatchNorm1d(5, momentum=0.01), lambda: nn.BatchNorm1d(5, momentum=0.01), (4, 5, 3)),
    "bn1d_cumulative": (lambda: sn.BatchNorm1d(5, momentum=None), lambda: nn.BatchNorm1d(5, momentum=None), (6, 5)),
    "bn1d_eps": (lambda: sn.BatchNorm1d(5, eps=0.5), lambda: nn.BatchNorm1d(5, eps=0.5), (6, 5)),
    "bn1d_no_affine": (lambda: sn.BatchNorm1d(5, affine=False), lambda: nn.BatchNorm1d(5, affine=False), (6, 5)),
    "bn1d_untracked": (lambda: sn.BatchNorm1d(5, track_running_stats=False),
                       lambda: nn.BatchNorm1d(5, track_running_stats=False), (6, 5)),
    "bn1d_no_bias": (lambda: sn.BatchNorm1d(5, bias=False), lambda: nn.BatchNorm1d(5, bias=False), (6, 5)),
    "bn2d": (lambda: sn.BatchNorm2d(4), lambda: nn.BatchNorm2d(4), (3, 4, 5, 5)),
    "bn2d_batch2": (lambda: sn.BatchNorm2d(4, momentum=0.3), lambda: nn.BatchNorm2d(4, momentum=0.3), (2, 4, 1, 1)),
    "ln": (lambda: sn.LayerNorm(7), lambda: nn.LayerNorm(7), (5, 7)),
    "ln_chw": (lambda: sn.LayerNorm((3, 4, 4), eps=1e-3), lambda: nn.LayerNorm((3, 4, 4), eps=1e-3), (2, 3, 4, 4)),
    "ln_no_bias": (lambda: sn.LayerNorm(7, bias=False), lambda: nn.LayerNorm(7, bias=False), (2, 3, 7)),
    "ln_no_affine": (lambda: sn.LayerNorm(7, elementwise_affine=False),
                     lambda: nn.LayerNorm(7, elementwise_affine=False), (5, 7)),
    "gn": (lambda: sn.GroupNorm(3, 6), lambda: nn.GroupNorm(3, 6), (4, 6, 5, 5)),
    "gn_1d": (lambda: sn.GroupNorm(2, 8, eps=0.1), lambda: nn.GroupNorm(2, 8, eps=0.1), (4, 8)),
    "gn_no_bias": (lambda: sn.GroupNorm(2, 4, bias=False), lambda: nn.GroupNorm(2, 4, bias=False), (3, 4, 2, 2)),
    "gn_no_affine": (lambda: sn.GroupNorm(1, 6, affine=False), lambda: nn.GroupNorm(1, 6, affine=False), (3, 6, 4)),
    "in": (lambda: sn.InstanceNorm2d(3), lambda: nn.InstanceNorm2d(3), (4, 3, 5, 5)),
    "in_unbatched": (lambda: sn.InstanceNorm2d(3), lambda: nn.InstanceNorm2d(3), (3, 5, 5)),
    "in_affine_tracked": (lambda: sn.InstanceNorm2d(3, affine=True, track_running_stats=True),
                          lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (4, 3, 5, 5)),
    "in_cumulative": (lambda: sn.InstanceNorm2d(3, momentum=None, track_running_stats=True),
                      lambda: nn.InstanceNorm2d(3, momentum=None, track_running_stats=True), (2, 3, 4, 4)),
}


def _randomize(module: nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5 + 1)


def _assert_same_buffers(ours: nn.Module, theirs: nn.Module) -> None:
    a, b = dict(ours.named_buffers()), dict(theirs.named_buffers())
    assert sorted(a) == sorted(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=ATOL, msg=name)


def _step(ours, theirs, x):
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    torch.testing.assert_close(ya, yb, rtol=0, atol=ATOL)
    upstream = torch.randn(ya.shape, generator=gen(1), dtype=x.dtype).to(x.device)
    ga = torch.autograd.grad(ya, [xa, *ours.parameters()], upstream)
    gb = torch.autograd.grad(yb, [xb, *theirs.parameters()], upstream)
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=ATOL)


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_matches_torch_over_training_steps_then_eval(name, device):
    make_ours, make_theirs, shape = PAIRS[name]
    theirs = make_theirs().to(device, torch.float64)
    _randomize(theirs, gen(0))
    ours = make_ours().to(device, torch.float64)
    ours.load_state_dict(theirs.state_dict())  # same parameter and buffer names
    g = gen(2)
    for step in range(3):  # several steps: the running averages must agree after each
        x = (torch.randn(shape, generator=g, dtype=torch.float64) * (step + 2) + step).to(device)
        _step(ours, theirs, x)
        _assert_same_buffers(ours, theirs)
    ours.eval(), theirs.eval()
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(device) * 3
    _step(ours, theirs, x)
    _assert_same_buffers(ours, theirs)
    theirs.load_state_dict(ours.state_dict())  # and back the other way


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_gradcheck(name):
    make_ours, _, shape = PAIRS[name]
    layer = make_ours().double()
    _randomize(layer, gen(0))
    x = torch.randn(shape, generator=gen(3), dtype=torch.float64, requires_grad=True)
    for mode in (True, False):
        layer.train(mode)
        assert torch.autograd.gradcheck(lambda x, *p: layer(x), (x, *layer.parameters()))


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
def test_running_variance_is_unbiased_while_the_batch_is_normalized_with_the_biased_one(device):
    bn = sn.BatchNorm1d(3, momentum=1.0, affine=False).to(device, torch.float64)
    x = torch.randn(4, 3, generator=gen(), dtype=torch.float64).to(device)
    y = bn(x)
    torch.testing.assert_close(bn.running_var, x.var(0, unbiased=True), rtol=0, atol=ATOL)
    torch.testing.assert_close(y, (x - x.mean(0)) / (x.var(0, unbiased=False) + bn.eps).sqrt(), rtol=0, atol=ATOL)


def test_momentum_is_the_weight_of_the_new_batch_and_none_averages_every_batch():
    xs = [torch.randn(6, 2, generator=gen(s), dtype=torch.float64) + s for s in range(4)]
    keras_like = sn.BatchNorm1d(2, momentum=0.01).double()  # Keras' momentum=0.99
    cumulative = sn.BatchNorm1d(2, momentum=None).double()
    for x in xs:
        keras_like(x), cumulative(x)
    expected = torch.zeros(2, dtype=torch.float64)
    for x in xs:
        expected = 0.99 * expected + 0.01 * x.mean(0)
    torch.testing.assert_close(keras_like.running_mean, expected, rtol=0, atol=ATOL)
    torch.testing.assert_close(cumulative.running_mean, torch.stack([x.mean(0) for x in xs]).mean(0),
                               rtol=0, atol=ATOL)


def test_without_running_stats_eval_uses_the_batch_statistics():
    bn = sn.BatchNorm1d(3, track_running_stats=False)
    x = torch.randn(5, 3, generator=gen())
    train_out = bn(x)
    bn.eval()
    torch.testing.assert_close(bn(x), train_out)
    assert bn.running_mean is None and "running_mean" not in bn.state_dict()


def test_instance_norm_defaults_are_pytorchs():
    ours, theirs = sn.InstanceNorm2d(4), nn.InstanceNorm2d(4)
    assert (ours.affine, ours.track_running_stats) == (theirs.affine, theirs.track_running_stats) == (False, False)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == []


def test_instance_norm_removes_each_images_contrast():
    x = torch.randn(3, 2, 6, 6, generator=gen())
    contrast = torch.tensor([0.5, 1.0, 10.0]).reshape(3, 1, 1, 1)
    torch.testing.assert_close(sn.InstanceNorm2d(2)(x * contrast + 5), sn.InstanceNorm2d(2)(x), atol=1e-4, rtol=0)


def test_group_norm_rejects_indivisible_channels():
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups \(4\)"):
        sn.GroupNorm(4, 6)


def test_group_norm_with_one_group_is_layer_norm_only_without_the_affine():
    x = torch.randn(2, 4, 3, 3, generator=gen(), dtype=torch.float64)
    gn, ln = sn.GroupNorm(1, 4, affine=False).double(), sn.LayerNorm((4, 3, 3), elementwise_affine=False).double()
    torch.testing.assert_close(gn(x), ln(x), rtol=0, atol=ATOL)
    gn, ln = sn.GroupNorm(1, 4).double(), sn.LayerNorm((4, 3, 3)).double()
    _randomize(ln, gen(1))  # a per-element scale: GroupNorm's per-channel one cannot express it
    assert gn.weight.shape == (4,) and ln.weight.shape == (4, 3, 3)
    assert not torch.allclose(gn(x), ln(x))


def test_group_norm_with_one_group_per_channel_is_instance_norm():
    x = torch.randn(2, 4, 3, 3, generator=gen(), dtype=torch.float64)
    torch.testing.assert_close(sn.GroupNorm(4, 4).double()(x), sn.InstanceNorm2d(4).double()(x), rtol=0, atol=ATOL)


@pytest.mark.parametrize("layer, shape", [(sn.BatchNorm1d(3), (1, 3)), (sn.BatchNorm2d(3), (1, 3, 1, 1)),
                                          (sn.SwitchNorm1d(3), (1, 3)), (sn.InstanceNorm2d(3), (2, 3, 1, 1))])
def test_one_value_per_channel_in_training_is_refused(layer, shape):
    with pytest.raises(ValueError, match="more than 1"):
        layer(torch.randn(shape))
    layer.eval()  # with running statistics (or per-sample ones) a single value is fine
    if not isinstance(layer, sn.InstanceNorm2d):
        assert layer(torch.randn(shape)).shape == shape


@pytest.mark.parametrize("make, match, error", [
    (lambda: sn.BatchNorm1d("3"), "num_features must be an int", TypeError),
    (lambda: sn.BatchNorm1d(0), "at least 1", ValueError),
    (lambda: sn.BatchNorm2d(3, momentum=0.99 + 1), r"momentum must be in \[0, 1\]", ValueError),
    (lambda: sn.BatchNorm2d(3, momentum="0.1"), "momentum must be a number or None", TypeError),
    (lambda: sn.BatchNorm2d(3, momentum=-0.1), "momentum must be at least 0", ValueError),
    (lambda: sn.LayerNorm(4, eps=-1.0), "eps must be at least 0", ValueError),
    (lambda: sn.LayerNorm(4, eps="1e-5"), "eps must be a number", TypeError),
    (lambda: sn.LayerNorm(()), "at least one axis", ValueError),
    (lambda: sn.GroupNorm(2.0, 4), "num_groups must be an int", TypeError),
])
def test_bad_arguments_are_rejected(make, match, error):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer, shape", [(sn.BatchNorm1d(3), (4, 5)), (sn.BatchNorm2d(3), (4, 3, 5)),
                                          (sn.LayerNorm(4), (2, 5)), (sn.GroupNorm(2, 4), (2, 6, 3)),
                                          (sn.InstanceNorm2d(3), (2, 3, 4)), (sn.SwitchNorm2d(3), (2, 3))])
def test_wrong_input_shape_is_rejected(layer, shape):
    with pytest.raises(ValueError, match="expected"):
        layer(torch.randn(shape))


@pytest.mark.parametrize("device", FLOAT64_DEVICES)
@pytest.mark.parametrize("kind, theirs, shape", [
    ("batch", lambda: nn.BatchNorm1d(4, affine=False), (6, 4)),
    ("layer", lambda: nn.LayerNorm(4, elementwise_affine=False), (6, 4)),
    ("batch", lambda: nn.BatchNorm2d(4, affine=False), (3, 4, 5, 5)),
    ("layer", lambda: nn.GroupNorm(1, 4, affine=False), (3, 4, 5, 5)),
    ("instance", lambda: nn.InstanceNorm2d(4), (3, 4, 5, 5)),
])
def test_switch_norm_with_all_its_weight_on_one_kind_is_that_norm(kind, theirs, shape, device):
    layer = (sn.SwitchNorm1d(4) if len(shape) == 2 else sn.SwitchNorm2d(4)).to(device, torch.float64)
    with torch.no_grad():
        for logits in (layer.mean_weight, layer.var_weight):
            logits.copy_(torch.tensor([100.0 if k == kind else -100.0 for k in layer._kinds]))
    assert layer.mixing_weights()["mean"][kind] == pytest.approx(1.0)
    ref = theirs().to(device, torch.float64)
    x = torch.randn(shape, generator=gen(), dtype=torch.float64).to(device) * 3 + 1
    torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=1e-8)
    if kind == "batch":  # eval with the running statistics, like BatchNorm
        layer.eval(), ref.eval()
        torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=1e-8)


def test_switch_norm_learns_its_mix():
    layer = sn.SwitchNorm2d(3)
    assert all(abs(sum(w.values()) - 1) < 1e-6 for w in layer.mixing_weights().values())
    x = torch.randn(4, 3, 5, 5, generator=gen())
    (layer(x * torch.arange(1.0, 5.0).reshape(4, 1, 1, 1)) ** 3).sum().backward()
    assert layer.mean_weight.grad.abs().sum() > 0 and layer.var_weight.grad.abs().sum() > 0


def _net_with_norms():
    return nn.Sequential(nn.Linear(3, 4), sn.BatchNorm1d(4, momentum=0.3), nn.Dropout(0.5), nn.ReLU(),
                         nn.Linear(4, 4), nn.BatchNorm1d(4), sn.LayerNorm(4))


@pytest.mark.parametrize("as_", ["tensor", "split", "loader"])
def test_recalibrate_bn_averages_batch_statistics_and_restores_modes_and_momenta(as_):
    from sigprop.data import DataSplit

    net = _net_with_norms().double()
    net.train()
    net[2].eval()  # a mix of modes, to be restored exactly
    x = torch.randn(40, 3, generator=gen(), dtype=torch.float64) * 2 + 1
    data = {"tensor": x, "split": DataSplit(x, torch.zeros(40), x[:4], torch.zeros(4)),
            "loader": [(x[i:i + 10], None) for i in range(0, 40, 10)]}[as_]
    sn.recalibrate_bn_(net, data, batch_size=10)
    assert [m.training for m in net] == [True, True, False, True, True, True, True]
    assert net[1].momentum == 0.3 and net[5].momentum == 0.1
    assert net[1].num_batches_tracked.item() == 4
    z = net[0](x).detach()  # (40, 4): what the first norm saw
    chunks = z.split(10)
    torch.testing.assert_close(net[1].running_mean, torch.stack([c.mean(0) for c in chunks]).mean(0))
    torch.testing.assert_close(net[1].running_var, torch.stack([c.var(0) for c in chunks]).mean(0))
    assert all(p.grad is None for p in net.parameters())


def test_recalibrate_bn_needs_data():
    with pytest.raises(ValueError, match="no batch"):
        sn.recalibrate_bn_(_net_with_norms(), [])
    with pytest.raises(TypeError, match="DataSplit, a tensor"):
        sn.recalibrate_bn_(_net_with_norms(), 3)


@pytest.mark.parametrize("make_ours, make_theirs", [
    (lambda: sn.BatchNorm1d(6, track_running_stats=False), lambda: nn.BatchNorm1d(6, track_running_stats=False)),
    (lambda: sn.LayerNorm(6), lambda: nn.LayerNorm(6)),
    (lambda: sn.GroupNorm(3, 6), lambda: nn.GroupNorm(3, 6)),
], ids=["batch", "layer", "group"])
def test_layers_work_under_torch_func_transforms(make_ours, make_theirs):
    # Chapter 2 trains several networks at once with torch.func.vmap: the custom backward cannot run
    # under a transform, so the layers fall back to autograd there, with the same numbers.
    from torch.func import functional_call, grad, vmap

    xs = torch.randn(2, 8, 6, dtype=torch.float64)  # two copies, each a batch of 8
    results = []
    for layer in (make_ours().double(), make_theirs().double()):
        params = {k: v.detach() for k, v in layer.named_parameters()}

        def loss(p, x, layer=layer):
            return functional_call(layer, p, (x,)).pow(3).sum()

        results.append(vmap(grad(loss), in_dims=(None, 0))(params, xs))
    for name in results[1]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=0, atol=1e-10)
