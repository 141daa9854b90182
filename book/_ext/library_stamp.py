"""Forget the executed chapters when the code they run has changed: `make book` calls this first.

jupyter-cache (``execute_notebooks: cache``) keys each chapter on its own code cells only, so after a
change to the library (``lib/sigprop``), to the build's glue (``book/_ext``, which sets the kernels'
environment) or to the pinned packages, every chapter would still be served from the cache: a fix in
the library would leave stale pages. This script hashes those files and compares the hash with the one
stored next to the cache at the last build; when they differ (or there is no stamp yet) it deletes the
cache and Sphinx's saved environment (``_build/.doctrees``: without that, Sphinx still counts every
unchanged page as up to date and never asks for it to be executed again), so that jupyter-book
re-executes every chapter, and stores the new hash.

Usage: ``python book/_ext/library_stamp.py [--root .] [--cache _build/.jupyter_cache]
[--stamp _build/.library-stamp] [--doctrees _build/.doctrees]``. Prints what it did; exit status 0.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

# What the executed notebooks depend on besides their own cells, relative to the repository root.
WATCHED = ("lib/sigprop/**/*", "book/_ext/*.py", "requirements.txt")


def library_hash(root: Path) -> str:
    """SHA-256 over the watched files' relative paths and contents, in a fixed order."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in WATCHED for p in root.glob(pattern)
                    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"})
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def refresh(root: Path, cache: Path, stamp: Path, doctrees: Path | None = None) -> bool:
    """Delete ``cache`` (and ``doctrees``) if the watched files changed since ``stamp`` was written.

    Returns True if the cache was deleted.

    A cache without a stamp (built before this script existed, or by hand) counts as stale.
    """
    current = library_hash(root)
    previous = stamp.read_text().strip() if stamp.is_file() else None
    deleted = previous != current and cache.exists()
    if deleted:
        shutil.rmtree(cache)
    if previous != current and doctrees is not None and doctrees.exists():
        shutil.rmtree(doctrees)  # else Sphinx re-reads no unchanged page, so nothing is re-executed
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current + "\n")
    return deleted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--cache", type=Path, default=Path("_build/.jupyter_cache"))
    parser.add_argument("--stamp", type=Path, default=Path("_build/.library-stamp"))
    parser.add_argument("--doctrees", type=Path, default=Path("_build/.doctrees"))
    args = parser.parse_args(argv)
    root = args.root.resolve()
    cache = args.cache if args.cache.is_absolute() else root / args.cache
    stamp = args.stamp if args.stamp.is_absolute() else root / args.stamp
    doctrees = args.doctrees if args.doctrees.is_absolute() else root / args.doctrees
    if refresh(root, cache, stamp, doctrees):
        print(f"library_stamp: lib/sigprop, book/_ext or requirements.txt changed: cleared {cache} and the "
              "saved Sphinx environment, "
              "every chapter will be executed again")
    else:
        print("library_stamp: executed chapters are up to date with the library")


if __name__ == "__main__":
    main()
