"""One contract for every relay kind: the same message in, the same observable outcome out.

smtp runs against a real ScriptedSink, file against a folder, console against captured
stdout, ses against moto's server (and, for answers moto cannot give: throttling, 5xx,
illegal address, GetAccount, against tests/fakeproviders.py speaking the SES v2 protocol),
sendgrid/mailgun/postmark against tests/fakeproviders.py. Every (kind, outcome) pair is either
run or excused in NOT_APPLICABLE with its reason; a test checks that nothing falls between.
"""
from __future__ import annotations

import json
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from campaigns.errors import (ConfigError, RelayConfigError, RelayError, RelayInDoubt,
                              RelayPermanentError, RelayTemporaryError)
from campaigns.delivery.retries import _verdict
from campaigns.content.mime import Attachment, MessageBuilder, make_message_id
from campaigns.relays import BUILTIN_KINDS, OutgoingMessage, Relay, available_kinds, build_relay
from campaigns.relays.presets import SMTP_PRESETS
from campaigns.settings import RelayConfig, Secret, _relay, require_secrets
from campaigns.cli.sink import Rule, ScriptedSink
from tests.fakeproviders import (AWS_KEY_ID, AWS_SECRET, BAD_KEY, GOOD_KEY, MAILGUN_DOMAIN,
                                 Arrived, FakeProviders, arrived_from_mime)

pytestmark = pytest.mark.timeout(60)

SUBJECT = "Offerta speciale è qui – 20%"
FROM_NAME = "Società Èlite Srl"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
DELIVERY = "d-4242.Kx9"
UNSUBSCRIBE = "https://example.org/u/tok-4242"
SENDER = "bounces+4242@example.org"
SMTP_USER, SMTP_PASSWORD = "mailer", "Smtp-Pw-unmistakable-77"
REGION = "eu-west-1"

KINDS = ("smtp", "file", "console", "ses", "sendgrid", "mailgun", "postmark")
OUTCOMES = ("accepted", "temporary", "permanent", "config", "throttle")
RECIPIENT = {"accepted": "alice@example.com", "temporary": "boom@example.com",
             "permanent": "invalid@example.com", "config": "alice@example.com",
             "throttle": "ratelimit@example.com"}
_STDOUT = "standard output refuses nothing: every message is printed"
NOT_APPLICABLE = {
    ("file", "temporary"): "a folder defers only on a full disk (ENOSPC), not safely caused here",
    ("file", "permanent"): "a folder refuses no recipient",
    ("file", "throttle"): "a folder has no rate limit",
    ("console", "temporary"): _STDOUT, ("console", "permanent"): _STDOUT,
    ("console", "config"): _STDOUT, ("console", "throttle"): _STDOUT,
}
CASES = [pytest.param(k, o, id=f"{k}-{o}") for k in KINDS for o in OUTCOMES
         if (k, o) not in NOT_APPLICABLE]
GIVES_PROVIDER_ID = {"ses", "sendgrid", "mailgun", "postmark"}
#: kinds that speak HTTP, not SMTP: their refusals carry `http_status` and a `category`,
#: never an SMTP code the provider did not send
API_KINDS = {"ses", "sendgrid", "mailgun", "postmark"}


def message(recipient: str) -> OutgoingMessage:
    mid = make_message_id("4242", "example.org")
    builder = MessageBuilder(from_addr=f"{FROM_NAME} <news@example.org>")
    data = builder.build(to=recipient, subject=SUBJECT, html="<p>Ciao, l'offerta è qui.</p>",
                         text="Ciao, l'offerta è qui.", message_id=mid, unsubscribe_url=UNSUBSCRIBE,
                         attachments=[Attachment("listino.pdf", PDF, "application/pdf")],
                         headers={"X-Campaigns-Delivery": DELIVERY})
    return OutgoingMessage(sender=SENDER, recipient=recipient, data=data, message_id=mid)


# --- services ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    server = FakeProviders().start()
    yield server
    server.stop()


class Moto:
    """moto's server: SES v2 with the sender's domain verified; messages read back through
    moto's data endpoint."""

    def __init__(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def post(self, path: str, data: bytes = b"") -> None:
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).close()

    def reset(self) -> None:
        self.post("/moto-api/reset")
        boto3.client("sesv2", region_name=REGION, endpoint_url=self.url, aws_access_key_id="x",
                     aws_secret_access_key="y").create_email_identity(EmailIdentity="example.org")

    def raw_messages(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/moto-api/data.json", timeout=10) as answer:
            return list(json.load(answer).get("ses", {}).get("RawMessage", []))

    def require_auth(self, on: bool) -> None:
        # moto checks keys against its IAM after this many requests ("inf": never)
        self.post("/moto-api/reset-auth", b"0" if on else b"inf")


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Moto]:
    server = Moto()
    yield server
    server.server.stop()


@pytest.fixture
def moto(moto_server: Moto) -> Iterator[Moto]:
    moto_server.reset()
    yield moto_server
    moto_server.require_auth(False)


# --- one setup per kind -----------------------------------------------------------------------

@dataclass
class Setup:
    relay: Relay
    arrived: Callable[[], list[Arrived]]
    secret: str | None                   # the password or key in use: never in any output
    provider_ids: Callable[[], list[str]] = lambda: []
    printed: Callable[[], str] = lambda: ""


@dataclass
class Env:
    tmp: Path
    fake: FakeProviders
    moto: Callable[[], Moto]
    stdout: Callable[[], str]
    cleanup: list[Callable[[], None]]


def _smtp(env: Env, outcome: str) -> Setup:
    sink = ScriptedSink(auth={SMTP_USER: SMTP_PASSWORD}, rules=[
        Rule("^boom@", 451, "4.3.0 Temporary local problem, try again later"),
        Rule("^invalid@", 550, "5.1.1 <invalid@example.com>: Recipient address rejected: User unknown"),
        Rule("^ratelimit@", 450, "4.7.0 Rate limited: too many messages, try again in 30 seconds"),
    ]).start()
    env.cleanup.append(sink.stop)
    password = "wrong-" + SMTP_PASSWORD if outcome == "config" else SMTP_PASSWORD
    relay = build_relay(RelayConfig(name="c-smtp", host=sink.host, port=sink.port, timeout_s=5,
                                    username=SMTP_USER, password=Secret(password),
                                    options={"backoff_min_s": 0.01, "backoff_max_s": 0.05}))
    return Setup(relay, lambda: [arrived_from_mime(r.data, r.rcpt) for r in sink.received], password)


def _file(env: Env, outcome: str) -> Setup:
    folder = env.tmp / "outbox"
    if outcome == "config":          # a file where the folder should be: a person must fix it
        folder.write_text("not a folder")
    relay = build_relay(RelayConfig(name="c-file", kind="file", path=str(folder)))
    return Setup(relay, lambda: [arrived_from_mime(p.read_bytes(), "alice@example.com")
                                 for p in sorted(folder.glob("*.eml"))], None)


def _console(env: Env, outcome: str) -> Setup:
    return Setup(build_relay(RelayConfig(name="trial", kind="console")), lambda: [], None,
                 printed=env.stdout)


def _ses(env: Env, outcome: str) -> Setup:
    if outcome in ("accepted", "config"):   # moto: real storage, real key checking
        moto = env.moto()
        moto.require_auth(outcome == "config")
        relay = build_relay(RelayConfig(
            name="c-ses", kind="ses", region=REGION, endpoint_url=moto.url, timeout_s=5,
            access_key_id=Secret(AWS_KEY_ID), secret_access_key=Secret(AWS_SECRET)))
        return Setup(relay, lambda: [arrived_from_mime(m["raw_data"].encode(), m["destinations"][0])
                                     for m in moto.raw_messages()], AWS_SECRET,
                     lambda: [m["id"] for m in moto.raw_messages()])
    # moto never throttles nor fails: the fake answers as the SES v2 API documents
    relay = build_relay(RelayConfig(
        name="c-ses", kind="ses", region=REGION, endpoint_url=env.fake.url, timeout_s=5,
        access_key_id=Secret(AWS_KEY_ID), secret_access_key=Secret(AWS_SECRET)))
    return Setup(relay, lambda: [env.fake.arrived(r) for r in env.fake.accepted("ses")], AWS_SECRET)


def _http(kind: str) -> Callable[[Env, str], Setup]:
    def setup(env: Env, outcome: str) -> Setup:
        key = BAD_KEY if outcome == "config" else GOOD_KEY
        relay = build_relay(RelayConfig(name=f"c-{kind}", kind=kind, base_url=env.fake.url,
                                        api_key=Secret(key), domain=MAILGUN_DOMAIN
                                        if kind == "mailgun" else None, timeout_s=5))
        return Setup(relay, lambda: [env.fake.arrived(r) for r in env.fake.accepted(kind)], key,
                     lambda: [env.fake.provider_id(r) for r in env.fake.accepted(kind)])
    return setup


ARRANGE: dict[str, Callable[[Env, str], Setup]] = {
    "smtp": _smtp, "file": _file, "console": _console, "ses": _ses,
    "sendgrid": _http("sendgrid"), "mailgun": _http("mailgun"), "postmark": _http("postmark")}


@pytest.fixture
def arrange(tmp_path: Path, fake: FakeProviders, request: pytest.FixtureRequest,
            capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[str, str], Setup]]:
    fake.requests.clear()
    env = Env(tmp_path, fake, lambda: request.getfixturevalue("moto"),
              lambda: capsys.readouterr().out, [])
    relays: list[Relay] = []

    def make(kind: str, outcome: str) -> Setup:
        setup = ARRANGE[kind](env, outcome)
        relays.append(setup.relay)
        return setup

    yield make
    for relay in relays:
        relay.close()
    for stop in env.cleanup:
        stop()


def _texts(err: BaseException) -> str:
    """Everything an error could show: its message, its reply text, and its causes'."""
    parts: list[str] = []
    seen: BaseException | None = err
    while seen is not None:
        parts += [str(seen), repr(seen), str(getattr(seen, "text", "") or "")]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def _category(err: RelayError) -> str:
    """The category the send path acts on (campaigns.delivery.retries._verdict)."""
    return _verdict(err).category.value


# --- the contract -----------------------------------------------------------------------------

def test_every_kind_and_outcome_is_run_or_excused_with_a_reason() -> None:
    assert set(KINDS) == set(BUILTIN_KINDS)
    run = {tuple(p.values) for p in CASES}
    for kind in KINDS:
        for outcome in OUTCOMES:
            assert (kind, outcome) in run or len(NOT_APPLICABLE[(kind, outcome)]) > 20


@pytest.mark.parametrize("kind, outcome", CASES)
def test_contract(kind: str, outcome: str, arrange: Callable[[str, str], Setup]) -> None:
    setup = arrange(kind, outcome)
    msg = message(RECIPIENT[outcome])
    if outcome == "accepted":
        _accepted(kind, setup, msg, setup.relay.send(msg))
        return
    with pytest.raises(RelayError) as caught:
        setup.relay.send(msg)
    err = caught.value
    assert not setup.arrived(), "a refused message must not arrive"
    if setup.secret:
        assert setup.secret not in _texts(err)
    if kind in API_KINDS and outcome != "accepted":    # no invented SMTP reply
        assert err.code is None and err.enhanced is None and err.category and err.http_status
    if outcome == "temporary":
        assert type(err) is RelayTemporaryError
        if kind in API_KINDS:     # a provider's 5xx: the relay is down, not the recipient
            assert err.http_status == 500 and err.relay_down
        else:
            assert err.code and 400 <= err.code < 500
        assert _category(err) not in ("hard", "throttle")
    elif outcome == "permanent":
        assert type(err) is RelayPermanentError
        if kind in API_KINDS:
            assert err.http_status and 400 <= err.http_status < 500
        else:
            assert err.code and err.code >= 500
        assert _category(err) == "hard"
    elif outcome == "config":
        assert type(err) is RelayConfigError
        assert err.code is None or _category(err) == "relay"
        if kind in API_KINDS:
            assert err.category == "relay"
    else:
        assert type(err) is RelayTemporaryError and err.retry_after_s and err.retry_after_s > 0
        assert _category(err) == "throttle"


def _accepted(kind: str, setup: Setup, msg: OutgoingMessage, result: Any) -> None:
    assert 200 <= result.code < 300
    if kind == "console":
        [line] = setup.printed().splitlines()
        assert msg.recipient in line and SUBJECT in line and "listino.pdf" in line
        return
    [got] = setup.arrived()
    assert got.recipient == msg.recipient
    assert got.subject == SUBJECT and got.from_name == FROM_NAME
    assert got.attachments == {"listino.pdf": PDF}
    assert got.headers["x-campaigns-delivery"] == DELIVERY
    assert got.headers["list-unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert got.headers["message-id"] == msg.message_id
    if kind in GIVES_PROVIDER_ID:
        [given] = setup.provider_ids()
        assert result.provider_id and result.provider_id == given.strip("<>")


# --- provider particulars ---------------------------------------------------------------------

@pytest.mark.parametrize("kind, wait_s", [("sendgrid", (25, 31)), ("mailgun", (20, 20)),
                                          ("postmark", (60, 60)), ("ses", (1, 1))])
def test_throttle_waits_as_the_provider_says(kind: str, wait_s: tuple[float, float],
                                              arrange: Callable[[str, str], Setup]) -> None:
    """SendGrid: X-RateLimit-Reset (a Unix time, +30 s); Mailgun: Retry-After: 20; Postmark
    documents no hint (60 s); SES: "Maximum sending rate exceeded" (a per-second rate)."""
    with pytest.raises(RelayTemporaryError) as caught:
        arrange(kind, "throttle").relay.send(message("ratelimit@example.com"))
    assert caught.value.retry_after_s is not None
    assert wait_s[0] <= caught.value.retry_after_s <= wait_s[1]


def test_ses_daily_quota_is_our_account_refusing_us(arrange: Callable[[str, str], Setup]) -> None:
    """The account's own daily sending quota is the relay refusing us (issue 14): the
    campaign pauses, the recipient is never blamed; the hint is still ten minutes."""
    with pytest.raises(RelayTemporaryError) as caught:
        arrange("ses", "throttle").relay.send(message("quota@example.com"))
    err = caught.value
    assert err.retry_after_s == 600.0 and "Throttling" in (err.text or "")
    assert _category(err) == "relay"


def test_postmark_inactive_recipient_is_a_hard_refusal(arrange: Callable[[str, str], Setup]) -> None:
    with pytest.raises(RelayPermanentError) as caught:
        arrange("postmark", "permanent").relay.send(message("inactive@example.com"))
    err = caught.value     # Postmark's ErrorCode 406, HTTP 422: no SMTP status was said
    assert err.enhanced is None and err.http_status == 422 and "inactive" in (err.text or "")
    assert (err.category, err.reason) == ("hard", "suppressed") and _category(err) == "hard"


def test_ses_unverified_sender_pauses_rather_than_bounces(moto: Moto) -> None:
    relay = build_relay(RelayConfig(name="s", kind="ses", region=REGION, endpoint_url=moto.url,
                                    access_key_id=Secret(AWS_KEY_ID),
                                    secret_access_key=Secret(AWS_SECRET)))
    msg = message("alice@example.com")
    with pytest.raises(RelayConfigError, match="Did not have authority"):
        relay.send(OutgoingMessage("news@not-verified.example", msg.recipient, msg.data, msg.message_id))
    assert not moto.raw_messages()


def test_ses_malformed_recipient_is_refused_for_good_by_moto(moto: Moto) -> None:
    relay = build_relay(RelayConfig(name="s", kind="ses", region=REGION, endpoint_url=moto.url,
                                    access_key_id=Secret(AWS_KEY_ID),
                                    secret_access_key=Secret(AWS_SECRET)))
    msg = message("alice@example.com")
    with pytest.raises(RelayPermanentError) as caught:
        relay.send(OutgoingMessage(SENDER, "alice@", msg.data, msg.message_id))
    assert _category(caught.value) == "hard" and not moto.raw_messages()


@pytest.mark.parametrize("kind", ["ses", "sendgrid", "mailgun", "postmark"])
def test_no_answer_after_sending_is_in_doubt(kind: str, fake: FakeProviders) -> None:
    """The request went out and no answer came: the provider may have taken it, so the
    message must not be resent blindly."""
    relay = _api_relay(kind, fake.url, timeout_s=0.5)
    with pytest.raises(RelayInDoubt):
        relay.send(message("slow@example.com"))
    relay.close()


@pytest.mark.parametrize("kind", ["ses", "sendgrid", "mailgun", "postmark"])
def test_nobody_listening_is_temporary(kind: str) -> None:
    import socket
    with socket.socket() as probe:       # a port that was free a moment ago: refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(RelayTemporaryError) as caught:
        _api_relay(kind, url).send(message("alice@example.com"))
    assert caught.value.code is None and GOOD_KEY not in _texts(caught.value)


def test_a_host_that_does_not_resolve_is_for_a_person_to_fix() -> None:
    relay = _api_relay("sendgrid", "http://no-such-host.invalid")
    with pytest.raises(RelayConfigError, match="cannot resolve host no-such-host.invalid"):
        relay.check()


def _api_relay(kind: str, url: str, *, key: str = GOOD_KEY, timeout_s: float = 5, **kw: Any) -> Relay:
    if kind == "ses":
        return build_relay(RelayConfig(name="s", kind="ses", region=REGION, endpoint_url=url,
                                       timeout_s=timeout_s, access_key_id=Secret(kw.pop(
                                           "key_id", AWS_KEY_ID)),
                                       secret_access_key=Secret(AWS_SECRET), **kw))
    kw.setdefault("domain", MAILGUN_DOMAIN if kind == "mailgun" else None)
    return build_relay(RelayConfig(name="a", kind=kind, base_url=url, api_key=Secret(key),
                                   timeout_s=timeout_s, **kw))


# --- check(): one cheap authenticated call, no mail ------------------------------------------

@pytest.mark.parametrize("kind, expected", [
    ("sendgrid", "the key has the mail.send scope"),
    ("mailgun", f"domain {MAILGUN_DOMAIN} is active"),
    ("postmark", "message stream 'outbound' exists (Transactional)"),
    ("ses", "quota: 50000.0 per 24 h, 14.0/s"),
])
def test_check_reports_the_steps_and_sends_nothing(kind: str, expected: str,
                                                     fake: FakeProviders) -> None:
    fake.requests.clear()
    kw: dict[str, Any] = {"configuration_set": "campaigns"} if kind == "ses" else {}
    lines = _api_relay(kind, fake.url, **kw).check()
    assert any(expected in line for line in lines), lines
    assert fake.requests and not fake.accepted(kind)


@pytest.mark.parametrize("kind", ["ses", "sendgrid", "mailgun", "postmark"])
def test_check_with_a_bad_key_names_the_step_not_the_key(kind: str, fake: FakeProviders) -> None:
    relay = _api_relay(kind, fake.url, key=BAD_KEY, key_id="AKIABADBADBADBAD0000") \
        if kind == "ses" else _api_relay(kind, fake.url, key=BAD_KEY)
    with pytest.raises(RelayConfigError) as caught:
        relay.check()
    text = _texts(caught.value)
    assert BAD_KEY not in text and AWS_SECRET not in text
    assert ("API key rejected" if kind != "ses" else "rejected the credentials") in str(caught.value)


@pytest.mark.parametrize("kind, kw, expected", [
    ("mailgun", {"domain": "mg.unknown.example"}, "not found"),
    ("postmark", {"message_stream": "nope"}, "message stream 'nope' is not usable"),
    ("ses", {"configuration_set": "nope"}, "NotFoundException"),
])
def test_check_finds_what_is_misconfigured(kind: str, kw: dict[str, Any], expected: str,
                                           fake: FakeProviders) -> None:
    with pytest.raises(RelayConfigError, match=expected):
        _api_relay(kind, fake.url, **kw).check()


def test_check_of_console_and_file(tmp_path: Path) -> None:
    assert "nothing is sent" in build_relay(RelayConfig(name="t", kind="console")).check()[0]
    lines = build_relay(RelayConfig(name="f", kind="file", path=str(tmp_path / "o"))).check()
    assert lines[-1] == "folder is writable"


# --- the registry -----------------------------------------------------------------------------

def test_unknown_kind_names_every_known_kind() -> None:
    with pytest.raises(ConfigError) as caught:
        build_relay(RelayConfig(name="x", kind="carrier-pigeon"))
    text = str(caught.value)
    assert text.startswith("relay 'x': unknown kind 'carrier-pigeon' (known kinds: file, smtp;")
    assert all(f" {kind}" in text for kind in KINDS)


@pytest.mark.parametrize("kind, module, extra", [
    ("ses", "boto3", "ses"), ("sendgrid", "httpx", "http"), ("mailgun", "httpx", "http"),
    ("postmark", "httpx", "http")])
def test_a_missing_optional_dependency_names_the_extra(kind: str, module: str, extra: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)      # "import boto3" now fails
    config = RelayConfig(name="x", kind=kind, region=REGION, api_key=Secret(GOOD_KEY),
                         domain=MAILGUN_DOMAIN)
    with pytest.raises(ConfigError) as caught:
        build_relay(config)
    assert str(caught.value).startswith(
        f"relay 'x': kind '{kind}' needs {module}: pip install 'campaigns[{extra}]'")
    assert (kind, "built in", f"kind '{kind}' needs {module}: pip install 'campaigns[{extra}]'") \
        in available_kinds()


def _load(tmp_path: Path, toml: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from campaigns.settings import load_settings
    path = tmp_path / "campaigns.toml"
    path.write_text(textwrap.dedent(toml), encoding="utf-8")
    monkeypatch.delenv("CAMPAIGNS_DATABASE_URL", raising=False)
    return load_settings({"CAMPAIGNS_CONFIG": str(path), "CAMPAIGNS_DATA_DIR": str(tmp_path / "d")})


@pytest.mark.parametrize("table, expected", [
    ('kind = "sendgrid"\napi_key = "k"', "needs httpx: pip install 'campaigns[http]'"),
    ('kind = "pigeon"', "unknown kind 'pigeon'"),
    ('kind = "sendgrid"', "kind 'sendgrid' needs api_key"),
    ('kind = "mailgun"\napi_key = "k"', "kind 'mailgun' needs domain"),
    ('kind = "ses"', "kind 'ses' needs region"),
    ('kind = "ses"\nregion = "eu-west-1"\naccess_key_id = "AKIA1"', "set both access_key_id"),
])
def test_relay_problems_fail_at_start_up(table: str, expected: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if "needs httpx" in expected:
        monkeypatch.setitem(sys.modules, "httpx", None)      # as if the extra were missing
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"[relays.main]\n{table}\n", monkeypatch)
    assert expected in str(caught.value) and str(tmp_path / "campaigns.toml") in str(caught.value)


def test_an_unset_secret_variable_fails_when_the_relay_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(tmp_path, '[relays.main]\nkind = "postmark"\napi_key_env = "NOT_SET_ANYWHERE_42"\n',
                     monkeypatch)
    with pytest.raises(RelayConfigError) as caught:
        require_secrets(settings.relay("main"))
    assert "api_key_env names NOT_SET_ANYWHERE_42" in str(caught.value)
    assert str(tmp_path / "campaigns.toml") in str(caught.value)


def test_entry_point_kind_is_found_listed_and_named(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "carrier_relay_plugin.py").write_text(
        "from campaigns.relays.console import ConsoleRelay\n"
        "class CarrierRelay(ConsoleRelay):\n    pass\n")
    info = tmp_path / "carrier_relay_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: carrier-relay-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[campaigns.relays]\ncarrier = carrier_relay_plugin:CarrierRelay\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    relay = build_relay(RelayConfig(name="p", kind="carrier"))
    assert type(relay).__name__ == "CarrierRelay"
    assert ("carrier", "entry point", "carrier_relay_plugin:CarrierRelay") in available_kinds()
    with pytest.raises(ConfigError, match="entry points: carrier"):
        build_relay(RelayConfig(name="x", kind="pigeon"))


# --- presets ----------------------------------------------------------------------------------

PRESETS = {
    "ses-eu-west-1": ("email-smtp.eu-west-1.amazonaws.com", 587, "starttls", None),
    "ses-us-east-1": ("email-smtp.us-east-1.amazonaws.com", 587, "starttls", None),
    "sendgrid": ("smtp.sendgrid.net", 587, "starttls", "apikey"),
    "mailgun-us": ("smtp.mailgun.org", 587, "starttls", None),
    "mailgun-eu": ("smtp.eu.mailgun.org", 587, "starttls", None),
    "postmark": ("smtp.postmarkapp.com", 587, "starttls", None),
    "brevo": ("smtp-relay.brevo.com", 587, "starttls", None),
    "microsoft365": ("smtp.office365.com", 587, "starttls", None),
    "gmail": ("smtp.gmail.com", 587, "starttls", None),
    "aruba": ("smtps.aruba.it", 465, "tls", None),
}


def test_every_preset_is_in_the_table_below() -> None:
    assert set(SMTP_PRESETS) <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_fills_host_port_security_and_fixed_username(preset: str) -> None:
    config = _relay("p", {"preset": preset, "password": "pw"} if PRESETS[preset][3] else
                    {"preset": preset, "username": "u@example.com", "password": "pw"}, "c.toml")
    assert (config.host, config.port, config.security) == PRESETS[preset][:3]
    assert config.username == (PRESETS[preset][3] or "u@example.com")
    assert config.kind == "smtp" and config.describe()["preset"] == preset


def test_explicit_keys_override_the_preset() -> None:
    config = _relay("p", {"preset": "sendgrid", "username": "other", "port": 2525,
                          "password": "k"}, "c.toml")
    assert (config.host, config.port, config.username) == ("smtp.sendgrid.net", 2525, "other")
    tls = _relay("p", {"preset": "gmail", "security": "tls", "username": "u", "password": "p"},
                 "c.toml")
    assert (tls.host, tls.port, tls.security) == ("smtp.gmail.com", 465, "tls")


def test_sendgrid_preset_logs_in_as_apikey_with_the_key_as_password() -> None:
    """Host and port overridden to reach a local sink; the preset's fixed username stays."""
    with ScriptedSink(auth={"apikey": GOOD_KEY}) as sink:
        config = _relay("grid", {"preset": "sendgrid", "host": sink.host, "port": sink.port,
                                 "security": "none", "password": GOOD_KEY}, "c.toml")
        relay = build_relay(config)
        try:
            assert relay.send(message("alice@example.com")).code == 250
        finally:
            relay.close()
        [got] = sink.received
        assert arrived_from_mime(got.data, got.rcpt).subject == SUBJECT


@pytest.mark.parametrize("raw, expected", [
    ({"preset": "sendgird"}, "unknown preset 'sendgird' (known presets: aruba, brevo, gmail, "
                             "mailgun-eu, mailgun-us, microsoft365, postmark, sendgrid, ses-<region>"),
    ({"preset": "ses-mars"}, "unknown preset 'ses-mars'"),
    ({"preset": "gmail", "kind": "sendgrid", "api_key": "k"}, "preset is for kind 'smtp'"),
    ({"preset": "sendgrid"}, "preset 'sendgrid' needs password (or password_env) for SMTP "
                             "AUTH: password = the API key"),
    ({"preset": "gmail", "password": "p"}, "preset 'gmail' needs username"),
])
def test_bad_presets_are_refused(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _relay("p", raw, "c.toml")
    assert expected in str(caught.value) and "c.toml: [relays.p]" in str(caught.value)


# --- secrets ----------------------------------------------------------------------------------

SECRET_TABLES = {
    "smtp": {"host": "h", "username": "u", "password_env": "T_SECRET"},
    "sendgrid": {"api_key_env": "T_SECRET"},
    "mailgun": {"api_key_env": "T_SECRET", "domain": MAILGUN_DOMAIN, "region": "eu"},
    "postmark": {"api_key_env": "T_SECRET", "message_stream": "broadcast"},
    "ses": {"region": REGION, "access_key_id": AWS_KEY_ID, "secret_access_key_env": "T_SECRET",
            "configuration_set": "campaigns"},
}


@pytest.mark.parametrize("kind", SECRET_TABLES)
def test_secrets_never_show(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"{kind}-Secret-unmistakable-93"
    monkeypatch.setenv("T_SECRET", secret)
    config = _relay("r", {"kind": kind, **SECRET_TABLES[kind]}, "c.toml")
    shown = "\n".join([repr(config), str(config), json.dumps(config.describe()),
                       repr(build_relay(config).__dict__)])
    assert secret not in shown and AWS_KEY_ID not in shown
    assert "***" in json.dumps(config.describe())
    if kind == "ses":
        assert config.secret_access_key and config.secret_access_key.reveal() == secret
    elif kind != "smtp":
        assert config.api_key and config.api_key.reveal() == secret


def test_describe_says_where_each_kind_sends() -> None:
    def describe(kind: str, **raw: Any) -> dict[str, Any]:
        return _relay("r", {"kind": kind, **raw}, "c.toml").describe()
    assert describe("sendgrid", api_key="k")["base_url"] == "https://api.sendgrid.com"
    mailgun = describe("mailgun", api_key="k", domain=MAILGUN_DOMAIN, region="eu")
    assert (mailgun["base_url"], mailgun["domain"]) == ("https://api.eu.mailgun.net", MAILGUN_DOMAIN)
    postmark = describe("postmark", api_key="k")
    assert (postmark["base_url"], postmark["message_stream"]) == ("https://api.postmarkapp.com", "outbound")
    ses = describe("ses", region=REGION, endpoint_url="http://127.0.0.1:1")
    assert (ses["region"], ses["endpoint_url"]) == (REGION, "http://127.0.0.1:1")
    assert ses["credentials"].startswith("AWS default chain")


# --- the command line ---------------------------------------------------------------------------

def test_relays_list_and_check_on_the_command_line(tmp_path: Path, fake: FakeProviders,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from campaigns.cli import app
    config = tmp_path / "campaigns.toml"
    config.write_text(textwrap.dedent(f"""\
        default_relay = "grid"
        [relays.grid]
        kind = "sendgrid"
        api_key_env = "T_GRID_KEY"
        base_url = "{fake.url}"
        [relays.wrong]
        kind = "postmark"
        api_key = "{BAD_KEY}"
        base_url = "{fake.url}"
        [relays.aws]
        kind = "ses"
        region = "{REGION}"
        access_key_id = "{AWS_KEY_ID}"
        secret_access_key = "{AWS_SECRET}"
        """), encoding="utf-8")
    monkeypatch.setenv("T_GRID_KEY", GOOD_KEY)
    monkeypatch.setenv("CAMPAIGNS_CONFIG", str(config))
    monkeypatch.setenv("CAMPAIGNS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CAMPAIGNS_DATABASE_URL", raising=False)
    runner = CliRunner()
    listing = runner.invoke(app, ["relays", "list"])
    assert listing.exit_code == 0, listing.output
    for kind in KINDS:
        assert f"\n  {kind} " in listing.output
    assert '"kind": "sendgrid"' in listing.output and "(default)" in listing.output
    assert f'"base_url": "{fake.url}"' in listing.output and '"region": "eu-west-1"' in listing.output
    good = runner.invoke(app, ["relays", "check", "grid"])
    assert good.exit_code == 0 and "ok  API key accepted" in good.output
    assert "ok  the key has the mail.send scope" in good.output
    bad = runner.invoke(app, ["relays", "check", "wrong"])
    assert bad.exit_code == 1 and "API key rejected" in bad.output + bad.stderr
    for result in (listing, good, bad):
        for secret in (GOOD_KEY, BAD_KEY, AWS_KEY_ID, AWS_SECRET):
            assert secret not in result.output + result.stderr
