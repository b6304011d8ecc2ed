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

# PUBLISH commands (channel, data) waiting for the next message this thread puts on a queue of the Redis server
# they are meant for: `_riders.server`, `_riders.commands`.
_riders = threading.local()
DEFAULT_PORT = 6379


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
        if (
            not riders
            or kwargs.get("_publish_batch") is not None
            or self.global_keyprefix  # it would rename the PUBLISH channels too
            or getattr(_riders, "server", None) != self._server()
        ):
            super()._put(queue, message, **kwargs)
            return
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for channel, data in riders:
                pipe.publish(channel, data)
            pipe.lpush(key, dumps(message))
            if self._expires and queue in self._expires:
                for priority in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, priority), self._expires[queue])
            pipe.execute()
        # Only once they went through: a put that failed and is retried by kombu carries them again.
        _riders.commands = None

    def _server(self) -> tuple[Any, ...]:
        client = self.connection.client
        return (client.hostname, client.port or DEFAULT_PORT, client.userid or None, client.password or None)


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(url: str) -> str | None:
    """This transport for a plain `redis://` broker; anything else (TLS, Sentinel, memory) keeps kombu's."""
    return f"{__name__}:Transport" if url.split("://", 1)[0] == "redis" else None


def publish_with_next_put(
    commands: list[tuple[str, bytes]], publish: Callable[[], None], *, server_url: str
) -> bool:
    """Run `publish`; the first message it puts on a queue of the Redis server at `server_url` through this
    transport goes in one pipeline after these PUBLISH commands (one round trip, and Redis runs them first).
    → False when no such put went through (none was made, it went to another server, or it failed): the
    caller sends them itself."""
    _riders.server, _riders.commands = server_of(server_url), commands
    try:
        publish()
    finally:
        left, _riders.commands = _riders.commands, None
    return not left


def server_of(url: str) -> tuple[Any, ...]:
    """(host, port, user, password) of a Redis URL: the server, whichever database (a PUBLISH reaches every
    database's subscribers)."""
    parts = urlsplit(url)
    return (parts.hostname, parts.port or DEFAULT_PORT, parts.username or None, parts.password or None)
