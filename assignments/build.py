"""Build every assignment: student notebook, autograder zip and solution, from one master notebook each.

    python assignments/build.py [NAME ...] [--out _build/assignments] [--no-run-tests]

An assignment is a folder ``assignments/<name>/`` holding the master notebook ``<name>.ipynb`` (otter's
notebook format; the shared settings are ``assignments/otter_config.yml``). For each one this runs
``otter assign`` into ``<out>/<name>/dist/``:

- ``dist/student/<name>.ipynb`` and ``dist/student/tests/``: what students get (solutions replaced
  by ``...``, public tests only). The public tests are also packed into the notebook's first cell,
  which unpacks them in Colab, where a notebook cannot see the files released next to it;
- ``dist/autograder/<name>.ipynb``: the solution; ``dist/autograder/<name>-autograder_*.zip``: the
  autograder (every test, hidden ones included) for ``otter run``, ``grade.py`` and Gradescope.

``otter assign`` grades the solution with every test and stops with an error unless it scores full
marks (``--no-run-tests`` skips that check; ``tests/test_assignments.py`` grades the solution itself).
Nothing here needs the network.
"""

from __future__ import annotations

import argparse
import base64
import glob
import io
import os
import sys
import zipfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = ROOT / "_build" / "assignments"
# The line of each master's first cell that the student version fills with its public tests.
PUBLIC_TESTS_LINE = "PUBLIC_TESTS = None"


def assignments() -> list[str]:
    """Names of the assignments: folders of ``assignments/`` that hold ``<folder>/<folder>.ipynb``."""
    return sorted(p.parent.name for p in HERE.glob("*/*.ipynb") if p.stem == p.parent.name)


def master_path(name: str) -> Path:
    return HERE / name / f"{name}.ipynb"


def dist_path(name: str, out: Path = DEFAULT_OUT) -> Path:
    return Path(out) / name / "dist"


def autograder_zip(dist: Path) -> Path:
    """The autograder zip otter wrote into ``dist/autograder`` (its name carries a timestamp)."""
    zips = sorted(glob.glob(str(Path(dist) / "autograder" / "*-autograder_*.zip")))
    if len(zips) != 1:
        raise FileNotFoundError(f"expected one autograder zip in {dist}/autograder, found {zips}")
    return Path(zips[0])


def pack_public_tests(student_dir: Path) -> str:
    """The student's ``tests/`` folder as a base64 zip, ready to unpack in Colab."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((student_dir / "tests").glob("*.py")):
            zf.write(path, f"tests/{path.name}")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def embed_public_tests(notebook: Path) -> None:
    """Replace ``PUBLIC_TESTS = None`` in the student notebook's first code cell by the packed tests."""
    nb = nbformat.read(notebook, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    lines = first.source.split("\n")
    hits = [i for i, line in enumerate(lines) if line.startswith(PUBLIC_TESTS_LINE)]
    if len(hits) != 1:
        raise ValueError(f"{notebook}: the first code cell must contain one line starting with "
                         f"{PUBLIC_TESTS_LINE!r}, found {len(hits)}")
    packed = pack_public_tests(notebook.parent)
    lines[hits[0]] = f'PUBLIC_TESTS = "{packed}"  # this assignment\'s public tests (a zip, base64)'
    first.source = "\n".join(lines)
    nbformat.write(nb, notebook)


def build(name: str, out: Path = DEFAULT_OUT, run_tests: bool = True, quiet: bool = True) -> Path:
    """Run otter assign on one assignment; return its ``dist`` folder."""
    from otter.assign import main as otter_assign

    master = master_path(name)
    if not master.is_file():
        raise FileNotFoundError(f"no master notebook {master}")
    dist = dist_path(name, out)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the grading kernel's tiny networks
    stdout = sys.stdout
    try:
        if quiet:
            sys.stdout = io.StringIO()
        otter_assign(str(master), str(dist), no_pdfs=True, no_run_tests=not run_tests)
    finally:
        sys.stdout = stdout
    # otter assign leaves its bookkeeping next to the master: keep the source folder clean.
    for leftover in (HERE / name).glob(".OTTER_LOG"):
        leftover.unlink()
    embed_public_tests(dist / "student" / f"{name}.ipynb")
    autograder_zip(dist)  # fails loudly if otter did not write exactly one
    return dist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="assignments to build (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--no-run-tests", action="store_true", help="skip grading the solution")
    args = parser.parse_args(argv)
    names = args.names or assignments()
    unknown = sorted(set(names) - set(assignments()))
    if unknown:
        parser.error(f"unknown assignment(s) {unknown}; expected some of {assignments()}")
    for name in names:
        dist = build(name, args.out, run_tests=not args.no_run_tests)
        checked = "solution graded 100%" if not args.no_run_tests else "solution not graded"
        print(f"{name}: {checked}; student version {dist / 'student'}, autograder {autograder_zip(dist).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
