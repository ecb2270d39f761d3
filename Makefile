# The two commands a newcomer needs: `make run` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test test-fast lint bench soak clean

# One stamp per install flavour; re-installs only when setup.cfg or pyproject.toml change.
$(VENV)/.installed-run: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed-run $(VENV)/.installed-test

$(VENV)/.installed-lint: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $@ $(VENV)/.installed-run $(VENV)/.installed-test

run: $(VENV)/.installed-run
	$(BIN)/python main.py $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(ARGS)

# The inner loop: everything but the tests marked slow (real daemons, soaks; about 90 s).
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

# Format, lint, types, layers (import-linter) and private modules; CI runs it before the tests.
lint: $(VENV)/.installed-lint
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python .ci/private_imports.py

# Side-by-side benchmark (about 25 minutes: three designs at four sizes): the table, docs/benchmarks.json and docs/benchmarks.png.
bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks --json docs/benchmarks.json --chart docs/benchmarks.png $(ARGS)

# Seeded soak of faults and kills (default 10 minutes): `make soak ARGS="--minutes 30 --seed 7"`.
soak: $(VENV)/.installed-test
	$(BIN)/python -m tests.reliability.soak $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
