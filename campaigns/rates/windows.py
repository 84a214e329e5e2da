"""Send windows in local wall-clock time: "mon-fri 09:00-18:00; sat 10:00-13:00".

Times are wall-clock times in the window's time zone, so "09:00" stays 09:00 in Rome on both
sides of a daylight-saving change. A span whose end is before its start runs past midnight
("fri 22:00-02:00" is Friday 22:00 to Saturday 02:00). An opening time that does not exist
on a spring-forward day (02:30 in Rome on the last Sunday of March) opens at the change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.errors import InputError

EXPECTED = ('"DAYS HH:MM-HH:MM", DAYS being daily, a day (mon … sun), a range (mon-fri) or a '
            'list (mon,wed,fri); several windows separated by ";", e.g. '
            '"mon-fri 09:00-18:00; sat 10:00-13:00"')
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPAN_RE = re.compile(r"^\s*([a-z,\-\s]+?)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class Span:
    """On each of `days` (0 = Monday), from `start_min` to `end_min` minutes after local
    midnight; `end_min <= start_min` means the span ends the next day."""
    days: frozenset[int]
    start_min: int
    end_min: int

    def contains(self, weekday: int, minute: int) -> bool:
        if self.start_min < self.end_min:
            return weekday in self.days and self.start_min <= minute < self.end_min
        return ((weekday in self.days and minute >= self.start_min)
                or ((weekday - 1) % 7 in self.days and minute < self.end_min))

    def describe(self) -> str:
        return f"{_describe_days(self.days)} {_hhmm(self.start_min)}-{_hhmm(self.end_min)}"


@dataclass(frozen=True, slots=True)
class Window:
    """One or more spans in one time zone."""
    spans: tuple[Span, ...]
    tz: ZoneInfo

    def contains(self, dt_utc: datetime) -> bool:
        """Whether the window is open at `dt_utc` (an aware datetime)."""
        local = _aware(dt_utc).astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        return any(span.contains(local.weekday(), minute) for span in self.spans)

    def next_opening(self, dt_utc: datetime) -> datetime:
        """The first moment at or after `dt_utc` when the window is open, aware in UTC:
        `dt_utc` itself when it is open now."""
        dt_utc = _aware(dt_utc).astimezone(timezone.utc)
        if self.contains(dt_utc):
            return dt_utc
        today = dt_utc.astimezone(self.tz).date()
        openings = (_opening(today + timedelta(days=offset), span.start_min, self.tz)
                    for offset in range(0, 8) for span in self.spans
                    if (today + timedelta(days=offset)).weekday() in span.days)
        # A span lying wholly in a skipped hour does not open that day: hence `contains`.
        return min(moment for moment in openings if moment > dt_utc and self.contains(moment))

    def describe(self) -> str:
        """"Mon-Fri 09:00-18:00; Sat 10:00-13:00 (Europe/Rome)"."""
        return "; ".join(span.describe() for span in self.spans) + f" ({self.tz.key})"


def parse_window(text: str, tz: str = "UTC") -> Window:
    """Parse one or more spans separated by ";" in time zone `tz` (an IANA name).

    Raises InputError naming the part not understood and the expected form."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InputError(f"unknown time zone {tz!r}: expected an IANA name such as "
                         f"Europe/Rome or UTC") from err
    parts = [part for part in text.split(";") if part.strip()] if isinstance(text, str) else []
    if not parts:
        raise InputError(f"send window {text!r} is empty: expected {EXPECTED}")
    return Window(spans=tuple(_parse_span(part, text) for part in parts), tz=zone)


def _parse_span(part: str, whole: str) -> Span:
    match = _SPAN_RE.match(part.lower())
    if match is None:
        raise InputError(f"send window {whole!r}: {part.strip()!r} not understood: "
                         f"expected {EXPECTED}")
    days = _parse_days(match.group(1), whole)
    start = _minutes(match.group(2), match.group(3), whole, allow_24=False)
    end = _minutes(match.group(4), match.group(5), whole, allow_24=True)
    if start == end:
        raise InputError(f"send window {whole!r}: {part.strip()!r} opens and closes at the "
                         f"same time: use 00:00-24:00 for a whole day")
    return Span(days=days, start_min=start, end_min=end)


def _day_index(name: str, whole: str) -> int:
    name = name.strip()
    if name in DAY_NAMES:
        return DAY_NAMES.index(name)
    if name in _FULL_NAMES:
        return _FULL_NAMES.index(name)
    raise InputError(f"send window {whole!r}: day {name!r} not understood: expected {EXPECTED}")


def _parse_days(spec: str, whole: str) -> frozenset[int]:
    if spec.strip() in ("daily", "every day"):
        return frozenset(range(7))
    days: set[int] = set()
    for item in spec.split(","):
        first, _, last = item.partition("-")
        start = _day_index(first, whole)
        stop = _day_index(last, whole) if last else start
        days.update((start + i) % 7 for i in range((stop - start) % 7 + 1))  # fri-mon wraps
    return frozenset(days)


def _minutes(hours: str, minutes: str, whole: str, *, allow_24: bool) -> int:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and (m or not allow_24)):
        raise InputError(f"send window {whole!r}: time {hours}:{minutes} is not a valid "
                         f"time of day (00:00 to 23:59, or 24:00 as an end)")
    return h * 60 + m


def _opening(day: date, start_min: int, zone: ZoneInfo) -> datetime:
    """The UTC moment local wall time on `day` first reaches `start_min`."""
    naive = datetime.combine(day, time(start_min // 60, start_min % 60))
    before = naive.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
    if before.astimezone(zone).replace(tzinfo=None) == naive:
        return before  # the time exists (the first of two when the clock goes back)
    # Skipped by a spring-forward change: open at the change itself, found by bisection
    # between the two readings of the missing time (the offset changes once in between).
    after = naive.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
    low, high = min(before, after), max(before, after)
    new_offset = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == new_offset:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise InputError(f"{dt.isoformat()} has no time zone: expected an aware UTC datetime")
    return dt


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _describe_days(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "Daily"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    names = [DAY_NAMES[run[0]].title() if len(run) == 1 else
             f"{DAY_NAMES[run[0]].title()}-{DAY_NAMES[run[-1]].title()}" for run in runs]
    return ",".join(names)
