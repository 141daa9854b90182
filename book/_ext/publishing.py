"""What the published site needs besides the pages: its address, a sitemap, a 404 page, descriptions.

Loaded through ``sphinx: local_extensions`` in ``_config.yml``. The repository's address is written
once, in ``_config.yml`` (``repository: url``, which Jupyter Book hands to the theme as
``html_theme_options["repository_url"]``); everything here is derived from it:

- ``html_baseurl``, the GitHub Pages address of a project site, ``https://OWNER.github.io/REPO/``
  (unless ``_config.yml`` sets one, or the environment variable ``SIGPROP_SITE_URL`` does, as the
  Pages workflow does with the address GitHub reports): Sphinx writes each page's ``<link rel="canonical">`` from it and
  sphinx-sitemap (``sphinx_sitemap`` in ``extra_extensions``) writes ``sitemap.xml`` with it;
- ``notfound_urls_prefix`` for sphinx-notfound-page (``notfound.extension``), ``/REPO/``: GitHub
  Pages serves ``404.html`` for any missing path under the site, so its stylesheets, scripts and
  links must be absolute; the 404 page's text (``notfound_context``) points to the start page and the
  search page;
- a ``<meta name="description">`` per page that has none from its front matter (MyST ``html_meta``):
  the page's first paragraph, as plain text (math and code left out), cut at a word before
  :data:`DESCRIPTION_LENGTH` characters. Search engines show it under the title.
"""

from __future__ import annotations

import html
import os
import re
from urllib.parse import urlparse

from docutils import nodes

DESCRIPTION_LENGTH = 160  # what search engines show of a description, about


def pages_url(repository_url: str) -> str:
    """GitHub Pages' address for a repository: ``https://github.com/o/r`` -> ``https://o.github.io/r/``."""
    parts = urlparse(repository_url)
    path = [p for p in parts.path.split("/") if p]
    if parts.netloc != "github.com" or len(path) != 2:
        raise ValueError(f"expected https://github.com/OWNER/REPO as the repository url, got {repository_url!r}")
    owner, repo = path[0], path[1].removesuffix(".git")
    if repo.lower() == f"{owner.lower()}.github.io":  # a user or organisation site is served at the root
        return f"https://{repo.lower()}/"
    return f"https://{owner.lower()}.github.io/{repo}/"


def configure(app, config) -> None:
    """Derive the site's address and the 404 page's settings from the repository's address."""
    repository = (config.html_theme_options or {}).get("repository_url")
    if os.environ.get("SIGPROP_SITE_URL"):  # what GitHub Pages reports in CI (a custom domain, say)
        config.html_baseurl = os.environ["SIGPROP_SITE_URL"]
    if not config.html_baseurl:
        if not repository:
            return
        config.html_baseurl = pages_url(repository)
    if not config.html_baseurl.endswith("/"):
        config.html_baseurl += "/"
    prefix = urlparse(config.html_baseurl).path or "/"
    config.notfound_urls_prefix = prefix
    config.notfound_context = {
        "title": "Page not found",
        "body": (
            "<h1>Page not found</h1>\n"
            f"<p>There is no page at this address in <em>{html.escape(config.html_title or config.project)}</em>. "
            f'Start from <a href="{prefix}index.html">the first page</a>, or '
            f'<a href="{prefix}search.html">search the book</a>.</p>'
        ),
    }


def _plain_text(node: nodes.Node) -> str:
    parts = []
    for child in node.children:
        if isinstance(child, (nodes.math, nodes.literal, nodes.raw, nodes.footnote_reference,
                              nodes.citation_reference, nodes.system_message)):
            continue
        parts.append(child.astext() if isinstance(child, nodes.Text) else _plain_text(child))
    return "".join(parts)


def description(doctree: nodes.document, limit: int = DESCRIPTION_LENGTH) -> str:
    """The first paragraph of ``doctree`` with text in it, as one line of at most ``limit`` characters."""
    for paragraph in doctree.findall(nodes.paragraph):
        text = re.sub(r"\s+", " ", _plain_text(paragraph)).strip()
        text = re.sub(r"\s+([,.;:)])", r"\1", text)  # where a left-out formula stood before punctuation
        if len(text) < 40:  # a caption or a label, not the page's opening
            continue
        if len(text) > limit:
            text = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
        return text
    return ""


def add_description(app, pagename, templatename, context, doctree) -> None:
    """Add ``<meta name="description">`` to a page that has none (see the module docstring)."""
    if pagename == getattr(app.config, "notfound_pagename", "404"):  # not a page to list in search results
        context["metatags"] = context.get("metatags", "") + '\n    <meta name="robots" content="noindex" />'
    if doctree is None or 'name="description"' in context.get("metatags", ""):
        return
    text = description(doctree)
    if text:
        context["metatags"] = context.get("metatags", "") + (
            f'\n    <meta name="description" content="{html.escape(text, quote=True)}" />')


def setup(app):
    # Before sphinx-notfound-page checks its prefix (also on config-inited, at the default priority).
    app.connect("config-inited", configure, priority=400)
    app.connect("html-page-context", add_description)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
