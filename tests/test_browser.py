"""The built book in a real headless Chromium: explorable figures respond, pages log no errors and
fetch nothing from outside.

Needs the built HTML (``make book``, or set ``SIGPROP_BUILD_DIR`` to another build's ``html`` folder)
and Chromium (``apt-get install chromium``; another binary via ``SIGPROP_CHROMIUM``) driven by the
``playwright`` Python package (no browser download needed). Outside CI a missing piece skips these
tests with a message; with ``CI=true`` it fails them. Run only these: ``pytest -m browser``.

The site is served over http from a thread on a free localhost port. A page of the book must work
offline: MathJax is served from the book itself (``book/_ext/offline_mathjax.py``), the explorable
figures are self-contained and the widget manager is not loaded from a CDN (``nb_ipywidgets_js: {}``).
Every request that would leave localhost is recorded, answered with an empty body (so the rest of the
page still loads on a machine without internet access) and fails the page's test.
"""

import functools
import json
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("SIGPROP_BUILD_DIR", ROOT / "_build" / "html"))
CHROMIUM = os.environ.get("SIGPROP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# Every chapter notebook has a page; the intro is the book's root. Pages are known from the sources,
# so a chapter missing from the build is reported, not silently left out.
CHAPTERS = sorted(p.relative_to(ROOT).with_suffix(".html").as_posix() for p in (ROOT / "chapters").glob("*.ipynb"))
PAGES = ["book/intro.html", *CHAPTERS]
FIRST_CHAPTER = "chapters/00_getting_started.html"


def unavailable(reason: str):
    """Skip with how to enable the test, or fail in CI, where the browser tests must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site():
    if not (BUILD / "index.html").exists():
        unavailable(f"no built book in {BUILD}: run 'make book' (or set SIGPROP_BUILD_DIR)")
    handler = functools.partial(QuietHandler, directory=str(BUILD))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest's output for failures
        pass


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is missing: pip install playwright")
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM}: install it (apt-get install chromium) or set SIGPROP_CHROMIUM")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """A page opened in a fresh tab, with every console error and uncaught exception recorded."""

    def __init__(self, browser, site: str, path: str):
        if not (BUILD / path).exists():
            unavailable(f"{path} is not in the build {BUILD}: rebuild the book")
        self.errors: list[str] = []
        self.external: list[str] = []
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        self.page.on("pageerror", lambda err: self.errors.append(f"pageerror: {err}"))
        self.page.route("**/*", self._route)
        self.page.goto(f"{site}/{path}", wait_until="load")
        self.page.wait_for_timeout(300)  # async scripts (thebe settings, theme) run after load

    def _route(self, route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.external.append(route.request.url)
            route.fulfill(status=200, body="", content_type="text/plain")

    def close(self):
        self.page.close()


@pytest.fixture
def open_page(browser, site):
    pages = []

    def opener(path):
        pages.append(Page(browser, site, path))
        return pages[-1]

    yield opener
    for page in pages:
        page.close()


@pytest.mark.parametrize("path", PAGES)
def test_page_logs_no_javascript_errors_and_fetches_nothing_from_outside(open_page, path):
    page = open_page(path)
    # Scrolling through runs lazy handlers (the theme's scroll spy, images coming into view).
    page.page.mouse.wheel(0, 20000)
    page.page.wait_for_timeout(200)
    assert page.errors == [], f"{path}: {page.errors}"
    assert page.external == [], f"{path} fetched from outside localhost: {page.external}"


def expected_src(root) -> str:
    """The image the figure's own data says belongs to the controls' current positions."""
    data = json.loads(root.locator("script.sigprop-explore-data").text_content())
    flat = 0
    for k, size in enumerate(data["sizes"]):
        flat = flat * size + int(root.locator(f'[data-sigprop-index="{k}"]').input_value())
    return "data:image/png;base64," + data["images"][data["index"][flat]]


@pytest.mark.parametrize("path", CHAPTERS)
def test_explorable_figures_respond_to_every_control(open_page, path):
    page = open_page(path)
    figures = page.page.locator(".sigprop-explore")
    if path == FIRST_CHAPTER:
        assert figures.count() >= 1, "chapter 0 should have at least one explorable figure"
    elif figures.count() == 0:
        pytest.skip(f"{path} has no explorable figure")
    ids = [figures.nth(i).get_attribute("id") for i in range(figures.count())]
    assert len(set(ids)) == len(ids), f"duplicate element ids {ids}"
    for i in range(figures.count()):
        root = figures.nth(i)
        root.scroll_into_view_if_needed()
        image = root.locator("img.sigprop-explore-image")
        assert image.get_attribute("src") == expected_src(root)
        sliders = root.locator('input[type="range"]')
        for s in range(sliders.count()):
            slider = sliders.nth(s)
            before, position = image.get_attribute("src"), int(slider.input_value())
            # As a reader would: focus the slider and press an arrow key (left at the right end).
            slider.focus()
            key = "ArrowLeft" if position == int(slider.get_attribute("max")) else "ArrowRight"
            slider.press(key)
            assert int(slider.input_value()) != position, f"{ids[i]}: {key} did not move slider {s}"
            data = json.loads(root.locator("script.sigprop-explore-data").text_content())
            label = data["labels"][int(slider.get_attribute("data-sigprop-index"))][int(slider.input_value())]
            assert slider.locator("xpath=following-sibling::output[1]").text_content() == label
            assert image.get_attribute("src") == expected_src(root)
            assert image.get_attribute("src") != before, f"{ids[i]}: slider {s} did not change the image"
        selects = root.locator("select")
        for s in range(selects.count()):
            select = selects.nth(s)
            before, position = image.get_attribute("src"), int(select.input_value())
            select.select_option(str((position + 1) % select.locator("option").count()))
            assert image.get_attribute("src") == expected_src(root)
            assert image.get_attribute("src") != before, f"{ids[i]}: dropdown {s} did not change the image"
    assert page.errors == [], f"{path}: {page.errors}"
    assert page.external == [], f"{path} fetched from outside localhost: {page.external}"



@pytest.mark.parametrize("path", CHAPTERS)
def test_visible_code_fits_the_code_column(open_page, path):
    """No code cell scrolls sideways at common laptop widths (book/_static/sigprop.css)."""
    page = open_page(path).page
    scrolling = []
    for width in (1024, 1280, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(100)  # the theme lays the sidebars out again
        longest = page.evaluate(
            """() => [...document.querySelectorAll('div.cell_input pre')]
                 .filter(p => p.scrollWidth > p.clientWidth + 1)
                 .map(p => Math.max(...p.textContent.split('\\n').map(l => l.length)))"""
        )
        scrolling += [f"at {width} px, a {n}-character line" for n in longest]
    assert scrolling == [], f"{path}: code scrolls sideways: {scrolling}"
