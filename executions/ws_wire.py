"""Live frames as WebSocket wire bytes, framed once per process and written straight to daphne's sockets."""

from __future__ import annotations

import functools
from typing import Any

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from twisted.internet import tcp

from executions.ws_frames import complete_frame, encode, is_terminal_status

OPEN = WebSocketProtocol.STATE_OPEN


def protocol_of(send: Any) -> Any:
    """daphne's WebSocket protocol (autobahn) behind an ASGI `send` callable (channels' session wrapper →
    `partial(server.handle_reply, protocol)`); None when the server is not daphne."""
    todo, seen = [send], 0
    while todo and seen < 8:
        candidate, seen = todo.pop(), seen + 1
        if isinstance(candidate, functools.partial):
            for arg in candidate.args:
                if isinstance(arg, WebSocketProtocol):
                    return arg
        owner = getattr(candidate, "__self__", None)
        inner = getattr(owner, "real_send", None)
        if inner is not None:
            todo.append(inner)
    return None


class Wire:
    """The frames of one hub message (shared by every local subscriber, so cached on it): their JSON text,
    their server-to-client WebSocket frames (unmasked, so the same bytes serve every socket) and, for a
    terminal status, the `complete` that follows it."""

    __slots__ = ("texts", "_source", "_frames", "_completes")

    def __init__(self, frames: list[Any]) -> None:
        self.texts = [encode(f) if isinstance(f, dict) else "" for f in frames]
        self._source = frames
        self._frames: list[PreparedMessage] | None = None
        self._completes: list[PreparedMessage | None] = []

    @property
    def frames(self) -> list[PreparedMessage]:
        """Framed on first use: a socket that is not daphne's (tests, the embedded layer) needs only text."""
        if self._frames is None:
            self._frames = [_prepare(text) for text in self.texts]
            self._completes = [
                _prepare(encode(complete_frame(f))) if isinstance(f, dict) and is_terminal_status(f) else None
                for f in self._source
            ]
        return self._frames

    @property
    def completes(self) -> list[PreparedMessage | None]:
        self.frames  # noqa: B018 - frames and completes are prepared together
        return self._completes

    @staticmethod
    def of(message: dict[str, Any]) -> Wire:
        wire = message.get("_wire")
        if not isinstance(wire, Wire):
            wire = message["_wire"] = Wire(message["frames"])
        return wire


def _prepare(text: str) -> PreparedMessage:
    return PreparedMessage(text.encode("utf-8"), False, False, False)


# A socket is written at most this much at a time (Twisted's transport buffer size), then asked whether its
# client still takes frames.
WRITE_CHUNK_BYTES = 64 * 1024


def write(protocol: Any, prepared: list[PreparedMessage]) -> None:
    """Several messages in one write: a WebSocket frame is self-delimiting, so the client still reads one
    frame per message. With compression negotiated each goes through autobahn's own path."""
    if protocol._perMessageCompress is None and not protocol.send_queue:
        send_now(protocol.transport, b"".join(p.payloadHybi for p in prepared))
        return
    for p in prepared:
        protocol.sendPreparedMessage(p)


def send_now(transport: Any, data: bytes) -> None:
    """Hand `data` to the kernel at once when the transport has nothing buffered, and buffer in Twisted only
    what the socket did not take. Twisted's own `write` always buffers, registers the socket for writing,
    sends on the loop's next turn and unregisters it: two more system calls and a loop turn per socket, and
    with hundreds of sockets on one execution the first of them waits until every one has been handed its
    copy. Data never overtakes what is buffered (it goes straight out only when nothing is), and a failing
    socket is left to Twisted's write, which closes the connection as it always does."""
    # Only Twisted's own TCP (or UNIX) connection without TLS: a TLS transport is a protocol wrapper that
    # forwards unknown attributes, `socket` included, to the raw connection underneath, and writing there
    # would bypass the encryption.
    if (
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._aborting  # aborted: its connectionLost is only scheduled, the socket still open
        and not transport.dataBuffer
        and not transport._tempDataBuffer
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:  # EAGAIN, or a connection Twisted's write will find lost
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
