"""The GCRA arithmetic, apart from any storage, with an injected clock."""
from __future__ import annotations

import pytest

from campaigns.errors import InputError
from campaigns.rates import GcraBucket, gcra


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_first_request_is_allowed_and_sets_the_arrival_time() -> None:
    result = gcra(None, now=100.0, emission_interval=0.1, burst=1)
    assert result.allowed and result.wait_s == 0
    assert result.new_tat == pytest.approx(100.1)


def test_burst_then_wait_of_one_interval() -> None:
    clock = FakeClock()
    bucket = GcraBucket(10.0, burst=3, clock=clock)
    assert [bucket.acquire().allowed for _ in range(3)] == [True, True, True]
    denied = bucket.acquire()
    assert not denied.allowed
    assert denied.wait_s == pytest.approx(0.1)
    clock.now += denied.wait_s
    assert bucket.acquire().allowed
    assert not bucket.acquire().allowed


def test_denied_request_leaves_the_state_unchanged() -> None:
    first = gcra(None, now=0.0, emission_interval=1.0, burst=1)
    denied = gcra(first.new_tat, now=0.25, emission_interval=1.0, burst=1)
    assert not denied.allowed
    assert denied.new_tat == first.new_tat
    assert denied.wait_s == pytest.approx(0.75)


def test_steady_rate_over_ten_seconds_is_burst_plus_rate_times_time() -> None:
    clock = FakeClock(0.0)
    bucket = GcraBucket(10.0, burst=3, clock=clock)
    allowed = 0
    for ms in range(10_000):         # poll every millisecond for 10 s
        clock.now = ms / 1000
        allowed += bucket.acquire().allowed
    assert allowed == 3 + 99         # the burst at t=0, then one each 0.1 s from 0.1 to 9.9


def test_waiting_exactly_the_returned_wait_always_succeeds() -> None:
    clock = FakeClock(5.0)
    bucket = GcraBucket(7.0, burst=2, clock=clock)
    sent = 0
    while clock.now < 15.0:
        result = bucket.acquire()
        if result.allowed:
            sent += 1
        else:
            clock.now += result.wait_s
            assert bucket.acquire().allowed
            sent += 1
    assert sent == pytest.approx(2 + 7 * 10, abs=1)


def test_idle_time_refills_only_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = GcraBucket(1.0, burst=4, clock=clock)
    assert all(bucket.acquire().allowed for _ in range(4))
    clock.now += 3600                 # an hour idle
    assert [bucket.acquire().allowed for _ in range(5)] == [True] * 4 + [False]


def test_cost_takes_several_slots_at_once() -> None:
    clock = FakeClock()
    bucket = GcraBucket(2.0, burst=5, clock=clock)
    assert bucket.acquire(cost=4).allowed
    result = bucket.acquire(cost=3)   # one slot left, needs three: two intervals of 0.5 s
    assert not result.allowed and result.wait_s == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.acquire(cost=3).allowed


@pytest.mark.parametrize("interval, burst, cost", [(0.0, 1, 1), (-1.0, 1, 1), (0.1, 0, 1),
                                                  (0.1, 1, 0), (0.1, 2, 3)])
def test_impossible_parameters_are_refused(interval: float, burst: int, cost: int) -> None:
    with pytest.raises(InputError):
        gcra(None, 0.0, interval, burst, cost)


def test_bucket_refuses_a_zero_rate() -> None:
    with pytest.raises(InputError):
        GcraBucket(0.0)
