"""A WebSocket watcher for integration tests: subscribe to executions and collect frames until `complete`."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect


@dataclass
class Watch:
    """Every frame one subscriber received about one execution, and when the run started and ended."""

    execution_id: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def statuses(self) -> list[dict[str, Any]]:
        return [f["status"] for f in self.frames if f["type"] == "status"]

    @property
    def completed(self) -> dict[str, Any] | None:
        return next((f for f in self.frames if f["type"] == "complete"), None)

    @property
    def duration(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if f["type"] in ("status", "node", "log")]


async def watch_until_complete(
    ws_url: str, headers: dict[str, str], watch: Watch, *, since: int | None = 0, timeout: float = 90.0
) -> Watch:
    """Open a socket, subscribe (replaying from `since`), read until `complete` or the timeout."""
    async with connect(ws_url, additional_headers=headers, open_timeout=20, max_size=8 * 1024 * 1024) as ws:
        frame: dict[str, Any] = {"type": "subscribe", "execution_id": watch.execution_id}
        if since is not None:
            frame["since"] = since
        await ws.send(json.dumps(frame))
        async with asyncio.timeout(timeout):
            async for raw in ws:
                message = json.loads(raw)
                watch.frames.append(message)
                if message["type"] == "error":
                    raise AssertionError(f"error frame: {message}")
                if message["type"] == "complete":
                    watch.ended = time.monotonic()
                    break
    return watch


def describe(watch: Watch, number: int) -> str:
    final = watch.statuses[-1]["status"] if watch.statuses else "?"
    return (
        f"Execution {number}: Status={final}, Updates={len(watch.statuses)}, Duration={watch.duration:.1f}s"
    )


def describe_update(status: dict[str, Any]) -> str:
    return (
        f"Status Update: {status['status']}, Progress: {float(status['progress']):.1f}%, "
        f"Node: {status['current_node']}"
    )
