"""`${...}` in flow params: typed when a string is one expression, interpolated as text otherwise."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

# `\${` is a literal `${` (as in a JS template literal); `$${amount}` is a dollar sign then an expression.
ESCAPE = "\\${"


class TemplateError(ValueError):
    """A malformed template; `position` is the 0-based index of the offending `${` in the string."""

    def __init__(self, message: str, *, position: int) -> None:
        super().__init__(message)
        self.position = position


class _Expression(str):
    """The source of one `${...}` segment (a str subclass, to tell it apart from literal text)."""


def has_template(value: Any) -> bool:
    """Whether any string inside `value` holds an unescaped `${`."""
    if isinstance(value, str):
        return "${" in value.replace(ESCAPE, "")
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(v) for v in value)
    return False


def render(value: Any, evaluate: Callable[[str], Any]) -> Any:
    """`value` with every `${expr}` in its strings replaced; dict keys are left as they are."""
    if isinstance(value, str):
        return render_string(value, evaluate)
    if isinstance(value, dict):
        return {key: render(item, evaluate) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, evaluate) for item in value]
    return value


def render_string(text: str, evaluate: Callable[[str], Any]) -> Any:
    parts = parse(text)
    if len(parts) == 1 and isinstance(parts[0], _Expression):
        return evaluate(parts[0])  # exactly one expression: the value keeps its type
    return "".join(to_text(evaluate(part)) if isinstance(part, _Expression) else part for part in parts)


def parse(text: str) -> list[str]:
    """Literal text and `_Expression`s, in order; literal parts are already unescaped."""
    parts: list[str] = []
    literal: list[str] = []
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            literal.append(text[i:])
            break
        if start > 0 and text[start - 1] == "\\":
            literal.append(text[i : start - 1] + "${")
            i = start + 2
            continue
        literal.append(text[i:start])
        end = _expression_end(text, start + 2)
        if end is None:
            raise TemplateError(f'unterminated "${{" at position {start}', position=start)
        expression = text[start + 2 : end]
        if not expression.strip():
            raise TemplateError(f'empty "${{}}" at position {start}', position=start)
        if any(literal):
            parts.append("".join(literal))
        literal = []
        parts.append(_Expression(expression))
        i = end + 1
    if any(literal) or not parts:
        parts.append("".join(literal))
    return parts


def _expression_end(text: str, i: int) -> int | None:
    """Index of the `}` ending the expression begun at `i` (nested braces, strings, templates skipped)."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            i = _string_end(text, i)
        elif c == "`":
            i = _template_end(text, i)
        elif c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        if i is None:
            return None
        i += 1
    return None


def _string_end(text: str, i: int) -> int | None:
    quote, i = text[i], i + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    return None


def _template_end(text: str, i: int) -> int | None:
    """The closing backtick of a JS template literal, whose own `${...}` may hold braces and strings."""
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "`":
            return i
        if text.startswith("${", i):
            end = _expression_end(text, i + 2)
            if end is None:
                return None
            i = end
        i += 1
    return None


def to_text(value: Any) -> str:
    """A value as it is interpolated: None → "", objects as JSON, numbers as JavaScript prints them."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def js_number(value: float) -> str:
    """Number.prototype.toString(): 1.0 → "1", 1e21 → "1e+21", 1e-7 → "1e-7", 0.000001 → "0.000001"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, as JS does; only the layout differs.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), len(digits) + exponent  # value = 0.digits × 10^n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
