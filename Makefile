# django-orders — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DB ?= postgres
PYTEST_ARGS ?=
SWAPPED_PYTEST_ARGS ?=
REPLICA_PYTEST_ARGS ?=
DEMO_DIR := example_project
DEMO_DB := $(DEMO_DIR)/db.sqlite3
DEMO_PORT ?= 8000

.PHONY: help demo test lint lint-workflows format docs docs-serve tox tox-newest pkg migrations-check clean services contract swagger-screenshot

help:
	@echo "make demo   - run the example project on SQLite at http://127.0.0.1:8000 (relay included);"
	@echo "              DEMO_PORT=8001 make demo serves on another port"
	@echo "make test   - run the whole test suite on PostgreSQL (DB=sqlite for SQLite), then the swapped-model suite"
	@echo "make lint   - ruff, ruff format --check, mypy (make lint-workflows: actionlint)"
	@echo "make tox    - the Django x Python matrix"
	@echo "make docs   - build the documentation site (mkdocs build --strict) into site/"
	@echo "make pkg    - build sdist + wheel, twine check --strict, check their contents"
	@echo "make contract - schemathesis (all checks, stateful links) against the example project's schema"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip >= 25.1 installs the PEP 735 dependency groups (`--group`) of pyproject.toml.
$(VENV)/.pip: $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.pip pyproject.toml
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $@

$(VENV)/.installed-demo: $(VENV)/.pip pyproject.toml
	$(BIN)/python -m pip install --quiet -e . --group demo
	touch $@

$(VENV)/.installed-docs: $(VENV)/.pip pyproject.toml
	$(BIN)/python -m pip install --quiet --group docs
	touch $@

$(VENV)/.installed-workflows: $(VENV)/.pip pyproject.toml
	$(BIN)/python -m pip install --quiet --group workflows
	touch $@

demo: $(VENV)/.installed-demo
	@DEMO_PORT='$(DEMO_PORT)' bash scripts/demo.sh "$(BIN)/python"

services:
	@bash scripts/ensure-services.sh $(if $(filter sqlite,$(DB)),,postgres) $(SERVICES)

# Run again on psycopg2 (psycopg 3 is what Django picks when both are installed): the HTTP
# API's tests, where the two drivers fail differently on bad input.
PSYCOPG2_TESTS := tests/test_malformed.py tests/test_idempotency.py tests/test_api_create.py \
	tests/test_api_get.py tests/test_api_transitions.py tests/test_list.py \
	tests/test_transition_fast_path.py

test: $(VENV)/.installed-dev
	@bash scripts/ensure-services.sh $(if $(filter sqlite,$(DB)),,postgres) rabbitmq redis nats
	DB=$(DB) $(BIN)/python -m pytest $(PYTEST_ARGS)
ifeq ($(DB)$(PYTEST_ARGS),postgres)
	DB=postgres ORDERS_PG_DRIVER=psycopg2 $(BIN)/python -m pytest -q $(PSYCOPG2_TESTS)
endif
	@# The swapped order model (docs/guide/extending.md) is fixed per process: its own run.
	DB=$(DB) $(BIN)/python -m pytest --ds=tests.swapped.settings tests/swapped $(SWAPPED_PYTEST_ARGS)
ifneq ($(DB),sqlite)
	@# Reads on a streaming replica (docs/guide/replicas.md): a primary and its replica of
	@# their own, on free ports, made for this run and torn down after.
	bash scripts/pg_replica_pair.sh run -- $(BIN)/python -m pytest --ds=tests.replica.settings tests/replica $(REPLICA_PYTEST_ARGS)
endif

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The site (MkDocs, Material, the API reference from docstrings); warnings are errors.
docs: $(VENV)/.installed-docs
	$(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.installed-docs
	$(BIN)/mkdocs serve

# actionlint on .github/workflows; shellcheck (same venv, on PATH) checks the run: scripts.
lint-workflows: $(VENV)/.installed-workflows
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/actionlint

# schemathesis, every check plus the stateful links, against the example project's served
# schema on a free port (SQLite), for at most CONTRACT_TIME seconds (docs/guide/openapi.md).
CONTRACT_TIME ?= 150
contract: $(VENV)/.installed-dev
	$(BIN)/python scripts/contract.py --max-time $(CONTRACT_TIME)

# docs/img/swagger-ui.png, with a headless Chromium (apt-get install chromium).
swagger-screenshot: $(VENV)/.installed-dev
	$(BIN)/python scripts/swagger_screenshot.py

migrations-check: $(VENV)/.installed-dev
	DB=sqlite DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python -m django makemigrations --check --dry-run django_orders
	DB=sqlite DJANGO_SETTINGS_MODULE=tests.swapped.settings $(BIN)/python -m django makemigrations --check --dry-run django_orders shop

pkg: $(VENV)/.installed-dev
	rm -rf dist build
	$(BIN)/python -m build --quiet
	$(BIN)/twine check --strict dist/*
	$(BIN)/python scripts/check_dist.py dist

# tox finds the interpreters pyenv installed (3.11, 3.12, 3.13) when they are on offer.
PYENV_PYTHONS := $(shell command -v pyenv >/dev/null && pyenv versions --bare 2>/dev/null | grep -E '^3\.1[123]\.[0-9]+$$' | paste -sd: -)
TOX := $(if $(PYENV_PYTHONS),PYENV_VERSION=$(PYENV_PYTHONS)) $(BIN)/tox

tox: $(VENV)/.installed-dev
	$(TOX) run-parallel

tox-newest: $(VENV)/.installed-dev
	$(TOX) run -e py313-django61

clean:
	rm -rf $(VENV) .tox build dist site *.egg-info .mypy_cache .ruff_cache $(DEMO_DB)*
