"""A returned message taken apart once: its headers, the human-readable report, the
machine-readable fields (RFC 3464 DSN, RFC 5965 ARF) and the headers of the original message
we sent. Detectors read from this; none of them parses MIME itself."""
from __future__ import annotations

import email
import email.header
import email.policy
import html
import re
from email.message import Message
from email.parser import HeaderParser
from functools import cached_property

_ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers",
                   "message/rfc822-headers", "message/global-headers", "text/rfc822")
_REPORT_TYPES = ("message/delivery-status", "message/global-delivery-status",
                 "message/feedback-report")
_FIELD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*:\s?(.*)$")
#: A text that starts with the headers of a message (a returned original in a text part).
_HEADERS_RE = re.compile(r"\s*(return-path|received|dkim-signature|message-id|x-[\w-]+)\s*:"
                         r"[^\n]*\n(?:[ \t][^\n]*\n)*[\w-]+:", re.IGNORECASE)
_TAG_RE = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_BREAK_RE = re.compile(r"<\s*(br|/p|/div|/tr|/li|p|div|tr|li)\b[^>]*>", re.IGNORECASE)
_SEPARATOR_RE = re.compile(
    r"^\s*[-=_*]{2,}.*\b(copy of (the|your) message|original message|returned message|"
    r"unsent message|undelivered message|message headers|original headers|header of the "
    r"original|rejected message|returned mail|message follows|message text)|"
    r"^\s*[-=_*]*\s*(\(?original message follows|message headers follow|below is a copy of "
    r"the (original )?message|below this line is a copy of the message|your message follows|"
    r"the original message follows|original message headers|the original message headers "
    r"follow|undelivered message follows|returned message follows|here is a copy of the "
    r"first part of the message|a copy of the original message below|original message:|"
    r"-+ original message -+|original mail as follows:?|content-type: message/rfc822)",
    re.IGNORECASE | re.MULTILINE,
)


def decode_header(value: str | None) -> str:
    """A header value with RFC 2047 words decoded and folding removed."""
    if not value:
        return ""
    try:
        parts = email.header.decode_header(str(value))
        out = "".join(_to_text(b, c) if isinstance(b, bytes) else b for b, c in parts)
    except Exception:  # noqa: BLE001 - malformed encoded words: keep the raw text
        out = str(value)
    return re.sub(r"\s*\n\s*", " ", out).strip()


def _to_text(data: bytes, charset: str | None) -> str:
    for name in (charset, "utf-8", "latin-1"):
        if not name:
            continue
        try:
            return data.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1", "replace")


def part_text(part: Message) -> str:
    """The decoded text of a non-multipart part (HTML reduced to text)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        text = raw if isinstance(raw, str) else ""
    else:
        charset = part.get_content_charset()
        try:
            text = _to_text(payload, charset) if charset else payload.decode("utf-8")
        except UnicodeDecodeError:
            text = payload.decode("latin-1")
    if part.get_content_type() == "text/html":
        text = html.unescape(_TAG_RE.sub(" ", _BREAK_RE.sub("\n", text)))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_fields(text: str) -> list[dict[str, str]]:
    """RFC 3464 style field groups: blocks of "Name: value" lines (with continuation lines)
    separated by blank lines. Keys are lower-case; a repeated recipient field starts a new
    group even without a blank line; other repeated fields keep every value, one a line."""
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.replace("\r", "").split("\n"):
        if not line.strip():
            if current:
                groups.append(current)
            current, last = {}, ""
            continue
        if line[0] in " \t" and last:
            current[last] += " " + line.strip()
            continue
        m = _FIELD_RE.match(line)
        if not m:
            last = ""
            continue
        key = m.group(1).lower()
        if key in current and key in ("final-recipient", "original-recipient", "action"):
            groups.append(current)
            current = {}
        value = m.group(2).strip()
        current[key] = f"{current[key]}\n{value}" if key in current else value
        last = key
    if current:
        groups.append(current)
    return groups


class ReturnedMessage:
    """A bounce, complaint or auto-reply, parsed once and read by every detector."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.msg: Message = _parse(raw)
        self._texts: list[str] = []
        self._reports: list[str] = []
        self._originals: list[Message] = []
        self._split(self.msg)

    def header(self, name: str) -> str:
        """A top-level header of the returned message, decoded ("" when absent)."""
        return decode_header(self.msg.get(name))

    @cached_property
    def subject(self) -> str:
        return self.header("Subject")

    @cached_property
    def sender(self) -> str:
        """The From header of the returned message (who wrote the bounce)."""
        return self.header("From")

    @cached_property
    def full_text(self) -> str:
        """Every human-readable part (not the returned original, not the DSN fields)."""
        return "\n".join(self._texts)

    @cached_property
    def text(self) -> str:
        """The human-readable report, cut where a copy of the original message starts."""
        m = _SEPARATOR_RE.search(self.full_text)
        return self.full_text[: m.start()] if m else self.full_text

    @cached_property
    def fields(self) -> list[dict[str, str]]:
        """Field groups of every machine-readable report part (DSN or ARF)."""
        return [g for text in self._reports for g in parse_fields(text)]

    @cached_property
    def original(self) -> dict[str, str]:
        """Headers of the returned original message (first value of each, names as written)."""
        headers: Message | None = self._originals[0] if self._originals else None
        if headers is None:
            m = _SEPARATOR_RE.search(self.full_text)
            if not m:
                return {}
            rest = self.full_text[m.end():].split("\n", 1)[-1].lstrip("\n")
            headers = HeaderParser(policy=email.policy.compat32).parsestr(rest, headersonly=True)
        out: dict[str, str] = {}
        for key, value in headers.items():
            out.setdefault(key, decode_header(value))
        return out

    def original_header(self, name: str) -> str | None:
        """One header of the returned original, matched without regard to case."""
        lname = name.lower()
        for key, value in self.original.items():
            if key.lower() == lname:
                return value
        return None

    def embedded_report(self) -> bytes | None:
        """A returned original that is itself a delivery report (a bounce forwarded or
        wrapped by a gateway), as bytes to parse on its own; None otherwise."""
        for original in self._originals:
            if original.get_content_type() == "multipart/report" and original.is_multipart():
                return original.as_bytes()
        return None

    def _split(self, part: Message) -> None:
        ctype = part.get_content_type()
        if ctype in _ORIGINAL_TYPES:
            self._originals.append(_as_headers(part))
        elif ctype in _REPORT_TYPES:
            self._reports.append(_raw_text(part))
        elif part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    self._split(sub)
        elif part.get_content_maintype() == "multipart":
            # a multipart whose boundary could not be read: keep its body as text
            raw = part.get_payload()
            self._texts.append(raw if isinstance(raw, str) else "")
        elif part.get_content_maintype() in ("text", "") or ctype == "application/octet-stream":
            if part.get_content_maintype() == "text" or not part.get_filename():
                text = part_text(part)
                if self._reports and _HEADERS_RE.match(text):
                    # the returned original sent as text/plain after the report part
                    self._originals.append(HeaderParser(policy=email.policy.compat32)
                                           .parsestr(text.lstrip("\n"), headersonly=True))
                else:
                    self._texts.append(_unquoted(text))


_QUOTE_RE = re.compile(r"^> ?", re.MULTILINE)


def _unquoted(text: str) -> str:
    """A bounce forwarded by a person ("Begin forwarded message:" and every line quoted with
    "> ") read as the bounce itself: one level of quoting removed when most lines carry it."""
    lines = [line for line in text.split("\n") if line.strip()]
    quoted = sum(1 for line in lines if line.startswith(">"))
    if quoted < 5 or quoted < 0.6 * len(lines):
        return text
    return _QUOTE_RE.sub("", text)


_BOUNDARY_LINE_RE = re.compile(rb"^--([^\s]{6,})[ \t]*\r?$", re.MULTILINE)
_BOUNDARY_PARAM_RE = re.compile(rb"(boundary\s*=\s*)(\"[^\"]*\"|[^;\s]+)", re.IGNORECASE)


def _parse(raw: bytes) -> Message:
    """The message, with a multipart whose declared boundary never occurs in its body (a
    mangled or anonymised bounce) re-read with the boundary its body does use."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if msg.get_content_maintype() != "multipart" or msg.is_multipart():
        return msg
    head, sep, body = raw.partition(b"\n\n") if b"\r\n\r\n" not in raw[:20000] else \
        raw.partition(b"\r\n\r\n")
    m = _BOUNDARY_LINE_RE.search(body)
    if not m or not _BOUNDARY_PARAM_RE.search(head):
        return msg
    boundary = m.group(1).rstrip(b"-") if body.find(b"--" + m.group(1).rstrip(b"-") + b"--") \
        >= 0 else m.group(1)
    head = _BOUNDARY_PARAM_RE.sub(lambda x: x.group(1) + b'"' + boundary + b'"', head, count=1)
    return email.message_from_bytes(head + sep + body, policy=email.policy.compat32)


def _raw_text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n".join(str(m) for m in payload if isinstance(m, Message))
    return part_text(part)


def _as_headers(part: Message) -> Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return HeaderParser(policy=email.policy.compat32).parsestr(part_text(part).lstrip("\n"),
                                                                headersonly=True)
