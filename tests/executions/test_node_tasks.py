"""Which node tasks may carry the execution's document and run ahead of their claim; a first node's context."""

from __future__ import annotations

import pytest

from executions import node_tasks
from executions.models import Execution
from flows.dsl.spec import NodeSpec


def node(kind: str, timeout: float | None = None, params: dict | None = None) -> NodeSpec:
    return NodeSpec(id="n", type=kind, params=params or {}, timeout=timeout)


@pytest.mark.parametrize("kind", ["transform", "condition", "log"])
def test_node_tasks_pure_kinds_may_carry_a_document(settings, kind):
    # given the default limit
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 16_384
    # when a pure kind is asked about / then it may carry that much
    assert node_tasks.context_bytes(node(kind)) == 16_384


@pytest.mark.parametrize("kind", ["http.request", "webhook", "store", "wait", "delay", "parallel_batch"])
def test_node_tasks_kinds_with_effects_are_claimed_first(settings, kind):
    # given the default limit / when a kind with effects outside its result is asked about / then never
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 16_384
    assert node_tasks.context_bytes(node(kind)) == 0


def test_node_tasks_is_off_when_the_limit_is_zero(settings):
    # given the feature turned off / when a transform is asked about / then it is claimed first
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 0
    assert node_tasks.context_bytes(node("transform")) == 0


def test_node_tasks_a_script_that_may_run_near_stale_after_is_claimed_first(settings):
    # given runs counted lost after 30 s without a heartbeat, and scripts limited to 5 s by default
    settings.FLOWRUNNER_STALE_AFTER = 30.0
    settings.FLOWRUNNER_SCRIPT_TIMEOUT = 5.0
    # when the node's own limit is short, or the global script limit is raised to 15 s (half of STALE_AFTER)
    short = node_tasks.context_bytes(node("transform", timeout=2.0))
    settings.FLOWRUNNER_SCRIPT_TIMEOUT = 15.0
    long_global = node_tasks.context_bytes(node("transform"))
    kept_short_by_node = node_tasks.context_bytes(node("transform", params={"timeout": "3s"}))
    # then only runs bounded well below STALE_AFTER (no heartbeat while ahead of the claim) may run ahead
    assert short > 0
    assert long_global == 0
    assert kept_short_by_node > 0


def execution(**fields) -> Execution:
    defaults = {
        "id": "3f0f8a52-4a8e-4c43-9b43-8b1e0a2d6f10",
        "account_id": "a",
        "flow_id": "f",
        "flow_version_id": 7,
    }
    return Execution(
        **{**defaults, "data": {"x": 1}, "node_outputs": {}, "steps": 1, "progress": 0.0, **fields}
    )


def test_node_tasks_start_context_is_the_new_execution_as_a_claim_would_return_it(settings):
    # given a new execution whose first node is a transform
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 16_384
    # when its first task's context is built
    context = node_tasks.start_context(execution(), node("transform"), has_secrets=True)
    # then it names the node and carries the input as the document, at step 1
    assert context == {
        "node_id": "n",
        "execution": {
            "id": "3f0f8a52-4a8e-4c43-9b43-8b1e0a2d6f10",
            "account_id": "a",
            "flow_id": "f",
            "flow_version_id": 7,
            "data": {"x": 1},
            "node_outputs": {},
            "steps": 1,
            "progress": 0.0,
            "has_secrets": True,
        },
    }


def test_node_tasks_carries_no_context_for_a_big_document_or_a_kind_with_effects(settings):
    # given a 100-byte limit
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 100
    # when the input is bigger, or the node is an HTTP call / then the first node is claimed first
    assert node_tasks.carries_context(execution(data={"x": "y" * 100}), node("transform")) is False
    assert node_tasks.carries_context(execution(), node("http.request")) is False
    # and a small input of a transform is carried
    assert node_tasks.carries_context(execution(), node("transform")) is True
