"""Concurrency bounds with real daphne and workers: a flow's runs never overlap beyond its bound, all complete,
and a slot freed by a cancel or a failure starts the next waiting run."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Max, Min

from executions.models import NodeRun
from tests.integration.api_steps import create_flow, start_run, wait_for

TWO_AT_A_TIME = """
metadata: {name: two at a time, concurrency: 2}
nodes:
  first: {type: transform, params: {script: "return {started: true}"}, next: {success: pause}}
  pause: {type: delay, params: {duration: 300ms}, next: {success: last}}
  last: {type: transform, params: {script: "return {done: input.n}"}}
"""


def _max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    # An end at the same instant as a start sorts first (-1 < 1): touching spans do not overlap.
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def test_admission_twenty_runs_of_a_flow_with_concurrency_two_never_overlap_more_than_two(live_api, live_db):
    # given a flow with concurrency 2 whose runs take a few hundred milliseconds
    flow_id = create_flow(live_api, TWO_AT_A_TIME)
    # when it is run 20 times at once
    ids = [start_run(live_api, flow_id, {"n": n}) for n in range(20)]
    # then every run completes
    statuses = [wait_for(live_api, execution_id, timeout=120) for execution_id in ids]
    assert [status["status"] for status in statuses] == ["completed"] * 20, statuses
    assert sorted(status["results"]["done"] for status in statuses) == list(range(20))
    # and, by their node runs' timestamps in PostgreSQL, never more than 2 ran at once — and 2 did
    spans = list(
        NodeRun.objects.filter(execution_id__in=ids)
        .values("execution_id")
        .annotate(start=Min("started_at"), end=Max("finished_at"))
        .values_list("start", "end")
    )
    assert len(spans) == 20
    assert _max_overlap(spans) == 2
    # and they were admitted in the order they were requested (FIFO per flow): a run's first node run is
    # created when it is admitted, so node-run ids follow admissions
    admitted = dict(
        NodeRun.objects.filter(execution_id__in=ids, node_id="first").values_list("execution_id", "id")
    )
    assert sorted(ids, key=lambda execution_id: admitted[uuid.UUID(execution_id)]) == ids


ONE_AT_A_TIME = """
metadata: {name: one at a time, concurrency: 1}
nodes:
  route:
    type: condition
    params: {script: "return input.mode"}
    next: {hold: pause, fail: broken, quick: done}
  pause: {type: wait, params: {duration: 60s}, next: {success: done}}
  broken: {type: transform, params: {script: "throw new Error('broken on purpose')"}}
  done: {type: transform, params: {script: "return {done: true}"}}
"""


def test_admission_a_canceled_run_frees_its_slot(live_api):
    # given a flow run one at a time: a run holding the slot for a minute, and one waiting for it
    flow_id = create_flow(live_api, ONE_AT_A_TIME)
    holder = start_run(live_api, flow_id, {"mode": "hold"})
    wait_for(live_api, holder, statuses={"running"})
    waiting = start_run(live_api, flow_id, {"mode": "quick"})
    status = live_api.get(f"/executions/{waiting}").json()
    assert (status["status"], status["waiting_reason"]) == ("queued", "flow_concurrency")
    # when the holder is canceled
    assert live_api.post(f"/executions/{holder}/cancel").status_code == 202
    # then the waiting run starts and completes
    assert wait_for(live_api, waiting, timeout=30)["status"] == "completed"


def test_admission_a_failed_run_frees_its_slot(live_api):
    # given a run that fails, and one waiting behind it
    flow_id = create_flow(live_api, ONE_AT_A_TIME)
    holder = start_run(live_api, flow_id, {"mode": "hold"})
    failing = start_run(live_api, flow_id, {"mode": "fail"})
    after = start_run(live_api, flow_id, {"mode": "quick"})
    assert live_api.get(f"/executions/{after}").json()["waiting_reason"] == "flow_concurrency"
    # when the slot holder is canceled, the failing one runs and fails
    assert live_api.post(f"/executions/{holder}/cancel").status_code == 202
    assert wait_for(live_api, failing, timeout=30)["status"] == "failed"
    # then the one behind it starts and completes
    assert wait_for(live_api, after, timeout=30)["status"] == "completed"
