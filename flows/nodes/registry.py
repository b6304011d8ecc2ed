"""The registry of node kinds: `get_kind("transform")`; importing this module registers every built-in kind."""

from __future__ import annotations

import importlib

from flows.nodes.base import NodeKind

_KINDS: dict[str, NodeKind] = {}

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
    for module in BUILTIN_MODULES:
        importlib.import_module(f"flows.nodes.{module}")


def get_kind(name: str) -> NodeKind | None:
    if not _KINDS:
        _load_builtins()
    return _KINDS.get(name)


def known_kinds() -> list[str]:
    if not _KINDS:
        _load_builtins()
    return sorted(_KINDS)
