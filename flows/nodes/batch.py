"""Batch kinds (`parallel_batch`, `batch`, `async_batch`, `worker_pool`): cut items, process batches, join.

The engine drives a batch node: it asks the kind for the batches, runs `process` once per batch (one Celery
task each, all in one chord) and calls `join_batches` on what came back. `run` is therefore never called.
"""

from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeContext, NodeKind, NodeResult, PermanentNodeError, Report
from flows.nodes.params import Checker, is_expression, is_number, type_name
from flows.nodes.registry import register

# Join bookkeeping keys, written last so a batch output cannot fake them.
BOOKKEEPING = ("failed_items", "failed_batches", "batch_count")


def _lookup(document: dict[str, Any], key: str) -> Any:
    """`items` or a dotted path such as `data.items` in the document; a missing key raises KeyError."""
    if key in document:
        return document[key]
    value: Any = document
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def _positive_int(value: Any, name: str) -> int:
    if is_number(value) and int(value) == value and value >= 1:
        return int(value)
    raise PermanentNodeError(f"{name} must be an integer of at least 1, got {value!r}")


def _merge(joined: dict[str, Any], key: str, value: Any) -> None:
    """Fold one batch's value into the join: lists concatenate, numbers add, else the last batch wins."""
    if key not in joined:
        joined[key] = list(value) if isinstance(value, list) else value
        return
    current = joined[key]
    if isinstance(current, list) and isinstance(value, list):
        joined[key] = current + value
    elif is_number(current) and is_number(value):
        joined[key] = current + value
    else:
        joined[key] = list(value) if isinstance(value, list) else value


def join_batches(
    outputs: list[tuple[int, Any]], failed_batches: list[int], failed_items: int, batch_count: int
) -> dict[str, Any]:
    """The node's output from its batches' outputs `(batch_index, output)`, merged in batch order.

    An object output is merged key by key; any other output (typically the batch's list of items) is
    concatenated under `results` (a scalar counts as a one-element list; null adds nothing).
    """
    joined: dict[str, Any] = {}
    for _, output in sorted(outputs, key=lambda pair: pair[0]):
        if isinstance(output, dict):
            for key, value in output.items():
                _merge(joined, key, value)
        elif output is not None:
            _merge(joined, "results", output if isinstance(output, list) else [output])
    joined["failed_items"] = failed_items
    joined["failed_batches"] = sorted(failed_batches)
    joined["batch_count"] = batch_count
    return joined


class BatchKind(NodeKind):
    """One instance per kind name; they differ only in the strategy used without a `batch` block."""

    is_batch = True
    parts_pure = True  # a part runs `processor_script` (a sandboxed script) and nothing else
    # The engine joins through the kind (`kind.join_batches(...)`); it is the pure module function.
    join_batches = staticmethod(join_batches)

    def __init__(self, name: str, default_strategy: str) -> None:
        self.name = name
        self.default_strategy = default_strategy

    def validate_params(self, params: dict[str, Any], report: Report) -> None:
        check = Checker(params, report)
        check.allow("items", "batch_size", "max_parallel", "processor_script")
        items = params.get("items")
        if "items" in params and not isinstance(items, list):
            if not isinstance(items, str) or not items.strip():
                report(
                    "items",
                    f"'items' must be an expression like '${{input.items}}', a document key or a list, "
                    f"got {type_name(items)}",
                )
        check.integer("batch_size", minimum=1)
        check.integer("max_parallel", minimum=1)
        check.string("processor_script")

    def items(self, ctx: NodeContext) -> list[Any]:
        """`params.items` (an expression, a document key or a list), else the document's `items`."""
        source = ctx.node.params.get("items")
        if source is None:
            source_name, value = "the document's 'items'", ctx.document.get("items")
            if "items" not in ctx.document:
                raise PermanentNodeError(
                    f"{self.name}: no items: the document has no 'items' (set params.items)"
                )
        elif isinstance(source, list) or is_expression(source):
            source_name, value = f"params.items ({source!r})", ctx.render(source)
        else:
            source_name = f"the document's '{source}'"
            try:
                value = _lookup(ctx.document, str(source))
            except KeyError:
                raise PermanentNodeError(f"{self.name}: no items: the document has no '{source}'")
        if not isinstance(value, list):
            raise PermanentNodeError(f"{self.name}: {source_name} must be a list, got {type_name(value)}")
        return value

    def batch_size(self, ctx: NodeContext) -> int:
        value = ctx.node.params.get("batch_size", 1)
        if is_expression(value):
            value = ctx.render(value)
        return _positive_int(value, "batch_size")

    def batches(self, ctx: NodeContext) -> list[list[Any]]:
        """The items cut into consecutive batches of `batch_size` (no batch for no items)."""
        items, size = self.items(ctx), self.batch_size(ctx)
        return [items[start : start + size] for start in range(0, len(items), size)]

    def max_parallel(self, ctx: NodeContext) -> int | None:
        """Batches at once: `batch.max_parallel` wins over `params.max_parallel`; serial means 1."""
        policy = ctx.node.batch
        if policy is not None and policy.strategy == "serial":
            return 1
        if policy is not None and policy.max_parallel:
            return policy.max_parallel
        value = ctx.node.params.get("max_parallel")
        if value is None:
            return None
        if is_expression(value):
            value = ctx.render(value)
        return _positive_int(value, "max_parallel")

    def process(self, ctx: NodeContext, items: list[Any], batch_index: int, batch_count: int) -> Any:
        """One batch's output: `processor_script` run with `input = {items, batch_index, batch_count}`."""
        script = ctx.node.params.get("processor_script")
        if script is None:
            return items
        batch_input = {"items": items, "batch_index": batch_index, "batch_count": batch_count}
        return ctx.run_script(script, input=batch_input)

    def run(self, ctx: NodeContext) -> NodeResult:
        raise NotImplementedError(
            "batch nodes are driven by the engine: batches(), process(), join_batches()"
        )


# The flow language runs all four as parallel batches; `batch: {strategy: serial}` asks for one at a time.
for _name, _strategy in (
    ("parallel_batch", "parallel"),
    ("batch", "parallel"),
    ("async_batch", "parallel"),
    ("worker_pool", "worker_pool"),
):
    register(BatchKind(_name, _strategy))
