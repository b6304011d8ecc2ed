"""A worker with another FLOWRUNNER_ENCRYPTION_KEY: refused at start-up; one that got past it fails nodes at once."""

from __future__ import annotations

import secrets
import time

from accounts import keycheck
from accounts.models import KeyFingerprint
from tests.integration.api_steps import create_flow, logs, node_runs, set_secret, start_run, wait_for
from tests.integration.processes import DEFAULT_STACK_ENV

OTHER_KEY = secrets.token_hex(32)
QUEUE = "keycheck"
USES_A_SECRET = f"""
metadata: {{name: uses a secret}}
nodes:
  use:
    type: transform
    queue: {QUEUE}
    retry: {{max_retries: 2, wait: 100ms}}
    params:
      script: 'return {{tail: secrets.API_KEY.slice(-4)}};'
"""


def test_worker_with_another_encryption_key_refuses_to_start(stack, live_db):
    # given the stack's key recorded in the database
    keycheck.encryption_key_check()
    # when a worker starts with another key
    child = stack.start_worker("otherkey", env={"FLOWRUNNER_ENCRYPTION_KEY": OTHER_KEY}, wait=False)
    code = child.popen.wait(timeout=90)
    # then it exits at once with status 3, before consuming anything, and its log says why and what to do
    log = child.log_path.read_text()
    assert code == keycheck.EXIT_KEY_MISMATCH, log
    assert "refuses to start" in log and "give every process" in log and "FLOWRUNNER_ENCRYPTION_KEY" in log
    assert keycheck.key_fingerprint(bytes.fromhex(OTHER_KEY))[: keycheck.SHOWN] in log
    assert " ready." not in log and OTHER_KEY not in log


def test_node_using_secrets_on_a_worker_with_another_key_fails_at_once_with_the_reason(
    stack, live_api, live_db
):
    # given a secret stored by the web server, and a flow whose node reads it on its own queue
    set_secret(live_api, "API_KEY", "sk-live-0123456789")
    flow_id = create_flow(live_api, USES_A_SECRET)
    # and a worker with another key that got past the start-up check (the recorded fingerprint was its own
    # while it started, as for a worker started before the database had one)
    keycheck.encryption_key_check()
    ours = keycheck.key_fingerprint()
    KeyFingerprint.objects.filter(pk=1).update(fingerprint=keycheck.key_fingerprint(bytes.fromhex(OTHER_KEY)))
    try:
        stack.start_worker(
            "stalekey", queues=(QUEUE,), default_queues=False, env={"FLOWRUNNER_ENCRYPTION_KEY": OTHER_KEY}
        )
    finally:
        KeyFingerprint.objects.filter(pk=1).update(fingerprint=ours)
    try:
        # when the flow runs
        started = time.monotonic()
        execution_id = start_run(live_api, flow_id)
        status = wait_for(live_api, execution_id, timeout=60)
        took = time.monotonic() - started
        # then the node failed once, at once (no retry, no reaper), with the real reason everywhere
        runs = node_runs(live_api, execution_id)
        assert status["status"] == "failed", status
        assert "could not be decrypted" in status["error"] and "FLOWRUNNER_ENCRYPTION_KEY" in status["error"]
        assert [(run["node_id"], run["attempt"], run["status"]) for run in runs] == [("use", 1, "failed")]
        assert "could not be decrypted" in runs[0]["error"] and runs[0]["worker"].startswith("stalekey@")
        assert any("could not be decrypted" in line["message"] for line in logs(live_api, execution_id))
        stale_after = float(DEFAULT_STACK_ENV["FLOWRUNNER_STALE_AFTER"].rstrip("s"))
        assert took < stale_after / 2, took
    finally:
        stack.stop_worker("stalekey")
