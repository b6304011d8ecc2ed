"""A Redis pub/sub subscriber (RESP2) on a kernel-stamped socket: scenario d's raw baseline, timed as daphne is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bench.stamped import Inbox, Receiver, StampedSocket


class StampedPubSub(Receiver):
    """A Redis pub/sub connection (RESP2) subscribed to one channel; each published message's data comes
    with its arrival time."""

    def __init__(self, stream: StampedSocket) -> None:
        self._stream = stream
        self._buffer = b""
        self._inbox = Inbox()

    @classmethod
    async def subscribe(cls, redis_url: str, channel: str, timeout: float = 60.0) -> StampedPubSub:
        parts = urlsplit(redis_url)
        if parts.scheme != "redis":
            raise ValueError(f"only redis:// URLs are supported, not {parts.scheme}://")
        stream = await StampedSocket.open(parts.hostname or "127.0.0.1", parts.port or 6379, timeout)
        pubsub = cls(stream)
        stream.listen(pubsub._on_data)
        try:
            async with asyncio.timeout(timeout):
                if parts.password:
                    auth = [parts.username, parts.password] if parts.username else [parts.password]
                    await pubsub._command("AUTH", *auth)
                    reply, _ = await pubsub._inbox.get()
                    if isinstance(reply, RedisError):
                        raise reply
                await pubsub._command("SUBSCRIBE", channel)
                reply, _ = await pubsub._inbox.get()
            if not isinstance(reply, list) or reply[0] != b"subscribe":
                raise RuntimeError(f"SUBSCRIBE answered {reply!r}")
        except BaseException:
            stream.close()
            raise
        return pubsub

    def handle(
        self, handler: Callable[[bytes, float], None], on_error: Callable[[BaseException], None]
    ) -> None:
        """Every published message's data from now on goes to handler(data, arrival); on_error(exception)
        once if the connection ends or the handler raises."""

        def message(reply: Any, arrival: float) -> None:
            if isinstance(reply, list) and reply[0] == b"message":
                handler(reply[2], arrival)

        self._inbox.handle(message, on_error)

    async def _command(self, *args: str) -> None:
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            raw = arg.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
        await self._stream.send(b"".join(out))

    def _consume(self, data: bytes, arrival: float) -> None:
        if not data:
            self._inbox.fail(ConnectionError("Redis closed the connection"))
            return
        buffer = self._buffer + data if self._buffer else data
        at = 0
        while True:
            parsed = _parse_resp(buffer, at)
            if parsed is None:
                break
            reply, at = parsed
            self._inbox.put(reply, arrival)
        self._buffer = buffer[at:]

    def close(self) -> None:
        self._stream.close()


class RedisError(Exception):
    """An error reply."""


def _parse_resp(buffer: bytes, at: int) -> tuple[Any, int] | None:
    """One RESP2 value from buffer[at:] and where it ends, or None while it is incomplete."""
    line_end = buffer.find(b"\r\n", at)
    if line_end < 0:
        return None
    kind, line = buffer[at : at + 1], buffer[at + 1 : line_end]
    after = line_end + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return RedisError(line.decode()), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            return None
        return buffer[after : after + size], after + size + 2
    if kind == b"*":
        items = []
        for _ in range(int(line)):
            parsed = _parse_resp(buffer, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        return items, after
    raise RuntimeError(f"unexpected RESP type {kind!r}")
