"""No fault: a batch node that outlasts STALE_AFTER is waiting its turn, not lost; the reaper leaves it alone."""

from __future__ import annotations

import math

import pytest

from tests.faults.steps import (
    BATCH_FLOW,
    BATCH_MS,
    STALE_AFTER,
    batch_input,
    check_batch_result,
    log_mark,
    max_batch_overlap,
    reaper_actions,
)
from tests.integration.api_steps import create_flow, start_run, wait_for

pytestmark = pytest.mark.faults


def test_batch_lanes_longer_than_stale_after_keep_max_parallel_and_are_not_resent(stack, live_api, live_db):
    # Given a batch node whose 2 lanes each take ~STALE_AFTER + 3 s (batches of BATCH_MS, one after another)
    per_lane = math.ceil((STALE_AFTER + 3) * 1000 / BATCH_MS)
    given = batch_input(0, items=2 * per_lane)
    # and room for more: a second worker with 4 processes (so only max_parallel holds the batches back)
    stack.start_worker("wide", concurrency=4)
    mark = log_mark(stack)
    try:
        execution_id = start_run(live_api, create_flow(live_api, BATCH_FLOW), given)
        # When it runs to the end with nothing broken
        status = wait_for(live_api, execution_id, timeout=2 * per_lane * BATCH_MS / 1000 + 60)
    finally:
        stack.stop_worker("wide")
    # Then every item was processed once, never more than 2 batches at a time, and nothing was re-sent
    assert status["status"] == "completed", status
    check_batch_result(status, given["numbers"])
    assert max_batch_overlap(execution_id) == 2
    actions = reaper_actions(stack, mark)
    assert actions["resent"] == 0 and actions["recovered"] == 0, actions
