"""Go-style durations: units, compounds, bare numbers, and the errors a flow author sees."""

import pytest

from core.durations import DurationError, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200ms", 0.2),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("500us", 0.0005),
        ("250ns", 2.5e-7),
        ("0", 0.0),
        (" 10s ", 10.0),
    ],
)
def test_parse_duration_accepts_go_syntax(text, seconds):
    # given a Go duration string / when parsed / then it is that many seconds
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("number", "seconds"), [(3, 3.0), (0, 0.0), (2.5, 2.5)])
def test_parse_duration_reads_bare_numbers_as_seconds(number, seconds):
    # given a bare YAML number / when parsed / then it counts seconds
    assert parse_duration(number) == seconds


@pytest.mark.parametrize("bad", ["", "5", "5 s", "s", "1x", "10sec", "-5s", "1m30", "ms200"])
def test_parse_duration_rejects_malformed_text(bad):
    # given a string without a proper unit / when parsed / then DurationError names it
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [True, None, [1], {"s": 1}, -1])
def test_parse_duration_rejects_non_durations(bad):
    # given a boolean, null, collection or negative number / when parsed / then it is refused
    with pytest.raises(DurationError):
        parse_duration(bad)
