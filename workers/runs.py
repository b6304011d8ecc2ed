"""A node run's lifecycle in a worker: claim it (one statement), build its context, decide what its outcome
means (edges, retries, redaction, limits) and finish it (one statement), publishing what comes next."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from accounts.redaction import LazyRedactor
from accounts.selectors import secrets_decrypted
from core import metrics
from executions import dispatch, lifecycle, transitions
from executions.engine_reads import running_node_run
from executions.models import TERMINAL_EXECUTION_STATUSES
from executions.node_tasks import CONTEXT, context_bytes, node_task_options, node_timeout
from flows.dsl.spec import FlowSpec, NodeSpec
from workers import heartbeat
from workers.ahead import task_context
from workers.context import EngineContext
from workers.outcomes import Outcome, RetryLater, output_problem
from workers.specs import longest_path, progress_percent, spec_for_version
from workers.storable import storable_json

logger = logging.getLogger(__name__)

HOSTNAME = socket.gethostname()
# A batch part refused because its node already runs max_parallel parts asks again after this long (its lane's
# chain waits meanwhile: a retried task keeps its place in the chain).
BUSY_COUNTDOWN = 0.25


@dataclass
class Claimed:
    """A running node run and its execution as the claim (or a reload) saw them."""

    run: dict[str, Any]
    execution: dict[str, Any]
    parent_input: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)  # for the node-run duration metric
    # A run that runs ahead of its claim: what its finish must claim. `unclaimed` once the finish refused.
    pending_claim: dict[str, Any] | None = None
    unclaimed: bool = False

    @property
    def id(self) -> int:
        return int(self.run["id"])

    @property
    def is_part(self) -> bool:
        return self.run.get("parent_id") is not None

    @property
    def version_id(self) -> int:
        return int(self.execution["flow_version_id"])


# --- claim --------------------------------------------------------------------------------------------------


INTERRUPTED = "interrupted"


def claim(node_run_id: int, *, task_id: str = "", hostname: str = "") -> Claimed | RetryLater | str | None:
    """queued|retrying → running. A RetryLater when its batch node is at max_parallel; INTERRUPTED when this
    very task claimed it before and never finished it (its worker process died and the message came back, or
    the database failed under it); None when it is not ours to run (taken, or canceled as its execution ended).
    """
    result = transitions.node_run_claim(node_run_id, task_id=task_id, worker=hostname or HOSTNAME)
    outcome = result["outcome"]
    if outcome == "claimed":
        return Claimed(result["run"], result["execution"], result.get("parent_input"))
    if outcome == "busy":
        return RetryLater(node_run_id, BUSY_COUNTDOWN)
    if outcome == "interrupted":
        return INTERRUPTED
    return None


def reload(node_run_id: int) -> Claimed | None:
    """A running run as a claim would return it, read back (a wait's resume, a join, a lost attempt)."""
    found = running_node_run(node_run_id=node_run_id)
    if found is None:
        return None
    return Claimed(found["run"], found["execution"], found["parent_input"])


# --- context ------------------------------------------------------------------------------------------------


def redactor_for(account_id: Any) -> LazyRedactor:
    return LazyRedactor(lambda: secrets_decrypted(account=account_id).values())


def make_context(claimed: Claimed, node: NodeSpec) -> EngineContext:
    execution, run = claimed.execution, claimed.run
    account_id = execution["account_id"]
    return EngineContext(
        node=node,
        document=execution["data"] or {},
        results=execution["node_outputs"] or {},
        # `node_id`, `attempt` and `batch_index` go beyond {id, flow_id, account_id}: a script can then behave
        # differently on a retry (and tests can make a node fail exactly N times).
        execution={
            "id": execution["id"],
            "flow_id": execution["flow_id"],
            "account_id": account_id,
            "node_id": node.id,
            "attempt": run["attempt"],
            "batch_index": run["batch_index"],
        },
        load_secrets=(lambda: secrets_decrypted(account=account_id))
        if execution.get("has_secrets", True)
        else dict,
        timeout=node_timeout(node),
        has_secrets=bool(execution.get("has_secrets", True)),
    )


# --- deciding -----------------------------------------------------------------------------------------------


def _logs(outcome: Outcome) -> list[dict[str, Any]]:
    now = timezone.now().isoformat()
    return [
        {"timestamp": now, "level": entry.level, "message": entry.message, "data": entry.data}
        for entry in outcome.logs
    ]


def merge_output(document: dict[str, Any], output: Any) -> dict[str, Any]:
    """Objects merge into the document's top level (later wins); any other value is stored under `result`."""
    if isinstance(output, dict):
        document.update(output)
    elif output is not None:
        document["result"] = output
    return document


def _checked(outcome: Outcome) -> Outcome:
    if outcome.ok:
        problem = output_problem(outcome.output)
        if problem is not None:
            return Outcome(
                ok=False, error=problem, error_type="output_too_large", retryable=False, logs=outcome.logs
            )
    return outcome


def _retry_delay(node: NodeSpec, claimed: Claimed, outcome: Outcome) -> float | None:
    retry = node.retry
    if outcome.retryable and retry is not None and claimed.run["attempt"] <= retry.max_retries:
        return retry.delay(claimed.run["attempt"])
    return None


def decide(
    claimed: Claimed, spec: FlowSpec, node: NodeSpec, outcome: Outcome, redactor: LazyRedactor, *, kind: str
) -> dict[str, Any]:
    """What finishing this run means, for `flowrunner_finish`: the status, the next node or the end, a retry."""
    decision: dict[str, Any] = {
        "run": claimed.id,
        "kind": kind,
        "logs": _logs(outcome),
        "max_bytes": settings.FLOWRUNNER_MAX_DOCUMENT_BYTES,
        "max_steps": settings.FLOWRUNNER_MAX_STEPS,
        "step_limit_error": f"step limit of {settings.FLOWRUNNER_MAX_STEPS} node runs exceeded "
        "(a loop that never ends?)",
    }
    if claimed.pending_claim is not None:
        decision["claim"] = {**claimed.pending_claim, "elapsed": time.monotonic() - claimed.started}
    if outcome.ok and outcome.defer_seconds and kind != "resume":
        decision.update(kind="defer", output=outcome.output, defer={"seconds": outcome.defer_seconds})
        return decision
    outcome = _checked(outcome)
    if claimed.is_part:
        return _decide_part(decision, claimed, spec, node, outcome)
    target: str | None
    if outcome.ok:
        decision.update(status="succeeded", action=outcome.action, output=outcome.output, merge=True)
        target = node.edge(outcome.action)
    else:
        action = "timeout" if outcome.timed_out else "error"
        delay = _retry_delay(node, claimed, outcome)
        if delay is not None:
            decision.update(kind="retry", action=action, error=outcome.error, retry={"delay": delay})
            return decision
        decision.update(
            status="timed_out" if outcome.timed_out else "failed", action=action, error=outcome.error
        )
        target = node.next.get(action)
        if target is None and outcome.timed_out:
            target = node.next.get("error")
        if target is None:
            target = node.next.get("default")
        if target is None:
            message = redactor.text(f"node '{node.id}' failed: {outcome.error}")
            decision["end"] = {"status": "failed", "error": message}
            return decision
        # a failed batch join still carries its counts, so an error/timeout handler can see what finished
        decision.update(
            output=outcome.output,
            merge=True,
            error_doc={
                "node_id": node.id,
                "message": outcome.error,
                "type": outcome.error_type,
                "attempts": claimed.run["attempt"],
            },
        )
    if target is None:
        decision["end"] = _completion(claimed, outcome, redactor)
    else:
        steps = int(claimed.execution["steps"])
        decision["next"] = {
            "node_id": target,
            "task_id": str(uuid.uuid4()),
            "progress": progress_percent(steps, longest_path(claimed.version_id, target)),
            "context_bytes": context_bytes(spec.nodes[target]),
        }
    return decision


def _completion(claimed: Claimed, outcome: Outcome, redactor: LazyRedactor) -> dict[str, Any]:
    """The end of a completed execution; its status event shows the results with secrets masked."""
    end: dict[str, Any] = {"status": "completed", "error": None}
    results = merge_output(dict(claimed.execution["data"] or {}), outcome.output)
    redacted = redactor.data(results)
    if redacted != results:
        end["results"] = redacted
    return end


def _decide_part(
    decision: dict[str, Any], claimed: Claimed, spec: FlowSpec, node: NodeSpec, outcome: Outcome
) -> dict[str, Any]:
    step = int(claimed.run["step"])
    total = (step - 1) + longest_path(claimed.version_id, node.id)
    decision["part"] = (
        {"base": 100.0 * (step - 1) / total, "span": 100.0 / total}
        if total > 0
        else {
            "base": 0.0,
            "span": 0.0,
        }
    )
    if outcome.ok:
        decision.update(status="succeeded", action="success", output=outcome.output)
        return decision
    delay = _retry_delay(node, claimed, outcome)
    if delay is not None:
        decision.update(kind="retry", action=outcome.action, error=outcome.error, retry={"delay": delay})
        return decision
    decision.update(
        status="timed_out" if outcome.timed_out else "failed", action=outcome.action, error=outcome.error
    )
    return decision


# --- finishing ----------------------------------------------------------------------------------------------


def _publish_next(spec: FlowSpec, decision: dict[str, Any], claimed: Claimed) -> Any:
    """After the finish committed and its frames were broadcast: the next node's task (with the document it
    starts from, when the finish sent it back), or a wait's resume."""

    def publish(result: dict[str, Any]) -> None:
        if result["outcome"] == "done" and result.get("next_run") and decision.get("next"):
            target = spec.nodes[decision["next"]["node_id"]]
            dispatch.send_now(
                dispatch.RUN_NODE,
                result["next_run"],
                task_id=decision["next"]["task_id"],
                execution_id=decision["execution_id"],
                node_id=target.id,
                extra={CONTEXT: task_context(claimed.execution, target.id, result.get("next_context"))},
                **node_task_options(target),
            )
        elif result["outcome"] == "deferred":
            node = spec.nodes[decision["node_id"]]
            dispatch.send_now(
                dispatch.RESUME_NODE,
                decision["run"],
                countdown=decision["defer"]["seconds"],
                queue=node.queue,
            )

    return publish


def _store_failure(claimed: Claimed, spec: FlowSpec, node: NodeSpec, reason: str, kind: str) -> dict:
    """The finish itself failed (a value PostgreSQL refused, a document over its limit): fail the node once,
    at once, with the real reason, instead of leaving it running for the reaper to run again."""
    outcome = Outcome(ok=False, error=reason, error_type="store_error", retryable=False)
    decision = decide(claimed, spec, node, outcome, redactor_for(claimed.execution["account_id"]), kind=kind)
    decision["node_id"] = node.id
    decision["execution_id"] = claimed.execution["id"]
    return transitions.node_run_finish(storable_json(decision), then=_publish_next(spec, decision, claimed))


def finish(
    claimed: Claimed, outcome: Outcome, *, redactor: LazyRedactor, resuming: bool = False
) -> tuple[RetryLater | None, dict[str, Any]]:
    """Record a node's (or batch part's) outcome and move the execution on: one statement, then the next task.
    Returns the Celery retry directive, if any, and what the finish answered."""
    spec = spec_for_version(claimed.version_id)
    node = spec.nodes[claimed.run["node_id"]]
    kind = "resume" if resuming else "done"
    decision = decide(claimed, spec, node, outcome, redactor, kind=kind)
    decision["node_id"] = node.id
    decision["execution_id"] = claimed.execution["id"]
    try:
        result = transitions.node_run_finish(
            storable_json(decision), then=_publish_next(spec, decision, claimed)
        )
    except (OperationalError, InterfaceError):
        raise  # the connection itself: the task retries, its claim finds it interrupted
    except DatabaseError as exc:
        logger.warning("finishing node run %s failed: %s", claimed.id, exc)
        reason = redactor.text(f"the node's result could not be stored: {exc}".strip())
        result = _store_failure(claimed, spec, node, reason, kind)
    if result["outcome"] == "too_large":
        limit = settings.FLOWRUNNER_MAX_DOCUMENT_BYTES
        reason = (
            f"the document would grow to {result['bytes']} bytes with this node's output, over "
            f"FLOWRUNNER_MAX_DOCUMENT_BYTES ({limit})"
        )
        result = _store_failure(claimed, spec, node, reason, kind)
    if result["outcome"] == "unclaimed":
        claimed.unclaimed = True  # ran ahead of a claim it did not get: nothing was written
        return None, result
    metrics.node_run_finished(kind=node.type, decision=decision, result=result, started=claimed.started)
    if result["outcome"] == "done" and result.get("status") in TERMINAL_EXECUTION_STATUSES:
        lifecycle.execution_ended(
            execution_id=claimed.execution["id"],
            account_id=claimed.execution["account_id"],
            flow_id=claimed.execution["flow_id"],
            known=result.get("after_end"),
        )
    if result["outcome"] == "retry":
        return RetryLater(int(result["next_run"]), float(decision["retry"]["delay"])), result
    return None, result


def finish_work(claimed: Claimed, ctx: EngineContext, outcome: Outcome) -> RetryLater | None:
    """Finish a run with what its own work came to, its output masked as the context requires."""
    outcome.output = ctx.redacted_output(outcome.output)
    directive, _ = finish(claimed, outcome, redactor=ctx.redactor)
    return directive


def run_claimed(
    claimed: Claimed, ctx: EngineContext, work: Callable[[], RetryLater | None]
) -> RetryLater | None:
    """Run `work` for a claimed run under its heartbeat (the finish included: a run that finished is never taken
    for a dead one), failing the node once if anything around the work goes wrong (see `guarded`)."""
    with heartbeat.beating(claimed.id):
        return guarded(claimed, ctx, work)


def guarded(claimed: Claimed, ctx: EngineContext, work: Callable[[], RetryLater | None]) -> RetryLater | None:
    """Run what follows a claim. Whatever goes wrong outside the node's own work — its secrets cannot be
    decrypted (a worker with another encryption key), a kind's bug while cutting batches, redaction — fails the
    node once, at once, with the real reason in its error, instead of leaving it running for the reaper to take
    for a dead worker and run again. A lost database connection is left to the task, which runs again."""
    try:
        return work()
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        logger.exception("node run %s failed outside its own work", claimed.id)
        masked = LazyRedactor(ctx.loaded_secret_values)
        reason = masked.text(f"{type(exc).__name__}: {exc}")
        outcome = Outcome(ok=False, error=reason, error_type="engine_error", retryable=False)
        finish(claimed, outcome, redactor=masked)
        return None
