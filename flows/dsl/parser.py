"""`parse_flow(text)`: flow YAML to a FlowSpec, or FlowValidationError listing every problem and position."""

from __future__ import annotations

import math

from flows.dsl.spec import FlowSpec, FlowValidationError, Problem
from flows.dsl.validate import Validator
from flows.dsl.yamltree import MAX_ALIAS_EXPANSION, MAX_TEXT_BYTES, load

__all__ = ["MAX_ALIAS_EXPANSION", "MAX_TEXT_BYTES", "parse_flow"]


def _order(problem: Problem) -> tuple[float, float]:
    # Document order, so a reader can fix them top to bottom; problems without a position come first.
    return (problem.line or -math.inf, problem.column or -math.inf)


def parse_flow(text: str | bytes) -> FlowSpec:
    """Parse and validate a flow; raises FlowValidationError with all problems at once."""
    validator = Validator(load(text))
    spec = validator.spec()
    if validator.problems or spec is None:
        problems = validator.problems or [Problem("", None, None, "the flow is not valid")]
        raise FlowValidationError(sorted(problems, key=_order))
    return spec
