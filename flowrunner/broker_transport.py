"""Kombu's Redis transport with one publishing client per channel, instead of a new one for every message."""

# Kombu builds a `redis.Redis` (and its table of response callbacks) for each publish on a channel, around a
# connection pool it keeps anyway: about a third of `send_task`'s CPU, paid once per node run. The client is
# stateless apart from that pool, so one per channel serves every publish; a new pool (after a reconnect)
# gets a new client.

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _publish_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's client (BRPOP, pub/sub): kombu's own, as before
            return super()._create_client(asynchronous=True)
        client = self._publish_client
        if client is None or client.connection_pool is not self.pool:
            client = self._publish_client = super()._create_client(asynchronous=False)
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(url: str) -> str | None:
    """This transport for a plain `redis://` broker; anything else (TLS, Sentinel, memory) keeps kombu's."""
    return f"{__name__}:Transport" if url.split("://", 1)[0] == "redis" else None
