"""The benchmark runs end to end at tiny sizes (`bench/run.py --quick --json`); no timing goal is tested."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {
    "a_latency",
    "b_fanout",
    "c_throughput",
    "d_live_many",
    "d_live_one",
    "d_live_dense",
    "d_live_idle",
    "d_live_stalled",
    "e_scripts_warm",
    "e_scripts_cold",
}


def _bench_env(tmp_path: Path) -> dict[str, str]:
    """The benchmark's own database (dropped and recreated) next to the test database, and the tests' Redis
    db unless FLOWRUNNER_BENCH_REDIS_URL names another; results go to a temporary directory."""
    env = dict(os.environ)
    base = env.get("FLOWRUNNER_POSTGRES_DATABASE") or "flowrunner"
    env.setdefault("FLOWRUNNER_BENCH_DATABASE", f"test_{base}_bench")
    redis_url = env.get("FLOWRUNNER_BENCH_REDIS_URL") or env.get("FLOWRUNNER_REDIS_URL")
    if redis_url:
        env["FLOWRUNNER_BENCH_REDIS_URL"] = redis_url
    env["FLOWRUNNER_BENCH_RESULTS_DIR"] = str(tmp_path)
    return env


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.integration
def test_quick_benchmark_reports_every_scenario_with_numbers(tmp_path: Path) -> None:
    # Given the quick sizes, when the benchmark runs as `make bench` would run it (its own processes)
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--json"],
        cwd=REPO_ROOT,
        env=_bench_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-6000:]}"
    document = json.loads(done.stdout)
    # Then every scenario is there, FlowRunner and its baseline both measured, with a ratio and a verdict
    by_name = {item["scenario"]: item for item in document["scenarios"]}
    assert set(by_name) == SCENARIOS
    for name, item in by_name.items():
        for side in ("flowrunner", "baseline"):
            assert _is_number(item[side]["median"]) and _is_number(item[side]["p90"]), (
                name,
                side,
                item[side],
            )
            assert item[side]["n"] >= 1, (name, side)
        assert _is_number(item["ratio"]), (name, item["ratio"])
        assert isinstance(item["met"], bool) and item["target"], name
    counts = by_name["c_throughput"]["details"]["query_counts"]["per_node_run"]
    assert _is_number(counts["queries"]) and counts["queries"] > 0
    assert document["meta"]["worker"]["concurrency"] >= 1
    # And the same document was written to the results directory
    assert list(tmp_path.glob("*.json")), "no results file written"
