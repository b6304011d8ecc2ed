"""Go-style duration strings (`200ms`, `1m30s`) parsed to seconds; pure Python, importable from settings."""

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


class DurationError(ValueError):
    """A duration that does not parse."""


def parse_duration(value: object) -> float:
    """Return seconds for `1m30s`, `200ms`, `5s`; bare numbers are seconds. Raises DurationError."""
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise DurationError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise DurationError(f"invalid duration {value!r}: expected a string like '200ms' or '1m30s'")
    text = value.strip()
    if text == "0":
        return 0.0
    if not text:
        raise DurationError("invalid duration '': expected a string like '200ms' or '1m30s'")
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise DurationError(
            f"invalid duration {value!r}: expected a number with a unit (ns, us, ms, s, m, h), e.g. '200ms', '1m30s'"
        )
    return total
