"""Ipswitch IMail (X-Mailer: <SMTP32 v...>): one line per recipient, reason first.

    Unknown user: kijitora@example.com
    User mailbox exceeds allowed size: kijitora@example.co.jp
    Delivery failed 20 attempts: kijitora@example.com
"""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import ADDRESS_RE, Finding, compile_table, first_reason
from campaigns.bounces.message import ReturnedMessage

_LINE_RE = re.compile(r"^\s*([A-Za-z][^:\n]{3,60}):\s*<?(" + ADDRESS_RE.pattern + r")>?\s*$",
                      re.MULTILINE)
_HINTS = compile_table(
    (r"unknown user|invalid final delivery userid|user unknown", "userunknown"),
    (r"mailbox exceeds allowed size|mailbox full", "mailboxfull"),
    (r"delivery failed \d+ attempts", "expired"),
    (r"host unknown|unknown host|domain", "hostunknown"),
    (r"request terminated|no answer", "networkerror"),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of an IMail report, or None."""
    if "SMTP32" not in message.header("X-Mailer"):
        return None
    found = []
    for m in _LINE_RE.finditer(message.text):
        reason_text = m.group(1)
        found.append(Finding(recipient=m.group(2), diagnostic=m.group(0).strip(),
                             hint=first_reason(reason_text, _HINTS)))
    return found or None
