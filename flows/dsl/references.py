"""The account secrets a flow's code names (`secrets.API_KEY`, `secrets["DB_PASSWORD"]`), to warn before a run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flows.dsl.spec import FlowSpec

# `secrets.NAME`, `secrets?.NAME`, `secrets["NAME"]` in scripts and `${...}` templates alike; a name built at
# run time (`secrets[key]`) cannot be known before the run and is not reported.
_SECRET = re.compile(r"""\bsecrets\s*(?:\??\.\s*([A-Za-z_$][\w$]*)|\[\s*(['"`])([^'"`\\]+)\2\s*\])""")


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def secret_names(spec: FlowSpec) -> dict[str, list[str]]:
    """Secret name → the ids of the nodes whose params name it, both in the order they appear."""
    found: dict[str, list[str]] = {}
    for node in spec.nodes.values():
        for text in _strings(node.params):
            for match in _SECRET.finditer(text):
                nodes = found.setdefault(match.group(1) or match.group(3), [])
                if node.id not in nodes:
                    nodes.append(node.id)
    return found
