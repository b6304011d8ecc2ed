"""Embedded mode is a real Celery worker: countdown retries, chord joins, `serve` with API, WebSocket, reaper."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import websockets

from flowrunner import pgserver
from tests.cli.conftest import EXAMPLES, cli_env

TERMINAL = ("completed", "failed", "canceled")

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
        if f["type"] == "node" and f["node"]["node_id"] == node_id and f["node"]["batch_index"] == batch_index
    ]


def _succeeded_attempts(frames: list[dict]) -> list[int]:
    return [f["node"]["attempt"] for f in frames if f["node"]["status"] == "succeeded"]


def _gap(frames: list[dict], failed_attempt: int) -> float:
    """Seconds from attempt N failing to attempt N+1 starting."""
    failed = next(
        f for f in frames if f["node"]["attempt"] == failed_attempt and f["node"]["status"] == "failed"
    )
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
    statuses = [f["node"]["status"] for f in flaky if f["node"]["status"] != "queued"]
    assert statuses == ["running", "failed", "retrying"] * 2 + ["running", "succeeded"]
    # exponential backoff, 300 ms then 600 ms: never early (the countdown is honoured, no eager retry), and
    # not held back by Celery's default 1 s timer precision either (generous bounds, for loaded machines)
    assert 0.3 <= _gap(flaky, 1) < 1.5
    assert 0.6 <= _gap(flaky, 2) < 1.8

    batch_one = _node_frames(frames, "fan_out", 1)
    assert _succeeded_attempts(batch_one) == [2]
    assert 0.2 <= _gap(batch_one, 1) < 1.4
    for index in (0, 2):
        assert _succeeded_attempts(_node_frames(frames, "fan_out", index)) == [1]
    # the batch node itself succeeds only after its last batch: the chord callback joined them
    parent = _node_frames(frames, "fan_out")
    joined = next(f for f in parent if f["node"]["status"] == "succeeded")
    assert all(_at(joined) >= _at(f) for f in batch_one)
    assert frames[-1]["type"] == "status" and frames[-1]["status"]["status"] == "completed"


def test_the_seed_complex_flow_runs_embedded(cli):
    result = cli(
        "run",
        str(EXAMPLES / "complex_parallel_batch.yaml"),
        "--secret",
        "API_KEY=key-abcdef-123456",
        "--secret",
        "DB_PASSWORD=pw-zyxwvu-987654",
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


class Server:
    """One `flowrunner serve --demo` process on the embedded PostgreSQL + the in-process broker, as `make run`
    starts it."""

    def __init__(self, directory: Path, port: int, **env: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = directory / f"serve-{time.monotonic_ns()}.log"
        environment = cli_env(
            FLOWRUNNER_POSTGRES_HOST="",
            FLOWRUNNER_REDIS_URL="",
            FLOWRUNNER_EMBEDDED_POSTGRES_DIR=str(directory / "postgres"),
            FLOWRUNNER_DEV_KEYS_FILE=str(directory / "keys.json"),
            **env,
        )
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flowrunner.cli", "serve", "--port", str(port), "--demo"],
                cwd=directory,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.base}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)

    def demo_password(self) -> str:
        return re.search(r"password: (\S+)", self.log.read_text()).group(1)

    def stop(self, *, kill: bool = False) -> None:
        if self.process.poll() is not None:
            return
        self.process.kill() if kill else self.process.terminate()
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


HEALTH_TOKEN = "embedded-health-token-0123456789"


@pytest.fixture
def served(tmp_path: Path):
    server = Server(tmp_path, _free_port(), FLOWRUNNER_HEALTH_TOKEN=HEALTH_TOKEN)
    try:
        yield server.base, server.log
    finally:
        server.stop()


def test_serve_embedded_runs_the_demo_complex_flow_through_the_api(served):
    base, log = served
    assert httpx.get(f"{base}/api/v1/health").json() == {"status": "ok"}
    health = httpx.get(f"{base}/api/v1/health", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"}).json()
    assert health == {"status": "ok", "database": "ok", "broker": "ok", "workers": 1}
    password = re.search(r"password: (\S+)", log.read_text()).group(1)
    with httpx.Client(base_url=f"{base}/api/v1", auth=("demo", password), timeout=10) as api:
        flows = {flow["name"]: flow["id"] for flow in api.get("/flows").json()["results"]}
        assert len(flows) >= 5
        run = api.post(f"/flows/{flows['Complex Parallel Batch Flow with Retry and Branching']}/run", json={})
        assert run.status_code == 201, run.text
        execution_id = run.json()["execution_id"]
        deadline = time.monotonic() + 60
        while (status := api.get(f"/executions/{execution_id}").json())["status"] not in TERMINAL:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    assert status["status"] == "completed", status
    assert status["results"]["batch_count"] == 4
    assert status["progress"] == 100


async def _watch(base: str, auth: tuple[str, str], flow_id: str) -> list[tuple[float, dict]]:
    """Run the flow and collect (arrival time, frame) from the WebSocket until `complete`."""
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    url = base.replace("http://", "ws://") + "/api/v1/ws"
    async with websockets.connect(url, additional_headers={"Authorization": f"Basic {token}"}) as ws:
        await ws.send(json.dumps({"type": "subscribe_account"}))
        async with httpx.AsyncClient(base_url=f"{base}/api/v1", auth=auth) as api:
            run = await api.post(f"/flows/{flow_id}/run", json={})
            assert run.status_code == 201, run.text
        received = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            received.append((time.time(), frame))
            if frame["type"] == "status" and frame["status"]["status"] in TERMINAL:
                return received


def test_serve_embedded_pushes_worker_events_live_over_the_websocket(served):
    base, log = served
    password = re.search(r"password: (\S+)", log.read_text()).group(1)
    flows = httpx.get(f"{base}/api/v1/flows", auth=("demo", password)).json()["results"]
    flow_id = next(flow["id"] for flow in flows if flow["name"] == "Retries and an error edge")
    received = asyncio.run(_watch(base, ("demo", password), flow_id))
    assert received[-1][1]["status"]["status"] == "completed"
    # Each frame arrives as it happens, including those the worker's threads broadcast between retries
    # (Channels' plain in-memory layer would hold them until something else woke daphne's loop).
    lags = [arrived - _at(frame) for arrived, frame in received]
    assert max(lags) < 0.75, lags
    running = [f for _, f in received if f["type"] == "node" and f["node"]["node_id"] == "flaky_step"]
    assert [f["node"]["attempt"] for f in running if f["node"]["status"] == "running"] == [1, 2, 3]


def test_serve_embedded_reaper_finishes_work_lost_with_the_previous_process(tmp_path):
    """The in-memory broker dies with its process; the embedded reaper re-drives the run from the database."""
    fast = {"FLOWRUNNER_STALE_AFTER": "1s", "FLOWRUNNER_REAPER_INTERVAL": "200ms"}
    port = _free_port()
    first = Server(tmp_path, port, **fast)
    try:
        auth = ("demo", first.demo_password())
        api = httpx.Client(base_url=f"{first.base}/api/v1", auth=auth, timeout=10)
        flows = api.get("/flows").json()["results"]
        flow_id = next(flow["id"] for flow in flows if flow["name"] == "Wait and cancel")
        execution_id = api.post(f"/flows/{flow_id}/run", json={"input": {"wait": "2s"}}).json()[
            "execution_id"
        ]
        deadline = time.monotonic() + 30
        while not any(n["node_id"] == "hold" for n in api.get(f"/executions/{execution_id}/nodes").json()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        first.stop(kill=True)  # the wait's countdown task is lost with the in-memory broker
    second = Server(tmp_path, port, **fast)
    try:
        deadline = time.monotonic() + 30
        while (status := api.get(f"/executions/{execution_id}").json())["status"] not in TERMINAL:
            assert time.monotonic() < deadline, (status, second.log.read_text())
            time.sleep(0.2)
        assert status["status"] == "completed", status
        assert status["results"]["waited"] == "2s"
    finally:
        api.close()
        second.stop()


def test_serve_embedded_keeps_its_database_across_a_sigterm_restart(tmp_path):
    # Given a server that stored a flow in its embedded database
    port = _free_port()
    first = Server(tmp_path, port)
    auth = ("demo", first.demo_password())
    try:
        content = (EXAMPLES / "simple_branching.yaml").read_text()
        created = httpx.post(
            f"{first.base}/api/v1/flows", auth=auth, json={"name": "kept across restarts", "content": content}
        )
        assert created.status_code == 201, created.text
    finally:
        # When it is stopped with SIGTERM
        first.stop()
    # Then it exits cleanly, its PostgreSQL stopped with it
    assert first.process.returncode == 0, first.log.read_text()
    assert pgserver.server_processes(tmp_path / "postgres") == []
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    # And the next server on the same directory has the flow and the same demo account
    second = Server(tmp_path, port)
    try:
        flows = httpx.get(f"{second.base}/api/v1/flows", auth=auth).json()["results"]
        assert "kept across restarts" in {flow["name"] for flow in flows}
        assert "password:" not in second.log.read_text()
    finally:
        second.stop()
