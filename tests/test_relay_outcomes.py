"""A relay's failure is a typed outcome, classified once (issue 12 item 5).

The HTTP relays (SendGrid, Mailgun, Postmark, SES) say what a refusal means as a `category`
and `reason` with the `http_status`; they invent no SMTP reply code for the classifier to
decode again. campaigns.delivery.retries._verdict acts on the category the relay gave, reads
an SMTP reply with the classifier only when there is one, and calls a failure with neither a
network error."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from campaigns.bounces import BounceCategory, Classification, classify_reply
from campaigns.delivery.retries import RATE_WORDS, _verdict
from campaigns.errors import (RelayConfigError, RelayError, RelayPermanentError,
                              RelayTemporaryError)
from campaigns.relays import OutgoingMessage, Relay, build_relay
from campaigns.relays.httpapi import ApiAnswer, HttpApiRelay
from campaigns.settings import RelayConfig, Secret
from tests.fakeproviders import AWS_KEY_ID, AWS_SECRET, GOOD_KEY, MAILGUN_DOMAIN, FakeProviders

pytestmark = pytest.mark.timeout(60)

API_KINDS = ("sendgrid", "mailgun", "postmark", "ses")
MESSAGE = (b"From: news@example.org\r\nTo: {to}\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    server = FakeProviders().start()
    yield server
    server.stop()


def _relay(kind: str, url: str) -> Relay:
    if kind == "ses":
        return build_relay(RelayConfig(name="s", kind="ses", region="eu-west-1", endpoint_url=url,
                                       timeout_s=5, access_key_id=Secret(AWS_KEY_ID),
                                       secret_access_key=Secret(AWS_SECRET)))
    return build_relay(RelayConfig(name=f"r-{kind}", kind=kind, base_url=url,
                                   api_key=Secret(GOOD_KEY), timeout_s=5,
                                   domain=MAILGUN_DOMAIN if kind == "mailgun" else None))


def _refusal(kind: str, url: str, recipient: str) -> RelayError:
    relay = _relay(kind, url)
    data = MESSAGE.replace(b"{to}", recipient.encode())
    try:
        with pytest.raises(RelayError) as caught:
            relay.send(OutgoingMessage("bounces@example.org", recipient, data, "<m1@example.org>"))
    finally:
        relay.close()
    return caught.value


def _no_smtp_reply(err: RelayError) -> None:
    assert err.code is None and err.enhanced is None, (err.code, err.enhanced)


@pytest.mark.parametrize("kind", API_KINDS)
def test_a_providers_refusals_carry_a_category_and_no_invented_smtp_code(
        kind: str, fake: FakeProviders) -> None:
    throttled = _refusal(kind, fake.url, "ratelimit@example.com")
    assert type(throttled) is RelayTemporaryError and not throttled.relay_down
    assert (throttled.category, throttled.http_status) == ("throttle", 429)
    _no_smtp_reply(throttled)
    verdict = _verdict(throttled)
    # our account's rate: a rate signal, so the relay is slowed (pacing.throttle_target)
    assert verdict.category is BounceCategory.THROTTLE and verdict.rule == RATE_WORDS

    refused = _refusal(kind, fake.url, "invalid@example.com")
    assert type(refused) is RelayPermanentError and refused.category == "hard"
    assert refused.http_status is not None and 400 <= refused.http_status < 500
    _no_smtp_reply(refused)
    assert _verdict(refused).category is BounceCategory.HARD and _verdict(refused).permanent

    down = _refusal(kind, fake.url, "boom@example.com")
    assert type(down) is RelayTemporaryError and down.relay_down and down.http_status == 500
    _no_smtp_reply(down)


def _answer(status: int, text: str = "nope") -> ApiAnswer:
    return ApiAnswer(status, httpx.Headers(), None, text, "http://127.0.0.1:9/v3/mail/send")


def test_the_shared_http_statuses_map_to_categories_not_smtp_codes() -> None:
    relay = build_relay(RelayConfig(name="sg", kind="sendgrid", base_url="http://127.0.0.1:9",
                                    api_key=Secret(GOOD_KEY)))
    assert isinstance(relay, HttpApiRelay)
    seen = {status: relay.status_error(_answer(status), "message m1", "nope")
            for status in (302, 400, 401, 403, 404, 413, 422, 429, 500, 503)}
    for status, err in seen.items():
        _no_smtp_reply(err)
        assert err.http_status == status and err.category
    for status in (401, 403, 404):
        assert type(seen[status]) is RelayConfigError and seen[status].category == "relay"
    assert "authentication failed" in (seen[401].text or "")
    assert (type(seen[413]), seen[413].category) == (RelayPermanentError, "toolarge")
    assert (type(seen[400]), seen[400].category) == (RelayPermanentError, "policy")
    # an answer that is not a 5xx is not the relay being down, whatever the SMTP code (none)
    for status in (302, 429):
        err = seen[status]
        assert isinstance(err, RelayTemporaryError) and not err.relay_down
    for status in (500, 503):
        err = seen[status]
        assert isinstance(err, RelayTemporaryError) and err.relay_down


@pytest.mark.parametrize("category, reason, permanent", [
    ("toolarge", "mesgtoobig", True), ("hard", "suppressed", True), ("policy", "contenterror", True),
    ("relay", "norelaying", False), ("soft", "systemerror", False), ("throttle", "ratelimited", False)])
def test_verdict_is_the_category_the_relay_gave(category: str, reason: str, permanent: bool) -> None:
    # the words would read otherwise ("user unknown"): the relay's category wins
    err = RelayPermanentError("refused", text="user unknown", category=category, reason=reason,
                              http_status=400)
    verdict = _verdict(err)
    assert verdict == Classification(BounceCategory(category), permanent, reason)
    assert verdict.rule == (RATE_WORDS if category == "throttle" else f"relay:{category}")


def test_verdict_reads_an_smtp_reply_and_calls_no_reply_a_network_error() -> None:
    said = RelayPermanentError("refused", code=550, enhanced="5.1.1", text="User unknown")
    read = classify_reply(550, "User unknown", "5.1.1", from_relay=True)
    assert _verdict(said) == read and _verdict(said).rule == read.rule
    assert read.category is BounceCategory.HARD
    silent = RelayTemporaryError("connection refused", relay_down=True)
    assert _verdict(silent) == Classification.of("networkerror")
