"""parse_flow accepts the flow language (README): the Go original's flows, every kind, typed policies."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

from flows.dsl.parser import parse_flow
from flows.dsl.spec import BatchPolicy, FlowSpec, RetryPolicy

FIXTURES = Path(__file__).parent / "fixtures"


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
