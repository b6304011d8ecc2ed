"""What every scenario shares: the running stack, a benchmark account, its flows, HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bench.stack import BenchStack
from tests.integration.harness import Credentials

TERMINAL = ("completed", "failed", "canceled")


@dataclass
class Bench:
    stack: BenchStack
    creds: Credentials
    flows: dict[str, str] = field(default_factory=dict)

    def create_flow(self, key: str, content: str) -> str:
        with self.stack.client(auth=self.creds.auth) as client:
            response = client.post("/flows", json={"content": content})
        if response.status_code != 201:
            raise RuntimeError(f"POST /flows answered {response.status_code}: {response.text[:500]}")
        self.flows[key] = response.json()["id"]
        return self.flows[key]

    def http(self, **kwargs: Any) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=kwargs.pop("connections", 16), max_keepalive_connections=16)
        return httpx.AsyncClient(
            base_url=self.stack.api_url, auth=self.creds.auth, timeout=60.0, limits=limits, **kwargs
        )

    def ws(self) -> Any:
        return connect(
            self.stack.ws_url,
            additional_headers=self.creds.headers,
            open_timeout=60,
            max_size=8 * 1024 * 1024,
            ping_interval=None,
        )


async def start_run(http: httpx.AsyncClient, flow_id: str, input: dict[str, Any] | None = None) -> str:
    response = await http.post(f"/flows/{flow_id}/run", json={"input": input or {}})
    if response.status_code != 201:
        raise RuntimeError(
            f"POST /flows/{flow_id}/run answered {response.status_code}: {response.text[:300]}"
        )
    return response.json()["execution_id"]


async def start_many(http: httpx.AsyncClient, flow_id: str, count: int, parallel: int = 16) -> list[str]:
    """`count` run requests, `parallel` in flight at a time; execution ids in submission order."""
    gate = asyncio.Semaphore(parallel)

    async def one() -> str:
        async with gate:
            return await start_run(http, flow_id)

    return list(await asyncio.gather(*(one() for _ in range(count))))


class CompletionWatcher:
    """One WebSocket subscribed to the whole account: when each execution's `complete` frame arrives."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.completed: dict[str, tuple[float, float, str]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._socket: Any = None
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> CompletionWatcher:
        self._socket = await self.bench.ws().__aenter__()
        await self._socket.send(json.dumps({"type": "subscribe_account"}))
        # Frames are handled in order: once the pong is back, the account subscription is in place.
        await self._socket.send(json.dumps({"type": "ping"}))
        async for raw in self._socket:
            if json.loads(raw)["type"] == "pong":
                break
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._socket.close()

    async def _read(self) -> None:
        async for raw in self._socket:
            now, wall = time.perf_counter(), time.time()
            frame = json.loads(raw)
            if frame["type"] == "complete":
                execution_id = frame["execution_id"]
                self.completed[execution_id] = (now, wall, frame.get("message") or "")
                self._event(execution_id).set()

    def _event(self, execution_id: str) -> asyncio.Event:
        return self._events.setdefault(execution_id, asyncio.Event())

    async def wait(self, execution_id: str, timeout: float = 120.0) -> tuple[float, float]:
        """(perf_counter(), time.time()) at the `complete` frame's receipt; raises unless it completed."""
        await asyncio.wait_for(self._event(execution_id).wait(), timeout)
        at, wall, message = self.completed.pop(execution_id)
        self._events.pop(execution_id, None)
        if not message.endswith(": completed"):
            raise RuntimeError(f"execution {execution_id} did not complete: {message}")
        return at, wall


def pg_counters() -> dict[str, int]:
    """Cumulative counters of the benchmark database (pg_stat_database; flushed by each backend when idle)."""
    from django.db import connection

    columns = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM pg_stat_database WHERE datname = current_database()"
        )
        row = cursor.fetchone()
    return dict(zip(columns, (int(v) for v in row), strict=True))


def execution_times(ids: list[str]) -> dict[str, tuple[float, float]]:
    """execution id → (created_at, finished_at) as UNIX times."""
    from executions.models import Execution

    rows = Execution.objects.filter(id__in=ids).values_list("id", "created_at", "finished_at")
    return {str(i): (c.timestamp(), f.timestamp()) for i, c, f in rows}


def executions_done(ids: list[str]) -> tuple[int, int]:
    """(terminal, failed-or-canceled) among `ids`."""
    from executions.models import Execution

    rows = Execution.objects.filter(id__in=ids, status__in=TERMINAL).values_list("status", flat=True)
    statuses = list(rows)
    return len(statuses), sum(1 for s in statuses if s != "completed")


async def wait_executions(ids: list[str], timeout: float, interval: float = 0.1) -> int:
    """Poll PostgreSQL until every execution is terminal; returns how many polls it took."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        done, bad = await asyncio.to_thread(executions_done, ids)
        polls += 1
        if bad:
            raise RuntimeError(f"{bad} of {len(ids)} executions failed or were canceled")
        if done == len(ids):
            return polls
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {len(ids)} executions ended within {timeout:.0f}s")
        await asyncio.sleep(interval)
