"""Grade a folder of submissions offline, without Docker: one CSV row per submission.

    python assignments/grade.py AUTOGRADER_ZIP SUBMISSIONS... [--out final_grades.csv]

Each submission (an ``.ipynb``, or the ``.zip`` that the notebook's export cell writes) is executed
from the top in a fresh kernel of *this* Python environment, then every test of the autograder
zip, hidden ones included, is run against it: what ``otter run`` does for one file, here for many.
Nothing is installed and nothing is downloaded, so the environment must have what the notebooks
import (the book's ``.venv`` does). A notebook that cannot be executed at all scores 0 of 0 points
and is reported as such. (otter-grader 7's ``otter grade`` needs Docker; this script does not.)
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path


def grade_one(submission: Path, autograder: Path) -> dict:
    """Score one submission: a row with the file, each question's points, the total and the possible."""
    from otter.api import grade_submission

    results = grade_submission(str(submission), str(autograder), quiet=True)
    row = {"file": submission.name}
    for question in sorted(results.test_files):
        row[question] = results.get_score(question)
    row["total"], row["possible"] = results.total, results.possible
    row["percent"] = round(100 * results.total / results.possible, 1) if results.possible else 0.0
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("autograder", type=Path, help="the assignment's autograder zip (dist/autograder/*.zip)")
    parser.add_argument("submissions", type=Path, nargs="+", help=".ipynb or .zip files, or folders of them")
    parser.add_argument("--out", type=Path, default=Path("final_grades.csv"),
                        help="CSV to write (default: %(default)s)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    files = []
    for path in args.submissions:
        files += sorted(p for p in path.iterdir() if p.suffix in (".ipynb", ".zip")) if path.is_dir() else [path]
    if not files:
        parser.error("no .ipynb or .zip submission found")
    rows = []
    for path in files:
        row = grade_one(path, args.autograder)
        rows.append(row)
        print(f"{row['file']}: {row['total']:g} / {row['possible']:g}")
    columns = ["file"] + sorted({k for r in rows for k in r} - {"file", "total", "possible", "percent"})
    columns += ["total", "possible", "percent"]
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
