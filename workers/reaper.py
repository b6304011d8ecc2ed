"""The reaper (celery beat): re-drives from PostgreSQL whatever the broker or a dead worker lost."""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import timedelta
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.db.models import F, Max, Q
from django.utils import timezone
from redis.exceptions import LockError

from executions import dispatch
from executions.models import ExecutionStatus, NodeRun, NodeRunStatus
from workers import batches, recovery
from workers.lanes import Lanes, send, task_options

logger = logging.getLogger(__name__)

ACTIVE = (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)
LIMIT = 500
WAITING_FIELDS = (
    "id", "node_id", "batch_index", "parent_id", "step", "status", "queued_at", "not_before", "execution_id",
    "execution__flow_version_id", "execution__status",
)  # fmt: skip
# A chord whose last batch finished this long ago without its callback is joined from PostgreSQL.
JOIN_GRACE = timedelta(seconds=2)
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


def _stale_queued(stale: Any) -> Any:
    """Queued runs whose task should have started before `stale`, oldest first."""
    return _waiting(status=NodeRunStatus.QUEUED, queued_at__lt=stale).order_by("queued_at")[:LIMIT]


def _overdue_retries(stale: Any) -> Any:
    """Retrying runs whose countdown ended before `stale`, most overdue first."""
    return _waiting(status=NodeRunStatus.RETRYING, not_before__lt=stale).order_by("not_before")[:LIMIT]


def _silent_running(stale: Any) -> Any:
    """Running runs of running executions whose heartbeat (or start, before the first beat) is older than `stale`."""
    return (
        NodeRun.objects.select_related("execution")
        .filter(status=NodeRunStatus.RUNNING, execution__status=ExecutionStatus.RUNNING)
        .filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale))[:LIMIT]
    )


def _finished_batches() -> Any:
    """Batch nodes of running executions whose parts have all finished."""
    return NodeRun.objects.filter(
        status=NodeRunStatus.RUNNING, parts_total__isnull=False, parts_done__gte=F("parts_total"),
        execution__status=ExecutionStatus.RUNNING,
    )[:LIMIT]  # fmt: skip


def _resend_waiting(stale: Any, now: Any, lanes: Lanes, backlog: Backlog) -> int:
    """Queued runs whose task never arrived (broker lost it, or the enqueue failed after commit), and retrying
    runs whose countdown message was lost (a dead worker held it)."""
    count = 0
    runs = _stale_queued(stale)
    for run in runs:
        send_now, successors = lanes.decide(run)
        if not send_now or backlog.holds(run, task_options(run).get("queue")):
            continue
        if NodeRun.objects.filter(id=run.id, status=NodeRunStatus.QUEUED, queued_at=run.queued_at).update(
            queued_at=now
        ):
            send(run, successors)
            count += 1
    runs = _overdue_retries(stale)
    for run in runs:
        send_now, successors = lanes.decide(run)
        if not send_now:
            continue
        if NodeRun.objects.filter(id=run.id, status=NodeRunStatus.RETRYING, not_before=run.not_before).update(
            not_before=now
        ):
            send(run, successors)
            count += 1
    return count


def _recover_running(stale: Any, now: Any) -> int:
    """Running runs without a heartbeat: the worker died. The attempt fails as lost and a fresh one is queued
    (a retry's attempt like any other). A paused wait (its own marker) whose resume was lost is resumed."""
    count = 0
    for run in _silent_running(stale):
        if run.wait_until is not None:
            if run.wait_until < stale and NodeRun.objects.filter(
                id=run.id, status=NodeRunStatus.RUNNING, wait_until=run.wait_until
            ).update(wait_until=now):
                dispatch.send_now(dispatch.RESUME_NODE, run.id, queue=task_options(run).get("queue"))
                count += 1
            continue
        if run.parts_total is not None:
            continue  # a batch node: its parts carry the heartbeats; the join (chord or _join_orphans) ends it
        reason = f"no heartbeat for {settings.FLOWRUNNER_STALE_AFTER:g}s"
        if recovery.requeue_lost(
            run.id, reason=reason, heartbeat_at=run.heartbeat_at, started_at=run.started_at
        ):
            count += 1
    return count


def _join_orphans(now: Any) -> int:
    """Batch nodes whose parts are all finished but whose join never came (Redis lost the chord's callback,
    or the inline join of a batch without items was interrupted)."""
    count = 0
    for parent in _finished_batches():
        finished_at = NodeRun.objects.filter(parent_id=parent.id).aggregate(last=Max("finished_at"))["last"]
        if (finished_at or parent.started_at or now) >= now - JOIN_GRACE:
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


# One pass at a time: passes slower than REAPER_INTERVAL (a long backlog, an overloaded machine) would otherwise
# pile up on every worker process, and the node runs would wait behind them. The lock expires by itself if the
# worker holding it dies.
PASS_LOCK = "flowrunner:reaper:pass"


def _pass_lock(backlog: Backlog) -> Any:
    """The held pass lock; False when another pass holds it; None when there is none to take (the in-memory
    broker, or Redis unreachable: a pass is safe beside another, only wasteful)."""
    client = backlog._redis()
    if client is None:
        return None
    lock = client.lock(PASS_LOCK, timeout=max(60.0, 6 * settings.FLOWRUNNER_REAPER_INTERVAL), blocking=False)
    try:
        return lock if lock.acquire() else False
    except redis.RedisError:
        return None


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
    lock = _pass_lock(backlog)
    if lock is False:
        backlog.close()
        return {"resent": 0, "recovered": 0, "joined": 0, "skipped": 1}
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
        if lock is not None:
            with contextlib.suppress(redis.RedisError, LockError):
                lock.release()
        backlog.close()
    if any(result.values()):
        logger.info("reaper: %s", result)
    return result
