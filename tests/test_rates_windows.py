"""Send windows in Europe/Rome wall-clock time, across the 2026 daylight-saving changes
(spring forward Sunday 29 March 02:00 → 03:00, fall back Sunday 25 October 03:00 → 02:00)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from campaigns.errors import InputError
from campaigns.rates import parse_window

UTC = timezone.utc


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


OFFICE = parse_window("mon-fri 09:00-18:00", tz="Europe/Rome")


@pytest.mark.parametrize("moment, open_", [
    (utc(2026, 1, 14, 8, 0), True),     # Wed 09:00 CET (UTC+1)
    (utc(2026, 1, 14, 7, 59), False),   # 08:59
    (utc(2026, 1, 14, 16, 59), True),   # 17:59
    (utc(2026, 1, 14, 17, 0), False),   # 18:00: the end is excluded
    (utc(2026, 7, 15, 7, 0), True),     # Wed 09:00 CEST (UTC+2)
    (utc(2026, 7, 15, 6, 59), False),
    (utc(2026, 7, 15, 16, 0), False),   # 18:00 CEST
    (utc(2026, 1, 17, 10, 0), False),   # Saturday
    (utc(2026, 3, 27, 8, 0), True),     # Fri before the spring change, 09:00 CET
    (utc(2026, 3, 30, 7, 0), True),     # Mon after it, 09:00 CEST
    (utc(2026, 3, 30, 6, 30), False),   # 08:30 CEST, would be 07:30 in CET
    (utc(2026, 10, 26, 8, 0), True),    # Mon after the autumn change, 09:00 CET
    (utc(2026, 10, 26, 7, 30), False),  # 08:30 CET
])
def test_office_hours_follow_the_local_clock(moment: datetime, open_: bool) -> None:
    assert OFFICE.contains(moment) is open_


@pytest.mark.parametrize("moment, opening", [
    (utc(2026, 3, 27, 17, 30), utc(2026, 3, 30, 7, 0)),    # over the spring-forward weekend
    (utc(2026, 10, 23, 17, 30), utc(2026, 10, 26, 8, 0)),  # over the fall-back weekend
    (utc(2026, 1, 14, 5, 0), utc(2026, 1, 14, 8, 0)),      # later the same day
    (utc(2026, 1, 14, 17, 0), utc(2026, 1, 15, 8, 0)),     # at closing: tomorrow
    (utc(2026, 1, 14, 12, 0), utc(2026, 1, 14, 12, 0)),    # open now: now
])
def test_next_opening(moment: datetime, opening: datetime) -> None:
    result = OFFICE.next_opening(moment)
    assert result == opening and result.tzinfo is not None and result.utcoffset() == timedelta(0)


def test_next_opening_of_a_time_skipped_by_spring_forward_is_the_change() -> None:
    night = parse_window("daily 02:30-05:00", tz="Europe/Rome")
    # 01:00 CET on 29 March; 02:30 does not exist that night, the clock jumps to 03:00 CEST.
    opening = night.next_opening(utc(2026, 3, 29, 0, 0))
    assert opening == utc(2026, 3, 29, 1, 0)
    assert night.contains(opening) and not night.contains(opening - timedelta(seconds=1))


def test_a_span_wholly_inside_the_skipped_hour_does_not_open_that_night() -> None:
    gap = parse_window("daily 02:00-02:30", tz="Europe/Rome")
    assert gap.next_opening(utc(2026, 3, 28, 23, 30)) == utc(2026, 3, 30, 0, 0)  # 02:00 CEST


def test_an_opening_in_the_repeated_hour_is_its_first_occurrence() -> None:
    night = parse_window("daily 02:30-05:00", tz="Europe/Rome")
    assert night.next_opening(utc(2026, 10, 25, 0, 0)) == utc(2026, 10, 25, 0, 30)  # 02:30 CEST


@pytest.mark.parametrize("text", ["mon-fri 09:00-18:00; sat 10:00-13:00",
                                  "daily 02:30-05:00", "fri 22:00-02:00", "sun 00:00-24:00"])
def test_next_opening_is_open_and_just_before_it_was_closed(text: str) -> None:
    window = parse_window(text, tz="Europe/Rome")
    for start in (utc(2026, 3, 25), utc(2026, 10, 21)):   # the weeks of both changes
        for hour in range(0, 24 * 8, 1):
            moment = start + timedelta(hours=hour, minutes=17)
            opening = window.next_opening(moment)
            assert opening >= moment and window.contains(opening)
            if opening != moment:
                assert not window.contains(opening - timedelta(seconds=1))
                assert opening - moment <= timedelta(days=7)


def test_several_windows_and_day_lists() -> None:
    window = parse_window("mon,wed,fri 08:30-12:00; sat 10:00-13:00", tz="Europe/Rome")
    assert window.contains(utc(2026, 1, 14, 7, 30))        # Wed 08:30
    assert not window.contains(utc(2026, 1, 13, 8, 0))     # Tue
    assert window.contains(utc(2026, 1, 17, 11, 0))        # Sat 12:00
    assert not window.contains(utc(2026, 1, 17, 12, 0))    # Sat 13:00
    assert window.next_opening(utc(2026, 1, 16, 12, 0)) == utc(2026, 1, 17, 9, 0)
    assert window.describe() == "Mon,Wed,Fri 08:30-12:00; Sat 10:00-13:00 (Europe/Rome)"


def test_overnight_span_belongs_to_its_start_day() -> None:
    late = parse_window("fri 22:00-02:00", tz="Europe/Rome")
    assert late.contains(utc(2026, 1, 16, 21, 30))      # Fri 22:30
    assert late.contains(utc(2026, 1, 17, 0, 30))       # Sat 01:30
    assert not late.contains(utc(2026, 1, 17, 1, 0))    # Sat 02:00
    assert not late.contains(utc(2026, 1, 15, 23, 30))  # Fri 00:30 (Thursday night)


def test_daily_whole_day_is_always_open() -> None:
    always = parse_window("daily 00:00-24:00", tz="Europe/Rome")
    for hour in range(0, 24 * 7):
        assert always.contains(utc(2026, 3, 26) + timedelta(hours=hour))
    assert always.describe() == "Daily 00:00-24:00 (Europe/Rome)"


def test_describe_and_case() -> None:
    window = parse_window("MON-FRI 9:00-18:00;Saturday 10:00-13:00", tz="Europe/Rome")
    assert window.describe() == "Mon-Fri 09:00-18:00; Sat 10:00-13:00 (Europe/Rome)"
    assert parse_window("fri-mon 10:00-11:00").describe() == "Mon,Fri-Sun 10:00-11:00 (UTC)"


@pytest.mark.parametrize("text", ["", ";", "mon-fri", "mon-fri 9-18", "funday 09:00-10:00",
                                  "mon 25:00-26:00", "mon 09:00-09:00", "mon 24:00-10:00",
                                  "mon 09:60-10:00", "09:00-18:00"])
def test_bad_windows_name_the_expected_form(text: str) -> None:
    with pytest.raises(InputError) as err:
        parse_window(text, tz="Europe/Rome")
    message = str(err.value)
    assert repr(text) in message
    assert "HH:MM" in message or "00:00" in message


def test_bad_time_zone_and_naive_datetimes() -> None:
    with pytest.raises(InputError, match="IANA"):
        parse_window("daily 09:00-10:00", tz="Mars/Olympus")
    with pytest.raises(InputError, match="no time zone"):
        OFFICE.contains(datetime(2026, 1, 14, 9, 0))
