"""ExecutionStatus: the one JSON shape of an execution (REST detail, `status` events, WebSocket snapshots)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from executions.models import Execution

# FlowVersions never change: their labels are cached so a status snapshot costs no query.
_labels: dict[int, str] = {}


def _version_label(execution: Execution) -> str | None:
    version_id = execution.flow_version_id
    if version_id is None:
        return None
    label = _labels.get(version_id)
    if label is None:
        if "flow_version" in execution._state.fields_cache:
            label = execution.flow_version.version
        else:
            from flows.models import FlowVersion

            label = FlowVersion.objects.values_list("version", flat=True).get(id=version_id)
        if len(_labels) > 4096:
            _labels.clear()
        _labels[version_id] = label
    return label


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
