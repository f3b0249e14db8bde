"""Durations as people write them ("90s", "30m", "1h30m", "2d") and as seconds."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
MAX_DURATION = 1000 * 365 * 86400.0  # a millennium: far beyond it, a datetime after it overflows


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: a number of seconds, or parts like ``1h30m``, ``90s``, ``2d``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '90s', '30m', '2h'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        if value > MAX_DURATION or not math.isfinite(value):  # (a huge int never reaches isfinite)
            raise ValueError("that is not a duration: write a finite number of seconds, at most 1000 years")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration is a number of seconds or a string like '90s', '30m', '2h'")
    if len(value) > 100:
        raise ValueError("a duration is a short string like '90s', '30m', '1h30m', '2d'")
    text = value.strip().lower().replace(" ", "")
    try:
        number = float(text)
    except (ValueError, OverflowError):
        pass
    else:
        return parse_duration(number)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text or not math.isfinite(total) or total > MAX_DURATION:
        raise ValueError(
            f"{value[:40]!r} is not a duration: write seconds (3600) or parts like '90s', '30m', '1h30m', '2d'"
        )
    return total


def format_duration(seconds: float | None) -> str:
    """Short human form: ``1h02m``, ``3m05s``, ``12.5s``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
