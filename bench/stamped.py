"""Client sockets whose reads carry the kernel's arrival time (SO_TIMESTAMPNS), and a WebSocket reader on them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

# Linux's SO_TIMESTAMPNS (the "old" 64-bit-time one on 64-bit platforms); Python does not export it.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")
READ_SIZE = 65536

Handler = Callable[[Any, float], None]


class Unstamped:
    """Reads the kernel gave no time for, timed when read instead (later than their arrival: a latency can
    only look longer). Linux stamps packets only while some socket asks for it, and turns that on again in
    the background, so packets that arrive just after every stamped socket had closed go unstamped: the
    keeper below stays open for the whole process."""

    reads = 0
    _keeper: socket.socket | None = None

    @classmethod
    def keep_stamping(cls) -> None:
        """Turns stamping on for the process's life and waits (up to 2 s) until a TCP packet comes stamped."""
        if cls._keeper is not None:
            return
        cls._keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cls._keeper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        with socket.create_server(("127.0.0.1", 0)) as server:
            with socket.create_connection(server.getsockname()) as probe:
                probe.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                peer, _ = server.accept()
                with peer:
                    deadline = time.monotonic() + 2.0
                    while time.monotonic() < deadline:
                        peer.sendall(b".")
                        _, ancillary, _, _ = probe.recvmsg(1, 64)
                        if ancillary:
                            return
                        time.sleep(0.005)


def _arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
            return seconds + nanoseconds / 1e9
    Unstamped.reads += 1
    return time.time()


class StampedSocket:
    """A connected non-blocking TCP socket read with recvmsg, one callback per readable socket.

    Scenario d's driver stands in for hundreds of clients that would each have a machine of their own. Timed
    by when the driver gets round to them, frames to its last sockets wait behind its work on the first ones
    (and that work competes with the server for the same CPUs). So each read is stamped with the time the
    kernel received the data, and the readers do as little as they can in between. A read's time is the
    kernel's arrival time of the last packet it took (TCP also moves a packet's time forward when a later one
    is merged into it while queued), so data read late can only look later than it arrived, never earlier."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._on_data: Callable[[bytes, float], None] | None = None

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> StampedSocket:
        Unstamped.keep_stamping()
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.sock, data)

    def send_now(self, data: bytes) -> None:
        """A few bytes (a pong) from a read callback; dropped if the socket cannot take them now."""
        with contextlib.suppress(OSError):
            self.sock.send(data)

    def listen(self, on_data: Callable[[bytes, float], None]) -> None:
        """Calls on_data(bytes, arrival) for every read from now on, and on_data(b"", now) once at EOF."""
        self._on_data = on_data
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(READ_SIZE, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        assert self._on_data is not None
        if not data:
            self.close()
            return
        self._on_data(data, _arrival(ancillary))

    def close(self) -> None:
        """Closes the socket; a listener gets on_data(b"", now), as at EOF, unless it was the one closing."""
        if not self.closed:
            self.closed = True
            if self._on_data is not None:
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            if self._on_data is not None:
                self._on_data(b"", time.time())


class Inbox:
    """Messages parsed ahead of a `recv()`, or handed to a handler once one is set."""

    def __init__(self) -> None:
        self._queue: deque[tuple[Any, float]] = deque()
        self._handler: Handler | None = None
        self._on_error: Callable[[BaseException], None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None

    def put(self, message: Any, arrival: float) -> None:
        if self._handler is not None:
            self._handler(message, arrival)
            return
        self._queue.append((message, arrival))
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self.error is not None:
            return
        self.error = error
        self._wake()
        if self._on_error is not None:
            self._on_error(error)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> tuple[Any, float]:
        while not self._queue:
            if self.error is not None:
                raise self.error
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._queue.popleft()

    def handle(self, handler: Handler, on_error: Callable[[BaseException], None]) -> None:
        while self._queue:
            handler(*self._queue.popleft())
        self._handler, self._on_error = handler, on_error
        if self.error is not None:
            on_error(self.error)


class Receiver:
    """A protocol reader on a StampedSocket: `_consume` splits what arrives into messages for its inbox; an
    error there (a protocol violation, a handler that raised) fails the inbox and closes the socket."""

    _stream: StampedSocket
    _inbox: Inbox

    def _on_data(self, data: bytes, arrival: float) -> None:
        try:
            self._consume(data, arrival)
        except Exception as exc:
            self._inbox.fail(exc)  # first: closing fails it too, with a plain ConnectionError
            self._stream.close()

    def _consume(self, data: bytes, arrival: float) -> None:
        raise NotImplementedError


class StampedWebSocket(Receiver):
    """A WebSocket client: websockets' sans-I/O protocol for the handshake, then a minimal reader of the
    server's (unmasked) frames. Text messages come with their arrival time; pings are answered; no
    compression is offered."""

    def __init__(self, stream: StampedSocket) -> None:
        self._stream = stream
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._inbox = Inbox()

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str], timeout: float = 60.0) -> StampedWebSocket:
        uri = parse_uri(url)
        if uri.secure:
            raise ValueError("only ws:// is supported")
        stream = await StampedSocket.open(uri.host, uri.port, timeout)
        ws = cls(stream)
        try:
            handshake = asyncio.get_running_loop().create_future()
            protocol = ClientProtocol(uri, max_size=None)
            request = protocol.connect()
            for name, value in headers.items():
                request.headers[name] = value
            protocol.send_request(request)

            def on_handshake(data: bytes, arrival: float) -> None:
                if not data:
                    handshake.done() or handshake.set_exception(
                        ConnectionError("closed during the handshake")
                    )
                    return
                protocol.receive_data(data)
                events = protocol.events_received()
                if any(isinstance(e, Response) for e in events):
                    # The server speaks only when spoken to, so nothing follows its response in this read;
                    # a frame the protocol parsed anyway is taken as is.
                    for event in events:
                        if isinstance(event, Frame):
                            ws._frame(event.fin, event.opcode, event.data, arrival)
                    stream.listen(ws._on_data)
                    handshake.done() or handshake.set_result(arrival)

            stream.listen(on_handshake)
            for data in protocol.data_to_send():
                await stream.send(data)
            async with asyncio.timeout(timeout):
                await handshake
            if protocol.handshake_exc is not None:
                raise protocol.handshake_exc
        except BaseException:
            stream.close()
            raise
        return ws

    async def __aenter__(self) -> StampedWebSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, text: str) -> None:
        await self._stream.send(Frame(Opcode.TEXT, text.encode()).serialize(mask=True))

    async def recv(self) -> tuple[str, float]:
        """The next text message and the arrival time of the read that completed it."""
        return await self._inbox.get()

    def handle(
        self, handler: Callable[[str, float], None], on_error: Callable[[BaseException], None]
    ) -> None:
        """Every text message from now on goes to handler(text, arrival), called from the socket's reader;
        on_error(exception) once if the connection ends or the handler raises."""
        self._inbox.handle(handler, on_error)

    def _consume(self, data: bytes, arrival: float) -> None:
        if not data and not self._buffer:
            self._inbox.fail(ConnectionError("the server closed the connection"))
            return
        buffer = self._buffer + data if self._buffer else data
        at = 0
        while len(buffer) - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            size, start = second & 0x7F, at + 2
            if size == 126:
                if len(buffer) - at < 4:
                    break
                size, start = int.from_bytes(buffer[at + 2 : at + 4], "big"), at + 4
            elif size == 127:
                if len(buffer) - at < 10:
                    break
                size, start = int.from_bytes(buffer[at + 2 : at + 10], "big"), at + 10
            if second & 0x80:
                raise RuntimeError("the server sent a masked frame")
            if len(buffer) < start + size:
                break
            self._frame(first & 0x80, first & 0x0F, buffer[start : start + size], arrival)
            at = start + size
        self._buffer = buffer[at:]
        if not data:
            self._inbox.fail(ConnectionError("the server closed the connection"))

    def _frame(self, fin: int, opcode: int, payload: bytes, arrival: float) -> None:
        if opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self._fragments.append(payload)
            if fin:
                message, self._fragments = b"".join(self._fragments).decode(), []
                self._inbox.put(message, arrival)
        elif opcode == Opcode.PING:
            self._stream.send_now(Frame(Opcode.PONG, payload).serialize(mask=True))
        elif opcode == Opcode.CLOSE:
            self._inbox.fail(ConnectionError("the server closed the WebSocket"))

    async def close(self) -> None:
        try:
            if not self._stream.closed:
                await self._stream.send(Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=True))
        except OSError:  # the peer is already gone: nothing left to tell it
            pass
        finally:
            self._stream.close()
