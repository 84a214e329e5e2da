"""Cron expressions in a time zone, with the two DST rules people expect.

Five fields: minute hour day-of-month month day-of-week; `*`, numbers, ranges `1-5`, steps
`*/15` or `0-30/10`, lists `1,15`, month names jan-dec and weekday names sun-sat (0 and 7 are
Sunday). As in cron, when both day fields are restricted a day matching either fires.

Times are wall-clock times in the schedule's zone:
- a time that does not exist (02:30 on the spring-forward day in Europe/Rome) fires at the
  first minute that does (03:00);
- a time that exists twice (02:30 on the fall-back day) fires once, at the first.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.errors import InputError

_MONTHS = {n: i for i, n in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))
#: how far ahead a firing is looked for (a "30 2 29 2 *" fires once in four years)
HORIZON_DAYS = 366 * 5


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]     # Python's: Monday 0 … Sunday 6
    any_day: bool                # day of month is *
    any_weekday: bool            # day of week is *

    def day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        by_day, by_weekday = d.day in self.days, d.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday


def zone(name: str, field: str = "--timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone {name!r}: expected an IANA name such as "
                         f"Europe/Rome or UTC", field=field) from None


def parse_cron(text: str) -> Cron:
    parts = text.split()
    if len(parts) != 5:
        raise InputError(f"{text!r}: expected 5 fields (minute hour day-of-month month "
                         f"day-of-week), e.g. '0 9 * * mon'", field="--cron")
    values = [_field(p, *spec) for p, spec in zip(parts, _FIELDS)]
    weekdays = frozenset((d - 1) % 7 for d in values[4])   # cron 0/7 = Sunday
    return Cron(text=" ".join(parts), minutes=tuple(sorted(values[0])),
                hours=tuple(sorted(values[1])), days=frozenset(values[2]),
                months=frozenset(values[3]), weekdays=weekdays,
                any_day=parts[2] == "*", any_weekday=parts[4] == "*")


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    out: set[int] = set()
    for item in text.lower().split(","):
        base, _, step_text = item.partition("/")
        step = _number(step_text, name, 1, 10_000, names={}) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _number(a, name, low, high, names), _number(b, name, low, high, names)
            if start > end:
                raise InputError(f"{name}: range {base!r} goes backwards", field="--cron")
        else:
            start = _number(base, name, low, high, names)
            end = high if step_text else start
        out.update(range(start, end + 1, step))
    return out


def _number(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text[:3]) if text[:3] in names and text.isalpha() else None
    if value is None:
        if not text.isdigit():
            raise InputError(f"{name}: {text!r} is not a number"
                             + (f" or one of {', '.join(names)}" if names else ""), field="--cron")
        value = int(text)
    if not low <= value <= high:
        raise InputError(f"{name}: {value} is outside {low}-{high}", field="--cron")
    return value


def local_to_utc(naive: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time: the first occurrence of an ambiguous one, the
    first existing minute after a gap for one that does not exist."""
    probe = naive
    for _ in range(24 * 60):
        aware = probe.replace(tzinfo=tz, fold=0)
        utc = aware.astimezone(timezone.utc)
        if utc.astimezone(tz).replace(tzinfo=None) == probe:
            return utc
        probe += timedelta(minutes=1)
    raise InputError(f"{naive} does not exist in {tz.key}")


def next_firing(cron: Cron, after: datetime, tz: ZoneInfo) -> datetime:
    """The first firing strictly after `after` (aware), in UTC."""
    start = after.astimezone(tz).date()
    for offset in range(HORIZON_DAYS):
        day = start + timedelta(days=offset)
        if not cron.day_matches(day):
            continue
        for hour in cron.hours:
            for minute in cron.minutes:
                at = local_to_utc(datetime.combine(day, time(hour, minute)), tz)
                if at > after:
                    return at
    raise InputError(f"cron {cron.text!r} never fires within {HORIZON_DAYS // 366} years",
                     field="--cron")


def parse_at(text: str, tz: ZoneInfo) -> datetime:
    """"2026-12-01 08:30" (or ISO 8601) in zone `tz`, as UTC; an offset in the text wins."""
    try:
        value = datetime.fromisoformat(text.strip().replace("T", " "))
    except ValueError:
        raise InputError(f"{text!r}: expected a date and time such as '2026-12-01 08:30'",
                         field="--at") from None
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc)
    return local_to_utc(value, tz)
