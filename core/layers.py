"""The embedded channel layer: Channels' in-memory layer, safe to send to from the in-process worker's threads."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import InMemoryChannelLayer


class EmbeddedChannelLayer(InMemoryChannelLayer):
    """InMemoryChannelLayer whose queues are only touched on the consumers' event loop (daphne's).

    A Celery worker thread broadcasts with `async_to_sync`, i.e. from an event loop of its own; an
    `asyncio.Queue` filled from a foreign loop does not wake the consumer waiting on it, so frames would sit
    until something else woke daphne's loop (up to a second later). Every operation from another loop is
    therefore handed to the consumers' loop and awaited from there.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._home: asyncio.AbstractEventLoop | None = None

    async def _on_home(self, make_coroutine: Any) -> Any:
        home, here = self._home, asyncio.get_running_loop()
        if home is None or home is here or home.is_closed() or not home.is_running():
            return await make_coroutine()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make_coroutine(), home))

    async def receive(self, channel: str) -> Any:
        # Consumers receive on daphne's loop; that loop owns the queues from now on.
        self._home = asyncio.get_running_loop()
        return await super().receive(channel)

    async def send(self, channel: str, message: dict) -> None:
        parent = super()
        return await self._on_home(lambda: parent.send(channel, message))

    async def group_send(self, group: str, message: dict) -> None:
        parent = super()
        return await self._on_home(lambda: parent.group_send(group, message))

    async def group_add(self, group: str, channel: str) -> None:
        parent = super()
        return await self._on_home(lambda: parent.group_add(group, channel))

    async def group_discard(self, group: str, channel: str) -> None:
        parent = super()
        return await self._on_home(lambda: parent.group_discard(group, channel))
