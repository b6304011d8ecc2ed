"""The dashboard's layered graph layout: rows by longest path from the start, loops drawn back up, no overlaps."""

from __future__ import annotations

from dashboard.graph import NODE_HEIGHT, layout


def spec(start: str, **edges: dict[str, str]) -> dict:
    return {
        "start": start,
        "nodes": {name: {"type": "transform", "next": nxt} for name, nxt in edges.items()},
    }


def rows(graph) -> dict[str, int]:
    ys = sorted({node.y for node in graph.nodes})
    return {node.id: ys.index(node.y) for node in graph.nodes}


def test_rows_follow_the_longest_path_from_the_start():
    # given a diamond with a shortcut a → d
    graph = layout(
        spec("a", a={"success": "b", "error": "d"}, b={"true": "c", "false": "d"}, c={"success": "d"}, d={})
    )
    # then every node sits one row below its lowest predecessor, the start on top
    assert rows(graph) == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert next(node for node in graph.nodes if node.is_start).id == "a"


def test_edges_are_labelled_by_action_and_merged_per_target():
    # given two actions to the same node
    graph = layout(spec("a", a={"success": "b", "default": "b"}, b={}))
    # then one edge carries both labels
    assert [(e.source, e.target, e.label) for e in graph.edges] == [("a", "b", "success, default")]


def test_a_loop_is_a_back_edge_drawn_upwards():
    # given a retry loop b → a
    graph = layout(spec("a", a={"success": "b"}, b={"error": "a", "success": "c"}, c={}))
    back = [edge for edge in graph.edges if edge.back]
    # then the layering ignores it and the edge goes from b's top to a's bottom
    assert rows(graph) == {"a": 0, "b": 1, "c": 2}
    assert [(edge.source, edge.target) for edge in back] == [("b", "a")]
    a, b = (next(n for n in graph.nodes if n.id == name) for name in "ab")
    path = back[0].path
    assert path.startswith("M") and f",{b.y:.1f}" in path.split(" ")[0]
    assert path.endswith(f",{a.y + NODE_HEIGHT:.1f}")


def test_self_loop_and_unreachable_nodes_are_drawn():
    # given a node looping on itself and a node nothing reaches
    graph = layout(spec("a", a={"again": "a", "success": "b"}, b={}, orphan={"success": "b"}))
    # then all three nodes are placed and the self-loop is an edge too
    assert {node.id for node in graph.nodes} == {"a", "b", "orphan"}
    assert any(edge.source == edge.target == "a" for edge in graph.edges)


def test_long_edges_bend_around_nodes_and_nothing_overlaps():
    # given an edge skipping two rows beside a chain
    graph = layout(spec("a", a={"success": "b", "error": "d"}, b={"success": "c"}, c={"success": "d"}, d={}))
    # then no two nodes overlap and the long edge passes through intermediate points
    boxes = [(n.x, n.y, n.x + n.width, n.y + n.height) for n in graph.nodes]
    for i, one in enumerate(boxes):
        for other in boxes[i + 1 :]:
            assert one[2] <= other[0] or other[2] <= one[0] or one[3] <= other[1] or other[3] <= one[1]
    long_edge = next(edge for edge in graph.edges if edge.label == "error")
    assert long_edge.path.count("C") >= 2
    assert all(
        0 <= n.x and n.x + n.width <= graph.width and n.y + n.height <= graph.height for n in graph.nodes
    )


def test_empty_spec_and_a_long_chain():
    assert layout({"nodes": {}}).nodes == []
    # a chain longer than Python's recursion limit is laid out without recursion
    chain = {f"n{i}": {"success": f"n{i + 1}"} for i in range(1500)}
    chain["n1500"] = {}
    graph = layout(spec("n0", **chain))
    assert rows(graph)["n1500"] == 1500
