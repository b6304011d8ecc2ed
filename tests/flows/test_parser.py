"""parse_flow: the flow language (README), its problems (path, line, column), the Go original's flows."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest

from flows.dsl.parser import MAX_ALIAS_EXPANSION, MAX_TEXT_BYTES, parse_flow
from flows.dsl.spec import BatchPolicy, FlowSpec, FlowValidationError, RetryPolicy

FIXTURES = Path(__file__).parent / "fixtures"


def problems_of(text: str):
    with pytest.raises(FlowValidationError) as caught:
        parse_flow(dedent(text))
    return caught.value.problems


def only(problems, path: str):
    found = [p for p in problems if p.path == path]
    assert len(found) == 1, f"expected one problem at {path!r}, got {problems}"
    return found[0]


# The Go original's flows ------------------------------------------------------------------------------------


def test_parse_flow_accepts_the_go_complex_flow_unchanged():
    # given the complex flow from the Go original's PostgreSQL WebSocket test
    text = (FIXTURES / "go_complex_flow.yaml").read_text()

    # when it is parsed
    spec = parse_flow(text)

    # then every node is there, the start is the one node without an incoming edge, and the blocks are typed
    assert spec.name == "Complex Parallel Batch Flow with Retry and Branching"
    assert spec.version == "1.0.0"
    assert spec.start == "prepare_data"
    assert len(spec.nodes) == 11
    batch = spec.nodes["parallel_processor"]
    assert batch.type == "parallel_batch"
    assert batch.timeout == 5.0
    assert batch.batch == BatchPolicy(strategy="parallel", max_parallel=3)
    assert batch.retry == RetryPolicy(max_retries=3, wait=0.2, backoff="exponential", max_wait=300.0)
    assert batch.next == {
        "success": "analyze_results",
        "error": "retry_failed_items",
        "timeout": "timeout_handler",
    }
    assert spec.nodes["prepare_data"].retry == RetryPolicy(max_retries=2, wait=0.1)
    assert spec.nodes["branch_on_success_rate"].next["default"] == "final_summary"
    assert "condition_script" in spec.nodes["analyze_results"].params


def test_parse_flow_accepts_the_go_simple_branching_flow_unchanged():
    # given the simple branching flow from the Go original's tests
    text = (FIXTURES / "go_simple_branching.yaml").read_text()

    # when it is parsed
    spec = parse_flow(text)

    # then the node called `start` starts and the condition has its custom edges
    assert spec.start == "start"
    assert spec.nodes["evaluate_category"].next == {
        "high": "high_value_processor",
        "medium": "medium_value_processor",
        "low": "low_value_processor",
        "default": "default_processor",
    }
    assert spec.nodes["high_value_processor"].retry.wait == 0.05


def test_parse_flow_accepts_the_go_websocket_test_flow():
    # given the Go original's minimal flow: a wait node called start, then a transform called end
    text = """
    metadata:
      name: "Test Flow"
      version: "1.0.0"
      description: "A simple test flow for WebSocket integration"

    nodes:
      start:
        type: "wait"
        params:
          duration: "100ms"
        next:
          success: "end"
      end:
        type: "transform"
        params:
          script: "return input;"
    """
    # when parsed / then it starts at `start` and keeps its description
    spec = parse_flow(dedent(text))
    assert (spec.start, spec.description) == ("start", "A simple test flow for WebSocket integration")


# Valid flows ------------------------------------------------------------------------------------------------

EVERY_KIND = """
metadata:
  name: every kind
  start: fetch
nodes:
  fetch:
    type: http.request
    description: ask the API
    params:
      url: "https://api.example.com/items?page=${input.page}"
      method: post
      headers: {Authorization: "Bearer ${secrets.API_KEY}", X-Count: 3}
      query: {q: search, tags: [a, b]}
      body: {hello: world}
      auth: {type: bearer, token: "${secrets.TOKEN}"}
      timeout: 10s
    retry: {max_retries: 3, wait: 200ms, backoff: linear, max_wait: 30s, jitter: true}
    queue: io.http
    next: {success: shape, client_error: complain, server_error: pause, timeout: pause, error: complain}
  shape:
    type: transform
    params: {script: "return {items: input.body.items};"}
    next: {success: decide}
  decide:
    type: condition
    params: {condition_script: "return input.items.length > 0;"}
    next: {"true": fan_out, "false": choose}
  choose:
    type: condition
    params:
      conditions:
        - {condition: "input.kind == 'a'", action: pick_a}
        - {condition: "return input.kind == 'b';", action: pick_b}
      default_action: other
    next: {pick_a: one_by_one, pick_b: async_fan, other: pool, default: pause}
  fan_out:
    type: parallel_batch
    params: {items: "${input.items}", batch_size: 5, max_parallel: 2, processor_script: "return input.items;"}
    batch: {strategy: parallel, max_parallel: 4}
    timeout: 1m
    next: {success: remember, error: complain, timeout: complain}
  one_by_one:
    type: batch
    params: {items: items}
    batch: {strategy: serial}
    next: {default: remember}
  async_fan:
    type: async_batch
    next: {default: remember}
  pool:
    type: worker_pool
    params: {max_parallel: 3}
    next: {default: remember}
  remember:
    type: store
    params: {operation: increment, key: "runs:${execution.flow_id}", by: 1, output_key: runs}
    next: {success: notify}
  notify:
    type: webhook
    params: {url: "https://hooks.example.com/done", headers: {X-Flow: every}}
    next: {success: say, error: complain}
  pause:
    type: delay
    params: {duration: 1m30s}
    next: {success: fetch}
  complain:
    type: log
    params: {message: "failed: ${input.error.message}", level: error, data: {node: "${input.error.node_id}"}}
    next: {default: say}
  say:
    type: wait
    params: {seconds: 0.5}
"""


def test_parse_flow_accepts_every_node_kind_and_edge_kind():
    # given a flow using every built-in kind and success/error/timeout/default/custom/true/false edges
    # when parsed
    spec = parse_flow(EVERY_KIND)

    # then every node is typed as written and its edges are kept verbatim
    assert spec.start == "fetch"
    assert {node.type for node in spec.nodes.values()} == {
        "http.request",
        "transform",
        "condition",
        "parallel_batch",
        "batch",
        "async_batch",
        "worker_pool",
        "store",
        "webhook",
        "delay",
        "log",
        "wait",
    }
    assert spec.nodes["decide"].next == {"true": "fan_out", "false": "choose"}
    assert spec.nodes["fetch"].next["client_error"] == "complain"
    assert spec.nodes["choose"].next["default"] == "pause"


def test_parse_flow_types_retry_batch_timeout_and_queue():
    # given the every-kind flow / when parsed
    spec = parse_flow(EVERY_KIND)

    # then retry, batch, timeout and queue are typed, with defaults filled in
    fetch = spec.nodes["fetch"]
    assert fetch.retry == RetryPolicy(max_retries=3, wait=0.2, backoff="linear", max_wait=30.0, jitter=True)
    assert fetch.timeout == 10.0  # from params.timeout
    assert fetch.queue == "io.http"
    assert spec.nodes["fan_out"].timeout == 60.0
    assert spec.nodes["fan_out"].batch == BatchPolicy(strategy="parallel", max_parallel=4)  # batch block wins
    assert spec.nodes["one_by_one"].batch == BatchPolicy(strategy="serial", max_parallel=None)
    assert spec.nodes["pool"].batch == BatchPolicy(strategy="worker_pool", max_parallel=3)  # from params
    assert spec.nodes["async_fan"].batch == BatchPolicy(strategy="parallel", max_parallel=None)
    assert spec.nodes["shape"].batch is None and spec.nodes["shape"].retry is None


def test_parse_flow_prefers_node_timeout_over_params_timeout():
    # given a node with both a node-level and a params timeout
    spec = parse_flow(
        "metadata: {name: t}\nnodes:\n  a: {type: wait, timeout: 2s, params: {duration: 1s, timeout: 9s}}\n"
    )
    # when parsed / then the node-level one wins
    assert spec.nodes["a"].timeout == 2.0


def test_parse_flow_retry_defaults_to_exponential_backoff_and_five_minute_cap():
    # given a retry block with only max_retries
    spec = parse_flow(
        "metadata: {name: r}\nnodes:\n  a: {type: log, params: {message: hi}, retry: {max_retries: 2}}\n"
    )
    # when parsed / then backoff is exponential, max_wait 5m and jitter off
    assert spec.nodes["a"].retry == RetryPolicy(
        max_retries=2, backoff="exponential", max_wait=300.0, jitter=False
    )


def test_parse_flow_version_label_keeps_numbers_as_written():
    # given numeric versions / when parsed / then the label is the text as written, None when absent
    assert (
        parse_flow(
            "metadata: {name: v, version: 1.10}\nnodes: {a: {type: log, params: {message: m}}}"
        ).version
        == "1.10"
    )
    assert (
        parse_flow("metadata: {name: v, version: 3}\nnodes: {a: {type: log, params: {message: m}}}").version
        == "3"
    )
    assert parse_flow("metadata: {name: v}\nnodes: {a: {type: log, params: {message: m}}}").version is None


def test_parse_flow_spec_survives_a_json_round_trip():
    # given a parsed flow / when stored as JSON and read back / then it is the same spec
    spec = parse_flow(EVERY_KIND)
    assert FlowSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_parse_flow_accepts_expressions_where_values_are_expected():
    # given `${...}` in place of a duration, an integer and a method
    text = """
    metadata: {name: expr}
    nodes:
      a: {type: wait, params: {duration: "${input.delay}"}, next: {success: b}}
      b:
        type: parallel_batch
        params: {batch_size: "${input.size}", max_parallel: "${input.n}"}
        next: {success: c}
      c: {type: http.request, params: {url: "${input.url}", method: "${input.method}"}}
    """
    # when parsed / then it is valid: they are evaluated at run time
    spec = parse_flow(dedent(text))
    assert spec.nodes["b"].batch.max_parallel is None


def test_parse_flow_expands_aliases_inside_nodes():
    # given an anchor defined on the first node's retry block and reused by the second
    text = """
    metadata: {name: shared}
    nodes:
      a: {type: log, params: {message: one}, retry: &retry {max_retries: 2, wait: 1s}, next: {success: b}}
      b: {type: log, params: {message: two}, retry: {<<: *retry, wait: 5s}, next: {success: c}}
      c: {type: log, params: {message: three}, retry: *retry}
    """
    # when parsed
    spec = parse_flow(dedent(text))

    # then the alias and the merge expand, keys written next to a merge winning
    assert spec.nodes["c"].retry == RetryPolicy(max_retries=2, wait=1.0)
    assert spec.nodes["b"].retry == RetryPolicy(max_retries=2, wait=5.0)


def test_parse_flow_reads_true_and_false_edge_keys_as_text():
    # given unquoted `true:`/`yes:` edge keys (YAML 1.1 booleans)
    text = """
    metadata: {name: tf}
    nodes:
      a: {type: condition, params: {script: "return true;"}, next: {true: b, false: c, yes: b}}
      b: {type: log, params: {message: b}}
      c: {type: log, params: {message: c}}
    """
    # when parsed / then the actions are the words as written
    assert parse_flow(dedent(text)).nodes["a"].next == {"true": "b", "false": "c", "yes": "b"}


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
