"""Raw-Celery baseline tasks, registered on FlowRunner's own Celery app so the same workers run both sides."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from flowrunner.celery import app

_redis = None


@app.task(name="bench.step")
def step(doc: dict[str, Any], n: int) -> dict[str, Any]:
    """One link of a chain (the counterpart of a transform node merging `{nN: N}` into the document)."""
    out = dict(doc)
    out[f"n{n}"] = n
    out["t"] = time.time()
    return out


@app.task(name="bench.batch")
def batch(items: list[int]) -> dict[str, Any]:
    """One chord header task (the counterpart of a batch of a parallel_batch node)."""
    return {"total": sum(items), "count": len(items), "t": time.time()}


@app.task(name="bench.join")
def join(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The chord callback (the counterpart of the batch join)."""
    return {
        "total": sum(p["total"] for p in parts),
        "count": sum(p["count"] for p in parts),
        "t": time.time(),
    }


def _client():  # noqa: ANN202
    global _redis
    if _redis is None:
        import redis
        from django.conf import settings

        _redis = redis.Redis.from_url(settings.REDIS_URL)
    return _redis


@app.task(name="bench.publish")
def publish(channel: str, count: int, gap: float, filler: int) -> int:
    """Publish `count` timestamped frames on a Redis pub/sub channel (the live-update baseline's sender)."""
    client = _client()
    padding = {"progress": 0.0, "filler": "x" * filler}
    for seq in range(1, count + 1):
        frame = {
            "type": "status",
            "seq": seq,
            "timestamp": datetime.now(UTC).isoformat(),
            "status": padding,
        }
        client.publish(channel, json.dumps(frame, separators=(",", ":")))
        if gap and seq < count:
            time.sleep(gap)
    return count


# --- durable baselines: the same tasks, each also committing one row to PostgreSQL ---------------------------
# The floor for "each node is a Celery task and its state is durable": one broker hop plus one durable commit.


def create_durable_table() -> None:
    """The durable tasks' table, made by the driver once the benchmark database exists (before any worker
    runs one: two workers creating it at once collide in PostgreSQL's catalog)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_durable (id bigserial PRIMARY KEY, value jsonb)")


def _commit_one(value: dict[str, Any]) -> None:
    """One INSERT in autocommit: one round trip, one durable commit (synchronous_commit as configured)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_durable (value) VALUES (%s::jsonb)", [json.dumps(value)])


@app.task(name="bench.durable_step")
def durable_step(doc: dict[str, Any], n: int) -> dict[str, Any]:
    out = step(doc, n)
    _commit_one({"n": n})
    return out


@app.task(name="bench.durable_batch")
def durable_batch(items: list[int]) -> dict[str, Any]:
    out = batch(items)
    _commit_one({"count": out["count"]})
    return out


@app.task(name="bench.durable_join")
def durable_join(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = join(parts)
    _commit_one({"count": out["count"]})
    return out
