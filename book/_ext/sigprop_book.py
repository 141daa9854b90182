"""Sphinx glue for the book, loaded through `sphinx: local_extensions` in _config.yml.

Two jobs:

1. Importing this module during a build sets ``SIGPROP_WIDGETS=static`` in the build's environment,
   so the kernels that myst-nb launches to execute the chapters inherit it and
   :func:`sigprop.widgets.explore` emits self-contained HTML (precomputed images, plain JavaScript)
   instead of live ipywidgets, which would be dead in a page without a kernel. It is assigned, not
   defaulted: a ``SIGPROP_WIDGETS=live`` left in the shell must not leak dead widgets into the book.

2. Every page of a Jupyter Book 1 site carried sphinx-thebe's settings script twice, and the browser
   logged ``Identifier 'THEBE_JS_URL' has already been declared`` on each page. The cause is in
   Sphinx 7: sphinx-thebe registers an inline script (``app.add_js_file(None, body=...)``) after the
   builder is initialised, so it reaches the builder once as filename ``None``; the builder's
   ``prepare_writing`` then re-adds everything in the registry as filename ``''``, and because
   ``None != ''`` its duplicate check lets the copy through (sphinx-togglebutton's inline script is
   doubled the same way, harmlessly, since it uses ``var``). :func:`drop_duplicate_scripts` removes
   the second copy of any script that differs from an earlier one only in ``None`` versus ``''``.

3. pydata-sphinx-theme (under sphinx-book-theme) writes ``localStorage.getItem("mode") || ""`` into
   each page, so a first visit, with nothing stored, logs ``Got invalid theme mode: . Resetting to
   auto.`` as a console error. :func:`default_theme_mode` sets the template variable ``default_mode``
   to ``auto`` (what the theme falls back to anyway) unless ``html_context`` already sets it.
"""

from __future__ import annotations

import os

os.environ["SIGPROP_WIDGETS"] = "static"


def _script_key(script) -> tuple:
    # Sphinx's _JavaScript: filename (None or '' for inline scripts), priority, attributes (incl. body).
    return (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep the first copy of each script in the page's ``script_files`` (see the module docstring)."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, kept = set(), []
    for script in scripts:
        try:
            key = _script_key(script)
        except AttributeError:  # a plain string, as themes may put there: leave it alone
            kept.append(script)
            continue
        if key not in seen:
            seen.add(key)
            kept.append(script)
    # In place: the list is the builder's own, and handlers that run later may still append to it.
    scripts[:] = kept


def default_theme_mode(app, config) -> None:
    """Give the theme a valid mode for readers who never picked one (see the module docstring)."""
    config.html_context = {"default_mode": "auto", **config.html_context}


def setup(app):
    app.connect("config-inited", default_theme_mode)
    # A late priority, so that scripts which other extensions add for this page are deduplicated too.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
