"""The secrets a flow's code names, found before it runs."""

from flows.dsl.parser import parse_flow
from flows.dsl.references import secret_names

FLOW = """
metadata: {name: uses secrets}
nodes:
  fetch:
    type: http.request
    params:
      url: "https://api.example/items"
      headers: {Authorization: "Bearer ${secrets.API_KEY}"}
    next: {success: score}
  score:
    type: transform
    params:
      script: |
        const password = secrets["DB_PASSWORD"];
        const again = secrets?.API_KEY;
        const dynamic = secrets["PREFIX_" + input.kind];
        return {ok: Boolean(password && again && dynamic)};
"""


def test_references_secret_names_lists_each_named_secret_with_its_nodes():
    # given a flow naming secrets in a template, with dots, brackets and optional chaining, and one built at
    # run time
    spec = parse_flow(FLOW)
    # when the names are collected
    names = secret_names(spec)
    # then each literal name is found with the nodes that use it; the one built at run time cannot be known
    assert names == {"API_KEY": ["fetch", "score"], "DB_PASSWORD": ["score"]}


def test_references_secret_names_of_a_flow_without_secrets_is_empty():
    # given a flow whose code never names `secrets`
    spec = parse_flow(
        "metadata: {name: plain}\nnodes:\n  a: {type: transform, params: {script: 'return {};'}}\n"
    )
    # when / then nothing is reported
    assert secret_names(spec) == {}
