"""Issue 16: the SMTP submission gateway, driven by real clients as an ERP uses them
(Python's smtplib with STARTTLS + AUTH LOGIN, implicit TLS + AUTH PLAIN, and swaks), with
real workers sending through the project's sink."""
from __future__ import annotations

import smtplib
import subprocess
import time
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any, Iterator

import pytest

from campaigns.headers import DELIVERY_HEADER
from tests import debian
from tests.gateway_helpers import PASSWORD, Gateway, add_user, gateway_toml, start_gateway

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


@pytest.fixture
def gateway(project: Any) -> Iterator[Gateway]:
    project.bounces = {"domain": "bounces.bottega.example.it"}    # VERP return paths
    project.extra_toml += gateway_toml()
    project.write_config()
    add_user(project, "erp", "--from-domain", "bottega.example.it", "--stream", "invoices")
    gw = start_gateway(project)
    yield gw
    gw.stop()


def invoice(to: list[str], bcc: str | None = None, message_id: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Bottega Rossi <fatture@bottega.example.it>"
    msg["To"] = ", ".join(to)
    msg["Subject"] = "Fattura n. 2026/0042"
    if bcc:
        msg["Bcc"] = bcc
    if message_id:
        msg["Message-ID"] = message_id
    msg["Date"] = "Wed, 02 Dec 2026 08:00:00 +0100"
    msg.set_content("Gentile cliente,\nin allegato la fattura.\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="fattura.pdf")
    return msg


def rows(project: Any, stream: str = "invoices") -> list[tuple[str, str, str]]:
    from sqlalchemy import text
    with project.ctx.db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT d.address, d.status, d.origin FROM deliveries d JOIN campaigns c "
            "ON c.id = d.campaign_id WHERE c.stream = :s ORDER BY d.id"), {"s": stream})]


def wait_sent(project: Any, n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(1 for r in rows(project) if r[1] == "sent") >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"not {n} sent: {rows(project)}")


def test_a_pdf_invoice_to_three_recipients_arrives_as_written(project: Any,
                                                              gateway: Gateway) -> None:
    project.workers(1)
    to = ["anna@clienti.example.com", "bruno@clienti.example.com", "carla@clienti.example.com"]
    msg = invoice(to, bcc="archivio@bottega.example.it", message_id="<inv-42@erp.bottega>")
    written = msg.as_bytes(policy=SMTP)
    with smtplib.SMTP("127.0.0.1", gateway.submission, timeout=30) as smtp:
        smtp.starttls(context=gateway.tls())
        smtp.ehlo("erp.example.it")
        assert "auth" in smtp.esmtp_features and "login" in smtp.esmtp_features["auth"].lower()
        for feature in ("size", "8bitmime", "pipelining", "enhancedstatuscodes"):
            assert feature in smtp.esmtp_features, feature
        smtp.user, smtp.password = "erp", PASSWORD
        code, _ = smtp.auth("LOGIN", smtp.auth_login)
        assert code == 235
        refused = smtp.sendmail("fatture@bottega.example.it", to, written)
        assert refused == {}
    wait_sent(project, 3)
    assert sorted(r[0] for r in rows(project)) == sorted(to)
    assert {r[2] for r in rows(project)} == {"smtp"}
    got = {r.rcpt: r.data for r in project.sink.received}
    assert sorted(got) == sorted(to)
    expected = b"".join(line for line in written.splitlines(True)
                        if not line.lower().startswith(b"bcc:")).replace(b"\r\n", b"\n")
    for rcpt, data in got.items():
        first, rest = data.replace(b"\r\n", b"\n").split(b"\n", 1)
        assert first.startswith(DELIVERY_HEADER.encode() + b": ")
        assert rest.rstrip(b"\n") == expected.rstrip(b"\n"), rcpt     # byte for byte
        assert b"archivio@" not in data
    # the envelope sender is our VERP return path, not the ERP's address
    assert all(r.mail_from.endswith("@bounces.bottega.example.it")
               for r in project.sink.received), [r.mail_from for r in project.sink.received]


def test_implicit_tls_and_auth_plain(project: Any, gateway: Gateway) -> None:
    project.workers(1)
    with gateway.login(implicit=True) as smtp:
        smtp.sendmail("fatture@bottega.example.it", ["dario@clienti.example.com"],
                      invoice(["dario@clienti.example.com"]).as_bytes(policy=SMTP))
    wait_sent(project, 1)
    data = project.sink.received[0].data
    assert b"\nMessage-ID: " in data.replace(b"\r\n", b"\n")      # added: the ERP gave none
    assert b"List-Unsubscribe" not in data
    # aiosmtpd's per-session warnings about choices made on purpose stay out of the log
    time.sleep(0.5)
    noise = [line for line in gateway.lines if "deprecated" in line or "require_tls" in line
             or "Requiring AUTH" in line]
    assert noise == [], noise


def test_swaks_submits_with_starttls_and_auth(project: Any, gateway: Gateway) -> None:
    swaks = debian.ensure("swaks", "swaks")
    project.workers(1)
    done = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(gateway.submission), "--tls",
         "--tls-verify", "--tls-ca-path", gateway.cert, "--auth", "LOGIN",
         "--auth-user", "erp", "--auth-password", PASSWORD,
         "--from", "fatture@bottega.example.it", "--to", "elena@clienti.example.com",
         "--header", "From: fatture@bottega.example.it", "--header", "Subject: swaks",
         "--body", "from swaks", "--helo", "erp.example.it"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "250 2.0.0 Ok: queued as" in done.stdout
    wait_sent(project, 1)


def _refused(err: smtplib.SMTPException) -> tuple[int, str]:
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(err.recipients.values()))
        return code, text.decode()
    return err.smtp_code, err.smtp_error.decode()  # type: ignore[attr-defined]


def test_refusals_answer_what_a_client_understands(project: Any, gateway: Gateway) -> None:
    from campaigns.ledger.suppressions import add
    add(project.ctx.db, "gone@clienti.example.com", reason="5.1.1 user unknown", source="bounce")
    # wrong password
    with smtplib.SMTP("127.0.0.1", gateway.submission, timeout=30) as smtp:
        smtp.starttls(context=gateway.tls())
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            smtp.login("erp", "wrong password entirely")
        assert err.value.smtp_code == 535 and b"5.7.8" in err.value.smtp_error
    # AUTH before STARTTLS: not offered, and refused when tried
    with smtplib.SMTP("127.0.0.1", gateway.submission, timeout=30) as smtp:
        smtp.ehlo("erp.example.it")
        assert "auth" not in smtp.esmtp_features and "starttls" in smtp.esmtp_features
        code, text = smtp.docmd("AUTH", "PLAIN AGVycABub3Q=")
        assert code == 538 and b"5.7.11" in text
        code, text = smtp.docmd("MAIL", "FROM:<fatture@bottega.example.it>")
        assert code == 530 and b"5.7.0" in text
    with gateway.login() as smtp:
        # envelope sender outside the login's domains
        with pytest.raises(smtplib.SMTPSenderRefused) as sender:
            smtp.sendmail("ceo@altro.example.com", ["x@clienti.example.com"],
                          invoice(["x@clienti.example.com"]).as_bytes(policy=SMTP))
        assert sender.value.smtp_code == 553 and b"5.7.1" in sender.value.smtp_error
        assert b"bottega.example.it" in sender.value.smtp_error
        # From header outside them
        forged = invoice(["x@clienti.example.com"])
        forged.replace_header("From", "ceo@altro.example.com")
        with pytest.raises(smtplib.SMTPDataError) as data:
            smtp.sendmail("fatture@bottega.example.it", ["x@clienti.example.com"],
                          forged.as_bytes(policy=SMTP))
        assert data.value.smtp_code == 553 and b"5.7.1" in data.value.smtp_error
        # a suppressed recipient: 550 5.1.1 with the suppression's reason and date
        with pytest.raises(smtplib.SMTPRecipientsRefused) as rcpt:
            smtp.sendmail("fatture@bottega.example.it", ["gone@clienti.example.com"],
                          invoice(["gone@clienti.example.com"]).as_bytes(policy=SMTP))
        code, text = _refused(rcpt.value)
        assert code == 550 and "5.1.1" in text and "bounce" in text
        assert time.strftime("%Y-") in text
    assert rows(project) == []          # nothing recorded


def test_oversize_and_over_rate(project: Any) -> None:
    project.extra_toml += gateway_toml("max_message_bytes = 20000\n")
    project.write_config()
    add_user(project, "erp", "--from-domain", "bottega.example.it", "--stream", "invoices",
             "--rate", "1/s")
    gw = start_gateway(project)
    try:
        with gw.login() as smtp:
            big = invoice(["x@clienti.example.com"])
            big.add_attachment(b"x" * 30000, maintype="application", subtype="octet-stream",
                               filename="big.bin")
            with pytest.raises(smtplib.SMTPException) as err:
                smtp.sendmail("fatture@bottega.example.it", ["x@clienti.example.com"],
                              big.as_bytes(policy=SMTP))
            code, text = _refused(err.value)
            assert code == 552 and "5.3.4" in text
        codes = []
        with gw.login() as smtp:
            for i in range(4):
                code, text = smtp.docmd("MAIL", "FROM:<fatture@bottega.example.it>")
                codes.append((code, text))
                smtp.rset()
        assert any(c == 451 and b"4.7.1" in t for c, t in codes), codes
    finally:
        gw.stop()
    assert rows(project) == []


def test_five_failed_logins_lock_the_address_out(project: Any, gateway: Gateway) -> None:
    import base64

    def plain(password: str) -> str:    # one AUTH PLAIN: one attempt (smtplib's login tries two)
        return "PLAIN " + base64.b64encode(b"\0erp\0" + password.encode()).decode()

    for i in range(5):
        with smtplib.SMTP("127.0.0.1", gateway.submission, timeout=30) as smtp:
            smtp.starttls(context=gateway.tls())
            smtp.ehlo("erp.example.it")
            if i == 4:      # the fifth wrong password still gets 535: the lock starts after it
                code, text = smtp.docmd("AUTH", plain(PASSWORD))
                assert code == 235, (code, text)     # four failures: the right one works
                code, text = smtp.docmd("QUIT")
                break
            code, text = smtp.docmd("AUTH", plain("not the password at all"))
            assert code == 535 and b"5.7.8" in text
    with smtplib.SMTP("127.0.0.1", gateway.submission, timeout=30) as smtp:
        smtp.starttls(context=gateway.tls())
        smtp.ehlo("erp.example.it")
        code, text = smtp.docmd("AUTH", plain("not the password at all"))
        assert code == 535                       # the fifth failure within the minute
    smtp = smtplib.SMTP("127.0.0.1", gateway.submission, timeout=30)
    smtp.starttls(context=gateway.tls())
    smtp.ehlo("erp.example.it")
    code, text = smtp.docmd("AUTH", plain(PASSWORD))
    assert code == 421 and b"4.7.0" in text     # even the right password, for a minute
    smtp.close()


def test_a_resubmission_is_answered_250_and_sent_once(project: Any, gateway: Gateway) -> None:
    project.workers(1)
    msg = invoice(["fede@clienti.example.com"], message_id="<inv-43@erp.bottega>").as_bytes(policy=SMTP)
    answers = []
    for _ in range(2):
        with gateway.login() as smtp:
            smtp.mail("fatture@bottega.example.it")
            smtp.rcpt("fede@clienti.example.com")
            answers.append(smtp.data(msg))
    assert [a[0] for a in answers] == [250, 250]
    wait_sent(project, 1)
    time.sleep(1.0)
    assert len(rows(project)) == 1 and project.sink.counts()["fede@clienti.example.com"] == 1


def test_suppressed_accept_records_it_and_messages_list_shows_the_stream(project: Any) -> None:
    import json

    from campaigns.ledger.suppressions import add
    project.extra_toml += gateway_toml('suppressed = "accept"\n')
    project.write_config()
    add_user(project, "erp", "--from-domain", "bottega.example.it", "--stream", "invoices")
    add(project.ctx.db, "gone@clienti.example.com", reason="5.1.1 user unknown", source="bounce")
    project.workers(1)
    gw = start_gateway(project)
    try:
        with gw.login() as smtp:
            refused = smtp.sendmail("fatture@bottega.example.it",
                                    ["gone@clienti.example.com", "gina@clienti.example.com"],
                                    invoice(["gina@clienti.example.com"]).as_bytes(policy=SMTP))
            assert refused == {}
    finally:
        gw.stop()
    wait_sent(project, 1)
    assert sorted((a, s) for a, s, _ in rows(project)) == [
        ("gina@clienti.example.com", "sent"), ("gone@clienti.example.com", "suppressed")]
    assert "gone@clienti.example.com" not in project.sink.counts()
    listed = json.loads(project.cli("messages", "list", "--stream", "invoices", "--json").stdout)
    items = listed["items"] if isinstance(listed, dict) else listed
    assert sorted(m["to"] for m in items) == ["gina@clienti.example.com",
                                              "gone@clienti.example.com"]
