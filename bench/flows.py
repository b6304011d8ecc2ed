"""The flows the scenarios run: trivial transform chains and a parallel batch, as YAML."""

from __future__ import annotations


def linear(name: str, nodes: int, queue: str | None = None) -> str:
    """`nodes` transform nodes in a line; node i merges `{nI: I}` into the document."""
    lines = [f"metadata: {{name: {name}, start: n1}}", "nodes:"]
    for i in range(1, nodes + 1):
        lines.append(f"  n{i}:")
        lines.append("    type: transform")
        lines.append(f'    params: {{script: "return {{n{i}: {i}}};"}}')
        if queue:
            lines.append(f"    queue: {queue}")
        if i < nodes:
            lines.append(f"    next: {{success: n{i + 1}}}")
    return "\n".join(lines) + "\n"


def fanout(name: str, batch_size: int) -> str:
    """One parallel_batch node over `input.items`; each batch returns the sum and count of its items."""
    return f"""\
metadata: {{name: {name}}}
nodes:
  fan:
    type: parallel_batch
    params:
      items: "${{input.items}}"
      batch_size: {batch_size}
      processor_script: "return {{total: input.items.reduce((a, b) => a + b, 0), count: input.items.length}};"
"""
