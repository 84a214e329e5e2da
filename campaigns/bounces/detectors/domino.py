"""Lotus Notes / HCL Domino: the reasons come before the recipient.

    ------- Failure Reasons  --------
    User  not listed in public Name & Address Book
    kijitora@example.com
    ------- Returned Message --------
"""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import (ADDRESS_RE, Finding, compile_table, first_reason,
                                              one_line)
from campaigns.bounces.message import ReturnedMessage

_START_RE = re.compile(r"-+\s*Failure Reasons\s*-+", re.IGNORECASE)
_HINTS = compile_table(
    (r"not listed in (the )?(public )?(name|domino directory)|no such user|user unknown",
     "userunknown"),
    (r"mail file is full|quota", "mailboxfull"),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a Domino report, or None."""
    m = _START_RE.search(message.full_text)
    if not m:
        return None
    body = re.split(r"-{3,}\s*Returned Message", message.full_text[m.end():],
                    flags=re.IGNORECASE)[0]
    reasons = ADDRESS_RE.sub(" ", body)
    diagnostic = one_line(reasons)
    hint = first_reason(diagnostic, _HINTS)
    found = [Finding(recipient=a, diagnostic=diagnostic, hint=hint)
             for a in dict.fromkeys(ADDRESS_RE.findall(body))]
    return found or None
