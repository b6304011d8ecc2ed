"""Hostile scripts on a real worker: each node fails clearly, the worker stays whole; secrets per account."""

from __future__ import annotations

import re
import time

import pytest

from tests.integration.api_steps import create_flow, start_run
from tests.security.helpers import pool_pids, transform_flow, wait_all

pytestmark = [pytest.mark.faults]

# (name, script, node timeout, what the node's error must say). Loops get a short node timeout to keep the
# run quick; the plain infinite loop keeps the default, so the sandbox's own limit is what stops it.
HOSTILE = [
    ("infinite loop", "while (true) {}", None, r"exceeded its time limit of 5s"),
    (
        "loop in a promise callback",
        "Promise.resolve().then(() => { for (;;) {} }); return 1",
        "2s",
        "timeout|time limit",
    ),
    ("catastrophic regex", "return /^(a+)+$/.test('a'.repeat(40) + 'b')", "2s", "timeout|time limit"),
    (
        "memory bomb",
        "const a = []; for (;;) a.push(new Array(1e6).fill(1.5));",
        None,
        "memory limit of 128 MB",
    ),
    ("string doubling", "let s = 'x'; for (;;) s += s;", None, "Invalid string length|memory limit"),
    (
        "V8-fatal allocation",
        "return new Array(2 ** 30).fill(0).length",
        None,
        "crashed the sandbox|time limit",
    ),
    (
        "deep recursion",
        "const f = (n) => f(n + 1) + 1; return f(0)",
        None,
        "Maximum call stack size exceeded",
    ),
    (
        "deep output",
        "let o = 1; for (let i = 0; i < 900; i++) o = [o]; return {o}",
        None,
        "nested more than 100",
    ),
    ("huge output", "return 'x'.repeat(20 * 1024 * 1024)", None, "over the limit of 16777216"),
    ("require", "return require('child_process').execSync('id')", None, "require is not defined"),
    ("process", "return process.env", None, "process is not defined"),
    ("fetch", "return fetch('http://127.0.0.1/')", None, "fetch is not defined"),
    ("import()", "return import('fs')", None, r"import\(\) is not available"),
    ("eval of import()", "return eval(\"import('fs')\")", None, "returned a Promise"),
    ("eval of require", "return eval('require')('fs')", None, "require is not defined"),
    (
        "Function constructor",
        "return Function('return process')().mainModule",
        None,
        "process is not defined",
    ),
    (
        "constructor chain",
        "return this.constructor.constructor('return process')().binding('fs')",
        None,
        "process is not defined",
    ),
    ("async Function", "return (async () => {}).constructor('return process')()", None, "returned a Promise"),
]

PROBE = """
const names = ['require', 'process', 'fetch', 'XMLHttpRequest', 'WebAssembly', 'SharedArrayBuffer', 'Atomics',
  'ArrayBuffer', 'Deno', 'Bun', 'global', 'module', 'exports', '__dirname', 'setTimeout', 'importScripts'];
const reached = Function('return this')();
return Object.fromEntries(names.map((n) => [n, typeof reached[n]]));
"""


def test_hostile_scripts_fail_their_node_and_the_same_worker_serves_the_next_flow(stack, live_api):
    worker = stack.children["worker-w1"]
    pool_before = pool_pids(worker.pid)
    log_offset = worker.log_path.stat().st_size
    # given flows whose only node runs a hostile script
    runs = {}
    for name, script, timeout, _ in HOSTILE:
        flow_id = create_flow(live_api, transform_flow(name, script, timeout=timeout))
        runs[name] = start_run(live_api, flow_id)
    # when they all run on the one worker (two pool processes)
    started = time.monotonic()
    ended = wait_all(live_api, list(runs.values()), timeout=180)
    hostile_seconds = time.monotonic() - started
    # then each failed its node with a clear error naming what went wrong
    for name, _, _, expected in HOSTILE:
        status = ended[runs[name]]
        print(f"\n  {name}: {status['status']}: {status['error']}", end="")
        assert status["status"] == "failed", (name, status)
        assert re.search(expected, status["error"] or ""), (name, status["error"])
    # and the same worker, with the same pool processes, runs an ordinary flow at once
    probe = create_flow(live_api, transform_flow("probe", PROBE))
    started = time.monotonic()
    after = wait_all(live_api, [start_run(live_api, probe)], timeout=30)
    normal_seconds = time.monotonic() - started
    result = next(iter(after.values()))
    assert result["status"] == "completed", result
    assert set(result["results"].values()) == {"undefined"}, result["results"]
    assert worker.alive() and pool_pids(worker.pid) == pool_before
    log = worker.log_path.read_bytes()[log_offset:].decode("utf-8", "replace")
    assert "WorkerLostError" not in log and "exited prematurely" not in log
    print(
        f"\nhostile scripts: {len(HOSTILE)} failed as expected in {hostile_seconds:.1f}s; the next flow took "
        f"{normal_seconds:.2f}s on the same pool processes {sorted(pool_before)}"
    )


SECRETS_SCRIPT = """
const shown = {};
for (const [key, value] of Object.entries(secrets)) shown[key] = value.split('').reverse().join('');
return {keys: Object.keys(secrets).sort(), reversed: shown};
"""


def test_secrets_hold_only_the_calling_accounts_values(live_stack, make_live_user):
    # given two accounts with a secret of the same name and different values (and one key only the first has)
    first, second = make_live_user(), make_live_user()
    values = {first: "first-account-value-1", second: "second-account-value-2"}
    with live_stack.client(auth=first.auth) as first_api, live_stack.client(auth=second.auth) as second_api:
        apis = {first: first_api, second: second_api}
        for user, api in apis.items():
            assert api.put("/accounts/me/secrets/SHARED", json={"value": values[user]}).status_code == 201
        assert first_api.put("/accounts/me/secrets/ONLY_FIRST", json={"value": "x1"}).status_code == 201
        # when both run the same script at the same time
        runs = {
            user: start_run(api, create_flow(api, transform_flow("s", SECRETS_SCRIPT)))
            for user, api in apis.items()
        }
        results = {user: wait_all(apis[user], [runs[user]])[runs[user]]["results"] for user in apis}
    # then each saw its own account's secrets, and only those
    assert results[first]["keys"] == ["ONLY_FIRST", "SHARED"]
    assert results[second]["keys"] == ["SHARED"]
    for user in (first, second):
        assert results[user]["reversed"]["SHARED"] == values[user][::-1]
