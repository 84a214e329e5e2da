"""Warm-up caps: grow by a factor a day from the start date, up to a ceiling."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from campaigns.errors import InputError
from campaigns.rates import WarmupPlan

START = date(2026, 11, 1)


@pytest.mark.parametrize("day, cap", [
    (date(2026, 10, 1), 100),     # before the start: the start cap
    (date(2026, 10, 31), 100),
    (START, 100),
    (date(2026, 11, 2), 200),
    (date(2026, 11, 3), 400),
    (date(2026, 11, 4), 800),
    (date(2026, 11, 5), 1000),    # 1600 capped
    (date(2036, 11, 5), 1000),
])
def test_doubling_plan_with_a_ceiling(day: date, cap: int) -> None:
    assert WarmupPlan(100, 2.0, START, max_cap=1000).cap_on(day) == cap


def test_rounded_down_without_float_noise() -> None:
    plan = WarmupPlan(100, 1.1, START)
    assert [plan.cap_on(START + timedelta(days=d)) for d in range(4)] == [100, 110, 121, 133]
    assert WarmupPlan(10, 1.5, START).cap_on(START + timedelta(days=1)) == 15
    assert WarmupPlan(3, 1.5, START).cap_on(START + timedelta(days=1)) == 4   # 4.5 → 4


def test_day_boundary_is_the_calendar_day() -> None:
    plan = WarmupPlan(50, 1.5, START, max_cap=10_000)
    assert plan.cap_on(START) == 50
    assert plan.cap_on(START + timedelta(days=1)) == 75


def test_no_ceiling_and_far_future_does_not_overflow() -> None:
    plan = WarmupPlan(100, 2.0, START)
    assert plan.cap_on(START + timedelta(days=10)) == 102_400
    assert plan.cap_on(START + timedelta(days=100_000)) == 2 ** 62
    assert WarmupPlan(100, 2.0, START, max_cap=5000).cap_on(START + timedelta(days=100_000)) == 5000


def test_flat_plan() -> None:
    assert WarmupPlan(500, 1.0, START).cap_on(START + timedelta(days=30)) == 500


def test_a_ceiling_below_the_start_caps_every_day() -> None:
    plan = WarmupPlan(100, 2.0, START, max_cap=40)
    assert plan.cap_on(START - timedelta(days=1)) == plan.cap_on(START + timedelta(days=3)) == 40


@pytest.mark.parametrize("start, factor, max_cap", [(0, 2.0, None), (10, 0.5, None),
                                                    (10, float("inf"), None), (10, 2.0, 0)])
def test_bad_plans_are_refused(start: int, factor: float, max_cap: int | None) -> None:
    with pytest.raises(InputError):
        WarmupPlan(start, factor, START, max_cap)
