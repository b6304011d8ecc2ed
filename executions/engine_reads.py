"""Worker-side reads of the node-run state machine, by id and without an account scope (workers act for all)."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection

# One statement, written out: the ORM's select_related over three tables cost ~5x the query's own time to
# build, on every join of a batch, resume of a wait and re-run of a lost attempt.
_RUNNING = """
SELECT r.id, r.node_id, r.batch_index, r.attempt, r.step, r.input, r.task_id, r.parent_id, r.output,
       r.parts_done, r.parts_total,
       e.id, e.account_id, e.flow_id, e.flow_version_id, e.data, e.node_outputs, e.steps, e.progress,
       p.input
  FROM executions_noderun r
  JOIN executions_execution e ON e.id = r.execution_id
  LEFT JOIN executions_noderun p ON p.id = r.parent_id
 WHERE r.id = %s AND r.status = 'running'
"""


def jsonb_value(value: Any) -> Any:
    """A jsonb column's value: the connection hands jsonb over as text (Django's loader), a dict otherwise."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def running_node_run(*, node_run_id: int) -> dict[str, Any] | None:
    """A running node run, its execution and its batch node's input (for a part), as a claim returns them;
    None when the run is not running."""
    with connection.cursor() as cursor:
        cursor.execute(_RUNNING, [node_run_id])
        row = cursor.fetchone()
    if row is None:
        return None
    (run_id, node_id, batch_index, attempt, step, run_input, task_id, parent_id, output, parts_done, parts_total,
     execution_id, account_id, flow_id, flow_version_id, data, node_outputs, steps, progress,
     parent_input) = row  # fmt: skip
    return {
        "run": {
            "id": run_id,
            "node_id": node_id,
            "batch_index": batch_index,
            "attempt": attempt,
            "step": step,
            "input": jsonb_value(run_input),
            "task_id": task_id,
            "parent_id": parent_id,
            "output": jsonb_value(output),
            "parts_done": parts_done,
            "parts_total": parts_total,
        },
        "execution": {
            "id": str(execution_id),
            "account_id": str(account_id),
            "flow_id": flow_id,
            "flow_version_id": flow_version_id,
            "data": jsonb_value(data),
            "node_outputs": jsonb_value(node_outputs),
            "steps": steps,
            "progress": progress,
        },
        "parent_input": jsonb_value(parent_input),
    }
