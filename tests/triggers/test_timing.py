"""Schedule timing: cron times follow their time zone across DST changes; intervals sit on a fixed grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import ValidationFailed
from triggers import timing


def test_timing_cron_next_follows_the_time_zone_across_spring_forward():
    # Given a 09:00 schedule in Paris, the day before clocks go forward (29 March 2026)
    before = datetime(2026, 3, 28, 7, 30, tzinfo=UTC)
    # When the next two times are computed
    first = timing.cron_next("0 9 * * *", "Europe/Paris", before)
    second = timing.cron_next("0 9 * * *", "Europe/Paris", first)
    # Then both are 09:00 in Paris: 08:00 UTC in winter time, 07:00 UTC in summer time
    assert first == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    assert second == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_timing_cron_next_follows_the_time_zone_across_fall_back_and_fires_a_repeated_hour_once():
    # Given a 02:30 schedule in Paris on the night the 02:00-03:00 hour happens twice (25 October 2026)
    start = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    # When the next times are computed
    times = [timing.cron_next("30 2 * * *", "Europe/Paris", start)]
    for _ in range(2):
        times.append(timing.cron_next("30 2 * * *", "Europe/Paris", times[-1]))
    # Then 02:30 summer time (00:30 UTC), then the next day's 02:30 winter time (01:30 UTC): not twice that night
    assert times == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
        datetime(2026, 10, 27, 1, 30, tzinfo=UTC),
    ]


def test_timing_cron_previous_counts_a_firing_a_little_early_for_its_minute():
    # Given a firing 1 s before 10:00 UTC (the worker's clock slightly behind beat's)
    at = datetime(2026, 5, 1, 9, 59, 59, tzinfo=UTC)
    # When its scheduled time is computed
    slot = timing.cron_previous("0 * * * *", "UTC", at)
    # Then it is 10:00, and exactly on the minute is that minute too
    assert slot == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert timing.cron_previous("0 * * * *", "UTC", slot) == slot
    assert timing.cron_previous("0 * * * *", "UTC", at - timedelta(seconds=5)) == datetime(
        2026, 5, 1, 9, 0, tzinfo=UTC
    )


def test_timing_interval_grid_is_anchored():
    anchor = datetime(2026, 5, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    assert timing.interval_previous(anchor, 1.0, anchor - timedelta(seconds=1)) is None
    assert timing.interval_previous(anchor, 1.0, anchor + timedelta(seconds=2.7)) == anchor + timedelta(
        seconds=2
    )
    assert timing.interval_next(anchor, 1.0, anchor + timedelta(seconds=2)) == anchor + timedelta(seconds=3)


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (lambda: timing.cron_fields("* * * *"), "cron"),
        (lambda: timing.cron_fields("61 * * * *"), "cron"),
        (lambda: timing.interval_seconds("500ms"), "interval"),
        (lambda: timing.interval_seconds("soon"), "interval"),
        (lambda: timing.zone("Mars/Olympus"), "timezone"),
    ],
)
def test_timing_rejects_bad_values_with_their_path(call, path):
    with pytest.raises(ValidationFailed) as raised:
        call()
    assert raised.value.details[0]["path"] == path
