"""PowerMTA DSNs carry their own verdict in X-PowerMTA-BounceCategory (PowerMTA user guide,
"bounce categories"); it is kept as a hint beside the standard DSN fields."""
from __future__ import annotations

from campaigns.bounces.detectors import dsn
from campaigns.bounces.detectors.base import Finding
from campaigns.bounces.message import ReturnedMessage

_CATEGORIES: dict[str, str] = {
    "bad-mailbox": "userunknown", "inactive-mailbox": "suspend", "bad-domain": "hostunknown",
    "quota-issues": "mailboxfull", "message-expired": "expired", "no-answer-from-host":
    "networkerror", "bad-connection": "networkerror", "routing-errors": "networkerror",
    "spam-related": "spamdetected", "virus-related": "virusdetected", "policy-related":
    "policyviolation", "content-related": "contenterror", "relaying-issues": "norelaying",
    "invalid-sender": "rejected", "protocol-errors": "syntaxerror", "bad-configuration":
    "systemerror",
}


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """DSN findings with PowerMTA's category as hint, or None for other MTAs."""
    categories = [g.get("x-powermta-bouncecategory", "").strip().lower() for g in message.fields
                  if "final-recipient" in g or "original-recipient" in g]
    if not any(categories):
        return None
    found = dsn.detect(message) or []
    for finding, category in zip(found, categories):
        hint = _CATEGORIES.get(category)
        # "bad-mailbox" is also PowerMTA's word for a disabled mailbox (X.2.1)
        if hint == "userunknown" and (finding.status or "").endswith(".2.1"):
            hint = "suspend"
        finding.hint = hint
    return found or None
