"""parse_bounce: a returned message in, one BounceReport per recipient out."""
from __future__ import annotations

import re

from campaigns.bounces.classify import Evidence, classify
from campaigns.bounces.detectors import DETECTORS, SELF_CONTAINED, dsn, generic
from campaigns.bounces.detectors.base import Finding
from campaigns.bounces.message import ReturnedMessage
from campaigns.bounces.model import BounceCategory, BounceReport
from campaigns.bounces.status import find_command
from campaigns.headers import DELIVERY_HEADER

_LETTERS_RE = re.compile(r"[A-Za-z]{3,}")
_MULTILINE_RE = re.compile(r"^\s*([245]\d\d)-")
_DELAY_RE = re.compile(r"\(delay\)|delayed mail|delivery delayed|still being retried|"
                       r"warning: (message|could not send)|will (continue|keep) trying|"
                       r"not yet been delivered|delivery (is )?delayed", re.IGNORECASE)


#: The postmark line that starts each message of an mbox file ("From MAILER-DAEMON  Thu Apr
#: 29 23:34:45 2015").
_POSTMARK_RE = re.compile(rb"^From \S+ +[A-Z][a-z]{2} [A-Z][a-z]{2} +\d", re.MULTILINE)


def parse_bounce(raw: bytes) -> list[BounceReport]:
    """Every recipient outcome a returned message states: RFC 3464 DSNs and the prose of the
    common MTAs, RFC 5965 complaints, RFC 3834 auto-replies, success and delay notices.
    An mbox file of several messages gives the reports of each in turn. An empty list when
    the message says nothing about any recipient."""
    starts = [m.start() for m in _POSTMARK_RE.finditer(raw)] if raw.startswith(b"From ") else []
    if len(starts) > 1:
        ends = starts[1:] + [len(raw)]
        return [r for a, b in zip(starts, ends) for r in _parse_one(raw[a:b])]
    return _parse_one(raw)


def _parse_one(raw: bytes) -> list[BounceReport]:
    message = ReturnedMessage(raw)
    findings = _findings(message)
    inner = message.embedded_report()
    if inner and not any(f.status for f in findings):
        wrapped = _parse_one(inner)      # a gateway wrapped the real report
        if any(r.status for r in wrapped):
            return wrapped
    headers = _original_headers(message)
    return [_report(f, message, headers) for f in findings]


def _findings(message: ReturnedMessage) -> list[Finding]:
    for name, detect in DETECTORS:
        found = detect(message)
        if not found:
            continue
        if name in SELF_CONTAINED:
            return found
        if name == "dsn":
            return _enrich(found, generic.scan(message.text, message), message.text)
        return _enrich(dsn.detect(message) or [], found, message.text) if name != "generic" \
            else found
    return []


def _enrich(dsn_found: list[Finding], text_found: list[Finding], text: str) -> list[Finding]:
    """DSN findings (authoritative recipients and codes) completed with what the prose says
    about the same recipient; the prose alone when there is no DSN."""
    if not dsn_found:
        return text_found
    by_rcpt = {(f.recipient or "").lower(): f for f in text_found}
    for f in dsn_found:
        f.diagnostic = _whole_reply(f.diagnostic, text)
        prose = by_rcpt.get((f.recipient or "").lower())
        if prose is None and len(dsn_found) == 1 and len(text_found) == 1:
            prose = text_found[0]
        if prose is None:
            continue
        if f.said_in_status or not _LETTERS_RE.search(f.diagnostic or ""):
            f.diagnostic = prose.diagnostic
        f.status = f.status or prose.status
        f.reply_code = f.reply_code or prose.reply_code
        f.hint = f.hint or prose.hint
        f.action = f.action or prose.action
        f.command = f.command or prose.command or find_command(prose.diagnostic)
    return dsn_found


def _whole_reply(first: str, prose: str) -> str:
    """The DSN's diagnostic, or the whole multi-line reply when the DSN kept only its first
    line ("552-5.7.0 This message was blocked because its content presents a potential") and
    the prose transcript has the rest ("552-5.7.0 security issue. ...")."""
    m = _MULTILINE_RE.match(first)
    if not m:
        return first
    line_re = re.compile(r"^\s*(?:<<<\s*)?" + m.group(1) + r"[- ](?:#?\d\.\d{1,3}\.\d{1,3}\s)?"
                         r"\s*(.*)$", re.MULTILINE)
    lines = [x.group(1).strip() for x in line_re.finditer(prose)]
    whole = " ".join(dict.fromkeys(line for line in lines if line))
    return f"{m.group(1)} {whole}" if len(whole) > len(first) else first


def _report(f: Finding, message: ReturnedMessage, headers: dict[str, str]) -> BounceReport:
    action = f.action
    if action is None and _DELAY_RE.search(message.subject):
        action = "delayed"
    delayed = (action or "").lower() == "delayed"     # not an outcome yet, whatever its cause
    verdict = classify(Evidence(status=f.status, reply_code=f.reply_code,
                                diagnostic=f.diagnostic, action=action, hint=f.hint,
                                command=f.command, returned=True))
    return BounceReport(
        category=verdict.category, permanent=verdict.permanent, reason=verdict.reason,
        recipient=f.recipient, status=f.status, reply_code=f.reply_code,
        diagnostic=f.diagnostic or None, original_message_id=headers.get("Message-ID"),
        original_headers=headers, feedback_type=f.feedback_type,
        final=not delayed or verdict.category is BounceCategory.DELIVERED,
    )


def _original_headers(message: ReturnedMessage) -> dict[str, str]:
    """Headers of the returned original that matter to us: Message-ID (or the DSN's
    X-Original-Message-ID when only the report names it) and our delivery header."""
    out: dict[str, str] = {}
    for name in ("Message-ID", DELIVERY_HEADER, "To", "From", "Subject", "Date"):
        value = message.original_header(name)
        if value:
            out[name] = value
    if "Message-ID" not in out:
        for group in message.fields:
            value = group.get("x-original-message-id") or group.get("original-message-id")
            if value:
                out["Message-ID"] = value.split("\n")[0].strip()
                break
    return out
