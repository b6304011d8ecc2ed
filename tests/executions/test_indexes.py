"""The executions' indexes: the partial ones serve the lookups they exist for (the planner must be able to prove
that a query's conditions imply the index's), and dropping the single-column ones left no lookup without one."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from executions.models import Execution, ExecutionEvent, NodeRun, NodeRunStatus
from executions.selectors import execution_list
from workers import reaper

pytestmark = pytest.mark.django_db


@pytest.fixture
def index_only():
    """Plans as for a large table: with sequential scans priced out, a lookup an index can serve uses it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")


def _plan(queryset) -> str:  # noqa: ANN001
    return queryset.explain()


@pytest.mark.parametrize(
    ("status", "condition"),
    [
        (NodeRunStatus.QUEUED, "queued_at__lt"),
        (NodeRunStatus.RETRYING, "not_before__lt"),
        (NodeRunStatus.RUNNING, "heartbeat_at__lt"),
    ],
)
def test_indexes_the_reaper_finds_open_runs_through_the_open_runs_index(index_only, status, condition):
    # given the reaper's lookup of stale runs in one open status
    lookup = reaper._waiting(status=status, **{condition: timezone.now()}).order_by("queued_at")[:100]
    # when it is planned
    plan = _plan(lookup)
    # then the partial index of open runs serves it (finished runs are never written to it)
    assert "noderun_open" in plan, plan


def test_indexes_a_batch_nodes_parts_are_found_through_the_parts_index(index_only):
    # given the lookups of a batch node's parts (its lanes, its unfinished parts)
    lookups = [
        NodeRun.objects.filter(parent_id=1).order_by("batch_index"),
        NodeRun.objects.filter(parent_id=1).exclude(status__in=["succeeded", "failed"]),
    ]
    # when they are planned, then the partial index of parts serves them (runs of no batch are never in it)
    for lookup in lookups:
        plan = _plan(lookup)
        assert "noderun_part" in plan, plan


def test_indexes_lookups_by_execution_and_account_keep_an_index(index_only, member):
    # given the lookups that lost their single-column index: an execution's runs and events, an account's
    # executions, a flow's executions (its deletion)
    account, _ = member
    some_id = "00000000-0000-0000-0000-000000000000"
    lookups = {
        "runs": NodeRun.objects.filter(execution_id=some_id),
        "events": ExecutionEvent.objects.filter(execution_id=some_id, seq__gt=3).order_by("seq"),
        "account": execution_list(account=account),
        "flow": Execution.objects.filter(flow_id="some-flow"),
    }
    # when they are planned, then each one still reads an index
    for name, lookup in lookups.items():
        plan = _plan(lookup)
        assert "Index" in plan and "Seq Scan" not in plan, (name, plan)
