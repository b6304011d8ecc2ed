"""Unit tests of the engine's pure rules: merging outputs, edge fallback, retry delays, progress."""

from __future__ import annotations

import pytest

from flows.dsl.spec import NodeSpec, RetryPolicy
from flows.services import flow_create
from workers.runs import merge_output
from workers.specs import longest_path, progress_percent


def test_merge_output_object_merges_at_top_level_later_wins():
    # Given a document and an object output overlapping one key
    document = {"a": 1, "b": 2}
    # When merged
    merged = merge_output(document, {"b": 3, "c": 4})
    # Then keys merge at the top level and the output wins
    assert merged == {"a": 1, "b": 3, "c": 4}


@pytest.mark.parametrize("value", [7, "text", [1, 2], True])
def test_merge_output_non_object_goes_under_result(value):
    assert merge_output({"a": 1}, value) == {"a": 1, "result": value}


def test_merge_output_nothing_returned_changes_nothing():
    assert merge_output({"a": 1}, None) == {"a": 1}


def test_node_edge_falls_back_to_default_only_when_action_missing():
    node = NodeSpec(id="n", type="transform", next={"success": "s", "default": "d"})
    assert node.edge("success") == "s"
    assert node.edge("custom") == "d"
    assert NodeSpec(id="n", type="transform", next={"success": "s"}).edge("custom") is None


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [("constant", [0.2, 0.2, 0.2]), ("linear", [0.2, 0.4, 0.6]), ("exponential", [0.2, 0.4, 0.8])],
)
def test_retry_delay_follows_backoff(backoff, expected):
    policy = RetryPolicy(max_retries=3, wait=0.2, backoff=backoff)
    assert [round(policy.delay(k), 6) for k in (1, 2, 3)] == expected


def test_retry_delay_is_capped_by_max_wait_and_jitter_never_shortens():
    capped = RetryPolicy(max_retries=10, wait=1, backoff="exponential", max_wait=5)
    assert capped.delay(10) == 5
    jittery = RetryPolicy(max_retries=3, wait=1, backoff="constant", jitter=True)
    assert all(jittery.delay(1) >= 1 for _ in range(200))


def test_progress_percent_stays_below_100_while_running_and_rises_with_done():
    values = [progress_percent(done, 5 - done) for done in range(5)]
    assert values == sorted(values)
    assert values[0] == 0 and all(v < 100 for v in values)


BRANCHY = """
metadata: {name: branchy}
nodes:
  start: {type: transform, params: {script: "return 1"}, next: {success: check}}
  check:
    type: condition
    params: {script: "return true"}
    next: {"true": long1, "false": done}
  long1: {type: transform, params: {script: "return 1"}, next: {success: long2}}
  long2: {type: transform, params: {script: "return 1"}, next: {success: done, error: check}}
  done: {type: transform, params: {script: "return 1"}}
"""


@pytest.mark.django_db
def test_longest_path_counts_the_longest_remaining_route_and_survives_loops(member):
    # Given a flow with a short and a long branch and a loop back (long2 -error-> check)
    account, user = member
    flow = flow_create(account=account, user=user, content=BRANCHY)
    version_id = flow.current_version_id
    # Then the remaining steps are counted on the longest simple path, loops not followed twice
    assert longest_path(version_id, "start") == 5
    assert longest_path(version_id, "check") == 4
    assert longest_path(version_id, "long2") == 3  # long2 → check → done
    assert longest_path(version_id, "done") == 1
