"""parse_bounce over our own synthetic returned messages, one or more per dialect
(tests/bounces/*.eml): recipient, category, fine reason and permanence of each report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.bounces import BounceCategory, classify_files, parse_bounce

FIXTURES = Path(__file__).parent / "bounces"
H, S, B, P, A = (BounceCategory.HARD, BounceCategory.SOFT, BounceCategory.BLOCK,
                 BounceCategory.POLICY, BounceCategory.AUTH)

# (fixture, report index, recipient, category, reason, permanent)
CASES = [
    ("postfix-userunknown.eml", 0, "nobody.here@receiver.example", H, "userunknown", True),
    ("postfix-mailboxfull-2rcpt.eml", 0, "full.box@isp.example", S, "mailboxfull", False),
    ("postfix-mailboxfull-2rcpt.eml", 1, "gone@isp.example", H, "userunknown", True),
    ("exim-text.eml", 0, "lost.user@far.example", H, "userunknown", True),
    ("exim-expired.eml", 0, "slow@sleepy.example", BounceCategory.EXPIRED, "expired", True),
    ("sendmail-blocked.eml", 0, "buyer@bigmail.example", B, "blocked", False),
    ("qmail-mailboxfull.eml", 0, "crowded@mailhost.example", S, "mailboxfull", False),
    ("exchange2003-text.eml", 0, "someone@corp.example", H, "userunknown", True),
    ("office365-spf.eml", 0, "buyer@tenant.example", A, "authfailure", True),
    ("gmail-nosuchuser.eml", 0, "ghost@school.example", H, "userunknown", True),
    ("gmail-delayed.eml", 0, "late@slowhost.example", BounceCategory.EXPIRED, "delayed", False),
    ("yahoo-sender.eml", 0, "member@club.example", B, "rejected", False),
    ("courier-hostunknown.eml", 0, "who@nowhere-at-all.example", H, "hostunknown", True),
    ("domino-text.eml", 0, "staff.member@notes.example", H, "userunknown", True),
    ("mailmarshal-text.eml", 0, "former.staff@gateway.example", H, "userunknown", True),
    ("opensmtpd-hostunknown.eml", 0, "typo@gmial.example", H, "hostunknown", True),
    ("amazonses-bounce.eml", 0, "missing@dest.example", H, "userunknown", True),
    ("arf-abuse.eml", 0, "annoyed@mailbox.example", BounceCategory.COMPLAINT, "feedback", True),
    ("autoreply-ooo.eml", 0, "pat@office.example", BounceCategory.AUTOREPLY, "vacation", False),
    ("dsn-delivered.eml", 0, "happy@inbox.example", BounceCategory.DELIVERED, "delivered",
     False),
    ("dsn-delayed.eml", 0, "waiting@busy.example", BounceCategory.EXPIRED, "delayed", False),
    ("dsn-nullmx.eml", 0, "info@parked.example", H, "notaccept", True),
    # Zoho: a 4xx connection failure in a permanent-error report is Zoho giving up
    ("zoho-expired.eml", 0, "unreachable@far.example", BounceCategory.EXPIRED, "expired", True),
    ("zoho-expired.eml", 1, "nobody@near.example", H, "userunknown", True),
    # "Diagnostic-Code: X-Unix; 71" is a local program's exit code; a delay, so not final
    ("sendmail-xunix-delayed.eml", 0, "piped@lists.example", S, "mailererror", False),
]


def reports(name: str) -> list:  # type: ignore[type-arg]
    return parse_bounce((FIXTURES / name).read_bytes())


@pytest.mark.parametrize("name,index,recipient,category,reason,permanent", CASES,
                         ids=[f"{c[0]}#{c[1]}" for c in CASES])
def test_fixture(name: str, index: int, recipient: str, category: BounceCategory, reason: str,
                 permanent: bool) -> None:
    report = reports(name)[index]
    assert report.recipient == recipient
    assert (report.category, report.reason, report.permanent) == (category, reason, permanent)


def test_every_fixture_is_in_the_table() -> None:
    listed = {c[0] for c in CASES}
    assert listed == {p.name for p in FIXTURES.glob("*.eml")}


def test_report_counts_match_the_table() -> None:
    for name in {c[0] for c in CASES}:
        assert len(reports(name)) == sum(1 for c in CASES if c[0] == name), name


def test_codes_and_diagnostic_are_kept() -> None:
    report = reports("postfix-userunknown.eml")[0]
    assert (report.status, report.reply_code) == ("5.1.1", 550)
    assert "User unknown" in (report.diagnostic or "") and "\n" not in (report.diagnostic or "")


def test_our_delivery_header_comes_back_from_the_returned_headers() -> None:
    report = reports("postfix-userunknown.eml")[0]
    assert report.original_message_id == "<c1-d42@sender.example>"
    assert report.original_headers["X-Campaigns-Delivery"] == "42.7.abcdef"
    assert reports("exim-text.eml")[0].original_headers["X-Campaigns-Delivery"] == "77.3.q1w2e3"
    assert reports("office365-spf.eml")[0].original_headers["X-Campaigns-Delivery"] == "800.8.o365"


def test_complaint_carries_feedback_type_and_original() -> None:
    report = reports("arf-abuse.eml")[0]
    assert report.feedback_type == "abuse"
    assert report.original_message_id == "<c12-d9@sender.example>"
    assert report.original_headers["X-Campaigns-Delivery"] == "9.12.fbl"


def test_delayed_dsn_is_expired_but_neither_final_nor_permanent() -> None:
    for name in ("dsn-delayed.eml", "gmail-delayed.eml"):
        report = reports(name)[0]
        assert (report.category, report.reason) == (BounceCategory.EXPIRED, "delayed")
        assert not report.final and not report.permanent


DELAY_NOTICES = {"dsn-delayed.eml", "gmail-delayed.eml", "sendmail-xunix-delayed.eml"}


def test_every_other_report_is_final() -> None:
    assert not any(r.final for name in DELAY_NOTICES for r in reports(name))
    for name in {c[0] for c in CASES} - DELAY_NOTICES:
        assert all(r.final for r in reports(name)), name


def test_delay_notice_that_names_a_cause_keeps_it_but_is_not_final() -> None:
    raw = (FIXTURES / "dsn-delayed.eml").read_bytes()
    raw = raw.replace(b"Status: 4.4.1", b"Status: 4.2.2").replace(
        b"Diagnostic-Code: X-Postfix; connect to mx.busy.example[192.0.2.50]:25: Connection\n"
        b"    timed out", b"Diagnostic-Code: smtp; 452 4.2.2 Mailbox full")
    report = parse_bounce(raw)[0]
    assert (report.category, report.reason) == (S, "mailboxfull")
    assert not report.final and not report.permanent


def test_original_sent_as_text_plain_after_the_report_is_not_read_as_the_reason() -> None:
    report = reports("sendmail-xunix-delayed.eml")[0]
    assert report.original_message_id == "<c22-d2200@sender.example>"
    assert "ClamAV" not in (report.diagnostic or "")


def test_status_comment_is_the_diagnostic_when_nothing_else_is_said() -> None:
    # no Diagnostic-Code and no prose about the recipient: "Status: 5.0.0 (comment)" is all
    raw = (FIXTURES / "dsn-delayed.eml").read_bytes()
    start = raw.index(b"Diagnostic-Code:")
    end = raw.index(b"Will-Retry-Until:")
    raw = raw[:start] + raw[end:]
    raw = raw.replace(b"Action: delayed", b"Action: failed").replace(
        b"Status: 4.4.1", b"Status: 5.0.0 (user's mailbox is full)")
    raw = raw.replace(b"<waiting@busy.example>: connect to mx.busy.example[192.0.2.50]:25: "
                      b"Connection\n    timed out", b"")
    report = parse_bounce(raw)[0]
    assert (report.diagnostic, report.reason) == ("user's mailbox is full", "mailboxfull")


def test_bounce_forwarded_by_a_person_is_read_through_the_quoting() -> None:
    body = (FIXTURES / "sendmail-blocked.eml").read_bytes().split(b"\n\n", 1)[1]
    text = b"\n".join(b"> " + line for line in body.split(b"\n")
                      if not line.startswith((b"--q23", b"Content-Type", b"This is a MIME")))
    head = (b"> From: Mail Delivery Subsystem <MAILER-DAEMON@out.sender.example>\n"
            b"> To: <shop@sender.example>\n> Subject: Returned mail\n>\n")
    raw = (b"From: shop@sender.example\nTo: postmaster@sender.example\nSubject: Fwd: Returned "
           b"mail\n\nBegin forwarded message:\n\n" + head + text + b"\n")
    report = parse_bounce(raw)[0]
    assert (report.recipient, report.category) == ("buyer@bigmail.example", B)


def test_mbox_file_gives_the_reports_of_every_message() -> None:
    one = (FIXTURES / "postfix-userunknown.eml").read_bytes()
    two = (FIXTURES / "sendmail-blocked.eml").read_bytes()
    raw = (b"From MAILER-DAEMON  Wed Mar  4 09:00:00 2026\n" + one + b"\n"
           b"From MAILER-DAEMON  Wed Mar  4 09:05:00 2026\n" + two)
    assert [r.recipient for r in parse_bounce(raw)] == ["nobody.here@receiver.example",
                                                        "buyer@bigmail.example"]


def test_mangled_boundary_is_recovered() -> None:
    raw = (FIXTURES / "postfix-userunknown.eml").read_bytes()
    raw = raw.replace(b'boundary="4F1A22C0D3.1772529302/mta1.sender.example"',
                      b'boundary="4F1A22C0D3.0000000000/mta1.sender.example"')
    report = parse_bounce(raw)[0]
    assert (report.recipient, report.reason) == ("nobody.here@receiver.example", "userunknown")


def test_not_a_bounce_names_nobody() -> None:
    raw = b"From: friend@example.org\r\nTo: shop@sender.example\r\nSubject: lunch?\r\n\r\nNoon?\r\n"
    assert parse_bounce(raw) == []


def test_garbage_does_not_raise() -> None:
    assert isinstance(parse_bounce(b"\x00\xff garbage \r\n\r\n--x\r\n"), list)


def test_classify_files_yields_json_rows(tmp_path: Path) -> None:
    rows = list(classify_files([FIXTURES / "postfix-mailboxfull-2rcpt.eml",
                                FIXTURES / "arf-abuse.eml"]))
    assert [r["recipient"] for r in rows] == ["full.box@isp.example", "gone@isp.example",
                                             "annoyed@mailbox.example"]
    assert rows[2]["feedback_type"] == "abuse" and rows[1]["category"] == "hard"
    assert set(rows[0]) == {"file", "recipient", "category", "permanent", "reason", "status",
                            "reply_code", "diagnostic", "original_message_id", "feedback_type",
                            "final"}
    json.dumps(rows)


def test_imports_neither_celery_nor_sqlalchemy() -> None:
    code = ("import sys, campaigns.bounces, campaigns.bounces.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'sqlalchemy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
