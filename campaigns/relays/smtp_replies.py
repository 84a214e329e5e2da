"""SMTP replies: the enhanced status code, a server's "retry after" hint, and the one
translation of a refusal into a RelayError (who refuses: our relay or the receiver)."""
from __future__ import annotations

import re
from typing import Any

from campaigns.bounces.replies import relay_account
from campaigns.errors import RelayConfigError, RelayError, RelayPermanentError, RelayTemporaryError

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s*")          # RFC 3463, "2.0.0 Ok"
# "451 4.7.1 Greylisted, retry after 300 seconds", "try again in 5 minutes"
_RETRY_AFTER = re.compile(r"(?:retry|try again)\s+(?:after|in)\s+(\d+)\s*"
                          r"(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b", re.I)
# Postfix: "250 2.0.0 Ok: queued as 4ZK0mR5m7Tz9sT"
_QUEUED_AS = re.compile(r"\bqueued as\s+([^\s;,]+)", re.I)


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


def reply_error(code: int, msg: bytes | str, *, stage: str, subject: str,
                before_mail: bool = False) -> RelayError:
    """The error for a refusal `code msg` at `stage` ("MAIL", "RCPT", "DATA", "end of DATA"):
    RelayConfigError when our relay refuses us (any 5xx `before_mail`: greeting, EHLO, TLS;
    any 5xx to MAIL FROM: the sender address is ours, no recipient is involved yet; a 5xx
    whose words are the bounce classifier's "our relay or account refuses us",
    campaigns.bounces.replies.relay_account: AUTH required or failed, relaying denied), else
    RelayTemporaryError for 4xx and RelayPermanentError for 5xx. The reply itself is
    classified once, by campaigns.delivery.sending."""
    enhanced, text = parse_reply(msg)
    reply = " ".join(p for p in (str(code), enhanced, text) if p)
    kw: dict[str, Any] = {"code": code, "enhanced": enhanced, "text": text}
    if code >= 500 and (before_mail or stage == "MAIL"
                        or relay_account(code, enhanced, " ".join(text.split()))):
        return RelayConfigError(f"the relay refuses us at {subject}: {reply}", **kw)
    if 400 <= code < 500:
        return RelayTemporaryError(f"{subject} deferred: {reply}", retry_after_s=retry_after_s(text), **kw)
    if 500 <= code < 600:
        return RelayPermanentError(f"{subject} refused: {reply}", **kw)
    return RelayTemporaryError(f"{subject}: unexpected reply {reply}", **kw)
