"""The WebSocket client side of the consumer's unit tests: the ASGI app in this process, authenticated by Basic."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from executions.events import EVENT_MESSAGE_TYPE, execution_group
from flowrunner.asgi import application
from tests.conftest import PASSWORD
from tests.helpers import basic

WS_PATH = "/api/v1/ws"


def basic_header(username: str, password: str) -> tuple[bytes, bytes]:
    """A Basic Authorization header as an ASGI scope carries it."""
    return (b"authorization", basic(username, password).encode())


def asynchronous(test):  # noqa: ANN001, ANN201
    """Run an async test body in an event loop; functools.wraps keeps the signature for fixtures."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async_to_sync(test)(*args, **kwargs)

    return wrapper


@contextlib.asynccontextmanager
async def connected(user):  # noqa: ANN001, ANN201
    """An accepted socket of `user` (password tests.conftest.PASSWORD), disconnected afterwards."""
    ws = WebsocketCommunicator(application, WS_PATH, headers=[basic_header(user.username, PASSWORD)])
    accepted, _ = await ws.connect()
    assert accepted
    try:
        yield ws
    finally:
        await ws.disconnect()


async def receive(ws: WebsocketCommunicator) -> dict[str, Any]:
    return await ws.receive_json_from(timeout=2)


async def receive_all(ws: WebsocketCommunicator) -> list[dict[str, Any]]:
    """Every frame until the socket has been quiet for a moment."""
    frames = []
    while not await ws.receive_nothing(timeout=0.3):
        frames.append(await receive(ws))
    return frames


async def subscribe(ws: WebsocketCommunicator, execution_id: Any, **extra: Any) -> None:
    await ws.send_json_to({"type": "subscribe", "execution_id": str(execution_id), **extra})


async def ping_pong(ws: WebsocketCommunicator) -> None:
    await ws.send_json_to({"type": "ping"})
    frame = await receive(ws)
    assert set(frame) == {"type", "execution_id", "seq", "timestamp"}
    assert (frame["type"], frame["execution_id"], frame["seq"]) == ("pong", None, None)


async def broadcast(account_id: Any, frame: dict[str, Any]) -> None:
    """What executions.events.broadcast_frame sends, to the execution's group only."""
    message = {"type": EVENT_MESSAGE_TYPE, "frame": frame, "account_id": str(account_id)}
    await get_channel_layer().group_send(execution_group(frame["execution_id"]), message)


def kinds(frames: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(frame["type"], frame["seq"]) for frame in frames]
