"""The engine behind PgBouncer in transaction mode: a daphne and a prefork worker reach PostgreSQL only
through a PgBouncer the test starts, two server connections shared by all their clients, and flows with
sequences, retries and a parallel batch run to the end."""

from __future__ import annotations

import re
import uuid

import httpx
from django.conf import settings

from tests.integration.api_steps import create_flow, node_runs, start_run, wait_for
from tests.pgbouncer import start_pgbouncer

QUEUE = f"pgbouncer-{uuid.uuid4().hex[:6]}"
POOL_SIZE = 2
FLOW = f"""
metadata: {{name: through pgbouncer}}
nodes:
  flaky:
    type: transform
    queue: {QUEUE}
    params:
      script: |
        if (execution.attempt < 2) throw new Error("transient " + execution.attempt);
        return {{attempts: execution.attempt}};
    retry: {{max_retries: 2, wait: 100ms}}
    next: {{success: fan_out}}
  fan_out:
    type: parallel_batch
    queue: {QUEUE}
    params:
      items: "${{input.numbers}}"
      batch_size: 2
      processor_script: "return {{total: input.items.reduce((a, b) => a + b, 0)}};"
    batch: {{max_parallel: 2}}
    next: {{success: done}}
  done:
    type: transform
    queue: {QUEUE}
    params: {{script: "return {{sum: input.total}}"}}
"""


def test_pgbouncer_transaction_mode_runs_flows_end_to_end(stack, live_user, tmp_path):
    # Given a transaction-mode PgBouncer with two server connections, and a web process and a 2-process worker
    # whose only way to PostgreSQL is that PgBouncer (FlowRunner's default: no prepared statements)
    bouncer = start_pgbouncer(tmp_path / "pgbouncer", db=settings.DATABASES["default"], pool_size=POOL_SIZE)
    env = {
        "FLOWRUNNER_POSTGRES_HOST": "127.0.0.1",
        "FLOWRUNNER_POSTGRES_PORT": str(bouncer.port),
        "FLOWRUNNER_POSTGRES_SSL_MODE": "disable",
    }
    try:
        stack.start_worker("wpgb", [QUEUE], default_queues=False, concurrency=2, env=env)
        web = stack.start_web("web-pgbouncer", env=env)
        # When four runs are started through that web process and run on that worker
        with httpx.Client(base_url=f"{web}/api/v1", auth=live_user.auth, timeout=30) as api:
            flow_id = create_flow(api, FLOW)
            executions = [start_run(api, flow_id, {"numbers": list(range(1, 8))}) for _ in range(4)]
            statuses = [wait_for(api, execution_id, timeout=90) for execution_id in executions]
            runs = node_runs(api, executions[0])
    finally:
        for stop in (
            lambda: stack.stop_worker("wpgb"),
            lambda: stack.stop_child("web-pgbouncer"),
            bouncer.stop,
        ):
            stop()
    log = bouncer.log()
    # Then every run completed: the retry, the batch's chord and join, the sum, all on that worker
    assert [status["status"] for status in statuses] == ["completed"] * 4, statuses
    assert all(status["results"]["sum"] == 28 and status["results"]["attempts"] == 2 for status in statuses)
    assert {run["worker"] for run in runs if run["status"] == "succeeded"} == {stack.worker_hostname("wpgb")}
    # And the clients really went through PgBouncer, sharing at most its two server connections
    assert "login attempt" in log, log
    server_connections = set(re.findall(r"(S-0x[0-9a-f]+): \S+ new connection to server", log))
    assert 1 <= len(server_connections) <= POOL_SIZE, log
    assert "prepared statement" not in log, log
