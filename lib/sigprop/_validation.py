"""One convention for bad arguments, written once: ``TypeError`` for a wrong type, ``ValueError`` for a wrong value.

Every public function of the library checks its arguments through these helpers, so the same mistake
raises the same exception with the same wording everywhere: the message names the argument, says what
was expected, and shows what arrived (``depth must be an int, got float 2.0``). A ``bool`` is never
accepted as a number, although Python makes it an ``int``: ``depth=True`` is a bug, not a 1.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["check_int", "check_number", "check_choice", "check_type", "check_generator", "check_tensor"]


def _got(value: Any) -> str:
    """How a message shows what arrived: its type, and its value when that is short."""
    text = repr(value)
    return f"{type(value).__name__} {text}" if len(text) <= 40 else type(value).__name__


def check_type(name: str, value: Any, types: type | tuple[type, ...], expected: str) -> Any:
    """``value`` if it is an instance of ``types``, else ``TypeError`` saying ``expected``."""
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {expected}, got {_got(value)}")
    return value


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None, *,
              optional: bool = False) -> int | None:
    """An integer (Python or NumPy, never a bool) within ``[minimum, maximum]``; also ``None`` if ``optional``.

    Example:
        >>> check_int("depth", 3, minimum=1)
        3
        >>> check_int("dim", None, optional=True) is None
        True
    """
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int{' or None' if optional else ''}, got {_got(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def check_number(name: str, value: Any, minimum: float | None = None, maximum: float | None = None, *,
                 positive: bool = False, below_maximum: bool = False, allow_inf: bool = False) -> float:
    """A real number (never a bool), finite unless ``allow_inf``, ``>= minimum`` (``> 0`` if ``positive``),
    ``<= maximum`` (``< maximum`` if ``below_maximum``).

    Example:
        >>> check_number("lr", 0.1, positive=True)
        0.1
        >>> check_number("beta", 0.99, positive=True, maximum=1.0, below_maximum=True)
        0.99
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_got(value)}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and (value >= maximum if below_maximum else value > maximum):
        raise ValueError(f"{name} must be {'below' if below_maximum else 'at most'} {maximum}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """One of the names in ``choices``: ``TypeError`` for a non-string, ``ValueError`` for an unknown name.

    Example:
        >>> check_choice("mode", "fan_in", ("fan_in", "fan_out"))
        'fan_in'
    """
    choices = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}, got {_got(value)}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices}")
    return value


def check_generator(value: Any, name: str = "generator") -> torch.Generator | None:
    """A ``torch.Generator`` or ``None``."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {_got(value)}")
    return value


def check_tensor(name: str, value: Any) -> torch.Tensor:
    """A ``torch.Tensor``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_got(value)}")
    return value
