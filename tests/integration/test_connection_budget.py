"""The PostgreSQL connections a deployment holds, measured: a web process never holds more than its pool
(FLOWRUNNER_POSTGRES_POOL_SIZE) however many requests arrive at once; a prefork worker holds at most two per
pool process (the task's and the heartbeat thread's) while it runs batches at full concurrency, none idle."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
from django.conf import settings

from tests.integration.api_steps import create_flow, start_run, wait_for

QUEUE = f"budget-{uuid.uuid4().hex[:6]}"
CONCURRENCY = 3
WEB_POOL = 3
BATCHES = f"""
metadata: {{name: budget}}
nodes:
  fan_out:
    type: parallel_batch
    queue: {QUEUE}
    params:
      items: "${{input.numbers}}"
      batch_size: 1
      processor_script: "const t = Date.now(); while (Date.now() - t < 150) {{}} return {{n: input.items[0]}};"
    batch: {{max_parallel: 3}}
"""


class ConnectionSampler:
    """Counts, every 20 ms, the backends of the test database whose application_name is `name` (set with
    libpq's PGAPPNAME in the process's environment); keeps the largest count."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        db = settings.DATABASES["default"]
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"] or None,
            dbname=db["NAME"], autocommit=True,
        ) as conn:  # fmt: skip
            while not self._stop.is_set():
                count = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                    [db["NAME"], self.name],
                ).fetchone()[0]
                self.peak = max(self.peak, count)
                self.samples += 1
                time.sleep(0.02)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def now(self) -> int:
        db = settings.DATABASES["default"]
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"] or None,
            dbname=db["NAME"], autocommit=True,
        ) as conn:  # fmt: skip
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                [db["NAME"], self.name],
            ).fetchone()[0]


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_connection_budget_web_holds_at_most_its_pool(stack, live_user):
    # Given a web process whose pool allows 3 connections
    name = f"budget-web-{uuid.uuid4().hex[:6]}"
    web = stack.start_web(name, env={"PGAPPNAME": name, "FLOWRUNNER_POSTGRES_POOL_SIZE": str(WEB_POOL)})
    try:
        # A bearer token: Basic credentials cost a password hash on each cache miss, the request's connection
        # held meanwhile (a burst of them is bound by the CPU, not the pool).
        login = httpx.post(
            f"{web}/api/v1/login", json={"username": live_user.auth[0], "password": live_user.auth[1]}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        with ConnectionSampler(name) as sampler, httpx.Client(headers=headers, timeout=30) as client:
            # When 60 API requests arrive 20 at a time
            with ThreadPoolExecutor(20) as pool:
                codes = list(
                    pool.map(lambda _: client.get(f"{web}/api/v1/executions").status_code, range(60))
                )
    finally:
        stack.stop_child(name)
    # Then every one is answered, and the process never held more than its pool's connections
    assert codes == [200] * 60
    assert sampler.samples > 5
    assert 1 <= sampler.peak <= WEB_POOL, sampler.peak


def test_connection_budget_worker_holds_at_most_two_per_pool_process(stack, live_api):
    # Given a prefork worker of concurrency 3 (its own application_name), idle
    name = f"budget-worker-{uuid.uuid4().hex[:6]}"
    stack.start_worker("wb", [QUEUE], default_queues=False, concurrency=CONCURRENCY, env={"PGAPPNAME": name})
    try:
        sampler = ConnectionSampler(name)
        assert _eventually(lambda: sampler.now() == 0), "an idle worker should hold no connection"
        # When 4 runs cut 12 batches each, 3 in flight per run, keep every pool process busy
        flow_id = create_flow(live_api, BATCHES)
        with sampler:
            executions = [start_run(live_api, flow_id, {"numbers": list(range(12))}) for _ in range(4)]
            statuses = [
                wait_for(live_api, execution_id, timeout=120)["status"] for execution_id in executions
            ]
    finally:
        stack.stop_worker("wb")
    # Then all completed, and the worker never held more than 2 connections per pool process
    assert statuses == ["completed"] * 4
    assert 1 <= sampler.peak <= 2 * CONCURRENCY, sampler.peak
    print(f"worker concurrency {CONCURRENCY}: peak {sampler.peak} connections over {sampler.samples} samples")
