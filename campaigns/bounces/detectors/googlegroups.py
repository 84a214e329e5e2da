"""Google Groups: a post refused by a group ("the group you tried to contact may not exist,
or you may not have permission to post"). The text is localised; the headers are not:

    From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
    X-Failed-Recipients: libsisimai@googlegroups.com
"""
from __future__ import annotations

from campaigns.bounces.detectors.base import Finding, failed_recipients_header, one_line
from campaigns.bounces.message import ReturnedMessage
from campaigns.bounces.status import find_status


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """One "rejected" finding per group named in X-Failed-Recipients, or None."""
    groups = [a for a in failed_recipients_header(message)
              if a.lower().endswith("googlegroups.com")]
    if not groups or "google" not in message.sender.lower() or message.fields \
            or find_status(message.text):
        return None       # a Gmail bounce for a group address, not the group refusing a post
    diagnostic = one_line(message.text)[:500]
    return [Finding(recipient=g, diagnostic=diagnostic, hint="rejected") for g in groups]
