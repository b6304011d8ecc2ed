"""The condition kind: its params and the action rules of the flow language (README)."""

import pytest

from flows.nodes.base import NodeError
from flows.nodes.condition import ConditionKind, choose_action

EDGES = {"high": "h", "medium": "m", "low": "l", "default": "d"}


@pytest.mark.parametrize(
    ("value", "action"),
    [
        ("high", "high"),
        ("anything", "anything"),
        (True, "true"),
        (False, "false"),
        ({"action": "medium", "branch": "low"}, "medium"),
        ({"branch": "low", "category": "high"}, "low"),
        ({"category": "high", "branch_decision": "high", "note": "hello"}, "high"),
        ({"a": "high", "b": "low"}, "success"),
        ({"a": "nothing", "n": 3}, "success"),
        ({}, "success"),
        (None, "success"),
        (42, "success"),
        ([1, 2], "success"),
        ("", "success"),
    ],
)
def test_condition_choose_action_follows_the_design_rules(value, action):
    # given a script's return value and a node whose edges are high/medium/low/default
    # when the action is chosen / then string → itself, bool → "true"/"false", object → action, branch,
    # else its one distinct value naming an edge, else success
    assert choose_action(value, EDGES) == action


def test_condition_run_merges_the_object_and_picks_the_edge_it_names(ctx_for):
    # given the Go original's evaluate_category script and its edges
    script = "const category = input.category; return {...input, branch_decision: category};"
    ctx = ctx_for("condition", {"condition_script": script}, {"category": "medium", "x": 1}, next=EDGES)
    # when run
    result = ConditionKind().run(ctx)
    # then the object is the output (merged by the engine) and `medium` is followed
    assert result.action == "medium"
    assert result.output == {"category": "medium", "x": 1, "branch_decision": "medium"}


def test_condition_run_accepts_script_as_well_as_condition_script(ctx_for):
    # given the house spelling `script` returning a boolean / when run / then "true" / "false"
    assert (
        ConditionKind().run(ctx_for("condition", {"script": "return input.n > 1;"}, {"n": 2})).action
        == "true"
    )
    assert (
        ConditionKind().run(ctx_for("condition", {"script": "return input.n > 1;"}, {"n": 0})).action
        == "false"
    )


def test_condition_run_uses_the_branch_field(ctx_for):
    # given the Go complex flow's branching script / when run / then `branch` decides
    script = "return {branch: input.rate > 0.8 ? 'high_success' : 'low_success', ...input};"
    ctx = ctx_for("condition", {"condition_script": script}, {"rate": 0.9})
    assert ConditionKind().run(ctx).action == "high_success"


def test_condition_run_evaluates_conditions_in_order(ctx_for):
    # given the docs form: expressions, a body with return, a `${}` expression and a default
    params = {
        "conditions": [
            {"condition": "input.status == 'success'", "action": "ok"},
            {"condition": "if (input.status == 'error') { return true; } return false;", "action": "bad"},
            {"condition": "${input.status === 'pending'}", "action": "wait"},
            {"condition": "true", "action": "never_first"},
        ],
        "default_action": "unknown",
    }
    # when run for several documents / then the first truthy condition gives the action
    for status, action in (
        ("success", "ok"),
        ("error", "bad"),
        ("pending", "wait"),
        ("other", "never_first"),
    ):
        result = ConditionKind().run(ctx_for("condition", params, {"status": status}))
        assert (result.action, result.output) == (action, None)


def test_condition_run_falls_back_to_default_action_then_success(ctx_for):
    # given conditions that are all false
    conditions = [{"condition": "input.n > 10", "action": "big"}]
    # when run with and without default_action / then default_action, else success
    with_default = ctx_for("condition", {"conditions": conditions, "default_action": "small"}, {"n": 1})
    assert ConditionKind().run(with_default).action == "small"
    assert ConditionKind().run(ctx_for("condition", {"conditions": conditions}, {"n": 1})).action == "success"


def test_condition_run_lets_script_errors_through(ctx_for):
    # given a script that throws / when run / then NodeError
    with pytest.raises(NodeError, match="nope"):
        ConditionKind().run(ctx_for("condition", {"script": "throw new Error('nope');"}))


def test_condition_validate_accepts_each_form(param_problems):
    # given each accepted form / when validated / then no problem
    assert param_problems("condition", {"condition_script": "return 'a';"}) == []
    assert param_problems("condition", {"script": "return true;", "timeout": "1s"}) == []
    conditions = [{"condition": "input.a", "action": "a"}, {"condition": True, "action": "b"}]
    assert param_problems("condition", {"conditions": conditions, "default_action": "c"}) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("", "a condition needs 'condition_script' (or 'script') or 'conditions'")]),
        ({"script": 1}, [("script", "'script' must be a string, got a number")]),
        (
            {"script": "a", "condition_script": "b"},
            [("script", "give either 'condition_script' or 'script', not both")],
        ),
        (
            {"script": "a", "conditions": [{"condition": "x", "action": "y"}]},
            [("conditions", "give either 'script' or 'conditions', not both")],
        ),
        ({"conditions": []}, [("conditions", "'conditions' must be a non-empty list, got a list")]),
        ({"conditions": "x"}, [("conditions", "'conditions' must be a non-empty list, got a string")]),
        (
            {"conditions": ["x"]},
            [
                (
                    "conditions[0]",
                    "each condition must be a mapping with 'condition' and 'action', got a string",
                )
            ],
        ),
        ({"conditions": [{"action": "a"}]}, [("conditions[0]", "missing 'condition'")]),
        ({"conditions": [{"condition": "x"}]}, [("conditions[0]", "missing 'action'")]),
        (
            {"conditions": [{"condition": "x", "action": 3}]},
            [("conditions[0].action", "'action' must be a non-empty string, got a number")],
        ),
        (
            {"conditions": [{"condition": "x", "action": "a", "when": 1}]},
            [("conditions[0].when", "unknown key 'when' (expected condition, action)")],
        ),
        (
            {"script": "a", "default_action": "b"},
            [("default_action", "'default_action' applies only with 'conditions'")],
        ),
        (
            {"script": "a", "cases": []},
            [
                (
                    "cases",
                    "unknown parameter 'cases' (expected one of: condition_script, "
                    "conditions, default_action, script)",
                )
            ],
        ),
    ],
)
def test_condition_validate_reports_precise_problems(param_problems, params, expected):
    # given bad params / when validated / then each problem has its path and message
    assert param_problems("condition", params) == expected
