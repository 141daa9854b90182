#!/usr/bin/env bash
# Runs inside Colab's runtime image (.github/workflows/colab.yml): every chapter through its own
# set-up cell, with Colab's packages; then checks that the set-up cell changed none of them.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r repository ref < <(python3 -c 'import sys; sys.path.insert(0, "tools"); import setup_cell as s
print(s.repository_url(), s.library_ref())')
git config --global --add safe.directory "$PWD"
git tag -f "$ref" HEAD
# The set-up cell's git+<repository>@<ref> comes from this checkout.
git config --global url."file://$PWD".insteadOf "$repository"

# Colab's kernel has imported google.colab before a notebook's first cell runs.
mkdir -p ~/.ipython/profile_default/startup
cat > ~/.ipython/profile_default/startup/00-colab.py <<'PY'
import sys
import types

try:
    import google.colab  # noqa: F401
except Exception:  # the image's package may need Colab's front end: a stand-in is enough
    sys.modules["google.colab"] = types.ModuleType("google.colab")
PY

python3 -m pip freeze --all | sort > /tmp/before.txt
python3 -m pip list
mkdir -p _build/colab
for chapter in chapters/*.ipynb; do
  echo "::group::${chapter}"
  start=${SECONDS}
  python3 -m nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
    --output-dir _build/colab "${chapter}"
  echo "::endgroup::"
  echo "${chapter}: $((SECONDS - start)) s"
done
python3 -m pip freeze --all | sort > /tmp/after.txt

grep -q '^sigprop' /tmp/after.txt || { echo "::error::the set-up cell did not install the library"; exit 1; }
if ! diff <(grep -v '^sigprop' /tmp/before.txt) <(grep -v '^sigprop' /tmp/after.txt); then
  echo "::error::the set-up cell changed Colab's packages (diff above)"
  exit 1
fi
echo "Every chapter ran on Colab's runtime; Colab's packages are unchanged."
