"""The networks the chapters probe: a configurable MLP and a small CNN for 8x8 digits.

Layers carry names (``linear1``, ``norm1``, ``act1``, ..., ``out``) so that the per-layer probes in
:mod:`sigprop.diagnostics` can label what they measure. Activations, normalization layers and
initialization schemes are chosen by name; later chapters plug in their own normalization layers
and initializers through the same arguments.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from sigprop import normalization
from sigprop._validation import check_choice, check_generator, check_int, check_number, check_type
from sigprop.activations import ACTIVATIONS, get_activation

__all__ = ["ACTIVATIONS", "NORMS", "NORM_POSITIONS", "WEIGHT_TYPES", "make_activation", "make_norm", "mlp", "small_cnn"]

# The layers that carry a weight matrix (or kernel): what initialization fills and the probes measure.
WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

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
    """A fresh activation module from its name (one of :data:`sigprop.activations.ACTIVATIONS`).

    Example:
        >>> make_activation("tanh")
        Tanh()
    """
    return get_activation(name).module()


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
    from sigprop.init import initialize, reset_parameters_  # the initialization chapter's module

    if init is None or init == "default":
        # PyTorch's own init; drawn again from the generator when there is one, so that the same seeded
        # generator gives the same network whatever the global random stream did before.
        if generator is not None:
            reset_parameters_(model, generator=generator)
        return
    if isinstance(init, bool):
        raise TypeError("init must be a scheme name, a std (float) or a callable, got bool")
    if isinstance(init, (int, float)):
        std = check_number("init std", init, minimum=0.0)
        # The 'naive' scheme: every weight ~ N(0, std^2) whatever the layer's width.
        initialize(model, "normal", std=std, generator=generator)
        return
    if isinstance(init, str):
        initialize(model, init, nonlinearity=activation, generator=generator)
        return
    if callable(init):
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, WEIGHT_TYPES):
                    init(layer.weight)
                    if layer.bias is not None:
                        layer.bias.zero_()
        return
    raise TypeError(f"init must be a scheme name, a std (float) or a callable, got {type(init).__name__}")


def _build(layers: OrderedDict[str, nn.Module], init: InitSpec, activation: str,
           generator: torch.Generator | None, device) -> nn.Sequential:
    model = nn.Sequential(layers)
    _apply_init(model, init, activation, generator)
    return model.to(device) if device is not None else model


@contextlib.contextmanager
def _global_rng_untouched(generator: torch.Generator | None):
    """With a generator, build the layers without consuming the global random stream.

    The layers' constructors draw PyTorch's default init from the global stream; with a generator
    every parameter is drawn again from it, so those draws are thrown away and the global stream is
    restored, as if they had never happened. Without one, PyTorch's draws are the init: keep them.
    """
    if generator is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):  # the layers are built on the CPU
        yield


def _add_norm_and_activation(layers: OrderedDict, i: int, norm_layer: nn.Module | None, activation: str,
                             norm_position: str) -> None:
    # Ioffe & Szegedy normalize the pre-activation ("before"); many later networks normalize after it.
    if norm_layer is not None and norm_position == "before":
        layers[f"norm{i}"] = norm_layer
    layers[f"act{i}"] = make_activation(activation)
    if norm_layer is not None and norm_position == "after":
        layers[f"norm{i}"] = norm_layer


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
        activation: a name from :data:`sigprop.activations.ACTIVATIONS`.
        norm: ``None``, a name from :data:`NORMS` (``"batch"``, ``"layer"``, ``"group"``, ``"switch"``),
            or a callable ``num_features -> nn.Module``.
        init: ``"default"`` is PyTorch's initialization (drawn from ``generator`` when given); a
            float ``s`` draws every weight from ``N(0, s^2)`` (the naive scheme); another name is a scheme of
            :func:`sigprop.init.initialize` (``"xavier_normal"``, ``"kaiming_normal"``, ...), given
            this network's activation; a callable is applied to each weight. Biases start at zero
            unless ``init="default"``.
        bias: give the linear layers a bias.
        generator: random source for the initialization, every ``init`` included: the same seeded
            generator gives the same parameters whatever the global random stream's state.
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
        check_int(name, value, minimum=1)
    check_type("bias", bias, bool, "a bool")
    get_activation(activation)  # validate the name before building anything
    check_generator(generator)
    check_choice("norm_position", norm_position, NORM_POSITIONS)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    with _global_rng_untouched(generator):
        fan_in = in_features
        for i in range(1, depth + 1):
            layers[f"linear{i}"] = nn.Linear(fan_in, width, bias=bias)
            _add_norm_and_activation(layers, i, make_norm(norm, width), activation, norm_position)
            fan_in = width
        layers["out"] = nn.Linear(fan_in, out_features, bias=bias)
    return _build(layers, init, activation, generator, device)


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
        activation: a name from :data:`sigprop.activations.ACTIVATIONS`.
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
    check_int("in_channels", in_channels, minimum=1)
    check_int("num_classes", num_classes, minimum=1)
    check_type("channels", channels, Sequence, "a sequence of ints")
    if len(channels) == 0:
        raise ValueError("channels must name at least one block, got an empty sequence")
    for c in channels:
        check_int("each entry of channels", c, minimum=1)
    get_activation(activation)
    check_generator(generator)
    check_choice("norm_position", norm_position, NORM_POSITIONS)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    with _global_rng_untouched(generator):
        c_in = in_channels
        for i, c_out in enumerate(channels, start=1):
            layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
            _add_norm_and_activation(layers, i, make_norm(norm, c_out, table=_CONV_NORMS), activation,
                                     norm_position)
            if i == 1:
                layers["pool1"] = nn.MaxPool2d(2)
            c_in = c_out
        layers["gap"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()  # (N, C, 1, 1) -> (N, C)
        layers["out"] = nn.Linear(c_in, num_classes)
    return _build(layers, init, activation, generator, device)
