"""Tests for sigprop.widgets: grids, bad specs, the live widget, the static HTML and its budget.

The browser side of the static HTML (sliders really switch images, no console errors) is in
tests/test_browser.py; redraw timings are benchmarks (tests/test_bench.py, ``make bench``). This file
checks everything a kernel can see.
"""

import base64
import functools
import io
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from sigprop import widgets
from sigprop.widgets import Control, ExploreBudgetError, Grid, LiveExplorer, StaticExplorer, explore, make_control
from sigprop.widgets import static as static_module


def plot_line(depth=10, gain=1.0, activation="tanh"):
    """A representative chapter figure: a small line plot of a signal's size across layers."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(depth + 1)
    squash = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0.0))
    ax.plot(x, gain**x * (1 + 0.1 * squash(np.sin(x))), "o-", markersize=3)
    ax.set_xlabel("layer")
    ax.set_ylabel("activation std")
    ax.set_title(f"{activation}, depth {depth}, gain {gain}")
    return fig


@pytest.fixture(autouse=True)
def _live_mode_and_fresh_page(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "live")
    widgets.reset_page_budget()
    yield
    widgets.reset_page_budget()
    plt.close("all")


def static_data(page: str) -> dict:
    """The JSON payload that the static control's script reads."""
    pattern = r'<script type="application/json" class="sigprop-explore-data">(.*?)</script>'
    match = re.search(pattern, page, re.S)
    return json.loads(match.group(1))


# -- grids ---------------------------------------------------------------------------------------------


def test_float_range_is_inclusive_and_exact():
    assert make_control("gain", (0.5, 2.0, 0.25)).values == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    # 0.1 + 0.1 + 0.1 == 0.30000000000000004 in binary floats; decimal stepping gives the literal 0.3.
    assert make_control("lr", (0.1, 0.3, 0.1)).values == (0.1, 0.2, 0.3)
    assert make_control("w", (0.01, 0.05, 0.01)).values == (0.01, 0.02, 0.03, 0.04, 0.05)


def test_integer_range_stays_integer_and_mixed_range_is_float():
    ints = make_control("depth", (2, 10, 2))
    assert ints.values == (2, 4, 6, 8, 10) and all(type(v) is int for v in ints.values)
    assert make_control("g", (1, 2, 0.5)).values == (1.0, 1.5, 2.0)
    assert ints.kind == "slider" and ints.labels == ("2", "4", "6", "8", "10")


def test_lists_become_sliders_or_dropdowns():
    assert make_control("depth", [2, 5, 10]) == Control("depth", (2, 5, 10), "slider")
    assert make_control("act", ["tanh", "relu"]) == Control("act", ("tanh", "relu"), "dropdown")
    assert make_control("bias", [True, False]).kind == "dropdown"
    numpy_values = make_control("std", np.array([0.5, 1.0]))
    assert numpy_values.values == (0.5, 1.0) and type(numpy_values.values[0]) is float
    assert make_control("k", range(1, 4)).values == (1, 2, 3)


def test_grid_enumerates_every_combination_row_major():
    specs = {"depth": [2, 5], "gain": (0.5, 1.0, 0.25), "activation": ["tanh", "relu"]}
    ex = Grid(plot_line, {name: make_control(name, spec) for name, spec in specs.items()})
    grid = ex.combinations()
    assert ex.size == len(grid) == 2 * 3 * 2
    assert [ex.flat_index(g) for g in grid] == list(range(len(grid)))
    assert grid[0] == {"depth": 2, "gain": 0.5, "activation": "tanh"}
    assert grid[1] == {"depth": 2, "gain": 0.5, "activation": "relu"}  # the last control varies fastest
    assert grid[-1] == {"depth": 5, "gain": 1.0, "activation": "relu"}
    assert len({tuple(g.values()) for g in grid}) == len(grid)


def test_controls_start_at_the_function_defaults_when_on_the_grid():
    ex = explore(plot_line, depth=[2, 5, 10, 20], gain=(0.5, 2.0, 0.25), activation=["relu", "tanh"])
    assert ex.initial == {"depth": 10, "gain": 1.0, "activation": "tanh"}
    ex = explore(plot_line, depth=[3, 4])  # default 10 is not a value: the first value
    assert ex.initial["depth"] == 3


# -- bad specs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, error, match", [
    ([], ValueError, "at least one value, got an empty list"),
    ((0.5, 2.0, 0), ValueError, r"step must be positive \(sliders run from low to high\), got step 0 "),
    ((0.5, 2.0, -0.25), ValueError, "step must be positive .* got step -0.25"),
    ((2.0, 0.5, 0.25), ValueError, "needs start < stop"),
    ((1.0, 1.0, 0.25), ValueError, "needs start < stop"),
    ((0.5, 2.0, 0.4), ValueError, "step 0.4 does not divide the range from 0.5 to 2.0"),
    ((0.5, 2.0), TypeError, r"\(start, stop, step\) tuple of three numbers"),
    (("a", "b", "c"), TypeError, r"\(start, stop, step\) tuple of three numbers"),
    ([1, "relu"], TypeError, "got a mix of int, str"),
    ([True, 2], TypeError, "got a mix of bool, int"),
    ([1.0, 2.0, 1.0], ValueError, "values must be distinct"),
    (3, TypeError, "expected a list of values or a .* got int 3"),
    ({"a": 1}, TypeError, "expected a list of values or a .* got dict"),
])
def test_bad_specs_raise_clear_errors(spec, error, match):
    with pytest.raises(error, match=match):
        make_control("gain", spec)


def test_error_names_the_control():
    with pytest.raises(ValueError, match="control 'gain'"):
        explore(plot_line, gain=[])


def test_unknown_keyword_is_rejected_naming_the_function():
    with pytest.raises(TypeError, match=r"plot_line\(\) has no keyword 'width'.*'activation', 'depth'"):
        explore(plot_line, width=[8, 16])


def test_parameter_without_control_or_default_is_rejected():
    def needs_width(width, depth=2):
        return plot_line(depth)

    with pytest.raises(TypeError, match=r"needs_width\(\) needs 'width'.*functools.partial"):
        explore(needs_width, depth=[1, 2])
    explore(functools.partial(needs_width, 8), depth=[1, 2])  # bound with partial: fine


def test_function_taking_kwargs_accepts_any_control():
    seen = []
    ex = explore(lambda **kw: seen.append(kw) or plot_line(**kw), depth=[1, 2], gain=[0.5, 2.0])
    ex.widgets["gain"].value = 2.0
    assert seen == [{"depth": 1, "gain": 0.5}, {"depth": 1, "gain": 2.0}]


@pytest.mark.parametrize("kwargs, error, match", [
    ({}, ValueError, "at least one control"),
    ({"depth": [1, 2], "dpi": 0}, ValueError, r"dpi must be positive, got 0\.0"),
    ({"depth": [1, 2], "cache_size": 0}, ValueError, "cache_size must be at least 1, got 0"),
])
def test_bad_options_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        explore(plot_line, **kwargs)


def test_not_a_function_is_rejected():
    with pytest.raises(TypeError, match="expected a plotting function, got str"):
        explore("plot_line", depth=[1, 2])


def test_unknown_mode_is_rejected(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "html")
    with pytest.raises(ValueError, match="SIGPROP_WIDGETS must be 'live' or 'static', got 'html'"):
        explore(plot_line, depth=[1, 2])


def test_plot_function_must_return_a_figure():
    with pytest.raises(TypeError, match=r"must return a matplotlib Figure, an Axes or None, got int"):
        explore(lambda depth: 3, depth=[1, 2])
    plt.figure()  # an old figure is open, the function opens none: refuse rather than draw over it
    with pytest.raises(TypeError, match="returned None and opened no new figure"):
        explore(lambda depth: None, depth=[1, 2])


def test_plot_function_may_return_an_axes_or_draw_with_pyplot():
    explore(lambda depth: plt.subplots()[1], depth=[1, 2])
    plt.close("all")
    explore(lambda depth: plt.plot([0, depth]) and None, depth=[1, 2])
    assert plt.get_fignums() == []


# -- live ----------------------------------------------------------------------------------------------


def test_live_widget_calls_the_plot_function_with_the_new_value():
    calls = []

    def plot(depth=10, gain=1.0, activation="tanh"):
        calls.append({"depth": depth, "gain": gain, "activation": activation})
        return plot_line(depth, gain, activation)

    ex = explore(plot, depth=[2, 5, 10], gain=(0.5, 2.0, 0.25), activation=["tanh", "relu"])
    assert calls == [{"depth": 10, "gain": 1.0, "activation": "tanh"}]
    first = ex.image.value
    ex.widgets["gain"].value = 1.75
    assert calls[-1] == {"depth": 10, "gain": 1.75, "activation": "tanh"}
    assert ex.image.value != first and bytes(ex.image.value).startswith(b"\x89PNG")
    ex.widgets["activation"].value = "relu"
    assert calls[-1] == {"depth": 10, "gain": 1.75, "activation": "relu"}
    ex.widgets["gain"].value = 1.0
    ex.widgets["activation"].value = "tanh"  # back to the start: from the cache, no new call
    assert len(calls) == 4 and ex.image.value == first
    assert plt.get_fignums() == []  # every figure closed after rendering


def test_explore_returns_the_renderer_of_the_mode(monkeypatch):
    assert isinstance(explore(plot_line, depth=[2, 5]), LiveExplorer)
    monkeypatch.setenv("SIGPROP_WIDGETS", " Static ")
    assert isinstance(explore(plot_line, depth=[2, 5]), StaticExplorer)


def test_live_controls_are_core_widgets_with_the_same_labels():
    import ipywidgets

    ex = explore(plot_line, depth=[2, 5, 10], gain=(0.5, 2.0, 0.25), activation=["tanh", "relu"],
                 title="Depth")
    slider, dropdown = ex.widgets["gain"], ex.widgets["activation"]
    assert isinstance(slider, ipywidgets.SelectionSlider) and slider.continuous_update is False
    assert isinstance(dropdown, ipywidgets.Dropdown)
    assert [label for label, _ in slider.options] == list(ex.controls["gain"].labels)
    assert isinstance(ex.image, ipywidgets.Image)
    bundle = ex._repr_mimebundle_()  # written out, as ipywidgets 7 has no _repr_mimebundle_
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.box.model_id


def test_live_cache_is_bounded():
    ex = explore(plot_line, depth=[2, 3, 4, 5], cache_size=2)
    for depth in (2, 3, 4, 5):
        ex.widgets["depth"].value = depth
    assert len(ex.cache) == 2


def test_live_error_is_shown_under_the_figure_not_raised():
    def fragile(depth=1):
        if depth == 3:
            raise RuntimeError("depth 3 diverged")
        return plot_line(depth)

    ex = explore(fragile, depth=[1, 3])
    before = ex.image.value
    ex.widgets["depth"].value = 3
    assert "RuntimeError: depth 3 diverged" in ex.error.value and ex.image.value == before
    ex.widgets["depth"].value = 1
    assert ex.error.value == ""


# -- static --------------------------------------------------------------------------------------------


def test_static_html_has_one_image_per_combination_and_the_controls(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "static")
    ex = explore(plot_line, depth=[2, 5, 10], gain=(0.5, 1.5, 0.5), activation=["tanh", "relu"],
                 title="Signal")
    page = ex._repr_mimebundle_()["text/html"]
    data = static_data(page)
    assert len(data["images"]) == len(data["index"]) == 3 * 3 * 2  # every combination draws differently
    assert data["labels"] == [["2", "5", "10"], ["0.5", "1.0", "1.5"], ["tanh", "relu"]]
    assert page.count('type="range"') == 2 and page.count("<select") == 1
    assert '<option value="1">relu</option>' in page and "<output" in page
    assert 'class="sigprop-explore"' in page and "Signal" in page
    assert "http" not in page  # self-contained: no CDN, no network
    # The first image shown is the initial combination (depth 10, gain 1.0, tanh) and decodes as a PNG.
    src = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    flat = ex.grid.combinations().index({"depth": 10, "gain": 1.0, "activation": "tanh"})
    assert flat == ex.grid.flat_index(ex.initial)
    assert src == data["images"][data["index"][flat]]
    assert Image.open(io.BytesIO(base64.b64decode(src))).format == "PNG"
    assert plt.get_fignums() == []


def test_ipython_display_sends_html_when_static_and_the_widget_box_when_live(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    explore(plot_line, depth=[2, 5])._ipython_display_()
    assert shown[-1] is not None and type(shown[-1]).__name__ == "VBox"
    monkeypatch.setenv("SIGPROP_WIDGETS", "static")
    explore(plot_line, depth=[2, 5])._ipython_display_()
    assert isinstance(shown[-1], IPython.display.HTML) and 'class="sigprop-explore"' in shown[-1].data


def test_static_ids_are_unique_per_figure_and_per_display(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "static")
    a = explore(plot_line, depth=[2, 5])
    b = explore(plot_line, gain=[1.0, 2.0])
    pages = [a._repr_mimebundle_()["text/html"], b._repr_mimebundle_()["text/html"],
             a._repr_mimebundle_()["text/html"]]
    ids = [re.search(r'id="(sigprop-explore-\d+)"', p).group(1) for p in pages]
    assert len(set(ids)) == 3
    for p, uid in zip(pages, ids, strict=True):
        assert f'getElementById("{uid}")' in p


def test_static_page_total_is_tracked(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "static")
    a = explore(plot_line, depth=[2, 5])
    first = widgets.page_bytes()
    assert first == len(a._repr_mimebundle_()["text/html"].encode())
    explore(plot_line, depth=[3, 4])
    assert widgets.page_bytes() > first


def test_static_figure_budget_fails_early_naming_the_figure(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "static")
    monkeypatch.setattr(static_module, "FIGURE_BUDGET", 50_000)  # a few images' worth
    calls = []

    def plot_depth_profile(depth=10, gain=1.0):
        calls.append(depth)
        return plot_line(depth, gain)

    with pytest.raises(ExploreBudgetError, match=r"'plot_depth_profile' would take about .* MB .*"
                                                 r"over the 0.05 MB budget per figure; use fewer values"):
        explore(plot_depth_profile, depth=[2, 5, 10, 20, 50], gain=(0.5, 2.0, 0.25))
    assert len(calls) == 1  # estimated from the first image, before drawing the other 34
    with pytest.raises(ExploreBudgetError, match="'Depth profile'"):
        explore(plot_depth_profile, depth=[2, 5, 10, 20, 50], gain=(0.5, 2.0, 0.25), title="Depth profile")


def test_static_figure_budget_checks_the_real_total(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "static")
    monkeypatch.setattr(static_module, "FIGURE_BUDGET", 60_000)

    def busy_after_first(depth=0):  # a plain first image makes the estimate too low
        fig, ax = plt.subplots(figsize=(6, 3.5))
        if depth:
            ax.imshow(np.random.default_rng(depth).random((60, 100)))
        return fig

    with pytest.raises(ExploreBudgetError, match="'busy_after_first' takes more than .* budget per figure"):
        explore(busy_after_first, depth=list(range(8)))


def test_static_page_budget(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "static")
    one = len(explore(plot_line, depth=[2, 5, 10])._repr_mimebundle_()["text/html"].encode())
    monkeypatch.setattr(static_module, "PAGE_BUDGET", int(2.5 * one))
    explore(plot_line, depth=[2, 5, 11])
    with pytest.raises(ExploreBudgetError, match=r"'third' (takes more than|would take about) .* "
                                                 r"with the page's earlier figures .* budget per page"):
        explore(plot_line, depth=[2, 5, 12], title="third")


def test_static_images_are_small(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "static")
    page = explore(plot_line, depth=[2, 5, 10, 20, 50], gain=(0.5, 2.0, 0.25),
                   activation=["tanh", "relu"])._repr_mimebundle_()["text/html"]
    per_image = len(page) / 70
    print(f"\nstatic: {len(page) / 1e6:.2f} MB for 70 images, {per_image / 1e3:.1f} kB each")
    assert len(page) < widgets.FIGURE_BUDGET and per_image < 15_000


# -- the Sphinx extension ------------------------------------------------------------------------------


def test_live_image_is_shown_at_its_natural_width_not_stretched():
    def plot(width=3.0):
        fig, ax = plt.subplots(figsize=(width, 2))
        ax.plot([0, 1], [0, 1])
        return fig

    ex = explore(plot, width=[3.0, 5.0], dpi=80)
    assert ex.image.layout.width == "240px" and ex.image.layout.max_width == "100%"  # 3 in x 80 dpi
    ex.widgets["width"].value = 5.0
    assert ex.image.layout.width == "400px"
