"""Target and feature scalers on tensors, with scikit-learn's semantics (chapter 6).

Each scaler is fitted on the training split only and then applied to any split; ``inverse_transform``
maps a model's scaled predictions back to the targets' own units before an error is measured.
They match ``sklearn.preprocessing``'s scalers of the same names (see tests/test_scaling.py):

- :class:`MinMaxScaler`: ``x' = (x - min) / (max - min) * (b - a) + a`` into ``feature_range=(a, b)``.
- :class:`StandardScaler`: the z-score ``x' = (x - mean) / std`` with the population std (``ddof=0``).
- :class:`MaxAbsScaler`: ``x' = x / max|x|``, into ``[-1, 1]``; zeros stay zero (sparsity kept).

A constant column gets scale 1 (it is only shifted), never a division by zero, as in scikit-learn.
Statistics live on the device they were fitted on and follow the input's device and dtype when used.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["NotFittedError", "MinMaxScaler", "StandardScaler", "MaxAbsScaler"]


class NotFittedError(ValueError, AttributeError):
    """A scaler was used before :meth:`fit` (as scikit-learn's ``NotFittedError``)."""


def _check_2d(x, what: str = "x") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape (N, F), got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{what} must have shape (N, F) (samples, features), got shape {tuple(x.shape)}; "
                         "reshape a single column with x.reshape(-1, 1)")
    return x


def _safe_scale(scale: Tensor, constant: Tensor) -> Tensor:
    """Scale 1 where a column is constant (scikit-learn's ``_handle_zeros_in_scale``)."""
    # Below 10 machine epsilons a scale is rounding error of a constant column, as scikit-learn treats it.
    tiny = scale < 10 * torch.finfo(scale.dtype).eps
    return torch.where(constant | tiny, torch.ones_like(scale), scale)


class _Scaler:
    """Shared bookkeeping: fit on (N, F), then transform any (M, F) on any device."""

    _stats: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.n_features_in_: int | None = None
        self.n_samples_seen_: int | None = None

    def _fit(self, x: Tensor) -> None:  # pragma: no cover - each scaler defines it
        raise NotImplementedError

    def fit(self, x: Tensor) -> _Scaler:
        """Learn the per-column statistics from ``x`` (the training split); returns ``self``."""
        x = _check_2d(x)
        if x.shape[0] == 0:
            raise ValueError("cannot fit a scaler on 0 samples; x has shape (0, F)")
        with torch.no_grad():
            self._fit(x.detach())
        self.n_features_in_, self.n_samples_seen_ = x.shape[1], x.shape[0]
        return self

    def fit_transform(self, x: Tensor) -> Tensor:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def _check_fitted(self, x: Tensor, what: str) -> Tensor:
        if self.n_features_in_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(x_train) before {what}")
        x = _check_2d(x)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"x has {x.shape[1]} columns, but this {type(self).__name__} was fitted on "
                             f"{self.n_features_in_} columns")
        return x

    def _get(self, name: str, like: Tensor) -> Tensor:
        return getattr(self, name).to(device=like.device, dtype=like.dtype)

    def transform(self, x: Tensor) -> Tensor:  # pragma: no cover - each scaler defines it
        raise NotImplementedError

    def inverse_transform(self, x: Tensor) -> Tensor:  # pragma: no cover - each scaler defines it
        raise NotImplementedError

    def __repr__(self) -> str:
        state = "unfitted" if self.n_features_in_ is None else f"fitted on {self.n_features_in_} columns"
        return f"{type(self).__name__}({state})"


class MinMaxScaler(_Scaler):
    """Map each column's training range onto ``feature_range``.

    Scikit-learn's ``MinMaxScaler``: ``x' = x * scale_ + min_`` with
    ``scale_ = (b - a) / (max - min)`` and ``min_ = a - min * scale_``; a constant column has range 1,
    so it maps to ``a``. New data outside the training range falls outside ``[a, b]``; one outlier in
    training squeezes every other value into a sliver of the range.

    Args:
        feature_range: the interval ``(a, b)``, ``a < b``, the training range is mapped onto.

    Shape:
        input (N, F), output (N, F).

    Example:
        >>> MinMaxScaler().fit_transform(torch.tensor([[0.0], [5.0], [10.0]])).flatten().tolist()
        [0.0, 0.5, 1.0]
    """

    def __init__(self, feature_range: tuple[float, float] = (0, 1)) -> None:
        super().__init__()
        if (not isinstance(feature_range, (tuple, list)) or len(feature_range) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in feature_range)):
            raise TypeError(f"feature_range must be a pair of numbers (a, b), got {feature_range!r}")
        if not feature_range[0] < feature_range[1]:
            raise ValueError(f"feature_range must satisfy a < b, got {tuple(feature_range)}")
        self.feature_range = tuple(float(v) for v in feature_range)

    def _fit(self, x: Tensor) -> None:
        a, b = self.feature_range
        self.data_min_ = x.amin(dim=0)  # (F,)
        self.data_max_ = x.amax(dim=0)  # (F,)
        self.data_range_ = self.data_max_ - self.data_min_
        self.scale_ = (b - a) / _safe_scale(self.data_range_, self.data_range_ == 0)
        self.min_ = a - self.data_min_ * self.scale_

    def transform(self, x: Tensor) -> Tensor:
        """Scale ``x`` (N, F) with the fitted range."""
        x = self._check_fitted(x, "transform")
        return x * self._get("scale_", x) + self._get("min_", x)

    def inverse_transform(self, x: Tensor) -> Tensor:
        """Map scaled values (N, F) back to the original units."""
        x = self._check_fitted(x, "inverse_transform")
        return (x - self._get("min_", x)) / self._get("scale_", x)


class StandardScaler(_Scaler):
    """Standardize each column to zero mean and unit (population) variance: the z-score.

    Scikit-learn's ``StandardScaler``: ``x' = (x - mean_) / scale_`` with ``scale_ = sqrt(var_)``,
    ``var_`` the variance with ``ddof=0``; a constant column keeps scale 1 (it is only centred).

    Args:
        with_mean: subtract the mean (turn off to keep zeros at zero).
        with_std: divide by the standard deviation.

    Shape:
        input (N, F), output (N, F).

    Example:
        >>> StandardScaler().fit_transform(torch.tensor([[1.0], [3.0]])).flatten().tolist()
        [-1.0, 1.0]
    """

    def __init__(self, with_mean: bool = True, with_std: bool = True) -> None:
        super().__init__()
        for name, value in (("with_mean", with_mean), ("with_std", with_std)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        self.with_mean, self.with_std = with_mean, with_std

    def _fit(self, x: Tensor) -> None:
        self.mean_ = x.mean(dim=0)  # (F,)
        self.var_ = x.var(dim=0, unbiased=False)  # (F,) population variance, two-pass
        constant = x.amax(dim=0) == x.amin(dim=0)
        self.var_ = torch.where(constant, torch.zeros_like(self.var_), self.var_)
        self.scale_ = _safe_scale(self.var_.sqrt(), constant)
        if not self.with_std:
            self.scale_ = torch.ones_like(self.scale_)
        if not self.with_mean:
            self.mean_ = torch.zeros_like(self.mean_)

    def transform(self, x: Tensor) -> Tensor:
        """Standardize ``x`` (N, F) with the fitted mean and std."""
        x = self._check_fitted(x, "transform")
        return (x - self._get("mean_", x)) / self._get("scale_", x)

    def inverse_transform(self, x: Tensor) -> Tensor:
        """Map standardized values (N, F) back to the original units."""
        x = self._check_fitted(x, "inverse_transform")
        return x * self._get("scale_", x) + self._get("mean_", x)


class MaxAbsScaler(_Scaler):
    """Divide each column by its largest absolute training value, into ``[-1, 1]``.

    Scikit-learn's ``MaxAbsScaler``: ``x' = x / scale_`` with ``scale_ = max|x|`` (1 for an all-zero
    column). Nothing is shifted, so zeros stay zeros: the scaler for sparse features.

    Shape:
        input (N, F), output (N, F).

    Example:
        >>> MaxAbsScaler().fit_transform(torch.tensor([[-2.0], [1.0]])).flatten().tolist()
        [-1.0, 0.5]
    """

    def _fit(self, x: Tensor) -> None:
        self.max_abs_ = x.abs().amax(dim=0)  # (F,)
        self.scale_ = _safe_scale(self.max_abs_, self.max_abs_ == 0)

    def transform(self, x: Tensor) -> Tensor:
        """Divide ``x`` (N, F) by the fitted max-abs."""
        x = self._check_fitted(x, "transform")
        return x / self._get("scale_", x)

    def inverse_transform(self, x: Tensor) -> Tensor:
        """Map scaled values (N, F) back to the original units."""
        x = self._check_fitted(x, "inverse_transform")
        return x * self._get("scale_", x)
