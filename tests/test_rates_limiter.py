"""RedisLimiter against a real Redis (database 12): atomic multi-limit acquire, daily caps
(calendar day and rolling 24 h), observed rate, and several OS processes sharing one limit."""
from __future__ import annotations

import math
import multiprocessing
import os
import queue
import random
import time
from datetime import date
from typing import Any

import pytest
import redis

from campaigns.errors import InputError
from campaigns.rates import Decision, Limit, RedisLimiter, WarmupPlan, calendar_day, gcra
from tests.helpers import FakeClock

REDIS_URL = "redis://127.0.0.1:6379/12"
T0 = 1_790_000_040.0   # a whole minute, 2026-09-21 (epoch seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def limiter(client: redis.Redis, clock: FakeClock) -> RedisLimiter:
    return RedisLimiter(client, clock=clock)


RELAY = Limit("relay:main", rate_per_s=100.0, burst=10)


def test_burst_then_the_wait_of_one_interval(limiter: RedisLimiter, clock: FakeClock) -> None:
    limit = Limit("relay:main", rate_per_s=10.0, burst=3)
    assert [limiter.acquire([limit]).allowed for _ in range(3)] == [True, True, True]
    denied = limiter.acquire([limit])
    assert denied == Decision(False, pytest.approx(0.1), "relay:main")  # type: ignore[arg-type]
    clock.now += 0.1
    assert limiter.acquire([limit]).allowed


def test_a_blocked_domain_consumes_no_relay_token(limiter: RedisLimiter) -> None:
    domain = Limit("domain:google", rate_per_s=1.0, burst=1)
    assert limiter.acquire([RELAY, domain]).allowed
    for _ in range(5):
        decision = limiter.acquire([RELAY, domain])
        assert not decision.allowed and decision.binding == "domain:google"
        assert decision.wait_s == pytest.approx(1.0)
    # The relay spent one of its 10 on the first message only: 9 are left at the same instant.
    assert [limiter.acquire([RELAY]).allowed for _ in range(10)] == [True] * 9 + [False]


def test_the_longest_wait_and_its_limit_are_reported(limiter: RedisLimiter) -> None:
    fast, slow = Limit("relay:main", 10.0), Limit("domain:yahoo", 0.5)
    assert limiter.acquire([fast, slow]).allowed
    decision = limiter.acquire([fast, slow])
    assert decision.binding == "domain:yahoo" and decision.wait_s == pytest.approx(2.0)


def test_calendar_day_cap_and_its_wait(limiter: RedisLimiter, client: redis.Redis,
                                       clock: FakeClock) -> None:
    day, ends_at = calendar_day("Europe/Rome", clock.now)
    campaign = Limit("campaign:natale", rate_per_s=None, daily_cap=3, day=day, day_ends_at=ends_at)
    assert all(limiter.acquire([RELAY, campaign]).allowed for _ in range(3))
    decision = limiter.acquire([RELAY, campaign])
    assert decision.binding == "campaign:natale:daily"
    assert decision.wait_s == pytest.approx(ends_at - clock.now)
    assert limiter.daily_count(campaign) == 3
    assert limiter.daily_count(RELAY) == 0        # no cap: nothing counted
    ttl = client.ttl(f"campaigns:rl:day:campaign:natale:{day}")
    assert 2 * 86400 - 5 <= ttl <= 2 * 86400      # about two days
    # The next day is a fresh bucket.
    clock.now = ends_at + 1
    next_day, _ = calendar_day("Europe/Rome", clock.now)
    tomorrow = Limit("campaign:natale", None, daily_cap=3, day=next_day)
    assert limiter.acquire([RELAY, tomorrow]).allowed
    assert limiter.daily_count(tomorrow) == 1


def test_calendar_day_is_local() -> None:
    # 2026-11-01 23:30 UTC is already 2 November in Rome (UTC+1), still 1 November in New York.
    moment = 1_793_575_800.0
    assert calendar_day("Europe/Rome", moment) == ("2026-11-02", 1_793_660_400.0)
    assert calendar_day("America/New_York", moment)[0] == "2026-11-01"
    with pytest.raises(InputError, match="IANA"):
        calendar_day("Nowhere/Land", moment)


def test_calendar_cap_without_a_known_day_end_asks_to_look_again_within_the_hour(
        limiter: RedisLimiter) -> None:
    capped = Limit("campaign:x", None, daily_cap=1, day="2026-09-21")
    assert limiter.acquire([capped]).allowed
    decision = limiter.acquire([capped])
    assert not decision.allowed and 0 < decision.wait_s <= 3600


def test_a_capped_campaign_spends_nothing_of_the_relay(limiter: RedisLimiter) -> None:
    relay = Limit("relay:main", 100.0, burst=10, daily_cap=1000)
    campaign = Limit("campaign:x", None, daily_cap=2, day="2026-09-21")
    assert limiter.acquire([relay, campaign]).allowed
    assert limiter.acquire([relay, campaign]).allowed
    for _ in range(5):
        assert limiter.acquire([relay, campaign]).binding == "campaign:x:daily"
    assert limiter.daily_count(relay) == 2
    assert sum(limiter.acquire([relay]).allowed for _ in range(10)) == 8


def test_rolling_day_cap(limiter: RedisLimiter, clock: FakeClock) -> None:
    limit = Limit("relay:main", rate_per_s=None, daily_cap=5)
    assert all(limiter.acquire([limit]).allowed for _ in range(2))
    clock.now += 3600
    assert all(limiter.acquire([limit]).allowed for _ in range(3))
    clock.now += 3600
    decision = limiter.acquire([limit])
    assert decision.binding == "relay:main:daily"
    assert decision.wait_s == pytest.approx(T0 + 86400 - clock.now)  # the first two age out
    assert limiter.daily_count(limit) == 5
    clock.now = T0 + 86400 - 1
    assert not limiter.acquire([limit]).allowed
    clock.now = T0 + 86400 + 1
    assert limiter.daily_count(limit) == 3
    assert [limiter.acquire([limit]).allowed for _ in range(3)] == [True, True, False]
    clock.now = T0 + 3 * 86400            # long idle: everything aged out
    assert limiter.daily_count(limit) == 0
    assert all(limiter.acquire([limit]).allowed for _ in range(5))
    assert not limiter.acquire([limit]).allowed


def test_rolling_cap_with_cost(limiter: RedisLimiter, clock: FakeClock) -> None:
    limit = Limit("relay:main", None, daily_cap=10)
    assert limiter.acquire([limit], cost=4).allowed
    clock.now += 600
    assert limiter.acquire([limit], cost=4).allowed
    decision = limiter.acquire([limit], cost=4)
    assert decision.wait_s == pytest.approx(T0 + 86400 - clock.now)
    assert limiter.acquire([limit], cost=2).allowed


def test_observed_rate_counts_whole_seconds(limiter: RedisLimiter, clock: FakeClock) -> None:
    limit = Limit("relay:main", rate_per_s=None)
    clock.now = T0 + 0.5
    for _ in range(30):
        assert limiter.acquire([limit]).allowed
    clock.now = T0 + 1.5
    for _ in range(30):
        assert limiter.acquire([limit]).allowed
    # The current second is not counted yet.
    assert limiter.observed_rate("relay:main") == pytest.approx(30 / 60)
    clock.now = T0 + 2.1
    assert limiter.observed_rate("relay:main") == pytest.approx(60 / 60)
    assert limiter.observed_rate("relay:main", window_s=1) == pytest.approx(30)
    assert limiter.observed_rate("domain:none") == 0
    clock.now = T0 + 200                  # the ring has moved on
    assert limiter.observed_rate("relay:main") == 0
    with pytest.raises(InputError):
        limiter.observed_rate("relay:main", window_s=500)


def test_observed_rate_counts_messages_not_calls(limiter: RedisLimiter, clock: FakeClock) -> None:
    limiter.acquire([Limit("relay:main", None)], cost=10)
    clock.now += 1
    assert limiter.observed_rate("relay:main", window_s=10) == pytest.approx(1.0)


def test_server_clock_by_default(client: redis.Redis) -> None:
    limiter = RedisLimiter(client)
    limit = Limit("relay:main", rate_per_s=2.0, burst=1)
    assert limiter.acquire([limit]).allowed
    decision = limiter.acquire([limit])
    assert not decision.allowed and 0.3 < decision.wait_s <= 0.5
    time.sleep(decision.wait_s)
    assert limiter.acquire([limit]).allowed
    time.sleep(1.05 - time.time() % 1)   # into the next second
    assert limiter.observed_rate("relay:main", window_s=5) == pytest.approx(2 / 5)


def test_works_with_a_decoding_client(clock: FakeClock, client: redis.Redis) -> None:
    text_client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    limiter = RedisLimiter(text_client, clock=clock)
    limit = Limit("relay:main", 1.0, daily_cap=5)
    assert limiter.acquire([limit]).allowed
    assert limiter.acquire([limit]) == Decision(False, 1.0, "relay:main")
    clock.now += 1
    assert limiter.daily_count(limit) == 1
    assert limiter.observed_rate("relay:main", window_s=1) == 1.0
    text_client.close()


def test_reset_forgets_one_key_only(limiter: RedisLimiter, client: redis.Redis) -> None:
    day = "2026-09-21"
    mine = Limit("campaign:a", 1.0, daily_cap=5, day=day)
    longer = Limit("campaign:a:b", 1.0, daily_cap=5, day=day)
    assert limiter.acquire([mine, longer]).allowed
    limiter.reset("campaign:a")
    assert limiter.daily_count(mine) == 0 and limiter.daily_count(longer) == 1
    assert limiter.acquire([mine]).allowed
    assert not limiter.acquire([longer]).allowed


def test_bad_requests_are_refused(limiter: RedisLimiter) -> None:
    with pytest.raises(InputError, match="burst"):
        limiter.acquire([Limit("relay:main", 10.0, burst=2)], cost=3)
    with pytest.raises(InputError, match="daily cap"):
        limiter.acquire([Limit("relay:main", None, daily_cap=2)], cost=3)
    with pytest.raises(InputError, match="same key"):
        limiter.acquire([RELAY, RELAY])
    with pytest.raises(InputError, match="cost"):
        limiter.acquire([RELAY], cost=0)
    for bad in ({"rate_per_s": 0.0}, {"rate_per_s": float("inf")}, {"burst": 0},
                {"daily_cap": 0}, {"day": "a:b"}, {"key": ""}):
        with pytest.raises(InputError):
            Limit(**{"key": "k", "rate_per_s": 1.0, **bad})  # type: ignore[arg-type]
    assert limiter.acquire([]).allowed


def test_redis_and_the_pure_algorithm_agree(limiter: RedisLimiter, clock: FakeClock) -> None:
    rng = random.Random(7)
    interval, burst, tat = 1 / 7, 4, None
    for _ in range(400):
        clock.now += rng.choice([0.0, 0.01, 0.05, 0.2, 1.0])
        cost = rng.choice([1, 1, 1, 2])
        expected = gcra(tat, clock.now, interval, burst, cost)
        got = limiter.acquire([Limit("relay:main", 7.0, burst=burst)], cost=cost)
        assert got.allowed == expected.allowed
        assert got.wait_s == pytest.approx(expected.wait_s, abs=2e-6)
        tat = expected.new_tat


def test_warm_up_cap_changes_at_local_midnight(limiter: RedisLimiter, clock: FakeClock) -> None:
    plan = WarmupPlan(start=2, factor=2.0, start_date=date(2026, 11, 1), max_cap=100)

    def limit() -> Limit:
        day, ends_at = calendar_day("Europe/Rome", clock.now)
        return Limit("relay:main", None, daily_cap=plan.cap_on(date.fromisoformat(day)),
                     day=day, day_ends_at=ends_at)

    clock.now = 1_793_573_999.0            # 2026-11-01 23:59:59 in Rome (22:59:59 UTC)
    assert [limiter.acquire([limit()]).allowed for _ in range(3)] == [True, True, False]
    clock.now += 1                         # midnight in Rome, 23:00 UTC: day 2, cap 4
    assert limit().day == "2026-11-02" and limit().daily_cap == 4
    assert [limiter.acquire([limit()]).allowed for _ in range(5)] == [True] * 4 + [False]


# -- several OS processes, one limit -------------------------------------------------------

def _hammer(key: str, ready: Any, go: Any, start_at: Any, results: Any) -> None:
    limiter = RedisLimiter(redis.Redis.from_url(REDIS_URL))
    limit = [Limit(key, rate_per_s=50.0, burst=5)]
    limiter.client.ping()
    ready.put(os.getpid())
    go.wait(60)
    while time.time() < start_at.value:
        time.sleep(0.0005)
    end = start_at.value + 3.0
    allowed = calls = 0
    while calls < 200_000 and time.time() < end:   # bounded: ~20 k calls in 3 s here
        calls += 1
        allowed += limiter.acquire(limit).allowed
    results.put((allowed, calls))


def test_four_processes_share_one_limit(client: redis.Redis) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    start_at = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=_hammer, args=("relay:shared", ready, go, start_at, results))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        # Start just after a whole second, so that the two whole seconds before the end of
        # the run, which observed_rate reports, lie inside it.
        start_at.value = math.ceil(time.time() + 0.2) + 0.05
        go.set()
        outcomes = [results.get(timeout=30) for _ in procs]
    except queue.Empty:
        pytest.fail("a hammering process did not report in time")
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
    allowed = sum(a for a, _ in outcomes)
    calls = sum(c for _, c in outcomes)
    expected = 50 * 3 + 5
    print(f"4 processes, 3 s at 50/s burst 5: {allowed} allowed of {calls} calls")
    assert abs(allowed - expected) <= 0.05 * expected, (allowed, calls)
    assert calls > 4 * allowed              # they really competed
    # the whole seconds from the run's first one up to now: the run's two whole seconds,
    # its last 0.05 s and the idle seconds after it (however long the joins took under load)
    time.sleep(1.02 - time.time() % 1)     # just after a second starts: no boundary below
    window = math.floor(time.time()) - math.ceil(start_at.value)
    observed = RedisLimiter(client).observed_rate("relay:shared", window_s=window)
    assert observed * window == pytest.approx(2 * 50, rel=0.15)


def test_observed_only_counts_reach_redis_in_batches_and_survive_a_failed_flush(
        client: redis.Redis) -> None:
    """A key with no rate or cap is only observed: counted in the process and added to its
    ring in one call per flush (a thread flushes a last burst too); a flush that fails
    keeps the counts for the next one."""
    limiter = RedisLimiter(client, prefix=f"test:obs:{os.getpid()}:")
    calls: list[int] = []
    real = limiter._observe

    def counting(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*a, **kw)
    limiter._observe = counting  # type: ignore[assignment]
    for _ in range(300):
        limiter.observe(["relay:main", "domain:google"])
    deadline = time.monotonic() + 5
    while limiter._observed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not limiter._observed and 1 <= len(calls) <= 3      # not 300 round trips
    assert _ring_total(client, limiter, "relay:main") == 300
    assert _ring_total(client, limiter, "domain:google") == 300

    def broken(*a: Any, **kw: Any) -> Any:
        raise redis.ConnectionError("gone")
    limiter._observe = broken  # type: ignore[assignment]
    limiter.observe(["relay:main"], cost=5)
    with pytest.raises(redis.ConnectionError):
        limiter.flush_observed()
    limiter._observe = real
    limiter.flush_observed()
    assert _ring_total(client, limiter, "relay:main") == 305


def _ring_total(client: redis.Redis, limiter: RedisLimiter, key: str) -> int:
    ring = client.hgetall(limiter._observed_key(key))
    return sum(int(v) for k, v in ring.items() if k.decode().startswith("c"))
