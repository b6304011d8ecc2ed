"""The log kind: a rendered message (and data) becomes one execution log event."""

import pytest

from flows.nodes.base import PermanentNodeError
from flows.nodes.log import LogKind


def test_log_run_writes_the_rendered_message_and_data(ctx_for):
    # given a templated message, a level and data
    params = {
        "message": "order ${input.id} has ${input.items.length} items",
        "level": "warning",
        "data": {"id": "${input.id}", "fixed": 1},
    }
    ctx = ctx_for("log", params, {"id": 7, "items": [1, 2]})
    # when run
    result = LogKind().run(ctx)
    # then one event is logged with the rendered text and typed data, and the document is untouched
    assert ctx.logs == [("warning", "order 7 has 2 items", {"id": 7, "fixed": 1})]
    assert (result.output, result.action) == (None, "success")


def test_log_run_defaults_to_info_and_accepts_warn(ctx_for):
    # given no level, then `warn` / when run / then info, then warning
    ctx = ctx_for("log", {"message": "plain"})
    LogKind().run(ctx)
    warn = ctx_for("log", {"message": "careful", "level": "WARN"})
    LogKind().run(warn)
    assert ctx.logs == [("info", "plain", None)] and warn.logs[0][0] == "warning"


def test_log_run_writes_an_object_message_as_json(ctx_for):
    # given a message that is exactly one expression yielding an object / when run / then it is logged as JSON
    ctx = ctx_for("log", {"message": "${input.user}"}, {"user": {"name": "ann"}})
    LogKind().run(ctx)
    assert ctx.logs[0][1] == '{"name": "ann"}'


def test_log_run_refuses_a_bad_rendered_level(ctx_for):
    # given a level that renders to something unknown / when run / then a permanent error
    with pytest.raises(PermanentNodeError, match="level"):
        LogKind().run(ctx_for("log", {"message": "m", "level": "${input.l}"}, {"l": "loud"}))


def test_log_validate_accepts_full_params(param_problems):
    # given every param / when validated / then no problem
    assert param_problems("log", {"message": "hi ${input.x}", "level": "debug", "data": [1]}) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("message", "missing required parameter 'message'")]),
        ({"message": ["a"]}, [("message", "'message' must be text")]),
        (
            {"message": "m", "level": "loud"},
            [("level", "'level' must be one of debug, info, warning, error, got 'loud'")],
        ),
        (
            {"message": "m", "fields": {}},
            [("fields", "unknown parameter 'fields' (expected one of: data, level, message)")],
        ),
    ],
)
def test_log_validate_reports_precise_problems(param_problems, params, expected):
    # given bad params / when validated / then each problem has its path and message
    assert param_problems("log", params) == expected
