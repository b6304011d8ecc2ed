"""Shared parameter checks for node kinds: precise problems at upload, the same coercions at run time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.durations import DurationError, parse_duration
from flows.nodes.base import PermanentNodeError, Report

# Every kind tolerates params.timeout: the parser validates it and turns it into the node's timeout.
COMMON_PARAMS = frozenset({"timeout"})


def is_expression(value: Any) -> bool:
    """A `${...}` string: its value is only known at run time, so upload-time checks accept it."""
    return isinstance(value, str) and "${" in value


def type_name(value: Any) -> str:
    """The YAML/JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def is_number(value: Any) -> bool:
    # YAML `true` is a bool, and bool is an int subclass in Python: never accept it as a number.
    return isinstance(value, int | float) and not isinstance(value, bool)


class Checker:
    """Reports every problem of one node's params; each check accepts a `${...}` string for a value."""

    def __init__(self, params: dict[str, Any], report: Report) -> None:
        self.params = params
        self.report = report

    def has(self, name: str) -> bool:
        return self.params.get(name) is not None

    def allow(self, *names: str) -> None:
        allowed = set(names) | COMMON_PARAMS
        for key in self.params:
            if key not in allowed:
                expected = ", ".join(sorted(names))
                self.report(key, f"unknown parameter '{key}' (expected one of: {expected})")

    def required(self, name: str) -> bool:
        return self._given(name, required=True) is not None

    def _given(self, name: str, *, required: bool) -> Any:
        """The param's value, or None (reported when it is required)."""
        value = self.params.get(name)
        if value is None and required:
            self.report(name, f"missing required parameter '{name}'")
        return value

    def _fixed(self, name: str, *, required: bool) -> Any:
        """The param's value when known at upload, or None: missing (reported when required) or `${...}`."""
        value = self._given(name, required=required)
        return None if is_expression(value) else value

    def string(self, name: str, *, required: bool = False, allow_empty: bool = False) -> str | None:
        value = self._given(name, required=required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.report(name, f"'{name}' must be a string, got {type_name(value)}")
            return None
        if not allow_empty and not value.strip():
            self.report(name, f"'{name}' must not be empty")
            return None
        return value

    def integer(self, name: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        value = self._fixed(name, required=required)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.report(name, f"'{name}' must be an integer, got {type_name(value)}")
            return None
        if minimum is not None and value < minimum:
            self.report(name, f"'{name}' must be at least {minimum}, got {value}")
            return None
        return value

    def number(self, name: str, *, required: bool = False) -> float | None:
        value = self._fixed(name, required=required)
        if value is None:
            return None
        if not is_number(value):
            self.report(name, f"'{name}' must be a number, got {type_name(value)}")
            return None
        return value

    def boolean(self, name: str) -> bool | None:
        value = self._fixed(name, required=False)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.report(name, f"'{name}' must be true or false, got {type_name(value)}")
            return None
        return value

    def mapping(self, name: str, *, required: bool = False) -> dict[str, Any] | None:
        value = self._fixed(name, required=required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.report(name, f"'{name}' must be a mapping, got {type_name(value)}")
            return None
        return value

    def choice(
        self, name: str, choices: Iterable[str], *, required: bool = False, upper: bool = False
    ) -> str | None:
        value = self.string(name, required=required)
        if value is None or is_expression(value):
            return None
        options = list(choices)
        candidate = value.upper() if upper else value
        if candidate not in options:
            self.report(name, f"'{name}' must be one of {', '.join(options)}, got '{value}'")
            return None
        return candidate

    def duration(self, name: str, *, required: bool = False) -> float | None:
        value = self._fixed(name, required=required)
        if value is None:
            return None
        try:
            return parse_duration(value)
        except DurationError as exc:
            self.report(name, f"'{name}': {exc}")
            return None


def run_duration(value: Any, name: str) -> float:
    """A rendered duration param at run time; a bad value is a permanent error (retrying cannot fix it)."""
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise PermanentNodeError(f"{name}: {exc}")


def run_string(value: Any, name: str, *, required: bool = True) -> str | None:
    """A rendered string param at run time (numbers are accepted and turned into text)."""
    if value is None:
        if required:
            raise PermanentNodeError(f"{name} is required")
        return None
    if is_number(value):
        return str(value)
    if not isinstance(value, str):
        raise PermanentNodeError(f"{name} must be a string, got {type_name(value)}")
    return value


def run_mapping(value: Any, name: str) -> dict[str, Any]:
    """A rendered mapping param at run time; None means empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PermanentNodeError(f"{name} must be a mapping, got {type_name(value)}")
    return value
