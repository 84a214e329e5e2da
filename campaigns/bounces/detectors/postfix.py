"""Postfix: "This is the mail system at host ..." then one paragraph per recipient:

    <kijitora@example.co.jp>: host mx01.example.co.jp[192.0.2.8] said: 550 5.1.1
        Address rejected (in reply to RCPT TO command)
"""
from __future__ import annotations

from campaigns.bounces.detectors.base import Finding
from campaigns.bounces.detectors.prose import Dialect, compile_table, detect_with, pattern
from campaigns.bounces.message import ReturnedMessage

DIALECT = Dialect(
    marker=pattern(r"^This is the (mail system|Postfix program) at host"),
    start=pattern(r"^\s*The (mail system|Postfix program)\s*$|delete your own text from the "
                  r"(attached returned )?message|message returned below\.?$"),
    delayed=pattern(r"^#?\s*THIS IS A WARNING ONLY|Delayed Mail \(still being retried\)"),
    hints=compile_table(
        (r"\bpermission denied\b.{0,40}(pipe|command|spool)|command died with status|"
         r"procmail:", "mailererror"),
    ),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a Postfix report, or None."""
    return detect_with(DIALECT, message)
