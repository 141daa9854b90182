"""Data the chapters train on, all of it local: nothing is downloaded at run time.

- :func:`load_digits_split`: scikit-learn's bundled handwritten digits (1,797 real 8x8 images,
  10 classes; Alpaydin & Kaynak 1998) as tensors, standardized with the training set's statistics,
  split once with a fixed seed.
- :func:`make_spirals`: interleaved 2-D spirals, a small problem that needs depth (chapters 0-3).
- :func:`make_multiscale_regression`: several regression targets whose scales differ by orders of
  magnitude, for the output-scaling experiments of chapter 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sigprop._validation import check_generator, check_int, check_number

__all__ = ["DataSplit", "load_digits_split", "make_spirals", "make_multiscale_regression"]


@dataclass
class DataSplit:
    """A train/test split of one dataset, as tensors on one device.

    Shape:
        x_train: (N_train, *features), y_train: (N_train,) class indices or (N_train, T) targets;
        likewise for the test set.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int | None = None
    name: str = ""

    @property
    def in_features(self) -> int:
        """Number of input features of one sample (the product of its non-batch dims)."""
        return math.prod(self.x_train.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> DataSplit:
        """Copy the split to ``device``; ``dtype`` applies to the inputs (labels keep theirs)."""
        return DataSplit(
            self.x_train.to(device=device, dtype=dtype),
            self.y_train.to(device=device),
            self.x_test.to(device=device, dtype=dtype),
            self.y_test.to(device=device),
            self.num_classes,
            self.name,
        )

    def subset(self, n_train: int, generator: torch.Generator | None = None) -> DataSplit:
        """A smaller training set of ``n_train`` samples drawn without replacement; the same test set.

        The samples are the first ``n_train`` of ``torch.randperm(N_train, generator=generator)``
        (drawn on the CPU, so a seeded generator picks the same samples on every device).

        Args:
            n_train: how many training samples to keep, 1..N_train.
            generator: random source of the choice; ``None`` means a generator seeded with 0.

        Example:
            >>> small = load_digits_split().subset(100, generator=torch.Generator().manual_seed(1))
            >>> len(small.x_train), len(small.x_test)
            (100, 449)
        """
        n_train = check_int("n_train", n_train, minimum=1, maximum=len(self.x_train))
        check_generator(generator)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        idx = torch.randperm(len(self.x_train), generator=generator)[:n_train].to(self.device)
        return DataSplit(self.x_train[idx], self.y_train[idx], self.x_test, self.y_test, self.num_classes,
                         f"{self.name}, {n_train} training samples")

    def __repr__(self) -> str:
        return (f"DataSplit({self.name!r}: train {tuple(self.x_train.shape)}, test {tuple(self.x_test.shape)}, "
                f"classes={self.num_classes}, device={self.device})")


def _check_fraction(test_fraction: float) -> None:
    check_number("test_fraction", test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")


def _test_size(n: int, test_fraction: float) -> int:
    n_test = int(round(n * test_fraction))
    if not 0 < n_test < n:
        raise ValueError(f"test_fraction={test_fraction} of {n} samples leaves an empty "
                         f"{'test' if n_test == 0 else 'training'} set; use more samples or another fraction")
    return n_test


def _split_indices(n: int, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    # Its own generator: the split never depends on what else consumed random numbers.
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = _test_size(n, test_fraction)
    return perm[n_test:], perm[:n_test]


def load_digits_split(
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    test_fraction: float = 0.25,
    standardize: bool = True,
    image: bool = False,
    seed: int = 0,
) -> DataSplit:
    """The 8x8 handwritten digits bundled with scikit-learn, split and (by default) standardized.

    Standardization uses the training set's per-pixel mean and standard deviation,
    ``x' = (x - mean_train) / std_train``, with pixels that are constant in training (the border)
    left at zero. With ``standardize=False`` pixels keep their raw range 0..16, which chapter 2
    uses to show why inputs should be standardized.

    Args:
        device: where the tensors live (default CPU).
        dtype: floating dtype of the inputs.
        test_fraction: share of the 1,797 images held out for testing.
        standardize: standardize each pixel with training statistics.
        image: return inputs as images ``(N, 1, 8, 8)`` for convolutional models, else ``(N, 64)``.
        seed: seed of the fixed train/test permutation.

    Shape:
        x_train: (N_train, 64) or (N_train, 1, 8, 8); y_train: (N_train,) int64 in [0, 10).

    Example:
        >>> split = load_digits_split()
        >>> split.x_train.shape, split.num_classes
        (torch.Size([1348, 64]), 10)
    """
    from sklearn.datasets import load_digits

    _check_fraction(test_fraction)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    check_int("seed", seed, minimum=0)
    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float64)  # (N, 64), values 0..16
    y = torch.as_tensor(digits.target, dtype=torch.int64)  # (N,)
    train, test = _split_indices(len(x), test_fraction, seed)
    x_train, x_test = x[train], x[test]
    if standardize:
        mean = x_train.mean(dim=0)
        std = x_train.std(dim=0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))  # constant pixels: centre only
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if image:
        x_train = x_train.reshape(-1, 1, 8, 8)  # (N, C=1, H=8, W=8)
        x_test = x_test.reshape(-1, 1, 8, 8)  # (N, C=1, H=8, W=8)
    split = DataSplit(x_train, y[train], x_test, y[test], num_classes=10,
                      name="digits" + ("" if standardize else " (raw)"))
    return split.to(device, dtype)


def make_spirals(
    n_per_class: int = 200,
    num_classes: int = 3,
    noise: float = 0.1,
    turns: float = 1.0,
    test_fraction: float = 0.25,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> DataSplit:
    """Interleaved 2-D spirals, one arm per class: a small problem a linear model cannot solve.

    Point ``i`` of class ``k`` sits at radius ``r = i / n`` and angle
    ``theta = 2 pi (turns * r + k / K) + noise * eps`` with ``eps ~ N(0, 1)``.

    Args:
        n_per_class: points per arm.
        num_classes: number of arms K (at least 2).
        noise: standard deviation of the angular noise, in radians.
        turns: how many times each arm winds around the origin.
        test_fraction: share held out for testing.
        generator: random source for the noise and the split.
        device: where the tensors live.

    Shape:
        x_train: (N_train, 2), y_train: (N_train,) int64 in [0, K).

    Example:
        >>> make_spirals(50, 3, generator=torch.Generator().manual_seed(0)).x_train.shape
        torch.Size([112, 2])
    """
    check_int("n_per_class", n_per_class, minimum=2)
    check_int("num_classes", num_classes, minimum=2)
    check_number("noise", noise, minimum=0.0)
    check_number("turns", turns)
    _check_fraction(test_fraction)
    check_generator(generator)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    r = torch.linspace(0.05, 1.0, n_per_class, dtype=torch.float64).repeat(num_classes)  # (K*n,)
    label = torch.arange(num_classes).repeat_interleave(n_per_class)  # (K*n,)
    theta = 2 * math.pi * (turns * r + label / num_classes)
    theta = theta + noise * torch.randn(theta.shape, generator=generator, dtype=torch.float64)
    x = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=1)  # (K*n, 2)
    perm = torch.randperm(len(x), generator=generator)
    n_test = _test_size(len(x), test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    split = DataSplit(x[train], label[train], x[test], label[test], num_classes=num_classes, name="spirals")
    return split.to(device, torch.float32)


def make_multiscale_regression(
    n_samples: int = 1000,
    in_features: int = 8,
    scales: tuple[float, ...] = (1.0, 100.0, 10_000.0),
    noise: float = 0.1,
    test_fraction: float = 0.25,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> DataSplit:
    """Regression with several targets whose scales differ by orders of magnitude.

    Each target ``t`` is a smooth nonlinear function of the inputs, rescaled to standard deviation
    ``scales[t]``, plus Gaussian noise of relative size ``noise``:
    ``y_t = scales[t] * (f_t(x) + noise * eps) / std(f_t)`` with ``x ~ N(0, I)``. Unweighted sums of
    the targets' squared errors are dominated by the largest scale, which is the point.

    Args:
        n_samples: total number of samples before the split.
        in_features: input dimension.
        scales: the standard deviation of each target (one target per entry).
        noise: noise standard deviation relative to each target's signal.
        test_fraction: share held out for testing.
        generator: random source.
        device: where the tensors live.

    Shape:
        x_train: (N_train, in_features), y_train: (N_train, T) with T = len(scales).

    Example:
        >>> make_multiscale_regression(100, generator=torch.Generator().manual_seed(0)).y_train.shape
        torch.Size([75, 3])
    """
    check_int("n_samples", n_samples, minimum=4)
    check_int("in_features", in_features, minimum=1)
    if len(scales) == 0:
        raise ValueError("scales must be a non-empty sequence of positive numbers, got an empty one")
    for scale in scales:
        check_number("each entry of scales", scale, positive=True)
    check_number("noise", noise, minimum=0.0)
    _check_fraction(test_fraction)
    check_generator(generator)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    x = torch.randn(n_samples, in_features, generator=generator, dtype=torch.float64)
    targets = []
    for scale in scales:
        w = torch.randn(in_features, generator=generator, dtype=torch.float64) / math.sqrt(in_features)
        v = torch.randn(in_features, generator=generator, dtype=torch.float64) / math.sqrt(in_features)
        signal = torch.sin(2 * x @ w) + 0.5 * (x @ v) ** 2  # (N,) a different nonlinear map per target
        signal = (signal - signal.mean()) / signal.std()
        eps = torch.randn(n_samples, generator=generator, dtype=torch.float64)
        targets.append(scale * (signal + noise * eps))
    y = torch.stack(targets, dim=1).to(torch.float32)  # (N, T)
    train, test = _split_indices(n_samples, test_fraction, int(torch.randint(2**31, (1,), generator=generator)))
    split = DataSplit(x[train], y[train], x[test], y[test], num_classes=None, name="multiscale regression")
    return split.to(device, torch.float32)
