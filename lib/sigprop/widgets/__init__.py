"""Explorable figures: sliders and dropdowns that redraw a matplotlib figure, live or in the built book.

One call turns a plotting function into a figure the reader can explore (used from chapter 0 on)::

    explore(plot_depth_profile, depth=[2, 5, 10, 20, 50], gain=(0.5, 2.0, 0.25), activation=["tanh", "relu"])

The plotting function is called with one keyword argument per control (every other parameter needs a
default, or bind it with ``functools.partial``) and draws one fresh figure, which it returns (a
``Figure``, or an ``Axes`` of it; ``None`` if it drew with pyplot on a figure it opened itself). The
figure is rendered to PNG and closed. Don't call ``plt.show()`` in it. For a fast live redraw use fixed
margins and fixed log axes (:func:`sigprop.plots.fixed_axes`, :func:`sigprop.plots.log_axis`).

Each keyword is a control (:func:`~sigprop.widgets.grid.make_control`): a list of numbers is a slider
over exactly those values, a ``(start, stop, step)`` tuple a slider over an inclusive range, a list of
strings or of booleans a dropdown. A control starts at the plotting function's default for it when
the default is among its values, otherwise at its first value.

The package has three parts: :mod:`~sigprop.widgets.grid` (the controls and one figure per
combination), :mod:`~sigprop.widgets.live` (ipywidgets and an LRU cache) and
:mod:`~sigprop.widgets.static` (self-contained HTML for the built book, and its size budget). Which
renderer :func:`explore` uses is set by the environment variable ``SIGPROP_WIDGETS``, read at each
call: ``live`` (or unset) in a notebook, ``static`` in the book build.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sigprop._validation import check_int
from sigprop.widgets.grid import Control, Grid, make_control
from sigprop.widgets.live import LiveExplorer
from sigprop.widgets.static import (
    FIGURE_BUDGET,
    PAGE_BUDGET,
    ExploreBudgetError,
    StaticExplorer,
    page_bytes,
    reset_page_budget,
)

__all__ = ["explore", "widgets_mode", "Control", "make_control", "Grid", "LiveExplorer", "StaticExplorer",
           "ExploreBudgetError", "FIGURE_BUDGET", "PAGE_BUDGET", "page_bytes", "reset_page_budget"]

_MODES = ("live", "static")


def widgets_mode() -> str:
    """``'live'`` or ``'static'``, from the environment variable ``SIGPROP_WIDGETS`` (default live)."""
    mode = os.environ.get("SIGPROP_WIDGETS", "").strip().lower() or "live"
    if mode not in _MODES:
        raise ValueError(f"SIGPROP_WIDGETS must be 'live' or 'static', got {os.environ['SIGPROP_WIDGETS']!r}")
    return mode


def explore(plot_fn: Callable, /, *, title: str | None = None, dpi: int = 80, cache_size: int = 256,
            **controls) -> LiveExplorer | StaticExplorer:
    """Make a figure explorable: one slider or dropdown per keyword, live in Jupyter, static in the book.

    Args:
        plot_fn: draws one figure for one combination of values, called with the controls as keywords;
            returns the ``Figure`` (or an ``Axes`` of it, or ``None`` after drawing with pyplot).
        title: shown above the controls, and the figure's name in error messages (default: the
            function's name).
        dpi: resolution the figure is rendered at, live and static (80 keeps a 6x3.5 in figure near
            10 kB per static image).
        cache_size: how many rendered combinations the live figure keeps (LRU; ~40 kB each).
        **controls: ``name=[values]`` for a slider (numbers) or a dropdown (strings or booleans), or
            ``name=(start, stop, step)`` for a slider over an inclusive range.

    Returns:
        A :class:`LiveExplorer` (an ipywidgets box; its first image is drawn here) or a
        :class:`StaticExplorer` (HTML; every image is drawn here, so an over-budget grid fails in this
        cell with an :class:`ExploreBudgetError`). Both display themselves.

    Example:
        >>> def plot_gain(depth=10, gain=1.0):
        ...     fig, ax = plt.subplots(figsize=(5, 3))
        ...     ax.semilogy(range(depth + 1), [gain**k for k in range(depth + 1)])
        ...     return fig
        >>> explore(plot_gain, depth=[5, 10, 20], gain=(0.5, 2.0, 0.25))  # doctest: +SKIP
    """
    mode = widgets_mode()
    check_int("cache_size", cache_size, minimum=1)
    grid = Grid(plot_fn, {name: make_control(name, spec) for name, spec in controls.items()}, title=title,
                dpi=dpi)
    return StaticExplorer(grid) if mode == "static" else LiveExplorer(grid, cache_size=cache_size)
