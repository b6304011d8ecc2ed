"""The embedded mode is a real Celery worker: countdown retries wait their backoff, batches join in a chord,
and `flowrunner serve` runs flows through its API with no PostgreSQL or Redis."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import EXAMPLES, cli_env

RETRY_AND_BATCH = """\
metadata:
  name: retry and batch
nodes:
  flaky:
    type: transform
    params:
      script: |
        if (execution.attempt < 3) throw new Error("flaky attempt " + execution.attempt);
        return {items: [1, 2, 3, 4, 5, 6], flaky_attempts: execution.attempt};
    retry: {max_retries: 3, wait: 300ms, backoff: exponential}
    next: {success: fan_out}
  fan_out:
    type: parallel_batch
    params:
      batch_size: 2
      processor_script: |
        // batch 1 fails on its first attempt only
        if (input.batch_index === 1 && execution.attempt === 1) throw new Error("batch 1 hiccup");
        return {squares: input.items.map(x => x * x), processed: input.items.length};
    batch: {max_parallel: 2}
    retry: {max_retries: 2, wait: 200ms, backoff: constant}
    next: {success: total}
  total:
    type: transform
    params:
      script: "return {sum: input.squares.reduce((a, b) => a + b, 0)};"
"""


def _at(frame: dict) -> float:
    return datetime.fromisoformat(frame["timestamp"]).timestamp()


def _node_frames(frames: list[dict], node_id: str, batch_index: int | None = None) -> list[dict]:
    return [
        f
        for f in frames
        if f["type"] == "node"
        and f["node"]["node_id"] == node_id
        and f["node"]["batch_index"] == batch_index
    ]


def _gap(frames: list[dict], failed_attempt: int) -> float:
    """Seconds from attempt N failing to attempt N+1 starting."""
    failed = next(f for f in frames if f["node"]["attempt"] == failed_attempt and f["node"]["status"] == "failed")
    started = next(
        f for f in frames if f["node"]["attempt"] == failed_attempt + 1 and f["node"]["status"] == "running"
    )
    return _at(started) - _at(failed)


def test_countdown_retries_and_a_chord_join_in_the_embedded_worker(cli):
    cli.write("flow.yaml", RETRY_AND_BATCH)
    result = cli("run", "flow.yaml", "--json-events")
    assert result.code == 0, result.stderr
    document = result.document
    # the join merged every batch: lists concatenate in batch order, numbers add
    assert document["squares"] == [1, 4, 9, 16, 25, 36]
    assert document["processed"] == 6
    assert document["batch_count"] == 3
    assert document["failed_items"] == 0 and document["failed_batches"] == []
    assert document["sum"] == 91
    assert document["flaky_attempts"] == 3

    frames = result.events()
    flaky = _node_frames(frames, "flaky")
    assert [f["node"]["status"] for f in flaky if f["node"]["status"] != "queued"] == [
        "running", "failed", "retrying", "running", "failed", "retrying", "running", "succeeded",
    ]
    # exponential backoff: 300 ms, then 600 ms; a worker that ignored the countdown would be immediate,
    # one with Celery's default 1 s timer precision would take about a second each time
    assert 0.3 <= _gap(flaky, 1) < 0.9
    assert 0.6 <= _gap(flaky, 2) < 1.2

    batch_one = _node_frames(frames, "fan_out", 1)
    assert [f["node"]["attempt"] for f in batch_one if f["node"]["status"] == "succeeded"] == [2]
    assert 0.2 <= _gap(batch_one, 1) < 0.8
    for index in (0, 2):
        assert [f["node"]["attempt"] for f in _node_frames(frames, "fan_out", index) if f["node"]["status"] == "succeeded"] == [1]
    # the batch node itself succeeds only after its last batch: the chord callback joined them
    parent = _node_frames(frames, "fan_out")
    joined = next(f for f in parent if f["node"]["status"] == "succeeded")
    assert all(_at(joined) >= _at(f) for f in batch_one)
    assert frames[-1]["type"] == "status" and frames[-1]["status"]["status"] == "completed"


def test_the_seed_complex_flow_runs_embedded(cli):
    result = cli(
        "run",
        str(EXAMPLES / "complex_parallel_batch.yaml"),
        "--secret", "API_KEY=key-abcdef-123456",
        "--secret", "DB_PASSWORD=pw-zyxwvu-987654",
    )
    assert result.code == 0, result.stderr
    document = result.document
    assert document["batch_count"] == 4
    assert document["execution_summary"]["api_key_used"] == "key-...3456"
    assert "Using API key: ***" in result.stderr
    assert "key-abcdef-123456" not in result.stdout + result.stderr


# --- flowrunner serve ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path):
    """`flowrunner serve --demo` on SQLite + the in-process broker, as `make run` starts it."""
    port = _free_port()
    log = tmp_path / "serve.log"
    env = cli_env(
        FLOWRUNNER_POSTGRES_HOST="",
        FLOWRUNNER_REDIS_URL="",
        FLOWRUNNER_SQLITE_PATH=str(tmp_path / "serve.sqlite3"),
        FLOWRUNNER_DEV_KEYS_FILE=str(tmp_path / "keys.json"),
    )
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowrunner.cli", "serve", "--port", str(port), "--demo"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_embedded_runs_the_demo_complex_flow_through_the_api(served):
    base, log = served
    health = httpx.get(f"{base}/api/v1/health").json()
    assert health == {"status": "ok", "database": "ok", "broker": "ok", "workers": 1}
    password = re.search(r"password: (\S+)", log.read_text()).group(1)
    with httpx.Client(base_url=f"{base}/api/v1", auth=("demo", password), timeout=10) as api:
        flows = {flow["name"]: flow["id"] for flow in api.get("/flows").json()["results"]}
        assert len(flows) >= 5
        run = api.post(f"/flows/{flows['Complex Parallel Batch Flow with Retry and Branching']}/run", json={})
        assert run.status_code == 201, run.text
        execution_id = run.json()["execution_id"]
        deadline = time.monotonic() + 60
        while (status := api.get(f"/executions/{execution_id}").json())["status"] not in (
            "completed", "failed", "canceled",
        ):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    assert status["status"] == "completed", status
    assert status["results"]["batch_count"] == 4
    assert status["progress"] == 100
