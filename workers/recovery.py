"""Lost attempts: a running node run whose worker died is failed as lost and run again as a new attempt, a
bounded number of times (then the node fails for good, so a poison pill cannot loop forever)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from executions import transitions
from executions.models import Execution, NodeRun, NodeRunStatus
from workers.lanes import Lanes, send
from workers.outcomes import Outcome, RetryLater
from workers.runs import INTERRUPTED, Claimed, claim, finish, redactor_for, reload

# A node run whose worker vanished is re-run as a new attempt; after this many lost attempts the node fails.
LOST = "worker lost"
MAX_LOST_ATTEMPTS = 3
INTERRUPTED_REASON = "its task was interrupted (database error or worker process death)"


def claim_or_recover(node_run_id: int, *, task_id: str, hostname: str) -> Claimed | RetryLater | None:
    """Claim a run for a task; a claim this very task made before and never finished (its process died, or
    its connection) is failed as lost and the next attempt queued at once, instead of after STALE_AFTER."""
    claimed = claim(node_run_id, task_id=task_id, hostname=hostname)
    if claimed == INTERRUPTED:
        requeue_lost(node_run_id, reason=INTERRUPTED_REASON)
        return None
    return claimed


def requeue_lost(node_run_id: int, *, reason: str, heartbeat_at: Any = None, started_at: Any = None) -> bool:
    """The running attempt lost its worker: fail it and queue the next attempt (sent on commit).

    After MAX_LOST_ATTEMPTS lost attempts of the node (this activation), the node fails for good instead —
    its `error` edge, else the execution fails: a node that kills its worker every time (a poison pill) must
    not be run forever. A batch part's queued successors in its lane are sent along (their chain died with
    the worker). With `heartbeat_at`/`started_at` (what the reaper saw), nothing happens when the run moved
    since. Returns whether the run was handled.
    """
    with transaction.atomic():
        # Every claim and finish of the execution's runs holds this lock: once we have it, a run still running
        # (with the heartbeat the reaper saw) was not re-claimed or finished meanwhile.
        run = NodeRun.objects.filter(id=node_run_id).first()
        if run is None:
            return False
        execution = Execution.objects.select_for_update().get(id=run.execution_id)
        current = NodeRun.objects.filter(id=node_run_id, status=NodeRunStatus.RUNNING)
        if heartbeat_at is not None or started_at is not None:
            current = current.filter(heartbeat_at=heartbeat_at, started_at=started_at)
        run = current.first()
        if run is None or run.wait_until is not None or run.parts_total is not None:
            return False  # moved on, or a paused wait / a batch node whose parts drive it: nothing was lost
        lost = 1 + NodeRun.objects.filter(
            execution_id=run.execution_id, node_id=run.node_id, step=run.step, batch_index=run.batch_index,
            status=NodeRunStatus.FAILED, error__startswith=LOST,
        ).count()  # fmt: skip
        if lost < MAX_LOST_ATTEMPTS:
            if not transitions.node_run_transition(
                run, to=NodeRunStatus.FAILED, expected=(NodeRunStatus.RUNNING,),
                account_id=execution.account_id, error=f"{LOST}: {reason}", finished_at=timezone.now(),
            ):  # fmt: skip
                return False
            again = transitions.node_run_create(
                execution=execution, node_id=run.node_id, parent_id=run.parent_id, batch_index=run.batch_index,
                attempt=run.attempt + 1, step=run.step, input=run.input, task_id=run.task_id,
            )  # fmt: skip
            # A lost part was its lane's running member: the rest of the lane was never published.
            successors = (Lanes().lane(again) or (True, []))[1] if again.parent_id is not None else []
            transaction.on_commit(lambda: send(again, successors))
            return True
    give_up(run, f"{LOST}: {reason}; {lost} attempts lost, giving up")
    return True


def give_up(run: NodeRun, error: str) -> None:
    """Fail a running run for good (not retried): its error edge, else the execution fails; a part's lane
    goes on with its next queued member."""
    claimed = reload(run.id)
    if claimed is None:
        return
    outcome = Outcome(ok=False, error=error, error_type="worker_lost", retryable=False)
    finish(claimed, outcome, redactor=redactor_for(claimed.execution["account_id"]))
    if run.parent_id is not None:
        lane = Lanes().lane(run)
        if lane and lane[1]:
            first, *rest = lane[1]
            send(first, rest)
