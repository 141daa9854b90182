"""The graded assignments: each builds, its solution scores full marks, a blank copy scores nothing
of the expected total, a half-done copy gets exactly the points of the questions it answers, and the
student version gives no solution and no hidden test away.

Every grading runs the notebook in a fresh kernel of this environment (``otter.api.grade_submission``,
no Docker, no network). Build and grade: about 15 to 25 s of CPU per assignment.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml

# otter 7 calls a pandas method that pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "assignments"))
otter_api = pytest.importorskip("otter.api", reason="otter-grader is not installed (see requirements.txt)")
import build  # noqa: E402  (assignments/build.py)
import grade as grade_script  # noqa: E402  (assignments/grade.py)

# What each assignment is worth, and which questions the partly correct submission answers.
EXPECTED = {
    "ch00_getting_started": {"points": {"q1": 3, "q2": 3, "q3": 2, "q4": 3}, "partial": ("q1", "q2")},
    "ch01_gradients": {"points": {"q1": 3, "q2": 3, "q3": 5, "q4": 4, "q5": 2}, "partial": ("q1", "q2")},
    "ch02_initialization": {"points": {"q1": 2, "q2": 3, "q3": 3, "q4": 3, "q5": 3}, "partial": ("q1", "q2")},
    "ch03_normalization": {"points": {"q1": 3, "q2": 3, "q3": 4, "q4": 3, "q5": 3, "q6": 3},
                           "partial": ("q1", "q2")},
    "ch04_weight_normalization": {"points": {"q1": 3, "q2": 4, "q3": 3, "q4": 3, "q5": 3},
                                  "partial": ("q1", "q2")},
    "ch05_auxiliary_losses": {"points": {"q1": 4, "q2": 3, "q3": 4, "q4": 2, "q5": 3, "q6": 3},
                              "partial": ("q1", "q2")},
}
sys.path.insert(0, str(ROOT / "tools"))
import setup_cell  # noqa: E402  (tools/setup_cell.py: the chapters' Colab install, the one reference)

LIBRARY = f"git+{setup_cell.repository_url()}@{setup_cell.library_ref()}"
ANSWER_TAG = "otter_answer_cell"
CHECK = re.compile(r'grader\.check\("(\w+)"\)')


def test_every_assignment_has_an_expected_score():
    assert build.assignments() == sorted(EXPECTED), "add each new assignment's points to EXPECTED"


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def built(request, tmp_path_factory):
    """One assignment built into a temporary folder (the solution is graded by the tests below)."""
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the grading kernels
    name = request.param
    dist = build.build(name, out=tmp_path_factory.mktemp(name), run_tests=False)
    return name, dist


def grade(notebook: Path, dist: Path):
    return otter_api.grade_submission(str(notebook), str(build.autograder_zip(dist)), quiet=True)


def notebooks(name: str, dist: Path):
    student = nbformat.read(dist / "student" / f"{name}.ipynb", as_version=4)
    solution = nbformat.read(dist / "autograder" / f"{name}.ipynb", as_version=4)
    return student, solution


def answer_cells(nb) -> dict[int, str]:
    """Index of each answer cell -> the question it answers (the next ``grader.check`` cell's)."""
    owner, pending = {}, []
    for i, cell in enumerate(nb.cells):
        if ANSWER_TAG in cell.metadata.get("tags", []):
            pending.append(i)
        match = CHECK.search(cell.source) if cell.cell_type == "code" else None
        if match:
            owner.update({j: match.group(1) for j in pending})
            pending = []
    assert not pending, "an answer cell without a grader.check cell after it"
    return owner


def test_solution_scores_full_marks(built):
    name, dist = built
    results = grade(dist / "autograder" / f"{name}.ipynb", dist)
    expected = EXPECTED[name]["points"]
    assert results.possible == sum(expected.values()), results.summary()
    assert results.total == results.possible, results.summary()
    assert {q: results.get_score(q) for q in expected} == expected


def test_untouched_student_version_scores_zero_of_the_expected_points(built):
    # A run that crashes also scores 0, but of 0 points: the total possible is what shows it ran.
    # Graded through assignments/grade.py, the instructors' batch grader, to check its row as well.
    name, dist = built
    row = grade_script.grade_one(dist / "student" / f"{name}.ipynb", build.autograder_zip(dist))
    points = EXPECTED[name]["points"]
    assert row == {"file": f"{name}.ipynb", **{q: 0 for q in points}, "total": 0,
                   "possible": sum(points.values()), "percent": 0.0}


def test_partly_answered_submission_gets_the_points_of_its_answers(built, tmp_path):
    name, dist = built
    student, solution = notebooks(name, dist)
    assert len(student.cells) == len(solution.cells), "student and solution notebooks no longer align"
    owners = answer_cells(student)
    partial = EXPECTED[name]["partial"]
    for i, question in owners.items():
        if question in partial:
            student.cells[i].source = solution.cells[i].source
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(student, path)
    results = grade(path, dist)
    points = EXPECTED[name]["points"]
    assert results.possible == sum(points.values()), results.summary()
    assert results.total == sum(points[q] for q in partial), results.summary()
    assert 0 < results.total < results.possible


def solution_lines(master: Path) -> list[str]:
    """The code lines of the master's solutions: inside BEGIN/END SOLUTION, or ending in # SOLUTION."""
    lines, inside_block = [], False
    for cell in nbformat.read(master, as_version=4).cells:
        if cell.cell_type == "raw":
            inside_block = {"# BEGIN SOLUTION": True, "# END SOLUTION": False}.get(cell.source.strip(), inside_block)
            continue
        if cell.cell_type != "code" or not inside_block:
            continue
        in_span = False
        for line in cell.source.split("\n"):
            stripped = line.strip()
            if stripped.startswith("# BEGIN SOLUTION"):
                in_span = True
            elif stripped == "# END SOLUTION":
                in_span = False
            elif stripped.endswith("# SOLUTION"):
                code = stripped[: -len("# SOLUTION")].strip()
                lines.append(code.split("=", 1)[1].strip() if re.match(r"^[\w.]+\s*=[^=]", code) else code)
            elif in_span and stripped and not stripped.startswith("#"):
                lines.append(stripped)
    return [line for line in lines if len(line) >= 8]  # `else:`, `return x` could be anyone's code


def test_student_version_contains_no_solution_and_no_hidden_test(built):
    name, dist = built
    text = (dist / "student" / f"{name}.ipynb").read_text()
    sources = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
    found = solution_lines(build.master_path(name))
    assert len(found) >= 5, "the solution scanner found almost nothing: has the master's format changed?"
    leaked = [line for line in found if line in sources]
    assert not leaked, f"solution lines in the student notebook: {leaked}"
    assert "SOLUTION" not in sources
    public = "\n".join(p.read_text() for p in (dist / "student" / "tests").glob("*.py"))
    hidden = "\n".join(p.read_text() for p in (dist / "autograder" / "tests").glob("*.py"))
    hidden_names = re.findall(r"hidden=True[^\n]*\)\ndef (\w+)", hidden)
    assert hidden_names, "expected hidden tests in the autograder"
    assert "hidden=True" not in public
    assert not [n for n in hidden_names if n in public or n in sources], "a hidden test reached the students"


def test_first_cell_installs_in_colab_only_and_unpacks_the_public_tests(built, tmp_path):
    name, dist = built
    student, _ = notebooks(name, dist)
    first = next(c for c in student.cells if c.cell_type == "code").source
    pin = re.search(r"^otter-grader==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert 'if "google.colab" in sys.modules:' in first
    assert f'    LIBRARY = "{LIBRARY}"\n    %pip install --quiet --no-deps {{LIBRARY}}' in first, (
        "install the library as the chapters' set-up cell does (tools/setup_cell.py)")
    assert f'"otter-grader=={pin}"' in first, "the Colab install must match requirements.txt's otter pin"
    packed = re.search(r'^PUBLIC_TESTS = "([A-Za-z0-9+/=]+)"', first, re.M).group(1)
    zipfile.ZipFile(io.BytesIO(base64.b64decode(packed))).extractall(tmp_path)
    unpacked = {p.name: p.read_text() for p in (tmp_path / "tests").glob("*.py")}
    released = {p.name: p.read_text() for p in (dist / "student" / "tests").glob("*.py")}
    assert unpacked == released and len(released) == len(EXPECTED[name]["points"])


def test_gradescope_installs_the_library_the_chapters_use():
    lines = (ROOT / "assignments" / "gradescope_requirements.txt").read_text().splitlines()
    assert f"sigprop @ {LIBRARY}" in lines
    torch_pin = next(ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.startswith("torch=="))
    assert torch_pin in lines


def test_masters_use_the_shared_configuration():
    shared = yaml.safe_load((ROOT / "assignments" / "otter_config.yml").read_text())
    assert shared["tests"] == {"files": True, "ok_format": False}
    assert shared["export_cell"]["pdf"] is False and shared["solutions_pdf"] is False
    for name in EXPECTED:
        nb = json.loads(build.master_path(name).read_text())
        config = yaml.safe_load("".join(nb["cells"][0]["source"]).split("\n", 1)[1])
        assert nb["cells"][0]["cell_type"] == "raw" and config == {"name": name, "config_file": "../otter_config.yml"}
        outputs = [c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any(outputs), "store the masters without outputs"
