"""Sphinx glue for the book, loaded through `sphinx: local_extensions` in _config.yml.

Two jobs:

1. :func:`setup` (run when Sphinx loads the extension, before any notebook executes) sets two
   variables in the build's environment, which the kernels myst-nb launches inherit:
   ``SIGPROP_WIDGETS=static``, so that :func:`sigprop.widgets.explore` emits self-contained HTML
   (precomputed images, plain JavaScript) instead of live ipywidgets, which would be dead in a page
   without a kernel; and ``SIGPROP_CHECK_CLAIMS=1``, so that the chapters' hidden checks of the numbers
   their text quotes run (:func:`sigprop.runtime.claim_checks_enabled`). Both are assigned, not
   defaulted: a ``SIGPROP_WIDGETS=live`` left in the shell must not leak dead widgets into the book.

2. Every page of a Jupyter Book 1 site carried sphinx-thebe's settings script twice, and the browser
   logged ``Identifier 'THEBE_JS_URL' has already been declared`` on each page. The cause is in
   Sphinx 7: sphinx-thebe registers an inline script (``app.add_js_file(None, body=...)``) after the
   builder is initialised, so it reaches the builder once as filename ``None``; the builder's
   ``prepare_writing`` then re-adds everything in the registry as filename ``''``, and because
   ``None != ''`` its duplicate check lets the copy through (sphinx-togglebutton's inline script is
   doubled the same way, harmlessly, since it uses ``var``). :func:`drop_duplicate_scripts` removes
   the second copy of any script that differs from an earlier one only in ``None`` versus ``''``.
   This is the Sphinx bug reported and fixed upstream in https://github.com/sphinx-doc/sphinx/pull/13402
   ("Sphinx.add_js_file(): replace None filename with '' before passing to HTML builder", merged
   2025-03-02, citing exactly this THEBE_JS_URL redeclaration); the Sphinx pinned here predates it.
   Delete :func:`drop_duplicate_scripts` once the book builds with a Sphinx that contains that fix.
"""

from __future__ import annotations

import os

BUILD_ENVIRONMENT = {"SIGPROP_WIDGETS": "static", "SIGPROP_CHECK_CLAIMS": "1"}


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


def setup(app):
    os.environ.update(BUILD_ENVIRONMENT)
    # A late priority, so that scripts which other extensions add for this page are deduplicated too.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
