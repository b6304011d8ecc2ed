"""Sends committed events' frames to the Channels groups `execution.<id>` and `account.<id>`.

With Redis, frames go through one background thread per process with its own event loop: the worker that
committed does not wait for Redis, the loop's connection pool is reused, and frames leave in commit order.
The in-memory layer (embedded mode) lives in the caller's event loop, so there the send is direct.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import _consistent_hash, decode_hosts
from django.conf import settings

from core import broker_transport

logger = logging.getLogger(__name__)

EVENT_MESSAGE_TYPE = "execution.event"
# One channel-layer message per group carries every frame of one transaction, in seq order.
EVENTS_MESSAGE_TYPE = "execution.events"


def execution_group(execution_id: object) -> str:
    return f"execution.{execution_id}"


def account_group(account_id: object) -> str:
    return f"account.{account_id}"


async def _send_all(layer: Any, frames: list[dict[str, Any]], account_id: str) -> None:
    by_execution: dict[str, list[dict[str, Any]]] = {}
    for frame in frames:
        by_execution.setdefault(frame["execution_id"], []).append(frame)
    for execution_id, batch in by_execution.items():
        message = {"type": EVENTS_MESSAGE_TYPE, "frames": batch, "account_id": account_id}
        groups = [execution_group(execution_id), account_group(account_id)]
        publish_many = getattr(layer, "group_send_many", None)
        if publish_many is not None:  # the hub: one pipelined round trip for both groups
            await publish_many(groups, message)
        else:  # both groups at once: the next node's task waits for these sends
            await asyncio.gather(*(layer.group_send(group, message) for group in groups))


class _Sender:
    """A daemon thread draining a queue of frame batches into the channel layer, in order."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.pending = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="flowrunner-broadcast", daemon=True)
        self.thread.start()

    def submit(
        self, frames: list[dict[str, Any]], account_id: str, done: threading.Event | None = None
    ) -> None:
        with self.lock:
            self.pending += 1
        self.queue.put((frames, account_id, done))

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        layer = get_channel_layer()
        while True:
            frames, account_id, done = self.queue.get()
            try:
                if frames:
                    loop.run_until_complete(_send_all(layer, frames, account_id))
            except Exception:  # the events are durable in PostgreSQL; a subscriber catches up by seq
                logger.warning("broadcast of %d event(s) failed", len(frames), exc_info=True)
            finally:
                with self.lock:
                    self.pending -= 1
                if done is not None:
                    done.set()

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.01)


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _get_sender() -> _Sender:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():  # a forked child needs its own thread
            _sender = _Sender()
        return _sender


@atexit.register
def _drain_at_exit() -> None:
    if _sender is not None and _sender.pid == os.getpid():
        _sender.drain(timeout=2.0)


# How long a worker waits for its frames to reach the channel layer before it publishes the next task anyway
# (a frame that is late or lost is read back from PostgreSQL by its subscribers).
THEN_WAIT_SECONDS = 2.0


class _DirectPublisher:
    """PUBLISHes a transaction's frames from the caller's thread, for the pub/sub layers, with the layer's own
    serializer, channel names and shards: what the sender thread's group_send would write, without handing the
    frames to a thread and an event loop and waiting for them to come back."""

    def __init__(self, layer: Any) -> None:
        self.pid = os.getpid()
        self.layer = layer
        self.prefix = layer._kwargs.get("prefix", "asgi")
        self.hash = _consistent_hash
        hosts = decode_hosts(layer._kwargs.get("hosts"))
        self.clients = [redis.Redis.from_url(host["address"]) for host in hosts]
        # With one server and FlowRunner's broker transport, the frames go in the next task's own pipeline,
        # ahead of it, when that task goes to this same server (the transport checks its own connection).
        broker_url = getattr(settings, "CELERY_BROKER_URL", "") or ""
        transport = broker_transport.transport_for(broker_url)
        self.ride_with_tasks = (
            len(hosts) == 1
            and transport is not None
            and getattr(settings, "CELERY_BROKER_TRANSPORT", None) == transport
        )
        self.address = hosts[0]["address"] if hosts else ""
        # With Celery's `task-sent` events on, that event joins the same pipeline after the task's message.
        self.event_follows = bool(getattr(settings, "CELERY_TASK_SEND_SENT_EVENT", False))

    @classmethod
    def for_layer(cls, layer: Any) -> _DirectPublisher | None:
        if not isinstance(layer, RedisPubSubChannelLayer):
            return None
        hosts = decode_hosts(layer._kwargs.get("hosts"))
        if any(set(host) != {"address"} for host in hosts):  # sentinels and the like: the layer's own way
            return None
        return cls(layer)

    def commands(self, frames: list[dict[str, Any]], account_id: str) -> dict[int, list[tuple[str, bytes]]]:
        """shard → the (channel, data) PUBLISHes of these frames."""
        by_execution: dict[str, list[dict[str, Any]]] = {}
        for frame in frames:
            by_execution.setdefault(frame["execution_id"], []).append(frame)
        by_shard: dict[int, list[tuple[str, bytes]]] = {}
        for execution_id, batch in by_execution.items():
            data = self.layer.serialize(
                {"type": EVENTS_MESSAGE_TYPE, "frames": batch, "account_id": account_id}
            )
            for group in (execution_group(execution_id), account_group(account_id)):
                name = f"{self.prefix}__group__{group}"
                by_shard.setdefault(self.hash(name, len(self.clients)), []).append((name, data))
        return by_shard

    def execute(self, by_shard: dict[int, list[tuple[str, bytes]]]) -> None:
        """Send them, one pipeline per shard; never raises (a lost frame is replayed from PostgreSQL)."""
        try:
            for shard, commands in by_shard.items():
                pipe = self.clients[shard].pipeline(transaction=False)
                for name, data in commands:
                    pipe.publish(name, data)
                pipe.execute()
        except Exception:
            logger.warning("broadcast of %d message(s) failed", len(by_shard), exc_info=True)

    def publish(
        self, frames: list[dict[str, Any]], account_id: str, then: Callable[[], None] | None = None
    ) -> None:
        """Send the frames, then run `then`; when `then` publishes a task on the same server, in its round trip."""
        try:
            by_shard = self.commands(frames, account_id)
        except Exception:
            logger.warning("broadcast of %d event(s) failed", len(frames), exc_info=True)
            by_shard = {}
        if then is not None and self.ride_with_tasks and len(by_shard) == 1:
            (commands,) = by_shard.values()
            sent = False
            try:
                sent = broker_transport.publish_with_next_put(
                    commands, then, server_url=self.address, event_follows=self.event_follows
                )
            finally:
                if not sent:  # no put took them: none was made (the execution ended), or it failed
                    self.execute(by_shard)
            return
        self.execute(by_shard)
        if then is not None:
            then()


_direct: list[_DirectPublisher | None] = []


def _direct_publisher() -> _DirectPublisher | None:
    if not _direct or (_direct[0] is not None and _direct[0].pid != os.getpid()):
        _direct[:] = [_DirectPublisher.for_layer(get_channel_layer())]
    return _direct[0]


def _publish_direct(
    frames: list[dict[str, Any]], account_id: str, then: Callable[[], None] | None = None
) -> bool:
    """Publish on the caller's thread, then run `then`, when no earlier frames of this process are still queued
    (they must go first); False (nothing done) when that is not possible (frames queued, another kind of layer)."""
    if _sender is not None and _sender.pid == os.getpid() and _sender.pending:
        return False
    publisher = _direct_publisher()
    if publisher is None:
        return False
    publisher.publish(frames, account_id, then)
    return True


def broadcast_frames(
    frames: list[dict[str, Any]], *, account_id: Any, then: Callable[[], None] | None = None
) -> None:
    """Send committed events' frames, in seq order; never raises (a lost frame is replayed from PostgreSQL).

    `then` (publishing the next node's task) runs on the caller's thread once these frames, and every frame
    submitted before them, have been handed to the channel layer: a subscriber sees a node finish before the
    next one can start."""
    if frames and then is not None and _uses_redis() and _publish_direct(frames, str(account_id), then):
        return
    if frames or then is not None:
        if _uses_redis():
            done = threading.Event() if then is not None else None
            _get_sender().submit(frames, str(account_id), done)
            if done is not None:
                done.wait(THEN_WAIT_SECONDS)
        elif frames:
            _send_direct(frames, account_id)
    if then is not None:
        then()


def _uses_redis() -> bool:
    return "redis" in settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "").lower()


def _send_direct(frames: list[dict[str, Any]], account_id: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(_send_all)(layer, frames, str(account_id))
    except Exception:
        logger.warning("broadcast of %d event(s) failed", len(frames), exc_info=True)


def drain(timeout: float = 2.0) -> None:
    """Wait until the frames submitted so far have been handed to the channel layer (tests, shutdown)."""
    if _sender is not None and _sender.pid == os.getpid():
        _sender.drain(timeout)
