"""The chapters' set-up cell: one canonical text, written into every chapter's first code cell.

On Colab (``"google.colab" in sys.modules``) the cell installs the book's library from the repository
at the tag of this release, ``v<version>`` (the version in ``pyproject.toml``, the one place it is
written; the repository's address is written once, in ``_config.yml``). ``--no-deps`` leaves Colab's
own torch, numpy, matplotlib, scikit-learn and ipywidgets exactly as they are: the library runs on
what Colab has (``tests/test_colab_install.py`` checks this in a Colab-like environment, with
ipywidgets 7 and 8). Everywhere else (a local ``make lab``, Binder, the book's build) the library is
already installed by ``requirements.txt`` or ``binder/requirements.txt`` and nothing is installed.

``python tools/setup_cell.py`` rewrites the first code cell of every ``chapters/*.ipynb`` (only that
cell's source; outputs stay empty); ``--check`` exits 1 if one differs. ``tests/test_book.py`` checks
the same. After changing the version: ``make lock``, commit, and push the tag ``v<version>``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = '''\
# Set-up. On Colab only: install the book's library at the version these chapters use,
# leaving Colab's own torch, numpy and ipywidgets as they are (--no-deps). Elsewhere,
# requirements.txt has installed it (see the README).
import sys

if "google.colab" in sys.modules:
    LIBRARY = "git+{repository}@{ref}"
    %pip install --quiet --no-deps {{LIBRARY}}

from sigprop.runtime import (by_scale, describe_device, experiment_scale, get_device,
                             seed_everything)

generator = seed_everything(0)
device = get_device()
print(describe_device(device))
print(f"experiment scale: {{experiment_scale()}} (SIGPROP_SCALE=large runs larger ones)")'''


def repository_url(root: Path = ROOT) -> str:
    """The repository's address, from ``_config.yml`` (written there once)."""
    return yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def library_ref(root: Path = ROOT) -> str:
    """The git tag the chapters install on Colab: ``v`` + the version in ``pyproject.toml``."""
    match = re.search(r'^version\s*=\s*"([^"]+)"', (root / "pyproject.toml").read_text(), re.M)
    return "v" + match[1]


def canonical_cell(root: Path = ROOT) -> str:
    """The source every chapter's first code cell must have."""
    return TEMPLATE.format(repository=repository_url(root), ref=library_ref(root))


def chapters(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").glob("*.ipynb"))


def first_code_cell(notebook: dict) -> dict:
    return next(c for c in notebook["cells"] if c["cell_type"] == "code")


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def write(path: Path, text: str) -> bool:
    """Set the first code cell of ``path`` to ``text``; True if the file changed."""
    raw = path.read_text()
    notebook = json.loads(raw)
    cell = first_code_cell(notebook)
    if source(cell) == text:
        return False
    cell["source"] = text.splitlines(keepends=True)
    # nbformat's own layout (indent 1, non-ASCII kept), so that the diff is that one cell.
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a chapter's set-up cell differs")
    args = parser.parse_args(argv)
    text = canonical_cell()
    stale = [p for p in chapters() if source(first_code_cell(json.loads(p.read_text()))) != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)}: set-up cell differs; run 'python tools/setup_cell.py'",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        write(path, text)
        print(f"rewrote the set-up cell of {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
