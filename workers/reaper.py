"""The reaper (celery beat): re-drives from PostgreSQL whatever the broker or a dead worker lost."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from celery import chain, current_app
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import Q
from django.utils import timezone

from executions import dispatch, transitions
from executions.models import TERMINAL_NODE_STATUSES, Execution, ExecutionStatus, NodeRun, NodeRunStatus
from executions.services import node_task_options
from workers.specs import spec_for_version

logger = logging.getLogger(__name__)

ACTIVE = (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)
LIMIT = 500
WAITING_FIELDS = (
    "id", "node_id", "batch_index", "step", "status", "queued_at", "not_before", "execution_id",
    "execution__flow_version_id", "execution__status",
)  # fmt: skip
# A chord whose last batch finished this long ago without its callback is joined from PostgreSQL.
JOIN_GRACE = timedelta(seconds=2)
# A node run whose worker vanished is re-run as a new attempt; after this many lost attempts the node fails.
LOST = "worker lost"
MAX_LOST_ATTEMPTS = 3
# A broker queue longer than this is not read message by message: its stale runs are taken as waiting in it.
BACKLOG_SCAN_LIMIT = 20_000
# Kombu's Redis message is JSON with Celery's headers in clear: {"body": "<base64>", ..., "headers": {...,
# "task": "flowrunner.run_node", ..., "argsrepr": "[42]", ...}}. Two searches per message are ~20 times
# cheaper than json.loads, which matters when a long backlog is read every REAPER_INTERVAL.
_TASK = re.compile(rb'"task": "([^"]+)"')
_ARGS = re.compile(rb'"argsrepr": "[\[(](\d+)')
_RESENDABLE = {dispatch.RUN_NODE.encode(), dispatch.RUN_BATCH.encode()}


def _run_ids(messages: list[bytes]) -> set[int]:
    ids = set()
    for raw in messages:
        task, args = _TASK.search(raw), _ARGS.search(raw)
        if task and args and task.group(1) in _RESENDABLE:
            ids.add(int(args.group(1)))
    return ids


def _task_for(node_run: NodeRun) -> str:
    return dispatch.RUN_BATCH if node_run.batch_index is not None else dispatch.RUN_NODE


def _options(node_run: NodeRun) -> dict[str, Any]:
    spec = spec_for_version(node_run.execution.flow_version_id)
    node = spec.nodes.get(node_run.node_id)
    if node is None:
        return {}
    if node_run.batch_index is not None:
        return {"queue": node.queue}
    return node_task_options(node)


# --- batch lanes --------------------------------------------------------------------------------------------


def _parent_of(part: NodeRun) -> NodeRun | None:
    return (
        NodeRun.objects.filter(
            execution_id=part.execution_id, node_id=part.node_id, step=part.step, batch_index__isnull=True
        )
        .order_by("-id")
        .first()
    )


class Lanes:
    """Lane lookups for one reaper pass: each batch node's parent and latest parts are read once.

    Batch parts run as `max_parallel` lanes, each a Celery chain: only a lane's head message exists in the
    broker, the next is published when its predecessor finishes. So a queued part behind an open predecessor
    of its lane is not lost, only waiting its turn (however long the lane takes); and when the reaper re-drives
    a lane's head it sends the queued rest of the lane along as one chain, which keeps `max_parallel` and costs
    one STALE_AFTER per lane rather than per part.
    """

    def __init__(self) -> None:
        self._nodes: dict[tuple[Any, str, int], tuple[NodeRun | None, dict[int, NodeRun]]] = {}

    def _node(self, part: NodeRun) -> tuple[NodeRun | None, dict[int, NodeRun]]:
        from workers import batches

        key = (part.execution_id, part.node_id, part.step)
        if key not in self._nodes:
            parent = _parent_of(part)
            self._nodes[key] = (parent, batches.latest_parts(parent) if parent is not None else {})
        return self._nodes[key]

    def lane(self, part: NodeRun) -> tuple[bool, list[NodeRun]] | None:
        """(head, successors) of `part`'s lane: `head` is False when an earlier member of the lane is still
        open (that one drives the lane; `part` waits its turn); `successors` are the later members still
        queued. None when the batch node is gone."""
        parent, latest = self._node(part)
        if parent is None:
            return None
        lanes = max(1, int((parent.input or {}).get("lanes") or 1))
        index = part.batch_index
        earlier = [latest[i] for i in range(index % lanes, index, lanes) if i in latest]
        head = all(run.status in TERMINAL_NODE_STATUSES for run in earlier)
        later = sorted(i for i in latest if i > index and (i - index) % lanes == 0)
        return head, [latest[i] for i in later if latest[i].status == NodeRunStatus.QUEUED]

    def decide(self, run: NodeRun) -> tuple[bool, list[NodeRun]]:
        """(re-drive it now?, queued successors to chain after it) for a run found stale."""
        if run.batch_index is None:
            return True, []
        return self.lane(run) or (False, [])


def _send(run: NodeRun, successors: list[NodeRun] | None = None) -> None:
    """Publish `run`'s task; a batch part takes the queued rest of its lane along as one chain."""
    options = _options(run)
    if not successors:
        dispatch.send_now(_task_for(run), run.id, **options)
        return
    queue = options.get("queue")
    signatures = [
        current_app.signature(dispatch.RUN_BATCH, args=[member.id], immutable=True, queue=queue)
        for member in [run, *successors]
    ]
    try:
        chain(*signatures).apply_async()
    except Exception:  # the broker is down: the rows stay as they are and the next pass tries again
        logger.warning("could not re-send the lane of node run %s", run.id, exc_info=True)


# --- the broker's backlog -----------------------------------------------------------------------------------


class Backlog:
    """Which node runs still have a message waiting in a broker queue, read once per queue per pass.

    A run queued longer than STALE_AFTER is either lost (the broker restarted, a dead worker had prefetched it)
    or just waiting behind a long queue. Re-sending the waiting ones would multiply the backlog exactly when
    the workers are overloaded, so with a Redis broker the reaper reads the queue's list and leaves the runs
    whose message is in it alone. Only the ready list is read: messages a worker took (prefetched, or a dead
    worker's unacked ones, which Redis would only give back after the 1 h visibility timeout) count as lost.
    """

    def __init__(self) -> None:
        self._queues: dict[str, set[int] | None] = {}
        self._client: Any = None
        self.too_long: set[str] = set()

    def _redis(self) -> Any:
        url = str(current_app.conf.broker_url or "")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return None  # the embedded in-memory broker loses nothing while its process lives
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return self._client

    def _read(self, queue: str) -> set[int] | None:
        """Run ids with a run_node/run_batch message in `queue`; None when unknown (re-send then)."""
        client = self._redis()
        if client is None:
            return None
        keys = [queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))]  # kombu's priority lists
        waiting: set[int] = set()
        try:
            lengths = [client.llen(key) for key in keys]
            if sum(lengths) > BACKLOG_SCAN_LIMIT:
                self.too_long.add(queue)
                return waiting
            for key, length in zip(keys, lengths, strict=True):
                if length:
                    waiting.update(_run_ids(client.lrange(key, 0, -1)))
        except (
            Exception
        ):  # the broker is down: assume nothing is waiting (re-sending then fails and is logged)
            logger.warning("could not read the broker queue %r", queue, exc_info=True)
            return None
        return waiting

    def holds(self, run: NodeRun, queue: str | None) -> bool:
        """Is `run`'s message still waiting in the broker (so re-sending it would only duplicate it)?"""
        queue = queue or current_app.conf.task_default_queue or "celery"
        if queue not in self._queues:
            self._queues[queue] = self._read(queue)
        if queue in self.too_long:
            return True
        waiting = self._queues[queue]
        return waiting is not None and run.id in waiting

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# --- the passes ---------------------------------------------------------------------------------------------


def _waiting(**conditions: Any) -> Any:
    """Runs of active executions, with just the columns a re-send needs (not the executions' documents)."""
    return (
        NodeRun.objects.filter(execution__status__in=ACTIVE, **conditions)
        .select_related("execution")
        .only(*WAITING_FIELDS)
    )


def _resend_waiting(stale: Any, now: Any, lanes: Lanes, backlog: Backlog) -> int:
    """Queued runs whose task never arrived (broker lost it, or the enqueue failed after commit), and retrying
    runs whose countdown message was lost (a dead worker held it)."""
    count = 0
    runs = _waiting(status=NodeRunStatus.QUEUED, queued_at__lt=stale).order_by("queued_at")[:LIMIT]
    for run in runs:
        send, successors = lanes.decide(run)
        if not send or backlog.holds(run, _options(run).get("queue")):
            continue
        if NodeRun.objects.filter(id=run.id, status=NodeRunStatus.QUEUED, queued_at=run.queued_at).update(
            queued_at=now
        ):
            _send(run, successors)
            count += 1
    runs = _waiting(status=NodeRunStatus.RETRYING, not_before__lt=stale).order_by("not_before")[:LIMIT]
    for run in runs:
        send, successors = lanes.decide(run)
        if not send:
            continue
        if NodeRun.objects.filter(id=run.id, status=NodeRunStatus.RETRYING, not_before=run.not_before).update(
            not_before=now
        ):
            _send(run, successors)
            count += 1
    return count


def _is_batch_parent(run: NodeRun) -> bool:
    return run.batch_index is None and isinstance(run.input, dict) and "batch_count" in run.input


def _recover_running(stale: Any, now: Any) -> int:
    """Running runs without a heartbeat: the worker died. The attempt fails as lost and a fresh one is queued."""
    count = 0
    runs = (
        NodeRun.objects.select_related("execution")
        .filter(status=NodeRunStatus.RUNNING, execution__status=ExecutionStatus.RUNNING)
        .filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale))[:LIMIT]
    )
    for run in runs:
        if run.not_before is not None:
            if run.not_before < stale and NodeRun.objects.filter(
                id=run.id, status=NodeRunStatus.RUNNING, not_before=run.not_before
            ).update(not_before=now):
                dispatch.send_now(dispatch.RESUME_NODE, run.id, queue=_options(run).get("queue"))
                count += 1
            continue
        if _is_batch_parent(run):
            continue  # its batches carry the heartbeats; the join (chord or _join_orphans) finishes it
        if requeue_lost(run, reason=f"no heartbeat for {settings.FLOWRUNNER_STALE_AFTER:g}s"):
            count += 1
    return count


def requeue_lost(run: NodeRun, *, reason: str) -> bool:
    """The running attempt `run` lost its worker: fail it and queue the next attempt (sent on commit).

    After MAX_LOST_ATTEMPTS lost attempts of the node (this activation), the node fails for good instead —
    its `error` edge, else the execution fails: a node that kills its worker every time (a poison pill) must
    not be run forever. A batch part's queued successors in its lane are sent along (their chain died with
    the worker). Returns False when `run` is no longer running with the heartbeat seen (someone moved it).
    """
    with transaction.atomic():
        # Every claim and finish of the execution's runs holds this lock: once we have it, a run still running
        # with the heartbeat we saw was not re-claimed or finished meanwhile.
        execution = Execution.objects.select_for_update().get(id=run.execution_id)
        if not NodeRun.objects.filter(
            id=run.id, status=NodeRunStatus.RUNNING, heartbeat_at=run.heartbeat_at, started_at=run.started_at
        ).exists():
            return False
        lost = 1 + NodeRun.objects.filter(
            execution_id=run.execution_id, node_id=run.node_id, step=run.step, batch_index=run.batch_index,
            status=NodeRunStatus.FAILED, error__startswith=LOST,
        ).count()  # fmt: skip
        if lost >= MAX_LOST_ATTEMPTS:
            _give_up(run, execution, f"{LOST}: {reason}; {lost} attempts lost, giving up")
            return True
        if not transitions.node_run_transition(
            run, to=NodeRunStatus.FAILED, expected=(NodeRunStatus.RUNNING,), account_id=execution.account_id,
            error=f"{LOST}: {reason}", finished_at=timezone.now(),
        ):  # fmt: skip
            return False
        again = transitions.node_run_create(
            execution=execution, node_id=run.node_id, batch_index=run.batch_index, attempt=run.attempt + 1,
            step=run.step, input=run.input, task_id=run.task_id,
        )  # fmt: skip
        # A lost part was its lane's running member: the rest of the lane was never published.
        successors = (Lanes().lane(again) or (True, []))[1] if again.batch_index is not None else []
        transaction.on_commit(lambda: _send(again, successors))
    return True


def _give_up(run: NodeRun, execution: Execution, error: str) -> None:
    from workers import batches, engine
    from workers.outcomes import Outcome

    outcome = Outcome(ok=False, error=error, error_type="worker_lost", retryable=False)
    redactor = engine.redactor_for(execution)
    if run.batch_index is None:
        engine.finish(run.id, outcome, redactor=redactor)
        return
    batches.finish_batch(run.id, outcome, redactor=redactor)
    lane = Lanes().lane(run)
    if lane and lane[1]:
        first, *rest = lane[1]
        transaction.on_commit(lambda: _send(first, rest))


def _join_orphans(now: Any) -> int:
    """Batch nodes whose batches are all finished but whose chord callback never came (Redis lost it)."""
    from workers import batches

    count = 0
    parents = NodeRun.objects.filter(
        status=NodeRunStatus.RUNNING, batch_index__isnull=True, execution__status=ExecutionStatus.RUNNING,
        input__has_key="batch_count",
    )[:LIMIT]  # fmt: skip
    for parent in parents:
        parts = batches.latest_parts(parent)
        if not parts or any(p.status not in TERMINAL_NODE_STATUSES for p in parts.values()):
            continue
        finished_at = max((p.finished_at for p in parts.values() if p.finished_at), default=None)
        if finished_at is None or finished_at >= now - JOIN_GRACE:
            continue  # give the chord callback its chance first
        directive = batches.join(parent.id)
        if directive is not None:
            dispatch.send_now(dispatch.RUN_NODE, directive.node_run_id, countdown=directive.countdown)
        if NodeRun.objects.filter(id=parent.id).exclude(status=NodeRunStatus.RUNNING).exists():
            count += 1
    return count


def _drop_broken_connections() -> None:
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()


def reap() -> dict[str, int]:
    """One pass; safe to run concurrently with everything (each step is a compare-and-swap on the run's row,
    so a duplicate message it sends is refused by the claim).

    Queued runs whose message never came and retrying runs whose countdown message was lost are re-sent;
    running runs whose heartbeat stopped (the worker died) are failed as lost and queued again; waits whose
    resume was lost are resumed; batch nodes whose chord callback was lost are joined.

    A database error (server restart, terminated backend) ends the pass quietly after dropping the broken
    connection: the next pass, one REAPER_INTERVAL later, starts on a fresh one.
    """
    _drop_broken_connections()
    now = timezone.now()
    stale = now - timedelta(seconds=settings.FLOWRUNNER_STALE_AFTER)
    backlog = Backlog()
    try:
        result = {
            "resent": _resend_waiting(stale, now, Lanes(), backlog),
            "recovered": _recover_running(stale, now),
            "joined": _join_orphans(now),
        }
    except (OperationalError, InterfaceError) as exc:
        logger.warning("reaper pass stopped by a database error: %s", exc)
        for conn in connections.all(initialized_only=True):
            conn.close()
        return {"resent": 0, "recovered": 0, "joined": 0, "database_errors": 1}
    finally:
        backlog.close()
    if any(result.values()):
        logger.info("reaper: %s", result)
    return result
