"""Schedules and hooks with real beat, workers and daphne: on time, never twice, and only when authenticated."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import datetime, timedelta

import httpx

from tests.integration.api_steps import create_flow, wait_for

FLOW = """
metadata: {name: live scheduled}
nodes:
  a: {type: transform, params: {script: "return {seen: input.tick || 0}"}}
"""
WINDOW = 10.0


def _schedule_runs(api: httpx.Client, schedule_id: str) -> list[dict]:
    response = api.get("/executions", params={"schedule_id": schedule_id, "limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def _sends(stack, name: str, schedule_id: str) -> int:
    return len(
        re.findall(rf"Sending due task schedule:{schedule_id}\b", stack.children[name].log_path.read_text())
    )


def test_triggers_interval_schedule_fires_on_time_once_per_second_with_two_beats(stack, live_api):
    # Given two beat processes on the same database (a duplicated deployment) and a flow
    stack.start_beat("beat-2")
    flow_id = create_flow(live_api, FLOW)
    try:
        # When a schedule of 1 s is created and watched for 10 s after its first run
        created = live_api.post(f"/flows/{flow_id}/schedules", json={"interval": "1s", "input": {"tick": 1}})
        assert created.status_code == 201, created.text
        schedule_id = created.json()["id"]
        deadline = time.monotonic() + 30
        while not _schedule_runs(live_api, schedule_id):
            assert time.monotonic() < deadline, "no firing within 30 s\n" + stack.logs_report(40)
            time.sleep(0.2)
        first = min(
            datetime.fromisoformat(run["trigger"]["scheduled_for"])
            for run in _schedule_runs(live_api, schedule_id)
        )
        time.sleep(WINDOW + 2.0)
        live_api.patch(f"/schedules/{schedule_id}", json={"enabled": False})
        runs = _schedule_runs(live_api, schedule_id)
    finally:
        stack.stop_beat("beat-2")
    # Then every scheduled second of the window has exactly one run, started within a second of its time
    times = [datetime.fromisoformat(run["trigger"]["scheduled_for"]) for run in runs]
    assert len(times) == len(set(times)), f"duplicate runs for one scheduled time: {sorted(times)}"
    in_window = sorted(t for t in times if first <= t <= first + timedelta(seconds=WINDOW))
    seconds = [round((t - first).total_seconds()) for t in in_window]
    missing = sorted(set(range(int(WINDOW) + 1)) - set(seconds))
    assert len(missing) <= 1, f"scheduled seconds without a run: {missing} (ran: {seconds})"
    for run in runs:
        late = datetime.fromisoformat(run["created_at"]) - datetime.fromisoformat(
            run["trigger"]["scheduled_for"]
        )
        assert timedelta(0) <= late < timedelta(seconds=1.5), f"run {run['id']} started {late} after its time"
    worst = max(
        datetime.fromisoformat(r["created_at"]) - datetime.fromisoformat(r["trigger"]["scheduled_for"])
        for r in runs
    )
    print(
        f"schedule 1s, two beats: {len(runs)} runs, {len(in_window)} in the {WINDOW:.0f}s window, "
        f"missing {missing}, worst lateness {worst.total_seconds():.3f}s"
    )
    # and both beats really sent firings: the duplicates reached the workers and started nothing
    sends = _sends(stack, "beat", schedule_id) + _sends(stack, "beat-2", schedule_id)
    assert _sends(stack, "beat-2", schedule_id) >= WINDOW / 2 and sends > len(runs), (sends, len(runs))
    print(f"firings sent by the two beats: {sends}, runs started: {len(runs)}")
    # and the runs complete
    for run in runs[:3]:
        assert wait_for(live_api, run["id"])["status"] == "completed"


def test_triggers_signed_hook_starts_a_run_and_an_unsigned_or_replayed_one_does_not(stack, live_api):
    # Given a flow with an inbound hook
    flow_id = create_flow(live_api, FLOW)
    hook = live_api.post(f"/flows/{flow_id}/triggers", json={"name": "ci"}).json()
    url = f"{stack.base_url}/api/v1/hooks/{hook['id']}"
    body = json.dumps({"tick": 7}).encode()
    signature = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
    signed = {"Content-Type": "application/json", "X-FlowRunner-Signature": signature}
    # When it is delivered signed, unsigned, with a wrong signature, and the signed one replayed
    accepted = httpx.post(url, content=body, headers=signed)
    unsigned = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    forged = httpx.post(url, content=b'{"tick": 8}', headers=signed)
    replayed = httpx.post(url, content=body, headers=signed)
    # Then only the signed delivery started a run, which completes with the body as its input
    assert accepted.status_code == 202, accepted.text
    assert (unsigned.status_code, forged.status_code) == (401, 401)
    assert replayed.status_code == 200 and replayed.json() == accepted.json()
    execution = wait_for(live_api, accepted.json()["execution_id"])
    assert execution["status"] == "completed" and execution["results"]["seen"] == 7
    assert execution["trigger"] == {"type": "hook", "trigger_id": hook["id"]}
    listed = live_api.get("/executions", params={"flow_id": flow_id}).json()
    assert listed["count"] == 1
