"""RFC 5965 abuse reports (feedback loops): one complaint per reported recipient.

    Content-Type: message/feedback-report

    Feedback-Type: abuse
    User-Agent: SomeGenerator/1.0
    Original-Rcpt-To: <kijitora@example.com>
"""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import ADDRESS_RE, Finding, find_address
from campaigns.bounces.message import ReturnedMessage, parse_fields

_REPORT_TYPE_RE = re.compile(r"report-type\s*=\s*\"?feedback-report", re.IGNORECASE)
_INLINE_RE = re.compile(r"^Feedback-Type:\s*\S+", re.IGNORECASE | re.MULTILINE)
#: Non-standard loops (Hotmail JMRP, old AOL, Yahoo) say it in the subject or body.
_PROSE_RE = re.compile(r"complaint about (a )?message from|this is an? (e-?mail )?abuse report|"
                       r"email feedback report|abuse report for|scomp|"
                       r"this is a spam report|feedback loop", re.IGNORECASE)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Complaints found in the message, or None when it is not an abuse report."""
    fields = _feedback_fields(message)
    if fields is None:
        return None
    kind = (fields.get("feedback-type", "abuse").split() or ["abuse"])[0].lower()
    recipients: list[str | None] = list(_recipients(fields, message)) or [None]
    return [Finding(recipient=r, diagnostic="", hint="feedback", feedback_type=kind)
            for r in recipients]


def _feedback_fields(message: ReturnedMessage) -> dict[str, str] | None:
    ctype = message.msg.get("Content-Type", "")
    for group in message.fields:
        if "feedback-type" in group:
            return _merged(message.fields)
    if _REPORT_TYPE_RE.search(ctype) or _INLINE_RE.search(message.full_text):
        return _merged(parse_fields(message.full_text))
    if (_PROSE_RE.search(message.subject) and message.original) or _hotmail(message):
        return {}
    return None


def _hotmail(message: ReturnedMessage) -> bool:
    """Outlook.com / Hotmail JMRP reports: the reported message comes back with the
    complainer in X-HmXmrOriginalRecipient (Microsoft JMRP documentation)."""
    return bool(message.original_header("X-HmXmrOriginalRecipient")
                or message.header("X-HmXmrOriginalRecipient"))


def _merged(groups: list[dict[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for group in groups:
        for key, value in group.items():
            out[key] = f"{out[key]}\n{value}" if key in out else value
    return out


def _recipients(fields: dict[str, str], message: ReturnedMessage) -> list[str]:
    for key in ("original-rcpt-to", "removal-recipient"):
        found = [a.strip(".") for a in ADDRESS_RE.findall(fields.get(key, ""))]
        if found:
            return list(dict.fromkeys(found))
    hotmail = message.original_header("X-HmXmrOriginalRecipient") or \
        message.header("X-HmXmrOriginalRecipient")
    to = find_address(hotmail) or find_address(message.original_header("To"))
    return [to] if to else []
