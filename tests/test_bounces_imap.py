"""The IMAP bounce poller against a real Dovecot (tests/dovecot.py installs Debian's
dovecot-imapd when it is missing): IMAPS and STARTTLS with a private CA, move and flag modes,
a failing handler, a wrong password, a certificate from another CA, and the TOML table.

One server for the module; each test has a user (a mailbox) of its own."""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from campaigns.intake.imap import ImapConfig, ImapError, PollResult, parse_imap_config, poll_once
from campaigns.errors import InputError
from campaigns.settings import Secret
from tests.dovecot import DovecotServer, private_dovecot

USERS = ("tls", "starttls", "nomove", "flagged", "failing", "wrongpw", "certs")
PASSWORDS = {user: f"s3cret-pw-{user}" for user in USERS}
WHERE = "campaigns.toml [bounces.imap]"
PROCESSED_UTF7 = "Trait&AOk-s bounces"     # "Traités bounces" in modified UTF-7 (RFC 3501)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    root = tmp_path_factory.mktemp("imap")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = root / "cert.pem", root / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    # "nomove" sees a server without MOVE and UIDPLUS: COPY, \Deleted, EXPUNGE.
    with private_dovecot(root, users=PASSWORDS, tls_cert=(cert, key),
                         user_settings={"nomove": {"imap_capability": "IMAP4rev1"}}) as srv:
        yield srv


def config(server: DovecotServer, user: str, security: str = "none", **kw: Any) -> ImapConfig:
    port = server.port_imaps if security == "tls" else server.port_imap
    return ImapConfig(host=server.host, port=port, security=security, user=user,
                      password=Secret(PASSWORDS[user]), timeout_s=10, **kw)


def bounce(n: int, user: str) -> bytes:
    """A Postfix-style DSN for the n-th message, CRLF line ends as on the wire."""
    text = f"""\
Return-Path: <>
Received: from mx.example.net (mx.example.net [192.0.2.25])
\tby imap.campaigns.example.com with ESMTP id B{n:04d}; Thu, 6 Mar 2025 10:0{n}:00 +0000
Date: Thu, 6 Mar 2025 10:0{n}:00 +0000
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender ({n})
To: bounces+{user}-{n}@campaigns.example.com
Message-ID: <20250306100{n}.B{n:04d}@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B{n:04d}.1741255200/mx.example.net"

This is a MIME-encapsulated message.

--B{n:04d}.1741255200/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<reader{n}@example.org>: host mx1.example.org[198.51.100.7] said: 550 5.1.1
    <reader{n}@example.org>: Recipient address rejected: User unknown

--B{n:04d}.1741255200/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Thu, 6 Mar 2025 10:00:00 +0000

Final-Recipient: rfc822; reader{n}@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx1.example.org
Diagnostic-Code: smtp; 550 5.1.1 <reader{n}@example.org>: Recipient address
    rejected: User unknown

--B{n:04d}.1741255200/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: News <news@campaigns.example.com>
To: reader{n}@example.org
Subject: March newsletter
X-Campaigns-Delivery: {1000 + n}

--B{n:04d}.1741255200/mx.example.net--
"""
    return text.replace("\n", "\r\n").encode("ascii")


def deliver(server: DovecotServer, user: str, numbers: range) -> list[bytes]:
    messages = [bounce(n, user) for n in numbers]
    for raw in messages:
        server.append(user, raw)
    return messages


def collect() -> tuple[list[bytes], Any]:
    got: list[bytes] = []
    return got, got.append


@pytest.mark.parametrize("security,user", [("tls", "tls"), ("starttls", "starttls"),
                                           ("tls", "nomove")])
def test_moves_handled_messages_over_tls(server: DovecotServer, ca_file: str,
                                         security: str, user: str) -> None:
    sent = deliver(server, user, range(1, 4))
    got, handle = collect()
    cfg = config(server, user, security, ca_file=ca_file)

    assert poll_once(cfg, handle) == PollResult(handled=3, failed=0)
    assert got == sent
    assert poll_once(cfg, handle) == PollResult(handled=0, failed=0)
    assert len(got) == 3
    assert [m.raw for m in server.messages(user, "Processed")] == sent
    assert server.messages(user, "INBOX") == []


def test_flag_mode_keeps_messages_and_never_repeats(server: DovecotServer) -> None:
    sent = deliver(server, "flagged", range(1, 4))
    got, handle = collect()
    cfg = config(server, "flagged", "none", done="flag", batch=2)

    assert poll_once(cfg, handle) == PollResult(handled=2, failed=0)
    assert poll_once(cfg, handle) == PollResult(handled=1, failed=0)
    assert poll_once(cfg, handle) == PollResult(handled=0, failed=0)
    assert got == sent
    inbox = server.messages("flagged")
    assert [m.raw for m in inbox] == sent
    assert all({"$CampaignsDone", "\\Seen"} <= m.flags for m in inbox)

    later = deliver(server, "flagged", range(4, 5))
    assert poll_once(cfg, handle) == PollResult(handled=1, failed=0)
    assert got == sent + later
    assert poll_once(cfg, handle) == PollResult(handled=0, failed=0)


def test_failing_handler_leaves_its_message_for_the_next_poll(
        server: DovecotServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sent = deliver(server, "failing", range(1, 4))
    cfg = config(server, "failing", "none", done_folder="Traités bounces")
    got, keep = collect()

    def handle(raw: bytes) -> None:
        if b"Returned to Sender (2)" in raw:
            raise ValueError("no delivery for X-Campaigns-Delivery 1002")
        keep(raw)

    assert poll_once(cfg, handle) == PollResult(handled=2, failed=1)
    assert got == [sent[0], sent[2]]
    left = server.messages("failing")
    assert [m.raw for m in left] == [sent[1]]
    assert "\\Seen" not in left[0].flags                 # read with BODY.PEEK[]
    assert [m.raw for m in server.messages("failing", PROCESSED_UTF7)] == [sent[0], sent[2]]
    failure = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failure) == 1
    assert f"UID {left[0].uid}" in failure[0].getMessage()
    assert "ValueError: no delivery for X-Campaigns-Delivery 1002" in failure[0].getMessage()

    got.clear()
    assert poll_once(cfg, got.append) == PollResult(handled=1, failed=0)
    assert got == [sent[1]]
    assert server.messages("failing") == []


@pytest.mark.parametrize("wrong", ["Wr0ng-pa55word-zq", 'wr\\ông "pässwörd"'])
def test_wrong_password_names_server_and_user_but_not_the_password(
        server: DovecotServer, caplog: pytest.LogCaptureFixture, wrong: str) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = ImapConfig(host=server.host, port=server.port_imap, security="none", user="wrongpw",
                     password=Secret(wrong), timeout_s=10)

    with pytest.raises(ImapError) as caught:
        poll_once(cfg, lambda raw: None)

    text = str(caught.value)
    assert f"imap {server.host}:{server.port_imap}: login failed for user 'wrongpw'" in text
    chained: list[BaseException] = []
    err: BaseException | None = caught.value
    while err is not None:
        chained.append(err)
        err = err.__cause__ or err.__context__
    everything = " ".join(f"{e!s} {e!r}" for e in chained) + caplog.text + repr(cfg)
    # the passwords, and any word of them (as quoted on the wire), but the user name
    secrets = (wrong, PASSWORDS["wrongpw"])
    for fragment in {*secrets, *(w for s in secrets for w in re.findall(r"\w{5,}", s))}:
        assert fragment == "wrongpw" or fragment not in everything


@pytest.mark.parametrize("security,trusted", [("tls", "system store"), ("tls", "other CA"),
                                              ("starttls", "other CA")])
def test_certificate_from_another_ca_is_refused(server: DovecotServer, tmp_path: Path,
                                                security: str, trusted: str) -> None:
    ca_file = None
    if trusted == "other CA":
        ca_file = str(tmp_path / "other-ca.pem")
        trustme.CA().cert_pem.write_to_path(ca_file)
    cfg = config(server, "certs", security, ca_file=ca_file)

    with pytest.raises(ImapError, match="certificate verification failed") as caught:
        poll_once(cfg, lambda raw: None)
    assert f"{server.host}:{cfg.port}" in str(caught.value)


# --- the TOML table ------------------------------------------------------------------------

def test_parse_imap_config_reads_a_good_table(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_imap_config({"host": "imap.example.com", "user": "bounces",
                             "password": "s3cret-pw", "done": "flag", "batch": 50,
                             "ca_file": "/etc/ssl/private-ca.pem"}, WHERE)
    assert (cfg.host, cfg.server_port, cfg.security, cfg.user) == \
        ("imap.example.com", 993, "tls", "bounces")
    assert (cfg.folder, cfg.done, cfg.done_keyword, cfg.batch, cfg.timeout_s) == \
        ("INBOX", "flag", "$CampaignsDone", 50, 30.0)
    assert cfg.password.reveal() == "s3cret-pw" and "s3cret-pw" not in repr(cfg)

    monkeypatch.setenv("BOUNCE_IMAP_PASSWORD", "from-env")
    cfg = parse_imap_config({"host": "imap.example.com", "security": "starttls",
                             "user": "bounces", "password_env": "BOUNCE_IMAP_PASSWORD",
                             "done_folder": "Bounces/Done"}, WHERE)
    assert (cfg.server_port, cfg.password.reveal(), cfg.done_folder) == \
        (143, "from-env", "Bounces/Done")


GOOD = {"host": "imap.example.com", "user": "bounces", "password": "s3cret-pw"}


@pytest.mark.parametrize("change,field,expected", [
    ({"passwd": "x"}, "passwd", "unknown key"),
    ({"security": "ssl"}, "security", "expected one of tls, starttls, none (got 'ssl')"),
    ({"host": None}, "host", "required"),
    ({"port": 0}, "port", "expected an integer from 1 to 65535 (got 0)"),
    ({"port": "993"}, "port", "expected an integer"),
    ({"done": "delete"}, "done", "expected one of move, flag (got 'delete')"),
    ({"done_folder": "INBOX"}, "done_folder", "must differ from folder"),
    ({"done_keyword": "\\Seen"}, "done_keyword", "expected an IMAP keyword"),
    ({"batch": 0}, "batch", "expected an integer from 1"),
    ({"password": None}, "password", "expected a non-empty string"),
    ({"password": 12345678}, "password", "expected a non-empty string"),
])
def test_parse_imap_config_names_the_field(change: dict[str, Any], field: str,
                                           expected: str) -> None:
    raw = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(InputError) as caught:
        parse_imap_config(raw, WHERE)
    text = str(caught.value)
    assert text.startswith(f"{WHERE}: field '{field}': ")
    assert expected in text
    assert "s3cret-pw" not in text and "12345678" not in text
