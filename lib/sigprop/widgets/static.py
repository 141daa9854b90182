"""The static renderer: every combination drawn at build time into one self-contained HTML output.

Used when the book is built (``SIGPROP_WIDGETS=static``, set by ``book/_ext/sigprop_book.py``). The
output is what ``IPython.display.HTML`` would send and myst-nb puts in the page as is: ``<input
type=range>`` sliders with value labels and ``<select>`` dropdowns (the same labels and values as
live), the images as base64 palette PNGs, and a few lines of plain JavaScript that swap them. No
kernel, no network. The markup and script are the template ``static.html`` next to this module.

Budget: one figure may add at most :data:`FIGURE_BUDGET` bytes to its page and one page (one
notebook, one kernel) at most :data:`PAGE_BUDGET`; :func:`check_budget` is the one place both are
enforced. The size is first estimated from the first image, so an oversized grid fails within
seconds with an :class:`ExploreBudgetError` naming the figure.
"""

from __future__ import annotations

import base64
import html
import io
import json
import string
from importlib import resources

from sigprop.widgets.grid import Control, Grid

__all__ = ["FIGURE_BUDGET", "PAGE_BUDGET", "ExploreBudgetError", "StaticExplorer", "check_budget",
           "page_bytes", "reset_page_budget"]

FIGURE_BUDGET = 1_500_000  # bytes of HTML one explorable figure may add to a built page
PAGE_BUDGET = 6_000_000  # bytes all explorable figures of one page (one notebook) may add together
_ESTIMATE_SLACK = 1.2  # refuse on an estimate only when it is clearly over

_page = {"bytes": 0, "figures": 0}  # this kernel's page so far: bytes emitted, figures numbered


class ExploreBudgetError(ValueError):
    """An explorable figure would make the built page too large."""


def page_bytes() -> int:
    """Bytes of explorable-figure HTML this kernel (one page of the book) has emitted so far."""
    return _page["bytes"]


def reset_page_budget() -> None:
    """Start a new page's count (the build starts one kernel per page; tests call this)."""
    _page.update(bytes=0, figures=0)


def check_budget(grid: Grid, size: int, per_image: float, *, estimated: bool = False) -> None:
    """Raise :class:`ExploreBudgetError` if ``size`` more bytes exceed the figure's or the page's budget.

    Args:
        grid: the figure, for the message.
        size: its bytes (so far, or estimated for the whole grid).
        per_image: bytes per image, for the message.
        estimated: ``size`` is an estimate: refuse only beyond a 20% slack.
    """
    slack = _ESTIMATE_SLACK if estimated else 1.0
    for what, budget, total in (("figure", FIGURE_BUDGET, size), ("page", PAGE_BUDGET, _page["bytes"] + size)):
        if total > slack * budget:
            how = "would take about" if estimated else "takes more than"
            scope = "" if what == "figure" else f" with the page's earlier figures ({_page['bytes'] / 1e6:.2f} MB)"
            raise ExploreBudgetError(
                f"explorable figure {grid.name!r} {how} {total / 1e6:.2f} MB{scope} ({grid.size} combinations x "
                f"~{per_image / 1e3:.0f} kB), over the {budget / 1e6:g} MB budget per {what}; "
                f"use fewer values, a smaller figsize, or a lower dpi (now {grid.dpi:g})")


def encode_static(png: bytes) -> str:
    """Re-encode a matplotlib PNG as a 256-colour palette PNG, base64: about 2.5x smaller for line plots."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        # RGB first: median-cut quantization of the few plot colours plus their anti-aliasing shades.
        paletted = im.convert("RGB").quantize(colors=256)
        buf = io.BytesIO()
        paletted.save(buf, format="png", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _template() -> string.Template:
    text = resources.files("sigprop.widgets").joinpath("static.html").read_text(encoding="utf-8")
    return string.Template(text.rstrip("\n"))


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


class StaticExplorer:
    """An explorable figure as self-contained HTML; every image is drawn (and budgeted) on creation.

    Attributes: ``grid`` (the :class:`~sigprop.widgets.grid.Grid`), ``controls`` and ``initial`` (the
    grid's), ``images`` (base64 palette PNGs, one per combination in the grid's order).
    """

    mode = "static"

    def __init__(self, grid: Grid):
        self.grid, self.controls, self.initial = grid, grid.controls, grid.initial
        self.images = self._draw_all()
        self._pending_html: str | None = self.to_html()
        size = len(self._pending_html.encode())
        check_budget(grid, size, size / grid.size)  # controls and script on top of the images
        _page["bytes"] += size

    def _draw_all(self) -> list[str]:
        combos = self.grid.combinations()
        first = encode_static(self.grid.draw(**combos[0]))
        check_budget(self.grid, len(first) * len(combos), len(first), estimated=True)
        images, total = [first], len(first)
        for values in combos[1:]:
            images.append(encode_static(self.grid.draw(**values)))
            total += len(images[-1])
            check_budget(self.grid, total, total / len(images))
        return images

    def to_html(self) -> str:
        """The HTML + JavaScript, with fresh element ids on every call."""
        _page["figures"] += 1
        uid = f"sigprop-explore-{_page['figures']}"
        distinct = list(dict.fromkeys(self.images))  # identical images (a control that changes nothing): once
        where = {img: i for i, img in enumerate(distinct)}
        controls = list(self.controls.values())
        data = {"sizes": [len(c.values) for c in controls], "labels": [list(c.labels) for c in controls],
                "names": list(self.controls), "index": [where[img] for img in self.images], "images": distinct}
        title = self.grid.title
        return _template().substitute(
            uid=uid, name=html.escape(self.grid.name),
            title=f'<div class="sigprop-explore-title">{html.escape(title)}</div>' if title else "",
            controls="\n".join(_control_html(uid, k, c, c.values.index(self.initial[c.name]))
                               for k, c in enumerate(controls)),
            src=self.images[self.grid.flat_index(self.initial)], alt=html.escape(self.grid.describe(self.initial)),
            data=json.dumps(data, separators=(",", ":")).replace("<", "\\u003c"))

    def _page_html(self) -> str:
        # The HTML built and budgeted on creation for the first display; a second display gets fresh ids.
        page, self._pending_html = self._pending_html or self.to_html(), None
        return page

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._page_html()))

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self._page_html(), "text/plain": f"<explorable figure {self.grid.name}>"}

    def __repr__(self) -> str:
        spec = ", ".join(f"{k}={len(c.values)} values" for k, c in self.controls.items())
        return f"StaticExplorer({self.grid.name}, {spec})"
