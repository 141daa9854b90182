"""The networks the chapters probe: a configurable MLP and a small CNN for 8x8 digits.

Layers carry names (``linear1``, ``norm1``, ``act1``, ..., ``out``) so that the per-layer probes in
:mod:`sigprop.diagnostics` can label what they measure. Activations, normalization layers and
initialization schemes are chosen by name; later chapters plug in their own normalization layers
and initializers through the same arguments.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from sigprop import normalization

__all__ = ["ACTIVATIONS", "NORMS", "NORM_POSITIONS", "make_activation", "make_norm", "mlp", "small_cnn"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
}

# Normalization layers by name, each built from the number of features it normalizes: chapter 3's
# from-scratch layers (sigprop.normalization), which match torch.nn's. A callable plugs in any other.
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": normalization.BatchNorm1d,
    "layer": normalization.LayerNorm,
    "group": lambda c: normalization.GroupNorm(math.gcd(4, c), c),  # at most 4 groups that divide c
    "switch": normalization.SwitchNorm1d,  # learned mix of layer and batch statistics
}
_CONV_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": normalization.BatchNorm2d,
    "layer": lambda c: normalization.GroupNorm(1, c),  # one group over (C, H, W): layer norm for images
    "instance": lambda c: normalization.InstanceNorm2d(c, affine=True),  # with a per-channel affine
    "group": lambda c: normalization.GroupNorm(math.gcd(4, c), c),  # at most 4 groups that divide c
    "switch": normalization.SwitchNorm2d,  # learned mix of instance, layer and batch statistics
}
NORM_POSITIONS = ("before", "after")

InitSpec = str | float | Callable[[Tensor], object] | None
NormSpec = str | Callable[[int], nn.Module] | None


def make_activation(name: str) -> nn.Module:
    """A fresh activation module from its name (one of :data:`ACTIVATIONS`).

    Example:
        >>> make_activation("tanh")
        Tanh()
    """
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name (str), got {type(name).__name__}")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def make_norm(norm: NormSpec, num_features: int, table: dict | None = None) -> nn.Module | None:
    """A normalization layer for ``num_features`` features: by name, from a factory, or ``None``."""
    table = NORMS if table is None else table
    if norm is None or norm == "none":
        return None
    if isinstance(norm, str):
        if norm not in table:
            raise ValueError(f"unknown norm {norm!r}; expected None, 'none', one of {sorted(table)} or a callable")
        return table[norm](num_features)
    if callable(norm):
        layer = norm(num_features)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"norm factory must return an nn.Module, got {type(layer).__name__}")
        return layer
    raise TypeError(f"norm must be None, a name or a callable, got {type(norm).__name__}")


def _apply_init(model: nn.Module, init: InitSpec, activation: str, generator: torch.Generator | None) -> None:
    if init is None or init == "default":
        return  # keep PyTorch's own defaults
    if isinstance(init, bool):
        raise TypeError("init must be a scheme name, a std (float) or a callable, got a bool")
    from sigprop.init import initialize  # the initialization chapter's module

    if isinstance(init, (int, float)):
        if init < 0:
            raise ValueError(f"init std must be non-negative, got {init}")
        # The 'naive' scheme: every weight ~ N(0, std^2) whatever the layer's width.
        initialize(model, "normal", std=float(init), generator=generator)
        return
    if isinstance(init, str):
        initialize(model, init, nonlinearity=activation, generator=generator)
        return
    if callable(init):
        from sigprop.diagnostics import weight_layers

        with torch.no_grad():
            for _, layer in weight_layers(model):
                init(layer.weight)
                if layer.bias is not None:
                    layer.bias.zero_()
        return
    raise TypeError(f"init must be a scheme name, a std (float) or a callable, got {type(init).__name__}")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _add_norm_and_activation(layers: OrderedDict, i: int, norm_layer: nn.Module | None, activation: str,
                             norm_position: str) -> None:
    # Ioffe & Szegedy normalize the pre-activation ("before"); many later networks normalize after it.
    if norm_layer is not None and norm_position == "before":
        layers[f"norm{i}"] = norm_layer
    layers[f"act{i}"] = make_activation(activation)
    if norm_layer is not None and norm_position == "after":
        layers[f"norm{i}"] = norm_layer


def _check_norm_position(norm_position) -> None:
    if norm_position not in NORM_POSITIONS:
        raise ValueError(f"norm_position must be 'before' or 'after' the activation, got {norm_position!r}")


def mlp(
    in_features: int = 64,
    out_features: int = 10,
    depth: int = 3,
    width: int = 64,
    activation: str = "relu",
    norm: NormSpec = None,
    init: InitSpec = "default",
    bias: bool = True,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    norm_position: str = "before",
) -> nn.Sequential:
    """A fully connected network of ``depth`` hidden layers, each Linear -> [norm] -> activation.

    Layer ``l`` computes ``h_l = phi(norm(W_l h_{l-1} + b_l))``; a final Linear ``out`` maps to
    ``out_features`` logits. Normalization, when asked for, sits after the linear map and before the
    activation, as Ioffe & Szegedy (2015) place it.

    Args:
        in_features: input dimension (64 for the 8x8 digits).
        out_features: number of outputs (classes).
        depth: number of hidden layers (>= 1); the network has ``depth + 1`` linear layers.
        width: units per hidden layer.
        activation: a name from :data:`ACTIVATIONS`.
        norm: ``None``, a name from :data:`NORMS` (``"batch"``, ``"layer"``, ``"group"``, ``"switch"``),
            or a callable ``num_features -> nn.Module``.
        init: ``"default"`` keeps PyTorch's initialization; a float ``s`` draws every weight from
            ``N(0, s^2)`` (the naive scheme); another name is a scheme of
            :func:`sigprop.init.initialize` (``"xavier_normal"``, ``"kaiming_normal"``, ...), given
            this network's activation; a callable is applied to each weight. Biases start at zero
            unless ``init="default"``.
        bias: give the linear layers a bias.
        generator: random source for the initialization.
        device: where to create the model.
        norm_position: ``"before"`` (Linear -> norm -> activation) or ``"after"`` the activation.

    Shape:
        input (N, in_features), output (N, out_features).

    Example:
        >>> net = mlp(64, 10, depth=2, width=32, activation="tanh")
        >>> [name for name, _ in net.named_children()]
        ['linear1', 'act1', 'linear2', 'act2', 'out']
    """
    for name, value in (("in_features", in_features), ("out_features", out_features),
                        ("depth", depth), ("width", width)):
        _check_positive_int(name, value)
    make_activation(activation)  # validate the name before building anything
    _check_norm_position(norm_position)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    fan_in = in_features
    for i in range(1, depth + 1):
        layers[f"linear{i}"] = nn.Linear(fan_in, width, bias=bias)
        _add_norm_and_activation(layers, i, make_norm(norm, width), activation, norm_position)
        fan_in = width
    layers["out"] = nn.Linear(fan_in, out_features, bias=bias)
    model = nn.Sequential(layers)
    _apply_init(model, init, activation, generator)
    return model.to(device) if device is not None else model


def small_cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    channels: Sequence[int] = (16, 32),
    activation: str = "relu",
    norm: NormSpec = None,
    init: InitSpec = "default",
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    norm_position: str = "before",
) -> nn.Sequential:
    """A small convolutional network for 8x8 images: 3x3 convolutions, one 2x2 pooling, a linear head.

    Block ``i`` is ``conv{i}`` (3x3, padding 1) -> [``norm{i}``] -> ``act{i}``; a 2x2 max-pool
    follows the first block, global average pooling the last, then the linear ``out``.

    Args:
        in_channels: channels of the input images.
        num_classes: number of outputs.
        channels: output channels of each convolutional block.
        activation: a name from :data:`ACTIVATIONS`.
        norm: ``None``, ``"batch"``, ``"layer"``, ``"instance"``, ``"group"``, ``"switch"`` or a callable
            ``num_channels -> nn.Module``.
        init: as in :func:`mlp`.
        generator: random source for the initialization.
        device: where to create the model.
        norm_position: ``"before"`` (conv -> norm -> activation) or ``"after"`` the activation.

    Shape:
        input (N, C_in, H, W), output (N, num_classes).

    Example:
        >>> small_cnn()(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    _check_positive_int("in_channels", in_channels)
    _check_positive_int("num_classes", num_classes)
    if len(channels) == 0:
        raise ValueError("channels must name at least one block, got an empty sequence")
    for c in channels:
        _check_positive_int("each entry of channels", c)
    make_activation(activation)
    _check_norm_position(norm_position)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = in_channels
    for i, c_out in enumerate(channels, start=1):
        layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        _add_norm_and_activation(layers, i, make_norm(norm, c_out, table=_CONV_NORMS), activation, norm_position)
        if i == 1:
            layers["pool1"] = nn.MaxPool2d(2)
        c_in = c_out
    layers["gap"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()  # (N, C, 1, 1) -> (N, C)
    layers["out"] = nn.Linear(c_in, num_classes)
    model = nn.Sequential(layers)
    _apply_init(model, init, activation, generator)
    return model.to(device) if device is not None else model
