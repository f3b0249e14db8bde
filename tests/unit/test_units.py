"""Durations as people write them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multispot.units import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        ("1d2h3m4s", 86400 + 7200 + 180 + 4),
        ("250ms", 0.25),
        ("1m500ms", 60.5),
        ("3600", 3600.0),
        ("0", 0.0),
        ("12.5", 12.5),
        (" 30m ", 1800.0),
        ("1H", 3600.0),
        ("1h 30m", 5400.0),
        (3600, 3600.0),
        (1.5, 1.5),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts_human_forms(text: str | float, seconds: float) -> None:
    result = parse_duration(text)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "abc", "5x", "h", "1h30", "30m1", "1h-30m", "-5", "-5s", "--1", "1..5h", "nan", "inf", "s5"],
)
def test_parse_duration_rejects_garbage_strings(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_parse_duration_error_message_shows_examples() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("5x")
    message = str(info.value)
    assert "5x" in message
    assert "90s" in message or "30m" in message


@pytest.mark.parametrize("bad", [-1, -0.5, float("-inf"), float("nan"), float("inf")])
def test_parse_duration_rejects_negative_and_non_finite_numbers(bad: float) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("flag", [True, False])
def test_parse_duration_rejects_bool(flag: bool) -> None:
    # bool is an int subclass: True must not quietly mean one second
    with pytest.raises(ValueError):
        parse_duration(flag)


@given(d=st.integers(0, 30), h=st.integers(0, 23), m=st.integers(0, 59), s=st.integers(0, 59))
def test_parse_duration_parts_add_up(d: int, h: int, m: int, s: int) -> None:
    text = f"{d}d{h}h{m}m{s}s"
    assert parse_duration(text) == d * 86400 + h * 3600 + m * 60 + s
    # any subset of the parts, in order, adds up too
    assert parse_duration(f"{h}h{s}s") == h * 3600 + s


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_parse_duration_numeric_string_round_trip(value: float) -> None:
    assert parse_duration(repr(value)) == value
    assert parse_duration(value) == value


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0.0s"),
        (12.5, "12.5s"),
        (59, "59.0s"),
        (60, "1m00s"),
        (185, "3m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3720, "1h02m"),
        (47 * 3600 + 59 * 60, "47h59m"),
        (48 * 3600, "2d00h"),
        (3 * 86400 + 5 * 3600, "3d05h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=60, max_value=10**7))
def test_format_duration_parses_back_to_within_its_precision(seconds: int) -> None:
    text = format_duration(seconds)
    back = parse_duration(text)
    # the smallest shown unit is the precision (seconds under an hour, minutes under 48h, hours
    # beyond); smaller units are dropped, never rounded up
    precision = 1 if seconds < 3600 else 60 if seconds < 48 * 3600 else 3600
    assert back <= seconds < back + precision
