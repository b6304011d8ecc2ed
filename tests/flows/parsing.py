"""Steps of the parser tests: the problems parse_flow reports for a text, and the one at a path."""

from __future__ import annotations

from textwrap import dedent

import pytest

from flows.dsl.parser import parse_flow
from flows.dsl.spec import FlowValidationError


def problems_of(text: str):
    with pytest.raises(FlowValidationError) as caught:
        parse_flow(dedent(text))
    return caught.value.problems


def only(problems, path: str):
    found = [p for p in problems if p.path == path]
    assert len(found) == 1, f"expected one problem at {path!r}, got {problems}"
    return found[0]
