"""The chapters' install step in a Colab-like environment: it adds the library and changes nothing else,
and the explorable figures build their live widget there, with ipywidgets 7 (Colab's) and 8.

The environment, made fresh for each case under ``tmp_path``:

- "preinstalled" packages, as Colab has them in its system site-packages: this environment's own
  packages (torch, numpy, matplotlib, scikit-learn, tqdm, pillow, pip...), seen through a folder of
  links that a ``.pth`` file adds to a new virtual environment (the ``--system-site-packages``
  pattern, without installing torch again), less the library itself;
- for ipywidgets 7, Colab's widget and kernel stack installed on top (:data:`COLAB_WIDGETS_7`), which
  is what Colab's runtime ships (ipywidgets 7.7.1 with IPython 7.34 and ipykernel 6.17);
- a kernel started from that environment, which runs a stand-in ``google.colab`` module, then the
  chapters' set-up cell *verbatim* (the canonical cell of tools/setup_cell.py, which every chapter
  has). Its ``git+<repository>@v<version>`` is served from a local git repository made from this
  checkout (``lib/``, ``pyproject.toml``, ``README.md``) and tagged ``v<version>``, through git's
  ``url.<base>.insteadOf`` (environment variables ``GIT_CONFIG_*``), so no byte comes from GitHub;
- then ``sigprop.widgets.explore`` in that kernel: its live box is displayed (a widget view output),
  and moving a control redraws the image.

``pip freeze`` before and after the set-up cell must differ by exactly ``sigprop`` (nothing replaced,
upgraded or downgraded). Needs PyPI (Colab's ipywidgets 7 stack, and setuptools to build the
library); skipped with a message without it. About 30-60 s per case with a warm pip cache.
"""

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from conftest import reachable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import setup_cell  # noqa: E402  (tools/ is not a package)

# Colab's preinstalled widget stack (ipywidgets 7; Colab's IPython and ipykernel to match).
COLAB_WIDGETS_7 = ["ipywidgets==7.7.1", "ipython==7.34.0", "ipykernel==6.17.1"]
# Left out of the preinstalled folder: the library (the install step must bring it) and, for the
# ipywidgets 7 case, the packages that Colab's versions replace.
NOT_PREINSTALLED = ("sigprop", "__editable__", "_sigprop")
WIDGET_STACK = ("ipywidgets", "widgetsnbextension", "jupyterlab_widgets", "ipykernel", "IPython", "ipython-")

# What the set-up cell looks for: Colab's kernel has imported google.colab before the first cell.
FAKE_COLAB = 'import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")'

CHECK = '''
import json
import ipywidgets
import matplotlib.pyplot as plt
import sigprop
from sigprop.widgets import explore

def draw(depth=2, activation="tanh"):
    fig, ax = plt.subplots(figsize=(2.5, 1.5), dpi=60)
    ax.plot(range(depth), label=activation)
    ax.set_title(f"{activation}, depth {depth}")
    return fig

figure = explore(draw, depth=[2, 3, 4], activation=["tanh", "relu"])
controls = figure.widgets
before = figure.image.value
controls["depth"].value = 4
print(json.dumps({"ipywidgets": ipywidgets.__version__, "sigprop": sigprop.__file__,
                  "redrawn": figure.image.value != before, "error": figure.error.value}))
figure
'''


def _preinstalled(folder: Path, drop: tuple[str, ...]) -> Path:
    """A folder of links to this environment's site-packages entries, less the names in ``drop``."""
    folder.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(drop) and entry.suffix != ".pth":
            (folder / entry.name).symlink_to(entry)
    return folder


def _freeze(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                         check=True).stdout
    return dict(re.split(r"==| @ ", line, maxsplit=1) for line in out.splitlines() if line.strip())


def _tagged_checkout(path: Path, ref: str) -> Path:
    """A git repository holding this checkout's library, with the tag the set-up cell installs."""
    path.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", path)
    shutil.copy2(ROOT / "README.md", path)
    shutil.copytree(ROOT / "lib", path / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    git = ["git", "-C", str(path), "-c", "user.name=test", "-c", "user.email=test@localhost"]
    for args in (["init", "--quiet"], ["add", "-A"], ["commit", "--quiet", "-m", "library"], ["tag", ref]):
        subprocess.run(git + args, check=True)
    return path


@pytest.fixture(scope="module")
def online():
    if not reachable("pypi.org"):
        pytest.skip("PyPI is not reachable: the Colab-like environment needs it (ipywidgets 7, setuptools)")


@pytest.mark.parametrize("widgets", ["7", "8"], ids=lambda v: f"ipywidgets{v}")
def test_install_step_adds_only_the_library_and_explore_builds_its_live_widget(online, widgets, tmp_path,
                                                                              monkeypatch):
    drop = NOT_PREINSTALLED + (WIDGET_STACK if widgets == "7" else ())
    base = _preinstalled(tmp_path / "preinstalled", drop)
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "colab_preinstalled.pth").write_text(f"{base}\n")
    if widgets == "7":
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *COLAB_WIDGETS_7], check=True,
                       timeout=300)
    before = _freeze(python)
    assert before.get("ipywidgets", "").startswith(f"{widgets}."), before.get("ipywidgets")
    assert "sigprop" not in before

    cell = setup_cell.canonical_cell()
    repository, ref = setup_cell.repository_url(), setup_cell.library_ref()
    checkout = _tagged_checkout(tmp_path / "repository", ref)
    kernels = tmp_path / "jupyter" / "kernels" / "colab-like"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("SIGPROP_WIDGETS", "live")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{checkout.as_uri()}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", repository)
    monkeypatch.delenv("PYTHONPATH", raising=False)

    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(FAKE_COLAB), nbformat.v4.new_code_cell(cell),
                nbformat.v4.new_code_cell(CHECK)]
    NotebookClient(nb, kernel_name="colab-like", timeout=300, allow_errors=False,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    after = _freeze(python)
    assert set(after) - set(before) == {"sigprop"}, f"added: {sorted(set(after) - set(before))}"
    changed = {name: (before[name], after.get(name)) for name in before if after.get(name) != before[name]}
    assert not changed, f"the install step replaced preinstalled packages: {changed}"

    stdout = "".join(o.get("text", "") for o in nb.cells[2].outputs if o["output_type"] == "stream")
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["ipywidgets"].startswith(f"{widgets}.")
    assert Path(result["sigprop"]).is_relative_to(venv), f"library imported from {result['sigprop']}"
    assert result["redrawn"] and result["error"] == "", result
    views = [o for o in nb.cells[2].outputs
             if o["output_type"] in ("display_data", "execute_result")
             and "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1 and views[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
