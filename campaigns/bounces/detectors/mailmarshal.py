"""MailMarshal (Trustwave): the error first, then the list of recipients.

    Could not be delivered because of
    550 5.1.1 User unknown
    The following recipients were affected:
        kijitora@nyaan.example.com
"""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import ADDRESS_RE, Finding, one_line, section
from campaigns.bounces.message import ReturnedMessage
from campaigns.bounces.status import find_reply_code, find_status

_CAUSE_RE = re.compile(r"could not be delivered because of", re.IGNORECASE)
_LIST_RE = re.compile(r"the following recipients were affected:?", re.IGNORECASE)
_END_RE = re.compile(r"^\s*(Additional Information|=====)", re.IGNORECASE | re.MULTILINE)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a MailMarshal report, or None."""
    cause = section(message.text, _CAUSE_RE, _LIST_RE)
    if not cause:
        return None
    diagnostic = one_line(cause)
    listed = section(message.text, _LIST_RE, _END_RE)
    return [Finding(recipient=a, diagnostic=diagnostic, status=find_status(diagnostic),
                    reply_code=find_reply_code(diagnostic), command="RCPT")
            for a in dict.fromkeys(ADDRESS_RE.findall(listed))] or None
