"""The fallback for bounces written in prose: find the lines that name a failed recipient
and take the text that follows each as its diagnostic.

Most MTAs write the same shape - an address alone or leading a line, then the error:

    <kijitora@example.jp>: host mx.example.jp[192.0.2.8] said: 550 5.1.1 User unknown
      kijitora@example.jp
        SMTP error from remote mail server after RCPT TO:<kijitora@example.jp>: 550 ...
"""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import (ADDRESS_RE, Finding, dedupe,
                                              failed_recipients_header, find_address, is_robot,
                                              one_line, sender_addresses)
from campaigns.bounces.message import ReturnedMessage
from campaigns.bounces.status import find_command, find_reply_code, find_status

_LEAD_RE = re.compile(r"^\s*(?:[-*]\s+|\d+\.\s+)?[<\"'(\[]?(?:mailto:)?(" + ADDRESS_RE.pattern +
                      r")[>\"')\]]?\s*(?P<rest>.*)$")
_WORDS_RE = re.compile(r"[^\W\d_]{3,}")
_NOT_ADDR = r"(?<![\w.!#$%&'*+/=?^`{|}~-])"
#: Phrases that introduce the failed recipient inside a sentence.
_PHRASE_RE = re.compile(
    r"\b(?:deliver(?:ing|y)? (?:your (?:mail|message) )?to|could not be delivered to|"
    r"unable to deliver (?:your message )?to|failed (?:recipient|address)|"
    r"(?:unknown|invalid|bad) (?:user|recipient|address)|recipient|rcpt to|mailbox|address"
    r"|user)\s*:?\s*[<\"(\[]?" + _NOT_ADDR + "(" + ADDRESS_RE.pattern +
    r")[>\")\]]?\s*(?P<rest>.*)$",
    re.IGNORECASE,
)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings from the prose of any bounce; None when no recipient can be named."""
    return scan(message.text, message) or None


def scan(text: str, message: ReturnedMessage) -> list[Finding]:
    """Recipients named in `text` with the text that follows each one."""
    ours = sender_addresses(message)
    wanted = failed_recipients_header(message)
    anchors = _anchors(text.split("\n"), ours, {a.lower() for a in wanted})
    findings = [_make(address, diag) for address, diag in anchors]
    if wanted:
        named = {f.recipient.lower() for f in findings if f.recipient}
        allowed = {w.lower() for w in wanted}
        findings = [f for f in findings if (f.recipient or "").lower() in allowed]
        findings += [_make(a, text) for a in wanted if a.lower() not in named]
    if not findings:
        address = _any_address(text, ours) or find_address(message.original_header("To"))
        if address:
            findings = [_make(address, text)]
    return dedupe(findings)


def _anchors(lines: list[str], ours: set[str], wanted: set[str]) -> list[tuple[str, str]]:
    """(recipient, block of text about it) for every line that names a recipient; our own
    addresses only when nobody else is named, robots only inside a phrase."""
    marks: list[tuple[int, str, str]] = []
    for i, line in enumerate(lines):
        m = _LEAD_RE.match(line) or _PHRASE_RE.search(line)
        if not m:
            continue
        address = m.group(1).strip(".")
        low = address.lower()
        if (wanted and low not in wanted) or (is_robot(address) and m.re is _LEAD_RE):
            continue
        marks.append((i, address, line.strip()))
    if any(a.lower() not in ours for _, a, _ in marks):
        marks = [m for m in marks if m[1].lower() not in ours]
    # a recipient named again inside its own block ("RCPT TO:<x>") does not start a new one
    marks = [m for k, m in enumerate(marks) if k == 0 or m[1].lower() != marks[k - 1][1].lower()]
    out = []
    for k, (i, address, first) in enumerate(marks):
        end = marks[k + 1][0] if k + 1 < len(marks) else len(lines)
        block = "\n".join([first, *lines[i + 1:end]])
        if len(marks) == 1 and not _WORDS_RE.search(ADDRESS_RE.sub("", block)):
            block = "\n".join(lines[:end])      # the reason came before the address
        out.append((address, block))
    return out


def _any_address(text: str, ours: set[str]) -> str | None:
    for m in ADDRESS_RE.finditer(text):
        address = m.group(0).strip(".")
        if address.lower() not in ours and not is_robot(address):
            return address
    return None


def _make(address: str, diagnostic: str) -> Finding:
    diag = one_line(diagnostic)
    return Finding(recipient=address, diagnostic=diag, status=find_status(diag),
                   reply_code=find_reply_code(diag), command=find_command(diag))
