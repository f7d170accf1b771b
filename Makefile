# Journey Tower — the two commands a fresh clone needs: `make demo` and `make test`.
# Both create the virtualenv and fetch the Kafka jars (via Maven) themselves.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: help install tools ts-deps ts-types bench-deps bench-quix-deps kafka-jars registry-server demo test soak soak-load unit integration lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)  ## create .venv and install the package with dev tools

BENCH_STAMP := $(VENV)/.bench-$(shell cksum pyproject.toml | cut -d' ' -f1)
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@

bench-deps: $(BENCH_STAMP)  ## the benchmarks' extra (matplotlib for the charts)

# The Quix Streams peer has a virtualenv of its own: quixstreams pins confluent-kafka<2.13,
# which would downgrade Tower's client in .venv. bench.throughput runs it with this python.
QUIX_VENV  ?= .venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed-$(shell cksum bench/quix-requirements.txt | cut -d' ' -f1)
$(QUIX_STAMP): bench/quix-requirements.txt
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --quiet --upgrade pip
	$(QUIX_VENV)/bin/pip install --quiet -r bench/quix-requirements.txt
	@rm -f $(QUIX_VENV)/.installed-*
	@touch $@

bench-quix-deps: $(QUIX_STAMP)  ## .venv-quix with quixstreams, for the Quix Streams contenders

# helm, built from the Go module proxy into .tools/ (gitignored) once per version; the chart's
# tests (tests/unit/deploy) lint and render deploy/helm/journey-tower with it.
GO           ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
HELM_VERSION := v4.3.2
TOOLS        := .tools
HELM         := $(TOOLS)/bin/helm
HELM_STAMP   := $(TOOLS)/.helm-$(HELM_VERSION)
$(HELM_STAMP):
	@if ! command -v $(GO) >/dev/null; then \
	  echo "no Go toolchain ($(GO)): helm is not built and the chart's tests skip" >&2; exit 0; fi; \
	echo "building helm $(HELM_VERSION) into $(TOOLS)/bin (once per version)"; \
	GOBIN=$(abspath $(TOOLS)/bin) GOFLAGS=-mod=mod $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION) \
	  && rm -f $(TOOLS)/.helm-* && touch $@

tools: $(HELM_STAMP) ts-deps  ## build the tools the tests use (helm, the TypeScript client's npm packages)

# The TypeScript client's dev dependencies (typescript, openapi-typescript) from npm, once per
# package-lock.json; tests/integration/test_typescript_client.py builds and tests it with them.
TS_CLIENT := clients/typescript
TS_STAMP  := $(TS_CLIENT)/node_modules/.installed-$(shell cksum $(TS_CLIENT)/package-lock.json | cut -d' ' -f1)
$(TS_STAMP): $(TS_CLIENT)/package-lock.json
	@if ! command -v npm >/dev/null; then \
	  echo "no npm: the TypeScript client's tests skip" >&2; exit 0; fi; \
	npm ci --prefix $(TS_CLIENT) --no-audit --no-fund --loglevel=error \
	  && rm -f $(TS_CLIENT)/node_modules/.installed-* && touch $@

ts-deps: $(TS_STAMP)  ## the TypeScript client's npm packages (clients/typescript/node_modules)

ts-types: install ts-deps  ## regenerate the TypeScript client's types from the OpenAPI document
	@mkdir -p $(TS_CLIENT)/build
	$(BIN)/tower api spec > $(TS_CLIENT)/build/openapi.json
	cd $(TS_CLIENT) && OPENAPI_JSON=build/openapi.json npm run --silent generate

kafka-jars: install  ## fetch the Apache Kafka broker jars into ~/.cache/journey-tower (once)
	$(BIN)/tower kafka fetch

registry-server:  ## build the tests' schema registry (Apicurio Registry) into ~/.cache/journey-tower (once)
	bash tests/apicurio/build.sh

demo: install kafka-jars  ## local Kafka, topics, a worker, simulated agents, a summary (~1 min)
	$(BIN)/tower demo

test: install kafka-jars registry-server tools lint  ## unit + integration tests against a real broker and schema registry the tests start
	TOWER_HELM=$(abspath $(HELM)) $(BIN)/pytest -m 'not soak' --durations=15 $(PYTEST_ARGS)

SOAK_TALLY ?= var/soak-tally.jsonl
soak: install kafka-jars registry-server  ## each crash/rebalance scenario 10x on both runtimes (TOWER_SOAK_RUNS), then the tally
	@mkdir -p $(dir $(SOAK_TALLY)) && rm -f $(SOAK_TALLY)
	TOWER_SOAK_TALLY=$(abspath $(SOAK_TALLY)) $(BIN)/pytest -m soak $(PYTEST_ARGS); \
	  rc=$$?; $(BIN)/python -m tests.soak_tally $(SOAK_TALLY); exit $$rc

SOAK_LOAD_ARGS ?= --runtime transactional,faust --minutes 10 --chart-dir var
soak-load: bench-deps kafka-jars  ## per runtime: capacity, a backlog to steady state, 10 min at 70 %: lag, p99, RSS, fds, PASS/FAIL, chart
	$(BIN)/python -m bench.soak_load $(SOAK_LOAD_ARGS)

unit: install tools  ## unit tests only (no broker)
	TOWER_HELM=$(abspath $(HELM)) $(BIN)/pytest -m 'not integration' $(PYTEST_ARGS)

integration: install kafka-jars registry-server  ## integration tests only
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

lint: install  ## ruff, the layers contract (lint-imports) and mypy
	$(BIN)/ruff check pipeline tests bench examples clients/python
	$(BIN)/ruff format --check pipeline tests bench examples clients/python
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install
	$(BIN)/ruff format pipeline tests bench
	$(BIN)/ruff check --fix pipeline tests bench

BENCH_ARGS ?= --contenders raw,faust,tower,native,native-x2,native-subset,quix-eos,quix-eos-5s,quix-alo \
  --latency --latency-of tower,native
bench: bench-deps bench-quix-deps kafka-jars  ## throughput + latency: raw loop, naive Faust, both runtimes, two workers, Quix Streams (docs/performance.md)
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

clean:  ## remove the venv and local state (not the Kafka jar cache)
	rm -rf $(VENV) $(QUIX_VENV) var .pytest_cache .ruff_cache .hypothesis $(TS_CLIENT)/node_modules $(TS_CLIENT)/build $(TS_CLIENT)/dist
