"""What a pure node's task carries to run ahead of its claim, and what its finish must claim."""

from __future__ import annotations

from workers import ahead


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
