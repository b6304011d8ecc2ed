"""`flowrunner validate` and `flowrunner run` as a user runs them: exit codes, stdout, stderr."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest

from flowrunner import pgserver
from tests.cli.conftest import EXAMPLES, cli_env

SMALL = """\
metadata:
  name: small
nodes:
  double:
    type: transform
    params:
      script: |
        console.log("doubling " + input.n);
        return {doubled: input.n * 2};
    next:
      success: label
  label:
    type: transform
    params:
      script: "return {label: 'n=' + input.n + ', doubled=' + input.doubled};"
"""

FAILING = """\
metadata:
  name: failing
nodes:
  explode:
    type: transform
    params:
      script: "throw new Error('no luck today');"
"""

# Problems on known lines: the unknown kind is at 4:11, the dangling edge at 5:21, the bad duration at 8:24.
INVALID = """\
metadata: {name: invalid, start: a}
nodes:
  a:
    type: transfrm
    next: {success: nowhere}
  b:
    type: wait
    params: {duration: 5 parsecs}
"""

BAD_YAML = """\
metadata: {name: broken}
nodes:
  a:
    type: transform
    params: {script: "return 1"
"""

SECRETIVE = """\
metadata:
  name: secretive
nodes:
  use_token:
    type: transform
    params:
      script: |
        console.log("calling with " + secrets.TOKEN);
        return {token: secrets.TOKEN, token_length: secrets.TOKEN.length, greeting: secrets.GREETING};
"""


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {text!r}"
    return lines[0]


# --- validate ---------------------------------------------------------------------------------------------


def test_validate_a_valid_flow_exits_0(cli):
    cli.write("small.yaml", SMALL)
    result = cli("validate", "small.yaml")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "small.yaml: valid"


def test_validate_lists_every_problem_as_file_line_col(cli):
    cli.write("invalid.yaml", INVALID)
    result = cli("validate", "invalid.yaml")
    assert result.code == 1
    lines = result.stdout.strip().splitlines()
    assert "invalid.yaml:4:11: nodes.a.type: unknown node type 'transfrm'" in lines[0]
    assert lines[1].startswith("invalid.yaml:5:21: nodes.a.next.success: ")
    assert "'nowhere'" in lines[1]
    assert lines[2].startswith("invalid.yaml:8:24: nodes.b.params.duration: ")
    assert all(re.match(r"^invalid\.yaml:\d+:\d+: \S+: ", line) for line in lines)


def test_validate_reports_a_yaml_syntax_error_with_its_position(cli):
    cli.write("broken.yaml", BAD_YAML)
    result = cli("validate", "broken.yaml")
    assert result.code == 1
    assert re.fullmatch(r"broken\.yaml:\d+:\d+: invalid YAML: .+", one_line(result.stdout))


def test_validate_several_files_fails_when_one_is_invalid(cli):
    cli.write("small.yaml", SMALL)
    cli.write("invalid.yaml", INVALID)
    result = cli("validate", "-q", "small.yaml", "invalid.yaml")
    assert result.code == 1
    assert "small.yaml" not in result.stdout
    assert result.stdout.count("invalid.yaml:") == 3


def test_validate_a_missing_file_is_a_usage_error(cli):
    result = cli("validate", "nope.yaml")
    assert result.code == 2
    assert one_line(result.stderr) == "flowrunner validate: nope.yaml: no such file"


def test_every_example_is_valid(cli):
    examples = sorted(str(path) for path in EXAMPLES.glob("*.yaml"))
    assert len(examples) >= 5
    result = cli("validate", *examples)
    assert result.code == 0, result.stdout


# --- run: outcomes ------------------------------------------------------------------------------------------


def test_run_completes_and_prints_the_final_document(cli):
    cli.write("small.yaml", SMALL)
    result = cli("run", "small.yaml", "--input", '{"n": 21}')
    assert result.code == 0, result.stderr
    assert result.document == {"n": 21, "doubled": 42, "label": "n=21, doubled=42"}
    # node-by-node lines on stderr, then the summary
    assert re.search(r"double\s+succeeded\s+attempt 1", result.stderr)
    assert "doubling 21" in result.stderr
    assert "completed in" in result.stderr.splitlines()[-1]


def test_run_reads_the_input_from_a_file(cli):
    cli.write("small.yaml", SMALL)
    cli.write("input.json", '{"n": 5}')
    result = cli("run", "small.yaml", "--input", "@input.json")
    assert result.code == 0, result.stderr
    assert result.document["doubled"] == 10


def test_run_reads_the_input_from_stdin(cli):
    cli.write("small.yaml", SMALL)
    result = cli("run", "small.yaml", "--input", "@-", stdin='{"n": 4}')
    assert result.code == 0, result.stderr
    assert result.document["doubled"] == 8


def test_a_failing_flow_exits_1_with_its_document_and_error(cli):
    cli.write("failing.yaml", FAILING)
    result = cli("run", "failing.yaml", "--input", '{"kept": true}')
    assert result.code == 1
    assert result.document == {"kept": True}
    assert "failed" in result.stderr
    assert "no luck today" in result.stderr


def test_run_ignores_server_settings_and_stays_embedded(cli):
    # Unreachable servers: a run that tried to use them would fail or hang instead of completing.
    cli.write("small.yaml", SMALL)
    result = cli(
        "run",
        "small.yaml",
        "--input",
        '{"n": 1}',
        FLOWRUNNER_POSTGRES_HOST="postgres.invalid",
        FLOWRUNNER_REDIS_URL="redis://127.0.0.1:1/0",
    )
    assert result.code == 0, result.stderr
    assert result.document["doubled"] == 2


def test_cancel_after_cancels_a_waiting_execution(cli):
    result = cli("run", str(EXAMPLES / "wait_and_cancel.yaml"), "--cancel-after", "500ms")
    assert result.code == 1
    assert "canceled" in result.stderr.splitlines()[-1]
    assert "after_wait" not in result.stderr


def test_ctrl_c_cancels_the_execution_and_exits_130(cli):
    process = subprocess.Popen(
        [sys.executable, "-m", "flowrunner.cli", "run", str(EXAMPLES / "wait_and_cancel.yaml")],
        cwd=cli.dir,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shown = []
        for line in process.stderr:  # wait until the wait node runs
            shown.append(line)
            if re.search(r"hold\s+running", line):
                break
        process.send_signal(signal.SIGINT)
        stdout, rest = process.communicate(timeout=60)
    finally:
        process.kill()
    stderr = "".join(shown) + rest
    assert process.returncode == 130, stderr
    assert "canceling (interrupted)" in stderr
    assert re.search(r"hold\s+canceled", stderr)
    assert len(re.findall(r"announce\s+succeeded", stderr)) == 1  # nothing shown twice
    assert stderr.splitlines()[-1].startswith("canceled in")
    assert stdout.strip() == "{}"


# --- run: its embedded database -------------------------------------------------------------------------


def _postgres_under(directory: Path) -> list[int]:
    """pids of the PostgreSQL processes working anywhere under `directory`."""
    found = []
    for process in psutil.process_iter(["name"]):
        if (process.info["name"] or "").startswith("postgres"):
            with contextlib.suppress(psutil.Error):
                if Path(process.cwd()).is_relative_to(directory):
                    found.append(process.pid)
    return found


def test_run_leaves_no_server_or_temp_directory_behind(cli, tmp_path):
    # Given a temp directory of the run's own
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    cli.write("small.yaml", SMALL)
    # When a flow runs to the end
    result = cli("run", "small.yaml", "--input", '{"n": 3}', TMPDIR=str(scratch))
    # Then neither its server nor its directory is left
    assert result.code == 0, result.stderr
    assert list(scratch.iterdir()) == []
    assert _postgres_under(scratch) == []


def test_run_stopped_by_sigterm_cancels_and_leaves_nothing_behind(cli, tmp_path):
    # Given a run waiting in its wait node, its server in its temp directory
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "flowrunner.cli", "run", str(EXAMPLES / "wait_and_cancel.yaml")],
        cwd=cli.dir,
        env=cli_env(TMPDIR=str(scratch)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shown = []
        for line in process.stderr:
            shown.append(line)
            if re.search(r"hold\s+running", line):
                break
        assert _postgres_under(scratch), "the run's server should live in its temp directory"
        # When it is sent SIGTERM
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    finally:
        process.kill()
    # Then it cancels like Ctrl-C, and stops its server and removes its directory before exiting
    stderr = "".join(shown) + rest
    assert process.returncode == 130, stderr
    assert re.search(r"hold\s+canceled", stderr)
    assert _postgres_under(scratch) == []
    assert list(scratch.iterdir()) == []


def test_run_with_db_keeps_its_database_between_runs(cli):
    # Given two runs that keep their database in one directory
    cli.write("small.yaml", SMALL)
    for n in (1, 2):
        result = cli("run", "small.yaml", "--input", json.dumps({"n": n}), "--db", "state")
        assert result.code == 0, result.stderr
    # Then the directory holds the cluster and its key file, and no server runs on it any more
    state = cli.dir / "state"
    assert (state / "postgres" / "PG_VERSION").exists()
    assert (state / "dev-keys.json").exists()
    assert _postgres_under(state) == []
    # And both executions are in it
    with pgserver.EmbeddedPostgres(state / "postgres") as server:
        dsn = {"host": str(server.socket_dir), "port": pgserver.PORT, "user": pgserver.SUPERUSER}
        with psycopg.connect(**dsn, dbname=server.database) as conn:
            rows = conn.execute("SELECT input FROM executions_execution ORDER BY created_at").fetchall()
    assert [row[0] for row in rows] == [{"n": 1}, {"n": 2}]


# --- run: secrets -------------------------------------------------------------------------------------------


def test_secrets_reach_the_script_and_are_never_printed(cli):
    cli.write("secretive.yaml", SECRETIVE)
    token = "tok-5f1e9c0d-very-secret"
    result = cli("run", "secretive.yaml", "--secret", f"TOKEN={token}", "--secret", "GREETING=hello there")
    assert result.code == 0, result.stderr
    document = result.document
    assert document["token_length"] == len(token)  # the script saw the real value
    assert document["token"] == "***"
    assert document["greeting"] == "***"
    assert "calling with ***" in result.stderr
    assert token not in result.stdout + result.stderr
    assert "hello there" not in result.stdout + result.stderr


def test_a_bare_secret_key_reads_the_environment(cli):
    cli.write("secretive.yaml", SECRETIVE)
    result = cli(
        "run",
        "secretive.yaml",
        "--secret",
        "TOKEN",
        "--secret",
        "GREETING=hi!!",
        TOKEN="from-the-environment",
    )
    assert result.code == 0, result.stderr
    assert result.document["token_length"] == len("from-the-environment")
    assert "from-the-environment" not in result.stdout + result.stderr


# --- run: bad input: one line on stderr, exit 2 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.yaml"], r"flowrunner run: missing\.yaml: no such file"),
        (
            ["small.yaml", "--input", "{not json"],
            r"flowrunner run: --input: invalid JSON: .+ \(line 1, column 2\)",
        ),
        (
            ["small.yaml", "--input", "[1, 2]"],
            r"flowrunner run: --input: the input must be a JSON object, got .+",
        ),
        (["small.yaml", "--input", "@absent.json"], r"flowrunner run: absent\.json: no such file"),
        (["small.yaml", "--secret", "1BAD=x"], r"flowrunner run: --secret '1BAD': .+"),
        (
            ["small.yaml", "--secret", "UNSET_SECRET_FOR_TEST"],
            r"flowrunner run: --secret UNSET_SECRET_FOR_TEST: .+",
        ),
        (["small.yaml", "--cancel-after", "soon"], r"flowrunner run: --cancel-after 'soon': .+"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args, expected):
    cli.write("small.yaml", SMALL)
    result = cli("run", *args)
    assert result.code == 2
    assert re.fullmatch(expected, one_line(result.stderr))
    assert result.stdout == ""


def test_invalid_yaml_is_one_line_with_its_position_and_exit_2(cli):
    cli.write("broken.yaml", BAD_YAML)
    result = cli("run", "broken.yaml")
    assert result.code == 2
    assert re.fullmatch(r"broken\.yaml:\d+:\d+: invalid YAML: .+", one_line(result.stderr))
    assert result.stdout == ""


def test_an_invalid_flow_lists_its_problems_and_exits_2(cli):
    cli.write("invalid.yaml", INVALID)
    result = cli("run", "invalid.yaml")
    assert result.code == 2
    assert result.stderr.splitlines()[0].startswith("invalid.yaml:4:11: nodes.a.type: ")
    assert result.stdout == ""
