"""Serve MathJax from the book itself, so that equations render without a network.

Sphinx loads MathJax 3 from a CDN by default; a reader offline, behind a firewall, or our own browser
tests would then see raw TeX. The MathJax 3 files come from the pinned PyPI package
``django-static-mathjax`` (only its static files are used; Django is not needed). At build start the
parts the book needs (``tex-chtml.js``, its fonts and the TeX extensions it may load on demand) are
copied into a folder that is added to ``html_static_path``, and ``mathjax_path`` points at the copy,
unless the book's configuration sets ``mathjax_path`` itself: a user's choice stands (and then nothing
is copied).
"""

import importlib.util
import shutil
from pathlib import Path

NEEDED = ["tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions"]


def _mathjax_es5() -> Path:
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MathJax files not found: install the pinned 'django-static-mathjax' (requirements.txt)")
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise RuntimeError(f"expected MathJax 3 at {es5}, found no tex-chtml.js there")
    return es5


LOCAL_PATH = "mathjax/tex-chtml.js"  # relative paths are resolved against _static/


def _use_local_mathjax(app, config) -> None:
    """Point ``mathjax_path`` at the local copy, unless the configuration chose a path itself."""
    # Jupyter Book passes _config.yml's sphinx.config as overrides; a conf.py lands in the raw config.
    if "mathjax_path" in config.overrides or "mathjax_path" in getattr(config, "_raw_config", {}):
        return
    config.mathjax_path = LOCAL_PATH
    app.connect("builder-inited", _copy_mathjax)


def _copy_mathjax(app) -> None:
    es5 = _mathjax_es5()
    static = Path(app.outdir).parent / "mathjax_static"
    target = static / "mathjax"
    for part in NEEDED:
        source, dest = es5 / part, target / part
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    app.config.html_static_path.append(str(static))


def setup(app):
    # After the configuration is read, so that a mathjax_path the user set can be seen (and kept).
    app.connect("config-inited", _use_local_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
