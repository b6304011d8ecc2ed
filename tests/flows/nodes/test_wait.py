"""The wait/delay kinds: a duration becomes a countdown for the engine, never a sleep in the worker."""

import time

import pytest

from flows.nodes.base import PermanentNodeError
from flows.nodes.registry import get_kind
from flows.nodes.wait import WaitKind


@pytest.mark.parametrize(
    ("params", "seconds"),
    [
        ({"duration": "100ms"}, 0.1),
        ({"duration": "1m30s"}, 90.0),
        ({"duration": 2}, 2.0),
        ({"seconds": 1.5}, 1.5),
        ({"duration_ms": 250}, 0.25),
        ({"duration": "${input.delay}"}, 3.0),
        ({"seconds": "${input.n}"}, 4.0),
    ],
)
def test_wait_run_defers_by_the_duration_without_sleeping(ctx_for, params, seconds):
    # given a wait node / when run
    started = time.monotonic()
    result = WaitKind().run(ctx_for("wait", params, {"delay": "3s", "n": 4}))
    # then it asks the engine for a countdown, leaves the document alone and returns at once
    assert result.defer_seconds == pytest.approx(seconds)
    assert (result.output, result.action) == (None, "success")
    assert time.monotonic() - started < 1


def test_wait_delay_is_the_same_kind():
    # given the Go original's two names / when looked up / then both are the wait kind
    assert get_kind("delay") is get_kind("wait")


@pytest.mark.parametrize(
    ("params", "document"),
    [({"duration": "${input.d}"}, {"d": "soon"}), ({"seconds": "${input.d}"}, {"d": -1}), ({}, {})],
)
def test_wait_run_fails_permanently_on_a_bad_rendered_duration(ctx_for, params, document):
    # given a duration that only turns out bad at run time / when run / then a permanent error
    with pytest.raises(PermanentNodeError):
        WaitKind().run(ctx_for("wait", params, document))


def test_wait_validate_accepts_each_spelling(param_problems):
    # given each way to give the duration / when validated / then no problem
    for params in (
        {"duration": "100ms"},
        {"duration": 5},
        {"seconds": 0.5},
        {"duration_ms": 100},
        {"duration": "${input.d}", "timeout": "1s"},
    ):
        assert param_problems("delay", params) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("", "missing required parameter 'duration' (e.g. '100ms', '1m30s')")]),
        (
            {"duration": "soon"},
            [
                (
                    "duration",
                    "'duration': invalid duration 'soon': expected a number with a unit "
                    "(ns, us, ms, s, m, h), e.g. '200ms', '1m30s'",
                )
            ],
        ),
        ({"seconds": "x"}, [("seconds", "'seconds' must be a number, got a string")]),
        ({"seconds": -2}, [("seconds", "'seconds' must not be negative, got -2")]),
        ({"duration": "1s", "seconds": 1}, [("seconds", "give only one of duration, seconds, duration_ms")]),
        (
            {"duration": "1s", "until": "x"},
            [("until", "unknown parameter 'until' (expected one of: duration, duration_ms, seconds)")],
        ),
    ],
)
def test_wait_validate_reports_precise_problems(param_problems, params, expected):
    # given bad params / when validated / then each problem has its path and message
    assert param_problems("wait", params) == expected
