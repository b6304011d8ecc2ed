"""Values PostgreSQL can store: NUL characters, lone surrogates and non-finite numbers are replaced before any
write, so a node that returns or logs one gets its result stored instead of an error inside the finish."""

from __future__ import annotations

import json
import math
from typing import Any

REPLACEMENT = "\ufffd"


def _clean_text(value: str) -> str:
    value = value.replace("\x00", REPLACEMENT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from a script or a JSON `\ud800` escape)
        value = "".join(REPLACEMENT if "\ud800" <= char <= "\udfff" else char for char in value)
    return value


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN/Infinity have no JSON form: JSON's null
    if isinstance(value, dict):
        return {(_clean_text(k) if isinstance(k, str) else k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def storable_json(value: Any) -> str:
    """`value` as JSON text that PostgreSQL's jsonb accepts: one dump when it is clean (the usual case)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
        if "\\u0000" not in text:
            text.encode("utf-8")
            return text
    except (ValueError, UnicodeEncodeError):
        pass
    return json.dumps(_clean(value), ensure_ascii=False, allow_nan=False, default=str)


def storable(value: Any) -> Any:
    """`value` with what jsonb cannot hold replaced (for ORM writes)."""
    return json.loads(storable_json(value))
