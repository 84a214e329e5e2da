"""Mobile-carrier gateways (Verizon vtext/vzwpix, Apache James based MMS relays):

    Error: Invalid user address
    Error message below:
    550 - Requested action not taken: no such user here
    Message details:
      RCPT TO: 0000000000@vtext.com

    Message could not be delivered to mobile.
    Error: No valid recipients for this MM
"""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import (ADDRESS_RE, Finding, compile_table, find_address,
                                              first_reason, one_line)
from campaigns.bounces.message import ReturnedMessage
from campaigns.bounces.status import find_reply_code

_RCPT_RE = re.compile(r"^\s*RCPT TO:\s*<?(" + ADDRESS_RE.pattern + r")", re.IGNORECASE | re.M)
_ERROR_RE = re.compile(r"^\s*Error:.*$|Error message below:\s*\n.*$", re.IGNORECASE | re.M)
_HINTS = compile_table(
    (r"no valid recipients|no such user|invalid user|user unknown", "userunknown"),
    (r"message size|too large", "mesgtoobig"),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a carrier MMS gateway report, or None."""
    errors = [m.group(0) for m in _ERROR_RE.finditer(message.text)]
    if not errors or not re.search(r"Message details:|delivered to mobile|\bMM\b",
                                   message.text):
        return None
    diagnostic = one_line(" ".join(errors))
    recipients = [m.group(1) for m in _RCPT_RE.finditer(message.text)]
    if not recipients:
        recipients = [a for a in [find_address(message.original_header("To"))] if a]
    return [Finding(recipient=r, diagnostic=diagnostic, reply_code=find_reply_code(diagnostic),
                    hint=first_reason(diagnostic, _HINTS)) for r in recipients] or None
