"""psycopg pool hygiene: when one idle connection fails its health check, drop every dead one at once."""

# With CONN_HEALTH_CHECKS, psycopg_pool checks an idle connection before handing it out and, when it is dead,
# sleeps 1, 2, 4, 8 s (its reconnection backoff) before trying the next one. After a PostgreSQL restart or a
# pg_terminate_backend every idle connection is dead, so a process holding four or more of them makes its next
# request wait out the pool's timeout (FLOWRUNNER_POSTGRES_POOL_TIMEOUT) and fail. Checking the whole pool at
# the first failure (`ConnectionPool.check()`: every idle connection tested, the broken ones replaced) ends the
# stall at once.

from __future__ import annotations

from typing import Any

from django.db.backends.signals import connection_created


def _purging(check: Any, pool: Any) -> Any:
    def check_and_purge(conn: Any) -> None:
        try:
            check(conn)
        except Exception:
            pool.check()
            raise

    check_and_purge.purges_pool = True
    return check_and_purge


def _wrap_pool_check(sender: Any, connection: Any, **_: Any) -> None:
    pool = getattr(connection, "pool", None)
    check = getattr(pool, "_check", None)  # psycopg_pool keeps the `check` callback here (no public setter)
    if check is not None and not getattr(check, "purges_pool", False):
        pool._check = _purging(check, pool)


def install() -> None:
    """Wrap the pool's check of every database alias as soon as it hands out its first connection."""
    connection_created.connect(_wrap_pool_check, dispatch_uid="flowrunner.dbpool")
