"""A returned report is counted once however it reached us (issue 11 item 4): the same DSN
delivered again with other trace headers (Return-Path, Delivered-To, X-Original-To,
Received) is one report, so one expiry never counts as "3 soft bounces"; two different
reports for the same recipient still count twice."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from campaigns import intake
from campaigns.models import BounceEvent, Suppression, utcnow
from campaigns.content.tokens import make_return_path
from tests.test_bounces_intake import DOMAIN, _sent_rows

EXPIRY = """Date: Tue, 1 Dec 2026 09:00:05 +0000 (UTC)
From: MAILER-DAEMON@mx.example.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"
Message-Id: <20261201090005.{queue}@mx.example.test>

--B1
Content-Type: text/plain

This is the mail system at host mx.example.test.
I'm sorry to have to inform you that your message could not be delivered to one or more
recipients. It has been in the queue for 5 days.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.test
X-Postfix-Queue-ID: {queue}
Original-Envelope-Id: {envid}
Arrival-Date: {arrival}

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: failed
Status: 4.4.7
Diagnostic-Code: X-Postfix; delivery temporarily suspended: connect to
    mx.far.test[192.0.2.7]:25: Connection timed out

--B1
Content-Type: text/rfc822-headers

Message-ID: <{envid}@shop.test>
From: news@shop.test
To: {rcpt}
Subject: news

--B1--
"""


def expiry(rcpt: str, verp: str, queue: str, arrival: str) -> bytes:
    text = EXPIRY.format(verp=verp, rcpt=rcpt, queue=queue, envid=f"env-{queue}",
                         arrival=arrival)
    return text.replace("\n", "\r\n").encode()


def traced(raw: bytes, hop: int, verp: str) -> bytes:
    """The same message as another path delivers it: its own trace headers on top."""
    trace = (f"Return-Path: <>\r\nDelivered-To: {verp}\r\nX-Original-To: {verp}\r\n"
             f"Received: from mx.example.test (mx{hop}.example.test [192.0.2.{hop}])\r\n"
             f"\tby in{hop}.{DOMAIN} (Postfix) with ESMTP id Q{hop}X{hop}\r\n"
             f"\tfor <{verp}>; Tue, 1 Dec 2026 09:0{hop}:00 +0000 (UTC)\r\n")
    if hop % 2:
        trace += f"Received: by relay{hop}.example.test; Tue, 1 Dec 2026 09:0{hop}:01 +0000\r\n"
    return trace.encode() + raw


def events(project: Any, address: str) -> list[BounceEvent]:
    with project.ctx.db.session() as s:
        return list(s.scalars(select(BounceEvent).where(BounceEvent.address == address)))


def suppressed(project: Any) -> list[str]:
    with project.ctx.db.session() as s:
        return list(s.scalars(select(Suppression.address)))


def test_one_dsn_with_other_trace_headers_counts_once(project: Any) -> None:
    project.bounces = {"domain": DOMAIN, "soft_limit": 3, "soft_days": 7,
                       "guard_min_sample": 1000}
    project.write_config()
    db, settings = project.ctx.db, project.ctx.settings
    a, b = "once@example.test", "thrice@example.test"
    sent = utcnow() - timedelta(days=5)
    rows = [_sent_rows(project, f"news{i}", [a, b] if i == 0 else [b], sent) for i in range(3)]
    secret = settings.secret_key

    def verp(delivery_id: int) -> str:
        return make_return_path(secret, delivery_id, "bounces", DOMAIN)

    # one expiry for `a`, delivered three times by different paths
    raw = expiry(a, verp(rows[0][a]), "4Q1AbC", "Thu, 26 Nov 2026 09:00:00 +0000")
    actions = []
    for hop in range(1, 4):
        copy = traced(raw, hop, verp(rows[0][a]))
        for applied in intake.process_message(db, settings, copy, source="inbound",
                                              envelope_to=[verp(rows[0][a])]):
            actions.append(applied.action)
    assert actions == ["bounced", "duplicate", "duplicate"]
    assert len(events(project, a)) == 1
    assert a not in suppressed(project)
    # the same copy from a mailbox (Delivered-To names the VERP address) is that report too
    copy = traced(raw, 4, verp(rows[0][a]))
    [again] = intake.process_message(db, settings, copy, source="imap",
                                     envelope_to=intake._envelope_recipients(copy))
    assert again.action == "duplicate"

    # three different expiries for `b` (three messages): each counts, the third suppresses
    got = []
    for i, sent_rows in enumerate(rows):
        raw = expiry(b, verp(sent_rows[b]), f"5R{i}XyZ", f"Thu, 26 Nov 2026 09:0{i}:00 +0000")
        for hop in (1, 2):   # … each also delivered twice
            got += [x.action for x in intake.process_message(
                db, settings, traced(raw, hop, verp(sent_rows[b])), source="inbound",
                envelope_to=[verp(sent_rows[b])])]
    assert got == ["bounced", "duplicate", "bounced", "duplicate", "suppressed", "duplicate"]
    assert len(events(project, b)) == 3
    assert suppressed(project) == [b]
