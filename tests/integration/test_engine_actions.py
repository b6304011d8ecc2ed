"""Action rules end to end: real Celery workers carry flows through the graph (PostgreSQL + Redis)."""

from __future__ import annotations

import pytest

from tests.integration.api_steps import node_runs, path_taken, run_to_end

BRANCHING = """
metadata: {name: branching}
nodes:
  check:
    type: condition
    params:
      script: "return input.value > 10"
    next: {"true": big, "false": small}
  big:
    type: transform
    params: {script: "return {size: 'big'}"}
  small:
    type: transform
    params: {script: "return {size: 'small'}"}
"""


@pytest.mark.parametrize(("value", "branch"), [(42, "big"), (3, "small")])
def test_condition_boolean_chooses_the_true_or_false_edge(live_api, value, branch):
    # Given a condition returning a boolean; When it runs on each side of the threshold
    execution_id, status = run_to_end(live_api, BRANCHING, {"value": value})
    # Then the matching edge is taken and the document shows it
    assert status["status"] == "completed", status
    assert status["results"]["size"] == branch
    assert path_taken(live_api, execution_id) == ["check", branch]
    assert status["progress"] == 100


OBJECT_ROUTING = """
metadata: {name: object routing}
nodes:
  route:
    type: condition
    params:
      script: "return {...input, branch_decision: input.category}"
    next: {high: high, low: low, default: fallback}
  high: {type: transform, params: {script: "return {handled_by: 'high'}"}}
  low: {type: transform, params: {script: "return {handled_by: 'low'}"}}
  fallback: {type: transform, params: {script: "return {handled_by: 'fallback'}"}}
"""


@pytest.mark.parametrize(("category", "handler"), [("high", "high"), ("low", "low"), ("other", "fallback")])
def test_condition_object_routes_by_the_string_value_naming_an_edge(live_api, category, handler):
    # Given a condition returning an object whose one string value names an edge (or none does)
    _, status = run_to_end(live_api, OBJECT_ROUTING, {"category": category})
    # Then that edge is followed, else `default`; the object is merged into the document
    assert status["status"] == "completed", status
    assert status["results"]["handled_by"] == handler
    assert status["results"]["branch_decision"] == category


CONDITIONS_LIST = """
metadata: {name: conditions list}
nodes:
  grade:
    type: condition
    params:
      conditions:
        - {condition: "input.score >= 90", action: excellent}
        - {condition: "input.score >= 50", action: pass}
      default_action: fail
    next: {excellent: a, pass: b, fail: c}
  a: {type: transform, params: {script: "return {grade: 'A'}"}}
  b: {type: transform, params: {script: "return {grade: 'B'}"}}
  c: {type: transform, params: {script: "return {grade: 'F'}"}}
"""


@pytest.mark.parametrize(("score", "grade"), [(95, "A"), (60, "B"), (10, "F")])
def test_condition_list_form_uses_first_true_condition_else_default_action(live_api, score, grade):
    _, status = run_to_end(live_api, CONDITIONS_LIST, {"score": score})
    assert status["status"] == "completed", status
    assert status["results"]["grade"] == grade


CUSTOM_ACTION_AND_DEFAULT = """
metadata: {name: custom action}
nodes:
  pick:
    type: condition
    params: {script: "return 'unexpected_action'"}
    next: {expected: never, default: otherwise}
  never: {type: transform, params: {script: "return {went: 'never'}"}}
  otherwise: {type: transform, params: {script: "return {went: 'otherwise'}"}}
"""


def test_unmatched_action_falls_back_to_default_edge(live_api):
    _, status = run_to_end(live_api, CUSTOM_ACTION_AND_DEFAULT)
    assert status["status"] == "completed", status
    assert status["results"]["went"] == "otherwise"


NON_OBJECT_RESULT = """
metadata: {name: scalar result}
nodes:
  one: {type: transform, params: {script: "return 7"}, next: {success: two}}
  two: {type: transform, params: {script: "return {seen: input.result, previous: results.one}"}}
"""


def test_scalar_output_is_stored_under_result_and_results_global_holds_outputs(live_api):
    _, status = run_to_end(live_api, NON_OBJECT_RESULT)
    assert status["status"] == "completed", status
    assert status["results"]["result"] == 7
    assert status["results"]["seen"] == 7
    assert status["results"]["previous"] == 7


FAILING_WITHOUT_EDGE = """
metadata: {name: fails}
nodes:
  boom:
    type: transform
    params:
      script: |
        const x = 1;
        throw new Error("kaboom " + x);
"""


def test_failure_without_error_edge_fails_the_execution_with_the_script_line(live_api):
    execution_id, status = run_to_end(live_api, FAILING_WITHOUT_EDGE)
    assert status["status"] == "failed"
    assert "kaboom 1" in status["error"]
    assert "line 2" in status["error"]
    assert status["progress"] == 100
    runs = node_runs(live_api, execution_id)
    assert [r["status"] for r in runs] == ["failed"]


LOOP = """
metadata: {name: loop, start: tick}
nodes:
  tick:
    type: transform
    params: {script: "return {n: (input.n || 0) + 1}"}
    next: {success: tick}
"""


def test_runaway_loop_is_stopped_by_the_step_limit(live_api):
    # Given a node that loops to itself forever (the stack's step limit is small)
    _, status = run_to_end(live_api, LOOP, timeout=120)
    # Then the execution fails with the step-limit message instead of running forever
    assert status["status"] == "failed"
    assert "step limit" in status["error"]
