# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: install examples run lint test test-fast clean

install: $(STAMP)

# torch is pinned to the CPU build first: asking pip for plain "torch" would pull the
# newest CUDA build (several GB) from the registry.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[sklearn,torch,dev]'
	touch $(STAMP)

examples: install
	$(BIN)/python examples/digits/build.py

run: install examples
	$(BIN)/ferry serve examples/models --host 127.0.0.1 --port $(PORT)

lint: install
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest -q -x tests/unit tests/integration

clean:
	rm -rf $(VENV) examples/models test-artifacts
