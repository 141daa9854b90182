# One entry point for the book. `make book` builds it, `make test` runs every test.
# Both create the virtual environment in .venv on first use and reuse it afterwards.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test site nbval unit bench lint serve lab clean lock

# Reinstall only when the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# Executes every chapter (cached in _build/.jupyter_cache) and builds the HTML; any warning fails the build.
# The cache keys on each notebook's cells only: library_stamp.py clears it when lib/sigprop, book/_ext or
# the pins changed since the last build, so that a library change re-executes the chapters.
# execute_chapters.py runs the chapters that are not cached side by side, one per core, into that
# cache (the build alone would run them one after another, on one thread each).
book: $(STAMP)
	$(BIN)/python book/_ext/library_stamp.py --cache _build/.jupyter_cache --stamp _build/.library-stamp \
		--doctrees _build/.doctrees
	$(BIN)/python tools/execute_chapters.py
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "The book is in _build/html: open $(CURDIR)/_build/html/index.html (or run 'make serve')."

lint: $(STAMP)
	$(BIN)/ruff check lib tests chapters tools binder book/_ext

# Lint; then side by side (each runs on one thread): the book's build followed by the tests of the
# built site (in a browser), every notebook under nbval (with the claim checks on, as in the build),
# and the tests that need no built site (library, claims, assignments, Binder and Colab set-ups).
# Timings are not tests: they run in `make bench`.
SITE_TESTS := tests/test_browser.py tests/test_publishing.py
test: lint
	$(MAKE) --no-print-directory -j3 site nbval unit

site: book
	$(BIN)/python -m pytest $(SITE_TESTS) -m "not perf"

unit: $(STAMP)
	$(BIN)/python -m pytest tests -m "not perf" $(addprefix --ignore=,$(SITE_TESTS))

nbval: $(STAMP)
	SIGPROP_CHECK_CLAIMS=1 $(BIN)/python -m pytest --nbval-lax chapters/ -p no:cacheprovider

# Timings and ratios (live redraw latency per chapter figure, ...), printed; on a shared machine they vary.
bench: $(STAMP)
	$(BIN)/python -m pytest -m perf tests/ -s -p no:cacheprovider

# Every assignment's student notebook, autograder zip and solution, in _build/assignments/<name>/dist
# (assignments/README.md). Fails unless each solution scores full marks.
.PHONY: assignments
assignments: $(STAMP)
	$(BIN)/python assignments/build.py

serve: book
	$(BIN)/python -m http.server --directory _build/html 8000

lab: $(STAMP)
	$(BIN)/jupyter lab chapters/

# Freeze .venv into requirements.txt; then derive binder/requirements.txt and the chapters' set-up cell.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch==' > .requirements.tmp
	{ sed -n '1,3p' requirements.txt; cat .requirements.tmp; echo "-e ."; } > requirements.txt.new
	rm .requirements.tmp; mv requirements.txt.new requirements.txt
	$(BIN)/python binder/make_requirements.py
	$(BIN)/python tools/setup_cell.py

clean:
	rm -rf _build
