"""`${...}` templating: typed single expressions, text interpolation, nesting, tokenizing, errors."""

from __future__ import annotations

import pytest

from workers.sandbox import ScriptSandbox
from workers.templating import TemplateError, has_template, js_number, parse, render, to_text

VALUES = {
    "n": 42,
    "f": 1.0,
    "pi": 3.5,
    "flag": True,
    "none": None,
    "obj": {"a": 1, "b": [1, 2]},
    "list": [1, "x"],
    "key": "sk-123",
}


def fake_evaluate(seen: list[str] | None = None):
    """An evaluate callback that looks the stripped expression up in VALUES and records what it was given."""

    def evaluate(expression: str):
        if seen is not None:
            seen.append(expression)
        return VALUES[expression.strip()]

    return evaluate


@pytest.mark.parametrize("name", ["n", "f", "flag", "none", "obj", "list", "key"])
def test_templating_single_expression_keeps_the_value_type(name):
    # given a string that is exactly one expression
    # when it is rendered
    value = render(f"${{{name}}}", fake_evaluate())
    # then the value comes back as is, not as text
    assert value == VALUES[name]
    assert type(value) is type(VALUES[name])


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Bearer ${key}", "Bearer sk-123"),
        ("n=${n}, f=${f}, pi=${pi}", "n=42, f=1, pi=3.5"),
        ("[${none}]", "[]"),
        ("flag: ${flag}", "flag: true"),
        ("obj ${obj}", 'obj {"a":1,"b":[1,2]}'),
        ("list ${list}", 'list [1,"x"]'),
        ("${n}${n}", "4242"),
        (" ${n}", " 42"),
        ("no template here", "no template here"),
        ("", ""),
    ],
)
def test_templating_mixed_text_interpolates_as_text(template, expected):
    # given a string mixing text and expressions
    # when it is rendered
    # then each value is written as JavaScript would show it (objects as JSON, None as nothing)
    assert render(template, fake_evaluate()) == expected


def test_templating_walks_nested_structures_and_leaves_keys_alone():
    # given params with templates inside dicts and lists, and non-string values
    params = {
        "url": "https://api/${key}",
        "headers": {"Authorization": "Bearer ${key}", "${n}": "literal key"},
        "body": [{"count": "${n}"}, "${obj}", 7, None, False],
    }
    # when they are rendered
    rendered = render(params, fake_evaluate())
    # then every string value is rendered, keys and other values are untouched
    assert rendered == {
        "url": "https://api/sk-123",
        "headers": {"Authorization": "Bearer sk-123", "${n}": "literal key"},
        "body": [{"count": 42}, {"a": 1, "b": [1, 2]}, 7, None, False],
    }


@pytest.mark.parametrize(
    ("template", "expression"),
    [
        ("${ {a:1}.a }", " {a:1}.a "),
        ('${"}"}', '"}"'),
        ("${'{'}", "'{'"),
        ("${ 'it\\'s }' }", " 'it\\'s }' "),
        ("${`x${ {b: '}'}.b }y`}", "`x${ {b: '}'}.b }y`"),
        ("${ [1, 2].map(x => ({v: x})) }", " [1, 2].map(x => ({v: x})) "),
    ],
)
def test_templating_expression_may_contain_braces_and_strings(template, expression):
    # given an expression with braces inside objects, strings or template literals
    seen: list[str] = []

    def evaluate(text: str):
        seen.append(text)
        return "ok"

    # when it is rendered
    value = render(template, evaluate)
    # then the whole expression, and only it, reaches the evaluator
    assert seen == [expression]
    assert value == "ok"


def test_templating_backslash_escapes_a_literal_dollar_brace():
    # given an escaped `\${` next to a real expression and a dollar sign before one
    # when rendered
    value = render("\\${not} ${n} costs $${n}", fake_evaluate())
    # then the escape stays literal and `$${...}` is a dollar sign followed by the value
    assert value == "${not} 42 costs $42"


@pytest.mark.parametrize(
    ("template", "position"),
    [("abc ${n", 4), ("${ {a: 1 }", 0), ("x ${'}", 2), ("ok ${n} then ${`a${b}", 13)],
)
def test_templating_unterminated_expression_is_an_error_with_position(template, position):
    # given a `${` that never closes
    # when it is rendered
    with pytest.raises(TemplateError) as caught:
        render(template, fake_evaluate())
    # then the error names the position of that `${`
    assert caught.value.position == position
    assert str(caught.value) == f'unterminated "${{" at position {position}'


def test_templating_empty_expression_is_an_error():
    # given an empty `${}`
    # when it is rendered
    # then it is refused
    with pytest.raises(TemplateError, match='empty "\\$\\{}" at position 2'):
        render("a ${ } b", fake_evaluate())


def test_templating_evaluator_errors_propagate():
    # given an evaluator that fails
    def evaluate(_: str):
        raise RuntimeError("bad expression")

    # when a template is rendered
    # then its error reaches the caller unchanged
    with pytest.raises(RuntimeError, match="bad expression"):
        render({"a": ["x ${y}"]}, evaluate)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", False),
        ("${x}", True),
        ("a ${x} b", True),
        ("escaped \\${x}", False),
        ({"a": ["no", {"b": "${y}"}]}, True),
        ({"${key}": "no"}, False),
        (42, False),
        (None, False),
    ],
)
def test_templating_has_template_finds_expressions_anywhere(value, expected):
    # given a param value
    # when it is checked
    # then templates are found in nested strings (not in keys, not after an escape)
    assert has_template(value) is expected


def test_templating_parse_splits_text_and_expressions():
    # given a template with text around two expressions
    # when it is parsed
    parts = parse("a ${x} b ${y}")
    # then literal text and expressions alternate
    assert parts == ["a ", "x", " b ", "y"]
    assert [type(p).__name__ for p in parts] == ["str", "_Expression", "str", "_Expression"]


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1.0, "1"),
        (-2.0, "-2"),
        (0.0, "0"),
        (1.5, "1.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (-1.25e-10, "-1.25e-10"),
        (123456789.125, "123456789.125"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_templating_numbers_print_as_javascript_does(number, text):
    # given a float
    # when it is turned into text
    # then it matches Number.prototype.toString
    assert js_number(number) == text
    assert to_text(number) == text


def test_templating_renders_with_the_real_sandbox():
    # given the V8 sandbox as the evaluator, with the per-call globals
    sandbox = ScriptSandbox()
    globals_ = {"input": {"user": {"id": 7, "tags": ["a", "b"]}}, "secrets": {"API_KEY": "k-1"}}

    def evaluate(expression: str):
        return sandbox.evaluate(expression, globals=globals_)

    try:
        # when params are rendered
        rendered = render(
            {
                "id": "${input.user.id}",
                "path": "/users/${input.user.id}/tags/${input.user.tags.join(',')}",
                "auth": "Bearer ${secrets.API_KEY}",
                "obj": "${ {n: input.user.tags.length} }",
                "half": "${input.user.id / 2}",
            },
            evaluate,
        )
    finally:
        sandbox.close()
    # then typed values, text and JS arithmetic come out as expected
    assert rendered == {
        "id": 7,
        "path": "/users/7/tags/a,b",
        "auth": "Bearer k-1",
        "obj": {"n": 2},
        "half": 3.5,
    }
