"""Postmark webhooks: Bounce, SpamComplaint and Delivery.

Postmark does not sign its webhooks; it sends the HTTP basic auth credentials put in the
webhook URL ("https://user:password@host/webhooks/postmark"). We compare both in constant
time and answer 401 otherwise. Use it over https only: the password travels with each post.

One record per post. "Type" of a bounce follows Postmark's bounce type table; `ID` is the
bounce's id (a spam complaint is a bounce too, with the same id in both webhooks), the
idempotency key; `MessageID` is what Postmark answered at send time."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from campaigns.bounces import BounceReport, Classification
from campaigns.bounces.model import BounceCategory
from campaigns.intake.webhooks.common import (ProviderEvent, WebhookRejected, WebhookRequest, get,
                                       load_json, refine, report, same_secret)
from campaigns.intake.webhooks.config import WebhookConfig

NAME = "postmark"
_C = Classification.of

#: Postmark bounce Type -> (verdict, final, permanence to refine with the receiver's words:
#: True/False, None for "as the words say", or "keep" to take Postmark's verdict as it is)
_TYPES: dict[str, tuple[Classification, bool, bool | None | str]] = {
    "HardBounce": (_C("undefined", BounceCategory.HARD, True), True, True),
    "SoftBounce": (_C("undefined", BounceCategory.SOFT, False), True, False),
    # "Message delayed/Undeliverable": Postmark is still trying
    "Transient": (_C("delayed"), False, False),
    "DnsError": (_C("networkerror"), True, "keep"),        # "A temporary DNS error"
    "AutoResponder": (_C("vacation"), True, "keep"),
    "AddressChange": (_C("hasmoved", BounceCategory.AUTOREPLY, False), True, "keep"),
    # "delivered, but either blocked by the user, or classified as spam": the receiver's
    # filter, not the recipient's complaint (that is SpamComplaint)
    "SpamNotification": (_C("spamdetected"), True, "keep"),
    "SpamComplaint": (_C("feedback"), True, "keep"),
    "Blocked": (_C("blocked"), True, "keep"),
    "BadEmailAddress": (_C("userunknown"), True, "keep"),
    "VirusNotification": (_C("virusdetected"), True, "keep"),
    "ChallengeVerification": (_C("vacation"), True, "keep"),
    "DMARCPolicy": (_C("authfailure"), True, "keep"),
    "TemplateRenderingFailed": (_C("contenterror"), True, "keep"),
    "SMTPApiError": (_C("systemerror", BounceCategory.RELAY, False), True, "keep"),
    "Unknown": (_C("undefined"), True, None),
}
#: not a delivery outcome of ours: list changes, Postmark's own actions, inbound mail
_NOT_OURS = frozenset({"Unsubscribe", "Subscribe", "OpenRelayTest", "ManuallyDeactivated",
                       "Unconfirmed", "InboundError"})


def verify(request: WebhookRequest, config: WebhookConfig) -> None:
    """Raise WebhookRejected (401) unless the post carries our basic auth credentials."""
    if config.postmark_user is None or config.postmark_password is None:
        raise WebhookRejected("postmark webhooks are not configured (no postmark_user)")
    scheme, _, encoded = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookRejected("no basic auth credentials", status=401)
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        raise WebhookRejected("malformed basic auth credentials", status=401) from None
    # both compared whatever the first gives, so timing says nothing about which was wrong
    good_user = same_secret(user, config.postmark_user)
    good_password = same_secret(password, config.postmark_password.reveal())
    if not (sep and good_user and good_password):
        raise WebhookRejected("wrong credentials", status=401)


def events(body: bytes) -> list[ProviderEvent]:
    """The delivery outcome in a verified post (opens, clicks, subscription changes: none)."""
    record = load_json(body, "body")
    kind = get(record, "RecordType", str)
    if kind == "Bounce":
        return _bounce(record, get(record, "Type", str))
    if kind == "SpamComplaint":
        return _bounce(record, "SpamComplaint")
    if kind == "Delivery":
        message_id = get(record, "MessageID", str)
        recipient = get(record, "Recipient", str)
        verdict = report(Classification.of("delivered"), recipient,
                         diagnostic=get(record, "Details", str, required=False))
        return [ProviderEvent(message_id, recipient, verdict,
                              f"{message_id}:delivery:{recipient}", "Delivery")]
    return []


def _bounce(record: dict[str, Any], kind: str) -> list[ProviderEvent]:
    bounce_id = get(record, "ID", (int, str))
    email = get(record, "Email", str)
    verdict = _verdict(kind, email, get(record, "Details", str, required=False))
    if verdict is None:
        return []
    return [ProviderEvent(get(record, "MessageID", str, required=False), email, verdict,
                          f"bounce:{bounce_id}", f"{record['RecordType']}/{kind}")]


def _verdict(kind: str, email: str, details: str | None) -> BounceReport | None:
    if kind in _NOT_OURS:
        return None
    base, final, permanence = _TYPES.get(kind, _TYPES["Unknown"])
    verdict = base if permanence == "keep" else refine(
        base, details, permanent=permanence if isinstance(permanence, bool) else None)
    return report(verdict, email, diagnostic=details, final=final,
                  feedback_type="abuse" if verdict.category is BounceCategory.COMPLAINT
                  else None)
