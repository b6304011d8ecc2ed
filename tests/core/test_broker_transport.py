"""The broker transport: one publishing Redis client per channel, messages delivered as with kombu's own."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings
from kombu import Connection, Exchange, Queue

from core import broker_transport
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
        broker_transport.transport_for("redis://:secret@broker:6379/0") == "core.broker_transport:Transport"
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


def test_broker_transport_server_of_ignores_the_database_only():
    # given Redis URLs / then a server is its host, port and credentials, whichever database
    assert broker_transport.server_of("redis://:pw@h:6379/0") == broker_transport.server_of("redis://:pw@h/3")
    assert broker_transport.server_of("redis://h:6379/0") != broker_transport.server_of("redis://h:6380/0")
    assert broker_transport.server_of("redis://:pw@h/0") != broker_transport.server_of("redis://:other@h/0")


def test_broker_transport_publishes_ride_ahead_of_the_next_message_in_one_round_trip(connection, monkeypatch):
    # given a queue, a subscriber of a pub/sub channel, and every pipeline this process sends recorded
    name = f"transport-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name), name)
    listener = redis.Redis.from_url(settings.REDIS_URL).pubsub()
    listener.subscribe(name)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    _publish(connection, queue, {"n": 0})  # declares the queue (its own pipelines) once
    sent: list[list[str]] = []
    execute = redis.client.Pipeline.execute

    def recording(pipe, *args, **kwargs):
        sent.append([command[0][0] for command in pipe.command_stack])
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", recording)
    # when two PUBLISHes ride with a task message published in the block
    rode = broker_transport.publish_with_next_put(
        [(name, b"frame-1"), (name, b"frame-2")],
        lambda: _publish(connection, queue, {"n": 1}),
        server_url=settings.REDIS_URL,
    )
    # then they went in the message's own pipeline, before its LPUSH: one round trip, in order
    assert rode is True
    assert sent == [["PUBLISH", "PUBLISH", "LPUSH"]]
    assert [listener.get_message(timeout=5)["data"] for _ in range(2)] == [b"frame-1", b"frame-2"]
    received = []
    with connection.Consumer(
        [queue], callbacks=[lambda body, message: (received.append(body), message.ack())]
    ):
        while len(received) < 2:
            connection.drain_events(timeout=5)
    assert received == [{"n": 0}, {"n": 1}]
    # and the next message, outside the block, is put alone
    sent.clear()
    _publish(connection, queue, {"n": 2})
    assert sent == []
    listener.close()
    queue(connection.default_channel).delete()


def test_broker_transport_publishes_that_found_no_message_are_left_to_the_caller(connection):
    # given a block that puts no message (the execution ended: no next task)
    # when PUBLISHes are offered to ride / then the caller is told to send them itself, and none is left over
    assert (
        broker_transport.publish_with_next_put([("nowhere", b"x")], lambda: None, server_url="redis://h")
        is False
    )
    assert getattr(broker_transport._riders, "commands", None) is None


def test_broker_transport_publishes_meant_for_another_server_do_not_ride(connection):
    # given a message put on the broker while the PUBLISHes are meant for another Redis server
    name = f"transport-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name), name)
    _publish(connection, queue, {"n": 0})
    # when the message is put / then it goes alone and the caller is told to send the PUBLISHes itself
    other = "redis://elsewhere.invalid:6390/0"
    assert (
        broker_transport.publish_with_next_put(
            [(name, b"x")], lambda: _publish(connection, queue, {"n": 1}), server_url=other
        )
        is False
    )
    queue(connection.default_channel).delete()


def test_broker_transport_a_put_that_failed_leaves_its_publishes_to_the_caller(connection, monkeypatch):
    # given a queue, and a Redis pipeline that fails once (the connection dropped mid-send)
    name = f"transport-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name), name)
    _publish(connection, queue, {"n": 0})
    execute = redis.client.Pipeline.execute
    failures = [redis.ConnectionError("dropped")]

    def failing(pipe, *args, **kwargs):
        if failures:
            raise failures.pop()
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", failing)

    def publish() -> None:
        with contextlib.suppress(
            redis.ConnectionError
        ):  # what executions.dispatch does with a failed publish
            _publish(connection, queue, {"n": 1})

    # when the PUBLISHes were offered to that put
    rode = broker_transport.publish_with_next_put([(name, b"frame")], publish, server_url=settings.REDIS_URL)
    # then the caller is told they were not sent (so it sends them: no frame is lost)
    assert rode is False
    queue(connection.default_channel).delete()


def _recording_pipelines(monkeypatch, failures: list[Exception] | None = None) -> list[list[tuple]]:
    sent: list[list[tuple]] = []
    execute = redis.client.Pipeline.execute

    def recording(pipe, *args, **kwargs):
        if failures:
            raise failures.pop()
        sent.append([command[0] for command in pipe.command_stack])
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", recording)
    return sent


def _drain(queue_name: str, expected: int) -> list[dict]:
    received: list[dict] = []
    queue = Queue(queue_name, Exchange(queue_name), queue_name)
    with (
        app.connection_for_read() as conn,
        conn.Consumer(
            [queue], accept=["json"], callbacks=[lambda body, message: (received.append(body), message.ack())]
        ),
    ):
        with contextlib.suppress(TimeoutError):
            while len(received) < expected + 1:  # one more than expected: none is left over
                conn.drain_events(timeout=1)
        queue(conn.default_channel).delete()
    return received


def _sent_events_on_and_a_listener(monkeypatch) -> tuple[str, Any]:
    """Celery's task-sent events on, a queue that already holds one task message (`[0]`), and a subscriber of a
    pub/sub channel of the queue's name."""
    name = f"transport-{uuid.uuid4().hex}"
    monkeypatch.setitem(app.conf, "task_send_sent_event", True)
    app.send_task("flowrunner.tests.nothing", args=[0], queue=name)  # declares the queue once
    listener = redis.Redis.from_url(settings.REDIS_URL).pubsub()
    listener.subscribe(name)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    return name, listener


def _frame_with_a_celery_task(name: str) -> bool:
    """A frame offered to ride with the task message `[1]` Celery sends to queue `name`, its event following."""
    return broker_transport.publish_with_next_put(
        [(name, b"frame")],
        lambda: app.send_task("flowrunner.tests.nothing", args=[1], queue=name),
        server_url=settings.REDIS_URL,
        event_follows=True,
    )


def test_broker_transport_a_task_and_its_sent_event_ride_in_the_publishes_round_trip(monkeypatch):
    # given Celery's task-sent events on, a subscriber of a frame channel, and every pipeline recorded
    name, listener = _sent_events_on_and_a_listener(monkeypatch)
    sent = _recording_pipelines(monkeypatch)
    # when a frame rides with a task Celery sends
    rode = _frame_with_a_celery_task(name)
    # then the frame, the task's message and its task-sent event went in one pipeline, in that order
    assert rode is True
    assert [[command[0] for command in pipe] for pipe in sent] == [["PUBLISH", "LPUSH", "PUBLISH"]]
    event_channel, event = sent[0][2][1], sent[0][2][2]
    assert b"celeryev" in (event_channel if isinstance(event_channel, bytes) else event_channel.encode())
    assert "task.sent" in (event if isinstance(event, str) else event.decode())
    assert listener.get_message(timeout=5)["data"] == b"frame"
    # and both task messages arrive, once each
    assert [body[0] for body in _drain(name, 2)] == [[0], [1]]
    listener.close()


def test_broker_transport_a_task_whose_event_did_not_follow_is_still_put(connection, monkeypatch):
    # given a queue, and a caller that expects an event although the message is published without one
    name = f"transport-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name), name)
    _publish(connection, queue, {"n": 0})
    sent = _recording_pipelines(monkeypatch)
    # when a frame rides with that message
    rode = broker_transport.publish_with_next_put(
        [(name, b"frame")],
        lambda: _publish(connection, queue, {"n": 1}),
        server_url=settings.REDIS_URL,
        event_follows=True,
    )
    # then the message and the frame still went, in one pipeline, once the block was done
    assert rode is True
    assert [[command[0] for command in pipe] for pipe in sent] == [["PUBLISH", "LPUSH"]]
    assert _drain(name, 2) == [{"n": 0}, {"n": 1}]
    assert getattr(broker_transport._riders, "pending", None) is None


def test_broker_transport_a_failed_event_pipeline_is_sent_once_when_kombu_retries(monkeypatch):
    # given task-sent events on, and a Redis pipeline that fails once (the connection dropped mid-send)
    name, listener = _sent_events_on_and_a_listener(monkeypatch)
    _recording_pipelines(monkeypatch, failures=[redis.ConnectionError("dropped")])
    # when a frame rides with a task Celery sends (and retries the failed event publish)
    rode = _frame_with_a_celery_task(name)
    # then the retry on a new channel carried the frame and the message: each arrives once
    assert rode is True
    assert [body[0] for body in _drain(name, 2)] == [[0], [1]]
    assert listener.get_message(timeout=2)["data"] == b"frame"
    assert listener.get_message(timeout=1) is None
    listener.close()
