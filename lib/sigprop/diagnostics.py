"""Per-layer probes: what the signal and its gradient look like at every depth (chapters 0 and 1).

- :class:`LayerProbe` hooks a model and keeps, for one forward and backward pass, each weight
  layer's output z = W h + b, the activation that follows it, and the gradient dL/dz.
- :func:`layer_stats` runs one such pass and summarizes it per layer in a :class:`LayerStats`:
  activation mean and std, the fraction of saturated (tanh, sigmoid) or dead (ReLU) units,
  gradient norm and std, and the weight grad:data ratio.
- :func:`per_layer_factor` reduces a depth profile (one of those statistics against depth) to the
  factor by which it changes per layer.
- :class:`UpdateRatio` measures, across optimizer steps, ``log10(std(W_after - W_before) / std(W))``
  per layer; about -3 (an update of a thousandth of the weights' scale) is the customary healthy
  value (Karpathy, "A Recipe for Training Neural Networks", 2019).

Layers are the model's ``nn.Linear`` and ``nn.Conv*d`` modules, in the order they are registered,
named as in ``model.named_modules()``; each is paired with the activation module that follows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from sigprop._validation import check_generator, check_int, check_tensor
from sigprop.activations import ACTIVATIONS
from sigprop.models import WEIGHT_TYPES

__all__ = ["weight_layers", "LayerProbe", "LayerStats", "layer_stats", "UpdateRatio", "SATURATION_THRESHOLD",
           "per_layer_factor"]

ACTIVATION_TYPES = tuple(a.module_type for a in ACTIVATIONS.values())
# A tanh unit with |h| > 0.97 has derivative 1 - h^2 < 0.06: it passes almost no gradient.
SATURATION_THRESHOLD = 0.97


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's linear and convolutional layers, in registration order, with their names.

    Example:
        >>> from sigprop.models import mlp
        >>> [name for name, _ in weight_layers(mlp(depth=2))]
        ['linear1', 'linear2', 'out']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, WEIGHT_TYPES)]
    if not layers:
        raise ValueError("model has no nn.Linear or nn.Conv layer to probe")
    return layers


def _paired_activations(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """Map each weight layer's name to the first activation module registered after it."""
    pairs, current = {}, None
    for name, m in model.named_modules():
        if isinstance(m, WEIGHT_TYPES):
            current = name
        elif isinstance(m, ACTIVATION_TYPES) and current is not None and current not in pairs:
            pairs[current] = (name, m)
    return pairs


def _saturated_fraction(module: nn.Module, h: Tensor) -> float:
    if isinstance(module, nn.Tanh):
        return (h.abs() > SATURATION_THRESHOLD).float().mean().item()
    if isinstance(module, nn.Sigmoid):
        # sigmoid(x) = (1 + tanh(x/2)) / 2, so the tanh threshold maps to |2h - 1| > 0.97.
        return ((2 * h - 1).abs() > SATURATION_THRESHOLD).float().mean().item()
    return float("nan")


def _dead_fraction(module: nn.Module, h: Tensor) -> float:
    # A ReLU unit is dead on this batch when it outputs zero for every sample: no gradient reaches W.
    if not isinstance(module, nn.ReLU):
        return float("nan")
    per_unit = (h == 0).reshape(h.shape[0], h.shape[1], -1).all(dim=2)  # (N, units): zero everywhere in space
    return per_unit.all(dim=0).float().mean().item()


def _sample(t: Tensor, k: int, generator: torch.Generator) -> np.ndarray:
    flat = t.detach().reshape(-1).float().cpu()  # (numel,)
    if flat.numel() > k:
        flat = flat[torch.randperm(flat.numel(), generator=generator)[:k]]
    return flat.numpy()


class LayerProbe:
    """Hooks that keep each weight layer's output, its activation and the gradient dL/dz for one pass.

    Use as a context manager; the hooks are removed on exit, even after an error.

    Example:
        >>> from sigprop.models import mlp
        >>> net = mlp(depth=2)
        >>> with LayerProbe(net) as probe:
        ...     net(torch.randn(8, 64)).sum().backward()
        >>> sorted(probe.grads)
        ['linear1', 'linear2', 'out']
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers = weight_layers(model)
        self.activations_of = _paired_activations(model)
        self.outputs: dict[str, Tensor] = {}      # z = W h + b
        self.activations: dict[str, Tensor] = {}  # phi(z), or z when no activation follows
        self.grads: dict[str, Tensor] = {}        # dL/dz
        self._handles: list = []

    def _keep_output(self, name: str):
        def hook(module, inputs, output):
            self.outputs[name] = output.detach()
            if output.requires_grad:
                output.register_hook(lambda g: self.grads.__setitem__(name, g.detach()))
        return hook

    def _keep_activation(self, name: str):
        def hook(module, inputs, output):
            self.activations[name] = output.detach()
        return hook

    def __enter__(self) -> LayerProbe:
        for name, layer in self.layers:
            self._handles.append(layer.register_forward_hook(self._keep_output(name)))
            if name in self.activations_of:
                _, act = self.activations_of[name]
                self._handles.append(act.register_forward_hook(self._keep_activation(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@dataclass
class LayerStats:
    """Per-layer summary of one forward and backward pass; arrays are indexed by depth.

    Attributes:
        names: weight layers in depth order.
        activation_mean, activation_std: of the activation after each layer (of z for the output layer),
            over every unit and sample of the batch.
        activation_input_std: the across-input part of that spread: each unit's std over the batch,
            averaged over units. It falls to 0 when every input gives the same activations (the
            signal about the input is lost) even if ``activation_std`` stays large.
        saturated: fraction of tanh/sigmoid outputs with |h| > 0.97 (NaN for other activations).
        dead: fraction of ReLU units that are zero for every sample of the batch (NaN otherwise).
        grad_norm, grad_std: of dL/dz over the batch.
        weight_grad_norm, weight_norm: Frobenius norms of dL/dW and W.
        grad_data_ratio: std(dL/dW) / std(W).
        activations, gradients: up to ``sample_size`` values per layer, for histograms.
    """

    names: list[str]
    activation_mean: np.ndarray
    activation_std: np.ndarray
    activation_input_std: np.ndarray
    saturated: np.ndarray
    dead: np.ndarray
    grad_norm: np.ndarray
    grad_std: np.ndarray
    weight_grad_norm: np.ndarray
    weight_norm: np.ndarray
    grad_data_ratio: np.ndarray
    loss: float
    activations: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    gradients: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    @property
    def depth(self) -> np.ndarray:
        """Layer index 1..L, for plotting against depth."""
        return np.arange(1, len(self.names) + 1)

    def table(self) -> str:
        """The statistics as an aligned text table, one row per layer."""
        cols = ["activation_mean", "activation_std", "activation_input_std", "saturated", "dead", "grad_norm",
                "grad_data_ratio"]
        head = f"{'layer':<10}" + "".join(f"{c:>21}" for c in cols)
        rows = [head]
        for i, name in enumerate(self.names):
            rows.append(f"{name:<10}" + "".join(f"{getattr(self, c)[i]:>21.3g}" for c in cols))
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


def layer_stats(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: nn.Module | None = None,
    sample_size: int = 4096,
    generator: torch.Generator | None = None,
) -> LayerStats:
    """Run one forward and backward pass on ``(x, y)`` and summarize every layer.

    The model's gradients are cleared before and after, so probing does not disturb training.

    Args:
        model: the network (its train/eval mode is left as it is).
        x: a batch of inputs.
        y: the matching targets.
        loss_fn: defaults to ``nn.CrossEntropyLoss()``.
        sample_size: how many values per layer to keep for histograms.
        generator: random source for that subsample.

    Shape:
        x (N, *features), y (N,) class indices (or whatever ``loss_fn`` takes).

    Example:
        >>> from sigprop.models import mlp
        >>> stats = layer_stats(mlp(depth=3), torch.randn(32, 64), torch.randint(10, (32,)))
        >>> stats.names
        ['linear1', 'linear2', 'linear3', 'out']
    """
    check_tensor("x", x)
    check_tensor("y", y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}")
    check_int("sample_size", sample_size, minimum=1)
    check_generator(generator)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    model.zero_grad(set_to_none=True)
    with LayerProbe(model) as probe:
        loss = loss_fn(model(x), y)
        loss.backward()
    names = [name for name, _ in probe.layers]
    stats: dict[str, list[float]] = {k: [] for k in (
        "activation_mean", "activation_std", "activation_input_std", "saturated", "dead", "grad_norm", "grad_std",
        "weight_grad_norm", "weight_norm", "grad_data_ratio")}
    activations, gradients = {}, {}
    for name, layer in probe.layers:
        h = probe.activations.get(name, probe.outputs[name])
        act = probe.activations_of.get(name, (None, None))[1]
        g = probe.grads[name]
        w, gw = layer.weight.detach(), layer.weight.grad
        stats["activation_mean"].append(h.mean().item())
        stats["activation_std"].append(h.std(unbiased=False).item())
        per_unit = h.reshape(h.shape[0], -1).std(dim=0, unbiased=False)  # (units,): spread over the batch
        stats["activation_input_std"].append(per_unit.mean().item())
        stats["saturated"].append(_saturated_fraction(act, h) if act is not None else math.nan)
        stats["dead"].append(_dead_fraction(act, h) if act is not None else math.nan)
        stats["grad_norm"].append(g.norm().item())
        stats["grad_std"].append(g.std(unbiased=False).item())
        stats["weight_grad_norm"].append(gw.norm().item())
        stats["weight_norm"].append(w.norm().item())
        w_std = w.std(unbiased=False).item()
        stats["grad_data_ratio"].append(gw.std(unbiased=False).item() / w_std if w_std > 0 else math.inf)
        activations[name] = _sample(h, sample_size, generator)
        gradients[name] = _sample(g, sample_size, generator)
    model.zero_grad(set_to_none=True)
    return LayerStats(names=names, loss=loss.item(), activations=activations, gradients=gradients,
                      **{k: np.asarray(v) for k, v in stats.items()})


def per_layer_factor(profile) -> float:
    """The factor by which a depth profile changes per layer: the geometric mean of successive ratios.

    For a profile p_1, ..., p_L (an activation std or a gradient norm per layer, say), the geometric
    mean of the L - 1 ratios p_{l+1} / p_l telescopes to

        (p_L / p_1) ^ (1 / (L - 1)),

    so only the two ends enter. A profile that grows or shrinks by a constant factor per layer returns
    that factor; a factor of 0.7 over 20 layers is 0.7^19 ~ 1e-3 end to end. Compare it with the
    mean-field prediction :func:`sigprop.activations.mean_field_chi1` (whose square root predicts the
    factor of a norm). Chapters measure a profile with :func:`layer_stats` and reduce it here.

    Args:
        profile: at least two values, the first positive and finite, the others non-negative (a last
            value of exactly 0, as after a float32 underflow, gives 0).

    Shape:
        profile (L,), in layer order.

    Example:
        >>> per_layer_factor([1.0, 0.5, 0.25, 0.125])
        0.5
    """
    p = np.asarray(profile.detach().cpu() if isinstance(profile, Tensor) else profile, dtype=float)
    if p.ndim != 1 or p.size < 2:
        raise ValueError(f"profile must be a 1-D sequence of at least 2 values (one per layer), got shape {p.shape}")
    if not (np.isfinite(p[0]) and p[0] > 0):
        raise ValueError(f"profile must start with a positive finite value, got {p[0]}")
    if not (np.isfinite(p[-1]) and p[-1] >= 0):
        raise ValueError(f"profile must end with a non-negative finite value, got {p[-1]}")
    return float((p[-1] / p[0]) ** (1.0 / (p.size - 1)))


class UpdateRatio:
    """Track ``log10(std(dW) / std(W))`` per layer across optimizer steps.

    Call :meth:`before_step` just before ``optimizer.step()`` and :meth:`after_step` just after;
    ``history[name]`` then holds one value per step. A value near -3 means each step changes the
    weights by about a thousandth of their scale; far below, the layer is barely learning; far
    above, training is likely unstable.

    Example:
        >>> from sigprop.models import mlp
        >>> net = mlp(depth=1); opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> tracker = UpdateRatio(net)
        >>> net(torch.randn(4, 64)).sum().backward()
        >>> tracker.before_step(); opt.step(); tracker.after_step()
        >>> len(tracker.history["linear1"])
        1
    """

    REFERENCE = -3.0

    def __init__(self, model: nn.Module):
        self.layers = weight_layers(model)
        self.history: dict[str, list[float]] = {name: [] for name, _ in self.layers}
        self._before: dict[str, Tensor] = {}

    def before_step(self) -> None:
        self._before = {name: layer.weight.detach().clone() for name, layer in self.layers}

    def after_step(self) -> None:
        if not self._before:
            raise RuntimeError("UpdateRatio.after_step() called without before_step()")
        for name, layer in self.layers:
            w = layer.weight.detach()
            update = (w - self._before[name]).std(unbiased=False).item()
            scale = w.std(unbiased=False).item()
            ratio = update / scale if scale > 0 else math.inf
            self.history[name].append(math.log10(ratio) if ratio > 0 else -math.inf)
        self._before = {}
