"""Flow control of a WebSocket connection's outgoing frames: a bounded queue and the transport's write buffer."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

logger = logging.getLogger(__name__)

# Live messages (one per committed transaction) waiting for one socket. The messages are shared by every
# local subscriber, so this bounds references, not copies; past it a message is dropped and its executions
# are read back from PostgreSQL once the socket has caught up.
OUTBOX_MESSAGES = 256
# A client whose socket has taken nothing for this long is closed with STALLED_CLOSE_CODE: its frames are all
# in PostgreSQL, and it may reconnect with `since`.
STALL_CLOSE_SECONDS = 60.0
STALLED_CLOSE_CODE = 4408
# If the close handshake cannot get through a full buffer either, the TCP connection is dropped.
ABORT_AFTER_CLOSE_SECONDS = 5.0


@implementer(IPushProducer)
class Outbox:
    """What is waiting to be written to one socket, and whether its transport can take more.

    Under daphne it is registered as the streaming producer of the connection's Twisted transport: Twisted
    calls pauseProducing once the transport's write buffer is full (the client stopped reading) and
    resumeProducing when it has drained. While paused nothing more is written — the connection's memory stays
    bounded by that buffer — and the consumer notes, per execution, where the client stopped."""

    def __init__(self, wake: Callable[[], None], label: str = "") -> None:
        self.label = label
        self.messages: deque[dict[str, Any]] = deque()
        self.stalled_since: float | None = None
        self.transport: Any = None
        self._wake = wake

    @property
    def stalled(self) -> bool:
        return self.stalled_since is not None

    def stalled_for(self, now: float) -> float:
        return 0.0 if self.stalled_since is None else now - self.stalled_since

    def attach(self, transport: Any) -> bool:
        """Become `transport`'s producer; False when it is not a Twisted transport (another server, tests)."""
        if transport is None or not hasattr(transport, "registerProducer"):
            return False
        if getattr(transport, "producer", None) is not None:
            # The HTTP channel that upgraded the connection is still registered; it no longer writes to it.
            transport.unregisterProducer()
        transport.registerProducer(self, True)
        self.transport = transport
        return True

    def detach(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None and getattr(transport, "producer", None) is self:
            transport.unregisterProducer()
        self.messages.clear()

    def put(self, message: dict[str, Any]) -> bool:
        """Queue a live message → False when the queue is full (the caller notes what was dropped)."""
        if len(self.messages) >= OUTBOX_MESSAGES:
            return False
        self.messages.append(message)
        self._wake()
        return True

    def abort(self) -> None:
        if self.transport is not None and hasattr(self.transport, "abortConnection"):
            self.transport.abortConnection()

    # IPushProducer, called by Twisted

    def pauseProducing(self) -> None:  # noqa: N802
        if self.stalled_since is None:
            self.stalled_since = time.monotonic()
            logger.info("websocket client %s stopped reading; its frames wait in PostgreSQL", self.label)

    def resumeProducing(self) -> None:  # noqa: N802
        self.stalled_since = None
        self._wake()

    def stopProducing(self) -> None:  # noqa: N802
        self.messages.clear()
