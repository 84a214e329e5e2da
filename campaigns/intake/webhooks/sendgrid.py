"""Twilio SendGrid's signed Event Webhook.

"Twilio SendGrid will generate a private and public key pair using the Elliptic Curve
Digital Signature Algorithm (ECDSA). [...] all new event posts will have two new headers:
X-Twilio-Email-Event-Webhook-Signature and X-Twilio-Email-Event-Webhook-Timestamp". The
signature is the base64 DER ECDSA (P-256, SHA-256) signature of the timestamp followed by
the raw body; the Verification Key is the base64 DER public key. SendGrid documents no
freshness window: we reject timestamps further than `max_age_s` from our clock (a replay).

The body is a JSON array of events. `sg_message_id` starts with the X-Message-Id SendGrid
answered at send time (what we stored), then ".filter…": we match on the part before the
first ".". `sg_event_id` is unique per event (the idempotency key)."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from campaigns.bounces import BounceReport, Classification
from campaigns.bounces.model import BounceCategory
from campaigns.intake.webhooks.common import (MalformedPayload, ProviderEvent, WebhookRejected,
                                       WebhookRequest, get, load_json, refine, report)
from campaigns.intake.webhooks.config import WebhookConfig

NAME = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

#: bounce_classification (SendGrid's own reading of a bounce) -> what it means here
_CLASSIFICATIONS = {
    "invalid address": Classification.of("userunknown"),
    "mailbox unavailable": Classification.of("suspend"),
    "reputation": Classification.of("badreputation"),
    "content": Classification.of("contenterror"),
    "frequency or volume": Classification.of("speeding"),
    "technical": Classification.of("systemerror"),
}
_HARD = Classification.of("undefined", BounceCategory.HARD, True)
#: dropped: SendGrid did not send it. (reason prefix, verdict); None: not a delivery
#: outcome of ours (SendGrid's own unsubscribe list belongs to the unsubscribe flow)
_DROPPED: tuple[tuple[str, Classification | None], ...] = (
    ("bounced address", Classification.of("suppressed")),
    ("spam reporting address", Classification.of("feedback")),
    ("unsubscribed address", None),
    ("invalid", Classification.of("userunknown")),
    ("spam content", Classification.of("contenterror")),
    ("expired", Classification.of("expired")),
)
_DROPPED_OTHER = Classification.of("systemerror", BounceCategory.RELAY, False)


def verify(request: WebhookRequest, config: WebhookConfig) -> None:
    """Raise WebhookRejected unless the body carries a fresh signature by SendGrid's key."""
    if config.sendgrid_verification_key is None:
        raise WebhookRejected("sendgrid webhooks are not configured "
                              "(no sendgrid_verification_key)")
    signature, timestamp = request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise WebhookRejected("no signature headers", status=401)
    if not timestamp.strip().isdigit():
        raise WebhookRejected("timestamp is not a number")
    if abs(request.received_at - int(timestamp)) > config.max_age_s:
        raise WebhookRejected("stale timestamp (a replay?)")
    if not verify_signature(config.sendgrid_verification_key.reveal(), request.body,
                            signature, timestamp):
        raise WebhookRejected("signature does not match")


def verify_signature(public_key_b64: str, body: bytes, signature_b64: str,
                     timestamp: str) -> bool:
    """True when `signature_b64` is SendGrid's signature of `timestamp` + `body`."""
    try:
        public = load_der_public_key(base64.b64decode(public_key_b64))
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, binascii.Error):
        return False
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    try:
        public.verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def events(body: bytes) -> list[ProviderEvent]:
    """The delivery outcomes in a verified post (opens, clicks, processed: none)."""
    items = load_json(body, "body")
    if not isinstance(items, list):
        raise MalformedPayload("body", "a JSON array of events")
    out = []
    for i, item in enumerate(items):
        at = f"[{i}]"
        if not isinstance(item, dict):
            raise MalformedPayload(at, "an event object")
        kind = get(item, "event", str, at=at)
        verdict = _verdict(kind, item, at)
        if verdict is None:
            continue
        sg_message_id = get(item, "sg_message_id", str, at=at, required=False)
        out.append(ProviderEvent(
            sg_message_id.split(".", 1)[0] if sg_message_id else None,
            get(item, "email", str, at=at), verdict, get(item, "sg_event_id", str, at=at),
            kind if kind != "bounce" else f"bounce/{item.get('type') or 'bounce'}"))
    return out


def _verdict(kind: str, item: dict[str, Any], at: str) -> BounceReport | None:
    email = get(item, "email", str, at=at)
    reason = get(item, "reason", str, at=at, required=False)
    status = get(item, "status", str, at=at, required=False)
    if kind == "bounce":
        return report(_bounce(item, reason, status, at), email, diagnostic=reason,
                      status=status)
    if kind == "dropped":
        verdict = _dropped(reason or "")
        return None if verdict is None else report(verdict, email, diagnostic=reason)
    if kind == "deferred":
        # "Recipient's email server temporarily rejected message": SendGrid keeps trying
        response = get(item, "response", str, at=at, required=False)
        verdict = refine(Classification.of("delayed"), response, permanent=False)
        return report(verdict, email, diagnostic=response, final=False)
    if kind == "delivered":
        return report(Classification.of("delivered"), email,
                      diagnostic=get(item, "response", str, at=at, required=False))
    if kind == "spamreport":
        return report(Classification.of("feedback"), email, feedback_type="abuse")
    return None


def _bounce(item: dict[str, Any], reason: str | None, status: str | None,
            at: str) -> Classification:
    """type "bounce": the receiver refused the recipient for good; type "blocked": it refused
    us (an IP or domain block), the recipient is not at fault."""
    kind = get(item, "type", str, at=at, required=False) or "bounce"
    said = refine(_HARD, reason, permanent=None, status=status)
    if kind == "blocked":
        block = Classification.of("blocked")
        return said if said.category in (BounceCategory.BLOCK, BounceCategory.POLICY,
                                         BounceCategory.AUTH, BounceCategory.THROTTLE) else block
    classification = get(item, "bounce_classification", str, at=at, required=False)
    base = _CLASSIFICATIONS.get((classification or "").lower(), _HARD)
    return refine(base, reason, permanent=True if base.category is BounceCategory.HARD
                  else None, status=status)


def _dropped(reason: str) -> Classification | None:
    lowered = reason.lower()
    for prefix, verdict in _DROPPED:
        if lowered.startswith(prefix):
            return verdict
    return _DROPPED_OTHER
