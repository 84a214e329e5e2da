"""Yahoo! Mail (and Yahoo Japan):

    Sorry, we were unable to deliver your message to the following address.
    <kijitora@example.ed.jp>:
    Remote host said: 550 5.2.2 <kijitora@example.ed.jp>... Mailbox Full [RCPT_TO]
"""
from __future__ import annotations

from campaigns.bounces.detectors.base import Finding
from campaigns.bounces.detectors.prose import Dialect, detect_with, pattern
from campaigns.bounces.message import ReturnedMessage

DIALECT = Dialect(
    marker=pattern(r"Sorry, we were unable to deliver your message to the following"),
    start=pattern(r"to the following address(es)?\.?$"),
    end=pattern(r"^--- Below this line is a copy"),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a Yahoo report, or None."""
    return detect_with(DIALECT, message)
