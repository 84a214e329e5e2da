"""Messages held back by a receiver group's or a campaign's limit wait here, not in the queue.

Re-queueing such a message with a countdown costs a worker a task round trip every time it
comes back still over its limit; with half a campaign bound for a throttled receiver, those
round trips took most of the workers' time and the other receivers' mail slowed to a third
(BENCHMARKS.md). Instead a denied message is parked once, in a Redis sorted set per limit
(oldest first), and `release` hands parked messages back to the queue at that limit's
current rate (a little faster, so the limit stays busy; a message released too early is
parked again). A rate changed with `rates set` or lowered by a throttle
reply applies to the next release; an unset limit releases everything parked under it.

Parked ids live in the same Redis as the queue and are as durable as queued tasks. A release
removes before it publishes: a message published first could come back denied and be parked
again while still listed, and the removal would then drop it for good (seen as a message
left parked forever). A publish that fails parks them again in their places; a crash
between the two leaves the row `queued` with no task, which
the upkeep publishes again from the ledger once the broker holds none. A paused or cancelled campaign's parked messages are
released and skipped like queued ones.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable

import redis

PREFIX = "campaigns:parked:"
_RELEASED = "campaigns:released:"
#: release this much faster than the limit, so it is never left idle
HEADROOM = 1.25
#: at most this many released per limit and call when the limit is gone
UNLIMITED_BATCH = 1000

#: target -> (effective rate per second or None for no limit, burst)
RateOf = Callable[[str], tuple[float | None, int]]
#: (delivery ids, priority) -> publish them on the retry queue of that priority
Publish = Callable[[list[int], str], None]


class Parking:
    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self.client, self.clock = client, clock

    def park(self, target: str, delivery_id: int, priority: str) -> None:
        """Hold `delivery_id` under `target` (once: parking it again keeps its place)."""
        self.client.zadd(PREFIX + target, {f"{delivery_id}|{priority}": self.clock()}, nx=True)

    def targets(self) -> list[str]:
        """The limits that have messages parked under them."""
        return [(key.decode() if isinstance(key, bytes) else str(key)).removeprefix(PREFIX)
                for key in self.client.scan_iter(match=PREFIX + "*", count=1000)]

    def counts(self) -> dict[str, int]:
        """How many messages are parked under each limit."""
        return {target: int(self.client.zcard(PREFIX + target)) for target in self.targets()}

    def release(self, rate_of: RateOf, publish: Publish) -> int:
        """Publish the parked messages that each limit has room for since the last call.
        Run by one process at a time (the caller holds a lock). Returns how many."""
        now, released = self.clock(), 0
        for target in self.targets():
            rate, burst = rate_of(target)
            if rate is None:
                n, credit_left = UNLIMITED_BATCH, 0.0
            else:
                pace = rate * HEADROOM
                last = float(self.client.get(_RELEASED + target) or 0.0)
                credit = min(max(1.0, float(burst)), (now - last) * pace)
                n = int(credit)
                if n < 1:
                    continue
                credit_left = (credit - n) / pace
            scored = self.client.zrange(PREFIX + target, 0, n - 1, withscores=True)
            popped = [member for member, _ in scored]
            if rate is not None:
                self.client.set(_RELEASED + target, now - credit_left, ex=3600)
            by_priority: dict[str, list[int]] = defaultdict(list)
            for member in popped:
                text = member.decode() if isinstance(member, bytes) else str(member)
                delivery_id, _, priority = text.partition("|")
                by_priority[priority or "bulk"].append(int(delivery_id))
            if popped:
                self.client.zrem(PREFIX + target, *popped)
            try:
                for priority, ids in by_priority.items():
                    publish(ids, priority)
            except Exception:   # the broker refused: parked again, in their places
                self.client.zadd(PREFIX + target, dict(scored), nx=True)
                raise
            released += len(popped)
        return released
