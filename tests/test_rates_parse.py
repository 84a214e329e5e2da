"""Rate strings as people write them in campaigns.toml and on the command line."""
from __future__ import annotations

import pytest

from campaigns.errors import InputError
from campaigns.rates import Rate, format_rate, parse_rate


@pytest.mark.parametrize("text, per_s", [
    ("50/s", 50.0),
    ("3000/min", 50.0),
    ("20000/h", 20000 / 3600),
    ("1.5/s", 1.5),
    ("100/d", 100 / 86400),
    (" 10 / minute ", 10 / 60),
    ("2/hour", 2 / 3600),
    ("7/sec", 7.0),
    ("0.5/day", 0.5 / 86400),
    ("5/S", 5.0),
])
def test_parse_rate_accepts_the_documented_forms(text: str, per_s: float) -> None:
    rate = parse_rate(text)
    assert rate.per_s == pytest.approx(per_s)
    assert rate.text == text.strip()
    assert rate.emission_interval_s == pytest.approx(1 / per_s)


@pytest.mark.parametrize("text", ["", "50", "50/", "/s", "50/w", "fifty/s", "-5/s", "0/s",
                                  "5/s/s", "1e3/s", "5 per second"])
def test_parse_rate_refuses_with_the_value_and_the_expected_forms(text: str) -> None:
    with pytest.raises(InputError) as err:
        parse_rate(text, field="rate")
    message = str(err.value)
    assert repr(text) in message
    assert "50/s" in message and "3000/min" in message
    assert message.startswith("field 'rate': ")


def test_parse_rate_refuses_non_text() -> None:
    with pytest.raises(InputError, match="not text"):
        parse_rate(50)  # type: ignore[arg-type]


@pytest.mark.parametrize("per_s, text", [
    (50.0, "50/s"),
    (1.5, "1.5/s"),
    (20000 / 3600, "20000/h"),
    (100 / 86400, "100/d"),
    (1 / 60, "1/min"),
    (3000 / 60, "50/s"),
    (0.25, "15/min"),
    (1 / 7, "8.57/min"),
    (0.0, "0/s"),
    (float("inf"), "unlimited"),
])
def test_format_rate_reads_like_a_person_would_write_it(per_s: float, text: str) -> None:
    assert format_rate(per_s) == text


@pytest.mark.parametrize("text", ["50/s", "3000/min", "20000/h", "1.5/s", "100/d", "12/h"])
def test_format_rate_round_trips(text: str) -> None:
    rate = parse_rate(format_rate(parse_rate(text).per_s))
    assert rate.per_s == pytest.approx(parse_rate(text).per_s)


def test_rate_prints_as_written() -> None:
    assert str(Rate(per_s=50.0, text="3000/min")) == "3000/min"
