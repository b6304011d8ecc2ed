"""The `store` kind: the account's key-value store (get, set, delete, list, increment) from a flow.

Output shape (one rule for every operation): `{"value": <result>}`, or `{<output_key>: <result>}` when
`params.output_key` is given, so the result lands in the document under a name the flow chooses. The result
is: get → the stored value (`params.default`, else null, when the key is absent); set → the value stored;
delete → true if the key existed; list → an object key → value of the keys starting with `prefix`;
increment → the new number.
"""

from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeContext, NodeKind, NodeResult, PermanentNodeError, Report
from flows.nodes.params import Checker, is_expression, is_number, run_string
from flows.nodes.registry import register

OPERATIONS = ("get", "set", "delete", "list", "increment")
# Which optional params mean something for which operation (`amount` is the Go original's `by`).
_ONLY_FOR = {
    "value": ("set",),
    "by": ("increment",),
    "amount": ("increment",),
    "prefix": ("list",),
    "default": ("get",),
}


class StoreKind(NodeKind):
    name = "store"

    def validate_params(self, params: dict[str, Any], report: Report) -> None:
        check = Checker(params, report)
        check.allow("operation", "key", "value", "by", "amount", "prefix", "output_key", "default")
        operation = check.choice("operation", OPERATIONS, required=True)
        if operation is None:
            return
        if operation == "list":
            if "key" in params:
                report("key", "'key' does not apply to list (use 'prefix')")
            check.string("prefix", allow_empty=True)
        else:
            check.string("key", required=True)
        if operation == "set" and "value" not in params:
            report("", "set needs 'value'")
        if "by" in params and "amount" in params:
            report("amount", "give either 'by' or 'amount', not both")
        check.number("by")
        check.number("amount")
        check.string("output_key")
        for name, operations in _ONLY_FOR.items():
            if name in params and operation not in operations:
                report(name, f"'{name}' applies only to {', '.join(operations)}, not {operation}")

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.render(ctx.node.params)
        operation = run_string(params.get("operation"), "operation")
        output_key = run_string(params.get("output_key"), "output_key", required=False) or "value"
        try:
            result = self._apply(ctx, operation, params)
        except (ValueError, TypeError) as exc:
            # e.g. increment of a value that is not a number: the same call would fail again.
            raise PermanentNodeError(f"store {operation}: {exc}")
        return NodeResult(output={output_key: result})

    @staticmethod
    def _apply(ctx: NodeContext, operation: str, params: dict[str, Any]) -> Any:
        if operation == "list":
            return ctx.store.list(run_string(params.get("prefix"), "prefix", required=False) or "")
        key = run_string(params.get("key"), "key")
        if not key:
            raise PermanentNodeError(f"store {operation}: key must not be empty")
        if operation == "get":
            value = ctx.store.get(key)
            return params.get("default") if value is None else value
        if operation == "set":
            ctx.store.set(key, params.get("value"))
            return params.get("value")
        if operation == "delete":
            return ctx.store.delete(key)
        if operation == "increment":
            by = params.get("by", params.get("amount", 1))
            if isinstance(by, str) and not is_expression(by):
                by = float(by)
            if not is_number(by):
                raise PermanentNodeError(f"store increment: by must be a number, got {by!r}")
            return ctx.store.increment(key, by)
        raise PermanentNodeError(f"operation must be one of {', '.join(OPERATIONS)}, got {operation!r}")


register(StoreKind())
