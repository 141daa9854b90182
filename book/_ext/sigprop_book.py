"""Sphinx glue for the book, loaded through `sphinx: local_extensions` in _config.yml.

Importing this module during a build sets ``SIGPROP_WIDGETS=static`` in the build's environment,
so the kernels that execute the chapters inherit it and :func:`sigprop.widgets.explore` emits
self-contained HTML instead of live ipywidgets (see lib/sigprop/widgets.py).
"""

import os

os.environ.setdefault("SIGPROP_WIDGETS", "static")
# Nobody waits at a static page: no progress bars in the built book (tqdm reads TQDM_* defaults).
os.environ.setdefault("TQDM_DISABLE", "1")


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
