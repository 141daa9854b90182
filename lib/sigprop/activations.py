"""The one activation table: each nonlinearity's module, function, derivative and initialization gain.

Models build their layers from :data:`ACTIVATIONS`, the gradient chapter reads the derivatives from it,
initialization reads the gains, and the probes recognise the modules by its types: one name, one place.

Two numbers summarize what a nonlinearity phi does to a signal z ~ N(0, q) at initialization:

- the **gain** ``1 / sqrt(E[phi(z)^2])`` at q = 1 (the factor that gives the next layer unit second
  moment again; He et al., 2015). For the names ``torch.nn.init.calculate_gain`` knows,
  :func:`calculate_gain` returns PyTorch's value exactly (tanh's 5/3 and SELU's 3/4 are PyTorch's
  conventions, not this formula); for the others (ELU, GELU, SiLU, softplus) it computes the formula.
- the **mean-field per-layer factor** ``chi_1 = sigma_w^2 E[phi'(z)^2]`` (Poole et al., 2016;
  Schoenholz et al., 2017): how much the squared norm of a gradient (or of a small perturbation)
  changes per layer of a wide network with Var[w] = sigma_w^2 / fan_in. Below 1 gradients vanish
  exponentially with depth, above 1 they explode; chi_1 = 1 is the "edge of chaos".

Both expectations are integrals against the normal density, computed by :func:`gaussian_expectation`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigprop._validation import check_choice, check_number

__all__ = ["Activation", "ACTIVATIONS", "LEAKY_RELU_SLOPE", "TORCH_LINEAR_NAMES", "get_activation",
           "calculate_gain", "second_moment_gain", "mean_field_chi1", "gaussian_expectation"]

LEAKY_RELU_SLOPE = 0.01  # torch.nn.LeakyReLU's default negative slope, the one every leaky ReLU here uses
ELU_ALPHA = 1.0  # torch.nn.ELU's default
# SELU's constants (Klambauer et al., 2017), as torch uses them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# The names torch.nn.init.calculate_gain treats as linear (gain 1).
TORCH_LINEAR_NAMES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                      "conv_transpose3d")


@dataclass(frozen=True)
class Activation:
    """One row of the table.

    Attributes:
        name: the ``torch.nn.functional`` name.
        module: a factory of a fresh ``nn.Module`` (``entry.module()``).
        module_type: the class that factory builds, for recognising the layer in a model.
        functional: phi itself, elementwise on a tensor.
        derivative: phi', written out by hand; at a kink it is the value torch's autograd uses.
    """

    name: str
    module: Callable[[], nn.Module]
    module_type: type[nn.Module]
    functional: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor], Tensor]

    @property
    def gain(self) -> float:
        """:func:`calculate_gain` of this activation."""
        return calculate_gain(self.name)


def _ones(x: Tensor) -> Tensor:
    return torch.ones_like(x)


def _sigmoid_derivative(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)  # at most 1/4, at x = 0


def _gelu_derivative(x: Tensor) -> Tensor:
    # gelu(x) = x Phi(x)  =>  gelu'(x) = Phi(x) + x phi(x), Phi the normal CDF and phi its density.
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


def _silu_derivative(x: Tensor) -> Tensor:
    # silu(x) = x s(x)  =>  silu'(x) = s(x) (1 + x (1 - s(x))).
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _where_positive(x: Tensor, negative: Tensor | float, scale: float = 1.0) -> Tensor:
    """``scale * (1 if x > 0 else negative)``: the derivative of a function linear for x > 0."""
    negative = negative if isinstance(negative, Tensor) else torch.full_like(x, negative)
    return scale * torch.where(x > 0, torch.ones_like(x), negative)


ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("identity", nn.Identity, nn.Identity, lambda x: x, _ones),
    Activation("sigmoid", nn.Sigmoid, nn.Sigmoid, torch.sigmoid, _sigmoid_derivative),
    Activation("tanh", nn.Tanh, nn.Tanh, torch.tanh, lambda x: 1 - torch.tanh(x) ** 2),
    Activation("relu", nn.ReLU, nn.ReLU, torch.relu, lambda x: (x > 0).to(x.dtype)),  # relu'(0) = 0
    Activation("leaky_relu", lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE), nn.LeakyReLU,
               lambda x: F.leaky_relu(x, LEAKY_RELU_SLOPE), lambda x: _where_positive(x, LEAKY_RELU_SLOPE)),
    Activation("gelu", nn.GELU, nn.GELU, F.gelu, _gelu_derivative),  # the exact, erf-based GELU
    Activation("elu", nn.ELU, nn.ELU, lambda x: F.elu(x, ELU_ALPHA),
               lambda x: _where_positive(x, ELU_ALPHA * torch.exp(x))),
    Activation("selu", nn.SELU, nn.SELU, F.selu,
               lambda x: _where_positive(x, SELU_ALPHA * torch.exp(x), SELU_SCALE)),
    Activation("silu", nn.SiLU, nn.SiLU, F.silu, _silu_derivative),
    # log(1 + e^x), and x itself above x = 20 as in torch, so its slope there is exactly 1.
    Activation("softplus", nn.Softplus, nn.Softplus, F.softplus,
               lambda x: torch.where(x > 20, torch.ones_like(x), torch.sigmoid(x))),
)}


def get_activation(name: str) -> Activation:
    """The table's entry for ``name``.

    Example:
        >>> get_activation("tanh").module()
        Tanh()
    """
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]


# ------------------------------------------------------------------------------------------ integrals
_HALF_WIDTH = 12.0  # the normal density beyond 12 standard deviations is below 1e-31: nothing is lost
_NODES = 200


@functools.cache
def _legendre_rule() -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(_NODES)  # on [-1, 1]
    return nodes, weights


def gaussian_expectation(f: Callable[[Tensor], Tensor], q: float = 1.0) -> float:
    """E[f(z)] for z ~ N(0, q), by numerical quadrature (float64).

    The integral of f(z) times the normal density is split at 0 and each half, [-12 sqrt(q), 0] and
    [0, 12 sqrt(q)], is integrated with 200-point Gauss-Legendre quadrature. Every activation here is
    smooth on each side of 0, and the kinks (ReLU, leaky ReLU, ELU, SELU) and jumps of the derivatives
    sit at 0, so each half is a smooth integrand and the rule is accurate to about 1e-13. (A
    Gauss-Hermite rule over the whole line converges only slowly across a kink.) Tested against Monte
    Carlo and the closed forms in tests/test_activations.py.

    Args:
        f: an elementwise function of a float64 tensor.
        q: the variance of z (> 0).

    Example:
        >>> round(gaussian_expectation(lambda z: z**2, q=2.0), 12)
        2.0
    """
    q = check_number("q", q, positive=True)
    nodes, weights = _legendre_rule()
    half = _HALF_WIDTH * math.sqrt(q)
    total = 0.0
    for lo, hi in ((-half, 0.0), (0.0, half)):
        z = torch.as_tensor(0.5 * (hi - lo) * nodes + 0.5 * (hi + lo), dtype=torch.float64)  # (nodes,)
        density = torch.exp(-z * z / (2 * q)) / math.sqrt(2 * math.pi * q)
        w = torch.as_tensor(0.5 * (hi - lo) * weights, dtype=torch.float64)
        total += float((w * density * f(z)).sum())
    return total


@functools.cache
def second_moment_gain(name: str) -> float:
    """``1 / sqrt(E[phi(z)^2])`` for z ~ N(0, 1): the gain that restores unit second moment after phi.

    This is what He et al. (2015) derive for ReLU (E[relu(z)^2] = 1/2, gain sqrt(2)); computed here by
    :func:`gaussian_expectation` for any activation in the table.

    Example:
        >>> round(second_moment_gain("relu") ** 2, 10)
        2.0
    """
    phi = get_activation(name).functional
    return 1.0 / math.sqrt(gaussian_expectation(lambda z: phi(z) ** 2))


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor Kaiming and orthogonal initializations multiply the weights by for ``nonlinearity``.

    For every name ``torch.nn.init.calculate_gain`` knows, the same value (tested bit for bit):

        linear, conv*, conv_transpose*, sigmoid: 1     tanh: 5/3     relu: sqrt(2)
        leaky_relu(a): sqrt(2 / (1 + a^2)), a = ``param`` or LEAKY_RELU_SLOPE     selu: 3/4

    (ReLU's sqrt(2) is He et al.'s second-moment gain; tanh's 5/3 and SELU's 3/4 are PyTorch's
    conventions.) For the activations of :data:`ACTIVATIONS` torch does not know, the second-moment
    gain :func:`second_moment_gain` computed from the definition: ELU 1.245, GELU 1.534, SiLU 1.677,
    softplus 1.042 (``param`` is ignored for them, as torch ignores it outside leaky_relu), and 1 for
    identity, which is linear. Any other name is a ``ValueError``, as in torch; a ``param`` that is
    not a number is a ``TypeError`` (torch says ``ValueError``), the library's convention.

    Args:
        nonlinearity: the ``torch.nn.functional`` name of the activation.
        param: the negative slope for ``"leaky_relu"``.

    Example:
        >>> round(calculate_gain("leaky_relu", 0.2), 4)
        1.3868
    """
    known = TORCH_LINEAR_NAMES + tuple(ACTIVATIONS)
    check_choice("nonlinearity", nonlinearity, known)
    if nonlinearity in TORCH_LINEAR_NAMES or nonlinearity in ("identity", "sigmoid"):
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = LEAKY_RELU_SLOPE if param is None else check_number("param (the negative slope)", param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    return second_moment_gain(nonlinearity)


def mean_field_chi1(activation: str, weight_var: float, q: float = 1.0) -> float:
    """The mean-field per-layer factor ``chi_1 = weight_var * E[phi'(z)^2]``, z ~ N(0, q).

    Poole et al., "Exponential expressivity in deep neural networks through transient chaos", 2016;
    Schoenholz et al., "Deep information propagation", 2017. In a wide network whose weights have
    Var[w] = weight_var / fan_in and whose pre-activations have variance q, each layer multiplies the
    squared norm of a backpropagated gradient by chi_1 on average, so after L layers it has changed by
    chi_1^L. Closed forms: ReLU weight_var / 2 (for every q), leaky ReLU weight_var (1 + a^2) / 2,
    identity weight_var.

    Args:
        activation: a name from :data:`ACTIVATIONS`.
        weight_var: sigma_w^2, the weights' variance times fan_in (2 for He's ReLU init).
        q: the variance of the pre-activations z (the fixed point q* in the papers).

    Example:
        >>> round(mean_field_chi1("relu", 2.0), 12)
        1.0
    """
    dphi = get_activation(activation).derivative
    weight_var = check_number("weight_var", weight_var, minimum=0.0)
    return weight_var * gaussian_expectation(lambda z: dphi(z) ** 2, q)
