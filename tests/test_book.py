"""The book's own rules: configuration, table of contents, notebooks, citations, install cells."""

import json
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
