"""The WebSocket client side of the consumer's unit tests: the ASGI app in this process, authenticated by Basic."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

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
