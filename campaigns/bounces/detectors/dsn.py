"""RFC 3464 delivery status notifications: the message/delivery-status part (or the same
fields written into a text part by MTAs that do not build a MIME report)."""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import Finding, find_address, one_line
from campaigns.bounces.message import ReturnedMessage, parse_fields
from campaigns.bounces.status import find_command, find_reply_code, find_status

_TYPE_RE = re.compile(r"^\s*(smtp|x-[\w-]+|rfc822|dns|x400|unix)\s*;\s*", re.IGNORECASE)
_COMMENT_RE = re.compile(r"\d\.\d{1,3}\.\d{1,3}\s*\((.+)\)\s*$", re.DOTALL)
#: Status comments that only repeat the class ("5.0.0 (permanent failure)").
_BARE_CLASS_RE = re.compile(r"^\s*(permanent|persistent transient|transient|temporary)"
                            r"( failure| error)?\s*$", re.IGNORECASE)
#: "X-Unix; 71" or "x-unix; temporary failure": a local delivery program's exit status as
#: Postfix pipe(8) and local(8) report it (EX_TEMPFAIL is "temporary failure").
_UNIX_EXIT_RE = re.compile(r"^\s*x-unix\s*;\s*(\d*|(temporary|permanent) failure\.?)\s*$",
                           re.IGNORECASE)
_INLINE_RE = re.compile(r"^(final-recipient|original-recipient)\s*:", re.IGNORECASE | re.MULTILINE)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """One finding per recipient group of the DSN, in order; None when there is none."""
    groups = message.fields
    if not any(_recipient(g) for g in groups) and _INLINE_RE.search(message.full_text):
        groups = parse_fields(message.full_text)
    found = [_finding(g) for g in groups if _recipient(g)]
    return found or None


def _recipient(group: dict[str, str]) -> str | None:
    for key in ("final-recipient", "original-recipient", "x-actual-recipient"):
        address = find_address(group.get(key, "").split("\n")[0])
        if address:
            return address
    return None


def _finding(group: dict[str, str]) -> Finding:
    code = group.get("diagnostic-code", "")
    diagnostic = one_line(_TYPE_RE.sub("", code))
    status = find_status(group.get("status", "")) or find_status(diagnostic)
    if not diagnostic:
        # "Status: 4.4.7 (unable to deliver this message after 1 day)": the comment is the
        # only reason some MTAs give (Sun/Oracle Messaging Server, old sendmail)
        m = _COMMENT_RE.search(group.get("status", ""))
        diagnostic = one_line(m.group(1)) if m and not _BARE_CLASS_RE.match(m.group(1)) else ""
    words = group.get("action", "").split()
    action = words[0] if words else None
    return Finding(
        said_in_status=bool(diagnostic) and not code,
        recipient=_recipient(group),
        diagnostic=diagnostic,
        status=status,
        reply_code=find_reply_code(diagnostic),
        command=find_command(diagnostic),
        action=action.lower().strip(";,.") if action else None,
        # "Diagnostic-Code: X-Unix; 71": the exit code of a local delivery program
        hint="mailererror" if _UNIX_EXIT_RE.match(code) else None,
    )
