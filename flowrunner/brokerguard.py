"""Kombu's Redis channel, used after its connection was closed, raises a connection error instead of crashing."""

# When the broker goes away, Celery's consumer closes the broken connection (`Connection.collect()`, then
# `close()`), which sets the transport's `client` to None. A channel whose close was cut short by the dead
# socket keeps its reference to that transport with its connection pool already dropped; the next use of the
# channel, typically acking a late-acked task that finished during the outage, rebuilds the pool from
# `transport.client.hostname` and raises AttributeError. Celery treats that as unrecoverable and the worker
# exits. Raised as redis' ConnectionError, it is one of the transport's `connection_errors`: Celery logs
# "Couldn't ack" and carries on reconnecting. The message is lost with the old connection (the reaper,
# driven from PostgreSQL, resends what has not finished; tasks are safe to run twice).

from __future__ import annotations

import functools
import logging
from typing import Any

from kombu.transport import redis as redis_transport
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)

_GUARD_ATTR = "_flowrunner_guarded"


def install() -> None:
    """Wrap `kombu.transport.redis.Channel._connparams` once per process (idempotent)."""
    channel_class = redis_transport.Channel
    original = channel_class._connparams
    if getattr(original, _GUARD_ATTR, False):
        return

    @functools.wraps(original)
    def _connparams(self: Any, asynchronous: bool = False) -> dict:
        transport = self.connection
        if transport is None or transport.client is None:
            logger.warning(
                "broker channel used after its connection was closed: treated as a connection error"
            )
            raise RedisConnectionError("this broker channel's connection was closed")
        return original(self, asynchronous=asynchronous)

    setattr(_connparams, _GUARD_ATTR, True)
    channel_class._connparams = _connparams
