"""Weight normalization written from its definition, w = g v / ||v|| (chapter 4).

Salimans & Kingma, "Weight Normalization: A Simple Reparameterization to Accelerate Training of
Deep Neural Networks", NeurIPS 2016.

- :func:`weight_norm` registers the reparametrization on any layer through
  ``torch.nn.utils.parametrize``. It is interchangeable with
  ``torch.nn.utils.parametrizations.weight_norm``: the same state-dict keys
  (``parametrizations.weight.original0`` is g, ``original1`` is v), the same meaning of ``dim``,
  the same values and gradients (float64, to 1e-12; see tests/test_weight_norm.py).
  :func:`remove_weight_norm` folds g and v back into a plain weight.
- :class:`WeightNormLinear`: the same thing as a plain module with explicit ``g`` and ``v``
  parameters, short enough to read beside the chapter.
- :func:`data_dependent_init_`: the paper's initialization from one batch of data.
- :class:`MeanOnlyBatchNorm`: the paper's companion layer, which subtracts the batch mean only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from sigprop._validation import check_generator, check_int, check_number, check_tensor, check_type

__all__ = ["WeightNorm", "weight_norm", "remove_weight_norm", "norm_except_dim", "is_weight_normalized",
           "WeightNormLinear", "data_dependent_init_", "MeanOnlyBatchNorm"]


def _resolve_dim(dim: int | None, ndim: int) -> int | None:
    """The dim that keeps its own norm, as a non-negative index; None for one norm over the whole tensor.

    PyTorch's weight_norm reads ``dim=None`` as ``-1`` and ``-1`` as "the whole tensor" (not the last
    dim); other negative dims count from the end. We keep that meaning so the two are interchangeable.
    """
    check_int("dim", dim, optional=True)
    if dim is None or dim == -1:
        return None
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim must be None or in [{-ndim}, {ndim - 1}] for a weight with {ndim} dims, got {dim}")
    return dim % ndim


def norm_except_dim(v: Tensor, dim: int | None = 0) -> Tensor:
    """The Euclidean norm of ``v`` over every dim except ``dim``, with size-1 dims kept (the shape of g).

    ``dim=None`` (or ``-1``, as in PyTorch) gives one norm for the whole tensor, a 0-dim tensor.

    Shape:
        v (D_0, ..., D_k); output: D_dim at position ``dim`` and 1 elsewhere, or () for the whole tensor.

    Example:
        >>> norm_except_dim(torch.ones(3, 4)).flatten().tolist()
        [2.0, 2.0, 2.0]
    """
    d = _resolve_dim(dim, v.dim())
    if d is None:
        return torch.linalg.vector_norm(v)
    others = [i for i in range(v.dim()) if i != d]
    return torch.linalg.vector_norm(v, dim=others, keepdim=True)


class WeightNorm(nn.Module):
    """The parametrization ``(g, v) -> w = g v / ||v||``, one norm per index along ``dim``.

    Registered by :func:`weight_norm`; ``right_inverse`` maps an existing weight ``w`` to
    ``g = ||w||`` and ``v = w``, so wrapping a layer does not change what it computes.

    Args:
        dim: the dim whose entries each get their own g (0: one per output unit of ``nn.Linear`` and
            ``nn.Conv*d``); ``None`` or ``-1``: a single g for the whole tensor.
    """

    def __init__(self, dim: int | None = 0):
        super().__init__()
        check_int("dim", dim, optional=True)
        self.dim = dim

    def forward(self, g: Tensor, v: Tensor) -> Tensor:
        return v * (g / norm_except_dim(v, self.dim))

    def right_inverse(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        return norm_except_dim(weight, self.dim), weight

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def _legacy_keys_hook(name: str):
    """Load state dicts of the older ``torch.nn.utils.weight_norm`` (keys ``weight_g``, ``weight_v``)."""

    def hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        g_key, v_key = f"{prefix}{name}_g", f"{prefix}{name}_v"
        if g_key in state_dict and v_key in state_dict:
            state_dict[f"{prefix}parametrizations.{name}.original0"] = state_dict.pop(g_key)
            state_dict[f"{prefix}parametrizations.{name}.original1"] = state_dict.pop(v_key)

    return hook


def _check_module_and_name(module, name) -> None:
    check_type("module", module, nn.Module, "an nn.Module")
    check_type("name", name, str, "a str")


def weight_norm(module: nn.Module, name: str = "weight", dim: int | None = 0) -> nn.Module:
    """Reparametrize ``module.<name>`` as ``w = g v / ||v||`` and return the module.

    Salimans & Kingma (2016). The direction v/||v|| and the length g are learned separately::

        w = g * v / ||v||,   ||v|| over every dim except ``dim``.

    Compatible with ``torch.nn.utils.parametrizations.weight_norm``: after the call
    ``module.parametrizations.<name>.original0`` is g and ``original1`` is v, and each library's state
    dict loads into the other. For ``nn.ConvTranspose*d``, whose weight is laid out
    (in, out // groups, *kernel), ``dim=0`` gives one g per *input* channel, exactly as in PyTorch;
    pass ``dim=1`` for one per output channel.

    Args:
        module: a layer with a parameter called ``name``.
        name: the parameter to reparametrize.
        dim: the dim that keeps its own norm; ``None`` (or ``-1``, PyTorch's convention) for a single
            norm over the whole tensor; other negative values count from the end.

    Shape:
        g: the weight's shape with every dim but ``dim`` of size 1 (0-dim for ``dim=None``);
        v: the weight's shape.

    Example:
        >>> layer = weight_norm(nn.Linear(3, 2))
        >>> layer.parametrizations.weight.original0.shape
        torch.Size([2, 1])
    """
    _check_module_and_name(module, name)
    check_int("dim", dim, optional=True)
    if parametrize.is_parametrized(module, name):
        raise ValueError(f"{type(module).__name__}.{name} is already parametrized; "
                         "remove the existing parametrization first")
    weight = getattr(module, name, None)
    if not isinstance(weight, nn.Parameter):
        raise ValueError(f"{type(module).__name__} has no parameter called {name!r}; "
                         f"its parameters are {[n for n, _ in module.named_parameters(recurse=False)]}")
    _resolve_dim(dim, weight.dim())  # a bad dim fails here, with the weight's shape in the message
    parametrize.register_parametrization(module, name, WeightNorm(dim), unsafe=True)
    module._register_load_state_dict_pre_hook(_legacy_keys_hook(name))
    return module


def is_weight_normalized(module: nn.Module, name: str = "weight") -> bool:
    """Whether ``module.<name>`` carries a weight-norm parametrization (this library's or PyTorch's)."""
    if not parametrize.is_parametrized(module, name):
        return False
    return type(module.parametrizations[name][0]).__name__ in ("WeightNorm", "_WeightNorm")


def remove_weight_norm(module: nn.Module, name: str = "weight") -> nn.Module:
    """Fold g and v back into a plain parameter ``module.<name> = g v / ||v||`` and return the module.

    The same as ``torch.nn.utils.parametrize.remove_parametrizations(module, name)``, after checking
    that the parametrization is a weight norm.

    Example:
        >>> layer = remove_weight_norm(weight_norm(nn.Linear(3, 2)))
        >>> sorted(n for n, _ in layer.named_parameters())
        ['bias', 'weight']
    """
    _check_module_and_name(module, name)
    if not is_weight_normalized(module, name):
        raise ValueError(f"{type(module).__name__}.{name} has no weight norm to remove")
    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return module


class WeightNormLinear(nn.Module):
    """A linear layer with weight normalization, its parameters g and v in plain sight.

    Salimans & Kingma (2016)::

        w_i = g_i v_i / ||v_i||   (row i: output unit i),     y = x w^T + b.

    It computes exactly what ``weight_norm(nn.Linear(in_features, out_features))`` computes; its g
    has shape (out_features,) where the parametrized layer's has (out_features, 1).

    Args:
        in_features, out_features, bias: as for ``nn.Linear``.

    Shape:
        input (N, *, in_features), output (N, *, out_features).

    Example:
        >>> layer = WeightNormLinear(3, 2)
        >>> torch.allclose(layer.weight.norm(dim=1), layer.g)
        True
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        in_features = check_int("in_features", in_features, minimum=1)
        out_features = check_int("out_features", out_features, minimum=1)
        self.in_features, self.out_features = in_features, out_features
        factory = {"device": device, "dtype": dtype}
        self.g = nn.Parameter(torch.empty(out_features, **factory))
        self.v = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """v and b as ``nn.Linear`` draws its weight and bias, then g = ||v|| (so w = v at first)."""
        nn.init.kaiming_uniform_(self.v, a=math.sqrt(5))
        with torch.no_grad():
            self.g.copy_(self.v.norm(dim=1))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> Tensor:
        """w = g v / ||v||, row by row."""
        return self.g.unsqueeze(1) * self.v / self.v.norm(dim=1, keepdim=True)  # (out, 1) * (out, in)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> WeightNormLinear:
        """A WeightNormLinear computing what ``linear`` computes: g = ||w_i||, v = w."""
        check_type("linear", linear, nn.Linear, "an nn.Linear")
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    device=w.device, dtype=w.dtype)
        with torch.no_grad():
            layer.v.copy_(w)
            layer.g.copy_(w.norm(dim=1))
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _output_unit_dim(layer: nn.Module) -> int:
    """The weight dim that indexes output units: 1 for transposed convolutions, else 0."""
    return 1 if isinstance(layer, _CONV_TRANSPOSE) else 0


def _weight_normalized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = []
    for name, layer in model.named_modules():
        if isinstance(layer, WeightNormLinear):
            found.append((name, layer))
        elif is_weight_normalized(layer, "weight"):
            if not isinstance(layer, (nn.Linear, *_CONV, *_CONV_TRANSPOSE)):
                raise ValueError(f"data_dependent_init_ handles Linear and (transposed) convolution layers; "
                                 f"{name or 'the module'} is a {type(layer).__name__}")
            dim = layer.parametrizations.weight[0].dim
            ndim = layer.parametrizations.weight.original1.dim()
            if _resolve_dim(dim, ndim) != _output_unit_dim(layer):
                raise ValueError(f"data_dependent_init_ needs one g per output unit: {name or 'the module'} "
                                 f"({type(layer).__name__}) is weight-normalized with dim={dim}, expected "
                                 f"dim={_output_unit_dim(layer)}")
            found.append((name, layer))
    return found


def _g_and_v(layer: nn.Module) -> tuple[Tensor, Tensor]:
    if isinstance(layer, WeightNormLinear):
        return layer.g, layer.v
    originals = layer.parametrizations.weight
    return originals.original0, originals.original1


@torch.no_grad()
def data_dependent_init_(module: nn.Module, x: Tensor, std: float = 0.05,
                         generator: torch.Generator | None = None) -> nn.Module:
    """Salimans & Kingma's data-dependent initialization of every weight-normalized layer in ``module``.

    For each such layer, in the order the forward pass reaches it: draw v ~ N(0, std^2), compute the
    pre-activations t = (v/||v||) . x of the layer's actual input on the batch ``x``, and set

        g <- 1 / sigma[t],   b <- -mu[t] / sigma[t]

    per output unit, so that on this batch every unit's output has mean 0 and standard deviation 1
    (the mean and biased std over the batch and, for convolutions, the spatial positions). Layers
    further on see the already initialized layers' outputs, which is why one pass suffices. A layer
    without a bias is only rescaled; a unit whose t is constant on the batch keeps g = 1.

    Works on layers wrapped by :func:`weight_norm` or by PyTorch's weight_norm (with one g per output
    unit: ``dim=0``, or ``dim=1`` for transposed convolutions) and on :class:`WeightNormLinear`.

    Args:
        module: a layer or a network containing weight-normalized layers.
        x: one batch of the network's input (at least 2 samples).
        std: the standard deviation of the initial v (0.05 in the paper).
        generator: random source for v.

    Returns:
        ``module``, initialized in place.

    Example:
        >>> net = nn.Sequential(weight_norm(nn.Linear(4, 3)), nn.ReLU())
        >>> x = torch.randn(64, 4)
        >>> out = data_dependent_init_(net, x, generator=torch.Generator().manual_seed(0))[0](x)
        >>> bool(out.mean(0).abs().max() < 1e-5)
        True
    """
    check_type("module", module, nn.Module, "an nn.Module")
    check_tensor("x", x)
    if x.dim() < 1 or x.shape[0] < 2:
        raise ValueError(f"x must be a batch of at least 2 samples, got shape {tuple(x.shape)}")
    std = check_number("std", std, positive=True)
    check_generator(generator)
    layers = _weight_normalized_layers(module)
    if not layers:
        raise ValueError("module contains no weight-normalized layer (use weight_norm or WeightNormLinear)")
    pending = {}  # layer -> its hook's handle, until the forward pass has reached it

    def init_layer(layer, inputs, output):
        pending.pop(layer).remove()  # this layer is done after this call: no recursion below
        g, v = _g_and_v(layer)
        v.copy_(std * torch.randn(v.shape, generator=generator, dtype=v.dtype).to(v.device))
        g.fill_(1.0)  # w = v/||v||: the output is the pre-activation t of a unit-norm direction
        if layer.bias is not None:
            layer.bias.zero_()
        t = layer(*inputs)
        unit = t.dim() - 1 if isinstance(layer, (nn.Linear, WeightNormLinear)) else 1
        others = [d for d in range(t.dim()) if d != unit]
        mu = t.mean(dim=others)  # (units,)
        sigma = t.std(dim=others, unbiased=False)  # (units,) biased, as the paper's batch statistics
        sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
        g.copy_((1 / sigma).reshape(g.shape))
        if layer.bias is not None:
            layer.bias.copy_(-mu / sigma)
        return layer(*inputs)

    for _, layer in layers:
        pending[layer] = layer.register_forward_hook(init_layer)
    try:
        module(x)
    finally:
        unreached = [name for name, layer in layers if layer in pending]
        for handle in pending.values():
            handle.remove()
    if unreached:
        raise ValueError(f"the forward pass never reached the layers {unreached}; they were not initialized")
    return module


class MeanOnlyBatchNorm(nn.Module):
    """Mean-only batch normalization: subtract the batch mean, add a learned bias; no division.

    Salimans & Kingma (2016), section 4, to pair with weight normalization, which already fixes the
    scale::

        y = x - mu_B[x] + beta      (training; mu_B over the batch and any spatial dims)
        y = x - running_mean + beta (evaluation)

    The running mean is updated as ``nn.BatchNorm*d`` updates its own:
    ``running_mean <- (1 - momentum) running_mean + momentum mu_B``.

    Args:
        num_features: C, the channels (features) at dim 1.
        momentum: the running mean's update weight.
        affine: learn the bias beta (zero at first).

    Shape:
        input (N, C) or (N, C, *), output the same shape.

    Example:
        >>> layer = MeanOnlyBatchNorm(3)
        >>> bool(layer(torch.randn(8, 3)).mean(0).abs().max() < 1e-6)
        True
    """

    def __init__(self, num_features: int, momentum: float = 0.1, affine: bool = True, device=None, dtype=None):
        super().__init__()
        num_features = check_int("num_features", num_features, minimum=1)
        momentum = check_number("momentum", momentum, minimum=0.0)
        if momentum > 1:
            raise ValueError(f"momentum must be at most 1, got {momentum}")
        check_type("affine", affine, bool, "a bool")
        self.num_features, self.momentum, self.affine = num_features, momentum, affine
        factory = {"device": device, "dtype": dtype}
        self.bias = nn.Parameter(torch.zeros(num_features, **factory)) if affine else None
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}, *), got {tuple(x.shape)}")
        shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcast (C,) over (N, C, *)
        if self.training:
            mean = x.mean(dim=[d for d in range(x.dim()) if d != 1])  # (C,)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
        else:
            mean = self.running_mean
        y = x - mean.reshape(shape)
        return y + self.bias.reshape(shape) if self.affine else y

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, affine={self.affine}"
