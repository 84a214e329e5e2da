"""Relay pools: failover with a circuit breaker shared by the fleet, weights, spill at a daily
cap, routing by From domain. Real workers, Redis and two SMTP sinks on loopback."""
from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest
import redis

from campaigns.errors import ConfigError
from campaigns.delivery.pools import Breaker, order
from campaigns.settings import BreakerConfig, PoolConfig, load_settings
from campaigns.cli.sink import ScriptedSink
from tests.helpers import FakeClock, ledger, make_campaign


def _pool_config(project: Any, backup: ScriptedSink, pool: str) -> None:
    project.relay_extra = (f'\n[relays.backup]\nkind = "smtp"\nhost = "127.0.0.1"\n'
                           f'port = {backup.port}\nsecurity = "none"\ntimeout_s = 5\n\n{pool}')
    project.write_config()


def test_a_relay_stopped_mid_campaign_fails_over_to_the_other(project: Any) -> None:
    with ScriptedSink() as backup:
        _pool_config(project, backup, '[pools.both]\nstrategy = "failover"\n'
                                      'relays = ["sink", "backup"]\n'
                                      '[breaker]\nfailures = 3\ncooldown_s = 300\n')
        addresses = make_campaign(project, "pooled", 300, relay="both")
        project.sink.delay_s = 0.01
        project.workers(2)
        project.cli("launch", "pooled")
        assert project.sink.wait_for(60, timeout_s=60)
        project.sink.stop()                      # the main relay goes away mid-campaign
        snap = project.wait_status("pooled", timeout_s=120)
        assert snap["status"] == "finished", snap
        first, second = project.sink.counts(), backup.counts()
        assert first and second, "both relays should have carried part of the campaign"
        together = Counter(first) + Counter(second)
        rows = ledger(project, "pooled")
        assert set(rows) == set(addresses)
        assert max(together.values()) == 1, "a recipient got two copies"
        for address, (status, _) in rows.items():
            # in_doubt only for a message whose body was on the wire when the relay died
            assert status in ("sent", "in_doubt"), (address, status)
            assert (status == "sent") == (address in together), address
        assert sum(1 for s, _ in rows.values() if s == "in_doubt") <= 2
        listing = project.cli("relays", "list").stdout
        assert "both" in listing and "failover" in listing
        assert "breaker open after" in listing and "backup" in listing


def test_routing_by_from_domain_and_unknown_pool_members(project: Any, tmp_path: Any) -> None:
    with ScriptedSink() as backup:
        _pool_config(project, backup, '[pools.news]\nrelays = ["backup"]\n'
                                      'from_domains = ["shop.test"]\n')
        make_campaign(project, "routed", 5)        # From: news@shop.test, no --relay
        project.workers(1)
        project.cli("launch", "routed")
        assert project.wait_status("routed")["counts"]["sent"] == 5
        assert len(backup.received) == 5 and not project.sink.received
    bad = tmp_path / "bad.toml"
    bad.write_text('[relays.a]\nhost = "x"\n[pools.p]\nrelays = ["a", "nope"]\n')
    with pytest.raises(ConfigError, match=r"\[pools.p\]: relays nope are not configured"):
        load_settings({"CAMPAIGNS_CONFIG": str(bad), "CAMPAIGNS_DATA_DIR": str(tmp_path)})


def test_breaker_opens_after_n_failures_then_lets_one_probe_through(client: redis.Redis) -> None:
    clock = FakeClock(1000.0)
    breaker = Breaker(client, BreakerConfig(failures=3, cooldown_s=30), clock=clock)
    for _ in range(2):
        breaker.failure("a")
    assert breaker.state("a").state == "closed" and breaker.allow("a")
    breaker.failure("a")
    assert breaker.state("a").state == "open" and not breaker.allow("a")
    clock.now += 31
    assert breaker.state("a").state == "half-open"
    assert breaker.allow("a") and not breaker.allow("a")      # one probe per cooldown
    breaker.failure("a")                                      # the probe failed: open again
    assert breaker.state("a").state == "open"
    clock.now += 31
    assert breaker.allow("a")
    breaker.success("a")                                      # the probe worked: closed
    assert breaker.state("a").state == "closed" and breaker.state("a").failures == 0


def test_weighted_order_follows_the_weights() -> None:
    pool = PoolConfig(name="w", strategy="weighted", relays=("a", "b"), weights=(3.0, 1.0))
    rng = random.Random(7)
    firsts = Counter(order(pool, rng)[0] for _ in range(4000))
    assert 0.70 < firsts["a"] / 4000 < 0.80
    assert order(PoolConfig(name="f", relays=("x", "y", "z")))[0] == "x"


def test_a_relay_at_its_daily_cap_spills_to_the_next_one(project: Any) -> None:
    with ScriptedSink() as backup:
        _pool_config(project, backup, '[pools.both]\nrelays = ["sink", "backup"]\n')
        project.cli("rates", "set", "relay:sink", "1000/s", "--daily", "20")
        make_campaign(project, "capped", 60, relay="both")
        project.workers(2)
        project.cli("launch", "capped")
        snap = project.wait_status("capped", timeout_s=60)
        assert snap["status"] == "finished" and snap["counts"]["sent"] == 60, snap
        assert len(project.sink.received) == 20          # the main relay up to its cap
        assert len(backup.received) == 40                # the rest spilled, nothing twice
        assert not set(project.sink.counts()) & set(backup.counts())
