"""Per-layer probes: what the signal and its gradient look like at every depth (chapters 0 and 1).

- :class:`LayerProbe` hooks a model and keeps, for one forward and backward pass, each weight
  layer's output z = W h + b, the activation that follows it, and the gradient dL/dz.
- :func:`layer_stats` runs one such pass and summarizes it per layer in a :class:`LayerStats`:
  activation mean and std, the fraction of saturated (tanh, sigmoid) or dead (ReLU) units,
  gradient norm and std, and the weight grad:data ratio.
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

__all__ = ["weight_layers", "LayerProbe", "LayerStats", "layer_stats", "UpdateRatio", "SATURATION_THRESHOLD"]

WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
ACTIVATION_TYPES = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SELU, nn.Softplus, nn.Identity)
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
        activation_mean, activation_std: of the activation after each layer (of z for the output layer).
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
        cols = ["activation_mean", "activation_std", "saturated", "dead", "grad_norm", "grad_data_ratio"]
        head = f"{'layer':<10}" + "".join(f"{c:>17}" for c in cols)
        rows = [head]
        for i, name in enumerate(self.names):
            rows.append(f"{name:<10}" + "".join(f"{getattr(self, c)[i]:>17.3g}" for c in cols))
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
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}")
    if not isinstance(sample_size, int) or sample_size < 1:
        raise ValueError(f"sample_size must be a positive int, got {sample_size!r}")
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    model.zero_grad(set_to_none=True)
    with LayerProbe(model) as probe:
        loss = loss_fn(model(x), y)
        loss.backward()
    names = [name for name, _ in probe.layers]
    stats: dict[str, list[float]] = {k: [] for k in (
        "activation_mean", "activation_std", "saturated", "dead", "grad_norm", "grad_std",
        "weight_grad_norm", "weight_norm", "grad_data_ratio")}
    activations, gradients = {}, {}
    for name, layer in probe.layers:
        h = probe.activations.get(name, probe.outputs[name])
        act = probe.activations_of.get(name, (None, None))[1]
        g = probe.grads[name]
        w, gw = layer.weight.detach(), layer.weight.grad
        stats["activation_mean"].append(h.mean().item())
        stats["activation_std"].append(h.std(unbiased=False).item())
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
