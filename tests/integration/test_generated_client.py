"""A Python client generated from the live OpenAPI document (openapi-python-client) drives a flow end to end."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

PACKAGE = "flowrunner_client"
TERMINAL = {"completed", "failed", "canceled"}
FLOW = """\
metadata: {name: generated client, description: driven through generated code}
nodes:
  double:
    type: transform
    params: {script: "return {doubled: input.n * 2};"}
    next: {success: say}
  say:
    type: log
    params: {message: "doubled to ${input.doubled}", level: info}
"""


def _generate(schema_url: str, workdir: Path) -> None:
    """Generate the client package into `workdir` from the live schema (no network beyond the stack)."""
    schema = workdir / "openapi.json"
    schema.write_text(httpx.get(schema_url, params={"format": "json"}, timeout=30).text)
    config = workdir / "config.yaml"
    # No post hooks: formatting the generated code needs ruff on PATH, and nothing here reads it.
    config.write_text(f"post_hooks: []\nproject_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n")
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(schema)]
    command += ["--meta", "none", "--output-path", str(workdir / PACKAGE), "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # YAML bodies are skipped (the generator writes JSON only); any other warning means a lost operation.
    assert "will not be generated" not in result.stdout, result.stdout


@pytest.fixture
def client_package(live_stack, tmp_path: Path) -> Iterator[ModuleType]:
    _generate(f"{live_stack.api_url}/schema", tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_generated_client_creates_runs_polls_and_reads_a_flow(live_stack, live_user, client_package):
    # given a client generated from the running server's schema, logged in through its own login operation
    models = _module("models")
    login = _module("api.auth.login")
    anonymous = client_package.Client(base_url=live_stack.base_url)
    credentials = models.CredentialsRequest(username=live_user.username, password=live_user.password)
    token = login.sync(client=anonymous, body=credentials).token
    api = client_package.AuthenticatedClient(base_url=live_stack.base_url, token=token)

    # when generated code creates a flow, runs it, polls it to the end and reads its logs and node runs
    flow = _module("api.flows.flows_create").sync(client=api, body=models.FlowWriteRequest(content=FLOW))
    run = _module("api.flows.flows_run").sync(
        flow_id=flow.id,
        client=api,
        body=models.RunRequest(input_=models.RunRequestInput.from_dict({"n": 21})),
    )
    retrieve = _module("api.executions.executions_retrieve")
    deadline = time.monotonic() + 60
    status = retrieve.sync(execution_id=str(run.execution_id), client=api)
    while status.status.value not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        status = retrieve.sync(execution_id=str(run.execution_id), client=api)
    logs = _module("api.executions.executions_logs").sync(execution_id=str(run.execution_id), client=api)
    nodes = _module("api.executions.executions_nodes").sync(execution_id=str(run.execution_id), client=api)
    listed = _module("api.executions.executions_list").sync(client=api, flow_id=flow.id, limit=10)
    missing = _module("api.flows.flows_retrieve").sync_detailed(flow_id="no-such-flow", client=api)

    # then the typed answers describe the run: completed with the doubled input, both nodes succeeded in
    # order, the log node's line among the logs, the run in the paginated list, and a 404 parsed as the
    # error envelope
    assert flow.version_number == 1 and flow.name == "generated client"
    assert run.status.value == "queued" and run.retry_of is None
    assert status.status.value == "completed", status
    assert status.progress == 100 and status.results["doubled"] == 42
    assert [(node.node_id, node.status.value) for node in nodes] == [
        ("double", "succeeded"),
        ("say", "succeeded"),
    ]
    assert any(row.message == "doubled to 42" and row.node_id == "say" for row in logs), logs
    assert [row.seq for row in logs] == sorted(row.seq for row in logs)
    assert listed.count == 1 and str(listed.results[0].id) == str(run.execution_id)
    assert missing.status_code == 404 and missing.parsed.error.code == "not_found"
