"""Client-side counts of PostgreSQL statements, transactions, connection checkouts and Redis round trips."""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

_STATE = threading.local()
_IDENT = r'"?(\w+)"?'


def label(sql: str) -> str:
    """A short, stable name for a statement: verb, table, and the columns that tell statements apart."""
    text = " ".join(sql.split())
    upper = text.upper()
    tail = " FOR UPDATE" if upper.endswith("FOR UPDATE") or " FOR UPDATE " in upper else ""
    tail += " RETURNING" if " RETURNING " in upper else ""
    if match := re.match(rf"INSERT INTO {_IDENT}", text, re.I):
        return f"INSERT {match.group(1)}{tail}"
    if match := re.match(rf"UPDATE {_IDENT} SET (.*?)(?: WHERE (.*))?$", text, re.I):
        columns = sorted(set(re.findall(r'"?(\w+)"? = ', match.group(2))))
        where = _where_columns(match.group(3) or "")
        return f"UPDATE {match.group(1)} SET {','.join(columns)} WHERE {where}{tail}"
    if match := re.match(rf"DELETE FROM {_IDENT}(?: WHERE (.*))?", text, re.I):
        return f"DELETE {match.group(1)} WHERE {_where_columns(match.group(2) or '')}"
    if match := re.match(r"SELECT .*? FROM " + _IDENT + r"(.*)$", text, re.I):
        rest = match.group(2)
        joins = re.findall(rf"JOIN {_IDENT}", rest, re.I)
        where = rest.split(" WHERE ", 1)[1] if " WHERE " in rest else ""
        joined = "+" + "+".join(joins) if joins else ""
        return f"SELECT {match.group(1)}{joined} WHERE {_where_columns(where)}{tail}"
    return text[:60]


def _where_columns(where: str) -> str:
    where = re.split(r" (?:ORDER BY|LIMIT|FOR UPDATE|RETURNING) ", where, maxsplit=1)[0]
    columns = re.findall(r'"?\w+"?\."?(\w+)"?\s*(?:=|IN|<|>|IS)', where) or re.findall(
        r'"?(\w+)"?\s*(?:=|IN|<|>|IS)', where
    )
    return ",".join(dict.fromkeys(columns)) or "-"


class Tally:
    """Counts of one process, per task name, until `drain()` hands them over."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, str] = {}

    def add(self, key: str, amount: int = 1) -> None:
        with self.lock:
            self.counts[key] += amount

    def drain(self) -> tuple[Counter[str], dict[str, str]]:
        with self.lock:
            counts, samples = self.counts, self.samples
            self.counts, self.samples = Counter(), {}
        return counts, samples


TALLY = Tally()


def current_task() -> str:
    if threading.current_thread() is not threading.main_thread():
        return f"thread:{threading.current_thread().name}"
    return getattr(_STATE, "task", None) or "outside-task"


def set_task(name: str | None) -> None:
    _STATE.task = name


def _execute_wrapper(execute, sql, params, many, context):  # noqa: ANN001, ANN202
    task = current_task()
    name = label(sql)
    TALLY.add(f"q|{task}|{name}")
    TALLY.add(f"m|{task}|queries")
    if not context["connection"].in_atomic_block:
        TALLY.add(f"m|{task}|autocommit_statements")
    if name not in TALLY.samples:
        TALLY.samples[name] = " ".join(sql.split())[:400]
    return execute(sql, params, many, context)


def _counting(method, key: str):  # noqa: ANN001, ANN202
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        TALLY.add(f"m|{current_task()}|{key}")
        return method(*args, **kwargs)

    return wrapper


def _on_connection_created(sender: Any, connection: Any, **_: Any) -> None:
    """Every (pooled) connection checkout: wrap it once; each checkout costs the pool's health check."""
    TALLY.add(f"m|{current_task()}|connection_checkouts")
    if getattr(connection, "_bench_counted", False):
        return
    connection._bench_counted = True
    connection.execute_wrappers.append(_execute_wrapper)
    connection.commit = _counting(connection.commit, "commits")
    connection.rollback = _counting(connection.rollback, "rollbacks")


def install_database_counting() -> None:
    from django.db import connections
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection_created, dispatch_uid="bench-querycount")
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _on_connection_created(None, conn)


_paused = threading.local()


def install_redis_counting() -> None:
    """Count packed commands sent (a pipeline is one round trip) by the sync and asyncio redis clients."""
    import redis.asyncio.connection as aconn
    import redis.connection as sconn

    original = sconn.AbstractConnection.send_packed_command
    original_async = aconn.AbstractConnection.send_packed_command

    def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN001
        if not getattr(_paused, "on", False):
            TALLY.add(f"m|{current_task()}|redis_round_trips")
        return original(self, *args, **kwargs)

    async def send_packed_command_async(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN001
        TALLY.add(f"m|{current_task()}|redis_round_trips")
        return await original_async(self, *args, **kwargs)

    sconn.AbstractConnection.send_packed_command = send_packed_command
    aconn.AbstractConnection.send_packed_command = send_packed_command_async


STATS_KEY = "bench:counts"
SAMPLES_KEY = "bench:sql"


def flush_to_redis(client: Any) -> None:
    """Add this process's counts to the shared Redis hash (not counted itself)."""
    counts, samples = TALLY.drain()
    if not counts:
        return
    _paused.on = True
    try:
        pipe = client.pipeline(transaction=False)
        for key, amount in counts.items():
            pipe.hincrby(STATS_KEY, key, amount)
        if samples:
            pipe.hset(SAMPLES_KEY, mapping=samples)
        pipe.execute()
    finally:
        _paused.on = False


def read_from_redis(client: Any) -> tuple[dict[str, int], dict[str, str]]:
    counts = {k.decode(): int(v) for k, v in client.hgetall(STATS_KEY).items()}
    samples = {k.decode(): v.decode() for k, v in client.hgetall(SAMPLES_KEY).items()}
    return counts, samples


def clear_redis(client: Any) -> None:
    client.delete(STATS_KEY, SAMPLES_KEY)
