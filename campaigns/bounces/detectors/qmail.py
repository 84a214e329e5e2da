"""qmail and its descendants (netqmail, vpopmail, Yahoo's old MTA):

    Hi. This is the qmail-send program at nijo.example.jp.
    <kijitora@example.org>:
    Connected to 192.0.2.225 but sender was rejected.
    Remote host said: 550 5.7.1 <root@nijo.example.jp>... Access denied
"""
from __future__ import annotations

from campaigns.bounces.detectors.base import Finding
from campaigns.bounces.detectors.prose import Dialect, compile_table, detect_with, pattern
from campaigns.bounces.message import ReturnedMessage

DIALECT = Dialect(
    marker=pattern(r"This is the qmail-send program|qmail-send|^Hi\. This is the qmail"),
    start=pattern(r"(following addresses|following address)[^\n]*$"),
    end=pattern(r"^--- Below this line is a copy|^--- Enclosed are the original headers"),
    hints=compile_table(
        (r"sorry, i couldn't find any host (named|by that name)|couldn't find a mail "
         r"exchanger", "hostunknown"),
        (r"vdelivermail: (account is locked|user is over quota)", "suspend"),
        (r"this message is looping|mail loop", "networkerror"),
    ),
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a qmail report, or None."""
    return detect_with(DIALECT, message)
