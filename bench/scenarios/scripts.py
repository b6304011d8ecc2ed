"""Scenario e: the script sandbox's per-call cost (warm, in-process) and a fresh process's first call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.config import REPO_ROOT, Config
from bench.stats import scenario_result, summary

SCRIPT = "return {value: input.value + 1};"
GLOBALS: dict[str, Any] = {
    "input": {"value": 41, "items": [1, 2, 3]},
    "shared": {"value": 41, "items": [1, 2, 3]},
    "results": {"previous": {"ok": True}},
    "secrets": {},
    "execution": {"id": "00000000-0000-0000-0000-000000000000", "flow_id": "bench", "account_id": "bench"},
}
BASELINE_CODE = "JSON.stringify((function () { const input = %s; %s })())"

# Run in a fresh interpreter: time to a V8 context and the first call's result, FlowRunner's way or plainly.
COLD_PROGRAM = r"""
import json, sys, time
mode, script, globals_json = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if mode == "flowrunner":
    from workers.sandbox import ScriptSandbox
    t1 = time.perf_counter()
    sandbox = ScriptSandbox()
    sandbox.warm_up()
    t2 = time.perf_counter()
    value = sandbox.run(script, globals=json.loads(globals_json)).value
else:
    from py_mini_racer import MiniRacer
    t1 = time.perf_counter()
    racer = MiniRacer()
    t2 = time.perf_counter()
    code = "JSON.stringify((function () { const input = %s; %s })())" % (
        json.dumps(json.loads(globals_json)["input"]), script)
    value = json.loads(racer.eval(code))
t3 = time.perf_counter()
# An open sandbox context keeps the interpreter from exiting (mini-racer): close it, untimed.
(sandbox if mode == "flowrunner" else racer).close()
assert value == {"value": 42}, value
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "context_ms": (t2 - t1) * 1e3,
                  "first_call_ms": (t3 - t2) * 1e3, "total_ms": (t3 - t1) * 1e3}))
"""


def _warm(calls: int, warmup: int) -> tuple[list[float], list[float]]:
    from py_mini_racer import MiniRacer

    from workers.sandbox import get_sandbox

    sandbox = get_sandbox()
    racer = MiniRacer()
    code = BASELINE_CODE % (json.dumps(GLOBALS["input"]), SCRIPT)
    ours, theirs = [], []
    for index in range(warmup + calls):
        t0 = time.perf_counter()
        value = sandbox.run(SCRIPT, globals=GLOBALS).value
        t1 = time.perf_counter()
        plain = json.loads(racer.eval(code))
        t2 = time.perf_counter()
        if value != plain:
            raise RuntimeError(f"sandbox returned {value!r}, plain V8 {plain!r}")
        if index >= warmup:
            ours.append((t1 - t0) * 1000)
            theirs.append((t2 - t1) * 1000)
    racer.close()
    sandbox.close()  # an open context would keep this process from exiting
    return ours, theirs


def _cold_once(mode: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", COLD_PROGRAM, mode, SCRIPT, json.dumps(GLOBALS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"cold {mode} run failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def scripts(cfg: Config) -> list[dict[str, Any]]:
    sizes = cfg.sizes
    ours, theirs = _warm(sizes.script_calls, sizes.script_warmup)
    warm_fr, warm_base = summary(ours, "ms"), summary(theirs, "ms")
    cold: dict[str, list[dict[str, float]]] = {"flowrunner": [], "baseline": []}
    for index in range(1 + sizes.cold_runs):  # the first pair warms the page cache and is dropped
        a, b = _cold_once("flowrunner"), _cold_once("baseline")
        if index:
            cold["flowrunner"].append(a)
            cold["baseline"].append(b)
    cold_fr = summary([r["total_ms"] for r in cold["flowrunner"]], "ms")
    cold_base = summary([r["total_ms"] for r in cold["baseline"]], "ms")

    def parts(runs: list[dict[str, float]]) -> dict[str, float]:
        return {key: summary([r[key] for r in runs], "ms")["median"] for key in runs[0]}

    return [
        scenario_result(
            "e_scripts_warm",
            "transform script, warm sandbox call (in-process)",
            warm_fr,
            warm_base,
            target="≤1 ms per warm call (median)",
            met=warm_fr["median"] <= 1.0,
            details={
                "script": SCRIPT,
                "flowrunner_measures": "workers.sandbox.get_sandbox().run(script, globals=5 engine globals)",
                "baseline_measures": "MiniRacer().eval of the same body over the same input, JSON in and out",
                "calls": sizes.script_calls,
                "warmup_calls_discarded": sizes.script_warmup,
            },
        ),
        scenario_result(
            "e_scripts_cold",
            "first call in a fresh process (V8 context + first call)",
            cold_fr,
            cold_base,
            target="informational (workers pay this at process start: worker_process_init warm-up)",
            met=True,
            details={
                "flowrunner_parts_ms": parts(cold["flowrunner"]),
                "baseline_parts_ms": parts(cold["baseline"]),
                "measures": "after imports: ScriptSandbox().warm_up() (context + bootstrap JS) + first run() "
                "vs MiniRacer() + first eval",
                "runs": sizes.cold_runs,
            },
        ),
    ]
