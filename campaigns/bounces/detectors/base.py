"""What a detector returns, and the helpers every dialect shares."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from campaigns.bounces.message import ReturnedMessage

ADDRESS_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
    r"[A-Za-z0-9-]*[A-Za-z]"
)
_ROBOT_RE = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon|double-bounce|"
                       r"no-?reply|bounce[s]?|root)(@|$)", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s+")


@dataclass
class Finding:
    """One recipient as a detector read it, before classification."""

    recipient: str | None
    diagnostic: str = ""
    status: str | None = None
    reply_code: int | None = None
    action: str | None = None
    hint: str | None = None           # a reason the dialect itself states
    command: str | None = None        # SMTP command answered (RCPT, DATA, ...) when stated
    feedback_type: str | None = None
    said_in_status: bool = False      # the diagnostic is only the comment of a Status field


#: A detector reads a returned message and gives its findings, or None when the message is
#: not in its dialect (so the next detector is tried).
Detector = Callable[[ReturnedMessage], "list[Finding] | None"]


def one_line(text: str | None) -> str:
    """`text` with every run of white space made one space."""
    return _SPACE_RE.sub(" ", text or "").strip()


def find_address(text: str | None) -> str | None:
    """The first e-mail address in `text`, without brackets or a trailing dot."""
    m = ADDRESS_RE.search(text or "")
    return m.group(0).strip(".") if m else None


def is_robot(address: str) -> bool:
    """True for mailer-daemon, postmaster and similar addresses that are never a recipient."""
    return bool(_ROBOT_RE.match(address))


def sender_addresses(message: ReturnedMessage) -> set[str]:
    """Lower-cased addresses that belong to us (the sender) and never to a failed recipient:
    the bounce's To, the original's From, Return-Path and Sender."""
    found: set[str] = set()
    values = [message.header("To"), message.header("Delivered-To")]
    values += [message.original_header(n) or "" for n in ("From", "Return-Path", "Sender")]
    for value in values:
        found.update(a.lower() for a in ADDRESS_RE.findall(value))
    return found


def failed_recipients_header(message: ReturnedMessage) -> list[str]:
    """Addresses of the X-Failed-Recipients header (Exim, Google), in order."""
    return [a.strip(".") for a in ADDRESS_RE.findall(message.header("X-Failed-Recipients"))]


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Findings with one entry per recipient (the first one wins)."""
    seen: set[str] = set()
    out = []
    for f in findings:
        key = (f.recipient or "").lower()
        if key and key in seen:
            continue
        seen.add(key)
        out.append(f)
    return out


def first_reason(text: str, table: "Iterable[tuple[re.Pattern[str], str]]") -> str | None:
    """The reason of the first (pattern, reason) pair whose pattern occurs in `text`."""
    for pattern, reason in table:
        if pattern.search(text):
            return reason
    return None


def compile_table(*pairs: tuple[str, str]) -> tuple[tuple["re.Pattern[str]", str], ...]:
    """(pattern, reason) pairs compiled case-insensitively."""
    return tuple((re.compile(p, re.IGNORECASE), r) for p, r in pairs)


def section(text: str, start: "re.Pattern[str]", end: "re.Pattern[str] | None" = None) -> str:
    """The part of `text` after the first match of `start` (up to `end` when given); ""
    when `start` does not occur."""
    m = start.search(text)
    if not m:
        return ""
    rest = text[m.end():]
    stop = end.search(rest) if end else None
    return rest[: stop.start()] if stop else rest
