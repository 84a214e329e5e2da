"""Receiver-specific rules: the documented labels large mailbox providers put in their replies.

One module per provider; each `find(text)` returns a reason or None. A provider's own token
or code table is more precise than generic prose, so these run before the text rules."""
from __future__ import annotations

from typing import Callable

from campaigns.bounces.receivers import google, isps, microsoft, orange, yahoo

#: (provider, find) in the order tried.
RECEIVERS: tuple[tuple[str, Callable[[str], "str | None"]], ...] = (
    ("google", google.find),
    ("microsoft", microsoft.find),
    ("yahoo", yahoo.find),
    ("orange", orange.find),
    ("isps", isps.find),
)


def find_receiver(text: str) -> tuple[str, str] | None:
    """(provider, reason) that a provider's own label gives, or None."""
    for name, find in RECEIVERS:
        reason = find(text)
        if reason:
            return name, reason
    return None
