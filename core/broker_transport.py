"""Kombu's Redis transport: one publishing client per channel, and PUBLISHes that ride with the next message."""

# Kombu builds a `redis.Redis` (and its table of response callbacks) for each publish on a channel, around a
# connection pool it keeps anyway: about a third of `send_task`'s CPU, paid once per node run. The client is
# stateless apart from that pool, so one per channel serves every publish; a new pool (after a reconnect)
# gets a new client.

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

# PUBLISH commands (channel, data) waiting for the next message this thread puts on a queue of the Redis server
# they are meant for: `_riders.server`, `_riders.commands`.
_riders = threading.local()
logger = logging.getLogger(__name__)
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
        commands: list[tuple[str, tuple[Any, ...]]] = [
            ("publish", (channel, data)) for channel, data in riders
        ]
        commands.append(("lpush", (key, dumps(message))))
        if self._expires and queue in self._expires:
            for priority in self.priority_steps:
                commands.append(("pexpire", (self._q_for_pri(queue, priority), self._expires[queue])))
        if getattr(_riders, "event_follows", False):
            # Celery publishes the message's `task-sent` event next, on this channel: it joins the pipeline.
            _riders.pending, _riders.commands = (self, commands), None
            return
        self._execute(commands)
        # Only once they went through: a put that failed and is retried by kombu carries them again.
        _riders.commands, _riders.delivered = None, True

    def _put_fanout(self, exchange: Any, message: Any, routing_key: str, **kwargs: Any) -> None:
        pending = getattr(_riders, "pending", None)
        if (
            pending is None
            or kwargs.get("_publish_batch") is not None
            or getattr(_riders, "server", None) != self._server()
        ):
            super()._put_fanout(exchange, message, routing_key, **kwargs)
            return
        payload = dumps(message)
        topics = self._get_publish_topics(exchange, routing_key)
        # On this channel even when the message was put on another: kombu retries a failed publish on a new
        # channel (the old one's connection is closed), and the pending commands go with it.
        self._execute(pending[1] + [("publish", (topic, payload)) for topic in topics])
        # Only once they went through: a retried publish carries them again.
        _riders.pending, _riders.delivered = None, True

    def _execute(self, commands: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for name, args in commands:
                getattr(pipe, name)(*args)
            pipe.execute()

    def _server(self) -> tuple[Any, ...]:
        client = self.connection.client
        return (client.hostname, client.port or DEFAULT_PORT, client.userid or None, client.password or None)


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(url: str) -> str | None:
    """This transport for a plain `redis://` broker; anything else (TLS, Sentinel, memory) keeps kombu's."""
    return f"{__name__}:Transport" if url.split("://", 1)[0] == "redis" else None


def publish_with_next_put(
    commands: list[tuple[str, bytes]],
    publish: Callable[[], None],
    *,
    server_url: str,
    event_follows: bool = False,
) -> bool:
    """Run `publish`; the first message it puts on a queue of the Redis server at `server_url` through this
    transport goes in one pipeline after these PUBLISH commands (one round trip, and Redis runs them first).
    With `event_follows` (Celery's `task-sent` events are on), the message's event joins that pipeline too.
    → False when no such put went through (none was made, it went to another server, or it failed): the
    caller sends them itself. Never raises for the message: a lost one is re-driven from PostgreSQL."""
    _riders.server, _riders.commands = server_of(server_url), commands
    _riders.event_follows, _riders.pending, _riders.delivered = event_follows, None, False
    try:
        publish()
        pending = _riders.pending
        if pending is not None:  # no event followed the message (it was not sent, or not on this channel)
            try:
                pending[0]._execute(pending[1])
                _riders.delivered = True
            except Exception:
                logger.warning("could not enqueue a message after its events", exc_info=True)
        return bool(_riders.delivered)
    finally:
        _riders.commands = _riders.pending = None
        _riders.event_follows = _riders.delivered = False


def server_of(url: str) -> tuple[Any, ...]:
    """(host, port, user, password) of a Redis URL: the server, whichever database (a PUBLISH reaches every
    database's subscribers)."""
    parts = urlsplit(url)
    return (parts.hostname, parts.port or DEFAULT_PORT, parts.username or None, parts.password or None)
