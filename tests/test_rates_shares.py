"""Issue 11 item 6: the transactional share is work-conserving. Bulk mail alone uses the
whole relay rate; the moment transactional mail asks for the relay, bulk keeps to its share
and the documents go first. Real workers, real Redis, a real SMTP sink."""
from __future__ import annotations

import json

from tests.helpers import make_campaign


def rates_json(project) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {r["target"]: r for r in json.loads(project.cli("rates", "show", "--json").stdout)}


def test_bulk_alone_uses_the_whole_relay_rate(project):
    project.cli("rates", "set", "relay:sink", "20/s")
    make_campaign(project, "bulk", 300)
    project.workers(2)
    project.cli("launch", "bulk")
    snap = project.wait_status("bulk", timeout_s=90)
    assert snap["counts"]["sent"] == 300, snap
    times = sorted(r.at for r in project.sink.received)
    start, end = times[0] + 2.0, times[-1] - 1.0      # past the first burst, whole seconds
    steady = sum(1 for t in times if start <= t < end)
    rate = steady / (end - start)
    # the old reservation idled 20 % of it: 16/s
    assert rate > 18, f"bulk alone sent {rate:.1f}/s under a 20/s relay limit"
    shares = rates_json(project)["relay:sink"]["shares"]
    assert shares == {"transactional_waiting": False, "transactional_per_s": 20,
                      "bulk_per_s": 20}


def test_transactional_mail_holds_bulk_to_its_share_and_goes_first(project):
    import redis

    from campaigns.delivery.planning import rate_rows
    from campaigns.delivery.pacing import Pacer
    project.cli("rates", "set", "relay:sink", "20/s")
    pacer = Pacer(project.ctx.settings, project.ctx.db, redis.Redis.from_url(project.redis_url))
    assert pacer.acquire("sink", "docs", "transactional", "a@example.test").allowed
    row = next(r for r in rate_rows(pacer) if r["target"] == "relay:sink")
    assert row["shares"] == {"transactional_waiting": True, "transactional_per_s": 20,
                             "bulk_per_s": 16}
    make_campaign(project, "bulk", 400, prefix="bulk")
    make_campaign(project, "docs", 20, prefix="doc", priority="transactional")
    project.workers(2)
    project.cli("launch", "bulk")
    assert project.sink.wait_for(40, timeout_s=30)
    project.cli("launch", "docs")
    assert project.wait_status("docs", timeout_s=60)["counts"]["sent"] == 20
    assert project.wait_status("bulk", timeout_s=90)["counts"]["sent"] == 400
    order = [r.rcpt for r in sorted(project.sink.received, key=lambda r: r.at)]
    last_doc = max(i for i, a in enumerate(order) if a.startswith("doc"))
    assert len(order) - last_doc > 100, "the documents waited behind the bulk backlog"
