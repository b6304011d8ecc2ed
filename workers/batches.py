"""Parallel batch nodes: a Celery chord over the parts (at most `max_parallel` lanes, each a chain), a counter on
the batch node's run that says when the join is due, a join that wins once, and a deadline for stragglers."""

from __future__ import annotations

import logging
from typing import Any

from celery import chain, chord, current_app, group
from django.conf import settings
from django.db import transaction

from executions import dispatch, transitions
from executions.events import locked_execution_work
from executions.models import TERMINAL_NODE_STATUSES, Execution, NodeRun, NodeRunStatus
from executions.node_tasks import CONTEXT, context_bytes
from flows.dsl.spec import NodeSpec
from flows.nodes.base import PermanentNodeError
from flows.nodes.registry import get_kind
from workers import ahead, recovery, runs
from workers.context import EngineContext
from workers.lanes import latest_parts
from workers.outcomes import Outcome, RetryLater, execute
from workers.specs import spec_for_version
from workers.storable import storable_json

logger = logging.getLogger(__name__)


def _plan(kind: Any, ctx: EngineContext) -> tuple[list[list[Any]], int]:
    """The batches and how many may run at once; raises what the kind raises (bad items, sizes, limits)."""
    batches = kind.batches(ctx)
    limit = settings.FLOWRUNNER_MAX_BATCHES
    if len(batches) > limit:
        raise PermanentNodeError(
            f"{len(batches)} batches is over FLOWRUNNER_MAX_BATCHES ({limit}): raise batch_size or the limit",
            type="too_many_batches",
        )
    lanes = kind.max_parallel(ctx) or len(batches)
    return batches, max(1, min(lanes, len(batches) or 1))


def start(claimed: runs.Claimed, node: NodeSpec, kind: Any, ctx: EngineContext) -> RetryLater | None:
    """Cut the items into parts, create them once (one statement) and launch the chord; no items: join now."""
    planned = execute(lambda c: _plan(kind, c), ctx)
    if not planned.ok:
        directive, _ = runs.finish(claimed, planned, redactor=ctx.redactor)
        return directive
    batches, lanes = planned.output
    item_count = sum(len(batch) for batch in batches)
    # Items may hold secret values (`${[secrets.KEY]}`): the parts' stored inputs never do.
    inputs = [ctx.redacted_output({"items": batch}) for batch in batches]
    parts_json = storable_json(inputs)
    result = transitions.batch_parts_create(
        node_run_id=claimed.id, parts_json=parts_json, lanes=lanes, item_count=item_count
    )
    if result["outcome"] != "started":
        return None  # a redelivered start: the parts exist already (or the node ended)
    parts = result["parts"]
    if not parts:
        return join(claimed.id)
    # Each part's task may carry its stored input and the document, and run before its claim.
    contexts = ahead.part_contexts(
        claimed.execution,
        claimed.run,
        parts_json,
        {"batch_count": len(parts), "item_count": item_count, "lanes": lanes},
        context_bytes(node, parts=True),
    )
    _launch_chord(claimed.id, parts, lanes, node, contexts, execution_id=claimed.execution["id"])
    if node.timeout:
        dispatch.send_now(dispatch.BATCH_DEADLINE, claimed.id, countdown=node.timeout, queue=node.queue)
    return None


def _launch_chord(
    parent_id: int,
    parts: list[list[Any]],
    lanes: int,
    node: NodeSpec,
    contexts: list[Any],
    *,
    execution_id: str,
) -> None:
    # argsrepr and kwargsrepr written out, as for node tasks (executions.dispatch): Celery's saferepr of each
    # part's context cost a quarter of the chord's publishing CPU. Monitors see the execution and node as for a
    # node task, and the reaper's backlog scan reads the run id from argsrepr, in this form.
    labels = repr(dispatch.task_labels(execution_id, node.id))
    signatures = [
        current_app.signature(
            dispatch.RUN_BATCH,
            args=[part_id],
            kwargs={CONTEXT: context} if context else {},
            immutable=True,
            queue=node.queue,
            task_id=task_id,
            argsrepr=f"[{int(part_id)}]",
            kwargsrepr=labels,
        )
        for (part_id, task_id), context in zip(parts, contexts, strict=True)
    ]
    header = []
    for lane in range(lanes):
        members = signatures[lane::lanes]
        header.append(chain(*members) if len(members) > 1 else members[0])
    body = current_app.signature(dispatch.JOIN_BATCHES, args=[parent_id], immutable=True, queue=node.queue)
    try:
        chord(group(header), body).apply_async()
    except (
        Exception
    ):  # the parts are queued rows: the reaper sends them lane by lane and joins from PostgreSQL
        logger.warning("could not launch the chord of node run %s", parent_id, exc_info=True)


def run_part(
    part_id: int, *, task_id: str = "", hostname: str = "", context: dict[str, Any] | None = None
) -> RetryLater | None:
    """The body of `flowrunner.run_batch`: claim one part, run the processor script, record the result. With
    the `context` its task carries, the part runs first and its finish claims it (one statement)."""
    if context is not None and task_id:
        run, execution, pending = ahead.claim_parts(
            part_id, context, task_id=task_id, worker=hostname or runs.HOSTNAME
        )
        claimed = runs.Claimed(
            run, execution, parent_input=context["part"]["parent_input"], pending_claim=pending
        )
        node = spec_for_version(claimed.version_id).nodes[run["node_id"]]
        if get_kind(node.type).parts_pure:
            ctx = runs.make_context(claimed, node)
            directive = runs.guarded(claimed, ctx, lambda: _process(claimed, node, ctx))
            if not claimed.unclaimed:
                return directive
    claimed = recovery.claim_or_recover(part_id, task_id=task_id, hostname=hostname)
    if not isinstance(claimed, runs.Claimed):
        return claimed
    node = spec_for_version(claimed.version_id).nodes[claimed.run["node_id"]]
    ctx = runs.make_context(claimed, node)
    return runs.run_claimed(claimed, ctx, lambda: _process(claimed, node, ctx))


def _process(claimed: runs.Claimed, node: NodeSpec, ctx: EngineContext) -> RetryLater | None:
    kind = get_kind(node.type)
    batch_count = (claimed.parent_input or {}).get("batch_count", 1)
    items = (claimed.run["input"] or {}).get("items", [])
    index = claimed.run["batch_index"]
    return runs.finish_work(claimed, ctx, execute(lambda c: kind.process(c, items, index, batch_count), ctx))


def _time_out_unfinished(parent_id: int, execution_id: str) -> None:
    """The deadline passed: the parts still open end as timed out (their tasks revoked)."""
    with transaction.atomic():
        execution = Execution.objects.select_for_update().get(id=execution_id)
        with locked_execution_work(execution):
            unfinished = list(
                NodeRun.objects.filter(parent_id=parent_id).exclude(status__in=TERMINAL_NODE_STATUSES)
            )
            moved = transitions.node_runs_cancel(
                unfinished,
                account_id=execution.account_id,
                status=NodeRunStatus.TIMED_OUT,
                error="batch node deadline passed",
            )
            dispatch.revoke_on_commit([part.task_id for part in moved])


def join(parent_id: int, *, deadline: bool = False) -> RetryLater | None:
    """Join the parts of a batch node (chord callback, reaper or deadline) once they are all finished (or the
    deadline passed). Idempotent: the batch node's finish is a compare-and-swap from running, won once."""
    # The batch node and its execution in one read (its counter included): the join is on every batch's
    # critical path, and each ORM query costs more to build than to run.
    claimed = runs.reload(parent_id)
    if claimed is None or claimed.run["parts_total"] is None:
        return None
    if not deadline and claimed.run["parts_done"] < claimed.run["parts_total"]:
        return None  # an early chord callback or reaper pass: the last part's finish makes it due
    parts = latest_parts(parent_id)
    if deadline and any(part.status not in TERMINAL_NODE_STATUSES for part in parts.values()):
        _time_out_unfinished(parent_id, claimed.execution["id"])
        parts = latest_parts(parent_id)
    node = spec_for_version(claimed.version_id).nodes[claimed.run["node_id"]]
    outcome = _join_outcome(node, parts, deadline=deadline)
    redactor = runs.redactor_for(claimed.execution["account_id"])
    # Parts are stored masked already; the joined output is checked again as it joins the document.
    outcome.output = redactor.data(outcome.output)
    directive, _ = runs.finish(claimed, outcome, redactor=redactor)
    return directive


def _join_outcome(node: NodeSpec, parts: dict[int, NodeRun], *, deadline: bool) -> Outcome:
    kind = get_kind(node.type)
    outputs = [(i, p.output) for i, p in sorted(parts.items()) if p.status == NodeRunStatus.SUCCEEDED]
    failed = [i for i, p in sorted(parts.items()) if p.status != NodeRunStatus.SUCCEEDED]
    failed_items = sum(len((parts[i].input or {}).get("items", [])) for i in failed)
    output = kind.join_batches(outputs, failed, failed_items, len(parts))
    if deadline:
        return Outcome(
            ok=False,
            output=output,
            error=f"batch node '{node.id}' passed its deadline of "
            f"{node.timeout:g}s with {len(failed)} batch(es) unfinished or failed",
            error_type="timeout",
            retryable=False,
            timed_out=True,
            action="timeout",
        )
    if outputs or not parts:
        return Outcome(ok=True, output=output, action="success")
    errors = "; ".join(sorted({p.error for p in parts.values() if p.error}))[:500]
    return Outcome(
        ok=False,
        output=output,
        error=f"all {len(parts)} batches failed: {errors}",
        error_type="batch_failed",
        retryable=False,
    )
