"""Explorable figures: sliders and dropdowns that redraw a matplotlib figure, live or in the built book.

One call turns a plotting function into a figure the reader can explore (used from chapter 0 on)::

    explore(plot_depth_profile, depth=[2, 5, 10, 20, 50], gain=(0.5, 2.0, 0.25), activation=["tanh", "relu"])

The plotting function's contract: it is called with one keyword argument per control (every other
parameter needs a default, or bind it with ``functools.partial``) and draws one figure, which it
returns (a ``Figure``, or an ``Axes`` of it). Returning ``None`` is allowed when it drew with pyplot
on a figure that it opened itself (``plt.plot`` with no figure open opens one). The helper renders that
figure to PNG and closes it, so figures never pile up. Draw a fresh figure on each call.

Each keyword is a control:

- a list of numbers, ``[2, 5, 10]``: a slider over exactly those values;
- a ``(start, stop, step)`` tuple, ``(0.5, 2.0, 0.25)``: a slider over ``start, start + step, ..., stop``,
  stop included; computed in decimal, so that gives exactly 0.5, 0.75, ..., 2.0 (7 values, no drift);
- a list of strings (or of booleans), ``["tanh", "relu"]``: a dropdown.

A control starts at the plotting function's default for it when the default is among its values,
otherwise at its first value. ``title``, ``dpi``, ``cache_size`` and ``prefetch`` are options, not
controls (see :func:`explore`).

Where it runs is set by the environment variable ``SIGPROP_WIDGETS``, read when ``explore`` is called:

- ``live`` (or unset): Jupyter, JupyterLab, Colab, Binder. Core ipywidgets controls (a
  ``SelectionSlider`` with ``continuous_update=False``, so dragging sends one redraw on release
  rather than a backlog, and a ``Dropdown``) above an ``ipywidgets.Image`` whose PNG bytes are
  replaced in place: no flicker, no ipympl. Rendered images are kept in a bounded LRU cache, one per
  combination. After the reader's first change, while the kernel is idle, the other combinations are
  drawn ahead, nearest first (one step along the control just moved, then along the others, then two
  steps...), one per event-loop turn so that a new change waits for one figure at most; a figure
  whose cold redraw is slow still answers the next step at once.
- ``static``: set by ``book/_ext/sigprop_book.py`` when the book is built; the kernels that myst-nb
  starts inherit it. The figure is drawn for every combination on the grid and emitted as one
  self-contained ``text/html`` output (what ``IPython.display.HTML`` would send, and myst-nb puts in
  the page as is): ``<input type=range>`` sliders with value labels and ``<select>`` dropdowns, the
  same labels and values as live, images as base64 palette PNGs, a few lines of plain JavaScript that
  swap them. No kernel, no network. The root element has class ``sigprop-explore``.

Budget in the built book: one figure may take at most :data:`FIGURE_BUDGET` bytes of HTML (1.5 MB)
and one page (one notebook, one kernel) at most :data:`PAGE_BUDGET` (6 MB). The size is estimated
from the first image before the rest are drawn, and the real total is checked as they are, so an
oversized grid fails within seconds with an :class:`ExploreBudgetError` naming the figure (its
``title`` or the function's name). Shrink it with fewer values, a smaller ``figsize`` or a lower
``dpi``.

Latency (live): a cold redraw costs the plotting function plus ``savefig``. It is measured by
``tests/test_widgets.py::test_live_redraw_latency`` (set a slider's ``value``, time until the
``Image`` holds the new bytes; ``pytest tests/test_widgets.py -k latency -s`` prints the median) and,
through a real kernel's comm messages, by ``test_live_round_trip_through_a_real_kernel``. On the
2-core build machine, at the default ``dpi=80``: a small line plot about 60-70 ms cold; chapter 0's
two-log-axes figure with ``layout="constrained"`` about 180-250 ms cold (120 ms with fixed margins
instead of the constrained layout); any prefetched or cached combination about 5 ms through the
kernel. matplotlib re-parses mathtext tick labels for every new figure; sharing one parser (see
:func:`_share_mathtext_parser`) makes log-axis figures about 1.5x faster. Don't call ``plt.show()``
in the plotting function.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import html
import inspect
import io
import itertools
import json
import numbers
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["explore", "Explorer", "Control", "make_control", "widgets_mode", "ExploreBudgetError",
           "FIGURE_BUDGET", "PAGE_BUDGET", "page_bytes", "reset_page_budget"]

FIGURE_BUDGET = 1_500_000  # bytes of HTML one explorable figure may add to a built page
PAGE_BUDGET = 6_000_000  # bytes all explorable figures of one page (one notebook) may add together
_ESTIMATE_SLACK = 1.2  # fail before drawing the grid only when first image x grid size is clearly over
_MODES = ("live", "static")

_page_total = 0  # bytes emitted so far by this kernel, i.e. this page of the book
_figure_count = 0  # numbers the figures of this page, for unique element ids


class ExploreBudgetError(ValueError):
    """An explorable figure would make the built page too large."""


def widgets_mode() -> str:
    """``'live'`` or ``'static'``, from the environment variable ``SIGPROP_WIDGETS`` (default live)."""
    mode = os.environ.get("SIGPROP_WIDGETS", "").strip().lower() or "live"
    if mode not in _MODES:
        raise ValueError(f"SIGPROP_WIDGETS must be 'live' or 'static', got {os.environ['SIGPROP_WIDGETS']!r}")
    return mode


def page_bytes() -> int:
    """Bytes of explorable-figure HTML this kernel (one page of the book) has emitted so far."""
    return _page_total


def reset_page_budget() -> None:
    """Start a new page's count (the build starts one kernel per page; tests call this)."""
    global _page_total, _figure_count
    _page_total, _figure_count = 0, 0


def _format_value(value) -> str:
    # repr of a float is the shortest string that round-trips: 0.75 -> '0.75', 1e-05 -> '1e-05'.
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
        return tuple(_format_value(v) for v in self.values)


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _as_python_number(x):
    # numpy scalars -> int/float, so labels and cache keys are the plain Python values.
    return int(x) if isinstance(x, numbers.Integral) else float(x)


def _decimal(x) -> Decimal:
    return Decimal(int(x)) if isinstance(x, numbers.Integral) else Decimal(repr(float(x)))


def _range_values(name: str, spec: tuple) -> tuple:
    if len(spec) != 3 or not all(_is_number(x) for x in spec):
        raise TypeError(f"control {name!r}: a range must be a (start, stop, step) tuple of three numbers, "
                        f"got {spec!r}; for a dropdown or a list of values pass a list")
    start, stop, step = spec
    if step == 0:
        raise ValueError(f"control {name!r}: step must be positive, got step 0 in {spec!r}")
    if step < 0:
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
    integral = all(isinstance(x, numbers.Integral) for x in spec)
    convert = int if integral else float
    return tuple(convert(d_start + i * d_step) for i in range(int(count) + 1))


def make_control(name: str, spec) -> Control:
    """Turn one keyword of :func:`explore` into a :class:`Control`; see the module docstring.

    Args:
        name: the keyword.
        spec: a list of numbers, strings or booleans, or a ``(start, stop, step)`` tuple.

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
        values, kind = [_as_python_number(v) for v in values], "slider"
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
            if type(default) is type(v) or (_is_number(default) and _is_number(v)):
                if bool(default == v):
                    return v
        except (TypeError, ValueError):  # e.g. an array default: not a grid value
            return c.values[0]
    return c.values[0]


def _figure_name(plot_fn) -> str:
    fn = getattr(plot_fn, "func", plot_fn)  # see through functools.partial
    return getattr(fn, "__name__", type(fn).__name__)


def _check_signature(plot_fn, controls: dict[str, Control], name: str) -> dict[str, Any]:
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


class Explorer:
    """A plotting function and its grid of control values; displays itself live or as static HTML.

    Made by :func:`explore`, which documents the arguments. Attributes: ``controls`` (name ->
    :class:`Control`), ``initial`` (the starting values); live only: ``widgets`` (name -> ipywidget),
    ``image`` (the ``ipywidgets.Image``), ``box`` (the whole widget).
    """

    def __init__(self, plot_fn: Callable, controls: dict[str, Control], *, title: str | None = None,
                 dpi: int = 80, cache_size: int = 256, prefetch: bool = True):
        if not callable(plot_fn):
            raise TypeError(f"explore() expected a plotting function, got {type(plot_fn).__name__}")
        if not controls:
            raise ValueError("explore() expected at least one control, e.g. depth=[2, 5, 10]; got none")
        if not (isinstance(dpi, numbers.Real) and dpi > 0):
            raise ValueError(f"dpi must be a positive number, got {dpi!r}")
        if not (isinstance(cache_size, int) and cache_size >= 1):
            raise ValueError(f"cache_size must be a positive int, got {cache_size!r}")
        self.plot_fn, self.controls, self.dpi, self.cache_size = plot_fn, controls, dpi, cache_size
        self.prefetch = bool(prefetch)
        self.name = title or _figure_name(plot_fn)
        self.title = title
        defaults = _check_signature(plot_fn, controls, _figure_name(plot_fn))
        self.initial = {k: _start_value(c, defaults.get(k)) for k, c in controls.items()}
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._static_images: list[str] | None = None  # base64 PNGs, one per grid point, grid order
        self._widgets = None
        self._prefetch_generation = 0
        self._pending_html: str | None = None  # static: the HTML explore() built and checked
        self.mode = "live"

    # -- rendering ---------------------------------------------------------------------------------

    @property
    def grid_size(self) -> int:
        """How many combinations the controls span."""
        size = 1
        for c in self.controls.values():
            size *= len(c.values)
        return size

    def grid(self) -> list[dict[str, Any]]:
        """Every combination, in row-major order over the controls (the last control varies fastest)."""
        combos = itertools.product(*(c.values for c in self.controls.values()))
        return [dict(zip(self.controls, combo, strict=True)) for combo in combos]

    def draw(self, **values) -> bytes:
        """Call the plotting function with ``values`` and return its figure as PNG bytes (uncached)."""
        import matplotlib.pyplot as plt
        from matplotlib.axes import Axes
        from matplotlib.figure import Figure

        before = set(plt.get_fignums())
        try:
            result = self.plot_fn(**values)
            if isinstance(result, Axes):
                result = result.figure
            if result is None:
                opened = sorted(set(plt.get_fignums()) - before)
                if not opened:
                    raise TypeError(f"{_figure_name(self.plot_fn)}() returned None and opened no new figure; "
                                    "return the Figure it draws")
                result = plt.figure(opened[-1])
            if not isinstance(result, Figure):
                raise TypeError(f"{_figure_name(self.plot_fn)}() must return a matplotlib Figure, an Axes "
                                f"or None, got {type(result).__name__}")
            _share_mathtext_parser(result, self.dpi)
            buf = io.BytesIO()
            # compress_level 1: encoding is a few ms instead of ~15, the bytes stay local to the kernel.
            result.savefig(buf, format="png", dpi=self.dpi, pil_kwargs={"compress_level": 1})
            return buf.getvalue()
        finally:
            for num in set(plt.get_fignums()) - before:  # every figure this call opened, and only those
                plt.close(num)

    def render(self, **values) -> bytes:
        """PNG bytes for one combination, from the LRU cache when it was drawn before."""
        key = tuple(values[k] for k in self.controls)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        png = self.draw(**values)
        self._cache[key] = png
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return png

    # -- live ----------------------------------------------------------------------------------------

    @property
    def widgets(self) -> dict:
        """The live controls, name -> ipywidget (built on first use)."""
        if self._widgets is None:
            self._build_widgets()
        return self._widgets

    def _build_widgets(self) -> None:
        import ipywidgets as w

        style = {"description_width": "initial"}
        controls = {}
        for name, c in self.controls.items():
            options, value = list(zip(c.labels, c.values, strict=True)), self.initial[name]
            if c.kind == "slider":
                controls[name] = w.SelectionSlider(options=options, value=value, description=name,
                                                   continuous_update=False, style=style,
                                                   layout=w.Layout(width="min(100%, 32em)"))
            else:
                controls[name] = w.Dropdown(options=options, value=value, description=name,
                                            style=style)
        self._widgets = controls
        png = self.render(**self.initial)
        # Natural pixel width, capped at the cell's: otherwise the output area stretches the image and blurs it.
        self.image = w.Image(value=png, format="png",
                             layout=w.Layout(width=f"{_png_width(png)}px", max_width="100%", height="auto"))
        self.error = w.HTML("")
        header = [w.HTML(f"<b>{html.escape(self.title)}</b>")] if self.title else []
        self.box = w.VBox([*header, *controls.values(), self.image, self.error])
        self.box.add_class("sigprop-explore")
        for control in controls.values():
            control.observe(self._on_change, names="value")

    def current(self) -> dict[str, Any]:
        """The values the live controls hold now."""
        return {name: widget.value for name, widget in self.widgets.items()}

    def _on_change(self, change=None) -> None:
        values = self.current()
        try:
            png = self.render(**values)
        except Exception as err:  # shown under the figure: exceptions in callbacks are otherwise invisible
            message = html.escape(f"{type(err).__name__}: {err}")
            self.error.value = f"<pre style='color:#b00'>{message}</pre>"
            return
        self.error.value = ""
        self.image.value = png
        self.image.layout.width = f"{_png_width(png)}px"
        moved = next((n for n, w in self._widgets.items() if change and w is change.get("owner")), None)
        self._schedule_prefetch(values, moved, change.get("old") if change else None)

    def _prefetch_order(self, values: dict[str, Any], moved: str | None = None, old=None) -> list[dict]:
        """Combinations not yet drawn, nearest first: one step along each control, then two, and so on.

        Among equally near ones, first those along the control just moved, onward in its direction.
        """
        names = list(self.controls)
        here = [self.controls[n].values.index(values[n]) for n in names]
        m = names.index(moved) if moved in names else -1
        ahead = 1
        if m >= 0 and old in self.controls[moved].values:
            ahead = 1 if self.controls[moved].values.index(old) < here[m] else -1

        def key(index):
            distance = sum(abs(j - i) for j, i in zip(index, here, strict=True))
            off_axis = any(j != i for k, (j, i) in enumerate(zip(index, here, strict=True)) if k != m)
            backwards = m >= 0 and (index[m] - here[m]) * ahead < 0
            return distance, off_axis, backwards

        def combo(index) -> tuple:  # grid indices -> values, in control order (the cache's key)
            return tuple(self.controls[n].values[j] for n, j in zip(names, index, strict=True))

        indices = itertools.product(*(range(len(c.values)) for c in self.controls.values()))
        todo = (ix for ix in indices if combo(ix) not in self._cache)
        # Half the cache at most, so that prefetching never evicts what the reader looked at recently.
        nearest = heapq.nsmallest(self.cache_size // 2, todo, key=key)
        return [dict(zip(names, combo(ix), strict=True)) for ix in nearest]

    def _schedule_prefetch(self, values: dict[str, Any], moved: str | None = None, old=None) -> None:
        """Draw other combinations while the kernel is idle, nearest first, one per event-loop turn."""
        self._prefetch_generation += 1
        generation = self._prefetch_generation
        try:
            loop = asyncio.get_running_loop()  # ipykernel's loop; none in a plain script
        except RuntimeError:
            return
        if not self.prefetch:
            return
        todo = self._prefetch_order(values, moved, old)

        def step():
            # A newer change supersedes this batch; one render per turn lets the reader's next change
            # (or the next cell) wait for at most one figure.
            if generation != self._prefetch_generation or not todo:
                return
            try:
                self.render(**todo.pop(0))
            except Exception:
                return  # the reader sees the error if they move there
            loop.call_later(0.01, step)

        loop.call_later(0.05, step)

    # -- static --------------------------------------------------------------------------------------

    def static_images(self) -> list[str]:
        """Base64 palette PNGs, one per combination in :meth:`grid` order, checked against the budget."""
        if self._static_images is None:
            grid = self.grid()
            first = _encode_static(self.draw(**grid[0]))
            estimate = len(first) * len(grid)
            for budget, what, already in ((FIGURE_BUDGET, "figure", 0), (PAGE_BUDGET, "page", _page_total)):
                if already + estimate > _ESTIMATE_SLACK * budget:
                    raise ExploreBudgetError(self._budget_message(what, budget, already + estimate, len(grid),
                                                                  len(first), estimated=True))
            images, total = [first], len(first)
            for values in grid[1:]:
                images.append(_encode_static(self.draw(**values)))
                total += len(images[-1])
                if total > FIGURE_BUDGET:
                    raise ExploreBudgetError(self._budget_message("figure", FIGURE_BUDGET, total, len(grid),
                                                                  total // len(images), estimated=False))
            self._static_images = images
        return self._static_images

    def _budget_message(self, what, budget, size, n, per_image, *, estimated) -> str:
        how = "would take about" if estimated else "takes more than"
        scope = "" if what == "figure" else f" with the page's earlier figures ({_page_total / 1e6:.2f} MB)"
        return (f"explorable figure {self.name!r} {how} {size / 1e6:.2f} MB{scope} ({n} combinations x "
                f"~{per_image / 1e3:.0f} kB), over the {budget / 1e6:g} MB budget per {what}; "
                f"use fewer values, a smaller figsize, or a lower dpi (now {self.dpi})")

    def to_html(self) -> str:
        """The static control: self-contained HTML + JavaScript, fresh element ids on every call."""
        global _figure_count
        _figure_count += 1
        images = self.static_images()
        uid = f"sigprop-explore-{_figure_count}"
        distinct = list(dict.fromkeys(images))  # identical images (a control that changes nothing): once
        where = {img: i for i, img in enumerate(distinct)}
        data = {"sizes": [len(c.values) for c in self.controls.values()],
                "labels": [list(c.labels) for c in self.controls.values()],
                "names": list(self.controls), "index": [where[img] for img in images], "images": distinct}
        start = 0
        for c in self.controls.values():  # row-major flat index of the initial combination
            start = start * len(c.values) + c.values.index(self.initial[c.name])
        return _HTML_TEMPLATE.format(
            uid=uid, name=html.escape(self.name),
            title=f'<div class="sigprop-explore-title">{html.escape(self.title)}</div>' if self.title else "",
            controls="\n".join(_control_html(uid, k, c, c.values.index(self.initial[c.name]))
                               for k, c in enumerate(self.controls.values())),
            src=images[start], alt=html.escape(_alt(self.name, self.initial)),
            data=json.dumps(data, separators=(",", ":")).replace("<", "\\u003c"),
            script=_SCRIPT.replace("__UID__", uid))

    # -- display -------------------------------------------------------------------------------------

    def _static_page(self) -> str:
        # The HTML explore() built and checked for the first display; a second display gets fresh ids.
        page, self._pending_html = self._pending_html or self.to_html(), None
        return page

    def _ipython_display_(self) -> None:
        """How IPython shows it: the HTML through ``IPython.display.HTML`` (static), or the widget box."""
        from IPython.display import HTML, display

        if self.mode == "static":
            display(HTML(self._static_page()))
            return
        if self._widgets is None:
            self._build_widgets()
        # Through display() rather than a MIME bundle: ipywidgets 7 (older Colab) has no _repr_mimebundle_.
        display(self.box)

    def _repr_mimebundle_(self, include=None, exclude=None):
        """The same outputs for front ends that ask for a MIME bundle instead."""
        if self.mode == "static":
            return {"text/html": self._static_page(), "text/plain": f"<explorable figure {self.name}>"}
        if self._widgets is None:
            self._build_widgets()
        return self.box._repr_mimebundle_(include=include, exclude=exclude)

    def __repr__(self) -> str:
        spec = ", ".join(f"{k}={len(c.values)} values" for k, c in self.controls.items())
        return f"Explorer({self.name}, {spec}, mode={self.mode!r})"


_mathtext_parser = None  # one for every figure drawn here; see _share_mathtext_parser


def _png_width(png: bytes) -> int:
    """Pixel width of a PNG, read from its IHDR chunk (bytes 16-20, big-endian)."""
    return int.from_bytes(png[16:20], "big")


def _share_mathtext_parser(fig, dpi) -> None:
    """Let the figure's renderer use one mathtext parser shared by every figure this module draws.

    matplotlib caches parsed math per renderer, and each new figure gets a new renderer, so the same
    log-axis tick labels (math such as ``10^{-6}``) are parsed again for every figure: about 20 ms
    each, two thirds of the time of a figure with two log axes. The image is unchanged (tested). If a
    future matplotlib renders differently, the attribute is simply not used and nothing breaks.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg

    global _mathtext_parser
    if not isinstance(fig.canvas, FigureCanvasAgg):  # savefig draws on a fresh Agg canvas then
        return
    fig.set_dpi(dpi)  # so that savefig(dpi=dpi) reuses the renderer made here
    renderer = fig.canvas.get_renderer()
    if isinstance(renderer, RendererAgg) and hasattr(renderer, "mathtext_parser"):
        _mathtext_parser = _mathtext_parser or renderer.mathtext_parser
        renderer.mathtext_parser = _mathtext_parser


def _encode_static(png: bytes) -> str:
    """Re-encode a matplotlib PNG as a 256-colour palette PNG, base64: about 2.5x smaller for line plots."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        # RGB first: median-cut quantization of the few plot colours plus their anti-aliasing shades.
        paletted = im.convert("RGB").quantize(colors=256)
        buf = io.BytesIO()
        paletted.save(buf, format="png", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _alt(name: str, values: dict[str, Any]) -> str:
    return f"{name}: " + ", ".join(f"{k} = {_format_value(v)}" for k, v in values.items())


def _control_html(uid: str, k: int, c: Control, start: int) -> str:
    cid = f"{uid}-c{k}"
    label = f'<label for="{cid}">{html.escape(c.name)}</label>'
    if c.kind == "slider":
        text = html.escape(c.labels[start])
        return (f'{label}<input type="range" id="{cid}" data-sigprop-index="{k}" min="0" '
                f'max="{len(c.values) - 1}" step="1" value="{start}" aria-valuetext="{text}">'
                f'<output for="{cid}">{text}</output>')
    options = "".join(f'<option value="{i}"{" selected" if i == start else ""}>{html.escape(lab)}</option>'
                      for i, lab in enumerate(c.labels))
    return f'{label}<select id="{cid}" data-sigprop-index="{k}">{options}</select><span></span>'


_HTML_TEMPLATE = """<div class="sigprop-explore" id="{uid}" data-figure="{name}">
<style>
.sigprop-explore {{ margin: 0.5em 0 1em; }}
.sigprop-explore-title {{ font-weight: bold; margin-bottom: 0.3em; }}
.sigprop-explore-controls {{ display: grid; grid-template-columns: max-content minmax(8em, 22em) max-content;
  gap: 0.25em 0.75em; align-items: center; margin-bottom: 0.5em; }}
.sigprop-explore-controls output {{ font-variant-numeric: tabular-nums; min-width: 4em; }}
.sigprop-explore-image {{ max-width: 100%; height: auto; background: white; }}
</style>
{title}<div class="sigprop-explore-controls">
{controls}
</div>
<img class="sigprop-explore-image" src="data:image/png;base64,{src}" alt="{alt}">
<script type="application/json" class="sigprop-explore-data">{data}</script>
<script>{script}</script>
</div>"""

# Plain ES5, no dependencies: the flat index of a combination is row-major over the controls.
_SCRIPT = """(function () {
  var root = document.getElementById("__UID__");
  if (!root) { return; }
  var data = JSON.parse(root.querySelector("script.sigprop-explore-data").textContent);
  var inputs = Array.prototype.slice.call(root.querySelectorAll("[data-sigprop-index]"));
  var img = root.querySelector("img.sigprop-explore-image");
  function update() {
    var flat = 0, alt = [];
    inputs.forEach(function (el, k) {
      var i = parseInt(el.value, 10), label = data.labels[k][i];
      flat = flat * data.sizes[k] + i;
      alt.push(data.names[k] + " = " + label);
      if (el.type === "range") {
        el.setAttribute("aria-valuetext", label);
        el.nextElementSibling.textContent = label;
      }
    });
    img.src = "data:image/png;base64," + data.images[data.index[flat]];
    img.alt = root.getAttribute("data-figure") + ": " + alt.join(", ");
  }
  inputs.forEach(function (el) {
    el.addEventListener("input", update);
    el.addEventListener("change", update);
  });
})();"""


def explore(plot_fn: Callable, /, *, title: str | None = None, dpi: int = 80, cache_size: int = 256,
            prefetch: bool = True, **controls) -> Explorer:
    """Make a figure explorable: one slider or dropdown per keyword, live in Jupyter, static in the book.

    Args:
        plot_fn: draws one figure for one combination of values, called with the controls as keywords;
            returns the ``Figure`` (or an ``Axes`` of it, or ``None`` after drawing with pyplot).
        title: shown above the controls, and the figure's name in error messages (default: the
            function's name).
        dpi: resolution the figure is rendered at, live and static (80 keeps a 6x3.5 in figure near
            10 kB per static image).
        cache_size: how many rendered combinations the live figure keeps (LRU; ~40 kB each).
        prefetch: live, after the reader's first change, draw the other combinations while the kernel
            is idle, nearest first (at most ``cache_size // 2``), so later moves are usually instant.
        **controls: ``name=[values]`` for a slider (numbers) or a dropdown (strings or booleans), or
            ``name=(start, stop, step)`` for a slider over an inclusive range.

    Returns:
        An :class:`Explorer`, which displays itself (live: an ipywidgets box; static: HTML). In static
        mode every image is drawn here, so an over-budget grid fails in this cell.

    Example:
        >>> def plot_gain(depth=10, gain=1.0):
        ...     fig, ax = plt.subplots(figsize=(5, 3))
        ...     ax.semilogy(range(depth + 1), [gain**k for k in range(depth + 1)])
        ...     return fig
        >>> explore(plot_gain, depth=[5, 10, 20], gain=(0.5, 2.0, 0.25))  # doctest: +SKIP
    """
    global _page_total
    mode = widgets_mode()
    parsed = {name: make_control(name, spec) for name, spec in controls.items()}
    explorer = Explorer(plot_fn, parsed, title=title, dpi=dpi, cache_size=cache_size, prefetch=prefetch)
    explorer.mode = mode
    if mode == "static":
        explorer._pending_html = explorer.to_html()
        size, n = len(explorer._pending_html.encode()), explorer.grid_size
        if size > FIGURE_BUDGET:  # the images fit, but controls and script pushed it over
            message = explorer._budget_message("figure", FIGURE_BUDGET, size, n, size // n, estimated=False)
            raise ExploreBudgetError(message)
        if _page_total + size > PAGE_BUDGET:
            message = explorer._budget_message("page", PAGE_BUDGET, _page_total + size, n, size // n,
                                               estimated=False)
            raise ExploreBudgetError(message)
        _page_total += size
    else:
        explorer.widgets  # noqa: B018 -- build now, so a failing plot function fails in this cell
    return explorer

