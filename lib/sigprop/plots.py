"""The book's standard pictures, drawn from :mod:`sigprop.diagnostics` and :mod:`sigprop.train` records.

Colours: a configuration keeps one colour for a whole chapter. :func:`color_for` hands out the
colours of a fixed palette to labels in the order they are first asked for; depth inside one
configuration is shown with a sequential colour map (light = shallow, dark = deep).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from sigprop._validation import check_choice, check_int, check_number, check_type
from sigprop.diagnostics import LayerStats, UpdateRatio
from sigprop.train import History

__all__ = ["PALETTE", "STAT_LABELS", "color_for", "reset_colors", "depth_colors", "fixed_axes", "log_axis",
           "plot_histograms", "plot_depth_profile", "plot_training_curves", "plot_update_ratios"]

# Colour-blind-friendly (Okabe & Ito), then matplotlib's tab10 for overflow.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
           *plt.get_cmap("tab10").colors]
_assigned: dict[str, object] = {}

STAT_LABELS = {
    "activation_std": "activation std",
    "activation_mean": "activation mean",
    "activation_input_std": "across-input std of a unit",
    "grad_norm": "gradient norm ‖∂L/∂z‖",
    "grad_std": "gradient std",
    "weight_grad_norm": "weight-gradient norm ‖∂L/∂W‖",
    "weight_norm": "weight norm ‖W‖",
    "grad_data_ratio": "grad:data ratio std(∂L/∂W)/std(W)",
    "saturated": "fraction saturated",
    "dead": "fraction of dead units",
}


def color_for(label: str):
    """The colour of configuration ``label``: the same colour every time it is asked for.

    Example:
        >>> color_for("healthy") == color_for("healthy")
        True
    """
    check_type("label", label, str, "a str")
    if label not in _assigned:
        _assigned[label] = PALETTE[len(_assigned) % len(PALETTE)]
    return _assigned[label]


def reset_colors() -> None:
    """Forget the label-to-colour assignments (e.g. at the start of a chapter)."""
    _assigned.clear()


def depth_colors(n: int, cmap: str = "viridis") -> list:
    """``n`` colours from light (shallow) to dark (deep)."""
    n = check_int("n", n, minimum=1)
    return [plt.get_cmap(cmap)(x) for x in np.linspace(0.85, 0.1, n)]


def fixed_axes(ncols: int = 1, figsize: tuple[float, float] = (5.6, 3.2), *, left: float = 0.13,
               right: float = 0.97, bottom: float = 0.15, top: float = 0.86, wspace: float = 0.3):
    """A figure with ``ncols`` axes side by side at fixed margins: what an explorable figure redraws fast.

    ``layout="constrained"`` (or ``tight_layout``) measures every label to place the axes, on every
    redraw; fixed margins (``fig.subplots_adjust``) skip that, which roughly halves the cost of a live
    redraw of a small figure (``make bench`` measures it). Leave enough margin for the labels: the
    defaults suit one line of title and tick labels of a few characters.

    Args:
        ncols: axes in one row.
        figsize: the figure's size in inches.
        left, right, bottom, top: the axes' area, as fractions of the figure (``subplots_adjust``).
        wspace: the space between axes, as a fraction of an axes' width.

    Returns:
        ``(fig, ax)`` for one column, ``(fig, [ax1, ax2, ...])`` for several, as ``plt.subplots``.

    Example:
        >>> fig, (ax1, ax2) = fixed_axes(2, figsize=(8, 3))
        >>> plt.close(fig)
    """
    ncols = check_int("ncols", ncols, minimum=1)
    fig, axes = plt.subplots(1, ncols, figsize=figsize, squeeze=False)
    fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top, wspace=wspace)
    return fig, (axes[0, 0] if ncols == 1 else list(axes[0]))


def log_axis(ax: Axes, low: float, high: float, axis: str = "y", every: int = 1) -> Axes:
    """A log-scaled axis over fixed limits, with plain tick labels at powers of ten: fast to redraw.

    matplotlib's default log axis places its ticks anew on every draw and writes them as mathtext
    (``$10^{-6}$``), which it parses for each new figure; plain ``1e-6`` labels at fixed decades and
    no minor ticks cost a fraction of that. The limits stay fixed while a reader moves a slider, so
    curves can be compared by eye.

    Args:
        ax: the axes.
        low, high: the limits, positive (``low < high``); the ticks are the powers of ten between them.
        axis: ``"y"`` or ``"x"``.
        every: label every ``every``-th decade (2 for ``1e-4, 1e-2, 1, ...``).

    Example:
        >>> fig, ax = fixed_axes()
        >>> [t.get_text() for t in log_axis(ax, 1e-2, 1e2, every=2).get_yticklabels()]
        ['1e-2', '1', '1e2']
        >>> plt.close(fig)
    """
    low, high = check_number("low", low, positive=True), check_number("high", high, positive=True)
    if not low < high:
        raise ValueError(f"low must be below high, got low={low} and high={high}")
    check_choice("axis", axis, ("x", "y"))
    every = check_int("every", every, minimum=1)
    decades = range(math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9) + 1)
    ticks = [10.0**k for k in decades if k % every == 0]
    labels = ["1" if k == 0 else f"1e{k}" for k in decades if k % every == 0]
    which = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    (ax.set_ylim if axis == "y" else ax.set_xlim)(low, high)
    which.set_ticks(ticks, labels)
    which.set_minor_locator(NullLocator())
    return ax


def _axes(ax: Axes | None, figsize=(6, 4)) -> Axes:
    return plt.subplots(figsize=figsize, layout="constrained")[1] if ax is None else ax


def plot_histograms(stats: LayerStats, kind: str = "activation", layers: Sequence[str] | None = None,
                    bins: int = 60, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Overlaid per-layer histograms of the activations or of the gradients dL/dz.

    Args:
        stats: one probe's :class:`~sigprop.diagnostics.LayerStats`.
        kind: ``"activation"`` or ``"gradient"``.
        layers: which layers (default: all hidden layers, i.e. every layer but the output).
        bins: histogram bins, shared by all layers.
        ax: axes to draw on (a new figure when ``None``).
        title: the axes title.
    """
    check_choice("kind", kind, ("activation", "gradient"))
    samples = stats.activations if kind == "activation" else stats.gradients
    layers = list(stats.names[:-1] if len(stats.names) > 1 else stats.names) if layers is None else list(layers)
    if not layers:
        raise ValueError(f"layers is empty; expected some of {stats.names}")
    unknown = [name for name in layers if name not in samples]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; expected some of {stats.names}")
    ax = _axes(ax)
    values = np.concatenate([samples[name] for name in layers])
    lo, hi = np.percentile(values, [0.5, 99.5]) if values.size else (-1.0, 1.0)
    if lo == hi:
        lo, hi = lo - 1e-12, hi + 1e-12
    edges = np.linspace(lo, hi, bins + 1)
    for colour, name in zip(depth_colors(len(layers)), layers, strict=True):
        v = samples[name]
        ax.hist(np.clip(v, lo, hi), bins=edges, histtype="step", color=colour, linewidth=1.4,
                density=True, label=f"{name}: std {v.std():.2g}")
    ax.set_xlabel("activation value" if kind == "activation" else "gradient ∂L/∂z")
    ax.set_ylabel("density")
    ax.legend(fontsize="x-small", ncol=2 if len(layers) > 5 else 1)
    if title:
        ax.set_title(title)
    return ax


def plot_depth_profile(stats: Mapping[str, LayerStats], stat: str = "activation_std", logy: bool = True,
                       ax: Axes | None = None, title: str | None = None, hidden_only: bool = False) -> Axes:
    """One statistic against depth, one line per configuration.

    Args:
        stats: ``{label: LayerStats}``; each label keeps its :func:`color_for` colour.
        stat: an array attribute of :class:`LayerStats` (``"activation_std"``, ``"grad_norm"``, ...).
        logy: log-scale the vertical axis (the values usually span decades).
        ax: axes to draw on.
        title: the axes title.
        hidden_only: leave out the output layer.
    """
    if not stats:
        raise ValueError("stats is empty: pass {label: LayerStats}")
    ax = _axes(ax)
    for label, s in stats.items():
        if not hasattr(s, stat) or not isinstance(getattr(s, stat), np.ndarray):
            raise ValueError(f"unknown stat {stat!r}; expected one of {sorted(STAT_LABELS)}")
        y, x = getattr(s, stat), s.depth
        if hidden_only:
            y, x = y[:-1], x[:-1]
        ax.plot(x, y, marker="o", markersize=3, color=color_for(label), label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("layer (1 = closest to the input)")
    ax.set_ylabel(STAT_LABELS.get(stat, stat))
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def plot_training_curves(histories: Mapping[str, History], axes: Sequence[Axes] | None = None,
                         title: str | None = None, smooth: int = 10) -> Figure:
    """Training loss per step (log scale) and test accuracy per epoch, one colour per run.

    A run that diverged ends with a cross at the step where its loss became non-finite.

    Args:
        histories: ``{label: History}``.
        axes: two axes to draw on (a new figure when ``None``).
        title: the figure's title.
        smooth: width of the moving average applied to the step losses (1 = none).
    """
    if not histories:
        raise ValueError("histories is empty: pass {label: History}")
    smooth = check_int("smooth", smooth, minimum=1)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    else:
        fig = axes[0].figure
    ax_loss, ax_acc = axes
    for label, h in histories.items():
        colour = color_for(label)
        loss = np.asarray(h.loss, dtype=float)
        if loss.size:
            k = min(smooth, loss.size)
            smoothed = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax_loss.plot(np.arange(k, loss.size + 1), smoothed, color=colour, label=label)
        if h.diverged:
            ax_loss.plot([h.steps], [loss[-1] if loss.size else 1.0], marker="X", markersize=10,
                         color=colour, linestyle="none")
            ax_loss.annotate("diverged", (h.steps, loss[-1] if loss.size else 1.0), color=colour,
                             textcoords="offset points", xytext=(4, 4), fontsize="small")
        if h.test_accuracy:
            ax_acc.plot(np.arange(1, h.epochs + 1), h.test_accuracy, marker="o", markersize=3,
                        color=colour, label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step (mini-batch)")
    ax_loss.set_ylabel("training loss" + (f" ({smooth}-step mean)" if smooth > 1 else ""))
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_ylim(0, 1.02)
    if ax_acc.get_legend_handles_labels()[0]:
        ax_acc.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_update_ratios(history: History, ax: Axes | None = None, title: str | None = None,
                       smooth: int = 5) -> Axes:
    """Per-layer ``log10(update / data)`` over training steps, with the customary -3 reference.

    Args:
        history: a run trained with ``track_update_ratio=True``.
        ax: axes to draw on.
        title: the axes title.
        smooth: width of the moving average (1 = none).
    """
    if not history.update_ratio:
        raise ValueError("history has no update ratios: train with fit(..., track_update_ratio=True)")
    smooth = check_int("smooth", smooth, minimum=1)
    ax = _axes(ax)
    names = list(history.update_ratio)
    for colour, name in zip(depth_colors(len(names)), names, strict=True):
        r = np.asarray(history.update_ratio[name], dtype=float)
        r = np.where(np.isfinite(r), r, np.nan)
        k = max(1, min(smooth, r.size))
        y = np.convolve(r, np.ones(k) / k, mode="valid") if r.size else r
        ax.plot(np.arange(k, r.size + 1), y, color=colour, label=name, linewidth=1.2)
    ax.axhline(UpdateRatio.REFERENCE, color="grey", linestyle="--", linewidth=1)
    ax.annotate("1e-3 reference", (0, UpdateRatio.REFERENCE), textcoords="offset points", xytext=(2, 3),
                color="grey", fontsize="small")
    ax.set_xlabel("step (mini-batch)")
    ax.set_ylabel("log10( std(ΔW) / std(W) )")
    ax.legend(fontsize="x-small", ncol=2 if len(names) > 5 else 1)
    if title:
        ax.set_title(title)
    if not math.isfinite(np.nanmin(np.asarray(ax.get_ylim()))):
        ax.set_ylim(-8, 0)
    return ax
