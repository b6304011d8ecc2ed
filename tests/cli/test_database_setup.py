"""A configured PostgreSQL without the database: migrate and `serve --migrate` create it, a worker says what to run."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings

from tests.cli.conftest import ROOT, cli_env, run_cli


def _server(dbname: str = "postgres") -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"],
        dbname=dbname,
        autocommit=True,
    )


def _exists(name: str) -> bool:
    with _server() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@pytest.fixture
def missing_database(tmp_path: Path):
    """A database name the configured server does not have (dropped again afterwards), and its environment."""
    name = f"flowrunner_new_{secrets.token_hex(4)}"
    env = {
        "FLOWRUNNER_POSTGRES_DATABASE": name,
        "FLOWRUNNER_ENV_FILE": "/dev/null",
        "FLOWRUNNER_DEV_KEYS_FILE": str(tmp_path / "keys.json"),
    }
    assert not _exists(name)
    yield name, env
    with _server() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_database_setup_manage_migrate_creates_a_missing_database(missing_database, tmp_path):
    # given a configured server without the database
    name, env = missing_database
    # when `make migrate` runs (manage.py migrate)
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
        cwd=tmp_path,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    # then the database was created and migrated
    assert done.returncode == 0, done.stderr
    assert "created the database" in done.stderr
    with _server(name) as conn:
        assert conn.execute("SELECT to_regclass('flows_flow') IS NOT NULL").fetchone()[0]


def test_database_setup_worker_with_a_missing_database_fails_in_one_line(missing_database, tmp_path):
    # given a configured server without the database
    name, env = missing_database
    # when a worker is started
    result = run_cli("worker", cwd=tmp_path, timeout=120, **env)
    # then it fails with one line that says what to run, before Celery starts; nothing was created
    assert result.code == 1
    assert result.stderr.strip().splitlines() == [
        f"flowrunner worker: database {name!r} does not exist on {settings.DATABASES['default']['HOST']}:"
        f"{settings.DATABASES['default']['PORT']}: run `make migrate` (or `python manage.py migrate`), which "
        "creates it and its tables"
    ]
    assert not _exists(name)


def test_database_setup_serve_migrate_creates_a_missing_database_and_serves(missing_database, tmp_path):
    # given a configured server without the database, as `make run` meets it with the README's .env
    name, env = missing_database
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "serve.log"
    # when `flowrunner serve --migrate` starts
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowrunner.cli",
                "serve",
                "--migrate",
                "--no-worker",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=cli_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    # then it created the database, migrated it and served, with no connection warnings or traceback
    text = log.read_text()
    assert "flowrunner serve: created the database" in text
    assert "does not exist" not in text and "Traceback" not in text
