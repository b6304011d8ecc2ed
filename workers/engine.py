"""The graph engine's entry points: run a claimed node (or start a batch node's parts) and resume a wait."""

from __future__ import annotations

from flows.nodes.registry import get_kind
from workers import batches, recovery, runs
from workers.outcomes import Outcome, RetryLater, execute
from workers.specs import spec_for_version
from workers.timelimit import work_time_limit

# Kinds whose `timeout` is not a bound on their own work: a wait's is its length, a batch node's a deadline.
UNTIMED_KINDS = ("wait", "delay")

__all__ = ["RetryLater", "resume_node", "run_node"]


def run_node(node_run_id: int, *, task_id: str = "", hostname: str = "") -> RetryLater | None:
    """The body of the `flowrunner.run_node` task: claim, run the kind, finish; one statement each side."""
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


def resume_node(node_run_id: int) -> None:
    """A wait/delay node's countdown has passed: finish it with the output it stored (only a paused wait is
    resumed; the finish refuses a run that is not one)."""
    claimed = runs.reload(node_run_id)
    if claimed is None:
        return
    outcome = Outcome(ok=True, output=claimed.run.get("output"))
    runs.finish(claimed, outcome, redactor=runs.redactor_for(claimed.execution["account_id"]), resuming=True)
