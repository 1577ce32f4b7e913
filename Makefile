# The two commands of the README:
#   make run    build the bundled examples and run them on the best available backend
#   make test   lint, type-check and run the whole test suite
# Both create .venv/ with everything the project needs on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXAMPLES := $(sort $(wildcard examples/*.py))

.PHONY: run test test-fast bench golden docs clean

$(STAMP): pyproject.toml
	$(PYTHON) scripts/check-python.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	for f in $(EXAMPLES); do $(BIN)/ringgen build $$f -o generated || exit 1; done
	$(BIN)/python scripts/run_examples.py

# pytest on every core (pytest-xdist), then the timing-sensitive tests (marker `serial`) alone,
# so that no deadline they check is measured beside another test's load.
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python scripts/typecheck.py
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not serial"
	$(BIN)/pytest -m serial

# Everything but the long soak and stress runs.
test-fast: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow and not serial"
	$(BIN)/pytest -m "serial and not slow"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Rewrite the golden trees and generated/ from the current code (review the diff!).
golden: $(STAMP)
	$(BIN)/pytest tests/test_golden.py --update-golden

# The manual (docs/) as a site in site/; installs the docs extra (mkdocs) on first use.
docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis site
