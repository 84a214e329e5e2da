"""Yahoo, AOL and Verizon Media (https://senders.yahooinc.com/smtp-error-codes).

    421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume
        or user complaints
    554 delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0]
"""
from __future__ import annotations

from campaigns.bounces.rules import match_text, rules

_RULES = rules(
    # [TS01]-[TS03], [TSS04]-[TSS11]: "deferred due to user complaints", "... unexpected
    # volume or user complaints", "will be permanently deferred": the sender's reputation.
    (r"\[TSS?\d\d\]", "badreputation"),
    # [GL01] "Message from 192.0.2.1 temporarily deferred": volume only.
    (r"\[GL01\]", "speeding"),
    (r"delivery error: dd (this user doesn't have|requested mail ?box not found|not a valid "
     r"recipient)", "userunknown"),
    (r"delivery error: dd .{0,60}(disabled|discontinued)", "suspend"),
    (r"delivery error: dd .{0,60}(over quota|full)", "mailboxfull"),
    (r"not accepted for policy reasons", "policyviolation"),
    (r"\[(BL21|BL22|BL23|RL0)\]", "blocked"),
)


def find(text: str) -> str | None:
    """The reason Yahoo's bracketed codes or "dd" messages give."""
    return match_text(text, _RULES)
