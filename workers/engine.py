"""The graph engine's entry points: run a claimed node (or start a batch node's parts) and resume a wait."""

from __future__ import annotations

from typing import Any

from flows.nodes.registry import get_kind
from workers import ahead, batches, recovery, runs
from workers.outcomes import Outcome, RetryLater, execute
from workers.specs import spec_for_version
from workers.timelimit import work_time_limit

# Kinds whose `timeout` is not a bound on their own work: a wait's is its length, a batch node's a deadline.
UNTIMED_KINDS = ("wait", "delay")

__all__ = ["RetryLater", "resume_node", "run_node"]


def run_node(
    node_run_id: int, *, task_id: str = "", hostname: str = "", context: dict[str, Any] | None = None
) -> RetryLater | None:
    """The body of the `flowrunner.run_node` task: claim, run the kind, finish; one statement each side. With
    the `context` a pure node's task carries, it runs first and its finish claims it: one statement in all."""
    if context is not None and task_id:
        ran, directive = _run_ahead(node_run_id, context, task_id=task_id, hostname=hostname)
        if ran:
            return directive
    claimed = recovery.claim_or_recover(node_run_id, task_id=task_id, hostname=hostname)
    if not isinstance(claimed, runs.Claimed):
        return claimed
    spec = spec_for_version(claimed.version_id)
    node = spec.nodes[claimed.run["node_id"]]
    kind = get_kind(node.type)
    ctx = runs.make_context(claimed, node)

    def work() -> RetryLater | None:
        if kind.is_batch:
            return batches.start(claimed, node, kind, ctx)
        limit = None if node.type in UNTIMED_KINDS else node.timeout
        with work_time_limit(limit):
            outcome = execute(kind.run, ctx)
        return runs.finish_work(claimed, ctx, outcome)

    return runs.run_claimed(claimed, ctx, work)


def _run_ahead(
    node_run_id: int, context: dict[str, Any], *, task_id: str, hostname: str
) -> tuple[bool, RetryLater | None]:
    """Run a pure node before claiming it; (False, None) when its finish found the run not this task's to claim
    (nothing was written: the caller claims it as usual, and runs it again if the claim says so)."""
    run, execution, pending = ahead.claim_parts(
        node_run_id, context, task_id=task_id, worker=hostname or runs.HOSTNAME
    )
    claimed = runs.Claimed(run, execution, pending_claim=pending)
    node = spec_for_version(claimed.version_id).nodes[run["node_id"]]
    kind = get_kind(node.type)
    if not kind.pure:
        return False, None
    ctx = runs.make_context(claimed, node)

    def work() -> RetryLater | None:
        with work_time_limit(node.timeout):
            outcome = execute(kind.run, ctx)
        return runs.finish_work(claimed, ctx, outcome)

    directive = runs.guarded(claimed, ctx, work)
    return not claimed.unclaimed, directive


def resume_node(node_run_id: int) -> None:
    """A wait/delay node's countdown has passed: finish it with the output it stored (only a paused wait is
    resumed; the finish refuses a run that is not one)."""
    claimed = runs.reload(node_run_id)
    if claimed is None:
        return
    outcome = Outcome(ok=True, output=claimed.run.get("output"))
    runs.finish(claimed, outcome, redactor=runs.redactor_for(claimed.execution["account_id"]), resuming=True)
