# panorama-elt: `make help` lists the targets.
SHELL := /bin/bash
VENV ?= venv
PYTHON_BIN ?= python3
PY := $(VENV)/bin/python
.DEFAULT_GOAL := help

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(VENV)/bin/python:
	@$(PYTHON_BIN) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv is missing: installing it (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	  rm -rf $(VENV); $(PYTHON_BIN) -m venv $(VENV); }
	@$(PY) -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime ## Create venv/, install pinned requirements, create panorama_settings.yaml if missing
	@if [ ! -f panorama_settings.yaml ]; then cp panorama_settings.yaml.template panorama_settings.yaml; \
	  echo "created panorama_settings.yaml from the template: edit it"; fi

# Another PyMySQL release, for the test that runs the tool with it (a pure-Python wheel: it is
# importable from PYTHONPATH as it is).
OTHER_PYMYSQL := build/wheels/PyMySQL-1.1.1-py3-none-any.whl
$(OTHER_PYMYSQL): | $(VENV)/bin/python
	$(PY) -m pip download -q --no-deps --only-binary=:all: -d build/wheels PyMySQL==1.1.1

test: $(VENV)/.dev $(OTHER_PYMYSQL) ## Run every test (starts the project's private MariaDB)
	bash scripts/mariadb.sh start
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(VENV)/.dev ## Synthetic Open edX database -> local datalake -> report from the typed views
	bash scripts/demo.sh

bench: $(VENV)/.dev ## Extractor vs raw mariadb dump at 2 dataset sizes (BENCH_SIZES=a BENCH_REPEAT=1 shorten)
	bash scripts/bench.sh

lint: $(VENV)/.dev ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check panorama_elt tests panorama.py
	$(VENV)/bin/ruff format --check panorama_elt tests panorama.py
	$(VENV)/bin/mypy panorama_elt

mariadb-stop: ## Stop the private MariaDB
	bash scripts/mariadb.sh stop

clean: ## Remove build products, caches and the demo datalake (keeps venv/)
	rm -rf build/demo .pytest_cache .ruff_cache .mypy_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install test demo bench lint mariadb-stop clean

# Docker image: tags from panorama_elt/__about__.py. Without a Docker engine the command is only
# printed; `make docker-check` builds and runs the image with buildah instead (minutes, not in `make test`).
DOCKER_VERSION = $(shell sed -nE "s/^__version__ = ['\"]([^'\"]+)['\"].*/\1/p" panorama_elt/__about__.py)

docker-build: ## Build the image panorama-elt:<version> and :latest (prints the command without Docker)
	@cmd="docker build --build-arg VERSION=$(DOCKER_VERSION) -t panorama-elt:$(DOCKER_VERSION) -t panorama-elt:latest ."; \
	echo "$$cmd"; \
	if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then $$cmd; \
	else echo "(no Docker engine here: command printed only; 'make docker-check' builds it with buildah)"; fi

docker-check: ## Build the Dockerfile with buildah on a local Debian base and smoke-test the image
	bash scripts/docker-check.sh

.PHONY: docker-build docker-check
