"""Live frames written straight to daphne's socket: framed once, in order, deduplicated, gaps left to the pump."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet import abstract, tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from core.metrics import WS_FRAMES_SENT
from executions.consumers import _SENT, ExecutionConsumer
from executions.ws_wire import WRITE_CHUNK_BYTES, Wire, protocol_of, send_now

EXECUTION = "00000000-0000-0000-0000-00000000000a"


class FakeTransport:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


class UnreadTransport(abstract.FileDescriptor):
    """Twisted's own write buffer and producer pausing, never flushed: a client that reads nothing."""

    connected = True

    def startWriting(self) -> None:  # noqa: N802
        pass


def fake_protocol() -> WebSocketServerProtocol:
    protocol = WebSocketServerProtocol()
    protocol.state = WebSocketProtocol.STATE_OPEN
    protocol._perMessageCompress = None
    protocol.send_queue = []
    protocol.transport = FakeTransport()
    return protocol


def read_frames(data: bytes) -> list[dict[str, Any]]:
    """Unmasked server-to-client text frames → their JSON, one per WebSocket message."""
    frames, at = [], 0
    while at < len(data):
        assert data[at] == 0x81  # FIN, text
        length, at = data[at + 1], at + 2
        if length == 126:
            length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        frames.append(json.loads(data[at : at + length]))
        at += length
    return frames


def consumer_on(protocol: Any, last_seq: int = 3) -> ExecutionConsumer:
    consumer = ExecutionConsumer()
    consumer._protocol = protocol
    consumer.account_id = "1"
    consumer.subscriptions.add(EXECUTION)
    consumer._remember(EXECUTION, last_seq)
    return consumer


def message(*frames: dict[str, Any]) -> dict[str, Any]:
    return {"type": "execution.events", "account_id": "1", "frames": list(frames)}


def frame(seq: int, status: str | None = None, execution_id: str = EXECUTION) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "node", "execution_id": execution_id, "seq": seq, "timestamp": "t"}
    if status is not None:
        body = {**body, "type": "status", "status": {"status": status}}
    return body


def test_ws_wire_writes_a_message_once_framed_in_order_with_complete_after_the_terminal_status():
    # given two sockets on one execution, each at seq 3
    protocols = [fake_protocol(), fake_protocol()]
    consumers = [consumer_on(p) for p in protocols]
    shared = message(frame(3), frame(4), frame(5, "completed"))
    # when the hub hands both the same message (seq 3 a duplicate)
    for consumer in consumers:
        consumer._on_hub_message(shared)
    # then each socket got one write: 4, 5 and `complete`, framed once for both; nothing was queued
    for consumer, protocol in zip(consumers, protocols, strict=True):
        assert len(protocol.transport.chunks) == 1
        got = read_frames(protocol.transport.chunks[0])
        assert [(f["type"], f["seq"]) for f in got] == [("node", 4), ("status", 5), ("complete", 5)]
        assert got[2]["message"] == "Execution completed with status: completed"
        assert consumer.last_seq[EXECUTION] == 5 and EXECUTION in consumer.completed
        assert not consumer.outbox.messages
    assert protocols[0].transport.chunks[0] == protocols[1].transport.chunks[0]
    assert isinstance(shared["_wire"], Wire)


def test_ws_wire_leaves_a_gap_to_the_pump_and_writes_nothing():
    # given a socket at seq 3
    protocol = fake_protocol()
    consumer = consumer_on(protocol)
    # when a message skips seq 4 (a frame still in flight from another process, or lost)
    consumer._on_hub_message(message(frame(5)))
    # then nothing is written here: the message waits for the pump, which reads seq 4 back first
    assert protocol.transport.chunks == []
    assert len(consumer.outbox.messages) == 1


def test_ws_wire_keeps_order_behind_queued_messages_and_skips_unwanted_frames():
    # given a socket with a message already waiting for its pump
    protocol = fake_protocol()
    consumer = consumer_on(protocol)
    consumer.outbox.put(message(frame(5)))
    # when the next one arrives
    consumer._on_hub_message(message(frame(6)))
    # then it queues behind, unwritten
    assert protocol.transport.chunks == [] and len(consumer.outbox.messages) == 2
    # and a message of an execution the socket does not watch writes nothing and queues nothing
    idle = consumer_on(fake_protocol())
    idle._on_hub_message(message(frame(1, execution_id="00000000-0000-0000-0000-00000000000b")))
    assert idle._protocol.transport.chunks == [] and not idle.outbox.messages


def test_ws_wire_skips_a_stalled_or_closed_socket():
    # given a socket whose client stopped reading, and one whose WebSocket is closing
    stalled = consumer_on(fake_protocol())
    stalled.outbox.pauseProducing()
    closing = consumer_on(fake_protocol())
    closing._protocol.state = WebSocketProtocol.STATE_CLOSING
    # when a message arrives
    for consumer in (stalled, closing):
        consumer._on_hub_message(message(frame(4)))
    # then neither writes; the pump notes where the stalled client stands
    assert stalled._protocol.transport.chunks == [] and closing._protocol.transport.chunks == []
    assert len(stalled.outbox.messages) == 1 and len(closing.outbox.messages) == 1


def drain(transport: UnreadTransport) -> bytes:
    """What Twisted does once the client has read the buffer: empty it and resume the producer."""
    data = b"".join(transport._tempDataBuffer)
    transport._tempDataBuffer.clear()
    transport._tempDataLen = 0
    transport.producerPaused = False
    transport.producer.resumeProducing()
    return data


def test_ws_wire_writes_a_large_message_one_buffer_at_a_time_while_the_client_reads():
    # given a socket at seq 3 on Twisted's transport, its outbox registered as the producer, and a client that
    # has not read yet
    protocol = fake_protocol()
    protocol.transport = UnreadTransport()
    consumer = consumer_on(protocol)
    assert consumer.outbox.attach(protocol.transport)
    # when one transaction's message of 40 frames of ~8 KB each (320 KB) arrives
    big = [{**frame(seq), "message": "x" * 8000} for seq in range(4, 43)] + [frame(43, "completed")]
    consumer._on_hub_message(message(*big))
    # then about one buffer was written, whole frames in order from seq 4, and the rest waits (a reference to
    # the shared message, nothing copied and nothing read back from PostgreSQL later)
    first = b"".join(protocol.transport._tempDataBuffer)
    assert WRITE_CHUNK_BYTES < len(first) <= 2 * WRITE_CHUNK_BYTES
    assert consumer.outbox.stalled and consumer._rest is not None and not consumer.behind
    # and each time the client has read the buffer, the pump writes the next one
    chunks = [drain(protocol.transport)]
    while consumer._rest is not None:
        asyncio.run(consumer._write_rest())
        chunks.append(drain(protocol.transport))
    got = [f for chunk in chunks for f in read_frames(chunk)]
    assert [(f["type"], f["seq"]) for f in got] == [("node", s) for s in range(4, 43)] + [
        ("status", 43),
        ("complete", 43),
    ]
    assert all(len(chunk) <= 2 * WRITE_CHUNK_BYTES for chunk in chunks) and len(chunks) >= 4
    assert consumer.last_seq[EXECUTION] == 43 and not consumer.behind


def test_ws_wire_skips_what_a_catch_up_sent_while_a_message_waited():
    # given a large message written in part to a client that has not read yet
    protocol = fake_protocol()
    protocol.transport = UnreadTransport()
    consumer = consumer_on(protocol)
    consumer.outbox.attach(protocol.transport)
    consumer._on_hub_message(message(*[{**frame(seq), "message": "x" * 8000} for seq in range(4, 44)]))
    written = [f["seq"] for f in read_frames(drain(protocol.transport))]
    # when frames up to seq 40 reached the socket another way meanwhile (a catch-up from PostgreSQL)
    consumer._remember(EXECUTION, 40)
    asyncio.run(consumer._write_rest())
    # then the rest of the message writes only what follows
    assert written[-1] < 40
    assert [f["seq"] for f in read_frames(drain(protocol.transport))] == [41, 42, 43]


def test_ws_wire_finds_daphnes_protocol_behind_channels_send():
    # given daphne's send (partial(server.handle_reply, protocol)) wrapped by channels' session wrapper
    protocol = fake_protocol()

    class Wrapper:
        def __init__(self, real_send: Any) -> None:
            self.real_send = real_send

        async def send(self, message: Any) -> None:
            await self.real_send(message)

    async def handle_reply(proto: Any, message: Any) -> None:
        return None

    send = Wrapper(partial(handle_reply, protocol)).send
    # when looking for it / then it is found; another server's send has none
    assert protocol_of(send) is protocol
    assert protocol_of(Wrapper(handle_reply).send) is None


_SOCKETS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _SOCKETS:
        _SOCKETS.pop().close()


def twisted_connection() -> tuple[tcp.Server, socket.socket, MemoryReactorClock]:
    """daphne's kind of transport (Twisted's TCP server connection) on a real socket pair, under a reactor
    that never runs: what Twisted buffers stays buffered until the test calls doWrite."""
    ours, theirs = socket.socketpair()
    _SOCKETS.extend((ours, theirs))
    ours.setblocking(False)
    reactor = MemoryReactorClock()
    return tcp.Server(ours, Protocol(), ("127.0.0.1", 1), None, 1, reactor), theirs, reactor


def received_by(peer: socket.socket) -> bytes:
    peer.setblocking(False)
    chunks = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_ws_wire_sends_straight_to_the_socket_when_nothing_is_buffered():
    # Given a connection with nothing buffered
    transport, peer, reactor = twisted_connection()
    # When frames are written
    send_now(transport, b"frames")
    # Then the peer has them at once: nothing waits in Twisted's buffer, no write is scheduled
    assert received_by(peer) == b"frames"
    assert not transport._tempDataBuffer and not transport.dataBuffer
    assert transport not in reactor.getWriters()


def test_ws_wire_queues_behind_what_twisted_has_buffered():
    # Given bytes Twisted holds for a later write (the loop has not flushed them yet)
    transport, peer, reactor = twisted_connection()
    transport.write(b"first,")
    # When frames are written
    send_now(transport, b"second")
    # Then they do not overtake: nothing reaches the peer before the buffered bytes, and both go in order
    assert received_by(peer) == b""
    transport.doWrite()
    assert received_by(peer) == b"first,second"


def test_ws_wire_buffers_in_twisted_what_the_socket_did_not_take():
    # Given a peer that is not reading, and more frames than the kernel's buffers hold
    transport, peer, reactor = twisted_connection()
    blob = bytes(range(256)) * 40_000  # 10 MB
    # When they are written
    send_now(transport, blob)
    # Then the kernel took a part and Twisted holds the rest, its write scheduled; once the peer reads,
    # it gets every byte in order
    assert transport._tempDataLen > 0 and transport in reactor.getWriters()
    received = [received_by(peer)]
    while transport._tempDataBuffer or transport.dataBuffer:
        transport.doWrite()
        received.append(received_by(peer))
    assert b"".join(received) == blob


def test_ws_wire_leaves_a_closing_or_aborted_connection_to_twisted():
    # Given a connection Twisted is closing, and one that was aborted (its socket not closed yet)
    closing, closing_peer, _ = twisted_connection()
    closing.disconnecting = True
    aborted, aborted_peer, _ = twisted_connection()
    aborted.abortConnection()
    # When frames are written to each
    send_now(closing, b"late")
    send_now(aborted, b"late")
    # Then nothing is sent behind Twisted's back
    assert received_by(closing_peer) == b""
    assert received_by(aborted_peer) == b""


def test_consumers_count_frames_sent_once_per_loop_turn():
    # Given the frames-sent metric, nothing pending
    _SENT._flush()
    before = WS_FRAMES_SENT._value.get()

    async def scenario() -> tuple[float, float]:
        # When three sockets are written within one turn of the loop
        for count in (2, 3, 4):
            _SENT.add(count)
        during = WS_FRAMES_SENT._value.get()
        await asyncio.sleep(0)
        return during, WS_FRAMES_SENT._value.get()

    during, after = asyncio.run(scenario())
    # Then the metric moves once, by all of them, after that turn
    assert during == before
    assert after == before + 9


class RecordingWrapper(ProtocolWrapper):
    """A TLS transport's shape: a protocol wrapper whose unknown attributes reach the raw connection."""

    def __init__(self, transport: tcp.Server) -> None:
        super().__init__(WrappingFactory(Factory()), Protocol())
        self.transport = transport
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_ws_wire_never_writes_around_a_tls_transport():
    # Given a TLS-shaped wrapper over a raw connection (its `socket` is reachable through it), and a raw
    # connection that started TLS itself
    raw, peer, reactor = twisted_connection()
    wrapper = RecordingWrapper(raw)
    assert wrapper.socket is raw.socket
    started_tls, tls_peer, _ = twisted_connection()
    started_tls.TLS = True
    through_tls: list[bytes] = []
    started_tls.write = through_tls.append  # its TLS layer, which this test does not set up
    # When frames are written to either
    send_now(wrapper, b"secret")
    send_now(started_tls, b"secret")
    # Then both go through the transport's own write: no plaintext reaches either socket
    assert wrapper.written == [b"secret"]
    assert through_tls == [b"secret"]
    assert received_by(peer) == b""
    assert received_by(tls_peer) == b""
