"""The results as a rich table (with each target and whether it is met) and as the JSON document."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _num(value: Any, digits: int = 2) -> str:
    if not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _side(stats: dict[str, Any], tail: str) -> str:
    return f"{_num(stats['median'])} / {_num(stats[tail])} {stats['unit']}"


def table(document: dict[str, Any]) -> Table:
    meta = document["meta"]
    caption = (
        f"{meta['date']} · commit {meta['commit']} · "
        f"{meta['machine']['nproc']} CPUs ({meta['machine']['cpu']}) · "
        f"worker: {meta['worker']['command']}"
    )
    out = Table(title="FlowRunner vs raw Celery (same broker, same worker, same run)", caption=caption)
    out.add_column("scenario")
    out.add_column("FlowRunner median / tail")
    out.add_column("raw Celery median / tail")
    out.add_column("ratio", justify="right")
    out.add_column("target")
    out.add_column("met", justify="center")
    for item in document["scenarios"]:
        if "error" in item:
            out.add_row(
                item["scenario"], f"[red]failed: {item['error'][:200]}[/red]", "", "", "", "[red]–[/red]"
            )
            continue
        tail = "p99" if item["scenario"].startswith("d_") else "p90"
        out.add_row(
            f"{item['scenario']}\n[dim]{item['title']}[/dim]",
            _side(item["flowrunner"], tail) + f" ({tail})",
            _side(item["baseline"], tail) + f" ({tail})",
            _num(item["ratio"]) + "×",
            item["target"],
            "[green]yes[/green]" if item["met"] else "[red]no[/red]",
        )
    return out


def extras(document: dict[str, Any]) -> list[str]:
    """Lines under the table: queries per node run and the profile's hot spots."""
    meta = document["meta"]
    lines = [
        f"Machine load (1/5/15 min) at start {meta['machine']['loadavg_start']}, at end "
        f"{meta['machine'].get('loadavg_end')}; server floors at start {meta.get('floors_start')}, "
        f"at end {meta.get('floors_end')}"
    ]
    for item in document["scenarios"]:
        if "error" in item:
            continue
        if item["scenario"].startswith("d_") and item["details"].get("subscribers_without_complete"):
            d = item["details"]
            lines.append(
                f"{item['scenario']}: {d['subscribers_without_complete']} of {d['subscribers']} subscribers "
                f"never got `complete` (first: {d['without_complete'][:3]})"
            )
        web = item["details"].get("web_profile") if item["scenario"] == "d_live_one" else None
        if web and web.get("top_self"):
            lines.append(f"daphne CPU profile during d_live_one ({web['cpu_samples']} samples), self time:")
            for row in web["by_category_self"][:8]:
                lines.append(f"  {row['share']:>6.1%}  {row['name']}")
        if item["scenario"] != "c_throughput":
            continue
        counts = item["details"]["query_counts"]
        lines.append(f"Per node run (3-node flow, {counts['node_runs']} node runs): {counts['per_node_run']}")
        for row in counts["statements_per_node_run"]:
            lines.append(f"  {row['per_node_run']:>5} × {row['statement']}")
        rounds = item["details"]["rounds"]
        per_run = [r["cpu_ms_per_node_run"] for r in rounds["flowrunner"]]
        lines.append(f"CPU ms per node run, by process group (each round): {per_run}")
        lines.append(
            f"CPU ms per raw task (each round): {[r['cpu_ms_per_task'] for r in rounds['baseline']]}"
        )
        profile = item["details"].get("profile") or {}
        wall, cpu = profile.get("wall_clock") or {}, profile.get("cpu") or {}
        if wall.get("pg_activity"):
            states = ", ".join(f"{s['state']} {s['share']:.0%}" for s in wall["pg_activity"]["states"][:6])
            lines.append(f"PostgreSQL busy backends (profiled round): {states}")
        for name, prof in (("wall clock", wall), ("CPU", cpu)):
            if not prof.get("project_inclusive"):
                continue
            lines.append(
                f"Worker profile, {name} (py-spy, {prof['samples']} samples, "
                f"{prof['rate_while_sampled']:.0f} node runs/s while sampled). "
                "FlowRunner functions, inclusive share of in-task samples:"
            )
            for row in prof["project_inclusive"][3:15]:
                lines.append(f"  {row['share']:>6.1%}  {row['name']}")
            lines.append("  self time by category:")
            for row in prof["by_category_self"][:8]:
                lines.append(f"  {row['share']:>6.1%}  {row['name']}")
    return lines


def show(document: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=180)
    console.print(table(document))
    for line in extras(document):
        console.print(line, markup=False, highlight=False)


def write(document: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    meta = document["meta"]
    path = directory / f"{meta['stamp']}-{meta['commit_short']}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
