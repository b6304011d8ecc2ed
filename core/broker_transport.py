"""Kombu's Redis transport: one publishing client per channel, and PUBLISHes that ride with the next message."""

# Kombu builds a `redis.Redis` (and its table of response callbacks) for each publish on a channel, around a
# connection pool it keeps anyway: about a third of `send_task`'s CPU, paid once per node run. The client is
# stateless apart from that pool, so one per channel serves every publish; a new pool (after a reconnect)
# gets a new client.

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

# PUBLISH commands (channel, data) waiting for the next message this thread puts on a queue.
_riders = threading.local()


class Channel(kombu_redis.Channel):
    _publish_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's client (BRPOP, pub/sub): kombu's own, as before
            return super()._create_client(asynchronous=True)
        client = self._publish_client
        if client is None or client.connection_pool is not self.pool:
            client = self._publish_client = super()._create_client(asynchronous=False)
        return client

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        riders = getattr(_riders, "commands", None)
        if not riders or kwargs.get("_publish_batch") is not None:
            super()._put(queue, message, **kwargs)
            return
        _riders.commands = None
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for channel, data in riders:
                pipe.publish(channel, data)
            pipe.lpush(key, dumps(message))
            if self._expires and queue in self._expires:
                for priority in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, priority), self._expires[queue])
            pipe.execute()


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(url: str) -> str | None:
    """This transport for a plain `redis://` broker; anything else (TLS, Sentinel, memory) keeps kombu's."""
    return f"{__name__}:Transport" if url.split("://", 1)[0] == "redis" else None


def publish_with_next_put(commands: list[tuple[str, bytes]], publish: Callable[[], None]) -> bool:
    """Run `publish`; the first message it puts on a queue through this transport goes in one pipeline after
    these PUBLISH commands (one round trip, and Redis runs them first). → False when none was put (or the put
    failed and kombu's retry sent the message alone): the caller sends them itself."""
    _riders.commands = list(commands)
    try:
        publish()
    finally:
        left, _riders.commands = _riders.commands, None
    return not left


def same_server(broker_url: str, url: str) -> bool:
    """Whether this transport serves `broker_url` and `url` names the same Redis server (any database: a PUBLISH
    reaches every database's subscribers)."""
    if transport_for(broker_url) is None:
        return False
    a, b = urlsplit(broker_url), urlsplit(url)
    return (a.scheme, a.hostname, a.port or 6379, a.username, a.password) == (
        b.scheme,
        b.hostname,
        b.port or 6379,
        b.username,
        b.password,
    )
