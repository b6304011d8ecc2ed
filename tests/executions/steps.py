"""Steps of the consumer's unit tests on the data side: an execution started through the services, moved
through the transitions, its log lines, stored frames and snapshot."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from executions.models import Execution
from executions.selectors import redacted_status
from executions.services import execution_start
from executions.transitions import execution_transition, record_log
from flows.services import flow_create

FLOW = "metadata:\n  name: t\nnodes:\n  a:\n    type: transform\n    params:\n      script: 'return {x: 1}'\n"


@database_sync_to_async
def start(account, user) -> Execution:  # noqa: ANN001
    flow = flow_create(account=account, user=user, content=FLOW)
    execution, _ = execution_start(account=account, flow=flow, user=user, input={})
    return Execution.objects.get(id=execution.id)


@database_sync_to_async
def move(execution_id: Any, to: str) -> None:
    fields: dict[str, Any] = {}
    if to == "running":
        fields["started_at"] = timezone.now()
    elif to == "completed":
        fields["results"] = {"x": 1}
    with transaction.atomic():
        execution = Execution.objects.select_for_update().get(id=execution_id)
        execution_transition(execution, to=to, expected=("queued", "running"), **fields)


@database_sync_to_async
def log(execution_id: Any, message: str) -> None:
    with transaction.atomic():
        execution = Execution.objects.get(id=execution_id)
        record_log(
            execution_id=execution.id,
            account_id=execution.account_id,
            node_id="a",
            level="info",
            message=message,
        )


@database_sync_to_async
def stored_frames(execution_id: Any) -> list[dict[str, Any]]:
    return list(
        Execution.objects.get(id=execution_id).events.order_by("seq").values_list("payload", flat=True)
    )


@database_sync_to_async
def snapshot_of(execution_id: Any) -> tuple[int, dict[str, Any]]:
    execution = Execution.objects.select_related("flow_version").get(id=execution_id)
    return execution.last_event_seq, redacted_status(execution)
