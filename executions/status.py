"""ExecutionStatus: the one JSON shape of an execution (REST detail, `status` events, WebSocket snapshots)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from executions.models import Execution
from flows.selectors import flow_version_label


def _version_label(execution: Execution) -> str | None:
    if execution.flow_version_id is None:
        return None
    # A loaded flow_version gives its label without a query on a cache miss.
    loaded = execution._state.fields_cache.get("flow_version")
    return flow_version_label(loaded if loaded is not None else execution.flow_version_id)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def execution_status(
    execution: Execution, *, flow_version_label: str | None = None, with_input: bool = True
) -> dict[str, Any]:
    """The ExecutionStatus as the row is now (the caller redacts when secrets may appear). Status events leave
    the input and trigger out (`with_input=False`): they never change, and repeating them in every event
    multiplied them."""
    label = flow_version_label if flow_version_label is not None else _version_label(execution)
    status = {
        "id": str(execution.id),
        "flow_id": execution.flow_id,
        "flow_version": label,
        "status": execution.status,
        "progress": round(float(execution.progress), 2),
        "current_node": execution.current_node or None,
        "error": execution.error,
        "input": execution.input,
        "trigger": execution.trigger,
        "results": execution.results,
        "start_time": iso(execution.started_at),
        "end_time": iso(execution.finished_at),
        "created_at": iso(execution.created_at),
        # Only a queued execution waits; the reason stays on the row after it is canceled, not in its status.
        "waiting_reason": (execution.waiting_reason or None) if execution.status == "queued" else None,
    }
    if not with_input:
        del status["input"]
        del status["trigger"]
    return status
