"""Binder's environment: binder/requirements.txt is generated from requirements.txt and resolves to
PyTorch's CPU build only, with the library and nothing of the development stack.

The resolution test asks pip (in a fresh, empty virtual environment) what ``pip install -r
binder/requirements.txt`` would install, run from the repository root as repo2docker runs it. It
needs the package registries (PyPI and PyTorch's CPU wheel index, or a local copy of the pinned CPU
wheel among pip's ``find-links``); without them it is skipped with a message.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import reachable

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
sys.path.insert(0, str(BINDER))
import make_requirements  # noqa: E402  (binder/ is not a package)

# The development stack that must stay out of Binder (the issue: it overwrote Binder's server).
DEV_ONLY = ("jupyterlab", "jupyter-server", "ipykernel", "jupyter-book", "sphinx", "pytest", "playwright",
            "nbval", "ruff")


def _lines(path: Path) -> list[str]:
    return [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines() if ln.split("#", 1)[0].strip()]


def test_binder_requirements_are_what_make_lock_generates():
    assert (BINDER / "requirements.txt").read_text() == make_requirements.render(), (
        "binder/requirements.txt is stale: run 'make lock' (or python binder/make_requirements.py)")


def test_binder_pins_agree_with_requirements_txt_and_torch_is_the_cpu_build():
    root_pins = make_requirements.read_pins(ROOT / "requirements.txt")
    lines = _lines(BINDER / "requirements.txt")
    assert lines[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert lines[-1] == "-e ."
    pins = dict(ln.split("==") for ln in lines[1:-1])
    assert pins.pop("torch") == root_pins["torch"] + "+cpu"
    for name, version in pins.items():
        assert root_pins.get(name) == version, f"{name}=={version} but requirements.txt pins {root_pins.get(name)}"
    for name in ("numpy", "matplotlib", "scikit-learn", "ipywidgets", "tqdm", "pillow"):
        assert name in pins, f"{name} is imported at run time but not in binder/requirements.txt"
    leaked = [name for name in pins if name in DEV_ONLY or name.startswith(("sphinx", "jupyter-"))]
    assert not leaked, f"development packages in binder/requirements.txt: {leaked}"


def test_binder_runtime_is_a_python_3_version_the_library_supports():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-3\.(\d+)", runtime)
    assert match, runtime
    required = re.search(r'requires-python = ">=3\.(\d+)"', (ROOT / "pyproject.toml").read_text())[1]
    assert int(match[1]) >= int(required)


def test_binder_requirements_resolve_to_the_cpu_build_only(tmp_path):
    if not reachable("pypi.org"):
        pytest.skip("PyPI is not reachable: cannot resolve binder/requirements.txt offline")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    report = tmp_path / "report.json"
    # The pip of this environment, resolving for the fresh one (--python); no retries on an index
    # that is not reachable, so that a missing PyTorch index costs seconds, not minutes.
    run = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--dry-run",
         "--quiet", "--retries", "0", "--timeout", "20", "--report", str(report),
         "-r", "binder/requirements.txt"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        torch_pin = next(ln for ln in _lines(BINDER / "requirements.txt") if ln.startswith("torch=="))
        if not reachable("download.pytorch.org") and torch_pin in run.stderr.replace(" ", ""):
            pytest.skip(f"PyTorch's CPU wheel index is not reachable and no local copy of {torch_pin} "
                        "is among pip's find-links")
        pytest.fail(f"pip could not resolve binder/requirements.txt:\n{run.stderr[-3000:]}")
    installs = {item["metadata"]["name"].lower(): item for item in json.loads(report.read_text())["install"]}
    gpu = sorted(n for n in installs if n.startswith("nvidia-") or n in ("triton", "pytorch-triton"))
    assert not gpu, f"Binder would install GPU packages: {gpu}"
    assert installs["torch"]["metadata"]["version"].endswith("+cpu")
    library = installs["sigprop"]
    assert library["download_info"]["url"] == ROOT.as_uri(), "-e . must be the repository root"
    assert library["download_info"].get("dir_info", {}).get("editable") is True
    dev = sorted(n for n in installs if n in DEV_ONLY)
    assert not dev, f"Binder would install the development stack: {dev}"
