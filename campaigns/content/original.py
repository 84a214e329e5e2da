"""A message as its author wrote it (the SMTP gateway's submissions): read its header,
remove `Bcc`, add `Message-ID` and `Date` only when missing, and put our signed delivery
header on top at send time. The bytes are never parsed into a MIME tree and written again:
what leaves is what the ERP wrote, plus those lines."""
from __future__ import annotations

import email.utils
import re
from email.header import decode_header, make_header

from campaigns.content.mime import make_message_id
from campaigns.content.tokens import make_token
from campaigns.headers import DELIVERY_HEADER
from campaigns.settings.values import Secret

_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.ASCII)


def split(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header fields, each with its continuation lines and line ends; the blank line; the
    body). A message without a blank line is all header."""
    fields: list[bytes] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        line = raw[pos:] if end < 0 else raw[pos:end + 1]
        if line in (b"\r\n", b"\n"):
            return fields, line, raw[pos + len(line):]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        pos += len(line)
    return fields, b"", b""


def field_name(field: bytes) -> str:
    m = _FIELD.match(field)
    return m.group(1).decode("ascii").lower() if m else ""


def field_value(field: bytes) -> str:
    """The unfolded value, RFC 2047 words decoded (for reading addresses and ids)."""
    value = field.split(b":", 1)[1] if b":" in field else b""
    text = re.sub(r"\r?\n[ \t]", " ", value.decode("utf-8", "replace")).strip()
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError):
        return text


def values(raw: bytes, name: str) -> list[str]:
    fields, _, _ = split(raw)
    return [field_value(f) for f in fields if field_name(f) == name.lower()]


def addresses(raw: bytes, name: str) -> list[str]:
    """The addresses in every `name` header field (From, Sender, …), lower-cased domains."""
    found = email.utils.getaddresses(values(raw, name))
    return [addr for _, addr in found if addr]


def prepare(raw: bytes, domain: str) -> tuple[bytes, str, bool]:
    """The message as it is kept and sent: without Bcc, with Message-ID and Date added
    when missing. Returns (bytes, its Message-ID, whether the author gave one)."""
    fields, blank, body = split(raw)
    eol = b"\r\n" if (fields and fields[0].endswith(b"\r\n")) or b"\r\n" in raw[:2000] else b"\n"
    kept = [f for f in fields if field_name(f) != "bcc"]
    ids = [field_value(f) for f in kept if field_name(f) == "message-id"]
    given = bool(ids and ids[0].strip("<> "))
    added: list[bytes] = []
    if given:
        message_id = ids[0].strip()
    else:
        kept = [f for f in kept if field_name(f) != "message-id"]
        message_id = make_message_id("smtp", domain)
        added.append(b"Message-ID: " + message_id.encode("ascii") + eol)
    if not any(field_name(f) == "date" for f in kept):
        added.append(b"Date: " + email.utils.formatdate(localtime=False).encode("ascii") + eol)
    for i, f in enumerate(kept):    # a last field without its line end (no body at all)
        if not f.endswith(b"\n"):
            kept[i] = f + eol
    return b"".join(kept + added) + (blank or eol) + body, message_id, given


def for_delivery(stored: bytes, secret_key: Secret, delivery_id: int) -> bytes:
    """The kept bytes with our signed delivery header on top (returns are matched by it)."""
    eol = b"\r\n" if b"\r\n" in stored[:2000] else b"\n"
    token = make_token(secret_key, "delivery", delivery_id)
    return f"{DELIVERY_HEADER}: {token}".encode("ascii") + eol + stored
