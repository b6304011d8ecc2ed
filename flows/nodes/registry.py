"""The registry of node kinds: `get_kind("transform")`; the first lookup registers every built-in kind."""

from __future__ import annotations

import importlib

from flows.nodes.base import NodeKind

_KINDS: dict[str, NodeKind] = {}
_loaded = False

BUILTIN_MODULES = (
    "transform",
    "condition",
    "batch",
    "http_request",
    "wait",
    "store",
    "webhook",
    "log",
)


def register(kind: NodeKind) -> NodeKind:
    for name in (kind.name, *kind.aliases):
        _KINDS[name] = kind
    return kind


def _load_builtins() -> None:
    # A flag, not `if not _KINDS`: importing one kind module first must not hide the others.
    global _loaded
    if _loaded:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(f"flows.nodes.{module}")
    _loaded = True


def get_kind(name: str) -> NodeKind | None:
    _load_builtins()
    return _KINDS.get(name)


def known_kinds() -> list[str]:
    _load_builtins()
    return sorted(_KINDS)
