"""Zoho Mail: Exim's opening sentence, then one line per recipient with the remote reply in
"ERROR_CODE" fields, then the original headers with no separator:

    This message was created automatically by mail delivery software.
    A message that you sent could not be delivered to one or more of its recipients. This is
    a permanent error.
    kijitora@example.co.jp Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1 <...> User Unknown
    kijitora@7jo.example.jp Error, ERROR_CODE :421, ERROR_CODE :, Host not reachable.
    Received:from mail.zoho.com by mx.zohomail.com
"""
from __future__ import annotations

from campaigns.bounces.detectors.base import Finding
from campaigns.bounces.detectors.prose import Dialect, compile_table, detect_with, pattern
from campaigns.bounces.message import ReturnedMessage

DIALECT = Dialect(
    marker=pattern(r"\bERROR_CODE :\s*[245]\d\d\b"),
    start=pattern(r"could not be delivered to one or more of its\s+recipients[^\n]*$"),
    end=pattern(r"^Received:\s*from "),
    hints=compile_table(
        # a temporary (4xx) connection failure in a permanent-error report: Zoho retried
        # until it gave up
        (r"ERROR_CODE :\s*4\d\d\b.{0,40}(host not reachable|unreachable|timed out|"
         r"connection refused)", "expired"),
    ),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a Zoho report, or None."""
    return detect_with(DIALECT, message)
