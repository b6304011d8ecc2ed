"""`flowrunner run` says which secrets the flow's code names but the run was not given, before anything runs."""

from __future__ import annotations

from tests.cli.conftest import EXAMPLES

USES_ONE = """
metadata: {name: uses one secret}
nodes:
  use: {type: transform, params: {script: 'return {tail: secrets.API_KEY.slice(-2)};'}}
"""


def test_run_without_the_secrets_a_flow_names_warns_before_the_first_node(cli):
    # given the complex example, whose scripts read API_KEY and DB_PASSWORD, run without --secret
    result = cli("run", str(EXAMPLES / "complex_parallel_batch.yaml"), "--json-events")
    # then a warning names both, with the nodes that use them, before any event; the run still happens
    lines = result.stderr.splitlines()
    warning = next(i for i, line in enumerate(lines) if "were not given" in line)
    assert lines[warning].startswith("flowrunner run: warning: the flow uses secrets that were not given:")
    assert (
        "API_KEY (used by prepare_data" in lines[warning]
        and "DB_PASSWORD (used by prepare_data" in lines[warning]
    )
    assert "--secret KEY=VALUE" in lines[warning]
    assert all(not line.startswith("{") for line in lines[:warning])
    assert result.code == 1 and result.events()


def test_run_strict_refuses_a_flow_naming_secrets_not_given(cli):
    # given a flow naming API_KEY
    flow = cli.write("flow.yaml", USES_ONE)
    # when it is run with --strict and no secret
    result = cli("run", str(flow), "--strict")
    # then it is refused with exit status 2 and one line, and nothing ran
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        "flowrunner run: the flow uses secrets that were not given: API_KEY (used by use); pass them with "
        "--secret KEY=VALUE (or --secret KEY to read the environment variable KEY)"
    ]
    assert result.stdout == ""


def test_run_with_every_secret_given_warns_of_nothing(cli):
    # given the same flow and its secret
    flow = cli.write("flow.yaml", USES_ONE)
    # when it is run with --strict
    result = cli("run", str(flow), "--strict", "--secret", "API_KEY=k-0123456789")
    # then it runs without a warning
    assert result.code == 0, result.stderr
    assert "were not given" not in result.stderr and result.document["tail"] == "89"
