"""Gradients as products of Jacobians: activations' slopes, per-layer gains, clipping (chapter 1).

Backpropagation through a stack h_l = phi(W_l h_{l-1} + b_l) multiplies one Jacobian per layer,

    dh_L / dh_l = J_L J_{L-1} ... J_{l+1},    J_k = diag(phi'(z_k)) W_k,

so the gradient that reaches layer l is scaled by a product of L - l per-layer gains and shrinks or
grows exponentially with the distance from the top (Bengio et al., 1994; Pascanu et al., 2013).
This module measures those products and holds the two classic remedies written from their
definitions, :func:`clip_grad_norm_` and :func:`clip_grad_value_`, which match
``torch.nn.utils`` in float64 to 1e-12 (tests/test_gradients.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from sigprop._validation import check_choice, check_generator, check_int, check_number, check_tensor
from sigprop.activations import ACTIVATIONS, get_activation

__all__ = [
    "ACTIVATIONS",
    "clip_grad_norm_",
    "clip_grad_value_",
    "activation",
    "activation_derivative",
    "layer_jacobians",
    "jacobian_product_norms",
    "singular_values",
    "rnn_jacobians",
    "rnn_gradient_through_time",
]

# --------------------------------------------------------------------------------------------- clipping
def _as_parameter_list(parameters, name: str) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    if not isinstance(parameters, Iterable):
        raise TypeError(f"{name} must be a Tensor or an iterable of Tensors, got {type(parameters).__name__}")
    parameters = list(parameters)  # a generator (model.parameters()) would be exhausted otherwise
    for p in parameters:
        if not isinstance(p, Tensor):
            raise TypeError(f"{name} must hold Tensors, got an element of type {type(p).__name__}")
    return parameters


def _p_norm(t: Tensor, p: float) -> Tensor:
    # ||t||_p = (sum_i |t_i|^p)^(1/p); ||t||_inf = max_i |t_i|. Unscaled, like torch: in float32 a
    # gradient entry above ~1e19 overflows the sum of squares to inf (error_if_nonfinite catches it).
    a = t.abs()
    if math.isinf(p):
        return a.max() if a.numel() else a.new_zeros(())
    return a.pow(p).sum().pow(1.0 / p)


@torch.no_grad()
def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
                    ) -> Tensor:
    """Rescale all gradients together so that their joint p-norm is at most ``max_norm``.

    Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural networks", 2013.

        n = || (||g_1||_p, ..., ||g_k||_p) ||_p        (the norm of all gradients as one vector)
        g_i <- g_i * min(1, max_norm / (n + 1e-6))

    The direction of the update is kept; only its length is capped. The 1e-6 keeps the division
    finite when every gradient is zero, and leaves a clipped norm a hair below ``max_norm``.

    Args:
        parameters: a Tensor or an iterable of Tensors whose ``.grad`` is rescaled in place;
            tensors without a gradient are skipped.
        max_norm: the largest allowed total norm (> 0).
        norm_type: p of the p-norm, a positive number or ``float("inf")`` (the largest |entry|).
        error_if_nonfinite: raise ``RuntimeError`` when the total norm is nan or inf instead of
            scaling the gradients by it (which zeroes or poisons them).

    (``torch.nn.utils.clip_grad_norm_``'s ``foreach`` is a speed option; this plain version loops.)

    Returns:
        The total norm n before clipping, a 0-dim tensor on the first gradient's device.

    Shape:
        every gradient keeps its shape; the result is a scalar ().

    Example:
        >>> w = torch.zeros(3, requires_grad=True); w.grad = torch.tensor([3.0, 4.0, 0.0])
        >>> clip_grad_norm_([w], max_norm=1.0)
        tensor(5.)
        >>> w.grad
        tensor([0.6000, 0.8000, 0.0000])
    """
    parameters = _as_parameter_list(parameters, "parameters")
    max_norm = check_number("max_norm", max_norm, minimum=0.0, allow_inf=True)
    norm_type = check_number("norm_type", norm_type, positive=True, allow_inf=True)

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    device = grads[0].device
    per_tensor = torch.stack([_p_norm(g, norm_type).to(device) for g in grads])  # (k,)
    total = _p_norm(per_tensor, norm_type)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(f"the total {norm_type}-norm of the gradients is {total.item()}, so it cannot be "
                           "clipped; pass error_if_nonfinite=False to scale by it anyway")
    # Multiplying by a clamped coefficient (1 when below the threshold) avoids a data-dependent branch.
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.device))
    return total


@torch.no_grad()
def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient entry into [-clip_value, clip_value], in place.

    Mikolov, "Statistical language models based on neural networks", 2012 (as discussed by
    Pascanu et al., 2013).

        g_ij <- min(max(g_ij, -c), c)

    Unlike :func:`clip_grad_norm_` this changes the update's direction as soon as one entry is clamped.

    Args:
        parameters: a Tensor or an iterable of Tensors whose ``.grad`` is clamped in place.
        clip_value: c >= 0, the largest allowed |entry|.

    Shape:
        every gradient keeps its shape.

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([-3.0, 0.5])
        >>> clip_grad_value_(w, 1.0); w.grad
        tensor([-1.0000,  0.5000])
    """
    parameters = _as_parameter_list(parameters, "parameters")
    clip_value = check_number("clip_value", clip_value, minimum=0.0, allow_inf=True)
    for p in parameters:
        if p.grad is not None:
            p.grad.clamp_(min=-clip_value, max=clip_value)


# ------------------------------------------------------------------------------------------ activations
def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation function phi called ``name``, as torch computes it (from :data:`ACTIVATIONS`).

    Leaky ReLU uses :data:`sigprop.activations.LEAKY_RELU_SLOPE` (torch's default) and GELU the exact,
    erf-based form.

    Args:
        name: a name from :data:`sigprop.activations.ACTIVATIONS`.

    Shape:
        the returned function maps a tensor of any shape to one of the same shape.

    Example:
        >>> activation("relu")(torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """
    return get_activation(name).functional


def activation_derivative(name: str) -> Callable[[Tensor], Tensor]:
    """The derivative phi' of the activation called ``name``, written out by hand.

    The slopes that enter every backward product:

        sigmoid'(x) = s(x)(1 - s(x)) <= 1/4 (at x = 0)      tanh'(x) = 1 - tanh(x)^2 <= 1
        relu'(x) = 1[x > 0]                                 leaky_relu'(x) = 1 or the slope a
        gelu'(x) = Phi(x) + x phi(x)                        elu'(x) = 1 or e^x (x <= 0)
        selu'(x) = lambda * (1 or alpha e^x)                softplus'(x) = sigmoid(x)
        silu'(x) = s(x) (1 + x (1 - s(x)))                  identity'(x) = 1

    At a kink (x = 0) the value is the one torch's autograd uses: relu'(0) = 0, leaky_relu'(0) = a,
    elu'(0) = 1, selu'(0) = lambda alpha.

    Args:
        name: a name from :data:`sigprop.activations.ACTIVATIONS`.

    Shape:
        the returned function maps a tensor of any shape to one of the same shape.

    Example:
        >>> activation_derivative("sigmoid")(torch.tensor(0.0))
        tensor(0.2500)
    """
    return get_activation(name).derivative


# ------------------------------------------------------------------------------------------- Jacobians
def _split_into_layers(model: nn.Sequential) -> tuple[nn.Sequential, list[nn.Sequential]]:
    # A "layer" starts at an nn.Linear and runs up to the next one: Linear, activation (and anything
    # elementwise in between). Modules before the first Linear (e.g. Flatten) are a preamble.
    modules = list(model)
    starts = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    if not starts:
        raise ValueError("expected an nn.Sequential containing nn.Linear layers, found none")
    bounds = starts + [len(modules)]
    layers = [nn.Sequential(*modules[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return nn.Sequential(*modules[: starts[0]]), layers


def layer_jacobians(model: nn.Sequential, x: Tensor) -> list[Tensor]:
    """The Jacobian of each layer's output with respect to its input, at one input ``x``.

    For an MLP ``nn.Sequential(Linear, act, Linear, act, ..., Linear)`` the l-th layer is
    h_l = phi(W_l h_{l-1} + b_l) and its Jacobian is J_l = dh_l/dh_{l-1} = diag(phi'(z_l)) W_l.
    The model's own train/eval mode is used as it is.

    Args:
        model: an ``nn.Sequential``; a layer starts at every ``nn.Linear``.
        x: one input with a batch dimension of 1.

    Returns:
        ``[J_1, ..., J_L]``, J_l of shape (d_l, d_{l-1}) on x's device.

    Shape:
        x (1, *), e.g. (1, D_in); J_l (D_l, D_{l-1}).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> [tuple(j.shape) for j in layer_jacobians(net, torch.randn(1, 3))]
        [(4, 3), (2, 4)]
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    check_tensor("x", x)
    if x.dim() < 2 or x.shape[0] != 1:
        raise ValueError(f"expected one input with a batch dimension of 1, shape (1, *), "
                         f"got {tuple(x.shape)}")
    preamble, layers = _split_into_layers(model)
    with torch.no_grad():
        h = preamble(x)
    if h.dim() != 2:
        raise ValueError(f"expected the first nn.Linear to receive shape (1, D), got {tuple(h.shape)}")
    jacobians = []
    for layer in layers:
        # Each layer maps a vector (D_{l-1},) to a vector (D_l,); the batch dim of 1 is added and dropped.
        f = lambda v, layer=layer: layer(v.unsqueeze(0)).squeeze(0)  # (D_{l-1},) -> (D_l,)
        # vectorize=True computes all rows in one vmapped backward pass instead of one pass per row.
        jacobians.append(torch.autograd.functional.jacobian(f, h[0].detach(), vectorize=True))
        with torch.no_grad():
            h = layer(h)
    return jacobians


def jacobian_product_norms(jacobians: list[Tensor], ord: str | int = "fro") -> Tensor:
    """Norms of the top-down products ||J_L ... J_{l+1}|| = ||dh_L / dh_l|| for l = 0, ..., L-1.

    Bengio, Simard & Frasconi, "Learning long-term dependencies with gradient descent is difficult", 1994.

    The backward pass multiplies the gradient at the top by these products (transposed), so their
    norms say how much of the top's signal reaches each layer's input. The spectral norm (ord=2) is
    the largest gain over all directions; the Frobenius norm (ord="fro") is sqrt(sum of squared gains).

    Args:
        jacobians: ``[J_1, ..., J_L]`` bottom to top, J_l of shape (d_l, d_{l-1}), as from
            :func:`layer_jacobians` or :func:`rnn_jacobians`.
        ord: ``"fro"`` or ``2`` (spectral).

    Returns:
        A tensor of L norms; entry l is the norm of the product from the top down to layer l's input
        (entry 0: down to the network's input; entry L-1: ||J_L||).

    Shape:
        output (L,).

    Example:
        >>> jacobian_product_norms([2 * torch.eye(3), 3 * torch.eye(3)], ord=2)
        tensor([6., 3.])
    """
    if ord not in ("fro", 2):
        raise ValueError(f"ord must be 'fro' or 2, got {ord!r}")
    if not isinstance(jacobians, (list, tuple)) or not jacobians:
        raise ValueError("expected a non-empty list of Jacobian matrices")
    for i, j in enumerate(jacobians):
        if not isinstance(j, Tensor) or j.dim() != 2:
            raise ValueError(f"expected 2-D Jacobians (d_l, d_l-1); entry {i} is "
                             f"{tuple(j.shape) if isinstance(j, Tensor) else type(j).__name__}")
    for i in range(1, len(jacobians)):
        if jacobians[i].shape[1] != jacobians[i - 1].shape[0]:
            raise ValueError(f"Jacobians do not chain: entry {i} has shape {tuple(jacobians[i].shape)} but "
                             f"entry {i - 1} has shape {tuple(jacobians[i - 1].shape)}")
    norms = [None] * len(jacobians)
    product = jacobians[-1]
    for i in range(len(jacobians) - 1, -1, -1):
        norms[i] = torch.linalg.matrix_norm(product, ord=ord)
        if i > 0:
            product = product @ jacobians[i - 1]  # (d_L, d_{i-1})
    return torch.stack(norms)


def singular_values(jacobian: Tensor) -> Tensor:
    """Singular values of a Jacobian, largest first: the gains it applies along its principal directions.

    The largest is the spectral norm ||J||_2 (the worst-case stretch); their root sum of squares is the
    Frobenius norm. A product of Jacobians whose singular values all sit near 1 ("dynamical isometry",
    Saxe et al., 2014) passes gradients through without vanishing or exploding in any direction.

    Args:
        jacobian: one layer's Jacobian, as from :func:`layer_jacobians`.

    Shape:
        jacobian (D_out, D_in), output (min(D_out, D_in),).

    Example:
        >>> singular_values(torch.diag(torch.tensor([1.0, 3.0])))
        tensor([3., 1.])
    """
    check_tensor("jacobian", jacobian)
    if jacobian.dim() != 2:
        raise ValueError(f"expected a 2-D Jacobian (d_out, d_in), got shape {tuple(jacobian.shape)}")
    return torch.linalg.svdvals(jacobian)


# ------------------------------------------------------------------------------- through time (RNN)
def rnn_jacobians(weight_hh: Tensor, inputs: Tensor, nonlinearity: str = "tanh", h0: Tensor | None = None
                  ) -> list[Tensor]:
    """The step Jacobians dh_t/dh_{t-1} of a vanilla RNN h_t = phi(W h_{t-1} + x_t), t = 1..T.

    Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural networks", 2013.

        J_t = diag(phi'(W h_{t-1} + x_t)) W,    dh_T/dh_t = J_T ... J_{t+1}

    The same W appears at every step, so the product through time behaves like W's powers: with
    phi the identity and W = s Q (Q orthogonal), ||dh_T/dh_t||_2 = s^(T-t) exactly.
    ``x_t`` stands for the already projected input (W_ih u_t + b).

    Args:
        weight_hh: W, the recurrent weight matrix.
        inputs: the per-step drive x_1, ..., x_T.
        nonlinearity: a name from :data:`sigprop.activations.ACTIVATIONS`.
        h0: the initial state (zeros when None).

    Returns:
        ``[J_1, ..., J_T]``, ready for :func:`jacobian_product_norms`.

    Shape:
        weight_hh (H, H), inputs (T, H), h0 (H,), each J_t (H, H).

    Example:
        >>> js = rnn_jacobians(0.5 * torch.eye(2), torch.zeros(3, 2), nonlinearity="identity")
        >>> jacobian_product_norms(js, ord=2)
        tensor([0.1250, 0.2500, 0.5000])
    """
    phi, dphi = activation(nonlinearity), activation_derivative(nonlinearity)
    check_tensor("weight_hh", weight_hh)
    check_tensor("inputs", inputs)
    if weight_hh.dim() != 2 or weight_hh.shape[0] != weight_hh.shape[1]:
        raise ValueError(f"expected a square weight_hh of shape (H, H), got {tuple(weight_hh.shape)}")
    hidden = weight_hh.shape[0]
    if inputs.dim() != 2 or inputs.shape[1] != hidden or inputs.shape[0] == 0:
        raise ValueError(f"expected inputs of shape (T, {hidden}) with T >= 1, got {tuple(inputs.shape)}")
    if h0 is not None:
        check_tensor("h0", h0)
    h = inputs.new_zeros(hidden) if h0 is None else h0
    if h.shape != (hidden,):
        raise ValueError(f"expected h0 of shape ({hidden},), got {tuple(h.shape)}")
    jacobians = []
    with torch.no_grad():
        for x_t in inputs:
            z = weight_hh @ h + x_t  # (H,)
            jacobians.append(dphi(z)[:, None] * weight_hh)  # diag(phi'(z)) W, (H, H)
            h = phi(z)
    return jacobians


def rnn_gradient_through_time(hidden_size: int, steps: int, weight_scale: float = 1.0,
                              nonlinearity: str = "tanh", weight: str = "orthogonal", input_std: float = 1.0,
                              ord: str | int = 2, generator: torch.Generator | None = None,
                              device=None, dtype: torch.dtype = torch.float64) -> Tensor:
    """||dh_T/dh_t|| for t = 0..T-1 in a random vanilla RNN: how much of a late gradient reaches step t.

    Pascanu, Mikolov & Bengio, 2013. The recurrent weight is W = s Q with Q orthogonal
    (``weight="orthogonal"``, all singular values s) or W = s G / sqrt(H) with G standard normal
    (``weight="gaussian"``, spectral radius about s); the inputs x_t are N(0, input_std^2).
    Below s = 1 the norm decays like s^(T-t); above it, it grows until the nonlinearity saturates.

    Args:
        hidden_size: H.
        steps: T, the number of time steps unrolled.
        weight_scale: s.
        nonlinearity: a name from :data:`sigprop.activations.ACTIVATIONS`; ``"identity"`` gives the linear RNN.
        weight: ``"orthogonal"`` or ``"gaussian"``.
        input_std: the standard deviation of the per-step input drive.
        ord: ``2`` (spectral) or ``"fro"``.
        generator: the torch.Generator the weights and inputs are drawn from (on CPU).

    Returns:
        A tensor of T norms; entry t is ||dh_T/dh_t|| (entry T-1: one step, ||J_T||).

    Shape:
        output (T,).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> rnn_gradient_through_time(8, 3, weight_scale=0.5, nonlinearity="identity", generator=g)
        tensor([0.1250, 0.2500, 0.5000], dtype=torch.float64)
    """
    check_int("hidden_size", hidden_size, minimum=1)
    check_int("steps", steps, minimum=1)
    weight_scale = check_number("weight_scale", weight_scale, minimum=0.0)
    input_std = check_number("input_std", input_std, minimum=0.0)
    check_choice("weight", weight, ("orthogonal", "gaussian"))
    get_activation(nonlinearity)
    check_generator(generator)
    g = torch.randn(hidden_size, hidden_size, generator=generator, dtype=dtype)
    if weight == "orthogonal":
        q, r = torch.linalg.qr(g)
        # Fix the signs so Q is uniform over the orthogonal group (QR alone is biased by sign(diag R)).
        w = q * torch.sign(torch.diagonal(r))[None, :]
    else:
        w = g / math.sqrt(hidden_size)
    inputs = input_std * torch.randn(steps, hidden_size, generator=generator, dtype=dtype)  # (T, H)
    device = torch.device("cpu") if device is None else torch.device(device)
    jacobians = rnn_jacobians((weight_scale * w).to(device), inputs.to(device), nonlinearity)
    return jacobian_product_norms(jacobians, ord=ord)
