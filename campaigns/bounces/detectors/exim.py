"""Exim: "This message was created automatically by mail delivery software." then each
failed address indented, its error indented further:

      kijitora@example.jp
        SMTP error from remote mail server after RCPT TO:<kijitora@example.jp>:
        host mx.example.jp [192.0.2.153]: 550 5.1.1 <kijitora@example.jp>... User Unknown
"""
from __future__ import annotations

from campaigns.bounces.detectors.base import Finding
from campaigns.bounces.detectors.prose import Dialect, compile_table, detect_with, pattern
from campaigns.bounces.message import ReturnedMessage

DIALECT = Dialect(
    marker=pattern(r"created automatically by mail delivery software|^Mail delivery failed"),
    start=pattern(r"(following address(\(es\)|es)? failed|could not be delivered to one or more"
                  r" of its\s+recipients)[^\n]*$"),
    end=pattern(r"^-+ This is a copy of|^-+ The body of the message"),
    delayed=pattern(r"^Mail delivery delayed|has not yet been delivered|Warning: message "
                    r"\S+ delayed"),
    hints=compile_table(
        (r"retry time not reached for any host|all hosts have been failing", "expired"),
        (r"pipe to \||\(generated from .{0,80}\) Child process|return code", "mailererror"),
        (r"unrouteable address|unroutable address", "hostunknown"),
        (r"too many \"?received\"? headers", "networkerror"),
    ),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of an Exim report, or None."""
    return detect_with(DIALECT, message)
