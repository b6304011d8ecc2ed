"""Layered (Sugiyama-style) layout of a flow spec for the dashboard's SVG graph: no JavaScript library."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NODE_WIDTH = 176
NODE_HEIGHT = 48
DUMMY_WIDTH = 16
LAYER_GAP = 84
NODE_GAP = 32
MARGIN = 28
# A self-loop bulges this far to the right of its node.
LOOP_BULGE = 44
# Back edges (loops) leave and enter nodes this far right of centre, beside any forward edge.
BACK_PORT = 22
LABEL_MAX = 21
SWEEPS = 4


@dataclass
class LaidNode:
    id: str
    type: str
    x: float
    y: float
    width: float = NODE_WIDTH
    height: float = NODE_HEIGHT
    is_start: bool = False
    status: str = "pending"

    @property
    def label(self) -> str:
        return self.id if len(self.id) <= LABEL_MAX else self.id[: LABEL_MAX - 1] + "…"

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def text_y(self) -> float:
        return self.y + 20

    @property
    def type_y(self) -> float:
        return self.y + 37


@dataclass
class LaidEdge:
    source: str
    target: str
    label: str
    path: str
    label_x: float
    label_y: float
    back: bool = False


@dataclass
class GraphLayout:
    nodes: list[LaidNode] = field(default_factory=list)
    edges: list[LaidEdge] = field(default_factory=list)
    width: float = 0
    height: float = 0


def _edges(nodes: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(source, target) → actions, so two actions to the same node become one edge with both labels."""
    edges: dict[tuple[str, str], list[str]] = {}
    for node_id, node in nodes.items():
        for action, target in (node.get("next") or {}).items():
            if target in nodes:
                edges.setdefault((node_id, target), []).append(str(action))
    return edges


def _back_edges(nodes: dict[str, Any], start: str, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Edges that close a cycle in a DFS from the start node (then from any node it does not reach)."""
    succ: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for source, target in pairs:
        succ[source].append(target)
    state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
    back: set[tuple[str, str]] = set()
    roots = [start] + [node_id for node_id in nodes if node_id != start]
    for root in roots:
        if root in state:
            continue
        # Iterative DFS: a long chain of nodes must not hit Python's recursion limit.
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node_id, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node_id] = 2
                stack.pop()
            elif state.get(child) == 1:
                back.add((node_id, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(succ[child])))
    return back


def _layers(nodes: dict[str, Any], start: str, forward: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering over the acyclic forward edges; the start node is on layer 0."""
    preds: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    succ: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for source, target in forward:
        preds[target].append(source)
        succ[source].append(target)
    indegree = {node_id: len(preds[node_id]) for node_id in nodes}
    ready = [start] if indegree.get(start) == 0 else []
    ready += [n for n in nodes if indegree[n] == 0 and n != start]
    layer: dict[str, int] = {}
    while ready:
        node_id = ready.pop(0)
        layer[node_id] = max((layer[p] + 1 for p in preds[node_id]), default=0)
        for child in succ[node_id]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    for node_id in nodes:  # only reachable if the back-edge pass missed a cycle; never lose a node
        layer.setdefault(node_id, 0)
    return layer


def _order(rows: list[list[str]], links: list[tuple[str, str]]) -> list[list[str]]:
    """Barycenter sweeps (down, then up) to cut edge crossings between neighbouring rows."""
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for source, target in links:
        down.setdefault(source, []).append(target)
        up.setdefault(target, []).append(source)

    def barycenter(item: str, pos: int, reference: dict[str, int], neighbours: dict[str, list[str]]):
        near = [reference[n] for n in neighbours.get(item, []) if n in reference]
        return (sum(near) / len(near) if near else float(pos), pos)

    def sweep(rows: list[list[str]], neighbours: dict[str, list[str]], indices: range) -> None:
        for index in indices:
            reference_row = rows[index - 1 if indices.step > 0 else index + 1]
            reference = {item: pos for pos, item in enumerate(reference_row)}
            ranked = sorted(
                (barycenter(item, pos, reference, neighbours), item) for pos, item in enumerate(rows[index])
            )
            rows[index] = [item for _, item in ranked]

    for _ in range(SWEEPS):
        sweep(rows, up, range(1, len(rows)))
        sweep(rows, down, range(len(rows) - 2, -1, -1))
    return rows


def layout(spec: dict[str, Any]) -> GraphLayout:
    """Place every node of a FlowVersion spec (its JSON) top to bottom, one row per layer."""
    nodes: dict[str, Any] = spec.get("nodes") or {}
    if not nodes:
        return GraphLayout(width=2 * MARGIN, height=2 * MARGIN)
    start = spec.get("start") if spec.get("start") in nodes else next(iter(nodes))
    edges = _edges(nodes)
    pairs = [pair for pair in edges if pair[0] != pair[1]]
    back = _back_edges(nodes, start, pairs)
    forward = [pair for pair in pairs if pair not in back]
    # A back edge is laid out reversed (Sugiyama): the graph is then acyclic, and the edge gets dummy points
    # like any other, so a loop is drawn upwards between the rows instead of across the nodes beside them.
    directed = [(pair, pair) for pair in forward] + [(pair, (pair[1], pair[0])) for pair in back]
    layer = _layers(nodes, start, [down for _, down in directed])

    # An edge that skips rows gets a dummy point per skipped row, so it bends around the nodes between.
    rows: list[list[str]] = [[] for _ in range(max(layer.values()) + 1)]
    for node_id in nodes:
        rows[layer[node_id]].append(node_id)
    links: list[tuple[str, str]] = []
    chains: dict[tuple[str, str], list[str]] = {}
    for pair, (upper, lower) in directed:
        chain = []
        previous = upper
        for row in range(layer[upper] + 1, layer[lower]):
            dummy = f"\0{pair[0]}\0{pair[1]}\0{row}"
            rows[row].append(dummy)
            chain.append(dummy)
            links.append((previous, dummy))
            previous = dummy
        links.append((previous, lower))
        chains[pair] = chain
    rows = _order(rows, links)

    widths = {item: (DUMMY_WIDTH if item.startswith("\0") else NODE_WIDTH) for row in rows for item in row}
    row_width = [sum(widths[item] for item in row) + NODE_GAP * (len(row) - 1) for row in rows]
    inner_width = max(row_width)
    position: dict[str, tuple[float, float]] = {}
    for index, row in enumerate(rows):
        x = MARGIN + (inner_width - row_width[index]) / 2
        y = MARGIN + index * (NODE_HEIGHT + LAYER_GAP)
        for item in row:
            position[item] = (x + widths[item] / 2, y)
            x += widths[item] + NODE_GAP

    result = GraphLayout(width=inner_width + 2 * MARGIN, height=MARGIN * 2 + len(rows) * NODE_HEIGHT)
    result.height += (len(rows) - 1) * LAYER_GAP
    for node_id, node in nodes.items():
        cx, y = position[node_id]
        result.nodes.append(
            LaidNode(
                id=node_id,
                type=str(node.get("type", "")),
                x=cx - NODE_WIDTH / 2,
                y=y,
                is_start=node_id == start,
            )
        )
    laid = {node.id: node for node in result.nodes}
    for (source, target), actions in edges.items():
        label = ", ".join(actions)
        a, b = laid[source], laid[target]
        if source == target:
            result.edges.append(_self_loop(a, label))
            result.width = max(result.width, a.x + a.width + LOOP_BULGE + MARGIN / 2)
            continue
        is_back = (source, target) in back
        dummies = [position[dummy] for dummy in chains[(source, target)]]
        if not is_back:
            points = [(a.cx, a.y + a.height)]
            for dx, dy in dummies:
                points += [(dx, dy), (dx, dy + NODE_HEIGHT)]
            points.append((b.cx, b.y))
        else:
            # Leaves the top of the source, enters the bottom of the target, a little off centre so it does
            # not lie on a forward edge between the same two nodes.
            points = [(a.cx + BACK_PORT, a.y)]
            for dx, dy in reversed(dummies):
                points += [(dx, dy + NODE_HEIGHT), (dx, dy)]
            points.append((b.cx + BACK_PORT, b.y + b.height))
        label_x, label_y = _curve_point(points[0], points[1], 0.3 if is_back else 0.5)
        result.edges.append(
            LaidEdge(
                source=source,
                target=target,
                label=label,
                path=_smooth(points),
                label_x=label_x,
                label_y=label_y,
                back=is_back,
            )
        )
    return result


def _curve_point(p0: tuple[float, float], p3: tuple[float, float], t: float) -> tuple[float, float]:
    """The point at `t` of the vertical cubic `_smooth` draws from p0 to p3 (where an edge label goes)."""
    (x0, y0), (x3, y3) = p0, p3
    mid = (y0 + y3) / 2
    u = 1 - t
    x = u**3 * x0 + 3 * u * u * t * x0 + 3 * u * t * t * x3 + t**3 * x3
    y = u**3 * y0 + 3 * u * u * t * mid + 3 * u * t * t * mid + t**3 * y3
    return x, y


def _smooth(points: list[tuple[float, float]]) -> str:
    """Vertical cubic curves between consecutive points (straight through a dummy's own height)."""
    (x0, y0), rest = points[0], points[1:]
    parts = [f"M{x0:.1f},{y0:.1f}"]
    px, py = x0, y0
    for x, y in rest:
        if x == px:
            parts.append(f"L{x:.1f},{y:.1f}")
        else:
            mid = (py + y) / 2
            parts.append(f"C{px:.1f},{mid:.1f} {x:.1f},{mid:.1f} {x:.1f},{y:.1f}")
        px, py = x, y
    return " ".join(parts)


def _self_loop(node: LaidNode, label: str) -> LaidEdge:
    """An edge from a node to itself: a curve out of its right side and back in."""
    x = node.x + node.width
    sy, ty = node.y + node.height * 0.3, node.y + node.height * 0.7
    bulge = x + LOOP_BULGE
    path = f"M{x:.1f},{sy:.1f} C{bulge:.1f},{sy - 12:.1f} {bulge:.1f},{ty + 12:.1f} {x:.1f},{ty:.1f}"
    return LaidEdge(
        source=node.id,
        target=node.id,
        label=label,
        path=path,
        label_x=x + LOOP_BULGE * 0.75 + 4,
        label_y=node.y + node.height / 2,
        back=True,
    )
