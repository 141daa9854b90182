"""The grid of an explorable figure: its controls, their values, and one figure drawn per combination.

Both renderers share this: :mod:`.static` draws every combination into the page, :mod:`.live` draws
the ones the reader asks for. Nothing here imports ipywidgets.
"""

from __future__ import annotations

import inspect
import io
import itertools
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sigprop._validation import check_number

__all__ = ["Control", "make_control", "Grid"]


def format_value(value) -> str:
    """What the reader sees for a value: repr of a float is the shortest string that round-trips."""
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Control:
    """One control of an explorable figure: its name, its values in order, and how it is shown.

    Args:
        name: the plotting function's keyword this control feeds.
        values: the values it can take, in slider order.
        kind: ``"slider"`` for numbers, ``"dropdown"`` for strings or booleans.
    """

    name: str
    values: tuple
    kind: str

    @property
    def labels(self) -> tuple[str, ...]:
        """What the reader sees for each value, live and static alike."""
        return tuple(format_value(v) for v in self.values)


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _decimal(x) -> Decimal:
    return Decimal(int(x)) if isinstance(x, numbers.Integral) else Decimal(repr(float(x)))


def _range_values(name: str, spec: tuple) -> tuple:
    if len(spec) != 3 or not all(_is_number(x) for x in spec):
        raise TypeError(f"control {name!r}: a range must be a (start, stop, step) tuple of three numbers, "
                        f"got {spec!r}; for a dropdown or a list of values pass a list")
    start, stop, step = spec
    if not step > 0:
        raise ValueError(f"control {name!r}: step must be positive (sliders run from low to high), "
                         f"got step {step!r} in {spec!r}")
    if not start < stop:
        raise ValueError(f"control {name!r}: a range needs start < stop, got {spec!r}; "
                         "for a fixed value bind it with functools.partial")
    d_start, d_stop, d_step = _decimal(start), _decimal(stop), _decimal(step)
    count = (d_stop - d_start) / d_step  # exact in decimal: (2.0 - 0.5) / 0.25 = 6, not 5.999...
    if count != count.to_integral_value():
        raise ValueError(f"control {name!r}: step {step!r} does not divide the range from {start!r} to "
                         f"{stop!r} ({count:.4g} steps); pick a step that does, or pass the values as a list")
    convert = int if all(isinstance(x, numbers.Integral) for x in spec) else float
    return tuple(convert(d_start + i * d_step) for i in range(int(count) + 1))


def make_control(name: str, spec) -> Control:
    """Turn one keyword of :func:`sigprop.widgets.explore` into a :class:`Control`.

    Args:
        name: the keyword.
        spec: a list of numbers (a slider over exactly those values), a list of strings or of booleans
            (a dropdown), or a ``(start, stop, step)`` tuple (a slider over an inclusive range, computed
            in decimal so that ``(0.5, 2.0, 0.25)`` gives exactly 0.5, 0.75, ..., 2.0).

    Example:
        >>> make_control("gain", (0.5, 2.0, 0.25)).values
        (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    """
    if isinstance(spec, tuple):
        return Control(name, _range_values(name, spec), "slider")
    if isinstance(spec, (list, range)) or type(spec).__name__ == "ndarray":
        values = list(spec.tolist() if hasattr(spec, "tolist") else spec)
    else:
        raise TypeError(f"control {name!r}: expected a list of values or a (start, stop, step) tuple, "
                        f"got {type(spec).__name__} {spec!r}")
    if not values:
        raise ValueError(f"control {name!r}: expected at least one value, got an empty list")
    if all(_is_number(v) for v in values):
        # numpy scalars -> int/float, so labels and cache keys are the plain Python values.
        values = [int(v) if isinstance(v, numbers.Integral) else float(v) for v in values]
        kind = "slider"
    elif all(isinstance(v, str) for v in values) or all(isinstance(v, bool) for v in values):
        kind = "dropdown"
    else:
        kinds = sorted({type(v).__name__ for v in values})
        raise TypeError(f"control {name!r}: expected all numbers (a slider) or all strings or all booleans "
                        f"(a dropdown), got a mix of {', '.join(kinds)}: {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"control {name!r}: values must be distinct, got {values!r}")
    return Control(name, tuple(values), kind)


def _start_value(c: Control, default):
    """The plotting function's default when it is one of the control's values, else the first value."""
    for v in c.values:
        try:
            if (type(default) is type(v) or (_is_number(default) and _is_number(v))) and bool(default == v):
                return v
        except (TypeError, ValueError):  # e.g. an array default: not a grid value
            return c.values[0]
    return c.values[0]


def figure_name(plot_fn) -> str:
    fn = getattr(plot_fn, "func", plot_fn)  # see through functools.partial
    return getattr(fn, "__name__", type(fn).__name__)


def _defaults(plot_fn, controls: dict[str, Control], name: str) -> dict[str, Any]:
    """Check every control is a keyword of ``plot_fn`` and every other parameter has a default."""
    try:
        params = inspect.signature(plot_fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature: nothing to check
        return {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    keywords = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key in controls:
        if key not in keywords and not takes_any:
            raise TypeError(f"{name}() has no keyword {key!r} for a control; "
                            f"it takes {sorted(keywords) or 'none'}")
    for pname, p in params.items():
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and pname not in controls:
            raise TypeError(f"{name}() needs {pname!r}, which has no control and no default; "
                            "give it a control or bind it with functools.partial")
    return {n: p.default for n, p in keywords.items() if p.default is not p.empty}


class Grid:
    """A plotting function and the grid of its controls' values.

    Attributes:
        plot_fn: draws one figure for one combination, called with the controls as keywords.
        controls: name -> :class:`Control`, in the order of :func:`sigprop.widgets.explore`'s keywords.
        initial: the starting combination (each control at the function's default when that is on the
            grid, else at its first value).
        name: the figure's name in messages (its title, or the function's name).
        title: shown above the controls, or ``None``.
        dpi: the resolution of every image.
    """

    def __init__(self, plot_fn: Callable, controls: dict[str, Control], *, title: str | None = None,
                 dpi: float = 80):
        if not callable(plot_fn):
            raise TypeError(f"explore() expected a plotting function, got {type(plot_fn).__name__}")
        if not controls:
            raise ValueError("explore() expected at least one control, e.g. depth=[2, 5, 10]; got none")
        self.dpi = check_number("dpi", dpi, positive=True)
        self.plot_fn, self.controls, self.title = plot_fn, controls, title
        self.name = title or figure_name(plot_fn)
        defaults = _defaults(plot_fn, controls, figure_name(plot_fn))
        self.initial = {k: _start_value(c, defaults.get(k)) for k, c in controls.items()}

    @property
    def size(self) -> int:
        """How many combinations the controls span."""
        size = 1
        for c in self.controls.values():
            size *= len(c.values)
        return size

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination, in row-major order over the controls (the last control varies fastest)."""
        combos = itertools.product(*(c.values for c in self.controls.values()))
        return [dict(zip(self.controls, combo, strict=True)) for combo in combos]

    def flat_index(self, values: dict[str, Any]) -> int:
        """The position of a combination in :meth:`combinations`."""
        flat = 0
        for c in self.controls.values():
            flat = flat * len(c.values) + c.values.index(values[c.name])
        return flat

    def draw(self, **values) -> bytes:
        """Call the plotting function with ``values`` and return its figure as PNG bytes.

        The function returns a ``Figure``, an ``Axes`` of it, or ``None`` after drawing with pyplot on
        a figure it opened. Every figure the call opened is closed afterwards, so none pile up.
        """
        import matplotlib.pyplot as plt
        from matplotlib.axes import Axes
        from matplotlib.figure import Figure

        before = set(plt.get_fignums())
        fn = figure_name(self.plot_fn)
        try:
            result = self.plot_fn(**values)
            if isinstance(result, Axes):
                result = result.figure
            if result is None:
                opened = sorted(set(plt.get_fignums()) - before)
                if not opened:
                    raise TypeError(f"{fn}() returned None and opened no new figure; return the Figure it draws")
                result = plt.figure(opened[-1])
            if not isinstance(result, Figure):
                raise TypeError(f"{fn}() must return a matplotlib Figure, an Axes or None, "
                                f"got {type(result).__name__}")
            buf = io.BytesIO()
            # compress_level 1: encoding is a few ms instead of ~15; static images are re-encoded anyway.
            result.savefig(buf, format="png", dpi=self.dpi, pil_kwargs={"compress_level": 1})
            return buf.getvalue()
        finally:
            for num in set(plt.get_fignums()) - before:  # every figure this call opened, and only those
                plt.close(num)

    def describe(self, values: dict[str, Any]) -> str:
        """``"name: depth = 10, gain = 1.0"``: the image's alt text."""
        return f"{self.name}: " + ", ".join(f"{k} = {format_value(v)}" for k, v in values.items())
