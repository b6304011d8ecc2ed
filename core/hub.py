"""The per-process fan-out hub: one Redis pub/sub subscription per group, each message decoded once for all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close

logger = logging.getLogger(__name__)

Subscriber = Callable[[dict[str, Any]], None]


class RedisHubChannelLayer(RedisPubSubChannelLayer):
    """channels_redis' pub/sub layer (a group_send is one PUBLISH; a process subscribes once per group) with
    two additions for live frames:

    - a group message is deserialized once per process and the same dict goes to every local receiver, which
      must treat it as read-only (a consumer may cache derived data on it, e.g. encoded text);
    - `hub_add(group, callback)`: a local subscriber that is called synchronously with each message of the
      group, without a channel of its own in between (no queue, task switch or decode per subscriber).

    `group_send_many` publishes one message to several groups in one pipelined round trip.
    """

    def deserialize(self, message: Any) -> Any:
        if isinstance(message, dict):  # decoded once already by the hub, shared by every local receiver
            return message
        return super().deserialize(message)

    def _get_layer(self) -> HubLoopLayer:
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = HubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer

    async def hub_add(self, group: str, callback: Subscriber) -> None:
        await self._get_layer().hub_add(group, callback)

    async def hub_discard(self, group: str, callback: Subscriber) -> None:
        await self._get_layer().hub_discard(group, callback)

    async def group_send_many(self, groups: list[str], message: dict[str, Any]) -> None:
        await self._get_layer().group_send_many(groups, message)

    def hub_size(self) -> int:
        """Local hub subscriptions of the current loop (for tests and diagnostics)."""
        layer = self._layers.get(asyncio.get_running_loop())
        return 0 if layer is None else sum(len(s) for s in layer.hub.values())


class _Gate:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class HubLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # group channel name → local subscribers, in the order they joined
        self.hub: dict[str, dict[Subscriber, None]] = {}
        # A group's first subscriber joining and its last one leaving (the SUBSCRIBE and UNSUBSCRIBE) are
        # serialized per group, so a leave never unsubscribes after a new join. Joining or leaving a group that
        # keeps other subscribers needs no lock and no round trip: thousands of sockets coming and going do
        # not queue behind each other.
        self._gates: dict[str, _Gate] = {}
        for shard in self._shards:
            shard._receive_message = self._make_receiver(shard)

    def _make_receiver(self, shard: Any) -> Callable[[Any], None]:
        def receive(message: Any) -> None:
            if message is None:
                return
            name = message["channel"]
            if isinstance(name, bytes):
                name = name.decode()
            data = message["data"]
            if name in self.channels:  # a consumer's own channel: as channels_redis does
                self.channels[name].put_nowait(data)
                return
            subscribers = self.hub.get(name)
            queued = self.groups.get(name)
            if not subscribers and not queued:
                return
            try:
                decoded = self.channel_layer.deserialize(data)
            except Exception:
                logger.warning("undecodable message on %s dropped", name, exc_info=True)
                return
            for channel_name in queued or ():
                if channel_name in self.channels:
                    self.channels[channel_name].put_nowait(decoded)
            for callback in list(subscribers or ()):
                try:
                    callback(decoded)
                except Exception:  # one subscriber's bug must not starve the others
                    logger.exception("hub subscriber of %s failed", name)

        return receive

    async def hub_add(self, group: str, callback: Subscriber) -> None:
        """Returns once the process is subscribed to the group: a message published after that arrives."""
        name = self._get_group_channel_name(group)
        subscribers = self.hub.get(name)
        if subscribers and name not in self._gates:  # subscribed already, and nothing is changing that
            subscribers[callback] = None
            return
        async with self._gate(name):
            self.hub.setdefault(name, {})[callback] = None
            await self._get_shard(name).subscribe(name)

    async def hub_discard(self, group: str, callback: Subscriber) -> None:
        name = self._get_group_channel_name(group)
        subscribers = self.hub.get(name)
        if subscribers is None or callback not in subscribers:
            return
        del subscribers[callback]
        if subscribers:
            return
        async with self._gate(name):
            if self.hub.get(name):  # someone joined meanwhile
                return
            self.hub.pop(name, None)
            if name not in self.groups:
                await self._get_shard(name).unsubscribe(name)

    @contextlib.asynccontextmanager
    async def _gate(self, name: str) -> AsyncIterator[None]:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = _Gate()
        gate.users += 1
        try:
            async with gate.lock:
                yield
        finally:
            gate.users -= 1
            if not gate.users:
                del self._gates[name]

    async def group_send_many(self, groups: list[str], message: dict[str, Any]) -> None:
        data = self.channel_layer.serialize(message)
        by_shard: dict[Any, list[str]] = {}
        for group in groups:
            name = self._get_group_channel_name(group)
            by_shard.setdefault(self._get_shard(name), []).append(name)
        for shard, names in by_shard.items():
            async with shard._lock:
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for name in names:
                    pipe.publish(name, data)
                await pipe.execute()
