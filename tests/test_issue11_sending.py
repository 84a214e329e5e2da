"""Issue 11: suppressions reach queued mail; blocks are retried; transactional mail has no
List-Unsubscribe. Real workers, real Redis, a real SMTP sink."""
from __future__ import annotations

from tests.helpers import ledger, make_campaign, parse


def test_address_suppressed_after_launch_is_not_sent_and_row_is_suppressed(project):
    addresses = make_campaign(project, "late", 20)
    out = project.cli("launch", "late").stdout        # no worker yet: every row queued
    assert "20 recipients added (0 suppressed)" in out
    project.cli("suppressions", "add", "user7@example.test", "--reason", "asked by phone")
    project.workers(2)
    snap = project.wait_status("late")
    assert snap["status"] == "finished", snap
    assert snap["counts"]["suppressed"] == 1 and snap["counts"]["sent"] == 19
    assert "user7@example.test" not in project.sink.counts()
    assert sorted(project.sink.counts()) == sorted(a for a in addresses if a != addresses[7])
    assert ledger(project, "late")["user7@example.test"] == ("suppressed", 0)


def test_transactional_mail_has_no_list_unsubscribe_bulk_mail_has(project):
    make_campaign(project, "invoices", rows=[("inv@example.test", "I", "x")],
                  priority="transactional")
    make_campaign(project, "news", rows=[("news@example.test", "N", "y")])
    project.workers(1)
    project.cli("launch", "invoices")
    project.cli("launch", "news")
    assert project.wait_status("invoices")["counts"]["sent"] == 1
    assert project.wait_status("news")["counts"]["sent"] == 1
    received = {r.rcpt: parse(r.data) for r in project.sink.received}
    invoice, newsletter = received["inv@example.test"], received["news@example.test"]
    assert invoice["List-Unsubscribe"] is None and invoice["List-Unsubscribe-Post"] is None
    assert newsletter["List-Unsubscribe"].startswith("<https://news.example.test/u/")
    assert newsletter["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_554_spam_block_is_retried_then_failed_and_550_user_unknown_bounced_at_once(project):
    from campaigns.cli.sink import Rule
    project.sink.rules.append(Rule(pattern=r"^spam", code=554,
                                   text="5.7.1 Message rejected as spam"))
    make_campaign(project, "blocks", rows=[("spam1@example.test", "S", "x"),
                                           ("bounce1@example.test", "B", "y"),
                                           ("fine@example.test", "F", "z")])
    project.workers(1)
    project.cli("launch", "blocks")
    snap = project.wait_status("blocks")
    assert snap["status"] == "finished", snap
    book = ledger(project, "blocks")
    max_attempts = 3    # the test config's [sending] max_attempts
    assert book["spam1@example.test"] == ("failed", max_attempts)
    assert project.sink.attempts("spam1@example.test") == max_attempts
    assert book["bounce1@example.test"] == ("bounced", 1)
    assert project.sink.attempts("bounce1@example.test") == 1
    assert book["fine@example.test"] == ("sent", 1)
