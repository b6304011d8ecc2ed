"""Retries with backoff through Celery's retry machinery, error and timeout edges, the `error` object."""

from __future__ import annotations

from datetime import datetime

from tests.integration.api_steps import node_runs, path_taken, run_to_end


def _starts(runs: list[dict]) -> list[datetime]:
    return [datetime.fromisoformat(r["started_at"]) for r in runs]


FLAKY = """
metadata: {name: flaky}
nodes:
  flaky:
    type: transform
    params:
      script: |
        if (execution.attempt < 3) throw new Error("transient failure " + execution.attempt);
        return {ok: true, attempts: execution.attempt};
    retry: {max_retries: 3, wait: 400ms, backoff: exponential}
"""


def test_retry_exponential_backoff_spaces_attempts_and_then_succeeds(live_api):
    # Given a node failing on its first two attempts with exponential backoff from 400ms
    execution_id, status = run_to_end(live_api, FLAKY)
    # Then the third attempt succeeds
    assert status["status"] == "completed", status
    assert status["results"] == {"ok": True, "attempts": 3}
    runs = node_runs(live_api, execution_id)
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert "transient failure 1" in runs[0]["error"]
    # And the gaps honour the backoff: >= 0.4s then >= 0.8s (upper bounds are loose: machines are noisy)
    first, second, third = _starts(runs)
    assert 0.4 <= (second - first).total_seconds() < 10
    assert 0.8 <= (third - second).total_seconds() < 10


LINEAR = """
metadata: {name: linear}
nodes:
  always:
    type: transform
    params: {script: "throw new Error('nope')"}
    retry: {max_retries: 2, wait: 300ms, backoff: linear}
    next: {error: handler}
  handler:
    type: transform
    params: {script: "return {handled: input.error}"}
"""


def test_retries_exhausted_follow_error_edge_with_error_object(live_api):
    # Given a node that always fails, 2 retries, linear backoff, and an error edge
    execution_id, status = run_to_end(live_api, LINEAR)
    # Then after 3 attempts the handler runs and sees {node_id, message, type, attempts}
    assert status["status"] == "completed", status
    handled = status["results"]["handled"]
    assert handled["node_id"] == "always"
    assert handled["attempts"] == 3
    assert "nope" in handled["message"]
    assert handled["type"]
    runs = [r for r in node_runs(live_api, execution_id) if r["node_id"] == "always"]
    assert len(runs) == 3
    first, second, third = _starts(runs)
    assert (second - first).total_seconds() >= 0.3
    assert (third - second).total_seconds() >= 0.6


NO_RETRY_BLOCK = """
metadata: {name: no retry}
nodes:
  once:
    type: transform
    params: {script: "throw new Error('only once')"}
    next: {default: after}
  after: {type: transform, params: {script: "return {after: true}"}}
"""


def test_node_without_retry_block_runs_once_and_default_catches_the_error(live_api):
    execution_id, status = run_to_end(live_api, NO_RETRY_BLOCK)
    assert status["status"] == "completed", status
    assert status["results"]["after"] is True
    assert status["results"]["error"]["attempts"] == 1
    assert [r["node_id"] for r in node_runs(live_api, execution_id)] == ["once", "after"]


SCRIPT_TIMEOUT = """
metadata: {name: script timeout}
nodes:
  spin:
    type: transform
    timeout: 1s
    params: {script: "while (true) {}"}
    next: {timeout: slow_path, error: error_path}
  slow_path: {type: transform, params: {script: "return {path: 'timeout'}"}}
  error_path: {type: transform, params: {script: "return {path: 'error'}"}}
"""


def test_node_running_out_of_time_follows_timeout_edge(live_api):
    # Given a script that never ends and a 1s node timeout
    execution_id, status = run_to_end(live_api, SCRIPT_TIMEOUT)
    # Then the node is timed out and the `timeout` edge (not `error`) is followed
    assert status["status"] == "completed", status
    assert status["results"]["path"] == "timeout"
    assert status["results"]["error"]["node_id"] == "spin"
    spin = [r for r in node_runs(live_api, execution_id) if r["node_id"] == "spin"]
    assert spin[0]["status"] == "timed_out"
    assert path_taken(live_api, execution_id) == ["slow_path"]


TIMEOUT_FALLS_BACK_TO_ERROR = """
metadata: {name: timeout to error}
nodes:
  spin:
    type: transform
    timeout: 500ms
    params: {script: "while (true) {}"}
    next: {error: error_path}
  error_path: {type: transform, params: {script: "return {path: 'error'}"}}
"""


def test_timeout_without_timeout_edge_follows_error_edge(live_api):
    _, status = run_to_end(live_api, TIMEOUT_FALLS_BACK_TO_ERROR)
    assert status["status"] == "completed", status
    assert status["results"]["path"] == "error"
