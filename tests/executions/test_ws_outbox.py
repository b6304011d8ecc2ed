"""The per-socket outbox: bounded, and paused and resumed by the transport's write buffer."""

from __future__ import annotations

from executions import ws_outbox
from executions.ws_outbox import Outbox


class FakeTransport:
    """The producer bookkeeping of a Twisted FileDescriptor."""

    def __init__(self, producer: object = None) -> None:
        self.producer = producer

    def registerProducer(self, producer: object, streaming: bool) -> None:  # noqa: N802
        if self.producer is not None:
            raise RuntimeError("producer was never unregistered")
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None


def test_ws_outbox_refuses_messages_past_its_bound(monkeypatch):
    # given an outbox of two messages
    monkeypatch.setattr(ws_outbox, "OUTBOX_MESSAGES", 2)
    wakes: list[int] = []
    outbox = Outbox(lambda: wakes.append(1))
    # when three messages arrive
    accepted = [outbox.put({"n": n}) for n in range(3)]
    # then the third is refused and only two wait
    assert accepted == [True, True, False]
    assert [m["n"] for m in outbox.messages] == [0, 1]
    assert len(wakes) == 2


def test_ws_outbox_replaces_the_upgraded_http_channel_as_producer_and_tracks_pauses():
    # given a transport still holding the HTTP channel that upgraded it
    transport = FakeTransport(producer="http channel")
    wakes: list[int] = []
    outbox = Outbox(lambda: wakes.append(1))
    # when the outbox attaches and the transport pauses then resumes it
    assert outbox.attach(transport)
    outbox.pauseProducing()
    stalled = outbox.stalled
    outbox.resumeProducing()
    # then it is the producer, was stalled while paused, and wakes its writer on resume
    assert transport.producer is outbox
    assert stalled and not outbox.stalled
    assert wakes == [1]
    outbox.detach()
    assert transport.producer is None


def test_ws_outbox_without_a_twisted_transport_never_stalls():
    # given no transport (another ASGI server, the test communicator)
    outbox = Outbox(lambda: None)
    # when attaching
    attached = outbox.attach(None)
    # then nothing is registered and the outbox does not stall
    assert not attached and not outbox.stalled
