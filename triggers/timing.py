"""When a schedule fires: cron expressions in a time zone (via croniter) and intervals on a fixed grid."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.schedules import crontab
from croniter import croniter

from core.durations import DurationError, parse_duration
from core.errors import ValidationFailed

MIN_INTERVAL_SECONDS = 1.0
# Beat fires a cron entry at its minute; the task may run on a host whose clock is a little behind beat's, so a
# firing up to this much early still counts for the minute it was meant for.
CRON_EARLY_TOLERANCE = timedelta(seconds=2)


def _invalid(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"`{path}` is not valid: {message}.", details=[{"path": path, "message": message}]
    )


def cron_fields(expression: str) -> list[str]:
    """The five fields of a cron expression (minute hour day-of-month month day-of-week); 400 otherwise.

    Accepted only when both croniter (next times) and Celery's crontab (what beat fires) understand it."""
    fields = expression.split()
    if len(fields) != 5:
        raise _invalid("cron", "expected 5 fields: minute hour day-of-month month day-of-week")
    if not croniter.is_valid(" ".join(fields)):
        raise _invalid("cron", "not a valid cron expression")
    try:
        crontab(*fields)
    except (ValueError, IndexError, KeyError) as exc:
        raise _invalid("cron", f"not supported by the scheduler ({str(exc)[:100]})")
    return fields


def interval_seconds(value: str) -> float:
    """Seconds of an interval duration (`30s`, `1m30s`); at least one second."""
    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        raise _invalid("interval", str(exc))
    if not math.isfinite(seconds) or seconds < MIN_INTERVAL_SECONDS:
        raise _invalid("interval", "must be at least 1s")
    if seconds > 366 * 86400:
        raise _invalid("interval", "must be at most 366 days")
    return seconds


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (e.g. `Europe/Paris`); 400 when unknown."""
    try:
        if not name or "\x00" in name or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid("timezone", f"unknown time zone {name[:64]!r}")


def _first_occurrence(moment: datetime, tz: ZoneInfo) -> datetime:
    """A wall time that happens twice (the hour repeated when clocks go back) fires once: at its first instant."""
    wall = moment.astimezone(tz).replace(tzinfo=None)
    first = wall.replace(tzinfo=tz, fold=0)
    return first if first.utcoffset() != moment.astimezone(tz).utcoffset() else moment


def cron_next(expression: str, tz_name: str, after: datetime) -> datetime:
    """The first cron time strictly after `after`, in UTC; a repeated wall time counts once."""
    tz = zone(tz_name)
    cursor = after.astimezone(tz)
    for _ in range(3):
        candidate = croniter(expression, cursor).get_next(datetime)
        first = _first_occurrence(candidate, tz)
        if first > after:
            return first.astimezone(UTC)
        cursor = candidate
    return candidate.astimezone(UTC)


def cron_previous(expression: str, tz_name: str, at: datetime) -> datetime:
    """The latest cron time at or before `at` (allowing CRON_EARLY_TOLERANCE), in UTC."""
    tz = zone(tz_name)
    start = (at + CRON_EARLY_TOLERANCE).astimezone(tz)
    # croniter's get_prev is strictly before its start: a start exactly on a cron time must count it.
    candidate = croniter(expression, start + timedelta(microseconds=1)).get_prev(datetime)
    return _first_occurrence(candidate, tz).astimezone(UTC)


def interval_previous(anchor: datetime, seconds: float, at: datetime) -> datetime | None:
    """The latest grid time anchor + k·seconds at or before `at`; None before the anchor."""
    if at < anchor:
        return None
    steps = math.floor((at - anchor).total_seconds() / seconds)
    return anchor + timedelta(seconds=steps * seconds)


def interval_next(anchor: datetime, seconds: float, after: datetime) -> datetime:
    if after < anchor:
        return anchor
    steps = math.floor((after - anchor).total_seconds() / seconds) + 1
    return anchor + timedelta(seconds=steps * seconds)
