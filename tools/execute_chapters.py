"""Execute the chapters side by side into the build's execution cache, before ``jupyter-book build``.

Jupyter Book 1 (MyST-NB with ``execute_notebooks: cache``) executes the chapters one after another,
and each runs on one thread (the chapters call ``torch.set_num_threads(1)``), so on a 2-core machine
half of it idles through the build. This script runs every chapter that has no record in the cache
yet in its own process, as many at once as there are cores, with what the build would use: the
environment ``book/_ext/sigprop_book.py`` sets (static widgets, claim checks on), the chapter's own
folder as the working directory, and ``_config.yml``'s timeout and error policy. Each executed
notebook is then stored in the cache, one at a time from this process (the cache is one SQLite file),
where the build finds it: its log says ``Using cached notebook``. A chapter that fails is not stored,
so the build executes it again and reports the error as it always has; this script only saves time.

Usage (``make book`` runs it after ``library_stamp.py``, which may have cleared the cache)::

    python tools/execute_chapters.py [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import suppress
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
from sigprop_book import BUILD_ENVIRONMENT  # noqa: E402  (book/_ext is not a package)


def build_settings() -> dict:
    """The execution settings of ``_config.yml`` that this script must share with the build."""
    execute = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]
    if execute.get("execute_notebooks") != "cache":
        raise SystemExit(f"_config.yml executes with {execute.get('execute_notebooks')!r}; this script "
                         "fills the cache that 'cache' mode reads, so it has nothing to do")
    return {"cache": ROOT / execute["cache"], "timeout": execute.get("timeout", 30),
            "allow_errors": bool(execute.get("allow_errors", False))}


def chapters() -> list[Path]:
    """The chapters of the table of contents, in its order."""
    toc = (ROOT / "_toc.yml").read_text()
    return [p for p in sorted((ROOT / "chapters").glob("*.ipynb")) if f"chapters/{p.stem}" in toc]


def execute(path: Path, timeout: int, allow_errors: bool) -> tuple[Path, str | None, float, str | None]:
    """Run one chapter in a fresh kernel; return it executed (as JSON) or the error."""
    os.environ.update(BUILD_ENVIRONMENT)  # the kernel inherits this process's environment
    notebook = nbformat.read(path, as_version=4)
    result = single_nb_execution(notebook, cwd=str(path.parent), timeout=timeout,
                                 allow_errors=allow_errors, meta_override=True)
    if result.err is not None:
        return path, None, result.time, result.exc_string
    return path, nbformat.writes(notebook), result.time, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="chapters at once")
    args = parser.parse_args(argv)
    settings = build_settings()
    cache = get_cache(str(settings["cache"]))
    todo = []
    for path in chapters():
        with suppress(KeyError):  # KeyError: no record of this notebook's code in the cache
            if cache.match_cache_notebook(nbformat.read(path, as_version=4)) is not None:
                continue
        todo.append(path)
    if not todo:
        print("execute_chapters: every chapter is in the cache")
        return 0
    jobs = max(1, min(args.jobs, len(todo)))
    print(f"execute_chapters: {len(todo)} chapters, {jobs} at a time", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(execute, p, settings["timeout"], settings["allow_errors"]) for p in todo]
        for future in as_completed(futures):
            path, executed, seconds, error = future.result()
            name = path.relative_to(ROOT)
            if error is not None:  # the build runs it again and shows the traceback
                print(f"execute_chapters: {name} failed after {seconds:.0f} s; the build will retry it",
                      flush=True)
                continue
            record = cache.add_nb_to_project(str(path))
            cache.cache_notebook_bundle(
                CacheBundleIn(nbformat.reads(executed, as_version=4), record.uri,
                              data={"execution_seconds": seconds}),
                check_validity=False, overwrite=True)
            print(f"execute_chapters: {name} executed in {seconds:.0f} s", flush=True)
    print(f"execute_chapters: done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
