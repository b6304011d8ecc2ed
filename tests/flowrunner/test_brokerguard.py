"""The broker guard: acking on a Redis channel whose connection was closed is a connection error, not a crash."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as redis_transport
from redis.exceptions import ConnectionError as RedisConnectionError

from flowrunner import brokerguard

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (FLOWRUNNER_REDIS_URL)")


@pytest.fixture
def delivered():
    """A message delivered on a channel, then the state Celery's consumer leaves it in when the broker goes
    away mid-close: the channel's pool dropped (`_disconnect_pools`), the transport's client cleared
    (`Connection._do_close_transport`), the channel still pointing at the transport."""
    name = f"guard-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name), name)
    connection = Connection(settings.REDIS_URL)
    connection.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
    channel = connection.channel()
    received = []
    connection.Consumer(
        [queue], channel=channel, callbacks=[lambda body, message: received.append(message)]
    ).consume()
    connection.drain_events(timeout=5)
    message = received[0]
    channel._disconnect_pools()
    transport = connection.transport
    connection._do_close_transport()
    yield message, transport
    # Nothing left for kombu's exit-time restore of unacked messages (it would log to a closed stream).
    channel.qos._on_collect.cancel()
    channel.qos._delivered.clear()
    with Connection(settings.REDIS_URL) as cleanup:
        cleanup.default_channel.queue_delete(name)
        cleanup.default_channel.client.delete(f"_kombu.binding.{name}")


def test_brokerguard_unguarded_ack_after_close_is_the_crash(delivered, monkeypatch):
    # Given kombu's own _connparams (the guard undone for this test)
    message, transport = delivered
    original = redis_transport.Channel._connparams.__wrapped__
    monkeypatch.setattr(redis_transport.Channel, "_connparams", original)
    # When the late ack of a task that finished during the outage runs
    # Then it is the AttributeError Celery reports as "Unrecoverable error" (not a connection error)
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'hostname'"):
        message.ack_log_error(logging.getLogger("test"), transport.connection_errors)


def test_brokerguard_ack_after_close_is_a_logged_connection_error(delivered, caplog):
    # Given the guard installed (flowrunner.celery installs it at import)
    brokerguard.install()
    message, transport = delivered
    # When the same late ack runs
    with caplog.at_level(logging.WARNING):
        message.ack_log_error(logging.getLogger("test"), transport.connection_errors)
    # Then it is a connection error Celery logs ("Couldn't ack") and survives
    assert RedisConnectionError in transport.connection_errors or any(
        issubclass(RedisConnectionError, kind) for kind in transport.connection_errors
    )
    assert "Couldn't ack" in caplog.text
    assert "used after its connection was closed" in caplog.text


def test_brokerguard_install_is_idempotent():
    # Given the guard installed twice
    brokerguard.install()
    first = redis_transport.Channel._connparams
    brokerguard.install()
    # Then kombu's method is wrapped once
    assert redis_transport.Channel._connparams is first
    assert not getattr(first.__wrapped__, "_flowrunner_guarded", False)
