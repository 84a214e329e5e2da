"""RFC 3463 enhanced status codes and SMTP reply codes: finding them in text and what each
one means when nothing more specific was said."""
from __future__ import annotations

import re

_STATUS_RE = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_CODE_BEFORE_STATUS_RE = re.compile(r"(?<![\w.])([245]\d\d)[ -]+#?[245]\.\d{1,3}\.\d{1,3}(?!\.?\d)")
_CODE_LEADING_RE = re.compile(
    r"(?:^|said:|said|reply:|replied:|error:|smtp;|response:|answer:|[:;>\]\)])\s*"
    r"\(?([245][0-5]\d)(?:[ ,-]|\)|$)",
    re.IGNORECASE | re.MULTILINE,
)

#: X.3.0 ("other or undefined mail system status") is as generic as X.0.0: not listed.
#: Exact codes whose meaning differs from their class and subject (RFC 3463, RFC 7372,
#: RFC 7505, RFC 8601 and the large providers' published sub-codes).
_EXACT: dict[str, str] = {
    "1.0": "userunknown", "1.1": "userunknown", "1.2": "hostunknown", "1.3": "userunknown",
    "1.4": "filtered", "1.5": "delivered", "1.6": "hasmoved", "1.7": "rejected",
    "1.8": "rejected", "1.9": "systemerror", "1.10": "notaccept", "1.351": "userunknown",
    "2.0": "filtered", "2.1": "filtered", "2.2": "mailboxfull", "2.3": "exceedlimit",
    "2.4": "filtered",
    "3.1": "systemfull", "3.2": "notaccept", "3.3": "systemerror",
    "3.4": "mesgtoobig", "3.5": "systemerror",
    "4.0": "networkerror", "4.2": "networkerror", "4.3": "systemerror",
    "4.4": "hostunknown", "4.5": "toomanyconn", "4.6": "networkerror", "4.7": "expired",
    "4.8": "networkerror", "4.312": "networkerror", "4.316": "expired",
    "5.0": "syntaxerror", "5.1": "syntaxerror", "5.2": "syntaxerror", "5.3": "toomanyconn",
    "5.4": "systemerror", "5.5": "systemerror", "5.6": "securityerror",
    "6.0": "contenterror",
    "7.0": "policyviolation", "7.1": "blocked", "7.2": "filtered", "7.3": "policyviolation",
    "7.4": "policyviolation", "7.5": "policyviolation", "7.6": "policyviolation",
    "7.7": "policyviolation", "7.8": "securityerror", "7.9": "securityerror",
    "7.10": "failedstarttls", "7.11": "securityerror", "7.12": "securityerror",
    "7.13": "suspend", "7.14": "securityerror", "7.15": "policyviolation",
    "7.16": "mesgtoobig", "7.17": "hasmoved", "7.18": "hasmoved", "7.19": "policyviolation",
    "7.20": "authfailure", "7.21": "authfailure", "7.22": "authfailure", "7.23": "authfailure",
    "7.24": "authfailure", "7.25": "requireptr", "7.26": "authfailure",
    "7.27": "rejected", "7.28": "speeding", "7.29": "authfailure", "7.30": "failedstarttls",
    # Microsoft 365: 5.7.509-5.7.515 DMARC/authentication, 5.7.606-5.7.649 banned IP ranges,
    # 4.7.650-4.7.651 rate limiting for IP reputation (block: reputation beats volume).
    "7.509": "authfailure", "7.510": "authfailure", "7.515": "authfailure",
    "7.650": "badreputation", "7.651": "badreputation",
}

#: Whole codes whose class changes the meaning: a 4.4.1 ("no answer from host") or 4.4.7 is
#: what an MTA writes when it gives up after retrying for days.
_FULL: dict[str, str] = {"4.4.1": "expired", "4.4.7": "expired", "5.4.7": "expired",
                         "4.2.1": "suspend", "4.4.4": "networkerror", "4.4.5": "toomanyconn"}

def find_status(text: str | None) -> str | None:
    """The first RFC 3463 enhanced status code in `text` ("5.1.1"), or None. A failure code
    (4.x.x, 5.x.x) wins over an earlier success code of a session transcript."""
    if not text:
        return None
    found = [f"{m.group(1)}.{m.group(2)}.{m.group(3)}" for m in _STATUS_RE.finditer(text)]
    failures = [s for s in found if s[0] != "2"]
    return (failures or found)[0] if found else None


def find_reply_code(text: str | None) -> int | None:
    """The SMTP reply code a server gave in `text` ("550 5.1.1 ..." -> 550), or None."""
    if not text:
        return None
    for pattern in (_CODE_BEFORE_STATUS_RE, _CODE_LEADING_RE):
        codes = [int(m.group(1)) for m in pattern.finditer(text)]
        failures = [c for c in codes if c >= 400]
        if failures or codes:
            return (failures or codes)[0]
    return None


def reason_of_status(status: str | None) -> str | None:
    """What an enhanced status code says on its own, or None for the undecided ones
    (X.0.0, codes no standard names, the pseudo codes X.0.9xx some tools write)."""
    if not status:
        return None
    parts = status.split(".")
    if len(parts) != 3 or parts[0] not in "245" or not parts[0]:
        return None
    if parts[0] == "2":
        return "delivered"
    if status in _FULL:
        return _FULL[status]
    subject, detail = parts[1], parts[2]
    if subject == "0":
        return None
    exact = _EXACT.get(f"{subject}.{detail}")
    if exact:
        return exact
    if subject == "7" and detail.isdigit() and 600 <= int(detail) <= 649:
        return "blocked"          # Microsoft: "Access denied, banned sending IP"
    return None


def is_specific(status: str | None) -> bool:
    """True when the code says more than its class (not X.0.0, not a pseudo code)."""
    return reason_of_status(status) is not None


def reason_of_reply_code(code: int | None) -> str:
    """The last resort: what the bare reply code says."""
    if code is None:
        return "undefined"
    if 200 <= code < 300:
        return "delivered"
    if code == 421:
        return "toomanyconn"      # service not available, closing channel: come back later
    if code == 452:
        return "systemfull"       # insufficient system storage
    if code == 552:
        return "mailboxfull"      # exceeded storage allocation
    if code in (500, 501, 502, 503, 504, 555):
        return "syntaxerror"
    if code in (530, 535, 538):
        return "securityerror"
    return "undefined"


_COMMANDS: tuple[tuple[str, str], ...] = (
    (r"in reply to (?:the )?(?:end of )?data\b|after (?:end of )?data\b|after sending "
     r"(?:the )?(?:message|data)|did not like our (?:final )?data|failed after i sent the "
     r"message|>>> data\b|\[data\]|\bend of data\b", "DATA"),
    (r"in reply to (?:the )?rcpt\b|after rcpt\b|did not like our rcpt|>>> rcpt\b|smtp:rcpt\b|"
     r"following rcpt command|"
     r"\[rcpt_to\]|does not like recipient|rcpt to:?\s*<[^>]*>\s*:?\s*$", "RCPT"),
    (r"in reply to (?:the )?mail\b|after mail from|did not like our mail|>>> mail from|"
     r"\[mail_from\]|sender was rejected|in reply to mail from", "MAIL"),
    (r"in reply to (?:the )?(?:ehlo|helo)\b|after (?:ehlo|helo)\b|did not like our (?:ehlo|helo)|"
     r"my name was rejected|performing the (?:ehlo|helo)", "HELO"),
    (r"after initial connection|greeting|banner|while connecting|connection refused by",
     "CONN"),
)
_COMMAND_RES = tuple((re.compile(p, re.IGNORECASE | re.MULTILINE), c) for p, c in _COMMANDS)


def find_command(text: str | None) -> str | None:
    """The SMTP command a reply answered, as the diagnostic says it ("in reply to RCPT TO
    command", "after end of data", ">>> DATA"): CONN, HELO, MAIL, RCPT, DATA or None."""
    if not text:
        return None
    for pattern, command in _COMMAND_RES:
        if pattern.search(text):
            return command
    return None
