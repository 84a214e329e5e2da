"""Provider webhooks end to end: the providers' documented sample payloads, signed the way
each provider signs them, posted to the ASGI app (Starlette's TestClient) and, once, to a
real `campaigns api` process (uvicorn on 127.0.0.1); then the ledger is read back. SQLite in
tmp_path; no network: SNS certificates come from an injected fetcher serving a certificate
made here. SendGrid's verification is also checked against the test vector SendGrid
publishes with its own SDKs."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from starlette.testclient import TestClient

from campaigns.web.webhooks import create_app
from campaigns.context import Context, open_context
from campaigns.errors import ConfigError
from campaigns.models import (BounceEvent, Campaign, ContactList, Delivery, Suppression,
                              Template, utcnow)
from campaigns.settings import load_settings
from campaigns.intake.webhooks import WebhookRequest, load_webhook_config, providers
from campaigns.intake.webhooks import mailgun, postmark, sendgrid, ses
from tests.helpers import serving
from campaigns.intake.webhooks.common import WebhookRejected

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
SUBSCRIBE_URL = ("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
                 f"{TOPIC}&Token=2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a98")
MAILGUN_KEY = "mailgun-signing-key-5f1c0d"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "pm-password-77e1"

# provider message ids of our deliveries (as the send path stored them)
SES_ID = "0102015fd91a5ca3-93c245fe-e333-46ae-8fed-96160d20cfab-000000"
SG_ID = "14c5d75ce93"                       # X-Message-Id; events say 14c5d75ce93.dfd.…
MG_ID = "20130503182626.18666.16540@sandbox.mailgun.org"
PM_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
ROWS = [  # address, provider message id
    ("bounce@example.test", SES_ID), ("complaint@example.test", SES_ID + "-c"),
    ("delivered@example.test", SES_ID + "-d"), ("full@example.test", SES_ID + "-f"),
    ("sg-bounce@example.test", SG_ID), ("sg-spam@example.test", SG_ID + "s"),
    ("sg-ok@example.test", SG_ID + "o"), ("sg-later@example.test", SG_ID + "l"),
    ("sg-blocked@example.test", SG_ID + "b"),
    ("alice@example.com", MG_ID), ("mg-later@example.test", "mg-later@sandbox.mailgun.org"),
    ("mg-ok@example.test", "mg-ok@sandbox.mailgun.org"),
    ("john@example.com", PM_ID), ("pm-spam@example.test", PM_ID + "-s"),
    ("pm-ok@example.test", PM_ID + "-o"), ("pm-later@example.test", PM_ID + "-l"),
]


# ------------------------------------------------------------------------ keys and signing
@pytest.fixture(scope="module")
def sns_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    """An RSA key and a self-signed certificate standing for SNS's signing certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, _certificate(key)


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The Verification Key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sns_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sns_signed(message: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "1",
               cert_url: str = CERT_URL) -> bytes:
    """Sign as SNS does: name and value of each documented field on their own lines."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId"] + (["Subject"] if "Subject" in message else []) \
            + ["Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{name}\n{message[name]}\n" for name in names).encode()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text, padding.PKCS1v15(), digest)
    return json.dumps({**message, "SignatureVersion": version,
                       "Signature": base64.b64encode(signature).decode(),
                       "SigningCertURL": cert_url}, indent=2).encode()


def sns_notification(ses_event: dict[str, Any], **over: Any) -> dict[str, Any]:
    """The documented HTTP notification shape around an SES event."""
    return {"Type": "Notification", "MessageId": secrets.token_hex(16), "TopicArn": TOPIC,
            "Message": json.dumps(ses_event), "Timestamp": sns_now(),
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&"
                              f"SubscriptionArn={TOPIC}:c9135db0-26c4-47ec-8998-413945fb5a96",
            **over}


def sendgrid_post(events: list[dict[str, Any]], key: ec.EllipticCurvePrivateKey,
                  timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode() + b"\r\n"
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {"Content-Type": "application/json",
                  "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                  "X-Twilio-Email-Event-Webhook-Timestamp": ts}


def mailgun_post(event_data: dict[str, Any], key: str = MAILGUN_KEY,
                 timestamp: int | None = None, token: str | None = None) -> bytes:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    token = token or secrets.token_hex(25)
    digest = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": ts, "token": token, "signature": digest},
                       "event-data": event_data}).encode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ------------------------------------------------------------------------ the documented samples
def ses_bounce(recipient: str = "bounce@example.test", message_id: str = SES_ID, *,
               kind: str = "Permanent", sub: str = "General",
               diagnostic: str | None = "smtp; 550 5.1.1 user unknown",
               shape: str = "notificationType", status: str | None = "5.1.1") -> dict[str, Any]:
    """AWS's bounce notification sample (the mailbox simulator's), our ids in it."""
    rcpt: dict[str, Any] = {"emailAddress": recipient, "action": "failed"}
    if status:
        rcpt["status"] = status
    if diagnostic:
        rcpt["diagnosticCode"] = diagnostic
    return {shape: "Bounce",
            "bounce": {"bounceType": kind, "bounceSubType": sub, "bouncedRecipients": [rcpt],
                       "timestamp": "2017-11-20T11:05:06.477Z",
                       "feedbackId": "0102015fd91a6479-ae22395c-1f7d-4423-a9e5-"
                                     f"{secrets.token_hex(6)}-000000",
                       "remoteMtaIp": "192.0.2.4",
                       "reportingMTA": "dsn; a4-8.smtp-out.eu-west-1.amazonses.com"},
            "mail": {"timestamp": "2017-11-20T11:05:04.000Z", "source": "news@shop.test",
                     "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/shop.test",
                     "sourceIp": "192.0.2.1", "sendingAccountId": "123456789012",
                     "messageId": message_id, "destination": [recipient],
                     "headersTruncated": False, "headers": [], "commonHeaders": {}}}


def ses_complaint(recipient: str, message_id: str) -> dict[str, Any]:
    """AWS's event-publishing complaint sample."""
    return {"eventType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": recipient}],
                          "timestamp": "2017-08-05T00:41:02.669Z",
                          "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-"
                                        "7be8aexample-000000",
                          "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
                          "complaintFeedbackType": "abuse",
                          "arrivalDate": "2017-08-05T00:41:02.669Z"},
            "mail": {"timestamp": "2017-08-05T00:40:01.123Z", "source": "news@shop.test",
                     "sendingAccountId": "123456789012", "messageId": message_id,
                     "destination": [recipient], "headersTruncated": False}}


def ses_delivery(recipient: str, message_id: str) -> dict[str, Any]:
    """AWS's delivery notification sample."""
    return {"notificationType": "Delivery",
            "mail": {"timestamp": "2014-05-28T22:40:59.638Z", "messageId": message_id,
                     "source": "news@shop.test", "destination": [recipient]},
            "delivery": {"timestamp": "2014-05-28T22:41:01.184Z", "recipients": [recipient],
                         "processingTimeMillis": 546,
                         "reportingMTA": "a8-70.smtp-out.amazonses.com",
                         "smtpResponse": "250 ok:  Message 64111812 accepted",
                         "remoteMtaIp": "127.0.2.0"}}


def sg_event(kind: str, email: str, message_id: str, **extra: Any) -> dict[str, Any]:
    """SendGrid's Event Webhook reference samples, one per event."""
    return {"email": email, "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "event": kind,
            "category": "cat facts", "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": f"{message_id}.dfd.64b469.filter0001.16648.5515E0B88.0", **extra}


def mg_failed(recipient: str = "alice@example.com", message_id: str = MG_ID, *,
              severity: str = "permanent", reason: str = "bounce", code: int = 550,
              message: str = "5.1.1 The email account that you tried to reach does not exist.",
              description: str = "") -> dict[str, Any]:
    """Mailgun's "failed" event-data sample."""
    return {"id": secrets.token_urlsafe(16), "timestamp": time.time(), "log-level": "error",
            "event": "failed", "severity": severity, "reason": reason,
            "envelope": {"sender": "bob@sandbox.mailgun.org", "transport": "smtp",
                         "targets": recipient},
            "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False,
                      "is-test-mode": False},
            "recipient-domain": recipient.split("@")[1], "recipient": recipient,
            "message": {"headers": {"to": f"Alice <{recipient}>", "message-id": message_id,
                                    "from": "Bob <bob@sandbox.mailgun.org>",
                                    "subject": "Test permanent_fail webhook"},
                        "attachments": [], "size": 111},
            "delivery-status": {"attempt-no": 1, "message": message, "code": code,
                                "description": description, "session-seconds": 0.1},
            "user-variables": {"my_var_1": "Mailgun Variable #1"}, "tags": ["my_tag_1"]}


def mg_event(kind: str, recipient: str, message_id: str) -> dict[str, Any]:
    """Mailgun's "delivered" / "complained" samples."""
    data = {"id": secrets.token_urlsafe(16), "timestamp": time.time(), "log-level": "info",
            "event": kind, "recipient": recipient, "recipient-domain": recipient.split("@")[1],
            "message": {"headers": {"to": recipient, "message-id": message_id,
                                    "from": "bob@sandbox.mailgun.org", "subject": "Hi"}}}
    if kind == "delivered":
        data["delivery-status"] = {"tls": True, "code": 250, "message": "OK",
                                   "attempt-no": 1, "description": ""}
    return data


def pm_bounce(kind: str = "HardBounce", email: str = "john@example.com",
              message_id: str = PM_ID, details: str = "smtp;550 5.1.1 The email account "
              "that you tried to reach does not exist.") -> dict[str, Any]:
    """Postmark's bounce webhook sample."""
    return {"RecordType": "Bounce", "MessageStream": "outbound",
            "ID": secrets.randbelow(10**15), "Type": kind, "TypeCode": 1, "Name": "Hard bounce",
            "Tag": "Test", "MessageID": message_id, "Metadata": {"a_key": "a_value"},
            "ServerID": 23,
            "Description": "The server was unable to deliver your message "
                           "(ex: unknown user, mailbox not found).",
            "Details": details, "Email": email, "From": "sender@example.com",
            "BouncedAt": "2019-11-05T16:33:54.9070259Z", "DumpAvailable": True,
            "Inactive": True, "CanActivate": True, "Subject": "Test subject",
            "Content": "<Full dump of bounce>"}


# ------------------------------------------------------------------------ an installation
class Fetcher:
    """Stands for the network: serves our certificate at CERT_URL, answers anything else
    as the SubscribeURL does, and remembers every URL asked for."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        return self.pem if url == CERT_URL else b"<ConfirmSubscriptionResponse/>"


@dataclass
class Site:
    root: Path
    ctx: Context
    env: dict[str, str]
    fetch: Fetcher
    client: TestClient
    ids: dict[str, int]

    def rows(self, model: Any) -> list[Any]:
        with self.ctx.db.session() as s:
            return list(s.scalars(select(model).order_by(model.id)))

    def delivery(self, address: str) -> Delivery:
        found: Delivery = next(d for d in self.rows(Delivery) if d.address == address)
        return found

    def state(self) -> tuple[Any, ...]:
        """Everything a webhook may change."""
        return (len(self.rows(BounceEvent)),
                [(s.address, s.source) for s in self.rows(Suppression)],
                [(d.address, d.status, d.bounce_category) for d in self.rows(Delivery)])

    def events_of(self, address: str) -> list[BounceEvent]:
        return [e for e in self.rows(BounceEvent) if e.address == address]


def write_config(root: Path, sendgrid_public: str) -> Path:
    path = root / "campaigns.toml"
    path.write_text(f"""
[webhooks]
listen = "127.0.0.1:8025"
sendgrid_verification_key = "{sendgrid_public}"
mailgun_signing_key_env = "TEST_MAILGUN_SIGNING_KEY"
postmark_user = "{POSTMARK_USER}"
postmark_password = "{POSTMARK_PASSWORD}"
ses_topic_arns = ["{TOPIC}"]
max_age_s = 300
""", encoding="utf-8")
    return path


def seed(ctx: Context) -> dict[str, int]:
    """One sending campaign whose rows went out through the providers."""
    with ctx.db.session() as s:
        lst, tpl = ContactList(name="l"), Template(name="t", subject="s", html="h", text="t")
        s.add_all([lst, tpl])
        s.flush()
        campaign = Campaign(name="news", list_id=lst.id, template_id=tpl.id,
                            from_addr="news@shop.test", status="sending")
        s.add(campaign)
        s.flush()
        for address, pmid in ROWS:
            s.add(Delivery(campaign_id=campaign.id, address=address, status="sent",
                           attempts=1, sent_at=utcnow(), provider_message_id=pmid))
    with ctx.db.session() as s:
        return {d.address: d.id for d in s.scalars(select(Delivery))}


@pytest.fixture
def site(tmp_path: Path, sns_key: tuple[rsa.RSAPrivateKey, bytes],
         sendgrid_key: ec.EllipticCurvePrivateKey,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("TEST_MAILGUN_SIGNING_KEY", MAILGUN_KEY)
    config = write_config(tmp_path, public_b64(sendgrid_key))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(CAMPAIGNS_DATA_DIR=str(tmp_path / "data"), CAMPAIGNS_CONFIG=str(config),
               CAMPAIGNS_DATABASE_URL=f"sqlite:///{tmp_path / 'campaigns.db'}")
    ctx = open_context(load_settings(env))
    ids = seed(ctx)
    fetch = Fetcher(sns_key[1])
    app = create_app(ctx.settings, db=ctx.db,
                     endpoints=providers(fetch=fetch, certificates=ses.CertificateCache(),
                                         tokens=mailgun.TokenCache()))
    with TestClient(app) as client:
        yield Site(tmp_path, ctx, env, fetch, client, ids)
    ctx.db.dispose()
    from campaigns import embedded_redis
    embedded_redis.stop(tmp_path / "data")   # a `campaigns serve` of the test started one


# ------------------------------------------------------------------------ SES through SNS
def test_ses_hard_bounce_suppresses_once_and_the_certificate_is_fetched_once(
        site: Site, sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    body = sns_signed(sns_notification(ses_bounce()), sns_key[0], "1")
    headers = {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain"}
    first = site.client.post("/webhooks/ses", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"events": 1, "actions": {"suppressed": 1}}
    row = site.delivery("bounce@example.test")
    assert (row.status, row.bounce_category, row.bounce_reason) == ("bounced", "hard",
                                                                    "userunknown")
    assert (row.reply_code, row.enhanced_status) == (550, "5.1.1")
    [sup] = site.rows(Suppression)
    assert (sup.address, sup.source, sup.category) == ("bounce@example.test", "bounce", "hard")
    # SNS delivers the same message again (a retry): one event, nothing more
    again = site.client.post("/webhooks/ses", content=body, headers=headers)
    assert again.json()["actions"] == {"duplicate": 1}
    assert len(site.events_of("bounce@example.test")) == 1
    assert site.events_of("bounce@example.test")[0].source == "webhook"
    assert site.fetch.calls == [CERT_URL]          # cached after the first message


def test_ses_event_publishing_complaint_and_delivery_signature_version_2(
        site: Site, sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    complaint = sns_signed(sns_notification(ses_complaint("complaint@example.test",
                                                          SES_ID + "-c")), sns_key[0], "2")
    delivery = sns_signed(sns_notification(ses_delivery("delivered@example.test",
                                                        SES_ID + "-d"),
                                           Subject="Amazon SES Email Event Notification"),
                          sns_key[0], "2")
    assert site.client.post("/webhooks/ses", content=complaint).json()["actions"] == \
        {"suppressed": 1}
    assert site.client.post("/webhooks/ses", content=delivery).json()["actions"] == \
        {"delivered": 1}
    [sup] = site.rows(Suppression)
    assert (sup.address, sup.source, sup.category) == ("complaint@example.test", "complaint",
                                                       "complaint")
    [event] = site.events_of("complaint@example.test")
    assert event.feedback_type == "abuse"
    ok = site.delivery("delivered@example.test")
    assert (ok.status, ok.bounce_category) == ("sent", "delivered")


def test_ses_transient_bounce_is_soft_and_an_unknown_message_is_unmatched(
        site: Site, sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    full = ses_bounce("full@example.test", SES_ID + "-f", kind="Transient", sub="MailboxFull",
                      diagnostic="smtp; 452 4.2.2 The email account that you tried to reach "
                                 "is over quota.")
    assert site.client.post("/webhooks/ses", content=sns_signed(
        sns_notification(full), sns_key[0])).json()["actions"] == {"bounced": 1}
    row = site.delivery("full@example.test")
    assert (row.status, row.bounce_category, row.bounce_reason) == ("bounced", "soft",
                                                                    "mailboxfull")
    stranger = ses_bounce("someone@else.test", "not-one-of-ours-000000")
    assert site.client.post("/webhooks/ses", content=sns_signed(
        sns_notification(stranger), sns_key[0])).json()["actions"] == {"unmatched": 1}
    assert site.rows(Suppression) == []


def _forged(kind: str, key: rsa.RSAPrivateKey) -> bytes:
    """A bounce for bounce@example.test, spoiled one way."""
    message = sns_notification(ses_bounce())
    if kind == "tampered Message":
        body = json.loads(sns_signed(message, key))
        body["Message"] = json.dumps(ses_bounce("bounce@example.test", SES_ID,
                                                diagnostic="smtp; 550 5.7.1 other"))
        return json.dumps(body).encode()
    if kind == "another key":
        return sns_signed(message, rsa.generate_private_key(public_exponent=65537,
                                                            key_size=2048))
    if kind == "certificate on another host":
        return sns_signed(message, key,
                          cert_url="https://evil.example/SimpleNotificationService-abc.pem")
    if kind == "certificate over http":
        return sns_signed(message, key, cert_url=CERT_URL.replace("https://", "http://"))
    if kind == "host after userinfo":
        return sns_signed(message, key,
                          cert_url="https://sns.eu-west-1.amazonaws.com@evil.example/a.pem")
    if kind == "wrong TopicArn":
        return sns_signed({**message, "TopicArn": "arn:aws:sns:eu-west-1:999999999999:theirs"}, key)
    if kind == "stale Timestamp":
        old = (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
        return sns_signed({**message, "Timestamp": old}, key)
    if kind == "unknown SignatureVersion":
        body = json.loads(sns_signed(message, key))
        return json.dumps({**body, "SignatureVersion": "3"}).encode()
    if kind == "not JSON":
        return b"Type=Notification&Message=hello"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, fetched", [
    ("tampered Message", True), ("another key", True),
    ("certificate on another host", False), ("certificate over http", False),
    ("host after userinfo", False), ("wrong TopicArn", False), ("stale Timestamp", False),
    ("unknown SignatureVersion", False), ("not JSON", False)])
def test_ses_unverifiable_messages_are_refused_and_change_nothing(
        site: Site, sns_key: tuple[rsa.RSAPrivateKey, bytes], kind: str, fetched: bool) -> None:
    before = site.state()
    answer = site.client.post("/webhooks/ses", content=_forged(kind, sns_key[0]))
    assert answer.status_code == 403, (kind, answer.text)
    assert answer.json()["error"]
    assert site.state() == before
    assert site.rows(BounceEvent) == []
    assert site.fetch.calls == ([CERT_URL] if fetched else [])


def subscription(key: rsa.RSAPrivateKey, subscribe_url: str = SUBSCRIBE_URL) -> dict[str, Any]:
    """AWS's SubscriptionConfirmation sample."""
    return {"Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a98",
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.\n"
                       "To confirm the subscription, visit the SubscribeURL included in this "
                       "message.",
            "SubscribeURL": subscribe_url, "Timestamp": sns_now()}


def test_sns_subscription_is_confirmed_only_when_verified(
        site: Site, sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    key = sns_key[0]
    headers = {"x-amz-sns-message-type": "SubscriptionConfirmation"}
    # forged: a tampered SubscribeURL after signing; never visited
    forged = json.loads(sns_signed(subscription(key), key))
    forged["SubscribeURL"] = SUBSCRIBE_URL.replace("Token=", "Token=ff")
    answer = site.client.post("/webhooks/ses", content=json.dumps(forged), headers=headers)
    assert answer.status_code == 403
    assert forged["SubscribeURL"] not in site.fetch.calls
    # signed, but the URL to visit is not on an SNS host: refused, not visited
    evil = "https://evil.example/?Action=ConfirmSubscription"
    answer = site.client.post("/webhooks/ses", content=sns_signed(subscription(key, evil), key),
                              headers=headers)
    assert answer.status_code == 403 and evil not in site.fetch.calls
    # genuine: verified, then the SubscribeURL is visited
    answer = site.client.post("/webhooks/ses", content=sns_signed(subscription(key), key),
                              headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"events": 0, "actions": {}}
    assert site.fetch.calls.count(SUBSCRIBE_URL) == 1
    assert site.rows(BounceEvent) == []


def test_ses_verified_message_without_the_documented_fields_is_400_naming_the_field(
        site: Site, sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    event = ses_bounce()
    del event["bounce"]["bounceType"]
    answer = site.client.post("/webhooks/ses", content=sns_signed(sns_notification(event),
                                                                  sns_key[0]))
    assert answer.status_code == 400
    assert "Message.bounce.bounceType" in answer.json()["error"]
    answer = site.client.post("/webhooks/ses", content=sns_signed(
        sns_notification({}, Message="not json"), sns_key[0]))
    assert answer.status_code == 400 and "'Message'" in answer.json()["error"]
    assert site.rows(BounceEvent) == []


# ------------------------------------------------------------------------ SendGrid
def test_sendgrid_verifies_the_test_vector_sendgrid_publishes() -> None:
    """From SendGrid's SDK tests (sendgrid-python, sendgrid-nodejs): their key, their
    signature, their payload."""
    public = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcw"
              "HBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==")
    signature = ("MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbV"
                 "Ramr2nlxFDWYNH2j/0=")
    payload = b'{"category":"example_payload","event":"test_event","message_id":"message_id"}'
    assert sendgrid.verify_signature(public, payload, signature, "1588788367")
    assert not sendgrid.verify_signature(public, payload.replace(b"test", b"best"), signature,
                                         "1588788367")
    assert not sendgrid.verify_signature(public, payload, signature, "1588788368")
    from campaigns.intake.webhooks.config import parse_webhook_config
    config = parse_webhook_config({"sendgrid_verification_key": public}, "t.toml", {})
    headers = {sendgrid.SIGNATURE_HEADER.lower(): signature,
               sendgrid.TIMESTAMP_HEADER.lower(): "1588788367"}
    sendgrid.verify(WebhookRequest(payload, headers, 1588788367 + 5), config)
    with pytest.raises(WebhookRejected, match="stale"):     # the same post, a day later
        sendgrid.verify(WebhookRequest(payload, headers, 1588788367 + 86400), config)


def test_sendgrid_batch_is_applied_once(site: Site,
                                        sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    batch = [
        sg_event("processed", "sg-bounce@example.test", SG_ID),
        sg_event("bounce", "sg-bounce@example.test", SG_ID, type="bounce", status="5.0.0",
                 reason="500 unknown recipient", bounce_classification="Invalid Address"),
        sg_event("spamreport", "sg-spam@example.test", SG_ID + "s"),
        sg_event("delivered", "sg-ok@example.test", SG_ID + "o", response="250 OK"),
        sg_event("deferred", "sg-later@example.test", SG_ID + "l",
                 response="400 try again later", attempt="5"),
        sg_event("bounce", "sg-blocked@example.test", SG_ID + "b", type="blocked",
                 status="5.7.1", reason="554 5.7.1 Service unavailable; Client host "
                 "[192.0.2.7] blocked using zen.spamhaus.org"),
        sg_event("open", "sg-ok@example.test", SG_ID + "o", useragent="Mozilla/4.0",
                 ip="255.255.255.255"),
    ]
    body, headers = sendgrid_post(batch, sendgrid_key)
    answer = site.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"events": 5, "actions": {"suppressed": 2, "delivered": 1,
                                                      "recorded": 1, "bounced": 1}}
    sup = {s.address: s.source for s in site.rows(Suppression)}
    assert sup == {"sg-bounce@example.test": "bounce", "sg-spam@example.test": "complaint"}
    assert site.delivery("sg-bounce@example.test").bounce_reason == "userunknown"
    blocked = site.delivery("sg-blocked@example.test")
    assert (blocked.status, blocked.bounce_category) == ("bounced", "block")
    assert site.delivery("sg-later@example.test").status == "sent"
    [later] = site.events_of("sg-later@example.test")
    assert (later.final, later.action) == (False, "recorded")
    assert site.delivery("sg-ok@example.test").bounce_category == "delivered"
    # SendGrid posts the batch again: each event once
    body, headers = sendgrid_post(batch, sendgrid_key)
    again = site.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert again.json()["actions"] == {"duplicate": 5}
    assert len(site.rows(BounceEvent)) == 5


@pytest.mark.parametrize("kind", ["another key", "tampered body", "stale timestamp",
                                  "no signature", "timestamp changed"])
def test_sendgrid_forgeries_are_refused(site: Site, sendgrid_key: ec.EllipticCurvePrivateKey,
                                        kind: str) -> None:
    batch = [sg_event("bounce", "sg-bounce@example.test", SG_ID, type="bounce",
                      status="5.0.0", reason="500 unknown recipient")]
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "another key" else sendgrid_key
    stamp = int(time.time()) - 3600 if kind == "stale timestamp" else None
    body, headers = sendgrid_post(batch, key, stamp)
    if kind == "tampered body":
        body = body.replace(b"sg-bounce@", b"sg-ok@")
    if kind == "no signature":
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    if kind == "timestamp changed":
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(time.time()) + 1)
    before = site.state()
    answer = site.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == (401 if kind == "no signature" else 403), answer.text
    assert site.state() == before and site.rows(BounceEvent) == []


# ------------------------------------------------------------------------ Mailgun
def test_mailgun_events_are_applied_and_a_replayed_post_is_refused(site: Site) -> None:
    body = mailgun_post(mg_failed())
    answer = site.client.post("/webhooks/mailgun", content=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["actions"] == {"suppressed": 1}
    row = site.delivery("alice@example.com")
    assert (row.status, row.bounce_category, row.reply_code) == ("bounced", "hard", 550)
    assert site.rows(Suppression)[0].source == "bounce"
    # the very same post again (same token): a replay
    before = site.state()
    replay = site.client.post("/webhooks/mailgun", content=body)
    assert replay.status_code == 403 and "replay" in replay.json()["error"]
    assert site.state() == before
    # the same event signed anew (Mailgun retrying): accepted, recorded once
    event = json.loads(body)["event-data"]
    again = site.client.post("/webhooks/mailgun", content=mailgun_post(event))
    assert again.json()["actions"] == {"duplicate": 1}
    assert len(site.events_of("alice@example.com")) == 1
    later = mg_failed("mg-later@example.test", "<mg-later@sandbox.mailgun.org>",
                      severity="temporary", reason="generic", code=452,
                      message="4.2.2 The email account that you tried to reach is over quota.")
    assert site.client.post("/webhooks/mailgun", content=mailgun_post(later)).json()[
        "actions"] == {"recorded": 1}
    assert site.delivery("mg-later@example.test").status == "sent"
    assert site.events_of("mg-later@example.test")[0].final is False
    ok = mg_event("delivered", "mg-ok@example.test", "mg-ok@sandbox.mailgun.org")
    assert site.client.post("/webhooks/mailgun", content=mailgun_post(ok)).json()[
        "actions"] == {"delivered": 1}
    spam = mg_event("complained", "mg-ok@example.test", "mg-ok@sandbox.mailgun.org")
    assert site.client.post("/webhooks/mailgun", content=mailgun_post(spam)).json()[
        "actions"] == {"suppressed": 1}
    assert {s.address: s.source for s in site.rows(Suppression)}["mg-ok@example.test"] == \
        "complaint"


@pytest.mark.parametrize("kind, status", [("wrong key", 403), ("stale timestamp", 403),
                                          ("no signature", 401), ("tampered token", 403)])
def test_mailgun_forgeries_are_refused(site: Site, kind: str, status: int) -> None:
    key = "not-the-key" if kind == "wrong key" else MAILGUN_KEY
    stamp = int(time.time()) - 301 if kind == "stale timestamp" else None
    body = json.loads(mailgun_post(mg_failed(), key, stamp))
    if kind == "no signature":
        del body["signature"]
    if kind == "tampered token":
        body["signature"]["token"] = secrets.token_hex(25)
    before = site.state()
    answer = site.client.post("/webhooks/mailgun", content=json.dumps(body))
    assert answer.status_code == status, answer.text
    assert site.state() == before and site.rows(BounceEvent) == []


def test_mailgun_verified_body_without_a_recipient_is_400_naming_it(site: Site) -> None:
    event = mg_failed()
    del event["recipient"]
    answer = site.client.post("/webhooks/mailgun", content=mailgun_post(event))
    assert answer.status_code == 400
    assert "event-data.recipient" in answer.json()["error"]


# ------------------------------------------------------------------------ Postmark
def test_postmark_records_are_applied_once(site: Site) -> None:
    auth = basic(POSTMARK_USER, POSTMARK_PASSWORD)
    bounce = pm_bounce()
    answer = site.client.post("/webhooks/postmark", json=bounce, headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["actions"] == {"suppressed": 1}
    assert site.client.post("/webhooks/postmark", json=bounce,
                            headers=auth).json()["actions"] == {"duplicate": 1}
    row = site.delivery("john@example.com")
    assert (row.status, row.bounce_category, row.bounce_reason) == ("bounced", "hard",
                                                                    "userunknown")
    spam = {"RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 42,
            "Type": "SpamComplaint", "TypeCode": 512, "Name": "Spam complaint", "Tag": "Test",
            "MessageID": PM_ID + "-s", "ServerID": 23, "Description": "",
            "Details": "Test spam complaint details", "Email": "pm-spam@example.test",
            "From": "sender@example.com", "BouncedAt": "2019-11-05T16:33:54.9070259Z",
            "DumpAvailable": True, "Inactive": True, "CanActivate": False,
            "Subject": "Test subject"}
    assert site.client.post("/webhooks/postmark", json=spam,
                            headers=auth).json()["actions"] == {"suppressed": 1}
    delivery = {"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
                "MessageID": PM_ID + "-o", "Recipient": "pm-ok@example.test",
                "Tag": "welcome-email", "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
                "Details": "Test delivery webhook details", "Metadata": {}}
    assert site.client.post("/webhooks/postmark", json=delivery,
                            headers=auth).json()["actions"] == {"delivered": 1}
    transient = pm_bounce("Transient", "pm-later@example.test", PM_ID + "-l",
                          "smtp;421 4.4.2 Connection timed out")
    assert site.client.post("/webhooks/postmark", json=transient,
                            headers=auth).json()["actions"] == {"recorded": 1}
    sup = {s.address: s.source for s in site.rows(Suppression)}
    assert sup == {"john@example.com": "bounce", "pm-spam@example.test": "complaint"}
    assert site.delivery("pm-ok@example.test").bounce_category == "delivered"
    assert site.delivery("pm-later@example.test").status == "sent"


@pytest.mark.parametrize("headers", [basic(POSTMARK_USER, "wrong"), basic("admin",
                                     POSTMARK_PASSWORD), {}, {"Authorization": "Basic %%%"}])
def test_postmark_wrong_credentials_are_401(site: Site, headers: dict[str, str]) -> None:
    before = site.state()
    answer = site.client.post("/webhooks/postmark", json=pm_bounce(), headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert site.state() == before and site.rows(BounceEvent) == []


# ------------------------------------------------------------------------ verdicts, as a table
VERDICTS: list[tuple[str, Callable[[], bytes], tuple[str, str, bool]]] = [
    ("ses", lambda: json.dumps(sns_notification(ses_bounce(
        kind="Permanent", sub="General", diagnostic="smtp; 554 5.7.1 Service unavailable; "
        "Client host [192.0.2.1] blocked using zen.spamhaus.org"))).encode(),
     ("block", "blocked", True)),
    ("ses", lambda: json.dumps(sns_notification(ses_bounce(
        kind="Permanent", sub="OnAccountSuppressionList", diagnostic=None))).encode(),
     ("hard", "suppressed", True)),
    ("ses", lambda: json.dumps(sns_notification(ses_bounce(
        kind="Transient", sub="General", diagnostic="smtp; 550 5.1.1 user unknown",
        shape="eventType"))).encode(), ("soft", "userunknown", True)),
    ("ses", lambda: json.dumps(sns_notification(ses_bounce(
        kind="Transient", sub="MessageTooLarge", diagnostic=None, status="5.3.4"))).encode(),
     ("toolarge", "mesgtoobig", True)),
    ("ses", lambda: json.dumps(sns_notification(ses_bounce(
        kind="Undetermined", sub="Undetermined", diagnostic=None, status=None))).encode(),
     ("unknown", "undefined", True)),
    ("ses", lambda: json.dumps(sns_notification(ses_bounce(
        kind="Undetermined", sub="Undetermined", diagnostic=None, status="5.1.1"))).encode(),
     ("hard", "userunknown", True)),
    ("sendgrid", lambda: json.dumps([sg_event("dropped", "x@example.test", SG_ID,
                                              reason="Bounced Address", status="5.0.0")]).encode(),
     ("hard", "suppressed", True)),
    ("sendgrid", lambda: json.dumps([sg_event("deferred", "x@example.test", SG_ID,
                                              response="421 4.7.0 Try again later")]).encode(),
     ("throttle", "toomanyconn", False)),
    ("mailgun", lambda: json.dumps({"event-data": mg_failed(
        reason="suppress-bounce", code=605, message="",
        description="Not delivering to previously bounced address")}).encode(),
     ("hard", "suppressed", True)),
    ("postmark", lambda: json.dumps(pm_bounce("SoftBounce", details="smtp;552 5.2.2 Mailbox "
                                              "full")).encode(), ("soft", "mailboxfull", True)),
    ("postmark", lambda: json.dumps(pm_bounce("AutoResponder", details="")).encode(),
     ("autoreply", "vacation", True)),
    ("postmark", lambda: json.dumps(pm_bounce("DMARCPolicy", details="")).encode(),
     ("auth", "authfailure", True)),
]


@pytest.mark.parametrize("provider, body, expected", VERDICTS)
def test_provider_verdicts(provider: str, body: Callable[[], bytes],
                           expected: tuple[str, str, bool]) -> None:
    module = {"ses": ses, "sendgrid": sendgrid, "mailgun": mailgun, "postmark": postmark}
    [event] = module[provider].events(body())
    verdict = event.verdict
    assert (verdict.category.value, verdict.reason, verdict.final) == expected


def test_events_that_are_not_outcomes_are_left_out() -> None:
    assert postmark.events(json.dumps(pm_bounce("Unsubscribe")).encode()) == []
    assert postmark.events(json.dumps({"RecordType": "Open", "MessageID": PM_ID}).encode()) == []
    assert sendgrid.events(json.dumps([sg_event("dropped", "x@example.test", SG_ID,
                                                reason="Unsubscribed Address")]).encode()) == []
    assert mailgun.events(json.dumps({"event-data": mg_event("opened", "x@example.test",
                                                             MG_ID)}).encode()) == []
    sent = {"eventType": "Send", "mail": {"messageId": SES_ID, "destination": ["x@y.test"]}}
    assert ses.events(json.dumps(sns_notification(sent)).encode()) == []


# ------------------------------------------------------------------------ configuration
def test_config_errors_name_the_place_and_never_the_secret(tmp_path: Path) -> None:
    from campaigns.intake.webhooks.config import parse_webhook_config
    with pytest.raises(ConfigError, match=r"c\.toml: \[webhooks\]: unknown key\(s\) mailgun_key"):
        parse_webhook_config({"mailgun_key": "x"}, "c.toml", {})
    with pytest.raises(ConfigError, match="mailgun_signing_key_env names MG_KEY, which is not set"):
        parse_webhook_config({"mailgun_signing_key_env": "MG_KEY"}, "c.toml", {})
    with pytest.raises(ConfigError, match="max_age_s") as err:
        parse_webhook_config({"max_age_s": "soon"}, "c.toml", {})
    with pytest.raises(ConfigError, match="sendgrid_verification_key is not a base64 DER") as err:
        parse_webhook_config({"sendgrid_verification_key": "top-secret-not-a-key"}, "c.toml", {})
    assert "top-secret-not-a-key" not in str(err.value)
    with pytest.raises(ConfigError, match="postmark_user and postmark_password"):
        parse_webhook_config({"postmark_password": "pw"}, "c.toml", {})
    with pytest.raises(ConfigError, match="ses_topic_arns"):
        parse_webhook_config({"ses_topic_arns": ["my-topic"]}, "c.toml", {})
    config = parse_webhook_config({"mailgun_signing_key_env": "MG_KEY", "postmark_user": "u",
                                   "postmark_password": "pw-123"}, "c.toml",
                                  {"MG_KEY": "mg-secret-123"})
    assert config.mailgun_signing_key is not None
    assert config.mailgun_signing_key.reveal() == "mg-secret-123"
    shown = repr(config) + str(config.describe())
    assert "mg-secret-123" not in shown and "pw-123" not in shown
    # from the installation's TOML file
    path = tmp_path / "campaigns.toml"
    path.write_text('[webhooks]\nlisten = "0.0.0.0"\n', encoding="utf-8")
    settings = load_settings({"CAMPAIGNS_DATA_DIR": str(tmp_path / "d"),
                              "CAMPAIGNS_CONFIG": str(path)})
    with pytest.raises(ConfigError, match=rf"{path}: \[webhooks\]: listen must be HOST:PORT"):
        load_webhook_config(settings)


def test_unconfigured_providers_refuse_everything(site: Site) -> None:
    from campaigns.intake.webhooks.config import WebhookConfig
    app = create_app(site.ctx.settings, config=WebhookConfig(), db=site.ctx.db)
    with TestClient(app) as client:
        for name in ("ses", "sendgrid", "mailgun", "postmark"):
            answer = client.post(f"/webhooks/{name}", content=b"[]")
            assert answer.status_code == 403 and "not configured" in answer.json()["error"]
        assert client.post("/webhooks/other", content=b"{}").status_code == 404
        assert client.get("/healthz").json()["providers"]["mailgun"] is False
    assert site.rows(BounceEvent) == []


# ------------------------------------------------------------------------ a real server
def test_campaigns_api_serves_webhooks_over_http(site: Site) -> None:
    """`campaigns api` as a process: uvicorn on loopback, the ledger in SQLite."""
    with serving(site.env, site.root, "api") as served:
        base = served.base
        genuine = httpx.post(f"{base}/webhooks/mailgun", content=mailgun_post(mg_failed()),
                             timeout=10)
        assert genuine.status_code == 200, genuine.text
        assert genuine.json()["actions"] == {"suppressed": 1}
        forged = httpx.post(f"{base}/webhooks/mailgun", timeout=10,
                            content=mailgun_post(mg_event("complained", "mg-ok@example.test",
                                                          "mg-ok@sandbox.mailgun.org"),
                                                 key="guessed"))
        assert forged.status_code == 403
        wrong = httpx.post(f"{base}/webhooks/postmark", json=pm_bounce(), timeout=10,
                           auth=(POSTMARK_USER, "guessed"))
        assert wrong.status_code == 401
    out, err = served.out, served.err
    assert [(s.address, s.source) for s in site.rows(Suppression)] == [("alice@example.com",
                                                                        "bounce")]
    assert len(site.rows(BounceEvent)) == 1
    assert "webhooks on http://127.0.0.1" in out
    assert "webhook mailgun from 127.0.0.1: 403 signature does not match" in err
    for secret in (MAILGUN_KEY, POSTMARK_PASSWORD, "guessed"):
        assert secret not in out + err


# ------------------------------------------------------------------------ hostile bodies
def test_deeply_nested_json_with_valid_credentials_is_a_400(site: Site) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    answer = site.client.post("/webhooks/postmark", content=deep,
                              auth=(POSTMARK_USER, POSTMARK_PASSWORD))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "field 'body': expected a JSON document"
    for body in (b"\xff\xfe{", b'{"a": ' * 100_000):
        answer = site.client.post("/webhooks/postmark", content=body,
                                  auth=(POSTMARK_USER, POSTMARK_PASSWORD))
        assert answer.status_code == 400, answer.text
    assert site.rows(BounceEvent) == []


def test_a_client_that_disconnects_mid_body_is_one_log_line(site: Site) -> None:
    with serving(site.env, site.root, "api") as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(b"POST /webhooks/postmark HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                         + b'{"RecordType": "Bounce", ' + b" " * 1000)
            time.sleep(0.3)
        time.sleep(0.5)
        assert httpx.get(f"{served.base}/healthz", timeout=5).json()["ok"] is True
    err = served.err
    assert "webhook postmark from 127.0.0.1: client disconnected before the end of the body" \
        in err
    assert "Traceback" not in err and "Exception in ASGI application" not in err
