"""An unsubscribe request sent by the recipient's mail provider on their behalf: Apple Mail's
"Unsubscribe" banner mails the List-Unsubscribe mailto address with

    X-Apple-Unsubscribe: true
    Auto-Submitted: auto-generated
    Subject: unsubscribe

It is neither a bounce nor an out-of-office reply: the person asked to stop receiving mail
(complaint-like, reason "unsubscribe"; RFC 2369 List-Unsubscribe, RFC 3834 Auto-Submitted)."""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import Finding, find_address
from campaigns.bounces.message import ReturnedMessage

_SUBJECT_RE = re.compile(r"^\s*(unsubscribe|d[ée]sabonnement|abmelden|desuscribir)\b",
                         re.IGNORECASE)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """One "unsubscribe" finding for the person who asked, or None."""
    apple = message.header("X-Apple-Unsubscribe").lower() in ("true", "yes", "1")
    automatic = bool(message.header("Auto-Submitted")) and \
        message.header("Auto-Submitted").lower() != "no"
    if message.fields or not (apple or (automatic and _SUBJECT_RE.search(message.subject))):
        return None
    recipient = find_address(message.header("From"))
    return [Finding(recipient=recipient, diagnostic=message.subject or "unsubscribe",
                    hint="unsubscribe")]
