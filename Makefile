# The commands people type. Each target creates .venv on first use, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-all lint typecheck pytest soak dist bench bench-full clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when pyproject.toml changes. pip >= 25.1 understands [dependency-groups].
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[uvloop]" --group test --group bench
	touch $@

test: lint typecheck pytest  ## the whole check: ruff, mypy --strict, pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

# Every Python >= 3.11 on this machine: on PATH as pythonX.Y, or installed by pyenv. Each gets its
# own venv (.venv-X.Y) and runs the tests; an absent one is skipped with a message.
PY_VERSIONS ?= 3.11 3.12 3.13 3.14
test-all:  ## the tests on every Python >= 3.11 found here
	@for v in $(PY_VERSIONS); do \
	  py=""; \
	  for c in "python$$v" $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v*/bin/python$$v; do \
	    if "$$c" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$$v'.split('.')))" \
	        >/dev/null 2>&1; then py="$$c"; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "test-all: Python $$v not found, skipped"; continue; fi; \
	  echo "test-all: Python $$v ($$py)"; \
	  $(MAKE) --no-print-directory pytest PYTHON="$$py" VENV=.venv-$$v || exit 1; \
	done

# The collector at its most eager and the tiniest switch interval drive the lifecycle races;
# `make soak ARGS="--seconds 600"` replaces these defaults.
soak: ARGS ?= --eager-gc --switch-interval 1e-6
soak: $(STAMP)  ## a minute of mixed load, then the invariants (not in CI)
	$(BIN)/python -m tests.soak $(ARGS)

dist: $(STAMP)  ## wheel and sdist in dist/, checked by twine
	rm -rf dist
	$(BIN)/python -m build --outdir dist
	$(BIN)/twine check --strict dist/*

bench: $(STAMP)  ## the benchmark suite, quick (about a minute)
	$(BIN)/python -m benchmarks $(ARGS)

bench-full: $(STAMP)  ## the numbers the README publishes
	$(BIN)/python -m benchmarks --full $(ARGS)

clean:
	rm -rf $(VENV) .venv-3.* .mypy_cache .pytest_cache .ruff_cache build dist
