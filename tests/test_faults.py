"""Faults the ledger must survive without a person: a relay down for longer than the attempt
budget, a broker that lost its tasks (Redis flushed), a worker killed between taking a task
and acknowledging it. Real workers, real Redis, a real SMTP sink on loopback."""
from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

import redis

from tests.helpers import ledger, make_campaign


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
