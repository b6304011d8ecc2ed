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
