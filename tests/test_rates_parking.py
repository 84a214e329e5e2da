"""Parking: messages held back by a receiver group's limit come back at that limit's rate."""
from __future__ import annotations

import pytest
import redis

from campaigns.delivery.parking import HEADROOM, Parking
from tests.helpers import FakeClock


def released_by(parking: Parking, rate_of) -> list[tuple[list[int], str]]:  # type: ignore[no-untyped-def]
    out: list[tuple[list[int], str]] = []
    parking.release(rate_of, lambda ids, priority: out.append((list(ids), priority)))
    return out


def test_parked_messages_come_back_oldest_first_at_the_limits_pace(client: redis.Redis) -> None:
    clock = FakeClock(1_000_000.0)
    parking = Parking(client, clock=clock)
    for i in range(1, 41):
        parking.park("domain:google", i, "bulk")
        clock.now += 0.001
    parking.park("domain:google", 1, "bulk")        # parked again: keeps its place, once
    assert parking.counts() == {"domain:google": 40}

    def rate_of(target: str) -> tuple[float | None, int]:
        return 10.0, 4
    first = released_by(parking, rate_of)            # a first release: at most the burst
    assert first == [([1, 2, 3, 4], "bulk")]
    assert released_by(parking, rate_of) == []       # no time passed, no room
    total = 4
    for _ in range(20):                              # 2 s at 10/s with the headroom
        clock.now += 0.1
        total += sum(len(ids) for ids, _ in released_by(parking, rate_of))
    assert total == 4 + int(2 * 10 * HEADROOM)
    assert parking.counts() == {"domain:google": 40 - total}


def test_an_unset_limit_releases_everything_and_priorities_keep_their_queue(
        client: redis.Redis) -> None:
    parking = Parking(client, clock=FakeClock(5.0))
    parking.park("campaign:news", 7, "transactional")
    parking.park("campaign:news", 8, "bulk")
    got = released_by(parking, lambda target: (None, 1))
    assert sorted(got) == [([7], "transactional"), ([8], "bulk")]
    assert parking.counts() == {}


def test_a_failed_publish_removes_nothing(client: redis.Redis) -> None:
    parking = Parking(client, clock=FakeClock(5.0))
    parking.park("domain:yahoo", 3, "bulk")

    def broken(ids: list[int], priority: str) -> None:
        raise redis.ConnectionError("broker gone")
    with pytest.raises(redis.ConnectionError):
        parking.release(lambda target: (None, 1), broken)
    assert parking.counts() == {"domain:yahoo": 1}


def test_a_message_parked_again_while_it_is_released_stays_parked(client: redis.Redis) -> None:
    """A released message can come back denied (released a little ahead of its limit) and
    be parked again before `release` returns: it must still be parked afterwards, not
    dropped by the release's removal (it was, one run in four, under load)."""
    parking = Parking(client, clock=FakeClock(5.0))
    parking.park("domain:google", 7, "bulk")

    def publish_and_deny_at_once(ids: list[int], priority: str) -> None:
        for delivery_id in ids:           # a worker takes it and is denied again
            parking.park("domain:google", delivery_id, priority)
    parking.release(lambda target: (None, 1), publish_and_deny_at_once)
    assert parking.counts() == {"domain:google": 1}
