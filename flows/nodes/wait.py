"""The `wait` and `delay` kinds: finish after a countdown the engine schedules; no worker ever sleeps."""

from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeContext, NodeKind, NodeResult, PermanentNodeError, Report
from flows.nodes.params import Checker, is_expression, is_number, run_duration, type_name
from flows.nodes.registry import register

# `duration`: a duration string (`100ms`, `1m30s`); `seconds`: a number; `duration_ms`: the Go spelling.
DURATION_PARAMS = ("duration", "seconds", "duration_ms")


def wait_seconds(params: dict[str, Any]) -> float:
    """Seconds to wait from rendered params; a bad value is permanent (retrying cannot fix it)."""
    if params.get("duration") is not None:
        return run_duration(params["duration"], "duration")
    for name, scale in (("seconds", 1.0), ("duration_ms", 0.001)):
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise PermanentNodeError(f"{name} must be a number, got {value!r}")
        if not is_number(value) or value < 0:
            raise PermanentNodeError(f"{name} must be a number of at least 0, got {value!r}")
        return float(value) * scale
    raise PermanentNodeError("a wait needs 'duration' (or 'seconds')")


class WaitKind(NodeKind):
    name = "wait"
    aliases = ("delay",)

    def validate_params(self, params: dict[str, Any], report: Report) -> None:
        check = Checker(params, report)
        check.allow(*DURATION_PARAMS)
        given = [name for name in DURATION_PARAMS if params.get(name) is not None]
        if not given:
            report("", "missing required parameter 'duration' (e.g. '100ms', '1m30s')")
        elif len(given) > 1:
            report(given[1], f"give only one of {', '.join(DURATION_PARAMS)}")
        check.duration("duration")
        for name in ("seconds", "duration_ms"):
            value = params.get(name)
            if value is None or is_expression(value):
                continue
            if not is_number(value):
                report(name, f"'{name}' must be a number, got {type_name(value)}")
            elif value < 0:
                report(name, f"'{name}' must not be negative, got {value}")

    def run(self, ctx: NodeContext) -> NodeResult:
        seconds = wait_seconds(ctx.render(ctx.node.params))
        # The engine finishes the node after `defer_seconds` with a countdown; the document is left as it is.
        return NodeResult(output=None, defer_seconds=seconds)


register(WaitKind())
