"""Pure nodes run ahead of their claim: the context the next node's task carries, and what its finish claims."""

from __future__ import annotations

import json
from typing import Any

# The parts of one batch together carry at most this many times the per-task limit: every part's task repeats
# the document, and a chord of thousands of them would otherwise put megabytes through the broker at once.
PARTS_BUDGET = 16

# What a claim returns of the execution, and so what a task's context must hold of it.
EXECUTION_KEYS = (
    "id", "account_id", "flow_id", "flow_version_id", "data", "node_outputs", "steps", "progress", "has_secrets",
)  # fmt: skip


def task_context(execution: dict[str, Any], node_id: str, next_context: dict[str, Any] | None) -> Any:
    """What the next node's task carries: the execution as a claim would return it (its document as the finish
    that created the run left it), or None when the finish sent no document (too big, or not asked for)."""
    if not next_context:
        return None
    return {
        "node_id": node_id,
        "execution": {
            "id": execution["id"],
            "account_id": execution["account_id"],
            "flow_id": execution["flow_id"],
            "flow_version_id": execution["flow_version_id"],
            **next_context,
        },
    }


def part_contexts(
    execution: dict[str, Any],
    parent: dict[str, Any],
    parts_json: str,
    parent_input: dict[str, Any],
    limit: int,
) -> list[Any]:
    """What each batch part's task carries to run ahead of its claim: the execution as its batch node's claim saw
    it (parts do not move the document) and the part's own input as stored (`parts_json`, the JSON array the
    parts were created from); None for every part when one would carry more than `limit` bytes or all of them
    more than PARTS_BUDGET times that."""
    count = int(parent_input["batch_count"])
    if not limit or not count:
        return [None] * count
    document = {key: execution[key] for key in EXECUTION_KEYS if key in execution}
    base = len(json.dumps(document["data"])) + len(json.dumps(document["node_outputs"]))
    # The whole batch first, from the text it was stored as: a batch too big to carry is never parsed again.
    if len(parts_json) + count * base > PARTS_BUDGET * limit:
        return [None] * count
    inputs = json.loads(parts_json)
    if max(base + len(json.dumps(part_input)) for part_input in inputs) > limit:
        return [None] * count
    return [
        {
            "node_id": parent["node_id"],
            "execution": document,
            "part": {
                "parent_id": parent["id"],
                "batch_index": index,
                "step": parent["step"],
                "input": part_input,
                "parent_input": parent_input,
            },
        }
        for index, part_input in enumerate(inputs)
    ]


def claim_parts(
    node_run_id: int, context: dict[str, Any], *, task_id: str, worker: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The run and execution a claim would have returned, from a task's context, and what its finish must claim
    (`claim` in the finish's decision: this task's queued run, at the document version it ran on)."""
    execution = context["execution"]
    part = context.get("part") or {}
    run = {
        "id": node_run_id,
        "node_id": context["node_id"],
        "batch_index": part.get("batch_index"),
        "attempt": 1,
        "step": part.get("step", execution["steps"]),
        "input": part.get("input"),
        "task_id": task_id,
        "parent_id": part.get("parent_id"),
    }
    return run, execution, {"task_id": task_id, "worker": worker, "steps": execution["steps"]}
