"""The V8 script sandbox: return values, per-call globals, console capture."""

from __future__ import annotations

import pytest

from tests.workers.conftest import run
from workers.sandbox import LogLine, ScriptError


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("return 1", 1),
        ("return 1.5", 1.5),
        ("return 'text'", "text"),
        ("return true", True),
        ("return null", None),
        ("return [1, 'a', {b: null}]", [1, "a", {"b": None}]),
        ("return {a: {b: [1, 2]}}", {"a": {"b": [1, 2]}}),
        ("return undefined", None),
        ("const x = 1", None),
        ("return () => 1", None),
        ("return {f() {}, s: Symbol('s'), k: 1}", {"k": 1}),
        ("return NaN", None),
        ("return new Date(0)", "1970-01-01T00:00:00.000Z"),
    ],
)
def test_sandbox_return_value_comes_back_as_json(sandbox, source, expected):
    # given a script body with a top-level return
    # when it runs
    outcome = run(sandbox, source)
    # then the value is what JSON.stringify makes of it, decoded
    assert outcome.value == expected
    assert outcome.logs == []


def test_sandbox_trivial_transform_reads_input(sandbox):
    # given the document as `input`
    # when a script computes from it
    outcome = run(sandbox, "return {a: input.x + 1}")
    # then the result reflects the input
    assert outcome.value == {"a": 2}


def test_sandbox_script_may_declare_its_own_results_and_input(sandbox):
    # given a script that declares names the globals also use
    source = "const results = input.items.map((i) => i * 2);\nlet input = 5;\nreturn {results, input};"
    # when it runs
    with pytest.raises(ScriptError, match="Cannot access 'input' before initialization"):
        run(sandbox, source)
    # then (declared before use) its own declarations shadow the globals without clashing
    outcome = run(sandbox, "const results = [1];\nlet input = 5;\nreturn {results, input, shared: shared.x};")
    assert outcome.value == {"results": [1], "input": 5, "shared": 1}


def test_sandbox_all_per_call_globals_are_visible(sandbox):
    # given the five per-call globals scripts see
    # when a script reads each of them
    outcome = run(
        sandbox,
        "return [input.x, shared.items.length, results.fetch.status, secrets.API_KEY, execution.flow_id]",
    )
    # then every one has this call's value
    assert outcome.value == [1, 3, 200, "sk-live-123456", "f-1"]


def test_sandbox_secrets_global_is_visible_for_this_call_only(sandbox):
    # given a call with secrets and a later call without them
    first = run(sandbox, "return secrets.API_KEY")
    # when the later call looks for them
    second = run(sandbox, "return typeof secrets", globals={"input": {}})
    # then only the first saw them
    assert first.value == "sk-live-123456"
    assert second.value == "undefined"


def test_sandbox_console_calls_are_captured_as_log_lines(sandbox):
    # given a script that logs at every level
    source = """
console.log('plain', 1, true, null, undefined);
console.info('obj', {a: 1, b: [1, 2]});
console.warn({only: 'object'});
console.error(new TypeError('bad thing'));
console.debug('two', {a: 1}, [2]);
return 'done';
"""
    # when it runs
    outcome = run(sandbox, source)
    # then the lines come back in order, formatted like Node (objects as JSON) with the objects as data
    assert outcome.value == "done"
    assert outcome.logs == [
        LogLine("info", "plain 1 true null undefined", None),
        LogLine("info", 'obj {"a":1,"b":[1,2]}', {"a": 1, "b": [1, 2]}),
        LogLine("warn", '{"only":"object"}', {"only": "object"}),
        LogLine("error", "TypeError: bad thing", None),
        LogLine("debug", 'two {"a":1} [2]', [{"a": 1}, [2]]),
    ]


def test_sandbox_console_survives_cycles_and_bigints(sandbox):
    # given objects JSON.stringify would refuse
    # when they are logged
    outcome = run(sandbox, "const a = {n: 1n}; a.self = a; console.log(a); return 1")
    # then the line is still written
    assert outcome.logs == [
        LogLine("info", '{"n":"1n","self":"[Circular]"}', {"n": "1n", "self": "[Circular]"})
    ]


def test_sandbox_console_output_is_capped(sandbox):
    # given a script that logs far too much
    # when it runs
    outcome = run(sandbox, "for (let i = 0; i < 5000; i++) console.log('line', i); return 1")
    # then the first lines are kept and the rest is summarized
    assert len(outcome.logs) == 1001
    assert outcome.logs[-1].level == "warn"
    assert "4000 more console lines dropped" in outcome.logs[-1].message


def test_sandbox_logs_before_an_error_are_kept_on_the_error(sandbox):
    # given a script that logs and then throws
    # when it runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, "console.log('about to fail');\nthrow new Error('boom');")
    # then the error carries the log lines written before it
    assert caught.value.logs == [LogLine("info", "about to fail", None)]
    assert str(caught.value) == "Error: boom (line 2)"
    assert caught.value.script == "node"


def test_sandbox_globals_and_monkey_patches_do_not_leak_to_the_next_call(sandbox):
    # given a script that sets a global and tries to replace Array.prototype.map
    source = """
globalThis.x = 'leaked';
leakedToo = 1;
try { Array.prototype.map = function () { return 'patched'; }; } catch (e) {}
try { Object.prototype.evil = 1; } catch (e) {}
input.x = 999;
return [1, 2].map((v) => v * 2);
"""
    first = run(sandbox, source)
    # when the next call looks
    second = run(sandbox, "return [typeof x, typeof leakedToo, [1, 2].map((v) => v + 1), ({}).evil, input.x]")
    # then it sees none of it
    assert first.value == [2, 4]
    assert second.value == ["undefined", "undefined", [2, 3], None, 1]
