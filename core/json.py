"""What JSON the system stores and hands to scripts: one nesting limit, one number range, one walker."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Nesting allowed in a JSON body, a flow's YAML, a script's output and a node's output: the document is
# copied, redacted and stored recursively, so a deeper value would fail far from where it came in.
MAX_DEPTH = 100
# The largest integer a script (IEEE doubles in V8), PostgreSQL's jsonb consumers and the Go original all take
# as it is. It bounds a float in a request too, though a script could take 1e300: JSON Schema counts a float
# with no fractional part as an integer, so the published schema cannot tell 1e300 from a 301-digit integer,
# and the server refuses both alike. (A node's output is not a request: it may hold 1e300.)
MAX_INT = 2**63 - 1
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def walk(value: Any) -> Iterator[tuple[Any, str, int]]:
    """Every value inside `value` (itself first) as (value, path, depth), depth 0 at the top. Iterative, so a
    hostile value cannot exhaust the stack; a caller that stops early stops the walk."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        yield item, path, depth
        if isinstance(item, dict):
            stack.extend(
                (child, f"{path}.{key}" if path else str(key), depth + 1) for key, child in item.items()
            )
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))


def storable_problem(value: Any, *, max_depth: int = MAX_DEPTH) -> tuple[str, str] | None:
    """(path, message) for the first part of `value` PostgreSQL could not store or a script could not take
    as it is — nested over `max_depth`, a NUL or lone surrogate in a string or key, a number beyond ±MAX_INT —
    else None."""
    for item, path, depth in walk(value):
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return path, f"nested more than {max_depth} levels deep"
            for key in item if isinstance(item, dict) else ():
                problem = _text_problem(key)
                if problem:
                    return path or "(key)", problem
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return path, problem
        elif isinstance(item, int | float) and not isinstance(item, bool) and abs(item) > MAX_INT:
            return path, f"number out of range: at most {MAX_INT} in magnitude"
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "NUL characters are not allowed."
    if _LONE_SURROGATE.search(text):
        return "Unpaired surrogate characters are not allowed."
    return None
