"""The V8 script sandbox's refusals: host access, errors with script lines, output limits, and evaluate."""

from __future__ import annotations

import pytest

from tests.workers.conftest import GLOBALS, run
from workers.sandbox import ScriptError


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
