"""parse_flow's flow-level problems (path, line, column), every one at once, and the start node."""

from __future__ import annotations

import json
from textwrap import dedent

import pytest

from flows.dsl.parser import parse_flow
from flows.dsl.spec import FlowSpec
from tests.flows.parsing import only, problems_of

# Problems: flow level ---------------------------------------------------------------------------------------


def test_parse_flow_requires_metadata_name_and_nodes():
    # given a flow with neither name nor nodes / when parsed / then both are reported
    problems = problems_of("metadata: {description: nothing}\n")
    assert only(problems, "metadata.name").message == "missing 'metadata.name'"
    assert only(problems, "nodes").line == 1


@pytest.mark.parametrize("name", ['""', "[a]", "3", "null"])
def test_parse_flow_requires_metadata_name_to_be_non_empty_text(name):
    # given a name that is empty, a list, a number or null
    problems = problems_of(
        f"metadata: {{name: {name}}}\nnodes: {{a: {{type: log, params: {{message: m}}}}}}\n"
    )
    # when parsed / then the problem is on metadata.name
    assert only(problems, "metadata.name")


@pytest.mark.parametrize(
    ("nodes", "fragment"), [("{}", "at least one node"), ("[a, b]", "must be a mapping")]
)
def test_parse_flow_requires_a_non_empty_nodes_mapping(nodes, fragment):
    # given nodes that is empty or a list / when parsed / then nodes is the problem
    assert fragment in only(problems_of(f"metadata: {{name: n}}\nnodes: {nodes}\n"), "nodes").message


def test_parse_flow_reports_unknown_top_level_and_node_keys_at_the_key():
    # given a typo at the top level and in a node
    text = """
    metadata: {name: k}
    nodez: {}
    nodes:
      a:
        type: log
        params: {message: m}
        nxt: {success: a}
    """
    # when parsed
    problems = problems_of(text)

    # then each unknown key is reported where the key is
    assert (only(problems, "nodez").line, only(problems, "nodez").column) == (3, 1)
    stray = only(problems, "nodes.a.nxt")
    assert (stray.line, stray.column) == (8, 5)
    assert "unknown node key 'nxt'" in stray.message


def test_parse_flow_names_the_known_kinds_for_an_unknown_type():
    # given a node of a type nobody registered
    problem = only(problems_of("metadata: {name: u}\nnodes:\n  a: {type: teleport}\n"), "nodes.a.type")
    # when parsed / then the message lists what is known
    assert problem.message.startswith("unknown node type 'teleport' (known: ")
    assert "http.request" in problem.message and "transform" in problem.message
    assert problem.line == 3


def test_parse_flow_requires_a_node_type():
    # given a node without type / when parsed / then the node itself is the problem
    assert (
        "missing 'type'"
        in only(problems_of("metadata: {name: u}\nnodes:\n  a: {params: {}}\n"), "nodes.a").message
    )


def test_parse_flow_reports_an_edge_to_a_missing_node():
    # given an edge to a node that does not exist
    text = """
    metadata: {name: e}
    nodes:
      a:
        type: log
        params: {message: m}
        next:
          success: foo
    """
    # when parsed
    problem = only(problems_of(text), "nodes.a.next.success")

    # then the edge is named with the missing target, at the target's position
    assert problem.message == "next.success: unknown node 'foo'"
    assert (problem.line, problem.column) == (8, 16)


def test_parse_flow_reports_kind_param_problems_at_their_path():
    # given an http.request with an unknown verb and a transform without its script
    text = """
    metadata: {name: p}
    nodes:
      a:
        type: http.request
        params:
          url: https://example.com
          method: FETCH
        next: {success: b}
      b:
        type: transform
        params: {}
    """
    # when parsed
    problems = problems_of(text)

    # then the kinds' problems carry full paths and lines
    method = only(problems, "nodes.a.params.method")
    assert method.line == 8 and "FETCH" in method.message
    script = only(problems, "nodes.b.params.script")
    assert script.message == "missing required parameter 'script'" and script.line == 12


def test_parse_flow_reports_bad_retry_fields():
    # given a retry block wrong in every field
    text = """
    metadata: {name: r}
    nodes:
      a:
        type: log
        params: {message: m}
        retry:
          max_retries: -1
          wait: fast
          backoff: random
          max_wait: 1x
          jitter: maybe
          tries: 3
    """
    # when parsed
    problems = problems_of(text)

    # then each field has its own problem at its own line
    lines = {p.path: p.line for p in problems}
    assert lines == {
        "nodes.a.retry.max_retries": 8,
        "nodes.a.retry.wait": 9,
        "nodes.a.retry.backoff": 10,
        "nodes.a.retry.max_wait": 11,
        "nodes.a.retry.jitter": 12,
        "nodes.a.retry.tries": 13,
    }
    assert "invalid duration 'fast'" in only(problems, "nodes.a.retry.wait").message


def test_parse_flow_reports_bad_batch_blocks():
    # given a batch node with a bad strategy and max_parallel, and a batch block on a transform
    text = """
    metadata: {name: b}
    nodes:
      a:
        type: parallel_batch
        batch: {strategy: random, max_parallel: 0}
        next: {success: b}
      b:
        type: transform
        params: {script: return 1}
        batch: {strategy: parallel}
    """
    # when parsed
    problems = problems_of(text)

    # then each is reported
    assert "random" in only(problems, "nodes.a.batch.strategy").message
    assert "at least 1" in only(problems, "nodes.a.batch.max_parallel").message
    assert "only to batch node types" in only(problems, "nodes.b.batch").message


@pytest.mark.parametrize("timeout", ["soon", "0s", "-1", "[1]"])
def test_parse_flow_reports_bad_timeouts(timeout):
    # given a node timeout that is not a positive duration / when parsed / then it is reported on that path
    problem = only(
        problems_of(
            f"metadata: {{name: t}}\nnodes:\n  a: {{type: log, params: {{message: m}}, timeout: {timeout}}}\n"
        ),
        "nodes.a.timeout",
    )
    assert problem.line == 3


def test_parse_flow_reports_a_bad_params_timeout_and_accepts_bare_seconds():
    # given params.timeout that does not parse, and one that is a bare number of seconds
    problems = problems_of(
        "metadata: {name: t}\nnodes:\n  a: {type: webhook, params: {url: 'http://x', timeout: soon}}\n"
    )
    spec = parse_flow(
        "metadata: {name: t}\nnodes:\n  a: {type: webhook, params: {url: 'http://x', timeout: 5}}\n"
    )

    # when parsed / then the first is reported under params and the second is five seconds
    assert "invalid duration 'soon'" in only(problems, "nodes.a.params.timeout").message
    assert spec.nodes["a"].timeout == 5.0


@pytest.mark.parametrize("queue", ["'has space'", "'a/b'", "3", "''"])
def test_parse_flow_reports_bad_queue_names(queue):
    # given a queue that is not a plain queue name / when parsed / then queue is the problem
    only(
        problems_of(
            f"metadata: {{name: q}}\nnodes:\n  a: {{type: log, params: {{message: m}}, queue: {queue}}}\n"
        ),
        "nodes.a.queue",
    )


def test_parse_flow_reports_every_problem_at_once_in_document_order():
    # given a flow with problems in metadata, in several nodes and in the graph
    text = """
    metadata:
      name: ""
    nodes:
      a:
        type: nope
        next: {success: ghost}
      b:
        type: wait
        params: {duration: forever}
        retry: {max_retries: x}
      c:
        type: http.request
        params: {method: GET}
        timeout: never
    """
    # when parsed
    problems = problems_of(text)

    # then all of them come back in one exception, sorted by position
    assert {p.path for p in problems} == {
        "metadata.name",
        "nodes.a.type",
        "nodes.a.next.success",
        "nodes.b.params.duration",
        "nodes.b.retry.max_retries",
        "nodes.c.params.url",
        "nodes.c.timeout",
        "metadata.start",
    }
    positions = [(p.line, p.column) for p in problems]
    assert positions == sorted(positions)


# The start node ---------------------------------------------------------------------------------------------


def test_parse_flow_uses_metadata_start_when_given():
    # given two roots and an explicit start / when parsed / then metadata.start decides
    spec = parse_flow(
        "metadata: {name: s, start: b}\nnodes:\n  a: {type: log, params: {message: a}}\n"
        "  b: {type: log, params: {message: b}}\n"
    )
    assert spec.start == "b"


def test_parse_flow_reports_an_unknown_metadata_start():
    # given metadata.start naming no node / when parsed / then it is reported on metadata.start
    problem = only(
        problems_of("metadata: {name: s, start: zz}\nnodes:\n  a: {type: log, params: {message: a}}\n"),
        "metadata.start",
    )
    assert problem.message == "metadata.start: unknown node 'zz'" and problem.line == 1


def test_parse_flow_names_the_candidates_when_several_nodes_have_no_incoming_edge():
    # given two nodes that nothing points to
    text = """
    metadata: {name: s}
    nodes:
      a: {type: log, params: {message: a}, next: {success: c}}
      b: {type: log, params: {message: b}, next: {success: c}}
      c: {type: log, params: {message: c}}
    """
    # when parsed / then the start problem names both
    problem = only(problems_of(text), "metadata.start")
    assert (
        problem.message
        == "cannot determine the start node: nodes a, b have no incoming edge; set metadata.start"
    )
    assert problem.line == 2


def test_parse_flow_reports_a_graph_where_every_node_has_an_incoming_edge():
    # given a cycle a → b → a, so nothing is a root
    text = """
    metadata: {name: s}
    nodes:
      a: {type: log, params: {message: a}, next: {success: b}}
      b: {type: log, params: {message: b}, next: {success: a}}
    """
    # when parsed / then it asks for metadata.start
    problem = only(problems_of(text), "metadata.start")
    assert (
        problem.message
        == "cannot determine the start node: every node has an incoming edge; set metadata.start"
    )


def test_parse_flow_counts_a_self_edge_as_incoming():
    # given a node that loops on itself and a root that leads to it
    text = """
    metadata: {name: s}
    nodes:
      poll: {type: wait, params: {duration: 1s}, next: {success: poll}}
      begin: {type: log, params: {message: go}, next: {success: poll}}
    """
    # when parsed / then the root is begin, not the self-looping poll
    assert parse_flow(dedent(text)).start == "begin"


def test_parse_flow_cycle_with_metadata_start_is_valid():
    # given a loop with an explicit start / when parsed / then loops are allowed
    text = """
    metadata: {name: s, start: a}
    nodes:
      a: {type: log, params: {message: a}, next: {success: b}}
      b: {type: log, params: {message: b}, next: {success: a}}
    """
    assert parse_flow(dedent(text)).start == "a"


def test_parse_flow_reports_an_empty_node_at_its_id():
    # given a node id with nothing after it / when parsed / then the problem points at the id
    problem = only(
        problems_of("metadata: {name: e}\nnodes:\n  a:\n  b: {type: log, params: {message: m}}\n"), "nodes.a"
    )
    assert (problem.line, problem.column) == (3, 3)
    assert problem.message == "a node must be a mapping with at least 'type', got null"


def test_parse_flow_refuses_non_finite_numbers_once():
    # given `.nan` where a value is expected / when parsed / then one problem, no follow-up problem
    problems = problems_of("metadata: {name: n}\nnodes:\n  a: {type: log, params: {message: .nan}}\n")
    assert [p.message for p in problems] == ["'.nan' is not a finite number (JSON cannot hold it)"]


def test_parse_flow_concurrency_bounds_the_flow_and_defaults_to_none():
    # given a flow with metadata.concurrency, and one without / when parsed
    bounded = parse_flow("metadata: {name: c, concurrency: 2}\nnodes: {a: {type: log, params: {message: m}}}")
    free = parse_flow("metadata: {name: c}\nnodes: {a: {type: log, params: {message: m}}}")
    # then the bound is kept (through the stored JSON too) and absent is None
    assert bounded.concurrency == 2
    assert FlowSpec.from_json(json.loads(json.dumps(bounded.to_json()))).concurrency == 2
    assert free.concurrency is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0", "0"), ("-1", "-1"), ("two", "a string"), ("1.5", "a number"), ("true", "a boolean")],
)
def test_parse_flow_concurrency_refuses_what_is_not_a_positive_integer(value, shown):
    # given a flow whose metadata.concurrency is not a positive integer, on line 3
    text = (
        f"metadata:\n  name: c\n  concurrency: {value}\nnodes: {{a: {{type: log, params: {{message: m}}}}}}\n"
    )
    # when parsed / then exactly that problem is reported, at its line
    (problem,) = problems_of(text)
    assert problem.path == "metadata.concurrency"
    assert problem.line == 3
    assert problem.message == (
        "'metadata.concurrency' must be an integer from 1 to 10000 (how many executions of the flow may run "
        f"at once), got {shown}"
    )
