"""Amazon SES events, delivered by Amazon SNS to an HTTPS subscription.

SNS signs every message: "Signature" is the base64 SHA1withRSA (SignatureVersion 1) or
SHA256withRSA (SignatureVersion 2) signature of a canonical string, each field's name and
value on their own lines, in this order (AWS, "Verifying the signatures of Amazon SNS
messages"):

- Notification: Message, MessageId, Subject (only when present), Timestamp, TopicArn, Type;
- SubscriptionConfirmation and UnsubscribeConfirmation: Message, MessageId, SubscribeURL,
  Timestamp, Token, TopicArn, Type.

The public key is in the X.509 certificate at SigningCertURL, which we fetch only over
https from a host matching `sns_cert_hosts` (so a forger cannot point us at a certificate of
their own), and cache. The topic must be one of `ses_topic_arns`: anyone can create an SNS
topic and have AWS sign for it. Raw message delivery must stay off (a raw body carries no
signature). A SubscriptionConfirmation is confirmed by visiting its SubscribeURL, after
verification and only on an SNS host.

The SNS "Message" is the SES event, in either shape: a notification ("notificationType")
or event publishing ("eventType"): Bounce, Complaint, Delivery, DeliveryDelay, Reject."""
from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from campaigns.bounces import Classification
from campaigns.bounces.model import BounceCategory
from campaigns.intake.webhooks.common import (MalformedPayload, ProviderEvent, WebhookRejected,
                                       WebhookRequest, WebhookUnavailable, get, load_json,
                                       refine, report)
from campaigns.intake.webhooks.config import WebhookConfig

NAME = "ses"
log = logging.getLogger("campaigns.intake.webhooks.ses")

#: url -> bytes (a GET over https); injectable so tests need no AWS
Fetch = Callable[[str], bytes]

_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                        "TopicArn", "Type")
_FIELDS = {"Notification": _NOTIFICATION_FIELDS,
           "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
           "UnsubscribeConfirmation": _CONFIRMATION_FIELDS}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_MAX_CERT_BYTES = 64 * 1024


def fetch_url(url: str) -> bytes:
    """GET `url` (https, the system's CA store checks the host) and return at most 64 KiB."""
    if not url.startswith("https://"):
        raise ValueError("only https is fetched")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - https only
        data: bytes = response.read(_MAX_CERT_BYTES + 1)
    return data


class CertificateCache:
    """Signing keys by certificate URL. SNS rotates its certificate rarely; one fetch per URL
    per process, not one per message."""

    def __init__(self, size: int = 32) -> None:
        self._keys: dict[str, tuple[rsa.RSAPublicKey, datetime]] = {}
        self._lock = threading.Lock()
        self._size = size

    def key(self, url: str, fetch: Fetch, now: datetime) -> rsa.RSAPublicKey:
        with self._lock:
            cached = self._keys.get(url)
        if cached is not None and now <= cached[1]:
            return cached[0]
        try:
            pem = fetch(url)
        except Exception as err:  # noqa: BLE001 - any network failure: try again later
            log.warning("cannot fetch the SNS signing certificate %s: %s", url, err)
            raise WebhookUnavailable("the signing certificate could not be fetched") from None
        public, not_after = _load_certificate(pem, now)
        with self._lock:
            if len(self._keys) >= self._size:
                self._keys.pop(next(iter(self._keys)))
            self._keys[url] = (public, not_after)
        return public


def _load_certificate(pem: bytes, now: datetime) -> tuple[rsa.RSAPublicKey, datetime]:
    if len(pem) > _MAX_CERT_BYTES:
        raise WebhookRejected("the signing certificate is too large")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise WebhookRejected("the signing certificate is not a PEM certificate") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise WebhookRejected("the signing certificate is not valid now")
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise WebhookRejected("the signing certificate has no RSA key")
    return public, cert.not_valid_after_utc


CERTIFICATES = CertificateCache()


# ------------------------------------------------------------------------ verification
def verify(request: WebhookRequest, config: WebhookConfig, *, fetch: Fetch = fetch_url,
           certificates: CertificateCache = CERTIFICATES) -> None:
    """Raise WebhookRejected unless the body is an SNS message from an accepted topic, signed
    with a certificate from an SNS host, not older than `sns_max_age_s`."""
    if not config.ses_topic_arns:
        raise WebhookRejected("ses webhooks are not configured (no ses_topic_arns)")
    message = _envelope(request)
    if message["TopicArn"] not in config.ses_topic_arns:
        raise WebhookRejected("topic not accepted")
    hash_of = _HASHES.get(str(message.get("SignatureVersion", "")))
    if hash_of is None:
        raise WebhookRejected("unknown SignatureVersion")
    url = _sns_url(message.get("SigningCertURL"), config, "SigningCertURL")
    if not url.lower().split("?", 1)[0].endswith(".pem"):
        raise WebhookRejected("SigningCertURL is not a certificate")
    now = datetime.fromtimestamp(request.received_at, tz=timezone.utc)
    _check_age(message["Timestamp"], request.received_at, config.sns_max_age_s)
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("Signature is not base64") from None
    public = certificates.key(url, fetch, now)
    try:
        public.verify(signature, string_to_sign(message), padding.PKCS1v15(), hash_of())
    except InvalidSignature:
        raise WebhookRejected("signature does not match") from None


def _envelope(request: WebhookRequest) -> dict[str, Any]:
    """The SNS message, with the fields its signature needs; rejected (not 400) otherwise:
    a body we cannot verify is not the provider's."""
    try:
        message = load_json(request.body, "body")
    except MalformedPayload:
        raise WebhookRejected("not an SNS message (body is not JSON)") from None
    if not isinstance(message, dict) or message.get("Type") not in _FIELDS:
        raise WebhookRejected("not an SNS message (no known Type)")
    header = request.header("x-amz-sns-message-type")
    if header is not None and header != message["Type"]:
        raise WebhookRejected("x-amz-sns-message-type does not match the message Type")
    for name in _FIELDS[message["Type"]]:
        if name == "Subject" and "Subject" not in message:
            continue
        if not isinstance(message.get(name), str):
            raise WebhookRejected(f"not an SNS message (no {name})")
    return message


def string_to_sign(message: dict[str, Any]) -> bytes:
    """The canonical string SNS signs (module docstring), Subject only when present."""
    names = _FIELDS[message["Type"]]
    return "".join(f"{name}\n{message[name]}\n" for name in names
                   if name != "Subject" or "Subject" in message).encode()


def _sns_url(url: Any, config: WebhookConfig, what: str) -> str:
    """`url` when it is https on a host matching `sns_cert_hosts`; never fetched otherwise."""
    if not isinstance(url, str):
        raise WebhookRejected(f"no {what}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "https" or port not in (None, 443) or parts.username or parts.password:
        raise WebhookRejected(f"{what} is not https on the standard port")
    if not re.fullmatch(config.sns_cert_hosts, parts.hostname or ""):
        raise WebhookRejected(f"{what} is not on an SNS host")
    return url


def _check_age(timestamp: str, now: float, max_age_s: float) -> None:
    try:
        sent = datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        raise WebhookRejected("Timestamp is not an ISO 8601 time") from None
    if abs(now - sent) > max_age_s:
        raise WebhookRejected("stale Timestamp (a replay?)")


def confirm_subscription(body: bytes, config: WebhookConfig, *,
                         fetch: Fetch = fetch_url) -> str | None:
    """After `verify`: visit the SubscribeURL of a SubscriptionConfirmation (an SNS host
    only) and return it; None for any other message."""
    message = load_json(body, "body")
    if message.get("Type") != "SubscriptionConfirmation":
        return None
    url = _sns_url(message.get("SubscribeURL"), config, "SubscribeURL")
    try:
        fetch(url)
    except Exception as err:  # noqa: BLE001 - any network failure: SNS sends it again
        log.warning("cannot confirm the SNS subscription to %s: %s", message["TopicArn"], err)
        raise WebhookUnavailable("the subscription could not be confirmed") from None
    log.info("confirmed the SNS subscription to %s", message["TopicArn"])
    return url


# ------------------------------------------------------------------------ SES events
#: (bounceType, bounceSubType) -> what SES says on its own (AWS, "Amazon SNS notification
#: contents for Amazon SES", bounce types)
_BOUNCES: dict[tuple[str, str], Classification] = {
    ("Permanent", "General"): Classification.of("undefined", BounceCategory.HARD, True),
    ("Permanent", "NoEmail"): Classification.of("userunknown"),
    ("Permanent", "Suppressed"): Classification.of("suppressed"),
    ("Permanent", "OnAccountSuppressionList"): Classification.of("suppressed"),
    ("Transient", "General"): Classification.of("undefined", BounceCategory.SOFT, False),
    ("Transient", "MailboxFull"): Classification.of("mailboxfull"),
    ("Transient", "MessageTooLarge"): Classification.of("mesgtoobig"),
    ("Transient", "ContentRejected"): Classification.of("contenterror"),
    ("Transient", "AttachmentRejected"): Classification.of("policyviolation"),
}
#: subtypes that name the cause: SES's word stands (for its suppression lists the
#: diagnostic is SES's own prose, not a receiver's reply); "General" and "Undetermined"
#: are refined by the receiver's diagnostic
_SES_SAYS = frozenset({"NoEmail", "Suppressed", "OnAccountSuppressionList", "MailboxFull",
                       "MessageTooLarge", "ContentRejected", "AttachmentRejected"})
_PERMANENCE = {"Permanent": True, "Transient": False}


def events(body: bytes) -> list[ProviderEvent]:
    """The SES events in a verified SNS message (none for a subscription notice)."""
    envelope = load_json(body, "body")
    if envelope.get("Type") != "Notification":
        return []
    ses = load_json(get(envelope, "Message", str).encode(), "Message")
    if not isinstance(ses, dict):
        raise MalformedPayload("Message", "an SES event object")
    kind = ses.get("notificationType") or ses.get("eventType")
    if not isinstance(kind, str):
        raise MalformedPayload("Message.notificationType", "a string (or eventType)")
    message_id = get(ses, "mail.messageId", str, at="Message")
    handler = _HANDLERS.get(kind)
    if handler is None:
        return []               # Send, Open, Click, Rendering Failure, Subscription
    return handler(ses, message_id, envelope["MessageId"])


def _recipients(ses: dict[str, Any], path: str) -> list[Any]:
    items: list[Any] = get(ses, path, list, at="Message")
    if not items:
        raise MalformedPayload(f"Message.{path}", "at least one recipient")
    return items


def _address(item: Any, path: str) -> str:
    if isinstance(item, str):
        return item
    return str(get(item, "emailAddress", str, at=f"Message.{path}[]"))


def _bounce(ses: dict[str, Any], message_id: str, sns_id: str) -> list[ProviderEvent]:
    kind = get(ses, "bounce.bounceType", str, at="Message")
    sub = get(ses, "bounce.bounceSubType", str, at="Message", required=False) or "General"
    base = _BOUNCES.get((kind, sub)) or _BOUNCES.get((kind, "General")) \
        or Classification.of("undefined")
    feedback_id = get(ses, "bounce.feedbackId", str, at="Message", required=False) or sns_id
    out = []
    for item in _recipients(ses, "bounce.bouncedRecipients"):
        address = _address(item, "bounce.bouncedRecipients")
        diagnostic = item.get("diagnosticCode") if isinstance(item, dict) else None
        status = item.get("status") if isinstance(item, dict) else None
        verdict = base if sub in _SES_SAYS else refine(
            base, diagnostic, permanent=_PERMANENCE.get(kind), status=status)
        out.append(ProviderEvent(message_id, address,
                                 report(verdict, address, diagnostic=diagnostic, status=status),
                                 f"{feedback_id}:{address}", f"Bounce/{kind}/{sub}"))
    return out


def _complaint(ses: dict[str, Any], message_id: str, sns_id: str) -> list[ProviderEvent]:
    feedback = get(ses, "complaint.complaintFeedbackType", str, at="Message", required=False)
    feedback_id = get(ses, "complaint.feedbackId", str, at="Message", required=False) or sns_id
    out = []
    for item in _recipients(ses, "complaint.complainedRecipients"):
        address = _address(item, "complaint.complainedRecipients")
        verdict = report(Classification.of("feedback"), address, feedback_type=feedback)
        out.append(ProviderEvent(message_id, address, verdict, f"{feedback_id}:{address}",
                                 f"Complaint/{feedback or '-'}"))
    return out


def _delivery(ses: dict[str, Any], message_id: str, sns_id: str) -> list[ProviderEvent]:
    response = get(ses, "delivery.smtpResponse", str, at="Message", required=False)
    return [ProviderEvent(message_id, address,
                          report(Classification.of("delivered"), address, diagnostic=response),
                          f"{message_id}:delivery:{address}", "Delivery")
            for address in (_address(item, "delivery.recipients")
                            for item in _recipients(ses, "delivery.recipients"))]


def _delay(ses: dict[str, Any], message_id: str, sns_id: str) -> list[ProviderEvent]:
    """Event publishing's DeliveryDelay: SES is still trying; never an outcome."""
    delay = get(ses, "deliveryDelay.delayType", str, at="Message")
    when = get(ses, "deliveryDelay.timestamp", str, at="Message", required=False) or sns_id
    out = []
    for item in _recipients(ses, "deliveryDelay.delayedRecipients"):
        address = _address(item, "deliveryDelay.delayedRecipients")
        diagnostic = item.get("diagnosticCode") if isinstance(item, dict) else None
        verdict = refine(Classification.of("delayed"), diagnostic, permanent=False,
                         status=item.get("status") if isinstance(item, dict) else None)
        out.append(ProviderEvent(message_id, address,
                                 report(verdict, address, diagnostic=diagnostic, final=False),
                                 f"{message_id}:delay:{address}:{when}",
                                 f"DeliveryDelay/{delay}"))
    return out


def _reject(ses: dict[str, Any], message_id: str, sns_id: str) -> list[ProviderEvent]:
    """SES refused the message itself (it found a virus): the content, not the recipients."""
    reason = get(ses, "reject.reason", str, at="Message", required=False) or "Bad content"
    return [ProviderEvent(message_id, address,
                          report(Classification.of("virusdetected"), address, diagnostic=reason),
                          f"{message_id}:reject:{address}", "Reject")
            for address in (_address(item, "mail.destination")
                            for item in _recipients(ses, "mail.destination"))]


_HANDLERS: dict[str, Callable[[dict[str, Any], str, str], list[ProviderEvent]]] = {
    "Bounce": _bounce, "Complaint": _complaint, "Delivery": _delivery,
    "DeliveryDelay": _delay, "Reject": _reject,
}
