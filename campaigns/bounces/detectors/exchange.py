"""Microsoft Exchange 2000/2003 prose reports (no DSN part):

    Your message
      To:      shironeko@example.com
      Subject: Kijitora Cat
    did not reach the following recipient(s):

    kijitora@example.jp on Thu, 29 Apr 2010 00:00:00 -0000
        The recipient name is not recognized
        MSEXCH:IMS:NNN:KIJITORACAT:NEKO 0 (000C05A6)
"""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import (ADDRESS_RE, Finding, compile_table, first_reason,
                                              one_line)
from campaigns.bounces.message import ReturnedMessage

_START_RE = re.compile(r"did not reach the following recipient\(?s?\)?:?", re.IGNORECASE)
_RCPT_RE = re.compile(r"^\s*(" + ADDRESS_RE.pattern + r")\s+on\s+(.*)$", re.MULTILINE)
#: The MSEXCH:IMS / IMC error texts and their low-word codes.
_HINTS = compile_table(
    (r"recipient name is not recognized|unknown recipient|recipient not found|000C05A6|"
     r"no such user|not found", "userunknown"),
    (r"mailbox (is )?full|over quota|exceeded .{0,20}(size|quota)", "mailboxfull"),
    (r"too large|size limit", "mesgtoobig"),
    (r"host not found|domain .{0,20}not found|000C0595", "hostunknown"),
    (r"expired|could not be delivered .{0,30}time|timed out", "expired"),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of an Exchange prose report, or None."""
    m = _START_RE.search(message.text)
    if not m:
        return None
    body = message.text[m.end():]
    marks = list(_RCPT_RE.finditer(body))
    found = []
    for k, mark in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(body)
        diagnostic = one_line(body[mark.start(2):end])
        found.append(Finding(recipient=mark.group(1), diagnostic=diagnostic,
                             hint=first_reason(diagnostic, _HINTS)))
    return found or None
