"""The broker transport: one publishing Redis client per channel, messages delivered as with kombu's own."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue

from flowrunner import broker_transport
from flowrunner.celery import app

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (FLOWRUNNER_REDIS_URL)")


@pytest.fixture
def connection():
    conn = Connection(settings.REDIS_URL, transport=broker_transport.transport_for("redis://"))
    yield conn
    conn.release()


def _publish(conn: Connection, queue: Queue, body: dict) -> None:
    conn.Producer().publish(body, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue])


def test_broker_transport_only_for_plain_redis_urls():
    # given broker URLs of each kind / when the transport is chosen / then only plain redis:// gets ours
    assert (
        broker_transport.transport_for("redis://:secret@broker:6379/0")
        == "flowrunner.broker_transport:Transport"
    )
    assert broker_transport.transport_for("rediss://broker:6380/0") is None
    assert broker_transport.transport_for("sentinel://broker:26379") is None
    assert broker_transport.transport_for("memory://localhost/") is None


def test_broker_transport_is_the_celery_apps_for_a_redis_broker():
    # given the tests' Redis broker / when the app opens a connection / then its channels are ours
    channel = app.connection_for_write().default_channel
    assert isinstance(channel, broker_transport.Channel)


def test_broker_transport_reuses_one_client_and_delivers_every_message(connection):
    # given a queue on a channel of the transport
    name = f"transport-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name), name)
    channel = connection.default_channel
    # when three messages are published
    for n in range(3):
        _publish(connection, queue, {"n": n})
    # then one client published them all, and all three arrive in order
    assert channel._create_client() is channel._create_client()
    received = []
    with connection.Consumer(
        [queue], callbacks=[lambda body, message: (received.append(body), message.ack())]
    ):
        while len(received) < 3:
            connection.drain_events(timeout=5)
    assert received == [{"n": 0}, {"n": 1}, {"n": 2}]
    queue(channel).delete()


def test_broker_transport_new_pool_gets_a_new_client(connection):
    # given a channel whose publishing client exists
    channel = connection.default_channel
    before = channel._create_client()
    # when its pool is dropped (what kombu does when the connection breaks)
    channel._disconnect_pools()
    after = channel._create_client()
    # then the next publish uses a client on the new pool, not the old one
    assert after is not before
    assert after.connection_pool is channel.pool
    assert after.ping()
