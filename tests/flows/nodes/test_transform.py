"""The transform kind: params.script validation and running the script over the document."""

import pytest

from flows.nodes.base import NodeError, PermanentNodeError
from flows.nodes.transform import TransformKind


def test_transform_validate_accepts_a_script(param_problems):
    # given a script (and the tolerated timeout) / when validated / then no problem
    assert param_problems("transform", {"script": "return input;", "timeout": "5s"}) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("script", "missing required parameter 'script'")]),
        ({"script": 42}, [("script", "'script' must be a string, got a number")]),
        ({"script": "  "}, [("script", "'script' must not be empty")]),
        (
            {"script": "return 1", "scrpt": "x"},
            [("scrpt", "unknown parameter 'scrpt' (expected one of: script)")],
        ),
    ],
)
def test_transform_validate_reports_precise_problems(param_problems, params, expected):
    # given bad params / when validated / then each problem names the param
    assert param_problems("transform", params) == expected


def test_transform_run_returns_the_script_value_as_output(ctx_for):
    # given a script building an object from the document
    ctx = ctx_for(
        "transform", {"script": "return {total: input.a + input.b, seen: shared.a};"}, {"a": 2, "b": 3}
    )
    # when run
    result = TransformKind().run(ctx)
    # then the object is the output and the action is success
    assert (result.output, result.action, result.defer_seconds) == ({"total": 5, "seen": 2}, "success", None)


def test_transform_run_sees_secrets_and_results(ctx_for):
    # given a script reading a secret and another node's output
    ctx = ctx_for(
        "transform",
        {"script": "return secrets.KEY + ':' + results.prev.n;"},
        results={"prev": {"n": 7}},
        secrets={"KEY": "k"},
    )
    # when run / then a plain value comes back as output
    assert TransformKind().run(ctx).output == "k:7"


def test_transform_run_does_not_render_the_script(ctx_for):
    # given a script using a JS template literal, which looks like a `${...}` expression
    ctx = ctx_for("transform", {"script": "const who = 'world'; return `hello ${who}`;"})
    # when run / then JavaScript, not the templater, evaluates it
    assert TransformKind().run(ctx).output == "hello world"


def test_transform_run_lets_script_errors_through(ctx_for):
    # given a script that throws / when run / then the error is a (retryable) NodeError
    ctx = ctx_for("transform", {"script": "throw new Error('boom');"})
    with pytest.raises(NodeError, match="boom") as caught:
        TransformKind().run(ctx)
    assert caught.value.retryable


def test_transform_run_refuses_a_node_without_script(ctx_for):
    # given a node that bypassed validation / when run / then it fails permanently
    with pytest.raises(PermanentNodeError):
        TransformKind().run(ctx_for("transform", {}))
