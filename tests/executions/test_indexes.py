"""The executions' indexes: partial ones serve their lookups, and no lookup lost its index with the dropped ones."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from executions.models import Execution, ExecutionEvent, NodeRun
from executions.selectors import execution_list
from workers import reaper

pytestmark = pytest.mark.django_db

SOME_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def index_only():
    """Plans as for a large table: with sequential scans priced out, a lookup an index can serve uses it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")


@pytest.mark.parametrize(
    "lookup",
    [
        lambda now: reaper._stale_queued(now),
        lambda now: reaper._overdue_retries(now),
        lambda now: reaper._silent_running(now),
        lambda now: reaper._finished_batches(),
    ],
    ids=["stale queued", "overdue retries", "silent running", "finished batches"],
)
def test_indexes_the_reapers_lookups_read_the_open_runs_index(index_only, lookup):
    # given one of the reaper's lookups of open runs (the planner must prove that its conditions imply the
    # partial index's `status IN (queued, retrying, running)`)
    queryset = lookup(timezone.now())
    # when it is planned
    plan = queryset.explain()
    # then the partial index of open runs serves it (finished runs are never written to it)
    assert "noderun_open" in plan, plan


def test_indexes_a_batch_nodes_parts_are_found_through_the_parts_index(index_only):
    # given the lookups of a batch node's parts (its lanes, its unfinished parts)
    lookups = [
        NodeRun.objects.filter(parent_id=1).order_by("batch_index"),
        NodeRun.objects.filter(parent_id=1).exclude(status__in=["succeeded", "failed"]),
    ]
    # when they are planned
    plans = [lookup.explain() for lookup in lookups]
    # then the partial index of parts serves them (runs of no batch are never in it)
    assert all("noderun_part" in plan for plan in plans), plans


def test_indexes_lookups_that_lost_their_single_column_index_still_search_an_index(index_only, member):
    # given the lookups whose column's own index was dropped: an execution's runs and events, an account's
    # executions, a flow's executions (its deletion)
    account, _ = member
    lookups = {
        "execution_id": NodeRun.objects.filter(execution_id=SOME_ID),
        "execution_id ": ExecutionEvent.objects.filter(execution_id=SOME_ID, seq__gt=3).order_by("seq"),
        "account_id": execution_list(account=account),
        "flow_id": Execution.objects.filter(flow_id="some-flow"),
    }
    # when they are planned
    plans = {column: lookup.explain() for column, lookup in lookups.items()}
    # then each searches an index by its column (not a scan of another index filtered row by row)
    for column, plan in plans.items():
        condition = next((line for line in plan.splitlines() if "Index Cond" in line), "")
        assert column.strip() in condition, (column, plan)


def test_indexes_the_dropped_single_column_indexes_are_gone():
    # given the indexes of the executions' tables
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename LIKE 'executions\\_%'")
        names = {row[0] for row in cursor.fetchall()}
    # then the partial and flow indexes exist, and none of the single-column ones (dropped by name, IF EXISTS)
    assert {"noderun_open", "noderun_part", "execution_flow"} <= names
    assert (
        not {
            "executions_execution_account_id_7882fd18",
            "executions_execution_flow_id_a9ca7773",
            "executions_execution_flow_id_a9ca7773_like",
            "executions_executionevent_execution_id_5a623c7d",
            "executions_noderun_execution_id_5ac7429c",
        }
        & names
    )
