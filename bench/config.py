"""Benchmark configuration: the sizes (default and --quick), connections, and the command line."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("scripts", "latency", "fanout", "throughput", "live")
# The shapes of scenario d (live), each runnable alone with --live-shapes.
LIVE_SHAPES = ("many", "one", "dense", "idle", "stalled")
DEFAULT_DATABASE = "flowrunner_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does. Every field is also a flag (--latency-runs) and an environment variable
    (FLOWRUNNER_BENCH_LATENCY_RUNS); a flag wins over the environment, which wins over --quick."""

    latency_runs: int = 30
    latency_warmup: int = 5
    fanout_runs: int = 20
    fanout_warmup: int = 3
    fanout_items: int = 100
    fanout_batch_size: int = 10
    throughput_executions: int = 500
    throughput_rounds: int = 3
    throughput_warmup: int = 1
    count_executions: int = 20
    live_subscribers: int = 200
    live_rounds: int = 2
    live_warmup: int = 1
    script_calls: int = 1000
    script_warmup: int = 100
    cold_runs: int = 5


QUICK = Sizes(
    latency_runs=2,
    latency_warmup=1,
    fanout_runs=2,
    fanout_warmup=1,
    fanout_items=20,
    throughput_executions=10,
    throughput_rounds=1,
    throughput_warmup=0,
    count_executions=2,
    live_subscribers=4,
    live_rounds=1,
    live_warmup=0,
    script_calls=50,
    script_warmup=10,
    cold_runs=1,
)


@dataclass(frozen=True)
class Config:
    sizes: Sizes
    quick: bool = False
    json_only: bool = False
    scenarios: tuple[str, ...] = SCENARIOS
    live_shapes: tuple[str, ...] = LIVE_SHAPES
    concurrency: int = 2
    database: str = DEFAULT_DATABASE
    redis_url: str = DEFAULT_REDIS_URL
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    profile: bool = True
    results_dir: Path = REPO_ROOT / "bench" / "results"
    stamp: str = ""

    @property
    def needs_stack(self) -> bool:
        return any(name != "scripts" for name in self.scenarios)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="FlowRunner vs raw Celery: latency, fan-out, throughput, live updates, scripts.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every scenario runs")
    p.add_argument("--json", action="store_true", help="print only the JSON document on stdout")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument(
        "--live-shapes",
        default=None,
        help=f"comma-separated subset of scenario live's shapes {', '.join(LIVE_SHAPES)} (default: all; "
        "also FLOWRUNNER_BENCH_LIVE_SHAPES)",
    )
    p.add_argument("--concurrency", type=int, default=None, help="prefork processes of the worker (2)")
    p.add_argument("--database", default=None, help=f"benchmark database, recreated ({DEFAULT_DATABASE})")
    p.add_argument("--redis-url", default=None, help=f"Redis db of its own, flushed ({DEFAULT_REDIS_URL})")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of scenario c")
    p.add_argument("--results-dir", type=Path, default=None, help="where the JSON goes (bench/results)")
    group = p.add_argument_group("sizes (also FLOWRUNNER_BENCH_<NAME> in the environment)")
    for item in fields(Sizes):
        group.add_argument(_flag(item.name), type=int, default=None, metavar="N")
    return p


def _subset(text: str, choices: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A comma-separated subset of `choices`, in their order; an unknown name ends the run."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(choices))
    if unknown:
        raise SystemExit(f"unknown {what}(s) {', '.join(unknown)}; choose among {', '.join(choices)}")
    return tuple(name for name in choices if name in names)


def from_args(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if environ is None else environ)
    args = parser().parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    overrides: dict[str, int] = {}
    for item in fields(Sizes):
        raw = getattr(args, item.name)
        if raw is None and env.get(f"FLOWRUNNER_BENCH_{item.name.upper()}"):
            raw = int(env[f"FLOWRUNNER_BENCH_{item.name.upper()}"])
        if raw is not None:
            if raw < 0:
                raise SystemExit(f"{_flag(item.name)} must not be negative")
            overrides[item.name] = raw
    sizes = replace(sizes, **overrides)
    scenarios = _subset(args.scenarios, SCENARIOS, "scenario")
    live_shapes = _subset(
        args.live_shapes or env.get("FLOWRUNNER_BENCH_LIVE_SHAPES") or ",".join(LIVE_SHAPES),
        LIVE_SHAPES,
        "shape",
    )
    database = args.database or env.get("FLOWRUNNER_BENCH_DATABASE") or DEFAULT_DATABASE
    if "bench" not in database:
        # The benchmark drops and recreates its database: refuse names that look like real data.
        raise SystemExit(
            f"benchmark database {database!r} must contain 'bench' (it is dropped and recreated)"
        )
    concurrency = args.concurrency or int(env.get("FLOWRUNNER_BENCH_CONCURRENCY", "2"))
    return Config(
        sizes=sizes,
        quick=args.quick,
        json_only=args.json,
        scenarios=scenarios,
        live_shapes=live_shapes,
        concurrency=concurrency,
        database=database,
        redis_url=args.redis_url or env.get("FLOWRUNNER_BENCH_REDIS_URL") or DEFAULT_REDIS_URL,
        pg_host=env.get("FLOWRUNNER_POSTGRES_HOST") or "127.0.0.1",
        pg_port=int(env.get("FLOWRUNNER_POSTGRES_PORT") or 5432),
        pg_user=env.get("FLOWRUNNER_POSTGRES_USER") or "postgres",
        pg_password=env.get("FLOWRUNNER_POSTGRES_PASSWORD") or "",
        profile=not args.no_profile and not args.quick,
        results_dir=Path(
            args.results_dir or env.get("FLOWRUNNER_BENCH_RESULTS_DIR") or REPO_ROOT / "bench" / "results"
        ),
    )
