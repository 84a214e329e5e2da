"""Mailgun webhooks (the JSON "event-data" format).

Mailgun signs each post: "concatenate timestamp and token values, encode the resulting
string with the HMAC algorithm (using your Webhook Signing Key as a key and SHA256 digest
mode) and compare the resulting hexdigest to the signature". It also advises caching the
tokens and rejecting a timestamp too far from the current time: we reject timestamps older
than `max_age_s` and a token seen in the last `max_age_s` (a replay; after that the
timestamp check catches it). The event id is the idempotency key besides, so a replay that
got past both changes nothing.

`event-data.message.headers.message-id` is the Message-Id Mailgun gave the message
(stored without <>)."""
from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

from campaigns.bounces import BounceReport, Classification
from campaigns.bounces.model import BounceCategory
from campaigns.intake.webhooks.common import (MalformedPayload, ProviderEvent, WebhookRejected,
                                       WebhookRequest, get, load_json, refine, report,
                                       same_secret)
from campaigns.intake.webhooks.config import WebhookConfig

NAME = "mailgun"

#: event-data.reason of a permanent failure -> what Mailgun says on its own
_REASONS = {
    "suppress-bounce": Classification.of("suppressed"),
    "suppress-complaint": Classification.of("suppressed", BounceCategory.COMPLAINT, True),
    "espblock": Classification.of("blocked"),
    "old": Classification.of("expired"),
}
_HARD = Classification.of("undefined", BounceCategory.HARD, True)
#: reasons that are not a delivery outcome of ours (Mailgun's own unsubscribe list)
_NOT_OURS = frozenset({"suppress-unsubscribe"})


class TokenCache:
    """Tokens of verified posts, remembered `max_age_s`: the same token twice is a replay."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, token: str, now: float, ttl_s: float) -> bool:
        """Remember `token`; False when it was already seen (and not yet expired)."""
        with self._lock:
            if len(self._seen) > 1000:
                self._seen = {t: exp for t, exp in self._seen.items() if exp > now}
            if self._seen.get(token, 0.0) > now:
                return False
            self._seen[token] = now + ttl_s
            return True


TOKENS = TokenCache()


def verify(request: WebhookRequest, config: WebhookConfig, *,
           tokens: TokenCache = TOKENS) -> None:
    """Raise WebhookRejected unless the post is signed with our signing key, fresh, and its
    token new."""
    if config.mailgun_signing_key is None:
        raise WebhookRejected("mailgun webhooks are not configured (no mailgun_signing_key)")
    try:
        signed = get(load_json(request.body, "body"), "signature", dict)
        timestamp = get(signed, "timestamp", (str, int), at="signature")
        token = get(signed, "token", str, at="signature")
        signature = get(signed, "signature", str, at="signature")
    except MalformedPayload as err:
        raise WebhookRejected(f"no signature ({err.field})", status=401) from None
    if not str(timestamp).isdigit():
        raise WebhookRejected("signature.timestamp is not a number")
    if abs(request.received_at - int(timestamp)) > config.max_age_s:
        raise WebhookRejected("stale timestamp (a replay?)")
    expected = hmac.new(config.mailgun_signing_key.reveal().encode(),
                        f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    if not same_secret(signature.lower(), expected):
        raise WebhookRejected("signature does not match")
    if not tokens.add(token, request.received_at, config.max_age_s):
        raise WebhookRejected("token already used (a replay?)")


def events(body: bytes) -> list[ProviderEvent]:
    """The delivery outcome in a verified post (opens, clicks, unsubscribes: none)."""
    data = get(load_json(body, "body"), "event-data", dict)
    at = "event-data"
    kind = get(data, "event", str, at=at)
    verdict = _verdict(kind, data, at)
    if verdict is None:
        return []
    message_id = get(data, "message.headers.message-id", str, at=at, required=False)
    return [ProviderEvent(message_id.strip().strip("<>") if message_id else None,
                          verdict.recipient, verdict, get(data, "id", str, at=at),
                          f"{kind}/{data.get('severity')}" if kind == "failed" else kind)]


def _verdict(kind: str, data: dict[str, Any], at: str) -> BounceReport | None:
    recipient = get(data, "recipient", str, at=at)
    if kind == "failed":
        return _failed(data, recipient, at)
    if kind == "complained":
        return report(Classification.of("feedback"), recipient, feedback_type="abuse")
    if kind == "delivered":
        return report(Classification.of("delivered"), recipient,
                      diagnostic=get(data, "delivery-status.message", str, at=at,
                                     required=False))
    return None                 # accepted, opened, clicked, unsubscribed, stored


def _failed(data: dict[str, Any], recipient: str, at: str) -> BounceReport | None:
    """severity "permanent": Mailgun gave up; "temporary": it tries again (not an outcome)."""
    severity = get(data, "severity", str, at=at)
    reason = get(data, "reason", str, at=at, required=False) or "generic"
    if reason in _NOT_OURS:
        return None
    status = get(data, "delivery-status", dict, at=at, required=False) or {}
    code = status.get("code") if isinstance(status.get("code"), int) else None
    code = code if code and 200 <= code < 600 else None      # 605, 607: Mailgun's own codes
    text = " ".join(str(status.get(k) or "") for k in ("message", "description")).strip()
    enhanced = status.get("enhanced-code") if isinstance(status.get("enhanced-code"), str) \
        else None
    if severity == "temporary":
        verdict = refine(Classification.of("delayed"), text, permanent=False, code=code,
                         status=enhanced)
        return report(verdict, recipient, diagnostic=text, reply_code=code, status=enhanced,
                      final=False)
    if severity != "permanent":
        raise MalformedPayload(f"{at}.severity", '"permanent" or "temporary"')
    base = _REASONS.get(reason)
    verdict = base if base is not None else refine(_HARD, text, permanent=True, code=code,
                                                   status=enhanced)
    return report(verdict, recipient, diagnostic=text, reply_code=code, status=enhanced)
