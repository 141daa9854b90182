"""Where and how reproducibly the chapters run: device choice, seeding, and the experiment-size knob.

Every chapter's first cell calls :func:`seed_everything` and :func:`get_device` once; library samplers
take the returned ``torch.Generator`` so that a seeded CPU run is repeatable bit for bit.

Environment variables (read at call time, so a reader can set them in the notebook before calling):

- ``SIGPROP_DEVICE``: force a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
- ``SIGPROP_SCALE``: ``small`` (default; what the book is built with) or ``large`` (deeper, wider,
  longer experiments for a reader with a GPU). Chapters ask :func:`by_scale` for each size.
- ``SIGPROP_CHECK_CLAIMS``: ``1`` where the book's numbers are produced (the book build and the
  nbval run set it); the chapters' hidden checks of the numbers their text quotes run only then
  (:func:`claim_checks_enabled`).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from sigprop._validation import check_int

__all__ = [
    "get_device", "available_devices", "describe_device", "seed_everything", "experiment_scale", "by_scale", "SCALES",
    "claim_checks_enabled",
]

SCALES = ("small", "large")


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Pick the best available device: CUDA, then Apple MPS, then CPU.

    Args:
        prefer: a device to use instead of the automatic choice. When ``None``, the environment
            variable ``SIGPROP_DEVICE`` is honoured if set.

    Returns:
        The ``torch.device`` to put models and data on.

    Example:
        >>> get_device("cpu")
        device(type='cpu')
    """
    if prefer is None:
        prefer = os.environ.get("SIGPROP_DEVICE") or None
    if prefer is not None:
        if not isinstance(prefer, (str, torch.device)):
            raise TypeError(f"prefer must be a str or torch.device, got {type(prefer).__name__}")
        try:
            device = torch.device(prefer)
        except RuntimeError as err:
            raise ValueError(f"expected a device such as 'cpu', 'cuda' or 'mps', got {prefer!r}") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {prefer!r} was requested but CUDA is not available here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {prefer!r} was requested but Apple MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_devices() -> list[str]:
    """Every device kind usable here, CPU first: what the tests parametrize over.

    Example:
        >>> available_devices()[0]
        'cpu'
    """
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def describe_device(device: str | torch.device | None = None) -> str:
    """One line for a chapter's header: the device, its name and the torch version.

    Example:
        >>> describe_device("cpu").startswith("cpu")
        True
    """
    device = get_device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        gib = torch.cuda.get_device_properties(index).total_memory / 2**30
        what = f"cuda:{index} ({name}, {gib:.0f} GiB)"
    elif device.type == "mps":
        what = "mps (Apple GPU)"
    else:
        what = f"cpu ({torch.get_num_threads()} threads)"
    return f"{what} | torch {torch.__version__} | scale={experiment_scale()}"


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch at once and return a CPU ``torch.Generator`` seeded the same way.

    Pass the generator to the library's samplers (``generator=``) so their draws do not depend on
    what else consumed the global stream. On CPU two runs after the same call are identical bit for bit.

    Args:
        seed: a non-negative integer.

    Example:
        >>> g = seed_everything(0)
        >>> torch.randn(2, generator=g).shape
        torch.Size([2])
    """
    seed = check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def experiment_scale() -> str:
    """The size of the chapters' experiments: ``"small"`` (the default) or ``"large"``.

    Set ``SIGPROP_SCALE=large`` (or ``os.environ["SIGPROP_SCALE"] = "large"`` in the first cell)
    to run deeper, wider and longer versions on a GPU.
    """
    scale = os.environ.get("SIGPROP_SCALE", "small").strip().lower() or "small"
    if scale not in SCALES:
        raise ValueError(f"SIGPROP_SCALE must be one of {SCALES}, got {scale!r}")
    return scale


def by_scale(small, large):
    """Return ``small`` or ``large`` according to :func:`experiment_scale`.

    Example:
        >>> by_scale(small=10, large=100) in (10, 100)
        True
    """
    return large if experiment_scale() == "large" else small


def claim_checks_enabled() -> bool:
    """Whether a chapter's hidden claim checks should run: only where the book's numbers are produced.

    Every number a chapter's text quotes is asserted in a hidden cell, ``if claim_checks_enabled():
    assert ...``. The numbers come from the small setting on the build machine's CPU; on another
    torch version, a GPU, or at ``SIGPROP_SCALE=large`` a number may move a little, and a student in
    Colab or Binder would meet an ``AssertionError`` they cannot act on. So the checks run only when
    ``SIGPROP_CHECK_CLAIMS=1`` (set by the book build, ``book/_ext/sigprop_book.py``, and by
    ``make test``'s nbval run) and the scale is ``"small"``.

    Example:
        >>> isinstance(claim_checks_enabled(), bool)
        True
    """
    return os.environ.get("SIGPROP_CHECK_CLAIMS", "").strip() == "1" and experiment_scale() == "small"
