"""Sendmail (8.x and the old 5.x): a list of addresses, then a session transcript whose
per-recipient lines are "NNN <address>... reason":

       ----- The following addresses had permanent fatal errors -----
    <kijitora@example.jp>
        (reason: 550 5.1.1 <kijitora@example.jp>... User unknown)
       ----- Transcript of session follows -----
    ... while talking to mx.example.jp.:
    >>> RCPT To:<kijitora@example.jp>
    <<< 550 5.1.1 <kijitora@example.jp>... User unknown
"""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import ADDRESS_RE, Finding, dedupe, one_line
from campaigns.bounces.detectors.prose import Dialect, detect_with, pattern
from campaigns.bounces.message import ReturnedMessage
from campaigns.bounces.status import find_command, find_status

DIALECT = Dialect(
    marker=pattern(r"^\s*-+ ?Transcript of (the )?session follows|^\s*-+ ?The following "
                   r"addresses had (permanent|transient)|^The original message was received at"),
    delayed=pattern(r"Warning: (could not send message|message still undelivered)|"
                    r"THIS IS A WARNING MESSAGE ONLY|will keep trying until|Deferred: .{0,60}"
                    r"Will keep trying"),
)
#: "550 <kijitora@example.org>... User unknown" in a transcript (sendmail 5.x lists only these)
_LINE_RE = re.compile(r"^\s*([45]\d\d) <?(" + ADDRESS_RE.pattern + r")>?\.\.\. (.*)$",
                      re.MULTILINE)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a Sendmail report, or None."""
    found = detect_with(DIALECT, message)
    if found is None:
        return None
    by_line = _transcript(message.text)
    if len(by_line) > len(found):
        return by_line
    return found


def _transcript(text: str) -> list[Finding]:
    out = []
    lines = list(_LINE_RE.finditer(text))
    for k, m in enumerate(lines):
        context = text[lines[k - 1].end() if k else 0: m.start()]
        context = re.split(r"while talking to", context, flags=re.IGNORECASE)[-1]
        diagnostic = one_line(f"{m.group(1)} {m.group(3)} {context}")
        out.append(Finding(recipient=m.group(2), diagnostic=diagnostic,
                           status=find_status(diagnostic), reply_code=int(m.group(1)),
                           command=find_command(context)))
    return dedupe(out)
