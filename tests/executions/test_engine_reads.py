"""Worker-side reads: a running node run read back by id is what its claim returned."""

from __future__ import annotations

import pytest

from executions import transitions
from executions.engine_reads import running_node_run
from executions.models import NodeRun
from tests.workers.steps import start_execution
from workers import batches, engine

pytestmark = pytest.mark.django_db(transaction=True)

LINEAR = """
metadata: {name: linear}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""

BATCH = """
metadata: {name: batch}
nodes:
  fan:
    type: parallel_batch
    params: {items: "${input.numbers}", batch_size: 2, processor_script: "return input.items"}
"""

CLAIM_EXECUTION_KEYS = (
    "id",
    "account_id",
    "flow_id",
    "flow_version_id",
    "data",
    "node_outputs",
    "steps",
    "progress",
)


def _claim(run: NodeRun) -> dict:
    result = transitions.node_run_claim(run.id, task_id=run.task_id or "t", worker="w@h")
    assert result["outcome"] == "claimed"
    return result


def test_engine_reads_a_running_run_reads_back_as_its_claim_returned_it(member, no_broker):
    # Given an execution whose first node run was claimed
    execution = start_execution(member, LINEAR, {"x": [1, "two", {"three": None}]})
    claim = _claim(NodeRun.objects.get(execution=execution))
    # When it is read back by id
    found = running_node_run(node_run_id=claim["run"]["id"])
    # Then the run and the execution are the claim's, ids as text and documents decoded
    assert found is not None
    assert {key: found["run"][key] for key in claim["run"]} == claim["run"]
    assert {key: found["execution"][key] for key in CLAIM_EXECUTION_KEYS} == {
        key: claim["execution"][key] for key in CLAIM_EXECUTION_KEYS
    }
    assert found["execution"]["data"] == {"x": [1, "two", {"three": None}]}
    assert found["run"]["output"] is None and found["run"]["parts_total"] is None
    assert found["parent_input"] is None


def test_engine_reads_a_batch_part_carries_its_batch_nodes_input(member, no_broker, monkeypatch):
    # Given a batch node that started its parts (the chord not sent), and one part claimed
    monkeypatch.setattr(batches, "_launch_chord", lambda *args, **kwargs: None)
    execution = start_execution(member, BATCH, {"numbers": [1, 2, 3]})
    parent = NodeRun.objects.get(execution=execution, parent__isnull=True)
    engine.run_node(parent.id, task_id="parent-task", hostname="w@h")
    part = NodeRun.objects.filter(parent_id=parent.id).order_by("batch_index").first()
    claim = _claim(part)
    # When the part and its batch node are read back
    found_part = running_node_run(node_run_id=part.id)
    found_parent = running_node_run(node_run_id=parent.id)
    # Then the part has its batch node's input, as its claim did, and the batch node its counter
    assert found_part["parent_input"] == claim["parent_input"] and claim["parent_input"]["batch_count"] == 2
    assert found_part["run"]["input"] == {"items": [1, 2]}
    assert (found_parent["run"]["parts_done"], found_parent["run"]["parts_total"]) == (0, 2)


def test_engine_reads_a_run_that_is_not_running_is_not_found(member, no_broker):
    # Given a queued node run
    execution = start_execution(member, LINEAR)
    run = NodeRun.objects.get(execution=execution)
    # When it is read as a running run / Then it is not found
    assert running_node_run(node_run_id=run.id) is None
