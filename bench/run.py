"""Run the benchmarks (`make bench`; `--help` lists the options), write bench/results/<date>-<commit>.json."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import config as bench_config  # noqa: E402


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meta(cfg: bench_config.Config, stamp: str) -> dict:
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "stamp": stamp,
        "commit": commit + ("-dirty" if dirty else ""),
        "commit_short": commit[:10],
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
        },
        "quick": cfg.quick,
        "sizes": asdict(cfg.sizes),
        "database": cfg.database,
        "redis_url": cfg.redis_url,
    }


def _guarded(name: str, run: Callable[[], list[dict]], stack: object = None) -> list[dict]:
    """A scenario that fails is reported as an error object; the other scenarios still run."""
    try:
        return run()
    except Exception as exc:
        detail = traceback.format_exc()
        print(f"scenario {name} failed:\n{detail}", file=sys.stderr)
        if stack is not None:
            print(stack.logs_report(lines=40), file=sys.stderr)
        return [{"scenario": name, "error": f"{type(exc).__name__}: {exc}", "traceback": detail[-4000:]}]


def _stack_scenarios(cfg: bench_config.Config, meta: dict, workdir: Path) -> list[dict]:
    from bench.baseline_tasks import create_durable_table
    from bench.driver import Bench
    from bench.scenarios import endtoend, live, throughput
    from bench.stack import BenchStack, floors, recreate_database, server_versions
    from tests.integration.harness import create_user_orm

    recreate_database(cfg)
    create_durable_table()
    meta["servers"] = server_versions()
    meta["floors_start"] = floors()
    stack = BenchStack.for_benchmark(workdir, cfg.concurrency)
    results: list[dict] = []
    try:
        stack.start()
        stack.start_bench_worker()
        meta["worker"] = {
            "command": stack.worker_command(),
            "pool": "prefork",
            "concurrency": cfg.concurrency,
            "workers": 1,
            "baseline": "bench.baseline_tasks registered on FlowRunner's Celery app (bench.worker_app), run "
            "by the same worker process pool, same broker and result backend (Redis)",
            "web": "one daphne process (flowrunner.asgi:application); no beat (the reaper is off)",
        }
        bench = Bench(stack=stack, creds=create_user_orm())
        plan = {
            "latency": lambda: [endtoend.latency(bench, cfg.sizes)],
            "fanout": lambda: [endtoend.fanout(bench, cfg.sizes)],
            "throughput": lambda: [throughput.throughput(bench, cfg)],
            "live": lambda: live.live(bench, cfg),
        }
        for name, run in plan.items():
            if name in cfg.scenarios:
                results.extend(_guarded(name, run, stack))
    finally:
        stack.stop_all()
    meta["floors_end"] = floors()
    return results


def main(argv: list[str] | None = None) -> int:
    cfg = bench_config.from_args(argv)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    cfg = replace(cfg, stamp=stamp)
    from bench.stack import configure_environment

    configure_environment(cfg)
    import django

    django.setup()
    meta = _meta(cfg, stamp)
    meta["worker"] = {"command": "-", "concurrency": cfg.concurrency}
    started = time.monotonic()
    scenarios: list[dict] = []
    if "scripts" in cfg.scenarios:
        from bench.scenarios import scripts

        scenarios.extend(_guarded("scripts", lambda: scripts.scripts(cfg)))
    if cfg.needs_stack:
        # The children's logs stay next to the results (git-ignored) for a look after the run.
        workdir = cfg.results_dir / f"{stamp}-logs"
        meta["logs"] = str(workdir)
        scenarios.extend(_stack_scenarios(cfg, meta, workdir))
    order = {name: i for i, name in enumerate(("a", "b", "c", "d", "e"))}
    scenarios.sort(key=lambda item: order.get(item["scenario"][0], 9) if "error" not in item else 10)
    meta["duration_s"] = round(time.monotonic() - started, 1)
    meta["machine"]["loadavg_end"] = os.getloadavg()
    document = {"meta": meta, "scenarios": scenarios}
    from bench import report

    path = report.write(document, cfg.results_dir)
    if cfg.json_only:
        print(json.dumps(document, default=str))
    else:
        report.show(document)
        print(f"\nwritten to {path}")
    return 1 if any("error" in item for item in scenarios) else 0


if __name__ == "__main__":
    sys.exit(main())
