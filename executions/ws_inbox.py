"""Flow control of a WebSocket connection's incoming frames: pause the socket, or drop and close."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

# Flow control of client frames. daphne reads a client's frames into an unbounded queue while the consumer
# answers them one by one, so a client that sends faster than it is served would grow the server's memory
# without bound. Past PAUSE_* frames or bytes waiting, the connection's socket stops being read (TCP pushes
# back on the client) until the backlog falls under RESUME_*; every frame is still answered. Should the pause
# not be possible (another ASGI server) and a backlog pass MAX_*, further frames are dropped, the client gets
# one `error` and the connection is closed with FLOOD_CLOSE_CODE (autobahn lets an application send only 1000
# or 3000-4999, so not 1008).
PAUSE_FRAMES, PAUSE_BYTES = 1000, 1024 * 1024
RESUME_FRAMES, RESUME_BYTES = 250, 256 * 1024
MAX_BACKLOG_FRAMES, MAX_BACKLOG_BYTES = 10_000, 8 * 1024 * 1024
FLOOD_CLOSE_CODE = 4429


def _is_frame(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "websocket.receive"


def _frame_size(message: dict[str, Any]) -> int:
    return len(message.get("text") or message.get("bytes") or "")


def transport_of(send: Any) -> Any:
    """The connection's Twisted transport under daphne, found through the ASGI `send` callable (channels'
    session wrapper → `partial(server.handle_reply, protocol)`); None when the server is not daphne."""
    todo, seen = [send], 0
    while todo and seen < 8:
        candidate, seen = todo.pop(), seen + 1
        if isinstance(candidate, functools.partial):
            for arg in candidate.args:
                transport = getattr(arg, "transport", None)
                if hasattr(transport, "pauseProducing") and hasattr(transport, "resumeProducing"):
                    return transport
        owner = getattr(candidate, "__self__", None)
        inner = getattr(owner, "real_send", None)
        if inner is not None:
            todo.append(inner)
    return None


class Inbox:
    """The frames a client sent that the consumer has not handled yet: counted as daphne queues them (its
    queue's put_nowait is wrapped), with the socket paused past PAUSE_* and frames dropped past MAX_*."""

    def __init__(self, receive: Any, send: Any) -> None:
        queue = getattr(receive, "__self__", None)
        self.queue = queue if isinstance(queue, asyncio.Queue) else None
        self.transport = transport_of(send) if self.queue is not None else None
        self.frames = self.bytes = self.dropped = 0
        self.paused = self.flooded = False
        if self.queue is not None:
            self._put = self.queue.put_nowait
            self.queue.put_nowait = self._arrive  # an instance attribute: daphne calls this one

    def _arrive(self, message: Any) -> None:
        if _is_frame(message):
            size = _frame_size(message)
            if self.flooded or self.frames >= MAX_BACKLOG_FRAMES or self.bytes + size > MAX_BACKLOG_BYTES:
                self.flooded = True
                self.dropped += 1
                return
            self.frames, self.bytes = self.frames + 1, self.bytes + size
            if not self.paused and self.transport is not None:
                if self.frames > PAUSE_FRAMES or self.bytes > PAUSE_BYTES:
                    self.paused = True
                    self.transport.pauseProducing()
        self._put(message)

    def taken(self, message: Any) -> None:
        """`message` left the queue for the consumer."""
        if _is_frame(message):
            self.frames, self.bytes = max(0, self.frames - 1), max(0, self.bytes - _frame_size(message))
        if self.paused and self.frames <= RESUME_FRAMES and self.bytes <= RESUME_BYTES:
            self.paused = False
            self.transport.resumeProducing()

    def drop_waiting(self) -> int:
        """Drop the client frames still queued (anything else, e.g. the disconnect, stays) → how many."""
        if self.queue is None:
            return 0
        waiting = []
        while True:
            try:
                waiting.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        for message in waiting:
            if _is_frame(message):
                self.dropped += 1
                self.taken(message)
            else:
                self._put(message)
        return self.dropped
