"""The connection pool's wait: patient while every connection is busy, short when one must be opened."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from psycopg_pool import ConnectionPool, PoolTimeout

from core import dbpool

pytestmark = pytest.mark.django_db


def _conninfo() -> str:
    params = connection.get_connection_params()
    return " ".join(
        f"{key}={value}" for key, value in params.items() if key in ("host", "port", "user", "dbname")
    )


def test_dbpool_a_full_busy_pool_waits_for_a_connection_to_come_back(monkeypatch):
    monkeypatch.setattr(dbpool, "BUSY_POOL_WAIT", 5.0)
    # Given a pool of one connection with a short wait, its one connection busy for 0.6 s
    pool = ConnectionPool(_conninfo(), min_size=1, max_size=1, timeout=0.2, open=True)
    try:
        pool.getconn = dbpool._patient_when_busy(pool.getconn, pool)
        busy = pool.getconn()
        threading.Timer(0.6, pool.putconn, args=[busy]).start()
        # When another request asks for a connection
        got = pool.getconn()
        # Then it waited for the busy one (0.6 s) instead of failing after the short wait (0.2 s)
        assert got is busy
        pool.putconn(got)
    finally:
        pool.close()


def test_dbpool_a_pool_that_cannot_connect_gives_up_after_its_short_wait():
    # Given a pool whose server does not answer (a closed port)
    pool = ConnectionPool(
        "host=127.0.0.1 port=9 user=x dbname=x connect_timeout=1",
        min_size=0,
        max_size=2,
        timeout=0.3,
        open=True,
    )
    try:
        pool.getconn = dbpool._patient_when_busy(pool.getconn, pool)
        # When a request asks for a connection
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.getconn()
        # Then it failed after the short wait, not the patient one
        assert time.monotonic() - started < dbpool.BUSY_POOL_WAIT / 2
    finally:
        pool.close()


def _checked_pool(checks: list[int]) -> ConnectionPool:
    """A pool wired as the project wires Django's: the round-trip check (counted), wrapped; returns stamped."""

    def counted(conn) -> None:  # noqa: ANN001
        checks.append(conn.info.backend_pid)
        ConnectionPool.check_connection(conn)

    pool = ConnectionPool(_conninfo(), min_size=1, max_size=1, timeout=2, check=counted, open=True)
    pool._check = dbpool._purging(pool._check, pool)
    pool.putconn = dbpool._stamping(pool.putconn)
    return pool


def _terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_dbpool_a_connection_just_returned_is_handed_out_without_a_round_trip():
    # Given a pool whose one connection was just used and returned
    checks: list[int] = []
    pool = _checked_pool(checks)
    try:
        with pool.connection() as first:
            first.execute("SELECT 1")
        checks.clear()
        # When it is asked for again at once
        with pool.connection() as again:
            value = again.execute("SELECT 2").fetchone()[0]
        # Then it was handed out without the round-trip check, and works
        assert checks == [] and value == 2
    finally:
        pool.close()


def test_dbpool_a_connection_the_server_terminated_is_checked_and_replaced():
    # Given a pool whose one connection was just returned, then terminated by the server
    checks: list[int] = []
    pool = _checked_pool(checks)
    try:
        with pool.connection() as first:
            pid = first.info.backend_pid
        _terminate(pid)
        time.sleep(0.2)  # the server's goodbye reaches the socket
        checks.clear()
        # When a connection is asked for
        with pool.connection() as replaced:
            value = replaced.execute("SELECT 3").fetchone()[0]
            new_pid = replaced.info.backend_pid
        # Then the dead one was checked (its socket had something to read), dropped, and a new one serves
        assert checks[:1] == [pid] and new_pid != pid and value == 3
    finally:
        pool.close()


def test_dbpool_a_connection_idle_for_longer_gets_the_round_trip_check(monkeypatch):
    # Given a connection returned longer ago than the quiet window
    monkeypatch.setattr(dbpool, "QUIET_CHECK_SECONDS", 0.0)
    checks: list[int] = []
    pool = _checked_pool(checks)
    try:
        with pool.connection() as first:
            pid = first.info.backend_pid
        checks.clear()
        # When it is asked for
        with pool.connection() as again:
            again.execute("SELECT 1")
        # Then the round-trip check ran on it
        assert checks == [pid]
    finally:
        pool.close()
