"""Which nodes may run ahead of their claim, and what their task carries."""

from __future__ import annotations

import pytest

from flows.dsl.spec import NodeSpec
from workers import ahead


def node(kind: str, timeout: float | None = None, params: dict | None = None) -> NodeSpec:
    return NodeSpec(id="n", type=kind, params=params or {}, timeout=timeout)


@pytest.mark.parametrize("kind", ["transform", "condition", "log"])
def test_ahead_pure_kinds_may_carry_a_document(settings, kind):
    # given the default limit
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 16_384
    # when a pure kind is asked about / then it may carry that much
    assert ahead.context_bytes(node(kind)) == 16_384


@pytest.mark.parametrize("kind", ["http.request", "webhook", "store", "wait", "delay", "parallel_batch"])
def test_ahead_kinds_with_effects_are_claimed_first(settings, kind):
    # given the default limit / when a kind with effects outside its result is asked about / then never
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 16_384
    assert ahead.context_bytes(node(kind)) == 0


def test_ahead_is_off_when_the_limit_is_zero(settings):
    # given the feature turned off / when a transform is asked about / then it is claimed first
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 0
    assert ahead.context_bytes(node("transform")) == 0


def test_ahead_a_script_that_may_run_near_stale_after_is_claimed_first(settings):
    # given runs counted lost after 30 s without a heartbeat, and scripts limited to 5 s by default
    settings.FLOWRUNNER_STALE_AFTER = 30.0
    settings.FLOWRUNNER_SCRIPT_TIMEOUT = 5.0
    # when the node's own limit is short, or the global script limit is raised to 15 s (half of STALE_AFTER)
    short = ahead.context_bytes(node("transform", timeout=2.0))
    settings.FLOWRUNNER_SCRIPT_TIMEOUT = 15.0
    long_global = ahead.context_bytes(node("transform"))
    kept_short_by_node = ahead.context_bytes(node("transform", params={"timeout": "3s"}))
    # then only runs bounded well below STALE_AFTER (no heartbeat while ahead of the claim) may run ahead
    assert short > 0
    assert long_global == 0
    assert kept_short_by_node > 0


def test_ahead_task_context_is_the_execution_a_claim_would_return():
    # given the running execution and what a finish sent back for the next run
    execution = {"id": "e", "account_id": "a", "flow_id": "f", "flow_version_id": 7, "data": {"old": 1}}
    sent_back = {"data": {"x": 2}, "node_outputs": {"a": {"x": 2}}, "steps": 2, "progress": 50.0}
    # when the next task's context is built
    context = ahead.task_context(execution, "b", sent_back)
    # then it names the node and carries the new document with the execution's identity
    assert context == {
        "node_id": "b",
        "execution": {
            "id": "e",
            "account_id": "a",
            "flow_id": "f",
            "flow_version_id": 7,
            "data": {"x": 2},
            "node_outputs": {"a": {"x": 2}},
            "steps": 2,
            "progress": 50.0,
        },
    }
    # and nothing sent back (too big, or not asked for) means no context
    assert ahead.task_context(execution, "b", None) is None


def test_ahead_claim_parts_name_the_task_and_the_document_version():
    # given a task's context for run 12
    context = {"node_id": "b", "execution": {"id": "e", "steps": 3, "data": {}}}
    # when its claim parts are made
    run, execution, pending = ahead.claim_parts(12, context, task_id="t-1", worker="w@h")
    # then the run is the first attempt at the execution's step, and the finish must claim it for this task
    assert run["id"] == 12 and run["node_id"] == "b" and run["attempt"] == 1 and run["step"] == 3
    assert execution is context["execution"]
    assert pending == {"task_id": "t-1", "worker": "w@h", "steps": 3}
