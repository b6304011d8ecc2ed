"""The engine's reads of immutable flow-version data (parsed specs, each node's longest remaining path), cached in
flows.selectors' per-process version caches."""

from __future__ import annotations

from flows.selectors import VersionCache
from flows.selectors import flow_version_spec as spec_for_version

_MAX_PATH_VISITS = 20_000

_paths: VersionCache[int] = VersionCache(4096)


def longest_path(version_id: int, node_id: str) -> int:
    """Nodes on the longest simple path starting at `node_id` (itself included): the steps still ahead."""
    return _paths.get((version_id, node_id), lambda: _longest_path(version_id, node_id))


def _longest_path(version_id: int, node_id: str) -> int:
    spec = spec_for_version(version_id)
    budget = [_MAX_PATH_VISITS]

    def walk(current: str, seen: frozenset[str]) -> int:
        budget[0] -= 1
        if budget[0] < 0:
            return 1
        node = spec.nodes.get(current)
        if node is None:
            return 0
        best = 0
        for target in set(node.next.values()):
            if target not in seen and target in spec.nodes:
                best = max(best, walk(target, seen | {target}))
        return 1 + best

    return walk(node_id, frozenset({node_id}))


def progress_percent(done: float, remaining: float) -> float:
    """Finished steps against finished + the longest remaining path; below 100 until the execution ends."""
    total = done + remaining
    if total <= 0:
        return 0.0
    return min(99.0, 100.0 * done / total)
