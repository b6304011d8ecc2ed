"""Steps the security tests share: flows, waiting for runs, tokens, client addresses, process memory."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx

from tests.integration.clients import Credentials
from tests.integration.harness import LiveStack

TERMINAL = {"completed", "failed", "canceled"}


def transform_flow(name: str, script: str, *, timeout: str | None = None, queue: str | None = None) -> str:
    """A one-node flow running `script` (JSON-quoted into the YAML, so any text is safe)."""
    extra = (f"\n    timeout: {timeout}" if timeout else "") + (f"\n    queue: {queue}" if queue else "")
    return (
        f"metadata: {{name: {json.dumps(name)}}}\n"
        "nodes:\n"
        "  main:\n"
        "    type: transform\n"
        f"    params: {{script: {json.dumps(script)}}}{extra}\n"
    )


def wait_all(api: httpx.Client, execution_ids: list[str], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Poll until every execution is terminal → id → ExecutionStatus."""
    deadline, done = time.monotonic() + timeout, {}
    while len(done) < len(execution_ids):
        for execution_id in execution_ids:
            if execution_id in done:
                continue
            response = api.get(f"/executions/{execution_id}")
            assert response.status_code == 200, response.text
            if response.json()["status"] in TERMINAL:
                done[execution_id] = response.json()
        if len(done) < len(execution_ids):
            if time.monotonic() > deadline:
                pending = sorted(set(execution_ids) - set(done))
                raise AssertionError(f"executions {pending} did not end within {timeout}s")
            time.sleep(0.1)
    return done


def bearer_token(stack: LiveStack, user: Credentials) -> str:
    response = httpx.post(
        f"{stack.api_url}/login", json={"username": user.username, "password": user.password}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()["token"]


def client_from(stack: LiveStack, address: str, **kwargs: Any) -> httpx.Client:
    """An httpx client on /api/v1 whose connections come from `address` (any 127.x.y.z reaches the stack on
    Linux), so a test has a client address of its own for the per-address throttle."""
    kwargs.setdefault("timeout", 30.0)
    return httpx.Client(
        base_url=stack.api_url, transport=httpx.HTTPTransport(local_address=address), **kwargs
    )


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, KiB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def pool_pids(parent: int) -> set[int]:
    """The worker's prefork pool processes: its children whose command line is Celery's."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"celery" in command:
            pids.add(int(entry))
    return pids
