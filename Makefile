# airflow-provider-sfint: the ways in. Everything installs into .venv from the package registries.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint typecheck pytest emulator bench-emulator clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,emulator,examples]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when no test ran; make fails on any non-zero exit, so an empty run fails the target.
pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

emulator: $(STAMP)
	$(BIN)/sfint-emulator --seed demo

bench-emulator: $(STAMP)
	$(BIN)/python bench/emulator.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
