"""Send rates as people write them: "50/s", "3000/min", "20000/h", "1.5/s", "100/d"."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from campaigns.errors import InputError

# Seconds per unit; the first name of each unit is the one `format_rate` writes.
_UNITS: dict[str, float] = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}
_FORMAT_UNITS: tuple[tuple[str, float], ...] = (
    ("s", 1.0), ("min", 60.0), ("h", 3600.0), ("d", 86400.0))
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*/\s*([a-zA-Z]+)\s*$")
EXPECTED = "a number of messages per unit, like 50/s, 3000/min, 20000/h, 1.5/s or 100/d"


@dataclass(frozen=True, slots=True)
class Rate:
    """A send rate: `per_s` messages per second, `text` as it was written."""
    per_s: float
    text: str

    @property
    def emission_interval_s(self) -> float:
        """Seconds between two messages at this rate."""
        return 1.0 / self.per_s

    def __str__(self) -> str:
        return self.text


def parse_rate(value: str, *, field: str | None = None) -> Rate:
    """Parse "N/unit" (unit: s, min, h, d; also sec, second, minute, hour, day).

    Raises InputError naming the value and the accepted forms."""
    if not isinstance(value, str):
        raise InputError(f"rate {value!r} is not text: expected {EXPECTED}", field=field)
    match = _RATE_RE.match(value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise InputError(f"rate {value!r} not understood: expected {EXPECTED}", field=field)
    count = float(match.group(1))
    if count <= 0:
        raise InputError(f"rate {value!r} must be more than zero: expected {EXPECTED}", field=field)
    return Rate(per_s=count / _UNITS[unit], text=value.strip())


def _number(value: float) -> str:
    if abs(value - round(value)) < 1e-9 * max(1.0, value):
        return str(int(round(value)))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _is_tidy(value: float) -> bool:
    """At least 1 and written exactly with at most two decimals."""
    hundredths = value * 100
    return value >= 1 - 1e-9 and abs(hundredths - round(hundredths)) < 1e-6 + 1e-12 * hundredths


def format_rate(per_s: float) -> str:
    """A human string for a rate: the first of /s, /min, /h, /d in which the number reads
    exactly with at most two decimals (50/s, 1.5/s, 20000/h, 100/d); else the first unit in
    which it is at least 1, rounded to two decimals."""
    if math.isinf(per_s):
        return "unlimited"
    if per_s <= 0 or math.isnan(per_s):
        return "0/s"
    for unit, seconds in _FORMAT_UNITS:
        if _is_tidy(per_s * seconds):
            return f"{_number(per_s * seconds)}/{unit}"
    for unit, seconds in _FORMAT_UNITS:
        if per_s * seconds >= 1:
            return f"{_number(per_s * seconds)}/{unit}"
    return f"{_number(per_s * 86400)}/d"
