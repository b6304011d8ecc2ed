"""Scenario c, second part: PostgreSQL statements, transactions and round trips per node run, by statement."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from bench import flows, querycount
from bench.config import Config
from bench.driver import Bench, executions_done, pg_counters
from bench.stack import COUNT_QUEUE, COUNT_WORKER, wait_until

NODES = 3
# An idle PostgreSQL backend that flushed its statistics less than a second ago flushes again only after 10 s.
PG_STATS_SETTLE = 11.0


def _start_runs(bench: Bench, flow_id: str, count: int) -> tuple[list[str], Counter[str]]:
    """Start executions through the run service in this process, counting its statements."""
    from django.db import connection

    from accounts.models import Account
    from executions.services import execution_start
    from flows.models import Flow

    account = Account.objects.get(id=bench.creds.account_id)
    statements: Counter[str] = Counter()

    def counting(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        statements[querycount.label(sql)] += 1
        return execute(sql, params, many, context)

    ids = []
    for _ in range(count):
        flow = Flow.objects.select_related("current_version").get(id=flow_id)  # as the view; not counted
        with connection.execute_wrapper(counting):
            execution, _ = execution_start(account=account, flow=flow, input={})
        ids.append(str(execution.id))
    return ids, statements


def _node_runs(ids: list[str]) -> int:
    from executions.models import NodeRun

    return NodeRun.objects.filter(execution_id__in=ids).count()


def measure(bench: Bench, cfg: Config) -> dict[str, Any]:
    """Run `count_executions` 3-node executions on a dedicated worker (concurrency 1) that counts."""
    import redis
    from django.conf import settings

    stack = bench.stack
    flow_id = bench.create_flow("linear3-counted", flows.linear("bench-linear-3-counted", NODES, COUNT_QUEUE))
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        querycount.clear_redis(client)
        stack.start_bench_worker(
            COUNT_WORKER, queues=(COUNT_QUEUE,), concurrency=1, env={"FLOWRUNNER_BENCH_COUNT_QUERIES": "1"}
        )
        try:
            ids, start_statements, server = _counted_phase(bench, flow_id, cfg)
            counts, samples = querycount.read_from_redis(client)
        finally:
            stack.stop_worker(COUNT_WORKER)
        runs = _node_runs(ids)
    finally:
        client.close()
    result = summarise(counts, samples, runs, len(ids), start_statements)
    if server is not None:
        result["per_node_run"]["server_transactions"] = round(server / runs, 2)
    return result


def _counted_phase(bench: Bench, flow_id: str, cfg: Config) -> tuple[list[str], Counter[str], int | None]:
    """Start and wait for the executions; with a settle time, also the server's transaction count
    (pg_stat_database) minus this process's own, as a cross-check of the client-side counts."""
    from django.db import connection

    settle = 0.0 if cfg.quick else PG_STATS_SETTLE
    mine: Counter[str] = Counter()

    def own(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        mine["in_transaction" if context["connection"].in_atomic_block else "autocommit"] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(own):
        before = None
        if settle:
            time.sleep(settle)
            before = pg_counters()
        ids, start_statements = _start_runs(bench, flow_id, max(1, cfg.sizes.count_executions))
        wait_until(lambda: executions_done(ids)[0] == len(ids), 300, what="counted executions")
        if executions_done(ids)[1]:
            raise RuntimeError("a counted execution failed")
        time.sleep(0.3)  # the last task's postrun flush to Redis
        if before is None:
            return ids, start_statements, None
        time.sleep(settle)
        after = pg_counters()
    server = sum(after[k] - before[k] for k in ("xact_commit", "xact_rollback"))
    # This process: each autocommit statement (the last pg_counters excluded: it is not in the delta) and
    # one transaction per started execution.
    server -= (mine["autocommit"] - 1) + len(ids)
    return ids, start_statements, server


def summarise(
    counts: dict[str, int],
    samples: dict[str, str],
    node_runs: int,
    executions: int,
    start_statements: Counter[str],
) -> dict[str, Any]:
    metrics: Counter[str] = Counter()
    by_task: dict[str, Counter[str]] = defaultdict(Counter)
    statements: Counter[str] = Counter()
    for key, value in counts.items():
        kind, task, name = key.split("|", 2)
        if kind == "m":
            metrics[name] += value
            by_task[task][name] += value
        else:
            statements[name] += value
    commits = metrics["commits"] + metrics["rollbacks"]
    transactions = commits + metrics["autocommit_statements"]
    # psycopg sends BEGIN and COMMIT as commands of their own; a pool checkout runs the pool's check.
    round_trips = metrics["queries"] + 2 * commits + metrics["connection_checkouts"]

    def per_run(value: float) -> float:
        return round(value / node_runs, 2) if node_runs else 0.0

    return {
        "executions": executions,
        "node_runs": node_runs,
        "worker": "a dedicated worker (prefork, concurrency 1) counting with a Django execute_wrapper, "
        "wrapped commit/rollback, connection_created, and the redis clients' send_packed_command",
        "per_node_run": {
            "queries": per_run(metrics["queries"]),
            "transactions": per_run(transactions),
            "atomic_blocks_committed": per_run(commits),
            "autocommit_statements": per_run(metrics["autocommit_statements"]),
            "connection_checkouts": per_run(metrics["connection_checkouts"]),
            "postgres_round_trips": per_run(round_trips),
            "redis_round_trips": per_run(metrics["redis_round_trips"]),
            "tasks": per_run(metrics["tasks"]),
        },
        "statements_per_node_run": [
            {"statement": name, "per_node_run": per_run(n), "example": samples.get(name, "")}
            for name, n in statements.most_common()
        ],
        "by_task": {task: dict(values) for task, values in sorted(by_task.items())},
        "run_request_statements_per_execution": {
            name: round(n / executions, 2) for name, n in start_statements.most_common()
        },
    }
