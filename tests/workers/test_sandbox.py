"""The V8 script sandbox: values, globals, console capture, isolation between calls, limits, host access."""

from __future__ import annotations

import threading
import time

import pytest

from workers.sandbox import (
    LogLine,
    ScriptError,
    ScriptMemoryError,
    ScriptOutcome,
    ScriptSandbox,
    ScriptTimeout,
    get_sandbox,
)

GLOBALS = {
    "input": {"x": 1, "items": [1, 2, 3]},
    "shared": {"x": 1, "items": [1, 2, 3]},
    "results": {"fetch": {"status": 200}},
    "secrets": {"API_KEY": "sk-live-123456"},
    "execution": {"id": "e-1", "flow_id": "f-1", "account_id": "a-1"},
}


@pytest.fixture(scope="module")
def sandbox():
    box = ScriptSandbox()
    yield box
    box.close()


def run(sandbox: ScriptSandbox, source: str, **kwargs) -> ScriptOutcome:
    kwargs.setdefault("globals", GLOBALS)
    return sandbox.run(source, name="node", **kwargs)


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


@pytest.mark.parametrize(
    ("attack", "check", "expected"),
    [
        ("JSON.stringify = () => 'x'", "JSON.stringify({a: 1})", '{"a":1}'),
        ("Math.random = () => 4", "Math.random() < 1", True),
        ("console.log = null", "typeof console.log", "function"),
        ("JSON = 5", "typeof JSON", "object"),
        ("delete globalThis.Object", "typeof Object", "function"),
        ("Function.prototype.call = null", "typeof Function.prototype.call", "function"),
        ("Object.getPrototypeOf([][Symbol.iterator]()).next = null", "[...[1, 2]].length", 2),
        (
            "Object.getPrototypeOf(async function () {}).leak = 1",
            "Object.getPrototypeOf(async () => 1).leak",
            None,
        ),
        ("Object.getPrototypeOf(globalThis).leak = 1", "typeof leak", "undefined"),
        ("Object.setPrototypeOf(globalThis, {leak: 1})", "typeof leak", "undefined"),
        ("Error.prepareStackTrace = () => 'forged'", "typeof Error.prepareStackTrace", "undefined"),
        ("/secret-(\\w+)/.exec('secret-abc')", "typeof RegExp.$1", "undefined"),
        ("__TimerManager = {stash: secrets}", "typeof __TimerManager", "undefined"),
    ],
)
def test_sandbox_builtins_cannot_be_changed_for_later_calls(sandbox, attack, check, expected):
    # given a script that tries to change a builtin (strict mode, so refusals throw; they are swallowed)
    run(sandbox, f"'use strict';\ntry {{ {attack}; }} catch (e) {{}}\nreturn 1")
    # when a later script uses it
    outcome = run(sandbox, f"return {check}")
    # then it behaves as a fresh context would
    assert outcome.value == expected


def test_sandbox_undeletable_global_gets_a_fresh_context(sandbox):
    # given a script that makes a global it set impossible to delete, and one that freezes globalThis
    run(sandbox, "Object.defineProperty(globalThis, 'stuck', {value: 1, configurable: false}); return 1")
    after_stuck = run(sandbox, "return typeof stuck")
    run(sandbox, "Object.freeze(globalThis); return 1")
    # when later calls run
    after_freeze = run(sandbox, "return [input.x, Object.isExtensible(globalThis)]")
    # then they see a clean global object (the context was replaced)
    assert after_stuck.value == "undefined"
    assert after_freeze.value == [1, True]


def test_sandbox_promise_callbacks_cannot_leak_past_the_call(sandbox):
    # given a script whose promise callback sets a global and logs after the script returned
    first = run(
        sandbox, "Promise.resolve().then(() => { globalThis.late = 1; console.log('late'); }); return 1"
    )
    # when the next call looks
    second = run(sandbox, "return typeof late")
    # then the late log belongs to the first call and the global is gone
    assert first.logs == [LogLine("info", "late", None)]
    assert second.value == "undefined"


def test_sandbox_error_subclass_can_set_its_name(sandbox):
    # given common code that assigns over inherited builtin properties (frozen prototypes must allow it)
    source = """
class NotFound extends Error { constructor(m) { super(m); this.name = 'NotFound'; } }
const o = {};
o.toString = () => 'custom';
throw new NotFound(String(o));
"""
    # when it runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, source)
    # then both assignments worked
    assert str(caught.value) == "NotFound: custom (line 5)"


def test_sandbox_infinite_loop_times_out_and_the_next_call_works(sandbox):
    # given a script that never ends and a half-second limit
    started = time.monotonic()
    # when it runs
    with pytest.raises(ScriptTimeout) as caught:
        run(sandbox, "while (true) {}", timeout=0.5)
    elapsed = time.monotonic() - started
    # then it is stopped within the bound, with a clear message, and the sandbox still works
    assert 0.4 < elapsed < 2.0
    assert str(caught.value) == "script exceeded its time limit of 0.5s"
    assert caught.value.kind == "timeout"
    assert run(sandbox, "return input.x").value == 1


def test_sandbox_looping_promise_callback_times_out_in_its_own_call(sandbox):
    # given a script that returns at once but leaves a promise callback that loops forever
    started = time.monotonic()
    # when it runs
    with pytest.raises(ScriptTimeout):
        run(sandbox, "Promise.resolve().then(() => { while (true) {} }); return 1", timeout=0.5)
    # then the callback is charged to that call and the next call is not blocked by it
    assert time.monotonic() - started < 2.0
    assert run(sandbox, "return 'next'", timeout=1).value == "next"


def test_sandbox_memory_bomb_raises_memory_error_and_the_next_call_works(sandbox):
    # given a script that allocates without bound and a 64 MB limit
    source = "const a = [];\nwhile (true) a.push(new Array(10000).fill('x'.repeat(10)));"
    # when it runs
    with pytest.raises(ScriptMemoryError) as caught:
        run(sandbox, source, memory_mb=64, timeout=20)
    # then the limit stops it (the process survives) and the next call gets a fresh heap
    assert str(caught.value) == "script exceeded its memory limit of 64 MB"
    assert caught.value.kind == "memory"
    assert run(sandbox, "return input.items.length").value == 3


def test_sandbox_binary_buffers_outside_the_heap_limit_are_unavailable(sandbox):
    # given buffer types whose memory the heap limit would not count
    # when a script looks for them
    outcome = run(
        sandbox, "return [typeof ArrayBuffer, typeof Uint8Array, typeof SharedArrayBuffer, typeof Atomics]"
    )
    # then they are not there
    assert outcome.value == ["undefined"] * 4


def test_sandbox_deep_recursion_is_a_script_error(sandbox):
    # given unbounded recursion
    # when it runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, "function f(n) { return f(n + 1) + 1; }\nreturn f(0);")
    # then it is an ordinary script error naming the stack overflow
    assert "Maximum call stack size exceeded" in str(caught.value)
    assert caught.value.kind == "error"
    assert run(sandbox, "return 1").value == 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('return eval("require")', "ReferenceError: require is not defined"),
        (
            'return globalThis.constructor.constructor("return process")()',
            "ReferenceError: process is not defined",
        ),
        ("return require('fs')", "ReferenceError: require is not defined"),
        ("return process.env", "ReferenceError: process is not defined"),
        ("return fetch('http://example.com')", "ReferenceError: fetch is not defined"),
        ("return new XMLHttpRequest()", "ReferenceError: XMLHttpRequest is not defined"),
        ("setTimeout(() => 1, 0)", "TypeError: setTimeout is not a function"),
        ('return import("fs")', "import() is not available: scripts cannot load modules"),
        ('const m = await import("fs")', "import() is not available: scripts cannot load modules"),
        ('import fs from "fs"', "SyntaxError: Cannot use import statement outside a module"),
    ],
)
def test_sandbox_host_access_is_impossible(sandbox, source, message):
    # given a script reaching for the host
    # when it runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, source)
    # then it fails with a clear error
    assert caught.value.message == message
    assert caught.value.line == 1


def test_sandbox_host_globals_are_undefined(sandbox):
    # given the names a Node or browser script might expect
    # when a script inspects them
    names = ["require", "process", "fetch", "XMLHttpRequest", "setTimeout", "setInterval", "module", "Deno"]
    outcome = run(sandbox, f"return {names}.map((n) => typeof globalThis[n])")
    # then none is usable
    assert outcome.value == ["undefined"] * len(names)


def test_sandbox_import_in_a_string_is_not_refused(sandbox):
    # given the text "import(" inside strings and comments
    # when the script runs
    outcome = run(sandbox, "// import(x)\nreturn 'import(\"fs\")'")
    # then it is not mistaken for a dynamic import
    assert outcome.value == 'import("fs")'


@pytest.mark.parametrize(
    ("source", "message", "line"),
    [
        (
            "const a = 1;\nconst b = 2;\nconst c = a + b;\nfoo(c);\nreturn c;",
            "ReferenceError: foo is not defined",
            4,
        ),
        (
            "const a = 1;\nconst b = 2;\nx x;\nconst d = 4;\nreturn a;",
            "SyntaxError: Unexpected identifier 'x'",
            3,
        ),
        (
            "function inner() {\n  return null.field;\n}\nconst v = 1;\nreturn inner();",
            "TypeError: Cannot read properties of null (reading 'field')",
            2,
        ),
        ("const a = 1;\n\n\n\nthrow new RangeError('out of range');", "RangeError: out of range", 5),
        ("const a = 1;\nconst b = 2;\nreturn {a,, b};\n\n", "SyntaxError: Unexpected token ','", 3),
    ],
)
def test_sandbox_error_lines_are_relative_to_the_script(sandbox, source, message, line):
    # given a five-line script failing on a known line
    # when it runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, source)
    # then the message and line number point into the user's own script
    assert caught.value.message == message
    assert caught.value.line == line
    assert str(caught.value) == f"{message} (line {line})"


def test_sandbox_thrown_non_error_is_reported(sandbox):
    # given a script throwing a plain value
    # when it runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, "throw {code: 42}")
    # then the value is shown
    assert str(caught.value) == 'Uncaught {"code":42}'


def test_sandbox_output_over_the_limit_is_refused(sandbox):
    # given a script returning about 2 KB and a 1000-byte limit
    # when it runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, "return 'é'.repeat(1000)", max_output_bytes=1000)
    # then the output is refused with its exact UTF-8 size
    assert str(caught.value) == "script output is 2002 bytes, over the limit of 1000"
    assert run(sandbox, "return 'é'.repeat(10)", max_output_bytes=1000).value == "é" * 10


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("return 10n", "cannot be converted to JSON: TypeError: Do not know how to serialize a BigInt"),
        (
            "const a = {};\na.self = a;\nreturn a;",
            "cannot be converted to JSON: TypeError: Converting circular",
        ),
        ("return Promise.resolve(1)", "script returned a Promise"),
    ],
)
def test_sandbox_unconvertible_return_value_is_a_clear_error(sandbox, source, message):
    # given a return value with no JSON form
    # when the script runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, source)
    # then the error says why
    assert message in str(caught.value)


def test_sandbox_date_and_random_are_available(sandbox):
    # given a script using the clock and randomness
    # when it runs
    outcome = run(sandbox, "const r = Math.random();\nreturn [Date.now() > 1.6e12, r >= 0 && r < 1];")
    # then both work
    assert outcome.value == [True, True]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("input.x + 1", 2),
        ("input.items", [1, 2, 3]),
        (" {a: 1}.a ", 1),
        ('"}"', "}"),
        ("`${input.x}-${secrets.API_KEY}`", "1-sk-live-123456"),
        ("input.missing", None),
        ("input.x // trailing comment", 1),
    ],
)
def test_sandbox_evaluate_returns_the_expression_value(sandbox, expression, expected):
    # given a ${...} expression
    # when it is evaluated with the globals
    value = sandbox.evaluate(expression, globals=GLOBALS)
    # then its value keeps its type
    assert value == expected


def test_sandbox_evaluate_error_names_the_problem(sandbox):
    # given an expression that throws
    # when it is evaluated
    with pytest.raises(ScriptError) as caught:
        sandbox.evaluate("input.nope.deeper", globals=GLOBALS)
    # then the message is the JS error, on line 1 of the expression
    assert str(caught.value) == "TypeError: Cannot read properties of undefined (reading 'deeper') (line 1)"


def test_sandbox_evaluate_refuses_empty_expressions(sandbox):
    # given an empty expression
    # when it is evaluated
    # then it is refused before running
    with pytest.raises(ScriptError, match="empty expression"):
        sandbox.evaluate("  ", globals=GLOBALS)


def test_sandbox_get_sandbox_is_one_process_wide_instance_safe_across_threads():
    # given the process-wide sandbox, warmed up
    box = get_sandbox()
    box.warm_up()
    results: dict[int, object] = {}

    def worker(n: int) -> None:
        results[n] = get_sandbox().run("return input.n * 2", globals={"input": {"n": n}}).value

    # when several threads run scripts at once
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every call got its own globals, through the one shared instance
    assert get_sandbox() is box
    assert results == {n: n * 2 for n in range(8)}


def _child_runs_a_script(results) -> None:
    import gc

    gc.collect()  # dropping anything inherited must not hang on the parent's V8 thread
    results.put(get_sandbox().run("return input.n + 1", globals={"input": {"n": 1}}).value)


def test_sandbox_forked_child_gets_its_own_context():
    # given a process whose sandbox context is warm (as a prefork parent's might be)
    import multiprocessing

    get_sandbox().warm_up()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    # when it forks a child that runs a script
    child = context.Process(target=_child_runs_a_script, args=(results,))
    child.start()
    child.join(timeout=30)
    # then the child worked with a context of its own and the parent's still works
    assert child.exitcode == 0
    assert results.get(timeout=5) == 2
    assert get_sandbox().run("return 3").value == 3
