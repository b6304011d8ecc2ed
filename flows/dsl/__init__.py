"""The flow language: YAML parsing, validation and typed spec objects."""

from typing import Any

from flows.dsl.spec import FlowSpec, FlowValidationError, Problem

__all__ = ["FlowSpec", "FlowValidationError", "Problem", "parse_flow"]


def __getattr__(name: str) -> Any:
    # Lazy: the parser imports the node kinds, and the node kinds import flows.dsl.spec (a cycle if eager).
    if name == "parse_flow":
        from flows.dsl.parser import parse_flow

        return parse_flow
    raise AttributeError(f"module 'flows.dsl' has no attribute {name!r}")
