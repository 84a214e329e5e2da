"""Shared by the MTA dialects whose prose names each recipient then its error: recognise the
dialect by a marker, scan the report section between two markers with the generic scanner,
then let the dialect add what its wording implies (the SMTP command, a delay)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from campaigns.bounces.detectors import generic
from campaigns.bounces.detectors.base import Finding, compile_table, first_reason
from campaigns.bounces.message import ReturnedMessage


@dataclass(frozen=True)
class Dialect:
    """How one MTA writes its report."""

    marker: "re.Pattern[str]"                 # recognises the dialect in the report text
    start: "re.Pattern[str] | None" = None    # the per-recipient part starts after this
    end: "re.Pattern[str] | None" = None      # ... and ends before this
    delayed: "re.Pattern[str] | None" = None  # the report is a delay warning, not a bounce
    hints: tuple[tuple["re.Pattern[str]", str], ...] = ()   # dialect wording -> reason


def detect_with(dialect: Dialect, message: ReturnedMessage) -> list[Finding] | None:
    """Findings for `message` read as `dialect`, or None when it is not that dialect."""
    text = message.text
    if not dialect.marker.search(text) and not dialect.marker.search(message.subject):
        return None
    region = text
    if dialect.start:
        m = dialect.start.search(text)
        region = text[m.end():] if m else text
    if dialect.end:
        m = dialect.end.search(region)
        region = region[: m.start()] if m else region
    found = generic.scan(region, message) or generic.scan(text, message)
    delayed = bool(dialect.delayed and (dialect.delayed.search(text)
                                        or dialect.delayed.search(message.subject)))
    for f in found:
        f.hint = f.hint or first_reason(f.diagnostic, dialect.hints)
        if delayed and f.action is None:
            f.action = "delayed"
    return found or None


def pattern(text: str) -> "re.Pattern[str]":
    """A case-insensitive, multi-line pattern."""
    return re.compile(text, re.IGNORECASE | re.MULTILINE)


__all__ = ["Dialect", "compile_table", "detect_with", "pattern"]
