"""Bounces acted on: the reply while sending, returned messages through the inbound SMTP
endpoint (a real `campaigns bounces serve` process), the suppression policy, the reputation
guard and the report. Real workers, Redis, the sink on loopback, SQLite or PostgreSQL."""
from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from campaigns import intake, lifecycle
from campaigns.bounces import BounceReport
from campaigns.models import BounceEvent, Delivery, Suppression, utcnow
from campaigns.cli.sink import Rule
from campaigns.content.tokens import make_return_path, read_return_path
from campaigns.settings import Secret
from tests.helpers import ledger, make_campaign

DOMAIN = "bounces.shop.test"


def dsn(recipient: str, status: str, diagnostic: str, original: str, *,
        action: str = "failed", subject: str = "Undelivered Mail Returned to Sender") -> bytes:
    """An RFC 3464 report as Postfix writes one, quoting the original's headers."""
    return (f"""From: MAILER-DAEMON@mx.example.test (Mail Delivery System)
To: {DOMAIN}
Subject: {subject}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

This is the mail system at host mx.example.test.
I'm sorry to have to inform you that your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.test

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--B1
Content-Type: text/rfc822-headers

{original}
--B1--
""").replace("\r\n", "\n").replace("\n", "\r\n").encode()


def arf(recipient: str, original: str) -> bytes:
    """An RFC 5965 complaint as a feedback loop sends it."""
    return (f"""From: feedback@fbl.example.test
To: {DOMAIN}
Subject: complaint about message
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F1"

--F1
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.

--F1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: fbl/1.0
Version: 1
Original-Rcpt-To: {recipient}

--F1
Content-Type: message/rfc822

{original}
Hello

--F1--
""").replace("\r\n", "\n").replace("\n", "\r\n").encode()


def headers_of(project: Any, address: str) -> str:
    """The headers of the copy the sink received for `address` (what a bounce quotes)."""
    data = next(r.data for r in project.sink.received if r.rcpt == address)
    return data.split(b"\r\n\r\n", 1)[0].decode()


def rows(project: Any, model: Any, *where: Any) -> list[Any]:
    with project.ctx.db.session() as s:
        return list(s.scalars(select(model).where(*where)))


def test_return_path_tokens_are_signed_and_survive_case_changes() -> None:
    secret = Secret("k" * 32)
    rp = make_return_path(secret, 4711, "bounces", DOMAIN)
    assert rp.startswith("bounces+4711.") and rp.endswith("@" + DOMAIN)
    assert read_return_path(secret, rp, "bounces", DOMAIN) == 4711
    assert read_return_path(secret, f"<{rp.upper()}>", "bounces", DOMAIN) == 4711
    forged = rp.replace("bounces+4711.", "bounces+4712.")
    assert read_return_path(secret, forged, "bounces", DOMAIN) is None
    assert read_return_path(Secret("x" * 32), rp, "bounces", DOMAIN) is None
    assert read_return_path(secret, rp.replace(DOMAIN, "other.test"), "bounces", DOMAIN) is None


def test_replies_while_sending_are_acted_on_by_category(project: Any) -> None:
    project.bounces = {"domain": DOMAIN, "guard_min_sample": 1000}
    project.write_config()
    project.sink.rules = [
        Rule(r"^hard", 550, "5.1.1 <hard@x>: Recipient address rejected: User unknown"),
        Rule(r"^full", 452, "4.2.2 Mailbox full, try again later", times=1),
        Rule(r"^block", 554, "5.7.1 Service unavailable; Client host [192.0.2.1] blocked "
                             "using zen.spamhaus.org"),
        Rule(r"^policy", 550, "5.7.1 Message rejected: it contains a virus", stage="data"),
    ]
    people = ["hard0", "full0", "block0", "policy0"] + [f"ok{i}" for i in range(6)]
    make_campaign(project, "replies", rows=[(f"{p}@example.test", p, "C") for p in people])
    project.workers(2)
    project.cli("launch", "replies")
    snap = project.wait_status("replies", timeout_s=90)
    assert snap["status"] == "finished", snap
    got = ledger(project, "replies")
    assert got["hard0@example.test"] == ("bounced", 1)
    assert got["full0@example.test"][0] == "sent"
    assert got["block0@example.test"] == ("failed", 3)        # retried within the budget
    assert got["policy0@example.test"] == ("bounced", 1)      # permanent, not the recipient
    by_address = {d.address: d for d in rows(project, Delivery)}
    assert by_address["hard0@example.test"].bounce_category == "hard"
    assert by_address["block0@example.test"].bounce_category == "block"
    assert by_address["policy0@example.test"].bounce_category == "policy"
    suppressed = {s.address: s for s in rows(project, Suppression)}
    assert set(suppressed) == {"hard0@example.test"}          # block and policy never suppress
    hard = suppressed["hard0@example.test"]
    assert (hard.source, hard.category) == ("bounce", "hard")
    assert hard.delivery_id == by_address["hard0@example.test"].id and hard.bounce_id
    # every message went out with its own signed VERP return path
    settings = project.ctx.settings
    for received in project.sink.received:
        delivery_id = read_return_path(settings.secret_key, received.mail_from, "bounces", DOMAIN)
        assert delivery_id == by_address[received.rcpt].id, received.mail_from


def test_our_relay_refusing_us_pauses_the_campaign_and_bounces_no_one(project: Any) -> None:
    project.sink.rules = [Rule(r"^relay", 554, "5.7.1 <relay0@example.test>: Relay access denied")]
    make_campaign(project, "refused", rows=[("relay0@example.test", "R", "C")] +
                  [(f"ok{i}@example.test", "N", "C") for i in range(3)])
    project.workers(1)
    project.cli("launch", "refused")
    snap = project.wait_status("refused", ("paused",), timeout_s=60)
    assert snap["status"] == "paused" and "refused us" in snap["reason"], snap
    status, attempts = ledger(project, "refused")["relay0@example.test"]
    assert (status, attempts) == ("queued", 0)                # kept for after the fix
    assert rows(project, Suppression) == [] and rows(project, BounceEvent) == []


def _serve(project: Any) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "bounces", "serve",
                             "--listen", "127.0.0.1:0"], env=project.env, cwd=project.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        pytest.fail(f"bounces serve did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, int(line.split()[1].rpartition(":")[2])


def test_returned_messages_through_bounces_serve(project: Any) -> None:
    project.bounces = {"domain": DOMAIN, "guard_min_sample": 1000}
    project.write_config()
    make_campaign(project, "news", rows=[(f"r{i}@example.test", f"N{i}", "C") for i in range(6)])
    project.workers(1)
    project.cli("launch", "news")
    assert project.wait_status("news")["counts"]["sent"] == 6
    ids = {d.address: d.id for d in rows(project, Delivery)}
    secret = project.ctx.settings.secret_key
    verp = {a: make_return_path(secret, i, "bounces", DOMAIN) for a, i in ids.items()}
    proc, port = _serve(project)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            # 1. a hard bounce to its VERP address: bounced + suppressed
            hard = dsn("r0@example.test", "5.1.1", "550 5.1.1 User unknown",
                       headers_of(project, "r0@example.test"))
            smtp.sendmail("", [verp["r0@example.test"]], hard)
            # 2. the same bounce again: recorded once, nothing more happens
            smtp.sendmail("", [verp["r0@example.test"]], hard)
            # 3. a complaint sent to the plain bounce address: matched by our header
            smtp.sendmail("", [f"bounces@{DOMAIN}"],
                          arf("r1@example.test", headers_of(project, "r1@example.test")))
            # 4. a delay notice: recorded, not an outcome
            smtp.sendmail("", [verp["r2@example.test"]],
                          dsn("r2@example.test", "4.4.1", "connect timed out",
                              headers_of(project, "r2@example.test"), action="delayed",
                              subject="Delayed Mail (still being retried)"))
            # 5. a forged bounce: a VERP address with a wrong MAC, no header of ours
            forged = verp["r3@example.test"][:-len(DOMAIN) - 3] + "zz@" + DOMAIN
            smtp.sendmail("", [forged], dsn("r3@example.test", "5.1.1", "550 5.1.1 unknown",
                                            "Subject: hello\r\nFrom: someone@else.test\r\n"))
            # 6. a mail soft bounce (mailbox full, given up): bounced, not yet suppressed
            smtp.sendmail("", [verp["r4@example.test"]],
                          dsn("r4@example.test", "5.2.2", "552 5.2.2 Mailbox full",
                              headers_of(project, "r4@example.test")))
            # 7. not our domain: refused, so never an open relay
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("", ["postmaster@other.test"], b"Subject: x\r\n\r\nx\r\n")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    got = ledger(project, "news")
    assert got["r0@example.test"][0] == "bounced"
    assert got["r1@example.test"][0] == "bounced"
    assert got["r2@example.test"][0] == "sent"
    assert got["r3@example.test"][0] == "sent"
    assert got["r4@example.test"][0] == "bounced"
    suppressed = {s.address: s for s in rows(project, Suppression)}
    assert set(suppressed) == {"r0@example.test", "r1@example.test"}
    assert suppressed["r1@example.test"].source == "complaint"
    events = rows(project, BounceEvent)
    assert len([e for e in events if e.address == "r0@example.test"]) == 1
    delay = next(e for e in events if e.address == "r2@example.test")
    assert (delay.final, delay.action) == (False, "recorded")
    assert next(e for e in events if e.address == "r3@example.test").action == "unmatched"
    report = json.loads(project.cli("bounces", "report", "news", "--json").stdout)
    assert report["by_category"] == {"hard": 1, "complaint": 1, "soft": 1}
    assert report["by_domain_group"] == {"example.test": 3}
    assert any("User unknown" in d["text"] for d in report["top_diagnostics"])
    text = project.cli("bounces", "report", "news").stdout
    assert "by category: " in text and "hard 1" in text


def _sent_rows(project: Any, name: str, addresses: list[str], when: Any) -> dict[str, int]:
    """A campaign whose rows are marked sent at `when`, without sending (the policy's
    arithmetic does not need the wire)."""
    make_campaign(project, name, rows=[(a, "N", "C") for a in addresses])
    lifecycle.launch(project.ctx.db, project.ctx.settings, name, lambda *a, **k: None)
    with project.ctx.db.session() as s:
        cid = lifecycle.get_campaign(s, name).id
        s.execute(update(Delivery).where(Delivery.campaign_id == cid)
                  .values(status="sent", sent_at=when))
    return {d.address: d.id for d in rows(project, Delivery) if d.campaign_id == cid}


def soft(project: Any, delivery_id: int, address: str, key: str) -> intake.Applied:
    report = BounceReport.of("mailboxfull")
    report = BounceReport(report.category, report.permanent, report.reason, recipient=address)
    return intake.apply(project.ctx.db, project.ctx.settings, report, source="file",
                        delivery_id=delivery_id, key=key, address=address)


def test_soft_bounces_suppress_after_the_limit_and_a_success_resets_the_count(project: Any) -> None:
    project.bounces = {"soft_limit": 2, "soft_days": 7}
    project.write_config()
    a, b = "a@example.test", "b@example.test"
    old = utcnow() - timedelta(days=1)
    one = _sent_rows(project, "one", [a, b], old)
    assert soft(project, one[a], a, "1a").action == "bounced"
    assert soft(project, one[b], b, "1b").action == "bounced"
    # b gets a later message through: its count starts again from there
    _sent_rows(project, "two", [b], utcnow())
    three = _sent_rows(project, "three", [a, b], utcnow())
    assert soft(project, three[a], a, "3a").action == "suppressed"   # 2 within 7 days
    assert soft(project, three[b], b, "3b").action == "bounced"      # 1 since the success
    sup = rows(project, Suppression)
    assert [(s.address, s.source) for s in sup] == [(a, "soft-limit")]
    assert "2 soft bounces within 7 days" in sup[0].reason
    assert sup[0].delivery_id == three[a]


def test_reputation_guard_pauses_a_campaign_with_too_many_hard_bounces(project: Any) -> None:
    project.bounces = {"guard_min_sample": 20, "guard_max_hard": 0.05}
    project.write_config()
    project.sink.rules = [Rule(r"^dead", 550, "5.1.1 User unknown")]
    people = [(f"{'dead' if i % 4 == 0 else 'live'}{i}@example.test", "N", "C") for i in range(400)]
    make_campaign(project, "dirty", rows=people)
    project.sink.delay_s = 0.005
    project.workers(1)
    project.cli("launch", "dirty")
    snap = project.wait_status("dirty", ("paused", "finished"), timeout_s=90)
    assert snap["status"] == "paused", snap
    assert snap["reason"].startswith("reputation guard: hard-bounce rate"), snap
    assert "above 5.0%" in snap["reason"]
    assert snap["counts"]["queued"] > 0                       # it stopped before the end
    status = json.loads(project.cli("status", "dirty", "--json").stdout)
    assert "reputation guard" in status["reason"]


def test_suppressions_import_and_export_csv(project: Any) -> None:
    path = project.root / "supp.csv"
    path.write_text("email,reason\nx@example.test,left the company\nnot-an-address,oops\n"
                    "Y@Example.test,\n", encoding="utf-8")
    done = project.cli("suppressions", "import", str(path), check=False)
    assert done.returncode == 1
    assert f"{path}:3" in done.stdout and "email" in done.stdout
    assert "2 suppressed, 0 already suppressed, 1 rows with errors" in done.stdout
    exported = project.cli("suppressions", "export").stdout.splitlines()
    assert exported[0] == "email,reason,source,category,delivery_id,bounce_id,created_at,scope"
    assert exported[1].startswith("x@example.test,left the company,import,")
    assert exported[2].startswith("y@example.test,imported,import,")
    again = project.root / "again.csv"
    again.write_text("\n".join(exported) + "\n", encoding="utf-8")
    assert "0 suppressed, 2 already suppressed" in project.cli("suppressions", "import", str(again)).stdout


def test_bounce_mailbox_polled_by_the_workers_over_imap(project: Any, tmp_path: Any) -> None:
    """A returned message delivered to a real IMAP mailbox (Dovecot) is fetched by the
    workers' periodic poll, applied once, and moved out of the inbox."""
    from tests.dovecot import private_dovecot
    with private_dovecot(tmp_path / "imap", users={"bounces": "mailbox-pw-1"}) as server:
        project.bounces = {"domain": DOMAIN, "imap_every_s": 1,
                           "imap": {"host": server.host, "port": server.port_imap,
                                    "security": "none", "user": "bounces",
                                    "password": "mailbox-pw-1", "timeout_s": 10}}
        project.write_config()
        make_campaign(project, "mailbox", rows=[(f"m{i}@example.test", "N", "C") for i in range(3)])
        project.workers(1)
        project.cli("launch", "mailbox")
        assert project.wait_status("mailbox")["counts"]["sent"] == 3
        ids = {d.address: d.id for d in rows(project, Delivery)}
        rp = make_return_path(project.ctx.settings.secret_key, ids["m0@example.test"],
                              "bounces", DOMAIN)
        # as the bounce domain's MTA delivers it: Delivered-To names the VERP address
        raw = (f"Delivered-To: {rp}\r\n".encode()
               + dsn("m0@example.test", "5.1.1", "550 5.1.1 No such user",
                     "Subject: x\r\nFrom: news@shop.test\r\n"))
        server.append("bounces", raw)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ledger(project, "mailbox")["m0@example.test"][0] != "bounced":
            time.sleep(0.3)
        assert ledger(project, "mailbox")["m0@example.test"][0] == "bounced"
        assert [s.address for s in rows(project, Suppression)] == ["m0@example.test"]
        time.sleep(2.5)                           # more polls: nothing processed twice
        assert len(rows(project, BounceEvent)) == 1
        assert server.messages("bounces", "INBOX") == []
        assert len(server.messages("bounces", "Processed")) == 1
        # the CLI's one-off poll finds nothing left, and never prints the password
        polled = project.cli("bounces", "poll")
        assert "0 messages handled" in polled.stdout
        assert "mailbox-pw-1" not in polled.stdout + polled.stderr
