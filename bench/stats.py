"""Summaries (median, p90, p99) and the one result object per scenario that the table and the JSON show."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return math.nan
    rank = (len(data) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def summary(values: Iterable[float], unit: str) -> dict[str, Any]:
    data = [float(v) for v in values]
    return {
        "median": percentile(data, 50),
        "p90": percentile(data, 90),
        "p99": percentile(data, 99),
        "mean": sum(data) / len(data) if data else math.nan,
        "min": min(data) if data else math.nan,
        "max": max(data) if data else math.nan,
        "n": len(data),
        "unit": unit,
    }


def scenario_result(
    scenario: str,
    title: str,
    flowrunner: dict[str, Any],
    baseline: dict[str, Any],
    *,
    target: str,
    met: bool,
    ratio: float | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`ratio` defaults to FlowRunner's median over the baseline's (a time: lower is better)."""
    if ratio is None:
        ratio = flowrunner["median"] / baseline["median"] if baseline["median"] else math.nan
    return {
        "scenario": scenario,
        "title": title,
        "flowrunner": flowrunner,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "met": bool(met),
        "details": details or {},
    }


def interleaved(total: int, warmup: int) -> Iterable[tuple[int, bool]]:
    """(index, measured) for A B A B … rounds: the first `warmup` rounds are run and thrown away."""
    for index in range(warmup + total):
        yield index, index >= warmup
