"""The live renderer: ipywidgets controls above an image that is redrawn in the kernel, with an LRU cache.

Used in Jupyter, JupyterLab, Colab and Binder (``SIGPROP_WIDGETS`` unset or ``live``). Core widgets
only, and only what ipywidgets 7 (older Colab) and 8 both have: a ``SelectionSlider`` with
``continuous_update=False`` (dragging sends one redraw on release, not a backlog), a ``Dropdown``, and
an ``Image`` whose PNG bytes are replaced in place (no flicker, no ipympl). Rendered combinations are
kept in a bounded LRU cache, so going back is instant; a new combination costs the plotting function
plus ``savefig`` (``make bench`` measures it for every chapter figure).
"""

from __future__ import annotations

import html
from collections import OrderedDict
from typing import Any

from sigprop._validation import check_int
from sigprop.widgets.grid import Grid

__all__ = ["LiveExplorer"]


def png_width(png: bytes) -> int:
    """Pixel width of a PNG, read from its IHDR chunk (bytes 16-20, big-endian)."""
    return int.from_bytes(png[16:20], "big")


class LiveExplorer:
    """An explorable figure as ipywidgets; the first image is drawn on creation.

    Attributes: ``grid``, ``controls`` and ``initial`` (the grid's); ``widgets`` (name -> ipywidget),
    ``image`` (the ``ipywidgets.Image``), ``error`` (an ``HTML`` under the image that shows an
    exception of the plotting function instead of raising it in a callback nobody sees), ``box``
    (the whole widget), ``cache`` (combination -> PNG bytes, at most ``cache_size``).
    """

    mode = "live"

    def __init__(self, grid: Grid, cache_size: int = 256):
        import ipywidgets as w

        self.grid, self.controls, self.initial = grid, grid.controls, grid.initial
        self.cache_size = check_int("cache_size", cache_size, minimum=1)
        self.cache: OrderedDict[tuple, bytes] = OrderedDict()
        style = {"description_width": "initial"}
        self.widgets = {}
        for name, c in self.controls.items():
            options, value = list(zip(c.labels, c.values, strict=True)), self.initial[name]
            if c.kind == "slider":
                self.widgets[name] = w.SelectionSlider(options=options, value=value, description=name,
                                                       continuous_update=False, style=style,
                                                       layout=w.Layout(width="min(100%, 32em)"))
            else:
                self.widgets[name] = w.Dropdown(options=options, value=value, description=name, style=style)
        png = self.render(**self.initial)  # a failing plot function fails in the explore() cell
        # Natural pixel width, capped at the cell's: otherwise the output area stretches the image and blurs it.
        self.image = w.Image(value=png, format="png",
                             layout=w.Layout(width=f"{png_width(png)}px", max_width="100%", height="auto"))
        self.error = w.HTML("")
        header = [w.HTML(f"<b>{html.escape(grid.title)}</b>")] if grid.title else []
        self.box = w.VBox([*header, *self.widgets.values(), self.image, self.error])
        self.box.add_class("sigprop-explore")
        for control in self.widgets.values():
            control.observe(self._on_change, names="value")

    def render(self, **values) -> bytes:
        """PNG bytes for one combination, from the cache when it was drawn before."""
        key = tuple(values[k] for k in self.controls)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        png = self.cache[key] = self.grid.draw(**values)
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return png

    def current(self) -> dict[str, Any]:
        """The values the controls hold now."""
        return {name: widget.value for name, widget in self.widgets.items()}

    def _on_change(self, change=None) -> None:
        try:
            png = self.render(**self.current())
        except Exception as err:  # shown under the figure: exceptions in callbacks are otherwise invisible
            self.error.value = f"<pre style='color:#b00'>{html.escape(f'{type(err).__name__}: {err}')}</pre>"
            return
        self.error.value = ""
        self.image.value = png
        self.image.layout.width = f"{png_width(png)}px"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)  # ipywidgets 7 displays through _ipython_display_, 8 through a MIME bundle

    def _repr_mimebundle_(self, include=None, exclude=None):
        # Written out rather than delegated: ipywidgets 7 widgets have no _repr_mimebundle_.
        view = {"version_major": 2, "version_minor": 0, "model_id": self.box.model_id}
        return {"application/vnd.jupyter.widget-view+json": view, "text/plain": repr(self)}

    def __repr__(self) -> str:
        spec = ", ".join(f"{k}={len(c.values)} values" for k, c in self.controls.items())
        return f"LiveExplorer({self.grid.name}, {spec})"
