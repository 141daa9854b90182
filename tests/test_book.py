"""The book's own rules: configuration, table of contents, notebooks, citations, install cells."""

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
REPO_URL = CONFIG["repository"]["url"]

sys.path.insert(0, str(ROOT / "tools"))
import setup_cell  # noqa: E402  (tools/ is not a package)


def _toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        for value in node.values():
            files.extend(_toc_files(value))
    elif isinstance(node, list):
        for item in node:
            files.extend(_toc_files(item))
    return files


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_config_is_jupyter_book_1_with_toc_only_and_strict_execution():
    assert CONFIG["only_build_toc_files"] is True
    assert CONFIG["execute"]["execute_notebooks"] in ("cache", "force")
    assert CONFIG["execute"]["allow_errors"] is False
    assert CONFIG["execute"]["timeout"] > 0
    assert TOC["format"] == "jb-book"
    assert CONFIG["launch_buttons"]["colab_url"] and CONFIG["launch_buttons"]["binderhub_url"]
    assert CONFIG["html"]["use_repository_button"] and CONFIG["html"]["use_download_button"]


def test_every_chapter_is_in_the_toc_and_every_toc_file_exists():
    toc = set(_toc_files(TOC)) | {TOC["root"]}
    for chapter in CHAPTERS:
        assert f"chapters/{chapter.stem}" in toc, f"{chapter.name} is not in _toc.yml"
    for entry in toc:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path):
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], f"{path.name} has stored outputs"
            assert cell.get("execution_count") is None, f"{path.name} has execution counts"


def test_the_canonical_set_up_cell_installs_this_version_from_the_configured_repository_on_colab_only():
    cell = setup_cell.canonical_cell()
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    assert f'LIBRARY = "git+{REPO_URL}@v{version}"' in cell
    assert 'if "google.colab" in sys.modules:' in cell and "--no-deps" in cell
    assert "seed_everything(" in cell and "get_device(" in cell
    assert max(len(line) for line in cell.splitlines()) <= 88


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_first_code_cell_is_the_canonical_set_up_cell(path):
    first = next(_source(c) for c in _cells(path) if c["cell_type"] == "code")
    assert first == setup_cell.canonical_cell(), (
        f"{path.name}: the set-up cell differs from tools/setup_cell.py's; run 'python tools/setup_cell.py'")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapters_have_exercises_with_collapsed_solutions_and_references(path):
    text = "\n".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")
    exercises = re.findall(r"```\{exercise\}", text)
    solutions = re.findall(r"```\{solution\}[^\n]*\n:class: dropdown", text)
    assert len(exercises) >= 4 and len(solutions) == len(exercises)
    assert "```{bibliography}" in text


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapters_have_hidden_assertions(path):
    hidden = [c for c in _cells(path) if "remove-cell" in c.get("metadata", {}).get("tags", [])]
    assert any("assert" in _source(c) for c in hidden), "claims must be asserted in remove-cell cells"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_library_code_quoted_in_the_text_is_the_library_s(path):
    """A ```python block in a chapter's prose quotes the library: each line is in lib/sigprop as written."""
    library = "\n".join(p.read_text() for p in (ROOT / "lib" / "sigprop").rglob("*.py"))
    library_lines = {line.strip() for line in library.splitlines()}
    for cell in _cells(path):
        if cell["cell_type"] != "markdown":
            continue
        for block in re.findall(r"```python\n(.*?)```", _source(cell), re.S):
            stale = [line for line in block.splitlines() if line.strip() and line.strip() not in library_lines]
            assert stale == [], f"{path.name} quotes lines that are not in the library: {stale}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_visible_code_lines_are_at_most_88_characters(path):
    """The page's code column fits 88 characters (book/_static/sigprop.css); ruff's limit is 120."""
    long = [
        line
        for cell in _cells(path)
        if cell["cell_type"] == "code"
        and not {"remove-cell", "remove-input"} & set(cell.get("metadata", {}).get("tags", []))
        for line in _source(cell).splitlines()
        if len(line) > 88
    ]
    assert long == [], f"{path.name}: visible code lines over 88 characters: {long}"


def test_every_citation_key_is_in_the_bibliography():
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), re.M))
    texts = [p.read_text() for p in (ROOT / "book").glob("*.md")]
    texts += ["\n".join(_source(c) for c in _cells(p)) for p in CHAPTERS]
    cited = set()
    for text in texts:
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            cited.update(k.strip() for k in group.split(","))
    assert cited, "no citations found"
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^make (\w+)", readme.split("```bash", 1)[1].split("```", 1)[0], re.M)
    assert commands == ["book", "test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert REPO_URL in readme


def test_requirements_pin_exact_versions_and_install_the_library():
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("#")]
    assert "-e ." in reqs
    assert "torch==2.13.0" in reqs
    unpinned = [r for r in reqs if r != "-e ." and "==" not in r]
    assert not unpinned, f"unpinned requirements: {unpinned}"
    names = {r.split("==")[0].lower() for r in reqs if "==" in r}
    for needed in ("jupyter-book", "ipywidgets", "matplotlib", "nbval", "scikit-learn", "tqdm",
                   "sphinx-exercise", "sphinxcontrib-bibtex", "pytest", "ruff", "playwright"):
        assert needed in names, f"{needed} is not pinned"


# --- book/_ext: the build's glue --------------------------------------------------------------------


def _load(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_under_test", ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeApp:
    """The little of sphinx.application.Sphinx that the extensions' setup() uses."""

    def __init__(self, config=None):
        self.config, self.connected = config, []

    def connect(self, event, handler, priority=500):
        self.connected.append((event, handler))


def test_extension_sets_the_build_environment_in_setup_not_at_import(monkeypatch):
    monkeypatch.setenv("SIGPROP_WIDGETS", "live")  # a shell's setting must not leak into the book
    monkeypatch.delenv("SIGPROP_CHECK_CLAIMS", raising=False)
    ext = _load("sigprop_book")
    assert os.environ["SIGPROP_WIDGETS"] == "live"  # importing changes nothing
    app = FakeApp()
    ext.setup(app)
    assert os.environ["SIGPROP_WIDGETS"] == "static" and os.environ["SIGPROP_CHECK_CLAIMS"] == "1"
    assert [event for event, _ in app.connected] == ["html-page-context"]  # no theme-mode handler


def test_extension_drops_the_duplicate_thebe_settings():
    from sphinx.builders.html._assets import _JavaScript

    ext = _load("sigprop_book")
    body = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript("doctools.js"), _JavaScript(None, body=body),
               _JavaScript("_static/sphinx-thebe.js"), _JavaScript("", body=body),
               _JavaScript("", body="let other = 1"), "plain.js"]
    context = {"script_files": scripts}
    ext.drop_duplicate_scripts(None, "intro", "page.html", context, None)
    assert context["script_files"] is scripts  # edited in place
    assert [getattr(s, "attributes", {}).get("body") for s in scripts] == [None, body, None, "let other = 1", None]


@pytest.mark.parametrize(("user_set", "expected"), [(False, "mathjax/tex-chtml.js"), (True, "https://x/mj.js")])
def test_offline_mathjax_lets_a_user_set_mathjax_path_stand(user_set, expected):
    from sphinx.config import Config

    ext = _load("offline_mathjax")
    overrides = {"mathjax_path": "https://x/mj.js"} if user_set else {}
    config = Config({}, overrides)
    config.add("mathjax_path", "https://cdn.example/mathjax.js", "html", ())
    config.init_values()
    app = FakeApp(config)
    ext.setup(app)
    (event, handler), = app.connected
    assert event == "config-inited"
    handler(app, config)
    assert config.mathjax_path == expected
    assert [event for event, _ in app.connected[1:]] == ([] if user_set else ["builder-inited"])


def test_config_sets_the_theme_mode_that_the_extension_no_longer_does():
    assert CONFIG["sphinx"]["config"]["html_context"]["default_mode"] in ("light", "dark", "auto")


def test_library_stamp_clears_the_cache_when_the_library_changes(tmp_path):
    stamp_script = _load("library_stamp")
    (tmp_path / "lib" / "sigprop").mkdir(parents=True)
    (tmp_path / "book" / "_ext").mkdir(parents=True)
    module = tmp_path / "lib" / "sigprop" / "models.py"
    module.write_text("x = 1\n")
    (tmp_path / "book" / "_ext" / "ext.py").write_text("y = 1\n")
    cache, stamp = tmp_path / "_build" / ".jupyter_cache", tmp_path / "_build" / ".library-stamp"
    doctrees = tmp_path / "_build" / ".doctrees"

    def build():  # what `make book` does: the stamp script, then jupyter-book fills the cache
        cleared = stamp_script.refresh(tmp_path, cache, stamp, doctrees)
        if cleared:  # Sphinx's saved environment goes with the cache, or no page is re-read
            assert not doctrees.exists()
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "executed").touch()
        doctrees.mkdir(parents=True, exist_ok=True)
        return cleared

    assert build() is False  # a first build: nothing to clear
    assert build() is False  # nothing changed: the chapters come from the cache
    assert doctrees.exists()
    (tmp_path / "lib" / "sigprop" / "__pycache__").mkdir()
    (tmp_path / "lib" / "sigprop" / "__pycache__" / "models.cpython-312.pyc").write_bytes(b"\0")
    assert build() is False  # byte code is not the library
    module.write_text("x = 2\n")
    assert build() is True  # the library changed: every chapter is executed again
    (tmp_path / "book" / "_ext" / "ext.py").write_text("y = 2\n")
    assert build() is True
    stamp.unlink()
    assert build() is True  # a cache of unknown provenance is not trusted


def test_make_book_runs_the_stamp_before_jupyter_book_and_nbval_checks_claims():
    makefile = (ROOT / "Makefile").read_text()
    book = makefile.split("\nbook:", 1)[1].split("\n\n", 1)[0]
    assert book.index("library_stamp.py") < book.index("execute_chapters.py") < book.index("jupyter-book build")
    assert "_build/.jupyter_cache" in book and CONFIG["execute"]["cache"] == "_build/.jupyter_cache"
    assert "SIGPROP_CHECK_CLAIMS=1 $(BIN)/python -m pytest --nbval-lax chapters/" in makefile
    assert '-m "not perf"' in makefile and "-m perf" in makefile
