"""The `log` kind: write one execution log event with a templated message and optional data."""

from __future__ import annotations

import json
from typing import Any

from flows.nodes.base import NodeContext, NodeKind, NodeResult, PermanentNodeError, Report
from flows.nodes.params import Checker, is_expression
from flows.nodes.registry import register

LEVELS = ("debug", "info", "warning", "error")
_LEVEL_ALIASES = {"warn": "warning"}


def _text(value: Any) -> str:
    # A message that rendered to an object (`${input}`) is logged as JSON, not as a Python repr.
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


class LogKind(NodeKind):
    name = "log"
    pure = True

    def validate_params(self, params: dict[str, Any], report: Report) -> None:
        check = Checker(params, report)
        check.allow("message", "level", "data")
        if check.required("message") and not isinstance(params["message"], str | int | float):
            report("message", "'message' must be text")
        level = params.get("level")
        if level is not None and not is_expression(level):
            if not isinstance(level, str) or _LEVEL_ALIASES.get(level.lower(), level.lower()) not in LEVELS:
                report("level", f"'level' must be one of {', '.join(LEVELS)}, got {level!r}")

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.render(ctx.node.params)
        level = str(params.get("level") or "info").lower()
        level = _LEVEL_ALIASES.get(level, level)
        if level not in LEVELS:
            raise PermanentNodeError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if params.get("message") is None:
            raise PermanentNodeError("log: message is required")
        ctx.log(level, _text(params["message"]), params.get("data"))
        return NodeResult(output=None)


register(LogKind())
