"""SmtpRelay and FileRelay against a real ScriptedSink on 127.0.0.1 (no fakes of smtplib)."""
from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from campaigns.errors import (ConfigError, RelayConfigError, RelayError, RelayInDoubt,
                              RelayPermanentError, RelayTemporaryError)
from campaigns.relays import FileRelay, OutgoingMessage, SmtpRelay, build_relay
from campaigns.relays.smtp import parse_reply, retry_after_s
from campaigns.settings import RelayConfig, Secret
from campaigns.cli.sink import Rule, ScriptedSink

pytestmark = pytest.mark.timeout(20)

PASSWORD = "Zq8-unmistakable-P4ssw0rd"
USER = "mailer"


def message(rcpt: str = "alice@example.com", body: bytes = b"Hello Alice.\r\n",
            sender: str = "news@example.org", smtputf8: bool = False) -> OutgoingMessage:
    mid = f"<{uuid.uuid4().hex}@example.org>"
    head = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: Test\r\nMessage-ID: {mid}\r\n\r\n"
    return OutgoingMessage(sender=sender, recipient=rcpt, data=head.encode() + body,
                           message_id=mid, smtputf8=smtputf8)


@pytest.fixture
def sink_factory() -> Iterator[Callable[..., ScriptedSink]]:
    sinks: list[ScriptedSink] = []

    def start(**kw: Any) -> ScriptedSink:
        sinks.append(ScriptedSink(**kw).start())
        return sinks[-1]

    yield start
    for s in sinks:
        s.stop()


@pytest.fixture
def sink(sink_factory: Callable[..., ScriptedSink]) -> ScriptedSink:
    return sink_factory()


@pytest.fixture
def relay_factory() -> Iterator[Callable[..., SmtpRelay]]:
    relays: list[SmtpRelay] = []

    def make(sink: ScriptedSink | None = None, **kw: Any) -> SmtpRelay:
        kw.setdefault("timeout_s", 5.0)
        if sink is not None:
            kw.setdefault("host", sink.host)
            kw.setdefault("port", sink.port)
        relays.append(SmtpRelay(RelayConfig(name="test", **kw), backoff_min_s=0.01,
                                backoff_max_s=0.05))
        return relays[-1]

    yield make
    for r in relays:
        r.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def greeting_server() -> Iterator[Callable[[bytes], tuple[int, list[int]]]]:
    """A bare TCP server answering every connection with one greeting line, then closing.
    Returns (port, [connection count])."""
    servers: list[socket.socket] = []

    def start(greeting: bytes) -> tuple[int, list[int]]:
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(5)
        servers.append(server)
        accepted = [0]

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                accepted[0] += 1
                with conn:
                    conn.sendall(greeting)

        threading.Thread(target=serve, daemon=True).start()
        return server.getsockname()[1], accepted

    yield start
    for server in servers:
        server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- accepted messages ------------------------------------------------------------------------

def test_accepted_message_arrives_byte_for_byte(sink: ScriptedSink, relay_factory: Callable[..., SmtpRelay]) -> None:
    msg = message(body=b"Line one\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n")
    result = relay_factory(sink).send(msg)
    assert (result.code, result.enhanced) == (250, "2.0.0")
    assert result.text.startswith("Ok: queued as") and result.provider_id == "1"
    assert len(sink.received) == 1
    got = sink.received[0]
    assert (got.mail_from, got.rcpt, got.data) == (msg.sender, msg.recipient, msg.data)


def test_one_connection_is_reused_for_many_messages(sink: ScriptedSink, relay_factory: Callable[..., SmtpRelay]) -> None:
    relay = relay_factory(sink)
    for i in range(25):
        assert relay.send(message(f"user{i}@example.com")).code == 250
    assert sink.wait_for(25, timeout_s=5)
    assert sink.connections == 1


def test_smtputf8_recipient(sink: ScriptedSink, relay_factory: Callable[..., SmtpRelay]) -> None:
    msg = message("jos\u00e9@exampl\u00e9.com", smtputf8=True)
    assert relay_factory(sink).send(msg).code == 250
    assert sink.counts() == {"jos\u00e9@exampl\u00e9.com": 1}


def test_non_ascii_address_without_smtputf8_is_permanent_and_connection_survives(
        sink: ScriptedSink, relay_factory: Callable[..., SmtpRelay]) -> None:
    relay = relay_factory(sink)
    with pytest.raises(RelayPermanentError, match="smtputf8"):
        relay.send(message("jos\u00e9@example.com"))
    assert relay.send(message()).code == 250
    assert sink.connections == 1


# --- refusals -------------------------------------------------------------------------------

def test_451_is_temporary_with_reply_and_connection_stays_usable(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[Rule("^defer", 451, "4.3.0 Try again later")])
    relay = relay_factory(sink)
    with pytest.raises(RelayTemporaryError) as info:
        relay.send(message("defer@example.com"))
    err = info.value
    assert (err.code, err.enhanced, err.text) == (451, "4.3.0", "Try again later")
    assert err.retry_after_s is None and "defer@example.com" in str(err)
    assert relay.send(message("ok@example.com")).code == 250       # after RSET, same connection
    assert sink.connections == 1 and sink.counts() == {"ok@example.com": 1}


def test_retry_after_hint(sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[Rule("^grey", 450, "4.7.1 Greylisted, retry after 5 minutes")])
    with pytest.raises(RelayTemporaryError) as info:
        relay_factory(sink).send(message("grey@example.com"))
    assert info.value.retry_after_s == 300


@pytest.mark.parametrize("text,expected", [
    ("try again in 30 seconds", 30), ("Retry after 2 min", 120), ("retry after 1 hour", 3600),
    ("Mailbox busy", None)])
def test_retry_after_parsing(text: str, expected: float | None) -> None:
    assert retry_after_s(text) == expected


def test_parse_reply_multiline() -> None:
    assert parse_reply(b"5.1.1 User unknown\n5.1.1 see https://x") == ("5.1.1", "User unknown see https://x")
    assert parse_reply(b"Ok") == (None, "Ok")


def test_550_is_permanent(sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[Rule("^bounce", 550, "5.1.1 User unknown")])
    relay = relay_factory(sink)
    with pytest.raises(RelayPermanentError) as info:
        relay.send(message("bounce@example.com"))
    assert (info.value.code, info.value.enhanced, info.value.text) == (550, "5.1.1", "User unknown")
    assert relay.send(message()).code == 250 and sink.connections == 1


def test_refusal_after_body_is_mapped(sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[Rule("^spam", 554, "5.7.1 Message rejected as spam", stage="data")])
    relay = relay_factory(sink)
    with pytest.raises(RelayPermanentError) as info:
        relay.send(message("spam@example.com"))
    assert info.value.enhanced == "5.7.1"
    assert relay.send(message()).code == 250 and sink.connections == 1


@pytest.mark.parametrize("rule", [
    Rule("^far", 554, "5.7.1 <far@elsewhere.net>: Relay access denied"),
    Rule("^far", 550, "5.7.1 Relaying denied"),
    Rule("^far", 550, "not permitted to relay"),
    Rule("^far", 530, "5.7.0 Authentication required"),
])
def test_our_relay_refusing_us_is_a_config_error(
        rule: Rule, sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[rule])
    with pytest.raises(RelayConfigError) as info:
        relay_factory(sink).send(message("far@elsewhere.net"))
    assert info.value.code == rule.code


def test_user_unknown_in_relay_table_is_still_the_recipients_fault(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[Rule("^gone", 550, "5.1.1 <gone@x>: User unknown in relay recipient table")])
    with pytest.raises(RelayPermanentError):
        relay_factory(sink).send(message("gone@x"))


# --- connection loss and 421 ----------------------------------------------------------------

def test_421_at_mail_reconnects_and_delivers_once(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[Rule("^news@", 421, "4.3.2 Service shutting down", times=1, stage="mail")])
    relay = relay_factory(sink)
    assert relay.send(message()).code == 250
    assert sink.counts() == {"alice@example.com": 1}
    assert sink.connections == 2


def test_drop_at_rcpt_reconnects_and_delivers_once(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[Rule("^alice", 0, "", times=1, disconnect=True)])
    relay = relay_factory(sink)
    assert relay.send(message()).code == 250
    assert sink.counts() == {"alice@example.com": 1}
    assert sink.attempts("alice@example.com") == 2 and sink.connections == 2


def test_drop_every_time_gives_up_with_temporary_error(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[Rule("^alice", 0, "", disconnect=True)])
    relay = relay_factory(sink)
    with pytest.raises(RelayTemporaryError, match="gave up after 3 attempts"):
        relay.send(message())
    assert sink.attempts("alice@example.com") == 3 and not sink.received
    assert relay.send(message("bob@example.com")).code == 250   # the relay recovers


def test_idle_connection_closed_by_server_is_replaced(
        sink: ScriptedSink, relay_factory: Callable[..., SmtpRelay]) -> None:
    relay = relay_factory(sink)
    relay.send(message("a@example.com"))
    sink.drop_connections()
    time.sleep(0.05)
    assert relay.send(message("b@example.com")).code == 250
    assert sink.connections == 2 and sink.attempts("b@example.com") == 1


def test_drop_after_body_is_in_doubt_and_not_resent(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(rules=[Rule("^alice", 0, "", times=1, stage="data", disconnect=True)])
    relay = relay_factory(sink)
    with pytest.raises(RelayInDoubt):
        relay.send(message())
    assert sink.attempts("alice@example.com") == 1 and not sink.received
    assert relay.send(message("bob@example.com")).code == 250   # reconnects for the next one


def test_timeout_waiting_for_final_reply_is_in_doubt(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(delay_s=1.0)
    with pytest.raises(RelayInDoubt):
        relay_factory(sink, timeout_s=0.3).send(message())


# --- connecting: names, ports, TLS, AUTH ----------------------------------------------------

def test_name_not_resolved_is_config_error(relay_factory: Callable[..., SmtpRelay]) -> None:
    relay = relay_factory(host="nonexistent.invalid", port=25)
    with pytest.raises(RelayConfigError, match="cannot resolve host nonexistent.invalid"):
        relay.send(message())


def test_connection_refused_is_temporary(relay_factory: Callable[..., SmtpRelay]) -> None:
    port = closed_port()
    with pytest.raises(RelayTemporaryError, match=f"connection refused by 127.0.0.1:{port}"):
        relay_factory(host="127.0.0.1", port=port).open()


def test_421_greeting_is_retried_then_temporary(
        greeting_server: Callable[[bytes], tuple[int, list[int]]],
        relay_factory: Callable[..., SmtpRelay]) -> None:
    port, accepted = greeting_server(b"421 4.3.2 Too busy, try again in 2 minutes\r\n")
    with pytest.raises(RelayTemporaryError, match="gave up after 3 attempts") as info:
        relay_factory(host="127.0.0.1", port=port).send(message())
    assert (info.value.code, info.value.enhanced, info.value.retry_after_s) == (421, "4.3.2", 120)
    assert accepted[0] == 3


def test_554_greeting_is_config_error(greeting_server: Callable[[bytes], tuple[int, list[int]]],
                                      relay_factory: Callable[..., SmtpRelay]) -> None:
    port, accepted = greeting_server(b"554 5.7.1 No SMTP service for your address\r\n")
    with pytest.raises(RelayConfigError, match="554 5.7.1 No SMTP service") as info:
        relay_factory(host="127.0.0.1", port=port).send(message())
    assert info.value.code == 554 and accepted[0] == 1


def test_open_connects_before_the_first_message(sink: ScriptedSink,
                                                relay_factory: Callable[..., SmtpRelay]) -> None:
    relay = relay_factory(sink)
    relay.open()
    relay.open()
    assert sink.connections == 1
    relay.send(message())
    assert sink.connections == 1


def test_auth_success(sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(auth={USER: PASSWORD})
    relay = relay_factory(sink, username=USER, password=Secret(PASSWORD))
    assert relay.send(message()).code == 250 and len(sink.received) == 1


def test_auth_failure_is_config_error_without_password(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(auth={USER: "the-right-one"})
    relay = relay_factory(sink, username=USER, password=Secret(PASSWORD))
    with pytest.raises(RelayConfigError, match=f"authentication failed for user {USER}: 535") as info:
        relay.send(message())
    assert info.value.code == 535 and info.value.enhanced == "5.7.8"
    assert_no_password(info.value)


def test_starttls_verified_with_ca_file(sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay],
                                        server_tls: ssl.SSLContext, ca_file: str) -> None:
    sink = sink_factory(tls_context=server_tls, require_starttls=True, auth={USER: PASSWORD})
    relay = relay_factory(sink, security="starttls", ca_file=ca_file, username=USER,
                          password=Secret(PASSWORD))
    msg = message()
    assert relay.send(msg).code == 250 and sink.received[0].data == msg.data


def test_starttls_unverified_certificate_is_config_error(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay],
        server_tls: ssl.SSLContext) -> None:
    sink = sink_factory(tls_context=server_tls)
    with pytest.raises(RelayConfigError, match="certificate"):
        relay_factory(sink, security="starttls").send(message())


def test_tls_verify_false_accepts_unknown_certificate(
        sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay],
        server_tls: ssl.SSLContext) -> None:
    sink = sink_factory(tls_context=server_tls)
    assert relay_factory(sink, security="starttls", tls_verify=False).send(message()).code == 250


def test_starttls_not_offered_is_config_error(sink: ScriptedSink, relay_factory: Callable[..., SmtpRelay]) -> None:
    with pytest.raises(RelayConfigError, match="does not offer STARTTLS"):
        relay_factory(sink, security="starttls").send(message())


def test_implicit_tls(sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay],
                      server_tls: ssl.SSLContext, ca_file: str) -> None:
    sink = sink_factory(tls_context=server_tls, implicit_tls=True)
    relay = relay_factory(sink, security="tls", ca_file=ca_file)
    assert relay.send(message()).code == 250
    assert relay.check()[0].startswith(f"connected to 127.0.0.1:{sink.port} (TLSv1.")


def test_bad_ca_file_is_config_error(sink: ScriptedSink, relay_factory: Callable[..., SmtpRelay], tmp_path: Path) -> None:
    with pytest.raises(RelayConfigError, match="cannot load ca_file"):
        relay_factory(sink, security="tls", ca_file=str(tmp_path / "missing.pem")).open()


# --- the password never shows ---------------------------------------------------------------

def assert_no_password(err: BaseException) -> None:
    """Not in the messages of the error and its chain, nor in the local variables of their
    tracebacks (what a traceback printer with show_locals, like rich's, would print)."""
    seen: BaseException | None = err
    while seen is not None:
        for shown in (str(seen), repr(seen), str(getattr(seen, "text", "")), str(seen.args)):
            assert PASSWORD not in shown, f"password leaked by {type(seen).__name__}: {shown}"
        tb = seen.__traceback__
        while tb is not None:
            for name, value in tb.tb_frame.f_locals.items():
                if isinstance(value, (str, bytes)):
                    assert PASSWORD not in str(value), f"password in local {name} of {tb.tb_frame}"
            tb = tb.tb_next
        seen = seen.__cause__ or seen.__context__


def _failing_setups(server_tls: ssl.SSLContext) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (sink kwargs or None for no sink, relay kwargs)."""
    return {
        "wrong password": ({"auth": {USER: "other"}}, {}),
        "auth not offered": ({}, {}),
        "unresolved host": ({}, {"host": "nonexistent.invalid"}),
        "refused": ({}, {"port": closed_port()}),
        "tls unverified": ({"tls_context": server_tls}, {"security": "starttls"}),
        "starttls not offered": ({}, {"security": "starttls"}),
        "non-ascii password": ({"auth": {USER: "other"}}, {"password": Secret(PASSWORD + "\u00e9")}),
    }


@pytest.mark.parametrize("case", ["wrong password", "auth not offered", "unresolved host", "refused",
                                  "tls unverified", "starttls not offered", "non-ascii password"])
@pytest.mark.parametrize("call", ["send", "check"])
def test_password_never_in_errors(case: str, call: str, server_tls: ssl.SSLContext,
                                  sink_factory: Callable[..., ScriptedSink],
                                  relay_factory: Callable[..., SmtpRelay]) -> None:
    sink_kw, relay_kw = _failing_setups(server_tls)[case]
    sink = sink_factory(**sink_kw)
    relay_kw = {"username": USER, "password": Secret(PASSWORD), **relay_kw}
    relay = relay_factory(sink, **relay_kw)
    with pytest.raises(RelayError) as info:
        relay.send(message()) if call == "send" else relay.check()
    assert_no_password(info.value)
    assert PASSWORD not in repr(relay.__dict__)


# --- check() --------------------------------------------------------------------------------

def test_check_plain(sink: ScriptedSink, relay_factory: Callable[..., SmtpRelay]) -> None:
    lines = relay_factory(sink).check()
    assert lines == [f"connected to 127.0.0.1:{sink.port}", "EHLO ok (server: sink.campaigns.test)", "QUIT"]
    assert not sink.received


def test_check_starttls_and_auth(sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay],
                                 server_tls: ssl.SSLContext, ca_file: str) -> None:
    sink = sink_factory(tls_context=server_tls, auth={USER: PASSWORD})
    lines = relay_factory(sink, security="starttls", ca_file=ca_file, username=USER,
                          password=Secret(PASSWORD)).check()
    assert lines[:2] == [f"connected to 127.0.0.1:{sink.port}", "EHLO ok (server: sink.campaigns.test)"]
    assert lines[2].startswith("STARTTLS ok (TLSv1.")
    assert lines[3:] == [f"AUTH ok as {USER}", "QUIT"]


def test_check_names_failed_step(sink_factory: Callable[..., ScriptedSink], relay_factory: Callable[..., SmtpRelay]) -> None:
    sink = sink_factory(auth={USER: "other"})
    with pytest.raises(RelayConfigError, match=f"check failed at step 'AUTH as {USER}'"):
        relay_factory(sink, username=USER, password=Secret(PASSWORD)).check()
    with pytest.raises(RelayTemporaryError, match="check failed at step 'connect to"):
        relay_factory(host="127.0.0.1", port=closed_port()).check()


# --- building relays; the file relay --------------------------------------------------------

def test_build_relay_kinds(tmp_path: Path) -> None:
    assert isinstance(build_relay(RelayConfig(name="a")), SmtpRelay)
    assert isinstance(build_relay(RelayConfig(name="b", kind="file", path=str(tmp_path))), FileRelay)
    with pytest.raises(ConfigError, match=r"unknown kind 'carrier-pigeon' \(known kinds: file, smtp"):
        build_relay(RelayConfig(name="c", kind="carrier-pigeon"))
    relay = build_relay(RelayConfig(name="d", kind="campaigns.relays.file:FileRelay", path=str(tmp_path)))
    assert isinstance(relay, FileRelay)


def test_file_relay_writes_parseable_eml(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "mail"
    relay = build_relay(RelayConfig(name="files", kind="file", path=str(folder)))
    assert relay.check()[1] == "folder is writable"
    msg = message(body="Gr\u00fc\u00dfe\r\n".encode())
    result = relay.send(msg)
    files = list(folder.glob("*.eml"))
    assert len(files) == 1 and result.text == f"written to {files[0]}"
    assert (result.code, result.enhanced) == (250, "2.0.0")
    assert files[0].name.endswith(msg.message_id.strip("<>") + ".eml")
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == msg.message_id and parsed["To"] == "alice@example.com"
    assert files[0].read_bytes() == msg.data
    assert not list(folder.glob(".*"))   # no temporary left behind


def test_file_relay_unwritable_folder_is_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    relay = FileRelay(RelayConfig(name="files", kind="file", path=str(blocker / "sub")))
    with pytest.raises(RelayConfigError, match="cannot create folder"):
        relay.send(message())
    with pytest.raises(RelayConfigError, match="check failed"):
        relay.check()
