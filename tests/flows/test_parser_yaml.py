"""parse_flow refuses bad YAML with its position: syntax, tabs, documents, duplicate keys, aliases, size, tags."""

from __future__ import annotations

import pytest

from flows.dsl.parser import MAX_ALIAS_EXPANSION, MAX_TEXT_BYTES, parse_flow
from flows.dsl.spec import FlowValidationError
from tests.flows.parsing import only, problems_of

# Problems: YAML level ---------------------------------------------------------------------------------------


def test_parse_flow_reports_yaml_syntax_error_with_line_and_column():
    # given a flow whose third line breaks the YAML syntax (a second colon in a plain value)
    text = "metadata:\n  name: x\n  desc: a: b\nnodes: {}\n"

    # when parsed
    with pytest.raises(FlowValidationError) as caught:
        parse_flow(text)

    # then the one problem is a YAML error at the root path with a 1-based position
    (problem,) = caught.value.problems
    assert problem.path == ""
    assert problem.message.startswith("invalid YAML")
    assert (problem.line, problem.column) == (3, 10)


def test_parse_flow_reports_tab_indentation_at_its_position():
    # given a tab where YAML expects spaces / when parsed / then the error points at line 3
    (problem,) = problems_of("metadata:\n  name: x\n\tnodes: {}\n")
    assert problem.line == 3 and problem.path == ""


def test_parse_flow_refuses_several_yaml_documents():
    # given two documents in one text / when parsed / then it is a YAML problem at the second one
    (problem,) = problems_of("metadata: {name: a}\n---\nmetadata: {name: b}\n")
    assert "single document" in problem.message and problem.line == 2


def test_parse_flow_reports_duplicate_keys_with_both_lines():
    # given a node defined twice and a duplicated param
    text = """
    metadata: {name: dup}
    nodes:
      a:
        type: log
        params: {message: one, message: two}
      a:
        type: log
    """
    # when parsed
    problems = problems_of(text)

    # then each duplicate is reported at the second key, naming the first line
    node = only(problems, "nodes.a")
    assert (node.line, node.column) == (7, 3)
    assert node.message == "duplicate key 'a' (first defined on line 4)"
    param = only(problems, "nodes.a.params.message")
    assert param.line == 6 and "duplicate key 'message'" in param.message


def test_parse_flow_refuses_an_alias_bomb():
    # given a "billion laughs" document: each level references the previous one ten times
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 9):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        levels.append(f"a{level}: &a{level} [{refs}]")
    text = (
        "metadata: {name: bomb}\n" + "\n".join(levels) + "\nnodes: {x: {type: log, params: {message: m}}}\n"
    )

    # when parsed
    problems = problems_of(text)

    # then it stops with a problem about the alias expansion (and does not build 10^9 strings)
    assert any(f"more than {MAX_ALIAS_EXPANSION} nodes" in p.message for p in problems)


def test_parse_flow_refuses_a_recursive_alias():
    # given an anchor that contains an alias to itself
    problems = problems_of(
        "metadata: {name: r}\nnodes: &n {a: {type: log, params: {message: m, loop: *n}}}\n"
    )
    # when parsed / then it is refused with a clear message
    assert any("recursive alias" in p.message for p in problems)


def test_parse_flow_refuses_text_over_one_mebibyte():
    # given a flow just over the size limit
    text = "metadata: {name: big}\n# " + "x" * MAX_TEXT_BYTES + "\n"
    # when parsed / then the only problem is the size, with no position
    (problem,) = problems_of(text)
    assert "too large" in problem.message and problem.line is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("- a\n- b\n", "got a list"),
        ("just text\n", "got a string"),
    ],
)
def test_parse_flow_refuses_documents_that_are_not_a_mapping(text, fragment):
    # given an empty document, a list or a scalar / when parsed / then one root problem says why
    (problem,) = problems_of(text)
    assert problem.path == "" and fragment in problem.message


def test_parse_flow_refuses_custom_yaml_tags():
    # given a value with an application tag / when parsed / then the tag is named at its position
    problem = only(
        problems_of("metadata: {name: t}\nnodes:\n  a: {type: log, params: {message: !secret x}}\n"),
        "nodes.a.params.message",
    )
    assert "unsupported YAML tag '!secret'" in problem.message and problem.line == 3
