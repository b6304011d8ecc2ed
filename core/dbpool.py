"""psycopg pool hygiene: a health check that costs no round trip on a connection just returned, and when one
idle connection fails it, every dead one dropped at once."""

# With CONN_HEALTH_CHECKS, psycopg_pool checks an idle connection before handing it out and, when it is dead,
# sleeps 1, 2, 4, 8 s (its reconnection backoff) before trying the next one. After a PostgreSQL restart or a
# pg_terminate_backend every idle connection is dead, so a process holding four or more of them makes its next
# request wait out the pool's timeout (FLOWRUNNER_POSTGRES_POOL_TIMEOUT) and fail. Checking the whole pool at
# the first failure (`ConnectionPool.check()`: every idle connection tested, the broken ones replaced) ends the
# stall at once.

from __future__ import annotations

import select
import time
from typing import Any

from django.db.backends.signals import connection_created

# The check costs a round trip per checkout: two or three for each WebSocket that connects, one for each request.
# A connection that went back to the pool this recently and has received nothing since is handed out without it:
# a server that terminates a backend, restarts or shuts down sends an error or closes the socket, which then reads
# as ready. Past this age the round trip runs, for peers that drop an idle connection without a word (a NAT or
# firewall timeout answers only the next packet).
QUIET_CHECK_SECONDS = 10.0
_RETURNED_AT = "_flowrunner_returned_at"


def _quietly_alive(conn: Any) -> bool:
    """Returned to the pool less than QUIET_CHECK_SECONDS ago, and nothing arrived on its socket since."""
    returned = getattr(conn, _RETURNED_AT, None)
    if returned is None or time.monotonic() - returned >= QUIET_CHECK_SECONDS or conn.closed:
        return False
    try:
        poller = select.poll()  # not select(): a web process holding thousands of sockets has fds past 1024
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _purging(check: Any, pool: Any) -> Any:
    def check_and_purge(conn: Any) -> None:
        if _quietly_alive(conn):
            return
        try:
            check(conn)
        except Exception:
            pool.check()
            raise

    check_and_purge.purges_pool = True
    return check_and_purge


# The pool's own timeout (FLOWRUNNER_POSTGRES_POOL_TIMEOUT, short) is how long a request waits for a connection
# the pool would have to open: with PostgreSQL down that wait ends in a 503. A request that finds every
# connection of a full pool busy (a burst of API calls: daphne runs each request's sync code on a thread of its
# own) is waiting for one to come back, not for a dead server: it may wait this long.
BUSY_POOL_WAIT = 10.0


def _patient_when_busy(getconn: Any, pool: Any) -> Any:
    def getconn_waiting(timeout: float | None = None) -> Any:
        if timeout is None and not pool._pool and pool._nconns >= pool.max_size:
            timeout = max(BUSY_POOL_WAIT, pool.timeout)
        return getconn(timeout)

    getconn_waiting.patient = True
    return getconn_waiting


def _stamping(putconn: Any) -> Any:
    def putconn_stamped(conn: Any) -> None:
        setattr(conn, _RETURNED_AT, time.monotonic())
        putconn(conn)

    putconn_stamped.stamps = True
    return putconn_stamped


def _wrap_pool_check(sender: Any, connection: Any, **_: Any) -> None:
    pool = getattr(connection, "pool", None)
    check = getattr(pool, "_check", None)  # psycopg_pool keeps the `check` callback here (no public setter)
    if check is not None and not getattr(check, "purges_pool", False):
        pool._check = _purging(check, pool)
    if pool is not None and not getattr(pool.getconn, "patient", False):
        pool.getconn = _patient_when_busy(pool.getconn, pool)
    if pool is not None and not getattr(pool.putconn, "stamps", False):
        pool.putconn = _stamping(pool.putconn)


def install() -> None:
    """Wrap the pool's check and wait of every database alias as soon as it hands out its first connection."""
    connection_created.connect(_wrap_pool_check, dispatch_uid="core.dbpool")
