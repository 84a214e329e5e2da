"""Adaptive throttling against a real Redis (database 12) with an injected clock."""
from __future__ import annotations

from typing import Any

import pytest
import redis

from campaigns.errors import InputError
from campaigns.rates import AdaptiveThrottle
from tests.helpers import FakeClock

REDIS_URL = "redis://127.0.0.1:6379/12"
T0 = 1_790_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def adaptive(client: redis.Redis, clock: FakeClock) -> AdaptiveThrottle:
    return AdaptiveThrottle(client, clock=clock)


KEY = "domain:google"
REASON = "421 4.7.28 Our system has detected an unusual rate of unsolicited mail"


def test_unthrottled_key_runs_at_the_configured_rate(adaptive: AdaptiveThrottle) -> None:
    assert adaptive.effective(KEY, 20.0) == (20.0, None)
    assert adaptive.retry_after(KEY) == 0


def test_a_throttle_halves_and_records_reason_and_hint(adaptive: AdaptiveThrottle,
                                                       clock: FakeClock) -> None:
    assert adaptive.throttle(KEY, 20.0, hint_s=30.0, reason=REASON) == 10.0
    assert adaptive.effective(KEY, 20.0) == (10.0, REASON)
    assert adaptive.retry_after(KEY) == pytest.approx(30.0)
    clock.now += 10
    assert adaptive.retry_after(KEY) == pytest.approx(20.0)
    state = adaptive.state(KEY, 20.0)
    assert state.per_s == 10.0 and state.throttled_at == T0
    assert state.retry_after_s == pytest.approx(20)


def test_simultaneous_throttles_count_once_a_stream_keeps_halving(adaptive: AdaptiveThrottle,
                                                                  clock: FakeClock) -> None:
    for _ in range(8):                      # eight workers meet the same 421 at once
        adaptive.throttle(KEY, 20.0, None, REASON)
    assert adaptive.effective(KEY, 20.0)[0] == 10.0
    for _ in range(4):                      # pushback every half second for two seconds
        clock.now += 0.5
        adaptive.throttle(KEY, 20.0, None, REASON)
    assert adaptive.effective(KEY, 20.0)[0] == 2.5


def test_never_below_the_floor(adaptive: AdaptiveThrottle, clock: FakeClock) -> None:
    for _ in range(20):
        clock.now += 2
        adaptive.throttle(KEY, 20.0, None, REASON)
    assert adaptive.effective(KEY, 20.0)[0] == pytest.approx(1 / 60)


def test_recovery_step_by_step_after_quiet_periods(adaptive: AdaptiveThrottle,
                                                   clock: FakeClock) -> None:
    adaptive.throttle(KEY, 20.0, None, REASON)
    clock.now += 2
    adaptive.throttle(KEY, 20.0, None, REASON)          # 5/s, at T0 + 2
    steps = []
    for quiet in (59, 60, 119, 120, 180, 240):
        clock.now = T0 + 2 + quiet
        steps.append(adaptive.effective(KEY, 20.0))
    # each 60 s: max(×1.5, +25 % of 20 = +5)
    assert steps == [(5.0, REASON), (10.0, REASON), (10.0, REASON), (15.0, REASON),
                     (20.0, None), (20.0, None)]


def test_a_throttle_during_recovery_goes_back_to_the_rate_that_held(adaptive: AdaptiveThrottle,
                                                                     clock: FakeClock) -> None:
    adaptive.throttle(KEY, 40.0, None, REASON)          # 20
    clock.now += 60                                      # 20 held a quiet period; now 30
    assert adaptive.throttle(KEY, 40.0, 5.0, "421 slow down") == 20.0   # not 15
    assert adaptive.effective(KEY, 40.0) == (20.0, "421 slow down")
    clock.now += 60                                      # 20 held again: steps of 25 % of it
    assert adaptive.effective(KEY, 40.0)[0] == 25.0
    clock.now += 1
    assert adaptive.throttle(KEY, 40.0, None, REASON) == 20.0
    clock.now += 2                                       # pushed back at the rate that held:
    assert adaptive.throttle(KEY, 40.0, None, REASON) == 10.0   # the receiver got stricter


def test_settles_near_the_rate_a_receiver_accepts(adaptive: AdaptiveThrottle,
                                                  clock: FakeClock) -> None:
    """Issue 11: against Postfix anvil at 3/min (a 421 for a 4th message within 60 s), an
    unconfigured relay seen sending 1/s swung between 0.02 and 0.52/s. Simulated for three
    hours: after the first hour the rate stays near 0.05/s."""
    sent: list[float] = []
    credit, rates, accepted = 0.0, [], 0
    for second in range(3 * 3600):
        clock.now += 1
        rate = adaptive.current(KEY, None)[0] or 1.0
        credit = min(credit + rate, 1.0)
        if credit < 1.0:
            continue
        credit -= 1.0
        sent = [t for t in sent if t > clock.now - 60]
        if len(sent) >= 3:
            adaptive.throttle(KEY, 1.0, None, "421 4.7.0 Error: too many connections")
        else:
            sent.append(clock.now)
            accepted += second >= 3600
        if second >= 3600:
            rates.append(rate)
    assert 0.035 <= min(rates) and max(rates) <= 0.075, (min(rates), max(rates))
    assert accepted / 120 >= 2.0           # messages a minute, of the 3 the receiver takes


def test_a_lower_configured_rate_is_the_ceiling(adaptive: AdaptiveThrottle) -> None:
    adaptive.throttle(KEY, 40.0, None, REASON)          # 20
    assert adaptive.effective(KEY, 8.0)[0] == 8.0


def test_pending_hint_keeps_the_reason_at_full_rate(adaptive: AdaptiveThrottle,
                                                    clock: FakeClock) -> None:
    adaptive.throttle(KEY, 1.0, 3600.0, "421 come back in an hour")
    clock.now += 600                                     # rate recovered, hint not over
    assert adaptive.effective(KEY, 1.0) == (1.0, "421 come back in an hour")
    assert adaptive.retry_after(KEY) == pytest.approx(3000.0)


class CountingRedis(redis.Redis):
    """Records the commands sent (the server's own statistics are shared with other tests)."""
    commands: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def test_effective_is_one_round_trip_and_state_expires(client: redis.Redis,
                                                       clock: FakeClock) -> None:
    counting = CountingRedis(host="127.0.0.1", port=6379, db=12)
    counting.commands = []
    adaptive = AdaptiveThrottle(counting, clock=clock)
    adaptive.throttle(KEY, 20.0, 30.0, REASON)
    ttl = client.ttl("campaigns:adaptive:" + KEY)
    assert 180 <= ttl <= 600                             # back to 20/s within a few minutes
    counting.commands.clear()
    adaptive.effective(KEY, 20.0)
    assert counting.commands == ["HGETALL"]
    counting.close()


def test_keys_are_independent_and_reset(adaptive: AdaptiveThrottle) -> None:
    adaptive.throttle(KEY, 20.0, None, REASON)
    assert adaptive.effective("domain:yahoo", 20.0) == (20.0, None)
    adaptive.reset(KEY)
    assert adaptive.effective(KEY, 20.0) == (20.0, None)


def test_bad_settings_are_refused(client: redis.Redis, adaptive: AdaptiveThrottle) -> None:
    with pytest.raises(InputError):
        AdaptiveThrottle(client, quiet_s=0)
    with pytest.raises(InputError):
        AdaptiveThrottle(client, step_fraction=0.0)
    with pytest.raises(InputError):
        AdaptiveThrottle(client, floor_per_s=0)
    with pytest.raises(InputError):
        adaptive.throttle(KEY, 0.0, None, REASON)


def test_a_key_without_configured_rate_recovers_to_the_rate_it_was_halved_from(
        adaptive: AdaptiveThrottle, clock: FakeClock) -> None:
    assert adaptive.current(KEY, None) == (None, None)
    adaptive.throttle(KEY, 40.0, None, REASON)         # 40/s: what it was seen sending
    assert adaptive.current(KEY, None) == (20.0, REASON)
    clock.now += 1.5
    adaptive.throttle(KEY, 30.0, None, REASON)         # a later observation: ceiling stays 40
    assert adaptive.current(KEY, None) == (10.0, REASON)
    clock.now += 60 * 10                               # many quiet periods
    assert adaptive.current(KEY, None) == (None, None)
    assert adaptive.current(KEY, 8.0)[0] == 8.0        # a configured rate is the ceiling
