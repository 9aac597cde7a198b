# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: install examples protos run lint system-deps node-deps client-deps test test-fast bench bench-grpc bench-client clean

install: $(STAMP)

# torch is pinned to the CPU build first: asking pip for plain "torch" would pull the
# newest CUDA build (several GB) from the registry.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[sklearn,torch,text,s3,dev]'
	touch $(STAMP)

# Each example trains or exports its model offline into examples/models/ (gitignored),
# once: again only when a file of its folder changes (shapes trains for about a minute).
EXAMPLES := digits iris custom shapes text
examples: $(EXAMPLES:%=examples/models/.built-%)

.SECONDEXPANSION:
examples/models/.built-%: $$(wildcard examples/$$*/*) $(STAMP)
	$(BIN)/python examples/$*/build.py
	touch $@

run: install examples
	$(BIN)/ferry serve examples/models --host 127.0.0.1 --port $(PORT)

# The gRPC stubs are generated from the .proto files and checked in (so installing Ferry
# needs no code generator); tests/unit/test_protos.py fails when they are out of date.
PROTOS := src/ferry/grpc/protos
protos: install
	$(BIN)/python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src $(PROTOS)/model_config.proto
	$(BIN)/python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src --grpc_python_out=src $(PROTOS)/grpc_service.proto

lint: install
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

# Debian packages the end-to-end tests use: prometheus (prometheus, promtool) for
# tests/e2e/test_prometheus.py, chromium for the browser tests (Playwright drives it;
# it never downloads a browser). Services need not start (there is no systemd in a
# container): apt-get's exit status is what counts. Without them those tests are
# skipped, and fail with CI=true.
SYSTEM_PACKAGES := prometheus chromium fonts-dejavu-core
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES)
system-deps:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v chromium >/dev/null; then :; \
	elif $(APT_INSTALL) || (apt-get update && $(APT_INSTALL)); then :; \
	elif [ "$$CI" = true ]; then echo "cannot install Debian's $(SYSTEM_PACKAGES) (CI=true)" >&2; exit 1; \
	else echo "warning: no prometheus/promtool/chromium: their tests will be skipped" >&2; fi

# JavaScript tools of the tests (package.json: axe-core, the accessibility checker run on
# the web app's pages), installed from the lock file; never served. Without npm those
# checks are skipped, and fail with CI=true.
NODE_STAMP := node_modules/.installed
node-deps: $(NODE_STAMP)
$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $(NODE_STAMP); \
	elif [ "$$CI" = true ]; then echo "npm is needed for the accessibility checks (CI=true)" >&2; exit 1; \
	else echo "warning: no npm: the accessibility checks will be skipped" >&2; fi

# Third-party gRPC clients (tritonclient.grpc, the KServe SDK) in a virtualenv of their
# own (tests/clients-requirements.txt says why); the e2e tests run them as subprocesses.
# Without it their tests are skipped, and fail with CI=true.
CLIENTS_VENV := .venv-clients
CLIENTS_STAMP := $(CLIENTS_VENV)/.installed
client-deps: $(CLIENTS_STAMP)
$(CLIENTS_STAMP): tests/clients-requirements.txt
	test -x $(CLIENTS_VENV)/bin/python || $(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install --quiet --upgrade pip
	$(CLIENTS_VENV)/bin/pip install --quiet -r tests/clients-requirements.txt
	touch $(CLIENTS_STAMP)

test: lint system-deps node-deps client-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest -q -x tests/unit tests/integration

# Benchmarks (README.md, "Benchmarks"). The peers get a venv of their own, never Ferry's dependencies.
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS ?=

$(BENCH_STAMP): bench/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# gRPC against REST, the onnxruntime ceiling and MLServer's gRPC (bench/grpc.py); h2load
# (Debian's nghttp2-client) drives unary gRPC.
bench-grpc: install $(BENCH_STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	command -v h2load >/dev/null || apt-get install -y nghttp2-client || (apt-get update && apt-get install -y nghttp2-client)
	$(BIN)/python -m bench.grpc $(BENCH_ARGS)

# ferry bench's own cost: the same ferry serve loaded by wrk, ferry bench and an httpx loop
# (bench/client_overhead.py); needs only Ferry's venv and wrk.
bench-client: install
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python -m bench.client_overhead $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(CLIENTS_VENV) examples/models test-artifacts bench/results
