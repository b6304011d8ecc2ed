"""Validation of a loaded flow document into a FlowSpec, collecting every problem and position."""

from __future__ import annotations

import re
from typing import Any

from core.durations import DurationError, parse_duration
from flows.dsl.spec import BACKOFFS, BATCH_STRATEGIES, BatchPolicy, FlowSpec, NodeSpec, Problem, RetryPolicy
from flows.dsl.yamltree import Tree, child_path
from flows.nodes.params import type_name
from flows.nodes.registry import get_kind, known_kinds

ROOT_KEYS = ("metadata", "nodes")
NODE_KEYS = ("type", "params", "next", "retry", "batch", "timeout", "queue", "description")
RETRY_KEYS = ("max_retries", "wait", "backoff", "max_wait", "jitter")
BATCH_KEYS = ("strategy", "max_parallel")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
DEFAULT_MAX_WAIT = 300.0
MAX_CONCURRENCY = 10_000
_PARENT = re.compile(r"(\.[^.\[]*|\[\d+\])$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Validator:
    """Checks one loaded document; `spec()` returns the FlowSpec, or None when `problems` is not empty."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.problems: list[Problem] = list(tree.problems)
        self.edges_of: dict[str, dict[str, str]] = {}

    def report(self, path: str, message: str, *, on_key: bool = False) -> None:
        """A problem at `path`: at its key when `on_key`, else at its value, else at the nearest ancestor."""
        position = self.tree.key_marks.get(path) if on_key else None
        probe = path
        while position is None:
            position = self.tree.marks.get(probe)
            if not probe:
                break
            parent = _PARENT.sub("", probe)
            probe = parent if parent != probe else ""
        line, column = position if position else (None, None)
        self.problems.append(Problem(path, line, column, message))

    def text(self, path: str, value: Any) -> str:
        """A scalar as written (`version: 1.10` is "1.10", not "1.1")."""
        return self.tree.texts.get(path, str(value))

    def unknown_keys(self, data: dict[str, Any], path: str, allowed: tuple[str, ...], what: str) -> None:
        for key in data:
            if key not in allowed:
                self.report(
                    child_path(path, key),
                    f"unknown {what} key '{key}' (expected: {', '.join(allowed)})",
                    on_key=True,
                )

    def duration(self, value: Any, path: str, *, positive: bool = False) -> float | None:
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            self.report(path, str(exc))
            return None
        if positive and seconds <= 0:
            self.report(path, f"must be greater than 0, got {value!r}")
            return None
        return seconds

    # The document -------------------------------------------------------------------------------------------

    def spec(self) -> FlowSpec | None:
        root = self.tree.value
        if self.tree.problems and root is None:
            return None
        if not isinstance(root, dict):
            self.report("", f"the flow must be a mapping with 'metadata' and 'nodes', got {type_name(root)}")
            return None
        self.unknown_keys(root, "", ROOT_KEYS, "top-level")
        metadata = self.metadata(root)
        nodes = self.nodes(root)
        start = self.start(metadata) if self.edges_of else None
        if self.problems or not nodes or start is None:
            return None
        return FlowSpec(
            name=metadata["name"],
            start=start,
            nodes=nodes,
            description=metadata.get("description") or "",
            version=metadata.get("version"),
            concurrency=metadata.get("concurrency"),
        )

    def metadata(self, root: dict[str, Any]) -> dict[str, Any]:
        """name, description, version (as text), start and concurrency; other metadata keys are descriptive
        only."""
        raw = root.get("metadata")
        if raw is None:
            self.report("metadata", "missing 'metadata' (a mapping with at least 'name')")
            return {}
        if not isinstance(raw, dict):
            self.report("metadata", f"'metadata' must be a mapping, got {type_name(raw)}")
            return {}
        result: dict[str, Any] = {}
        name = raw.get("name")
        if name is None:
            self.report("metadata.name", "missing 'metadata.name'")
        elif not isinstance(name, str) or not name.strip():
            self.report("metadata.name", f"'metadata.name' must be a non-empty string, got {name!r}")
        else:
            result["name"] = name
        description = raw.get("description")
        if description is not None and not isinstance(description, str):
            self.report(
                "metadata.description",
                f"'metadata.description' must be a string, got {type_name(description)}",
            )
        else:
            result["description"] = description or ""
        version = raw.get("version")
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, str | int | float) or str(version) == "":
                self.report(
                    "metadata.version", f"'metadata.version' must be a string or a number, got {version!r}"
                )
            else:
                result["version"] = self.text("metadata.version", version)
        start = raw.get("start")
        if start is not None:
            if isinstance(start, bool) or not isinstance(start, str | int) or start == "":
                self.report("metadata.start", f"'metadata.start' must be a node id, got {type_name(start)}")
                result["start"] = False
            else:
                result["start"] = self.text("metadata.start", start)
        concurrency = raw.get("concurrency")
        if concurrency is not None:
            if not _is_int(concurrency) or not 1 <= concurrency <= MAX_CONCURRENCY:
                self.report(
                    "metadata.concurrency",
                    f"'metadata.concurrency' must be an integer from 1 to {MAX_CONCURRENCY} (how many executions "
                    f"of the flow may run at once), got "
                    + (str(concurrency) if _is_int(concurrency) else type_name(concurrency)),
                )
            else:
                result["concurrency"] = concurrency
        return result

    def nodes(self, root: dict[str, Any]) -> dict[str, NodeSpec]:
        raw = root.get("nodes")
        if raw is None:
            self.report("nodes", "missing 'nodes' (a mapping of node id to node)")
            return {}
        if not isinstance(raw, dict):
            self.report("nodes", f"'nodes' must be a mapping of node id to node, got {type_name(raw)}")
            return {}
        if not raw:
            self.report("nodes", "'nodes' must contain at least one node")
            return {}
        specs = {}
        for node_id, node in raw.items():
            self.edges_of[node_id] = {}
            spec = self.node(node_id, node, f"nodes.{node_id}")
            if spec is not None:
                specs[node_id] = spec
        # Edges are checked once every node id is known; the target may be defined further down.
        for node_id, edges in self.edges_of.items():
            for action, target in edges.items():
                if target not in raw:
                    self.report(f"nodes.{node_id}.next.{action}", f"next.{action}: unknown node '{target}'")
        return specs if len(specs) == len(raw) else {}

    def start(self, metadata: dict[str, Any]) -> str | None:
        """`metadata.start`, else the single node no edge points to (a self-edge points too)."""
        start = metadata.get("start")
        if start is False:
            return None
        if start is not None:
            if start not in self.edges_of:
                self.report("metadata.start", f"metadata.start: unknown node '{start}'")
                return None
            return start
        # Judged on every node, even one with other problems, so that this problem is reported with the rest.
        targets = {target for edges in self.edges_of.values() for target in edges.values()}
        candidates = [node_id for node_id in self.edges_of if node_id not in targets]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            reason = f"nodes {', '.join(candidates)} have no incoming edge"
        else:
            reason = "every node has an incoming edge"
        self.report("metadata.start", f"cannot determine the start node: {reason}; set metadata.start")
        return None

    # One node -----------------------------------------------------------------------------------------------

    def node(self, node_id: str, raw: Any, path: str) -> NodeSpec | None:
        count = len(self.problems)
        if not node_id:
            self.report(path, "a node id must not be empty", on_key=True)
        if not isinstance(raw, dict):
            # `a:` with nothing after it: point at the key, the empty value has no useful position.
            message = f"a node must be a mapping with at least 'type', got {type_name(raw)}"
            self.report(path, message, on_key=raw is None)
            return None
        self.unknown_keys(raw, path, NODE_KEYS, "node")
        kind = self.kind(raw, path)
        params = raw.get("params")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
            self.report(f"{path}.params", f"'params' must be a mapping, got {type_name(params)}")
            params = {}
        elif kind is not None:
            kind.validate_params(params, self.params_reporter(f"{path}.params"))
        timeout = self.timeout(raw, params, path)
        edges = self.edges_of[node_id] = self.edges(raw.get("next"), f"{path}.next")
        retry = self.retry(raw.get("retry"), f"{path}.retry")
        batch = self.batch(raw, params, kind, path)
        queue = raw.get("queue")
        if queue is not None and (not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue)):
            self.report(
                f"{path}.queue", f"'queue' must be a queue name of letters, digits and _.:-, got {queue!r}"
            )
        description = raw.get("description")
        if description is not None and not isinstance(description, str):
            self.report(
                f"{path}.description", f"'description' must be a string, got {type_name(description)}"
            )
        if len(self.problems) != count or kind is None:
            return None
        return NodeSpec(
            id=node_id,
            type=raw["type"],
            params=params,
            next=edges,
            retry=retry,
            batch=batch,
            timeout=timeout,
            queue=queue,
        )

    def params_reporter(self, params_path: str):
        def report(suffix: str, message: str) -> None:
            if not suffix:
                path = params_path
            elif suffix.startswith("["):
                path = params_path + suffix
            else:
                path = f"{params_path}.{suffix}"
            # An unknown parameter is a problem with its key; anything else with its value.
            self.report(path, message, on_key=message.startswith("unknown "))

        return report

    def kind(self, raw: dict[str, Any], path: str):
        node_type = raw.get("type")
        if node_type is None:
            self.report(path, "missing 'type'")
            return None
        if not isinstance(node_type, str) or not node_type:
            self.report(f"{path}.type", f"'type' must be a string, got {type_name(node_type)}")
            return None
        kind = get_kind(node_type)
        if kind is None:
            self.report(
                f"{path}.type", f"unknown node type '{node_type}' (known: {', '.join(known_kinds())})"
            )
        return kind

    def timeout(self, raw: dict[str, Any], params: dict[str, Any], path: str) -> float | None:
        """The node's `timeout`, else `params.timeout` (both are validated; the node-level one wins)."""
        node_level = params_level = None
        if raw.get("timeout") is not None:
            node_level = self.duration(raw["timeout"], f"{path}.timeout", positive=True)
        if params.get("timeout") is not None:
            params_level = self.duration(params["timeout"], f"{path}.params.timeout", positive=True)
        return node_level if node_level is not None else params_level

    def edges(self, raw: Any, path: str) -> dict[str, str]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.report(path, f"'next' must be a mapping of action to node id, got {type_name(raw)}")
            return {}
        edges = {}
        for action, target in raw.items():
            if not action:
                self.report(child_path(path, action), "an action must not be empty", on_key=True)
            elif isinstance(target, bool) or not isinstance(target, str | int | float) or target == "":
                self.report(
                    child_path(path, action), f"next.{action}: expected a node id, got {type_name(target)}"
                )
            else:
                edges[action] = self.text(child_path(path, action), target)
        return edges

    def retry(self, raw: Any, path: str) -> RetryPolicy | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.report(path, f"'retry' must be a mapping, got {type_name(raw)}")
            return None
        self.unknown_keys(raw, path, RETRY_KEYS, "retry")
        values: dict[str, Any] = {}
        max_retries = raw.get("max_retries", 0)
        if not _is_int(max_retries) or max_retries < 0:
            self.report(
                f"{path}.max_retries", f"'max_retries' must be an integer of at least 0, got {max_retries!r}"
            )
        else:
            values["max_retries"] = max_retries
        for key in ("wait", "max_wait"):
            if raw.get(key) is not None:
                seconds = self.duration(raw[key], f"{path}.{key}")
                if seconds is not None:
                    values[key] = seconds
        values.setdefault("max_wait", DEFAULT_MAX_WAIT)
        backoff = raw.get("backoff", "exponential")
        if backoff not in BACKOFFS:
            self.report(f"{path}.backoff", f"'backoff' must be one of {', '.join(BACKOFFS)}, got {backoff!r}")
        else:
            values["backoff"] = backoff
        jitter = raw.get("jitter", False)
        if not isinstance(jitter, bool):
            self.report(f"{path}.jitter", f"'jitter' must be true or false, got {jitter!r}")
        else:
            values["jitter"] = jitter
        return RetryPolicy(**values)

    def batch(self, raw: dict[str, Any], params: dict[str, Any], kind: Any, path: str) -> BatchPolicy | None:
        """The batch policy of a batch kind: `batch.max_parallel` wins over `params.max_parallel`."""
        block = raw.get("batch")
        is_batch = bool(getattr(kind, "is_batch", False))
        if block is not None and kind is not None and not is_batch:
            batch_kinds = ", ".join(
                name for name in known_kinds() if getattr(get_kind(name), "is_batch", False)
            )
            self.report(
                f"{path}.batch", f"'batch' applies only to batch node types ({batch_kinds})", on_key=True
            )
            return None
        if block is not None and not isinstance(block, dict):
            self.report(f"{path}.batch", f"'batch' must be a mapping, got {type_name(block)}")
            return None
        block = block or {}
        self.unknown_keys(block, f"{path}.batch", BATCH_KEYS, "batch")
        strategy = block.get("strategy", getattr(kind, "default_strategy", "parallel"))
        if strategy not in BATCH_STRATEGIES:
            self.report(
                f"{path}.batch.strategy",
                f"'strategy' must be one of {', '.join(BATCH_STRATEGIES)}, got {strategy!r}",
            )
        max_parallel = block.get("max_parallel")
        if max_parallel is not None and (not _is_int(max_parallel) or max_parallel < 1):
            self.report(
                f"{path}.batch.max_parallel",
                f"'max_parallel' must be an integer of at least 1, got {max_parallel!r}",
            )
            max_parallel = None
        if max_parallel is None and _is_int(params.get("max_parallel")) and params["max_parallel"] >= 1:
            max_parallel = params["max_parallel"]
        if not is_batch:
            return None
        return BatchPolicy(strategy=strategy, max_parallel=max_parallel)
