"""Trend Micro InterScan Messaging Security Suite notifications:

    ****** Message from InterScan Messaging Security Suite ******
    Unable to deliver message to <kijitora@example.jp> (and other recipients in the same domain).
"""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import ADDRESS_RE, Finding, one_line
from campaigns.bounces.message import ReturnedMessage

_LINE_RE = re.compile(r"unable to deliver message to <?(" + ADDRESS_RE.pattern + r")>?(.*)$",
                      re.IGNORECASE | re.MULTILINE)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of an InterScan report, or None. InterScan writes this line when the
    receiving server refused the recipient."""
    if "interscan" not in (message.text + message.sender).lower():
        return None
    return [Finding(recipient=m.group(1), diagnostic=one_line(m.group(0)), hint="userunknown")
            for m in _LINE_RE.finditer(message.text)] or None
