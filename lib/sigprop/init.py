"""Weight initialization written from its definitions (chapter 2).

Every sampler mirrors its ``torch.nn.init`` namesake (name, arguments, in-place under ``torch.no_grad()``,
returns the tensor) and draws from ``generator`` when one is given. The common thread is one line of
variance bookkeeping: a unit ``y = sum_i w_i x_i`` over ``fan_in`` independent zero-mean weights has

    Var[y] = fan_in * Var[w] * E[x^2],

so choosing ``Var[w]`` sets how the signal's scale changes from layer to layer. The schemes differ only
in which fan they divide by and which activation-dependent ``gain`` they multiply by:

    =================  =========================================  ====================================
    scheme             Var[w]                                     paper
    =================  =========================================  ====================================
    lecun_normal       1 / fan_in                                 LeCun et al., "Efficient BackProp", 1998
    xavier_*           gain^2 * 2 / (fan_in + fan_out)            Glorot & Bengio, 2010
    kaiming_*          gain^2 / fan   (fan = fan_in or fan_out)   He et al., 2015
    orthogonal         rows (or columns) orthonormal, times gain  Saxe et al., 2014
    lsuv               orthogonal, then rescaled on data          Mishkin & Matas, 2016
    =================  =========================================  ====================================

A uniform U(-b, b) has variance b^2 / 3, so each ``*_uniform_`` uses ``b = sqrt(3) * std`` to match its
``*_normal_`` twin in variance. tests/test_init.py checks every sampler against its ``torch.nn.init``
namesake bit for bit, and on large samples what torch has no twin for. The gains come from the one
activation table, :mod:`sigprop.activations` (``calculate_gain`` is re-exported here).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from sigprop._validation import check_choice, check_generator, check_int, check_number, check_tensor
from sigprop.activations import ACTIVATIONS, TORCH_LINEAR_NAMES, calculate_gain
from sigprop.models import WEIGHT_TYPES

__all__ = [
    "calculate_gain",
    "fan_in_and_fan_out",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "lecun_normal_",
    "orthogonal_",
    "lsuv_",
    "initialize",
    "reset_parameters_",
    "init_std",
    "SCHEMES",
    "NONLINEARITIES",
]

# Every name calculate_gain accepts: torch's linear names, then the activation table's.
NONLINEARITIES = TORCH_LINEAR_NAMES + tuple(ACTIVATIONS)
SCHEMES = ("default", "zeros", "normal", "lecun_normal", "xavier_uniform", "xavier_normal",
           "kaiming_uniform", "kaiming_normal", "orthogonal")


def fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """How many inputs feed each output unit (fan_in) and how many outputs each input feeds (fan_out).

    For a weight of shape (out, in, *kernel) the receptive field is prod(kernel), and

        fan_in = in * prod(kernel),    fan_out = out * prod(kernel).

    Same as torch's private ``_calculate_fan_in_and_fan_out``. For a grouped convolution ``in`` is
    already ``in_channels / groups`` in the weight's shape, which is the right count.

    Shape:
        tensor: (out_features, in_features) or (out_channels, in_channels / groups, *kernel).

    Example:
        >>> fan_in_and_fan_out(torch.empty(16, 3, 5, 5))
        (75, 400)
    """
    _check_weight(tensor)
    receptive_field = math.prod(tensor.shape[2:])  # 1 for a Linear weight
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


_calculate_fan_in_and_fan_out = fan_in_and_fan_out  # torch's name, for readers swapping one for the other


def init_std(tensor: Tensor, scheme: str, *, nonlinearity: str = "relu", param: float | None = None,
             mode: str = "fan_in", std: float | None = None, gain: float = 1.0) -> float:
    """The standard deviation that :func:`initialize` gives ``tensor`` under ``scheme`` (the formula alone).

    ``"default"`` is PyTorch's ``nn.Linear``/``nn.ConvNd`` reset: Kaiming-uniform with ``a = sqrt(5)``,
    i.e. Var[w] = (2 / (1 + 5)) / fan_in = 1 / (3 fan_in). ``"orthogonal"`` reports the per-entry std of a
    random orthogonal matrix, 1/sqrt(max(rows, cols)), times the activation's gain.

    Args:
        tensor: the weight (only its shape is used).
        scheme, nonlinearity, param, mode, std, gain: as in :func:`initialize`.

    Shape:
        tensor: (out_features, in_features) or (out_channels, in_channels / groups, *kernel).

    Example:
        >>> round(init_std(torch.empty(100, 50), "kaiming_normal"), 4)
        0.2
    """
    check_choice("init scheme", scheme, SCHEMES)
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    if scheme == "zeros":
        return 0.0
    if scheme == "normal":
        return _check_std(std) * gain
    if scheme == "default":
        return gain / math.sqrt(3 * fan_in)
    if scheme == "lecun_normal":
        return gain / math.sqrt(fan_in)
    if scheme.startswith("xavier"):
        return gain * math.sqrt(2.0 / (fan_in + fan_out))
    act_gain = calculate_gain(nonlinearity, _slope(nonlinearity, param))
    if scheme.startswith("kaiming"):
        return gain * act_gain / math.sqrt(_fan(tensor, mode))
    rows, cols = tensor.shape[0], tensor.numel() // tensor.shape[0]
    return gain * act_gain / math.sqrt(max(rows, cols))  # orthonormal rows/cols: each has unit norm


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Glorot-uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).

    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural networks", 2010.
    Var[w] = 2 / (fan_in + fan_out) compromises between keeping the forward signal (1/fan_in) and the
    backward gradient (1/fan_out) at constant variance.

    Shape:
        tensor: (out_features, in_features) or (out_channels, in_channels / groups, *kernel).

    Example:
        >>> w = xavier_uniform_(torch.empty(300, 100), generator=torch.Generator().manual_seed(0))
        >>> bool(w.abs().max() <= (6 / 400) ** 0.5)
        True
    """
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))  # Var[U(-b, b)] = b^2 / 3
    return _uniform_(tensor, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Glorot-normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).

    Glorot & Bengio, 2010. Same variance as :func:`xavier_uniform_`.

    Shape:
        tensor: (out_features, in_features) or (out_channels, in_channels / groups, *kernel).

    Example:
        >>> xavier_normal_(torch.empty(3, 5)).shape
        torch.Size([3, 5])
    """
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return _normal_(tensor, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None) -> Tensor:
    """He-uniform: U(-b, b) with b = sqrt(3) * gain / sqrt(fan), gain = calculate_gain(nonlinearity, a).

    He et al., "Delving Deep into Rectifiers", 2015. With ReLU, E[x^2] = Var[y_prev] / 2, so
    Var[w] = 2 / fan_in keeps Var[y] constant through depth (``mode="fan_in"``, the forward pass) and
    Var[w] = 2 / fan_out keeps the gradient's variance constant (``mode="fan_out"``, the backward pass).

    Args:
        tensor: the weight to fill in place.
        a: negative slope of the leaky ReLU that follows (only used when nonlinearity is ``"leaky_relu"``).
        mode: ``"fan_in"`` or ``"fan_out"``.
        nonlinearity: activation name, see :func:`calculate_gain`.
        generator: a ``torch.Generator`` to draw from; ``None`` uses the global stream.

    Shape:
        tensor: (out_features, in_features) or (out_channels, in_channels / groups, *kernel).

    Example:
        >>> kaiming_uniform_(torch.empty(4, 8), nonlinearity="relu").shape
        torch.Size([4, 8])
    """
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return _uniform_(tensor, math.sqrt(3.0) * std, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None) -> Tensor:
    """He-normal: N(0, std^2) with std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a).

    He et al., 2015. Same variance as :func:`kaiming_uniform_`; arguments as there.

    Shape:
        tensor: (out_features, in_features) or (out_channels, in_channels / groups, *kernel).

    Example:
        >>> kaiming_normal_(torch.empty(4, 8), mode="fan_out", nonlinearity="relu").shape
        torch.Size([4, 8])
    """
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return _normal_(tensor, std, generator)


def lecun_normal_(tensor: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """LeCun-normal: N(0, 1 / fan_in), the forward-pass rule for activations that are linear near 0.

    LeCun, Bottou, Orr & Mueller, "Efficient BackProp", 1998; the init SELU networks need
    (Klambauer et al., 2017). Equals ``kaiming_normal_(tensor, nonlinearity="linear")``.

    Shape:
        tensor: (out_features, in_features) or (out_channels, in_channels / groups, *kernel).

    Example:
        >>> lecun_normal_(torch.empty(2, 3, 3, 3)).shape
        torch.Size([2, 3, 3, 3])
    """
    fan_in, _ = fan_in_and_fan_out(tensor)
    return _normal_(tensor, 1.0 / math.sqrt(fan_in), generator)


def orthogonal_(tensor: Tensor, gain: float = 1, generator: torch.Generator | None = None) -> Tensor:
    """A random (semi-)orthogonal matrix, times ``gain``: every singular value equals ``gain``.

    Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep linear
    neural networks", 2014. A product of orthogonal matrices preserves every vector's norm, so a deep
    linear net neither explodes nor vanishes in any direction, not just on average.

    Draw A ~ N(0, 1)^(rows x cols) and factor A = QR; Q alone is biased, Q * sign(diag(R)) is uniform
    (Haar) over orthogonal matrices (Mezzadri, 2007). Wide weights get orthonormal rows (W W^T = I),
    tall ones orthonormal columns (W^T W = I). Conv weights are flattened to (out, in * prod(kernel)).

    Shape:
        tensor: (out_features, in_features) or (out_channels, in_channels / groups, *kernel).

    Example:
        >>> w = orthogonal_(torch.empty(3, 5), generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(w @ w.T, torch.eye(3), atol=1e-5)
        True
    """
    _check_weight(tensor)
    check_generator(generator)
    rows, cols = tensor.shape[0], tensor.numel() // tensor.shape[0]
    device = tensor.device if generator is None else generator.device
    # QR needs float32 at least; the sample's dtype follows the tensor where it can.
    dtype = tensor.dtype if tensor.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.no_grad():
        a = torch.empty(rows, cols, dtype=dtype, device=device)  # (out, in * prod(kernel))
        a.normal_(0.0, 1.0, generator=generator)  # drawn in torch's order, so the same seed gives torch's Q
        if rows < cols:
            a = a.T  # (cols, rows): QR wants the tall orientation
        q, r = torch.linalg.qr(a)  # q: (tall, short) with orthonormal columns
        q = q * torch.diagonal(r).sign()  # flip each column with its R diagonal: Haar-uniform
        if rows < cols:
            q = q.T  # (rows, cols): orthonormal rows for a wide matrix
        tensor.copy_(q.reshape(tensor.shape).to(tensor))  # (out, in, *kernel) from (out, in * prod(kernel))
        tensor.mul_(gain)
    return tensor


def reset_parameters_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """PyTorch's default initialization of every ``nn.Linear`` and ``nn.Conv*d``, drawn from ``generator``.

    What their ``reset_parameters`` does, in the same order (module by module, weight then bias):

        W ~ kaiming_uniform_(a = sqrt(5)), i.e. U(-b, b) with b = 1 / sqrt(fan_in), Var[w] = 1 / (3 fan_in)
        b ~ U(-1 / sqrt(fan_in), 1 / sqrt(fan_in))

    So ``torch.manual_seed(s)`` before building a model and this function with
    ``torch.Generator().manual_seed(s)`` afterwards give the same parameters bit for bit (tested), and
    a seeded generator gives the same parameters whatever the global random stream did. Layers whose
    default init is not random (normalization layers: weight 1, bias 0) are left as they are.

    Args:
        model: the module whose layers to reset, in place.
        generator: a ``torch.Generator`` to draw from; ``None`` uses the global stream.

    Returns:
        ``model``.

    Example:
        >>> a = reset_parameters_(nn.Linear(3, 2), torch.Generator().manual_seed(0))
        >>> torch.manual_seed(0); b = nn.Linear(3, 2)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
        True
    """
    _check_module(model)
    check_generator(generator)
    for layer in model.modules():
        if isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)):
            kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                fan_in, _ = fan_in_and_fan_out(layer.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                _draw_(layer.bias, generator, lambda t, b=bound: t.uniform_(-b, b, generator=generator),
                       check=False)
    return model


def initialize(model: nn.Module, scheme: str, *, nonlinearity: str = "relu", param: float | None = None,
               std: float | None = None, gain: float = 1.0, mode: str = "fan_in",
               generator: torch.Generator | None = None, linear_output: bool = True) -> nn.Module:
    """Apply one scheme to every ``nn.Linear``/``nn.Conv{1,2,3}d`` weight in ``model`` and zero the biases.

    Schemes: ``"default"`` (PyTorch's own init, biases included: drawn again from ``generator`` by
    :func:`reset_parameters_` when one is given, else left as PyTorch drew it), ``"zeros"``,
    ``"normal"`` (the naive N(0, std^2); needs ``std``), ``"lecun_normal"``, ``"xavier_uniform"``,
    ``"xavier_normal"``, ``"kaiming_uniform"``, ``"kaiming_normal"``, ``"orthogonal"``.

    The activation's gain (:func:`calculate_gain` of ``nonlinearity``) enters where the papers put it:
    Kaiming and orthogonal multiply by it; LeCun, Xavier and normal are the plain formulas (Glorot's
    derivation assumes an activation that is linear around 0), which is what lets chapter 2 show Xavier
    shrinking a deep ReLU net. ``gain`` then multiplies the weights' std for every scheme and every
    layer, a knob for exploring too-small and too-large inits.

    The output layer: the last weight layer (in registration order) produces the logits, which go to
    the loss without passing through the nonlinearity, so with ``linear_output=True`` (the default) it
    gets the linear gain 1 instead of the activation's: He et al.'s argument compensates for the
    nonlinearity that follows a layer, and none follows this one. (A loop of
    ``torch.nn.init.kaiming_normal_`` over every layer, ``linear_output=False``, gives the logits the
    ReLU gain sqrt(2): initial logits sqrt(2) times larger, nothing else changes.) A model with a
    single weight layer is initialized as a hidden layer.

    Args:
        model: the module whose layers to initialize, in place.
        scheme: one of :data:`SCHEMES`.
        nonlinearity: the activation that follows each hidden layer (see :data:`NONLINEARITIES`).
        param: its parameter (the leaky ReLU's negative slope; default
            :data:`sigprop.activations.LEAKY_RELU_SLOPE`).
        std: the standard deviation for ``"normal"``.
        gain: a multiplier on every weight's standard deviation.
        mode: ``"fan_in"`` or ``"fan_out"`` for the Kaiming schemes.
        generator: a ``torch.Generator`` to draw from; ``None`` uses the global stream.
        linear_output: give the last of several weight layers gain 1 (Kaiming and orthogonal schemes).

    Returns:
        ``model``, so calls can be chained.

    Example:
        >>> net = initialize(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), "kaiming_normal")
        >>> float(net[0].bias.detach().abs().sum())
        0.0
    """
    _check_module(model)
    check_choice("init scheme", scheme, SCHEMES)
    check_generator(generator)
    gain = check_number("gain", gain, minimum=0.0)
    if scheme == "normal":
        std = _check_std(std)
    elif std is not None:
        raise ValueError(f"std is only used by scheme 'normal', got std={std!r} with scheme {scheme!r}")
    act_gain = 1.0
    if scheme in ("kaiming_uniform", "kaiming_normal", "orthogonal"):
        act_gain = calculate_gain(nonlinearity, _slope(nonlinearity, param))
        check_choice("mode", mode, ("fan_in", "fan_out"))
    if not isinstance(linear_output, bool):
        raise TypeError(f"linear_output must be a bool, got {type(linear_output).__name__}")
    samplers: dict[str, Callable[[Tensor], Tensor]] = {
        "zeros": lambda w: w.zero_(),
        "normal": lambda w: _normal_(w, std, generator),
        "lecun_normal": lambda w: lecun_normal_(w, generator=generator),
        "xavier_uniform": lambda w: xavier_uniform_(w, generator=generator),
        "xavier_normal": lambda w: xavier_normal_(w, generator=generator),
        # a = 0 with nonlinearity="linear" gives gain 1; the activation's gain is applied below.
        "kaiming_uniform": lambda w: kaiming_uniform_(w, 0, mode, "linear", generator=generator),
        "kaiming_normal": lambda w: kaiming_normal_(w, 0, mode, "linear", generator=generator),
        "orthogonal": lambda w: orthogonal_(w, generator=generator),
    }
    layers = [layer for layer in model.modules() if isinstance(layer, WEIGHT_TYPES)]
    if scheme == "default" and generator is not None:
        reset_parameters_(model, generator)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            if scheme != "default":
                samplers[scheme](layer.weight)
                if layer.bias is not None:
                    layer.bias.zero_()
            is_output = linear_output and len(layers) > 1 and i == len(layers) - 1
            multiplier = gain * (1.0 if is_output else act_gain)
            if multiplier != 1.0:
                layer.weight.mul_(multiplier)
    return model


def lsuv_(model: nn.Module, batch: Tensor, tol: float = 0.05, max_iters: int = 10, *,
          generator: torch.Generator | None = None) -> nn.Module:
    """Layer-sequential unit-variance init: orthogonal, then rescale each layer to unit output variance.

    Mishkin & Matas, "All you need is a good init", 2016. For each ``nn.Linear``/``nn.Conv{1,2,3}d`` in
    the order the forward pass calls them: run ``batch`` through the model, read the layer's output
    variance v, divide its weight by sqrt(v), and repeat until |v - 1| < tol or ``max_iters`` passes.
    Biases are zeroed first, so one pass usually suffices; later layers then see already-scaled inputs,
    which is why the order matters. No gain is needed: the data measure what the activations do.

    The std each layer reached is recorded in ``model.lsuv_stds`` (a dict from the layer's name in
    ``model.named_modules()`` to a float), so a reader can check the result.

    Args:
        model: the network to initialize, in place (its train/eval mode is used as is).
        batch: an input batch, on the model's device.
        tol: tolerance on the output variance.
        max_iters: passes per layer at most.
        generator: for the orthogonal pre-initialization.

    Shape:
        batch: (N, *) whatever ``model`` accepts.

    Returns:
        ``model``.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        >>> _ = lsuv_(net, torch.randn(64, 8))
        >>> all(abs(s - 1) < 0.05 for s in net.lsuv_stds.values())
        True
    """
    _check_module(model)
    check_tensor("batch", batch)
    tol = check_number("tol", tol, positive=True)
    max_iters = check_int("max_iters", max_iters, minimum=1)
    names = {layer: name for name, layer in model.named_modules() if isinstance(layer, WEIGHT_TYPES)}
    if not names:
        raise ValueError("model has no nn.Linear or nn.Conv{1,2,3}d layer for LSUV to scale")
    initialize(model, "orthogonal", nonlinearity="linear", generator=generator)

    order: list[nn.Module] = []
    outputs: dict[nn.Module, Tensor] = {}

    def record(layer, _inputs, output):
        if layer not in order:
            order.append(layer)
        outputs[layer] = output

    hooks = [layer.register_forward_hook(record) for layer in names]
    stds: dict[str, float] = {}
    try:
        with torch.no_grad():
            model(batch)  # learn the call order
            for layer in order:
                for _ in range(max_iters):
                    model(batch)
                    var = outputs[layer].var(unbiased=False).item()
                    if not var > 0 or not math.isfinite(var):
                        message = f"LSUV: output of layer {names[layer]!r} has variance {var}; left as is"
                        warnings.warn(message, stacklevel=2)
                        break
                    if abs(var - 1.0) < tol:
                        break
                    layer.weight.div_(math.sqrt(var))
                model(batch)
                stds[names[layer]] = outputs[layer].std(unbiased=False).item()
    finally:
        for hook in hooks:
            hook.remove()
        outputs.clear()
    model.lsuv_stds = stds
    return model


# --- helpers ---------------------------------------------------------------------------------------


def _check_weight(tensor) -> None:
    check_tensor("tensor", tensor)
    if tensor.dim() < 2:
        raise ValueError(f"fan_in and fan_out need a weight with at least 2 dimensions (out, in, *kernel), "
                         f"got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"cannot initialize an empty tensor, got shape {tuple(tensor.shape)}")


def _check_module(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")


def _check_std(std) -> float:
    if std is None:
        raise ValueError("scheme 'normal' needs std=<standard deviation>, got std=None")
    return check_number("std", std, minimum=0.0)


def _slope(nonlinearity: str, param):
    # torch's calculate_gain uses its default slope only when param is None: pass param on for leaky_relu alone.
    return param if nonlinearity == "leaky_relu" else None


def _fan(tensor: Tensor, mode: str) -> int:
    check_choice("mode", mode, ("fan_in", "fan_out"))
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _draw_(tensor: Tensor, generator, fill: Callable[[Tensor], Tensor], check: bool = True) -> Tensor:
    """Fill ``tensor`` with ``fill``, drawing on the generator's device when it differs from the tensor's."""
    if check:
        _check_weight(tensor)
    check_generator(generator)
    with torch.no_grad():
        if generator is None or generator.device == tensor.device:
            fill(tensor)
        else:  # a CPU generator seeding a GPU weight: sample on CPU, then copy across
            tensor.copy_(fill(torch.empty(tensor.shape, dtype=tensor.dtype, device=generator.device)))
    return tensor


def _uniform_(tensor: Tensor, bound: float, generator) -> Tensor:
    return _draw_(tensor, generator, lambda t: t.uniform_(-bound, bound, generator=generator))


def _normal_(tensor: Tensor, std: float, generator) -> Tensor:
    return _draw_(tensor, generator, lambda t: t.normal_(0.0, std, generator=generator))
