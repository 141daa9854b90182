"""Normalization layers written from their definitions (chapter 3).

- :class:`BatchNorm1d`, :class:`BatchNorm2d`: statistics over the mini-batch (Ioffe & Szegedy, 2015).
- :class:`LayerNorm`: over the features of each sample (Ba, Kiros & Hinton, 2016).
- :class:`InstanceNorm2d`: over the pixels of each sample and channel (Ulyanov et al., 2016).
- :class:`GroupNorm`: over groups of channels of each sample (Wu & He, 2018).
- :class:`SwitchNorm1d`, :class:`SwitchNorm2d`: a learned, softmax-weighted mix of the instance,
  layer and batch statistics (Luo et al., 2019), with the mix readable from :meth:`mixing_weights`.
- :func:`recalibrate_bn_`: re-estimate a trained model's running statistics ("precise BN").

Every layer has the constructor signature, the defaults and the parameter and buffer names of its
``torch.nn`` twin, so a ``state_dict`` loads either way; each matches it in float64 to 1e-10, forward
and backward, in train and eval mode (tests/test_normalization.py). The statistics are computed
here in two passes (mean, then mean squared deviation); no ``torch.nn.functional`` normalization is called.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from sigprop._validation import check_int, check_number

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm2d", "SwitchNorm1d",
           "SwitchNorm2d", "NORM_LAYERS", "running_stat_layers", "recalibrate_bn_"]


def _affine_parameters(module: nn.Module, num_features: int, affine: bool, bias: bool, factory: dict) -> None:
    """Per-channel ``weight`` (gamma, ones) and ``bias`` (beta, zeros), or ``None`` as in torch.nn."""
    module.register_parameter("weight", nn.Parameter(torch.ones(num_features, **factory)) if affine else None)
    module.register_parameter("bias", nn.Parameter(torch.zeros(num_features, **factory)) if affine and bias else None)


def _var_mean(x: Tensor, dim, keepdim: bool = False) -> tuple[Tensor, Tensor]:
    """Biased variance and mean over ``dim``, two passes: the mean, then the mean squared deviation.

    Never ``E[x^2] - E[x]^2``, which cancels catastrophically when the mean is large. The same
    numbers as ``torch.var_mean(x, dim, correction=0)``, which on CPU is many times slower than two sums.
    """
    mean = x.mean(dim, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(dim, keepdim=keepdim)
    return var, (mean if keepdim else mean.squeeze(dim))


class _Normalize(torch.autograd.Function):
    """Layer norm, ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the statistics of each
    row of D trailing values, and its backward written by hand (derived in exercise 1 of chapter 3).

    With ``x_hat = (x - mean) * rstd``, ``rstd = 1 / sqrt(var + eps)`` and ``g = dL/dy * weight``, the
    chain rule through the mean and the variance gives, with means over each row's D values,

        dL/dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)),
        dL/dweight = sum(dL/dy * x_hat),  dL/dbias = sum(dL/dy)  (sums over the rows).

    The two row means are weighted sums over the features, ``mean(g) = (dL/dy @ weight) / D`` and
    ``mean(g * x_hat) = ((dL/dy * x_hat) @ weight) / D``: matrix-vector products, so neither ``g`` nor
    ``g * x_hat`` is stored. Letting autograd differentiate the forward pass instead gives the same
    numbers (the tests check both against torch.nn) at about twice the cost: it keeps every
    intermediate and backpropagates through the two means one small operation at a time.

    Shapes: ``x`` (*, *normalized_shape), D = prod(normalized_shape) values per row; ``weight`` and
    ``bias`` of ``normalized_shape``, or ``None``. Returns ``y``, the shape of ``x``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, d, eps):
        rows = x.reshape(x.numel() // d, d)  # (M, D): one row per normalized sample
        mean = rows.mean(1, keepdim=True)  # (M, 1)
        x_hat = rows - mean  # (M, D), centred here, normalized in place below
        # Two passes, never E[x^2] - E[x]^2; a norm sums the squared deviations without storing them.
        var = torch.linalg.vector_norm(x_hat, dim=1, keepdim=True).square_().div_(d)  # (M, 1)
        rstd = torch.rsqrt(var + eps)  # eps inside the square root
        x_hat.mul_(rstd)
        w = None if weight is None else weight.reshape(d)  # (D,)
        if w is None:  # no affine (a LayerNorm has a bias only with a weight)
            y = x_hat.clone()  # not x_hat itself, saved below: an in-place change of y would corrupt it
        elif bias is None:
            y = x_hat * w
        else:
            y = torch.addcmul(bias.reshape(d), x_hat, w)  # (M, D): the affine in one pass
        ctx.save_for_backward(x_hat, rstd, w)
        ctx.x_shape, ctx.has_bias = x.shape, bias is not None
        ctx.weight_shape = None if weight is None else weight.shape
        return y.view(x.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x_hat, rstd, w = ctx.saved_tensors
        d = x_hat.shape[1]
        dy = dy.reshape(x_hat.shape)  # (M, D)
        dy_xhat = dy * x_hat  # (M, D)
        dweight = dbias = None
        if w is None:  # g = dL/dy
            mean_g, mean_gx = dy.mean(1, keepdim=True), dy_xhat.mean(1, keepdim=True)  # (M, 1)
            dx = dy - mean_g
        else:
            w_col = w[:, None]  # (D, 1): the matrix-vector products below keep the (M, 1) shape
            mean_g = (dy @ w_col).div_(d)  # (M, 1)
            mean_gx = (dy_xhat @ w_col).div_(d)  # (M, 1)
            dweight = dy_xhat.sum(0).view(ctx.weight_shape)  # (D,) -> normalized_shape
            # g - mean(g), written over dy * x_hat, no longer needed (a new buffer costs a pass)
            dx = torch.addcmul(mean_g.neg_(), dy, w, out=dy_xhat)  # (M, D)
        dx.addcmul_(x_hat, mean_gx, value=-1).mul_(rstd)
        if ctx.has_bias:
            dbias = dy.sum(0).view(ctx.weight_shape)  # (D,) -> normalized_shape
        return dx.view(ctx.x_shape), dweight, dbias, None, None


class _ChannelNormalize(torch.autograd.Function):
    """Normalization with a per-channel affine, folded for speed: batch, group and instance norm.

    ``x`` is (N, C, S), S the flattened spatial axes, or (N, C) for batch norm of features. With
    ``groups=None`` the statistics are per channel over (N, S) (batch norm); with ``groups=G`` they
    are per sample and group of C // G channels over (C // G, S) (group norm; G = C is instance norm).
    Forward and backward then reduce to per-(sample, channel) coefficients, ``y = A x + B`` and
    ``dL/dx = A dL/dy + P x + Q``, so the big tensor is touched by a few multiply-adds, as in
    PyTorch's own kernels. The backward is the formula of :class:`_Normalize`,
    ``rstd * (g - mean(g) - x_hat * mean(g * x_hat))`` with ``g = dL/dy * gamma``, its means written
    through the per-channel sums ``sum(dL/dy)`` and ``sum(dL/dy * x)``:

        sum(dL/dy * x_hat) = rstd * (sum(dL/dy * x) - mean * sum(dL/dy))  per (sample,) channel,
        mean(g), mean(g * x_hat): gamma times those sums, added over a statistic's channels, / count,
        A = rstd * gamma,  P = -rstd^2 * mean(g * x_hat),  Q = -P * mean - rstd * mean(g).

    Returns ``y`` (the shape of ``x``), the mean and the biased variance, (C,) or (N, G).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, groups, eps):
        n, c = x.shape[:2]
        w = torch.ones(c, dtype=x.dtype, device=x.device) if weight is None else weight
        if x.dim() == 2:  # (N, C), batch norm of features: the statistics run down the columns
            mean = x.mean(0)  # (C,)
            var = (x - mean).square_().mean(0)  # (C,): two passes; the squares overwrite the deviations
            rstd = torch.rsqrt(var + eps)  # eps inside the square root
            a = rstd * w
            b = -mean * a if bias is None else torch.addcmul(bias, mean, a, value=-1)  # beta - mean * a
            y = torch.addcmul(b, x, a)  # (N, C): one pass, the coefficients run along the contiguous axis
        else:
            if groups is None:  # batch norm: per channel over (N, S)
                mean = x.mean((0, 2))  # (C,)
                centred = x - mean[:, None]  # (N, C, S), becomes y
                # the squared deviations summed per (sample, channel) row by a norm, which stores no
                # squares, then averaged over the samples and the S values of each row
                var = torch.linalg.vector_norm(centred, dim=2).square_().mean(0).div_(x.shape[2])  # (C,)
            else:  # group norm: per sample over the (C//G, S) values of each group
                grouped = x.reshape(n, groups, -1)  # (N, G, C//G * S)
                mean = grouped.mean(2)  # (N, G)
                centred = grouped - mean[..., None]  # (N, G, C//G * S), becomes y
                var = torch.linalg.vector_norm(centred, dim=2).square_().div_(grouped.shape[2])  # (N, G)
            rstd = torch.rsqrt(var + eps)  # eps inside the square root
            # y = (x - mean) * (rstd * gamma) + beta, in place over the deviations (no new buffer),
            # in two passes: an addcmul with two operands constant along S runs as a scalar loop on CPU
            y = centred.view(x.shape).mul_((_per_channel(rstd, c, groups) * w)[..., None])  # (N, C, S)
            if bias is not None:
                y.add_(bias[:, None])  # (C, 1): broadcast over N and S
        ctx.save_for_backward(x, mean, rstd, w)
        ctx.groups, ctx.has_weight, ctx.has_bias = groups, weight is not None, bias is not None
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _mean_grad, _var_grad):
        x, mean, rstd, w = ctx.saved_tensors
        groups = ctx.groups
        n, c = x.shape[:2]
        s = x.shape[2] if x.dim() == 3 else 1
        if groups is None:
            axes = (0,) if x.dim() == 2 else (0, 2)
            count = n * s
        else:
            axes = 2
            count = (c // groups) * s
        dy_x = dy * x  # (N, C, S); its buffer becomes dL/dx below
        sum_dy, sum_dyx = dy.sum(axes), dy_x.sum(axes)  # (C,) or (N, C)
        rstd_c = _per_channel(rstd, c, groups)  # (C,) or (N, C)
        # sum over the normalized values of dL/dy * x_hat, per (sample or not,) channel
        dy_xhat = torch.addcmul(sum_dyx, _per_channel(mean, c, groups), sum_dy, value=-1).mul_(rstd_c)
        k = rstd / -count  # (C,) or (N, G)
        p = _per_group(w * dy_xhat, groups).mul_(k * rstd)  # -rstd^2 * mean(g * x_hat)
        q = torch.addcmul(_per_group(w * sum_dy, groups).mul_(k), p, mean, value=-1)  # -rstd mean(g) - p mean
        a = rstd_c * w
        p, q = _per_channel(p, c, groups), _per_channel(q, c, groups)  # (C,) or (N, C)
        if x.dim() == 2:  # the coefficients run along the contiguous axis: one addcmul is fast
            dx = torch.addcmul(q, x, p, out=dy_x)
        else:  # (.., C, 1) broadcast over S; the multiply-add in two vectorized passes (see forward)
            dx = torch.mul(x, p[..., None], out=dy_x).add_(q[..., None])
        dx.addcmul_(dy, a if x.dim() == 2 else a[..., None])  # + rstd * gamma * dL/dy
        if groups is not None:  # per-sample statistics: the parameter gradients add up over the batch
            dy_xhat, sum_dy = dy_xhat.sum(0), sum_dy.sum(0)  # (C,)
        dweight = dy_xhat if ctx.has_weight else None
        dbias = sum_dy if ctx.has_bias else None
        return dx, dweight, dbias, None, None


def _normalize_by_autograd(x, weight, bias, d, eps):
    """:class:`_Normalize`'s forward as plain operations, for autograd (and torch.func) to differentiate."""
    rows = x.reshape(x.numel() // d, d)  # (M, D)
    mean = rows.mean(1, keepdim=True)  # (M, 1)
    centred = rows - mean
    var = (centred * centred).mean(1, keepdim=True)  # two passes, biased
    y = (centred * torch.rsqrt(var + eps)).reshape(x.shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _channel_normalize_by_autograd(x, weight, bias, groups, eps):
    """:class:`_ChannelNormalize`'s forward as plain operations, for autograd (and torch.func)."""
    n, c = x.shape[:2]
    if groups is None:
        axes = (0,) if x.dim() == 2 else (0, 2)
        mean = x.mean(axes)  # (C,)
        centred = x - _col(mean, x)
        var = (centred * centred).mean(axes)  # (C,)
        y = centred * _col(torch.rsqrt(var + eps), x)
    else:
        grouped = x.reshape(n, groups, -1)  # (N, G, C//G * S)
        mean = grouped.mean(2)  # (N, G)
        centred = grouped - mean[..., None]
        var = (centred * centred).mean(2)  # (N, G)
        y = (centred * torch.rsqrt(var + eps)[..., None]).reshape(x.shape)  # (N, C, S) or (N, C)
    if weight is not None:
        y = y * _col(weight, x)
    if bias is not None:
        y = y + _col(bias, x)
    return y, mean.detach(), var.detach()


def _normalize(x, weight, bias, d, eps):
    # torch.func transforms (vmap, grad, ...) cannot run an autograd.Function that has no
    # setup_context; under one, autograd differentiates the same formula instead (chapter 2 trains
    # several networks at once with vmap). Elsewhere the hand-written backward is about twice as fast.
    if torch._C._are_functorch_transforms_active():
        return _normalize_by_autograd(x, weight, bias, d, eps)
    return _Normalize.apply(x, weight, bias, d, eps)


def _channel_normalize(x, weight, bias, groups, eps):
    if torch._C._are_functorch_transforms_active():  # see _normalize
        return _channel_normalize_by_autograd(x, weight, bias, groups, eps)
    return _ChannelNormalize.apply(x, weight, bias, groups, eps)


def _col(coefficient: Tensor, x: Tensor) -> Tensor:
    """A (C,) or (N, C) coefficient shaped to broadcast against ``x``: (N, C) as is, (N, C, S) via (.., C, 1)."""
    return coefficient if x.dim() == 2 else coefficient[..., None]


def _per_channel(stat: Tensor, c: int, groups: int | None) -> Tensor:
    """A per-channel (C,) statistic as is, or a per-group (N, G) one repeated for each channel: (N, C)."""
    return stat if groups is None else stat.repeat_interleave(c // groups, dim=1)


def _per_group(per_channel: Tensor, groups: int | None) -> Tensor:
    """Sum a (N, C) quantity over the channels of each group: (N, G); per-channel (C,) stays as is."""
    if groups is None:
        return per_channel
    n, c = per_channel.shape
    return per_channel.reshape(n, groups, c // groups).sum(2)  # (N, G, C//G) -> (N, G)


def _check_eps_momentum(eps, momentum) -> None:
    check_number("eps", eps, minimum=0)
    if momentum is not None:
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise TypeError(f"momentum must be a number or None, got {type(momentum).__name__}")
        check_number("momentum", momentum, minimum=0)
        if momentum > 1:
            raise ValueError(f"momentum must be in [0, 1] (the weight of the new batch) or None, got {momentum}")


class _RunningStats(nn.Module):
    """Shared state of the layers that keep running statistics: BatchNorm, InstanceNorm, SwitchNorm."""

    _counts_batches = True  # increment num_batches_tracked (InstanceNorm does not, as in PyTorch)

    def __init__(self, num_features: int, eps: float, momentum: float | None, affine: bool,
                 track_running_stats: bool, device=None, dtype=None, bias: bool = True) -> None:
        # The constructor every subclass shares: checks, the per-feature affine, the running buffers.
        super().__init__()
        check_int("num_features", num_features, minimum=1)
        _check_eps_momentum(eps, momentum)
        factory = {"device": device, "dtype": dtype}
        self.num_features, self.eps, self.affine = num_features, eps, affine
        _affine_parameters(self, num_features, affine, bias, factory)
        self._init_running_stats(num_features, momentum, track_running_stats, factory)

    def _init_running_stats(self, num_features: int, momentum: float | None, track_running_stats: bool,
                            factory: dict) -> None:
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long,
                                                                     device=factory.get("device")))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batch seen."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def _use_batch_stats(self) -> bool:
        # Without running statistics there is nothing else to normalize with, in eval mode too.
        return self.training or not self.track_running_stats

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: int) -> None:
        """Blend a batch's mean and variance (biased, over ``count`` values each) into the buffers.

        ``momentum`` is the weight of the *new* batch (PyTorch's 0.1 is Keras' 0.9); ``None`` makes
        the running values the plain average of every batch since the last reset. The variance is
        stored unbiased, var * n / (n - 1), although the batch itself is normalized with the biased one.
        """
        if not (self.training and self.track_running_stats):
            return
        if self._counts_batches:
            self.num_batches_tracked.add_(1)
            weight = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
        else:  # torch.nn.InstanceNorm's behaviour: no count, and momentum=None leaves the buffers alone
            weight = 0.0 if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.detach(), weight)  # (1 - weight) * running + weight * new
        self.running_var.lerp_(var.detach() * (count / (count - 1)), weight)


class _BatchNorm(_RunningStats):
    _expected_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in self._expected_dims or x.shape[1] != self.num_features:
            dims = " or ".join(f"{d}D" for d in self._expected_dims)
            raise ValueError(f"{type(self).__name__}({self.num_features}) expected {dims} input of shape "
                             f"(N, {self.num_features}, ...), got {tuple(x.shape)}")
        count = x.numel() // x.shape[1]  # values per channel, over (N, *spatial)
        if not self._use_batch_stats():  # eval: a fixed per-channel affine map of the running statistics
            return _affine_normalize(x, self.running_mean, self.running_var, self.eps, self.weight, self.bias)
        if self.training and count < 2:
            raise ValueError(f"{type(self).__name__} needs more than 1 value per channel when training "
                             f"(its batch variance is 0), got input of shape {tuple(x.shape)}; use a batch "
                             "of at least 2, eval mode, or a per-sample norm (layer or group norm)")
        flat = x if x.dim() == 2 else x.reshape(x.shape[0], x.shape[1], -1)  # (N, C) or (N, C, S)
        y, mean, var = _channel_normalize(flat, self.weight, self.bias, None, self.eps)  # biased var
        self._update_running_stats(mean, var, count)
        return y if x.dim() == 2 else y.reshape(x.shape)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


def _affine_normalize(x: Tensor, mean: Tensor, var: Tensor, eps: float, weight: Tensor | None,
                      bias: Tensor | None) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` per channel (axis 1), in one pass over ``x``.

    The per-channel factors are folded first, ``scale = weight / sqrt(var + eps)`` and
    ``shift = bias - mean * scale`` (C values each), so the big tensor is touched by a single
    multiply-add, as PyTorch's own CPU kernel does; that is what keeps this within 1.5x of it.
    """
    scale = torch.rsqrt(var + eps)  # eps inside the square root
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    view = (1, -1) + (1,) * (x.dim() - 2)  # (1, C, 1, ...): broadcast over N and the spatial axes
    return torch.addcmul(shift.reshape(view), x, scale.reshape(view))


class BatchNorm1d(_BatchNorm):
    """Batch normalization of features, ``torch.nn.BatchNorm1d`` written out.

    Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
    Covariate Shift", 2015.

        y = (x - E[x]) / sqrt(Var[x] + eps) * gamma + beta,
        E and Var per channel over the batch (and the length L); Var biased (divide by n).

    In training the batch's own statistics are used and ``running_mean``/``running_var`` are updated
    (the variance unbiased, by n / (n - 1)); in eval mode the running values are used, unless
    ``track_running_stats=False``, in which case batch statistics are used in eval mode too.

    Args:
        num_features: C, the channels (features) normalized separately.
        eps: added to the variance inside the square root.
        momentum: weight of the new batch in the running averages (0.1; Keras' ``momentum=0.99`` is
            0.01 here); ``None`` for a cumulative average of every batch since the reset.
        affine: learn a per-channel scale ``weight`` (gamma, 1 at start) and shift ``bias`` (beta, 0).
        track_running_stats: keep running statistics for eval mode.
        device, dtype: of the parameters and buffers.
        bias: with ``affine``, learn the shift too (keyword-only, as in ``torch.nn``).

    Shape:
        input (N, C) or (N, C, L), output the same shape.

    Example:
        >>> bn = BatchNorm1d(3)
        >>> y = bn(torch.randn(8, 3) * 5 + 2)
        >>> bool(y.mean(0).abs().max() < 1e-5), bn.num_batches_tracked.item()
        (True, 1)
    """

    _expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of images, ``torch.nn.BatchNorm2d`` written out.

    Ioffe & Szegedy, 2015. As :class:`BatchNorm1d`, with E and Var per channel over (N, H, W).

    Args:
        num_features, eps, momentum, affine, track_running_stats, device, dtype, bias: as in
            :class:`BatchNorm1d`.

    Shape:
        input (N, C, H, W), output the same shape.

    Example:
        >>> BatchNorm2d(4)(torch.randn(2, 4, 5, 5)).shape
        torch.Size([2, 4, 5, 5])
    """

    _expected_dims = (4,)


class LayerNorm(nn.Module):
    """Layer normalization, ``torch.nn.LayerNorm`` written out.

    Ba, Kiros & Hinton, "Layer Normalization", 2016.

        y = (x - E[x]) / sqrt(Var[x] + eps) * gamma + beta,
        E and Var per sample over the last ``len(normalized_shape)`` axes; Var biased.

    The same computation in training and in eval mode: nothing depends on the rest of the batch, so
    it works for a batch of one and for recurrent networks, one time step at a time.

    Args:
        normalized_shape: the trailing shape normalized over, e.g. ``64`` or ``(C, H, W)``.
        eps: added to the variance inside the square root.
        elementwise_affine: learn ``weight`` (gamma) and ``bias`` (beta) of shape ``normalized_shape``.
        bias: with ``elementwise_affine``, learn the shift too.
        device, dtype: of the parameters.

    Shape:
        input (*, *normalized_shape), output the same shape.

    Example:
        >>> y = LayerNorm(5)(torch.randn(3, 5) * 4)
        >>> bool(y.std(1, unbiased=False).sub(1).abs().max() < 1e-3)
        True
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        for n in shape:
            check_int("each entry of normalized_shape", n, minimum=1)
        if not shape:
            raise ValueError("normalized_shape must name at least one axis, got an empty shape")
        _check_eps_momentum(eps, None)
        factory = {"device": device, "dtype": dtype}
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        self.weight = nn.Parameter(torch.ones(shape, **factory)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(shape, **factory)) if elementwise_affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        k = len(self.normalized_shape)
        if tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm expected input ending in {self.normalized_shape}, got {tuple(x.shape)}")
        d = math.prod(self.normalized_shape)  # values per normalized row
        return _normalize(x, self.weight, self.bias, d, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(nn.Module):
    """Group normalization, ``torch.nn.GroupNorm`` written out.

    Wu & He, "Group Normalization", 2018.

        y = (x - E[x]) / sqrt(Var[x] + eps) * gamma + beta,
        E and Var per sample over (C // G, *spatial) inside each of the G groups; gamma and beta
        per channel (not per group).

    ``GroupNorm(1, C)`` normalizes over (C, H, W) like ``LayerNorm((C, H, W))`` but its affine is per
    channel, so the two agree only without the affine; ``GroupNorm(C, C)`` is instance norm with a
    per-channel affine.

    Args:
        num_groups: G, how many groups the channels are split into.
        num_channels: C; must be divisible by G.
        eps: added to the variance inside the square root.
        affine: learn a per-channel scale ``weight`` and shift ``bias``.
        device, dtype: of the parameters.
        bias: with ``affine``, learn the shift too (keyword-only).

    Shape:
        input (N, C, *), output the same shape.

    Example:
        >>> GroupNorm(2, 4)(torch.randn(3, 4, 6, 6)).shape
        torch.Size([3, 4, 6, 6])
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        check_int("num_groups", num_groups, minimum=1)
        check_int("num_channels", num_channels, minimum=1)
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        _check_eps_momentum(eps, None)
        factory = {"device": device, "dtype": dtype}
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        _affine_parameters(self, num_channels, affine, bias, factory)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm expected input of shape (N, {self.num_channels}, *), got {tuple(x.shape)}")
        n, c, g = x.shape[0], self.num_channels, self.num_groups
        flat = x.reshape(n, c, -1)  # (N, C, S); statistics over the (C//G, S) values of each group
        return _channel_normalize(flat, self.weight, self.bias, g, self.eps)[0].reshape(x.shape)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class InstanceNorm2d(_RunningStats):
    """Instance normalization, ``torch.nn.InstanceNorm2d`` written out.

    Ulyanov, Vedaldi & Lempitsky, "Instance Normalization: The Missing Ingredient for Fast
    Stylization", 2016.

        y = (x - E[x]) / sqrt(Var[x] + eps) * gamma + beta,
        E and Var per sample and channel over (H, W); Var biased.

    Each image's per-channel mean and contrast are removed, which is what style transfer wants and
    what a task whose label *is* the contrast cannot afford. PyTorch's defaults differ from
    BatchNorm's: ``affine=False`` and ``track_running_stats=False`` (so eval mode normalizes each
    image by its own statistics too). With running statistics, they average the per-instance mean and
    unbiased variance over the batch.

    Args:
        num_features: C.
        eps: added to the variance inside the square root.
        momentum: as in :class:`BatchNorm1d` (used only with ``track_running_stats``); as in
            ``torch.nn.InstanceNorm2d``, ``None`` freezes the running statistics, and
            ``num_batches_tracked`` is never incremented.
        affine: learn a per-channel scale and shift.
        track_running_stats: keep running statistics and use them in eval mode.
        device, dtype: of the parameters and buffers.
        bias: with ``affine``, learn the shift too (keyword-only).

    Shape:
        input (N, C, H, W) or unbatched (C, H, W), output the same shape.

    Example:
        >>> y = InstanceNorm2d(3)(torch.randn(2, 3, 4, 4) * 7)
        >>> bool(y.mean((2, 3)).abs().max() < 1e-5)
        True
    """

    _counts_batches = False

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device=None, dtype=None, *, bias: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return self.forward(x.unsqueeze(0)).squeeze(0)  # unbatched (C, H, W) -> (1, C, H, W) and back
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"InstanceNorm2d({self.num_features}) expected input of shape "
                             f"(N, {self.num_features}, H, W), got {tuple(x.shape)}")
        count = x.shape[2] * x.shape[3]
        if not self._use_batch_stats():  # eval with running statistics: one affine map per channel
            return _affine_normalize(x, self.running_mean, self.running_var, self.eps, self.weight, self.bias)
        if self.training and count < 2:
            raise ValueError(f"InstanceNorm2d needs more than 1 spatial value per channel when training, "
                             f"got input of shape {tuple(x.shape)}")
        flat = x.reshape(x.shape[0], self.num_features, -1)  # (N, C, H*W): one group per channel
        y, mean, var = _channel_normalize(flat, self.weight, self.bias, self.num_features, self.eps)
        # With running statistics, PyTorch averages the per-instance mean and variance (N, C) over the batch.
        self._update_running_stats(mean.mean(0), var.mean(0), count)
        return y.reshape(x.shape)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class _SwitchNorm(_RunningStats):
    """Shared code of the switchable normalizations; ``_kinds`` lists the statistics mixed."""

    _kinds: tuple[str, ...] = ()
    _dims: int = 2

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        factory = {"device": device, "dtype": dtype}
        # One logit per kind of statistic, separately for the means and the variances; equal at start.
        self.mean_weight = nn.Parameter(torch.ones(len(self._kinds), **factory))
        self.var_weight = nn.Parameter(torch.ones(len(self._kinds), **factory))

    def mixing_weights(self) -> dict[str, dict[str, float]]:
        """The learned mix: ``{"mean": {kind: weight}, "var": {kind: weight}}``, each summing to 1."""
        out = {}
        for what, logits in (("mean", self.mean_weight), ("var", self.var_weight)):
            weights = torch.softmax(logits.detach(), dim=0).tolist()
            out[what] = dict(zip(self._kinds, weights, strict=True))
        return out

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self._dims or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) expected {self._dims}D input of shape "
                             f"(N, {self.num_features}, ...), got {tuple(x.shape)}")
        n, c = x.shape[:2]
        spatial = tuple(range(2, x.dim()))
        stats = {}
        if "instance" in self._kinds:
            stats["instance"] = _var_mean(x, spatial, keepdim=True)  # (N, C, 1, 1)
        stats["layer"] = _var_mean(x, (1, *spatial), keepdim=True)  # (N, 1, ...)
        if self._use_batch_stats():
            count = x.numel() // c
            if self.training and count < 2:
                raise ValueError(f"{type(self).__name__} needs more than 1 value per channel when training, "
                                 f"got input of shape {tuple(x.shape)}")
            var_b, mean_b = _var_mean(x, (0, *spatial), keepdim=True)  # (1, C, ...)
            self._update_running_stats(mean_b.reshape(c), var_b.reshape(c), count)
        else:
            view = (1, c) + (1,) * len(spatial)
            var_b, mean_b = self.running_var.reshape(view), self.running_mean.reshape(view)
        stats["batch"] = (var_b, mean_b)
        w_mean, w_var = torch.softmax(self.mean_weight, 0), torch.softmax(self.var_weight, 0)
        mean = sum(w_mean[i] * stats[k][1] for i, k in enumerate(self._kinds))  # broadcasts to (N, C, ...)
        var = sum(w_var[i] * stats[k][0] for i, k in enumerate(self._kinds))
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is None:
            return y
        view = (1, c) + (1,) * len(spatial)
        return torch.addcmul(self.bias.reshape(view), y, self.weight.reshape(view))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, kinds={self._kinds}"


class SwitchNorm1d(_SwitchNorm):
    """Switchable normalization of features: a learned mix of layer and batch statistics.

    Luo, Ren, Peng, Zhang & Li, "Differentiable Learning-to-Normalize via Switchable Normalization",
    ICLR 2019.

        mean = sum_k softmax(lambda)_k mean_k,  var = sum_k softmax(lambda')_k var_k,
        y = (x - mean) / sqrt(var + eps) * gamma + beta,  k in (layer, batch).

    A feature vector has one value per channel and sample, so instance statistics do not exist here.
    The batch statistics come from running averages in eval mode, as in :class:`BatchNorm1d`; the
    logits ``mean_weight`` and ``var_weight`` start equal and are learned with the other parameters.

    Args:
        num_features, eps, momentum, affine, track_running_stats, device, dtype: as in
            :class:`BatchNorm1d`.

    Shape:
        input (N, C), output the same shape.

    Example:
        >>> sn = SwitchNorm1d(4)
        >>> sn.mixing_weights()["mean"]
        {'layer': 0.5, 'batch': 0.5}
    """

    _kinds = ("layer", "batch")
    _dims = 2


class SwitchNorm2d(_SwitchNorm):
    """Switchable normalization of images: a learned mix of instance, layer and batch statistics.

    Luo et al., ICLR 2019. As :class:`SwitchNorm1d` with k in (instance, layer, batch): instance over
    (H, W), layer over (C, H, W), batch over (N, H, W).

    Args:
        num_features, eps, momentum, affine, track_running_stats, device, dtype: as in
            :class:`BatchNorm1d`.

    Shape:
        input (N, C, H, W), output the same shape.

    Example:
        >>> sorted(SwitchNorm2d(4).mixing_weights()["var"])
        ['batch', 'instance', 'layer']
    """

    _kinds = ("instance", "layer", "batch")
    _dims = 4


NORM_LAYERS = (BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm, InstanceNorm2d, SwitchNorm1d, SwitchNorm2d)


def running_stat_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers that keep running statistics (sigprop's and ``torch.nn``'s batch norms,
    instance norms with ``track_running_stats``, switchable norms), with their names."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    kinds = (_RunningStats, nn.modules.batchnorm._NormBase)
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, kinds) and getattr(m, "track_running_stats", False) and m.running_mean is not None]


def _batches(data, batch_size: int) -> Iterable[Tensor]:
    from sigprop.data import DataSplit

    if isinstance(data, DataSplit):
        data = data.x_train
    if isinstance(data, Tensor):
        return (data[i:i + batch_size] for i in range(0, len(data), batch_size))  # (B, *features) each
    if isinstance(data, Iterable):
        # A loader: batches of inputs, or (inputs, targets, ...) tuples whose first entry is the input.
        return (b[0] if isinstance(b, (tuple, list)) else b for b in data)
    raise TypeError("data must be a DataSplit, a tensor of inputs or an iterable of batches, "
                    f"got {type(data).__name__}")


@torch.no_grad()
def recalibrate_bn_(model: nn.Module, data, batch_size: int = 256, num_batches: int | None = None) -> nn.Module:
    """Re-estimate every running mean and variance of ``model`` from ``data`` ("precise BN"), in place.

    The exponential moving average kept during training mixes statistics of weights that have since
    changed, and with tiny batches it is noisy. Here each batch-statistics layer is reset, given
    ``momentum=None`` (an equal-weight average over the batches) and put in train mode, the data are
    passed through under ``no_grad``, and then every module's mode and every layer's momentum are
    restored. Only the normalization layers are in train mode meanwhile, so dropout and the like stay
    as they would be at evaluation. See Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021.

    Args:
        model: the trained network (modified in place and returned).
        data: a :class:`sigprop.data.DataSplit` (its training inputs), a tensor of inputs (split into
            ``batch_size`` rows in order), or an iterable of batches (tensors or ``(x, y)`` tuples).
        batch_size: rows per batch when ``data`` is a split or a tensor; the statistics averaged are
            those of batches of this size.
        num_batches: stop after this many batches (default: all of them).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), BatchNorm1d(4))
        >>> _ = recalibrate_bn_(net, torch.randn(100, 3), batch_size=10)
        >>> net[1].num_batches_tracked.item(), net.training
        (10, True)
    """
    check_int("batch_size", batch_size, minimum=1)
    if num_batches is not None:
        check_int("num_batches", num_batches, minimum=1)
    layers = running_stat_layers(model)
    if not layers:
        return model
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for _, m in layers}
    try:
        model.eval()
        for _, m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        seen = 0
        for x in _batches(data, batch_size):
            if num_batches is not None and seen >= num_batches:
                break
            model(x)
            seen += 1
        if seen == 0:
            raise ValueError("recalibrate_bn_ got no batch from data")
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return model

