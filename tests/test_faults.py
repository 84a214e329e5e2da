"""Faults the ledger must survive without a person: a relay down for longer than the attempt
budget, a broker that lost its tasks (Redis flushed), a worker killed between taking a task
and acknowledging it. Real workers, real Redis, a real SMTP sink on loopback."""
from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import redis

from tests.helpers import ledger, make_campaign, unseen_in_doubt


def test_a_plain_relay_down_longer_than_the_attempt_budget_loses_nobody(project: Any) -> None:
    project.extra_toml = "[breaker]\nfailures = 3\ncooldown_s = 1.0\n"
    project.write_config()       # max_attempts 3, retry_base_s 0.3: the budget is ~2 s
    addresses = make_campaign(project, "outage", 60)
    project.sink.stop()          # the relay is down before the first message
    project.workers(2)
    project.cli("launch", "outage")
    deadline = time.monotonic() + 30
    listing = ""
    while time.monotonic() < deadline and "breaker open" not in listing:
        listing = project.cli("relays", "list").stdout
        time.sleep(0.5)
    assert "breaker open" in listing, listing
    time.sleep(6)                # three times the attempt budget's back-offs
    during = Counter(status for status, _ in ledger(project, "outage").values())
    assert not during["failed"] and not during["sent"], during
    project.sink.start()         # the relay is back, on the same port
    snap = project.wait_status("outage", timeout_s=90)
    assert snap["status"] == "finished", snap
    assert snap["counts"]["sent"] == 60 and snap["counts"]["failed"] == 0, snap["counts"]
    assert sorted(project.sink.counts()) == sorted(addresses)
    assert max(project.sink.counts().values()) == 1


def _sent_once_or_in_doubt(project: Any, name: str, addresses: list[str]) -> dict[str, Any]:
    snap = project.wait_status(name, timeout_s=150)
    assert snap["status"] == "finished", snap
    rows = ledger(project, name)
    counts = project.sink.counts()
    assert set(rows) == set(addresses)
    assert max(counts.values()) == 1, "a recipient received two copies"
    for address, (status, _) in rows.items():
        assert status in ("sent", "in_doubt"), (address, status)
        if status == "sent":       # in_doubt: killed after the relay's answer, or before
            assert counts[address] == 1, address
    return snap


def test_a_flushed_redis_ends_with_every_recipient_sent_once(project: Any) -> None:
    project.sending["republish_after_s"] = 2
    project.write_config()
    addresses = make_campaign(project, "flush", 300)
    project.sink.delay_s = 0.02
    project.workers(2)
    project.cli("launch", "flush")
    assert project.sink.wait_for(40, timeout_s=60)
    redis.Redis.from_url(project.redis_url).flushdb()   # the broker forgets every task
    assert len(project.sink.received) < 300, "the campaign finished before the flush"
    snap = _sent_once_or_in_doubt(project, "flush", addresses)
    assert snap["counts"]["sent"] == 300, snap["counts"]


def test_tasks_lost_between_pop_and_ack_and_killed_workers_strand_nobody(project: Any) -> None:
    project.sending["republish_after_s"] = 2
    project.write_config()
    addresses = make_campaign(project, "lost", 300)
    project.sink.delay_s = 0.01
    project.cli("launch", "lost")                        # no worker yet: all 300 tasks wait
    client = redis.Redis.from_url(project.redis_url)
    queue = project.ctx.settings.queue
    # as workers that died after taking a task and before kombu recorded it as unacked
    assert all(client.rpop(queue) for _ in range(25))
    for round_ in range(3):                               # and SIGKILLed mid-send, repeatedly
        group = project.workers(1)
        assert project.sink.wait_for(50 * (round_ + 1), timeout_s=60)
        group.kill(signal.SIGKILL)
        for proc in group.procs:
            proc.wait()
    assert len(project.sink.received) < 300 - 25, "nothing was left to strand"
    project.workers(2)
    snap = _sent_once_or_in_doubt(project, "lost", addresses)
    # three kills: in doubt and never received, only what each had in flight
    assert len(unseen_in_doubt(project, "lost")) <= 6, snap["counts"]
    assert snap["counts"]["sent"] + snap["counts"]["in_doubt"] == 300
