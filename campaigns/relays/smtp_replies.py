"""SMTP replies: the enhanced status code, a server's "retry after" hint, and the one
translation of a refusal into a RelayError (who refuses: our relay or the receiver)."""
from __future__ import annotations

import re
from typing import Any

from campaigns.errors import RelayConfigError, RelayError, RelayPermanentError, RelayTemporaryError

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s*")          # RFC 3463, "2.0.0 Ok"
# "451 4.7.1 Greylisted, retry after 300 seconds", "try again in 5 minutes"
_RETRY_AFTER = re.compile(r"(?:retry|try again)\s+(?:after|in)\s+(\d+)\s*"
                          r"(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b", re.I)
# Postfix: "250 2.0.0 Ok: queued as 4ZK0mR5m7Tz9sT"
_QUEUED_AS = re.compile(r"\bqueued as\s+([^\s;,]+)", re.I)
# Our relay refusing to relay for us, not the recipient's domain refusing the recipient:
#   Postfix  "554 5.7.1 <x@y>: Relay access denied"      Sendmail "550 5.7.1 <x@y>... Relaying denied"
#   Exim     "550 relay not permitted"                   Exchange "550 5.7.54 Unable to relay recipient"
#   qmail    "553 sorry, that domain isn't in my list of allowed rcpthosts"
# (Not a bare "relay": Postfix says "550 5.1.1 <x@y>: User unknown in relay recipient table".)
_RELAY_DENIED = re.compile(r"relay(?:ing)?\s+(?:access\s+)?(?:denied|not\s+(?:permitted|allowed))"
                           r"|not\s+permitted\s+to\s+relay|unable\s+to\s+relay|allowed\s+rcpthosts",
                           re.I)
_AUTH_TEXT = re.compile(r"authenticat|credentials|\bauth\b", re.I)
_AUTH_ENHANCED = re.compile(r"5\.7\.[0-8]")
_AUTH_CODES = frozenset({530, 534, 535, 538})   # auth required / too weak / failed / needs TLS


def parse_reply(msg: bytes | str) -> tuple[str | None, str]:
    """Split a reply text (smtplib joins lines with LF) into its enhanced status code and
    one line of text without it: b"2.0.0 Ok: queued" -> ("2.0.0", "Ok: queued")."""
    raw = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
    enhanced: str | None = None
    parts = []
    for line in raw.splitlines():
        m = _ENHANCED.match(line)
        if m:
            enhanced = enhanced or m.group(1)
            line = line[m.end():]
        if line.strip():
            parts.append(line.strip())
    return enhanced, " ".join(parts)


def queued_as(text: str) -> str | None:
    """The relay's queue id in an accepting reply ("Ok: queued as 4ZK0mR5m7Tz9sT")."""
    m = _QUEUED_AS.search(text)
    return m.group(1) if m else None


def retry_after_s(text: str) -> float | None:
    """The server's "retry after N seconds/minutes/hours" hint, in seconds."""
    m = _RETRY_AFTER.search(text)
    if not m:
        return None
    unit = m.group(2).lower()
    return float(m.group(1)) * (3600 if unit.startswith("h") else 60 if unit.startswith("m") else 1)


def _refuses_us(code: int, enhanced: str | None, text: str, stage: str) -> bool:
    if code in _AUTH_CODES:
        return True
    if stage == "RCPT" and code in (550, 551, 553, 554) and _RELAY_DENIED.search(text):
        return True
    return bool(enhanced and _AUTH_ENHANCED.fullmatch(enhanced) and _AUTH_TEXT.search(text))


def reply_error(code: int, msg: bytes | str, *, stage: str, subject: str,
                before_mail: bool = False) -> RelayError:
    """The error for a refusal `code msg` at `stage` ("MAIL", "RCPT", "DATA", "end of DATA"):
    RelayConfigError when our relay refuses us (any 5xx `before_mail`: greeting, EHLO, TLS;
    any 5xx to MAIL FROM: the sender address is ours, no recipient is involved yet), else
    RelayTemporaryError for 4xx and RelayPermanentError for 5xx."""
    enhanced, text = parse_reply(msg)
    reply = " ".join(p for p in (str(code), enhanced, text) if p)
    kw: dict[str, Any] = {"code": code, "enhanced": enhanced, "text": text}
    if _refuses_us(code, enhanced, text, stage) or ((before_mail or stage == "MAIL") and code >= 500):
        return RelayConfigError(f"the relay refuses us at {subject}: {reply}", **kw)
    if 400 <= code < 500:
        return RelayTemporaryError(f"{subject} deferred: {reply}", retry_after_s=retry_after_s(text), **kw)
    if 500 <= code < 600:
        return RelayPermanentError(f"{subject} refused: {reply}", **kw)
    return RelayTemporaryError(f"{subject}: unexpected reply {reply}", **kw)
