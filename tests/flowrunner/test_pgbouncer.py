"""Prepared statements behind PgBouncer in transaction mode: what breaks, and the setting that prevents it
(FLOWRUNNER_POSTGRES_PREPARE_THRESHOLD, read by a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from tests.flowrunner.process_env import REPO, fresh_environment
from tests.pgbouncer import start_pgbouncer

# A PL/pgSQL-style call with a parameter, like the engine's `SELECT flowrunner_finish(%s::jsonb)`.
STATEMENT = "SELECT jsonb_build_object('run', %s::bigint)"


def _alternate(port: int, db: dict, prepare_threshold: int | None, rounds: int = 6) -> None:
    """Two clients take turns through one server connection, each repeating the statement with server-side
    binding (what psycopg prepares); in autocommit every statement is its own transaction."""
    params = {
        "host": "127.0.0.1",
        "port": port,
        "user": db.get("USER") or "postgres",
        "dbname": "postgres",
        "autocommit": True,
        "prepare_threshold": prepare_threshold,
        "cursor_factory": psycopg.Cursor,
    }
    with psycopg.connect(**params) as first, psycopg.connect(**params) as second:
        for index in range(rounds):
            for conn in (first, second):
                assert conn.execute(STATEMENT, [index]).fetchone()[0] == {"run": index}


@pytest.fixture
def bouncer(tmp_path, settings):
    bouncer = start_pgbouncer(tmp_path / "pgbouncer", db=settings.DATABASES["default"], pool_size=1)
    yield bouncer
    bouncer.stop()


def test_pgbouncer_transaction_mode_breaks_prepared_statements(bouncer, settings):
    # Given psycopg preparing every statement (threshold 0) behind a transaction-mode PgBouncer
    # When two clients share its one server connection
    # Then the second client's statement names collide with the first's on that connection
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        _alternate(bouncer.port, settings.DATABASES["default"], prepare_threshold=0)


def test_pgbouncer_transaction_mode_works_with_the_default_threshold(bouncer, settings):
    # Given FlowRunner's default (no server-side prepared statements)
    threshold = settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    assert threshold is None
    # When the same two clients take turns, far past psycopg's own threshold of 5 runs
    # Then every statement succeeds
    _alternate(bouncer.port, settings.DATABASES["default"], prepare_threshold=threshold, rounds=12)


def _threshold_in(tmp_path, **env: str) -> subprocess.CompletedProcess:
    code = (
        "from django.conf import settings; import json; "
        "print(json.dumps(settings.DATABASES['default']['OPTIONS']['prepare_threshold']))"
    )
    environment = fresh_environment(
        tmp_path,
        FLOWRUNNER_POSTGRES_HOST="127.0.0.1",
        FLOWRUNNER_REDIS_URL="redis://127.0.0.1:6379/13",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True, timeout=60
    )


def test_settings_prepare_threshold_is_off_unless_a_number_is_given(tmp_path):
    assert json.loads(_threshold_in(tmp_path).stdout) is None
    assert json.loads(_threshold_in(tmp_path, FLOWRUNNER_POSTGRES_PREPARE_THRESHOLD="off").stdout) is None
    assert json.loads(_threshold_in(tmp_path, FLOWRUNNER_POSTGRES_PREPARE_THRESHOLD="5").stdout) == 5
    refused = _threshold_in(tmp_path, FLOWRUNNER_POSTGRES_PREPARE_THRESHOLD="sometimes")
    assert refused.returncode != 0
    assert "FLOWRUNNER_POSTGRES_PREPARE_THRESHOLD='sometimes' is not an integer" in refused.stderr
