"""Typed spec objects of a parsed flow; `FlowSpec.to_json()` is what FlowVersion.spec stores."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

BACKOFFS = ("constant", "linear", "exponential")
BATCH_STRATEGIES = ("parallel", "serial", "worker_pool")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 0
    wait: float = 1.0
    backoff: str = "exponential"
    max_wait: float = 300.0
    jitter: bool = False

    def delay(self, retry_number: int) -> float:
        """Seconds before retry number `retry_number` (1-based), capped by max_wait; jitter only adds."""
        if self.backoff == "constant":
            base = self.wait
        elif self.backoff == "linear":
            base = self.wait * retry_number
        else:
            base = self.wait * (2 ** (retry_number - 1))
        delay = min(base, self.max_wait)
        if self.jitter:
            delay = min(delay + random.uniform(0, delay * 0.25), self.max_wait + delay * 0.25)
        return delay


@dataclass(frozen=True)
class BatchPolicy:
    strategy: str = "parallel"
    max_parallel: int | None = None


@dataclass(frozen=True)
class NodeSpec:
    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    next: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    batch: BatchPolicy | None = None
    timeout: float | None = None
    queue: str | None = None

    def edge(self, action: str) -> str | None:
        """The node `next[action]` names, else `next.default`, else None."""
        return self.next.get(action) or self.next.get("default")


@dataclass(frozen=True)
class FlowSpec:
    name: str
    start: str
    nodes: dict[str, NodeSpec]
    description: str = ""
    version: str | None = None
    # How many executions of the flow may run at once (`metadata.concurrency`); None is no bound.
    concurrency: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowSpec:
        nodes = {}
        for node_id, raw in data["nodes"].items():
            nodes[node_id] = NodeSpec(
                id=raw["id"],
                type=raw["type"],
                params=raw.get("params") or {},
                next=raw.get("next") or {},
                retry=RetryPolicy(**raw["retry"]) if raw.get("retry") else None,
                batch=BatchPolicy(**raw["batch"]) if raw.get("batch") else None,
                timeout=raw.get("timeout"),
                queue=raw.get("queue"),
            )
        return cls(
            name=data["name"],
            start=data["start"],
            nodes=nodes,
            description=data.get("description") or "",
            version=data.get("version"),
            concurrency=data.get("concurrency"),
        )


@dataclass(frozen=True)
class Problem:
    """One validation problem: a dotted YAML path (`nodes.fetch.retry.wait`), 1-based line/column, a message."""

    path: str
    line: int | None
    column: int | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "column": self.column, "message": self.message}


class FlowValidationError(Exception):
    """Every problem found in a flow text, reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0] if problems else None
        summary = (
            f"{first.message} (line {first.line})"
            if first and first.line
            else (first.message if first else "")
        )
        super().__init__(f"{len(problems)} problem(s) in the flow: {summary}")
