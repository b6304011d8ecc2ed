"""The `transform` kind: run a JavaScript function body over the document and return its value."""

from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeContext, NodeKind, NodeResult, PermanentNodeError, Report
from flows.nodes.params import Checker
from flows.nodes.registry import register


class TransformKind(NodeKind):
    name = "transform"
    pure = True

    def validate_params(self, params: dict[str, Any], report: Report) -> None:
        check = Checker(params, report)
        check.allow("script")
        check.string("script", required=True)

    def run(self, ctx: NodeContext) -> NodeResult:
        script = ctx.node.params.get("script")
        if not isinstance(script, str):
            raise PermanentNodeError("transform: params.script must be a string")
        # The script is JavaScript, not a template: `${...}` in it is a JS template literal. Never render it.
        return NodeResult(output=ctx.run_script(script))


register(TransformKind())
