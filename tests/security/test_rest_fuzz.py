"""Schemathesis, every check on, against the live stack's own OpenAPI schema: the document describes the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.api_steps import create_flow, start_run
from tests.integration.processes import REPO_ROOT
from tests.security.helpers import bearer_token, transform_flow, wait_all

pytestmark = [pytest.mark.faults]

# Examples per operation and phase: small by default so the run fits `make test` (about a minute); CI nights
# raise it (FLOWRUNNER_SECURITY_FUZZ_EXAMPLES=100 is schemathesis's own default). A seed reproduces a run.
EXAMPLES = int(os.environ.get("FLOWRUNNER_SECURITY_FUZZ_EXAMPLES", "10"))
SEED = os.environ.get("FLOWRUNNER_SECURITY_FUZZ_SEED")
TIMEOUT = float(os.environ.get("FLOWRUNNER_SECURITY_FUZZ_TIMEOUT", "600"))


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def test_schemathesis_with_every_check_finds_no_difference_between_document_and_api(
    live_stack, live_user, live_api, tmp_path
):
    # given real objects for the fuzzer to aim at, besides the ids it invents: flows (several, DELETE may take
    # some), executions that completed, failed, or still wait (for cancel), and a secret
    flows = [create_flow(live_api, transform_flow(f"fuzz {n}", "return {n: 1}")) for n in range(3)]
    failing = create_flow(live_api, transform_flow("fuzz failing", "throw new Error('no')"))
    waiting = create_flow(
        live_api, "metadata: {name: fuzz waiting}\nnodes:\n  nap: {type: wait, params: {duration: 10m}}\n"
    )
    done = [start_run(live_api, flows[0]), start_run(live_api, failing)]
    wait_all(live_api, done)
    executions = [*done, start_run(live_api, waiting)]
    assert live_api.put("/accounts/me/secrets/FUZZ_KEY", json={"value": "fuzz-secret"}).status_code == 201
    # and a config: Bearer auth (a valid token is never throttled; /logout, which would revoke it, is left to
    # test_auth_hardening) and those ids offered for half of the generated path parameters, besides the
    # objects the stateful phase creates and follows through the document's links
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'headers = {{ Authorization = "Bearer {bearer_token(live_stack, live_user)}" }}\n'
        f"[dictionaries.flow_ids]\nvalues = {_toml_list([*flows, failing, waiting])}\n"
        f"[dictionaries.execution_ids]\nvalues = {_toml_list(executions)}\n"
        f"[dictionaries.account_ids]\nvalues = {_toml_list(['me', live_user.account_id])}\n"
        '[dictionaries.secret_keys]\nvalues = ["FUZZ_KEY"]\n'
        "[parameters]\n"
        '"path.flow_id" = { dictionary = "flow_ids", probability = 0.5 }\n'
        '"path.execution_id" = { dictionary = "execution_ids", probability = 0.5 }\n'
        '"path.account_id" = { dictionary = "account_ids", probability = 0.5 }\n'
        '"path.key" = { dictionary = "secret_keys", probability = 0.3 }\n'
    )
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{live_stack.api_url}/schema",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--exclude-path",
        "/api/v1/logout",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--output-truncate",
        "false",
        "--no-color",
    ]
    if SEED:
        command += ["--seed", SEED]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.security.schemathesis_hooks",
        "PYTHONPATH": str(REPO_ROOT),
    }

    # when schemathesis runs every phase (examples, coverage, fuzzing, stateful) with every check (its own:
    # status codes, content types, headers and bodies as documented, valid data accepted and invalid data
    # refused, auth enforced, deleted objects gone...; ours: every error in the envelope)
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )

    # then it found nothing, and it really tested every operation
    output = result.stdout + result.stderr
    assert report.exists(), output[-5000:]
    summary = json.loads(report.read_text())
    operations, cases = summary["operations"], summary["test_cases"]
    print(
        f"\nschemathesis: {operations['tested']}/{operations['total']} operations, {cases['generated']} test "
        f"cases, {cases['with_failures']} with failures, {len(summary['failures'])} distinct failures, "
        f"{len(summary['errors'])} errors, seed {summary['seed']}, {summary['running_time']:.1f}s"
    )
    assert summary["failures"] == [] and result.returncode == 0, output[-20000:]
    assert summary["errors"] == [], output[-20000:]
    assert operations["tested"] == operations["selected"] == operations["total"] - 1 >= 21, operations
    assert cases["generated"] >= operations["tested"] * min(EXAMPLES, 5), cases
