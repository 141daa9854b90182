"""The built site as readers and search engines meet it: launch buttons, titles and descriptions,
canonical addresses, the sitemap, the 404 page and Sphinx's site search.

Reads the built HTML (``make book``, or ``SIGPROP_BUILD_DIR`` for another build's ``html`` folder).
Every chapter found in ``chapters/`` is checked, not a fixed list. Without a build these tests are
skipped with a message outside CI, and fail with ``CI=true``.
"""

import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from xml.etree import ElementTree

import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("SIGPROP_BUILD_DIR", ROOT / "_build" / "html"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
REPOSITORY = CONFIG["repository"]
LAUNCH = CONFIG["launch_buttons"]
OWNER, REPO = urlparse(REPOSITORY["url"]).path.strip("/").split("/")
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import publishing  # noqa: E402  (book/_ext is not a package)

SITE = os.environ.get("SIGPROP_SITE_URL") or publishing.pages_url(REPOSITORY["url"])
SITE = SITE.rstrip("/") + "/"


def unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the built site must be tested)")
    pytest.skip(reason)


def page(relative: str) -> BeautifulSoup:
    path = BUILD / relative
    if not path.exists():
        unavailable(f"{relative} is not in the build {BUILD}: run 'make book' (or set SIGPROP_BUILD_DIR)")
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def test_site_address_is_github_pages_of_the_configured_repository():
    assert publishing.pages_url("https://github.com/Some-Org/Some-Book") == "https://some-org.github.io/Some-Book/"
    assert publishing.pages_url("https://github.com/someone/someone.github.io") == "https://someone.github.io/"
    with pytest.raises(ValueError, match="OWNER/REPO"):
        publishing.pages_url("https://gitlab.com/a/b")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_launch_buttons_open_this_chapter_of_the_configured_repository(chapter):
    soup = page(f"chapters/{chapter}.html")
    links = [a["href"] for a in soup.find_all("a", href=True)]
    colab = [h for h in links if h.startswith(LAUNCH["colab_url"])]
    binder = [h for h in links if h.startswith(LAUNCH["binderhub_url"])]
    notebook = f"chapters/{chapter}.ipynb"
    assert (ROOT / notebook).exists()
    assert colab == [f"{LAUNCH['colab_url']}/github/{OWNER}/{REPO}/blob/{REPOSITORY['branch']}/{notebook}"]
    assert len(binder) == 1, binder
    url = urlparse(binder[0])
    assert f"{url.scheme}://{url.netloc}" == LAUNCH["binderhub_url"]
    assert url.path == f"/v2/gh/{OWNER}/{REPO}/{REPOSITORY['branch']}"
    interface = {"classic": "tree", "jupyterlab": "lab/tree"}[LAUNCH["notebook_interface"]]
    assert parse_qs(url.query)["urlpath"] == [f"{interface}/{notebook}"]


def _chapter_heading(soup: BeautifulSoup, numbered: bool = True) -> str:
    """The page's own heading (the one with a permalink), with or without its chapter number."""
    h1 = next(h for h in soup.find_all("h1") if h.find("a", class_="headerlink"))
    number = h1.find("span", class_="section-number")
    text = re.sub(r"\s+", " ", h1.get_text("")).strip().removesuffix("#").strip()
    if number is not None and not numbered:
        text = text.removeprefix(number.get_text("")).strip()
    return text


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_pages_have_a_title_a_description_from_their_text_and_a_canonical_address(chapter):
    soup = page(f"chapters/{chapter}.html")
    heading = _chapter_heading(soup)
    assert heading
    assert soup.title.get_text(strip=True) == f"{heading} — {CONFIG['title']}"
    descriptions = soup.find_all("meta", attrs={"name": "description"})
    assert len(descriptions) == 1, "one description per page"
    text = descriptions[0]["content"]
    assert 40 <= len(text) <= publishing.DESCRIPTION_LENGTH, text
    body = re.sub(r"\s+", " ", soup.find("main").get_text(" "))
    assert text.rstrip("…")[:40] in body, f"the description is not from the page: {text!r}"
    canonical = soup.find("link", rel="canonical")
    assert canonical and canonical["href"] == f"{SITE}chapters/{chapter}.html"


def test_descriptions_differ_between_chapters():
    texts = [page(f"chapters/{c}.html").find("meta", attrs={"name": "description"})["content"] for c in CHAPTERS]
    assert len(set(texts)) == len(texts)


def test_sitemap_lists_every_page_readers_land_on_and_nothing_else():
    path = BUILD / "sitemap.xml"
    if not path.exists():
        unavailable(f"no sitemap.xml in {BUILD}: run 'make book'")
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locs = {loc.text for loc in ElementTree.parse(path).getroot().findall("s:url/s:loc", ns)}
    for chapter in CHAPTERS:
        assert f"{SITE}chapters/{chapter}.html" in locs
    assert f"{SITE}book/intro.html" in locs
    assert all(loc.startswith(SITE) for loc in locs)
    assert not {f"{SITE}{p}" for p in ("search.html", "genindex.html", "404.html")} & locs


def test_404_page_works_from_any_depth_with_absolute_links():
    soup = page("404.html")
    assert "Page not found" in soup.title.get_text()
    assert soup.find("meta", attrs={"name": "robots", "content": "noindex"}), "search engines should skip it"
    assert CONFIG["title"] in soup.find("main").get_text(), "the 404 page names the book"
    prefix = urlparse(SITE).path
    local = [tag.get(attr) for tag, attr in [(t, "href") for t in soup.find_all(["a", "link"], href=True)]
             + [(t, "src") for t in soup.find_all(["script", "img"], src=True)]]
    local = [u for u in local if u and not u.startswith(("http:", "https:", "#", "mailto:", "data:"))]
    assert local, "no local links on the 404 page"
    relative = [u for u in local if not u.startswith(prefix)]
    assert not relative, f"links that break below the site root: {relative[:5]}"
    targets = {a["href"] for a in soup.find_all("a", href=True)}
    assert f"{prefix}search.html" in targets and f"{prefix}index.html" in targets


def _search_index() -> dict:
    path = BUILD / "searchindex.js"
    if not path.exists():
        unavailable(f"no searchindex.js in {BUILD}: run 'make book'")
    text = path.read_text(encoding="utf-8")
    return json.loads(text[text.index("(") + 1: text.rindex(")")])


def test_sphinx_search_indexes_every_chapter_under_its_title_and_words():
    from sphinx.search.en import SearchEnglish

    index, stem = _search_index(), SearchEnglish({}).stem
    assert (BUILD / "search.html").exists()
    for chapter in CHAPTERS:
        doc = index["docnames"].index(f"chapters/{chapter}")
        title = BeautifulSoup(index["titles"][doc], "html.parser").get_text("")  # may hold the number's <span>
        assert title == _chapter_heading(page(f"chapters/{chapter}.html"))
        words = re.findall(r"[A-Za-z]{5,}", title.split(" ", 1)[-1])
        assert words, title
        term = stem(words[-1].lower())
        docs = set()
        for table in ("terms", "titleterms"):
            entry = index[table].get(term, [])
            docs |= set(entry if isinstance(entry, list) else [entry])
        assert doc in docs, f"searching '{words[-1]}' would not find {chapter}"


@pytest.mark.browser
def test_searching_a_chapters_title_word_in_a_browser_lists_that_chapter():
    """Sphinx's search page, run by a real browser over http, as a reader types into the search box."""
    import functools
    import shutil
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    if not (BUILD / "search.html").exists():
        unavailable(f"no search.html in {BUILD}: run 'make book'")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is missing: pip install playwright")
    chromium = os.environ.get("SIGPROP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        unavailable(f"no Chromium at {chromium}: install it (apt-get install chromium) or set SIGPROP_CHROMIUM")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(BUILD)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            tab = browser.new_page()
            # Nothing leaves localhost (the theme may ask a CDN for fonts or MathJax).
            tab.route("**/*", lambda r: r.continue_() if urlparse(r.request.url).hostname == "127.0.0.1"
                      else r.fulfill(status=200, body=""))
            for chapter in CHAPTERS:
                title = _chapter_heading(page(f"chapters/{chapter}.html"), numbered=False)
                word = re.findall(r"[A-Za-z]{5,}", title)[-1]
                tab.goto(f"{site}/search.html?q={word}", wait_until="load")
                tab.wait_for_selector("ul.search li a", timeout=15000)
                hrefs = tab.eval_on_selector_all("ul.search li a", "els => els.map(e => e.getAttribute('href'))")
                assert any(f"chapters/{chapter}.html" in h for h in hrefs), f"'{word}': {hrefs}"
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
