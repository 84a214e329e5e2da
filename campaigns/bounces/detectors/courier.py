"""Courier MTA:

    This is a delivery status notification from marutamachi.example.org,
    running the Courier mail server, version 0.65.2.
    <kijitora@example.co.jp>: 550 5.1.1 <kijitora@example.co.jp>... User Unknown
"""
from __future__ import annotations

from campaigns.bounces.detectors.base import Finding
from campaigns.bounces.detectors.prose import Dialect, detect_with, pattern
from campaigns.bounces.message import ReturnedMessage

DIALECT = Dialect(
    marker=pattern(r"running the Courier mail server|Courier mail server at"),
    start=pattern(r"(could not be delivered to the following|following recipients?)[^\n]*$"),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a Courier report, or None."""
    return detect_with(DIALECT, message)
