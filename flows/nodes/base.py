"""The node-kind contract: parameter validation at upload, `run(ctx)` in a worker, and what a run may return or raise.

A kind knows nothing of executions or Celery: the engine hands it a NodeContext (document, results, templating,
the script sandbox, logging, the account's store) and turns its NodeResult or error into the next step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from flows.dsl.spec import NodeSpec

Report = Callable[[str, str], None]
"""report(path_suffix, message): path_suffix is relative to the node's `params`, e.g. `"url"` or `"headers.X"`."""


@dataclass
class NodeResult:
    """What a node produced: `output` is merged into the document (objects) or stored under `result`."""

    output: Any = None
    action: str = "success"
    defer_seconds: float | None = None  # wait/delay: finish the node after this countdown, no sleeping


class NodeError(Exception):
    """A node failed. Retryable failures (script exceptions, connection errors) use the node's retry policy."""

    retryable = True
    action = "error"
    type = "error"

    def __init__(self, message: str, *, type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if type:
            self.type = type


class PermanentNodeError(NodeError):
    """Bad parameters or validation: never retried."""

    retryable = False
    type = "validation_error"


class NodeTimeoutError(NodeError):
    """The node ran out of time: retried like any failure, then the `timeout` edge (else `error`)."""

    action = "timeout"
    type = "timeout"


class Store(Protocol):
    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> dict[str, Any]: ...
    def increment(self, key: str, by: float = 1) -> float: ...


class NodeContext(Protocol):
    """What the engine gives a running node."""

    node: NodeSpec
    document: dict[str, Any]  # the execution's document (a copy; return an object to change it)
    results: dict[str, Any]  # node_id -> that node's latest output
    execution: dict[str, Any]  # {id, flow_id, account_id}
    timeout: float | None  # the node's timeout in seconds, if any
    store: Store

    def render(self, value: Any) -> Any:
        """Evaluate `${...}` in every string inside `value` (typed when a string is exactly one expression)."""

    def run_script(self, source: str, *, input: Any = None, extra: dict[str, Any] | None = None) -> Any:
        """Run a JS function body in the sandbox with the flow language's script globals (`input` defaults to
        the document)."""

    def log(self, level: str, message: str, data: Any = None) -> None:
        """Record an execution log event (secret values are redacted by the engine)."""


class NodeKind:
    """Base class of a node kind; subclasses set `name`, may set `aliases`, and implement the two hooks."""

    name: str = ""
    aliases: tuple[str, ...] = ()
    is_batch: bool = False
    # A pure kind's run has no effect outside its result (output, action, logs): running it twice, or before
    # its run is claimed, changes nothing anyone can see, so the engine may start it before claiming it.
    pure: bool = False
    # A batch kind whose parts' processing has no effect outside each part's result: a part may likewise start
    # before its claim (the batch node's own run, which cuts the parts, is claimed first).
    parts_pure: bool = False

    def validate_params(self, params: dict[str, Any], report: Report) -> None:
        """Report every problem in `params` (already known to be a mapping)."""

    def run(self, ctx: NodeContext) -> NodeResult:
        raise NotImplementedError
