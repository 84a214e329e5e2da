"""End to end through real worker processes, real Redis, a real SMTP server on loopback."""
from __future__ import annotations

import json
import time

import pytest

from tests.helpers import ledger, make_campaign, parse, unseen_in_doubt


def test_thousand_recipients_each_get_one_personalised_message(project):
    addresses = make_campaign(project, "big", 1000)
    project.workers(2)
    out = project.cli("launch", "big").stdout
    assert "1000 recipients added" in out
    snap = project.wait_status("big", timeout_s=120)
    assert snap["status"] == "finished", snap
    assert snap["counts"]["sent"] == 1000
    counts = project.sink.counts()
    assert sorted(counts) == sorted(addresses)
    assert set(counts.values()) == {1}
    for received in project.sink.received:
        msg = parse(received.data)
        i = int(received.rcpt.removeprefix("user").split("@")[0])
        assert msg["Subject"] == f"Offerta per Nome{i}"
        assert msg["To"] == received.rcpt
        body = msg.get_body(("plain",)).get_content()
        assert f"C{i:05d}" in body and f"Ciao Nome{i}" in body
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    status = json.loads(project.cli("status", "big", "--json").stdout)
    assert status["campaign"] == "big" and status["status"] == "finished"
    assert status["total"] == 1000 and status["counts"]["sent"] == 1000
    assert set(status["counts"]) == {"queued", "sending", "sent", "deferred", "bounced",
                                     "failed", "suppressed", "cancelled", "in_doubt", "expired"}


def test_relaunch_and_redelivered_tasks_send_nothing_twice(project):
    addresses = make_campaign(project, "again", 200)
    project.sink.delay_s = 0.005
    project.cli("launch", "again")
    relaunch = project.cli("launch", "again").stdout   # still sending: no worker yet
    assert "already sending: 200 queued" in relaunch and "added" not in relaunch
    project.workers(2)
    snap = project.wait_status("again")
    assert snap["status"] == "finished" and snap["counts"]["sent"] == 200
    # every task published again, as a broker redelivery would
    ids = [str(i) for i in range(1, 400)]
    project.cli("launch", "again", check=False)  # finished: refused, adds nothing
    import subprocess
    import sys
    subprocess.run([sys.executable, "-c", "import sys; from workers.dispatch import enqueue; "
                    "enqueue([int(a) for a in sys.argv[1:]])", *ids], env=project.env, check=True)
    # until the workers took and acknowledged every task published again (bounded)
    import redis
    broker, queue = redis.Redis.from_url(project.redis_url), project.ctx.settings.queue
    deadline, empty_twice = time.monotonic() + 30, 0
    while time.monotonic() < deadline and empty_twice < 2:   # twice: none between pop and ack
        empty_twice = 0 if broker.llen(queue) or broker.hlen("unacked") else empty_twice + 1
        time.sleep(0.2)
    assert empty_twice == 2, "the tasks published again were not all taken"
    assert sorted(project.sink.counts()) == sorted(addresses)
    assert set(project.sink.counts().values()) == {1}
    assert project.status("again")["counts"]["sent"] == 200


def test_worker_killed_mid_campaign_leaves_each_recipient_sent_once_or_in_doubt(project):
    addresses = make_campaign(project, "kill", 400)
    project.sink.delay_s = 0.01
    group = project.workers(1)
    project.cli("launch", "kill")
    assert project.sink.wait_for(100, timeout_s=60)
    group.kill()               # SIGKILL to the whole process group, mid-send
    for proc in group.procs:
        proc.wait()
    killed_at = len(project.sink.received)
    assert killed_at < 400, "the campaign finished before the kill"
    project.workers(2)
    snap = project.wait_status("kill", timeout_s=120)
    assert snap["status"] == "finished", snap
    counts = project.sink.counts()
    rows = ledger(project, "kill")
    assert set(rows) == set(addresses)
    assert max(counts.values()) == 1, "a recipient received two copies"
    for address, (status, _) in rows.items():
        assert status in ("sent", "in_doubt"), (address, status)
        if status == "sent":
            assert counts[address] == 1
    # in doubt and never received: only what was in flight at the kill
    assert len(unseen_in_doubt(project, "kill")) <= 2


def test_pause_stops_sends_resume_continues_with_unsent_only(project):
    addresses = make_campaign(project, "pz", 300)
    project.sink.delay_s = 0.02
    project.workers(1)
    project.cli("launch", "pz")
    assert project.sink.wait_for(30, timeout_s=60)
    project.cli("pause", "pz")
    time.sleep(2)
    after_two_seconds = len(project.sink.received)
    time.sleep(2)
    assert len(project.sink.received) == after_two_seconds < 300
    assert project.status("pz")["status"] == "paused"
    out = project.cli("resume", "pz").stdout
    assert "resumed" in out
    snap = project.wait_status("pz")
    assert snap["status"] == "finished" and snap["counts"]["sent"] == 300
    assert set(project.sink.counts().values()) == {1} and len(project.sink.counts()) == 300
    assert sorted(project.sink.counts()) == sorted(addresses)


def test_cancel_marks_unsent_rows_cancelled(project):
    make_campaign(project, "cx", 300)
    project.sink.delay_s = 0.02
    project.workers(1)
    project.cli("launch", "cx")
    assert project.sink.wait_for(20, timeout_s=60)
    project.cli("cancel", "cx")
    time.sleep(2)
    sent_then = len(project.sink.received)
    time.sleep(1.5)
    assert len(project.sink.received) == sent_then
    snap = project.wait_status("cx", ("cancelled",))
    assert snap["status"] == "cancelled"
    counts = snap["counts"]
    assert counts["cancelled"] > 0 and counts["queued"] == 0 and counts["deferred"] == 0
    assert counts["sent"] + counts["cancelled"] + counts["sending"] + counts["in_doubt"] == 300
    assert counts["sent"] == len(project.sink.received)


def test_451_is_retried_then_sent_and_550_bounced_without_retry(project):
    rows = [(f"user{i}@example.test", f"N{i}", "x") for i in range(20)]
    rows += [("defer1@example.test", "D", "x"), ("defer2@example.test", "D", "x"),
             ("bounce1@example.test", "B", "x")]
    make_campaign(project, "codes", rows=rows)
    project.workers(2)
    project.cli("launch", "codes")
    snap = project.wait_status("codes")
    assert snap["status"] == "finished"
    assert snap["counts"]["sent"] == 22 and snap["counts"]["bounced"] == 1
    book = ledger(project, "codes")
    assert book["defer1@example.test"] == ("sent", 2)
    assert book["bounce1@example.test"] == ("bounced", 1)
    assert project.sink.attempts("bounce1@example.test") == 1
    assert project.sink.attempts("defer1@example.test") == 2
    from sqlalchemy import select

    from campaigns.models import Delivery
    with project.ctx.db.session() as s:
        row = s.scalars(select(Delivery).where(Delivery.address == "bounce1@example.test")).one()
    assert (row.reply_code, row.enhanced_status) == (550, "5.1.1")
    assert "User unknown" in row.reply_text


def test_temporary_failures_give_up_after_the_attempt_budget(project):
    project.sink.rules.append(__import__("campaigns.cli.sink", fromlist=["Rule"]).Rule(
        pattern=r"^always", code=451, text="4.2.0 Mailbox busy"))
    make_campaign(project, "budget", rows=[("always@example.test", "A", "x"),
                                           ("fine@example.test", "F", "y")])
    project.workers(1)
    project.cli("launch", "budget")
    snap = project.wait_status("budget")
    assert snap["counts"]["failed"] == 1 and snap["counts"]["sent"] == 1
    assert ledger(project, "budget")["always@example.test"] == ("failed", 3)
    assert project.sink.attempts("always@example.test") == 3


def test_suppressed_addresses_are_not_sent(project):
    make_campaign(project, "sup", 10)
    project.cli("suppressions", "add", "user3@example.test", "--reason", "asked by phone")
    project.workers(1)
    out = project.cli("launch", "sup").stdout
    assert "(1 suppressed)" in out
    snap = project.wait_status("sup")
    assert snap["counts"]["suppressed"] == 1 and snap["counts"]["sent"] == 9
    assert "user3@example.test" not in project.sink.counts()
