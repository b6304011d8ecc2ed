# FlowRunner developer commands. Everything runs with the virtualenv's own binaries ($(VENV)/bin/...).
#
#   make run      web server (daphne) on http://127.0.0.1:8000 — installs and migrates first
#   make worker   a Celery worker             make beat   the periodic tasks (reaper)
#   make test     the test suite, against PostgreSQL + Redis (local defaults below)
#   make lint     ruff check + format check  make format  ruff format + autofix
#   make migrate  apply migrations           make bench  benchmarks (bench/run.py)

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
PY     := $(BIN)/python
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k health -x"`.
PYTEST_ARGS ?=

# Written once the venv has the project installed; pyproject.toml changes reinstall.
INSTALLED := $(VENV)/.flowrunner-installed

.DEFAULT_GOAL := help
.PHONY: help install run worker beat test lint format migrate bench

help:
	@sed -n '3,7p' $(MAKEFILE_LIST) | sed 's/^# \{0,1\}//'

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(INSTALLED)

migrate: $(INSTALLED)
	$(PY) manage.py migrate --noinput

run: $(INSTALLED) migrate
	$(BIN)/daphne -b $(HOST) -p $(PORT) flowrunner.asgi:application

worker: $(INSTALLED)
	$(BIN)/celery -A flowrunner worker -l info

beat: $(INSTALLED)
	$(BIN)/celery -A flowrunner beat -l info

# Tests run against PostgreSQL and Redis, never SQLite. With no database configured, use the local server
# (pytest-django creates and drops its own test_flowrunner database). Redis gets a db of its own: the
# integration harness flushes it.
ifndef FLOWRUNNER_POSTGRES_HOST
test: export FLOWRUNNER_POSTGRES_HOST = 127.0.0.1
test: export FLOWRUNNER_POSTGRES_PORT = 5432
test: export FLOWRUNNER_POSTGRES_USER = postgres
test: export FLOWRUNNER_POSTGRES_DATABASE = flowrunner
endif
ifndef FLOWRUNNER_REDIS_URL
test: export FLOWRUNNER_REDIS_URL = redis://127.0.0.1:6379/15
endif

test: $(INSTALLED)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(INSTALLED)
	@if [ -f bench/run.py ]; then $(PY) bench/run.py; else echo "bench/run.py does not exist yet"; fi
