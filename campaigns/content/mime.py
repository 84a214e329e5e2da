"""MIME messages assembled directly as bytes.

``email.message.EmailMessage`` costs about 2.2 ms per message here, ten times the template
render (PERF-NOTES.md); writing the bytes by hand costs a tenth of that. A campaign's messages
share their sender headers and attachments, so a ``MessageBuilder`` encodes those once and
``build`` only encodes what differs per message: To, Subject, Date, Message-ID, the
unsubscribe headers and the two bodies.

Output: CRLF line endings; headers RFC 5322 folded, non-ASCII text as RFC 2047 encoded words
(addresses themselves stay raw UTF-8, which is what SMTPUTF8 needs); bodies
``multipart/alternative`` (text/plain, then text/html, both UTF-8 quoted-printable), wrapped in
``multipart/mixed`` with base64 attachments when there are any. A CR or LF in anything that
reaches a header raises InputError: no header injection, whatever the caller passes.
"""
from __future__ import annotations

import binascii
import mimetypes
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from campaigns.errors import InputError

__all__ = ["Attachment", "MessageBuilder", "parse_address", "make_message_id",
           "RESERVED_HEADERS"]

CRLF = "\r\n"
# Set by MessageBuilder itself; passing them in `headers`/`extra_headers` is an error.
RESERVED_HEADERS = frozenset({
    "date", "from", "sender", "reply-to", "to", "cc", "bcc", "subject", "message-id",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
    "list-unsubscribe", "list-unsubscribe-post", "return-path"})

_NEEDS_ENCODING = re.compile(r"[^\x20-\x7e\t]|=\?")   # non-ASCII, controls, look-alike words
_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")              # RFC 5322 ftext
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+\Z")  # a phrase needing no quotes
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+\Z")
_BAD_ADDRESS_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029<>()\[\],;:\"\\]")
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>\Z")
_ID_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+\Z")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_LINE_START = re.compile(rb"\n(?:\.|From )")  # 4x faster than "^" with re.M
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
               "xz": "application/x-xz", "br": "application/x-brotli"}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BODY_HEADERS = ("Content-Type: text/{}; charset=utf-8\r\n"
                 "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
_TEXT_HEADERS = _BODY_HEADERS.format("plain").encode("ascii")
_HTML_HEADERS = _BODY_HEADERS.format("html").encode("ascii")
_POST_HEADER = "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to every message of a campaign.

    ``content_type`` is guessed from the filename when None (application/octet-stream when
    nothing fits)."""

    filename: str
    content: bytes
    content_type: str | None = None


def parse_address(value: str, *, field: str) -> tuple[str, str]:
    """``"Name <addr>"`` or ``"addr"`` -> ``(name, addr)``; name is "" when absent.

    Non-ASCII addresses (SMTPUTF8) are accepted. A CR/LF or anything that is not an address
    raises InputError(field=field)."""
    if "\r" in value or "\n" in value:
        raise InputError("line breaks are not allowed in an address", field=field)
    text, name = value.strip(), ""
    if text.endswith(">") and "<" in text:
        name, _, text = text[:-1].rpartition("<")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
    address = text.strip()
    local, at, domain = address.rpartition("@")
    if (not at or not local or not domain or "@" in local or len(address) > 254
            or _BAD_ADDRESS_CHAR.search(address) or domain.startswith(".")
            or domain.endswith(".") or ".." in domain):
        raise InputError(f"not an e-mail address: {value!r} "
                         "(expected 'user@example.com' or 'Name <user@example.com>')", field=field)
    return name, address


def _address_header(header: str, name: str, address: str, *, field: str) -> str:
    """An address header: the display name as atoms, quoted, or RFC 2047 encoded; the
    address as given (raw UTF-8 for an SMTPUTF8 address)."""
    if not name:
        return _header(header, address, field=field, raw=True)
    if _NEEDS_ENCODING.search(name):
        return _fold_tokens(header, [*_phrase_runs(name), (False, f"<{address}>")]) + CRLF
    if not _ATOMS.match(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _header(header, f"{name} <{address}>", field=field, raw=True)


def make_message_id(unique: str, domain: str) -> str:
    """``<unique.random@domain>``; ``unique`` ties the id to our records (a delivery id)."""
    try:
        domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError as err:
        raise InputError(f"bad Message-ID domain {domain!r}", field="message_id") from err
    if not _ID_PART.match(unique) or not _ID_PART.match(domain):
        raise InputError(f"cannot make a Message-ID from {unique!r} and {domain!r}",
                         field="message_id")
    return f"<{unique}.{os.urandom(8).hex()}@{domain}>"


class MessageBuilder:
    """Builds the messages of one campaign; sender headers are encoded once, here."""

    __slots__ = ("envelope_from", "_head", "_tail", "_post", "_attachment_parts")

    def __init__(self, *, from_addr: str, reply_to: str | None = None,
                 list_unsubscribe_post: bool = True,
                 extra_headers: Mapping[str, str] | None = None) -> None:
        """Raise InputError for a bad address, a CR/LF anywhere, or a reserved header name
        in ``extra_headers`` (e.g. ``{"List-Id": "News <news.example.com>"}``)."""
        name, address = parse_address(from_addr, field="from_addr")
        self.envelope_from = address  # the bare From address, e.g. for MAIL FROM
        head = [_address_header("From", name, address, field="from_addr")]
        if reply_to:
            head.append(_address_header("Reply-To", *parse_address(reply_to, field="reply_to"),
                                        field="reply_to"))
        tail = ["MIME-Version: 1.0\r\n"]
        tail += [_custom_header(key, value, field="extra_headers")
                 for key, value in (extra_headers or {}).items()]
        self._head, self._tail = "".join(head), "".join(tail)
        self._post = list_unsubscribe_post
        self._attachment_parts: dict[Attachment, bytes] = {}

    def build(self, *, to: str, subject: str, html: str, text: str, message_id: str,
              unsubscribe_url: str | Sequence[str] | None = None,
              attachments: Sequence[Attachment] = (),
              headers: Mapping[str, str] | None = None) -> bytes:
        """One complete message (headers and body) as CRLF bytes, ready for DATA.

        ``unsubscribe_url``: the List-Unsubscribe URI, or several (an https page, a mailto:)
        in order of preference; List-Unsubscribe-Post (RFC 8058) comes with an http(s) one.
        ``headers`` are per-message extras (``{"X-Campaign-Delivery": "123"}``). Raises
        InputError for a bad ``to``, a CR/LF in any header value or name, a malformed
        ``message_id`` or ``unsubscribe_url``, or a reserved header name."""
        lines = [self._head,
                 _address_header("To", *parse_address(to, field="to"), field="to"),
                 _header("Subject", subject, field="subject"),
                 _date_header(),
                 _message_id_header(message_id)]
        if unsubscribe_url:
            uris = [unsubscribe_url] if isinstance(unsubscribe_url, str) else unsubscribe_url
            lines.append(_list_unsubscribe(uris))
            if self._post and any(u.startswith(("https://", "http://")) for u in uris):
                lines.append(_POST_HEADER)
        lines.append(self._tail)
        if headers:
            lines += [_custom_header(key, value, field="headers") for key, value in headers.items()]
        body = _alternative(text, html)
        if attachments:
            body = self._mixed(body, attachments)
        return "".join(lines).encode("utf-8") + body

    def _mixed(self, alternative: bytes, attachments: Sequence[Attachment]) -> bytes:
        boundary = _boundary()
        chunks = [b'Content-Type: multipart/mixed; boundary="', boundary, b'"\r\n\r\n--',
                  boundary, b"\r\n", alternative]
        for attachment in attachments:
            chunks += [b"--", boundary, b"\r\n", self._attachment_part(attachment)]
        chunks += [b"--", boundary, b"--\r\n"]
        return b"".join(chunks)

    def _attachment_part(self, attachment: Attachment) -> bytes:
        # A campaign attaches the same files to every message: encode each once.
        part = self._attachment_parts.get(attachment)
        if part is None:
            if len(self._attachment_parts) >= 32:
                self._attachment_parts.clear()
            part = self._attachment_parts[attachment] = _attachment_part(attachment)
        return part


def _header(name: str, value: str, *, field: str, raw: bool = False) -> str:
    """``Name: value`` + CRLF, RFC 2047 encoded (unless ``raw``) and folded."""
    if "\r" in value or "\n" in value:
        raise InputError(f"line breaks are not allowed in the {name} header", field=field)
    if raw or not _NEEDS_ENCODING.search(value):
        line = f"{name}: {value}"
        if len(line) <= 78:
            return line + CRLF
        folded = _fold(line, len(name) + 2)
        if max(map(len, folded.split(CRLF))) <= 998:
            return folded + CRLF
        if raw:  # an unbreakable word: only unstructured text can be split into words
            raise InputError(f"the {name} header is too long", field=field)
    return _fold_tokens(name, [(True, value)]) + CRLF


def _fold(line: str, start: int) -> str:
    """Fold an ASCII header line before spaces so lines stay within 78 chars if possible."""
    pieces: list[str] = []
    while len(line) > 78:
        cut = line.rfind(" ", start, 79)
        if cut == -1:
            cut = line.find(" ", max(start, 79))
            if cut == -1:
                break
        pieces.append(line[:cut])
        line = line[cut:]
        start = len(line) - len(line.lstrip(" ")) + 1
    pieces.append(line)
    return CRLF.join(pieces)


def _encoded_words(text: str, first: int, *, can_fold: bool) -> list[str]:
    """``=?utf-8?b?...?=`` words of at most 75 chars, never splitting a UTF-8 character.

    The first word fits in ``first`` chars. A text that fits one word, but not there, comes
    back as ``["", word]`` (start a new line) when ``can_fold``, rather than split: some
    decoders (Python's, in display names) wrongly keep the space between two encoded words,
    which is also why long texts are split after a space when there is one."""
    data, words = text.encode("utf-8"), []
    size = (max(first, 24) - 12) // 4 * 3
    if can_fold and size < len(data) <= 45:
        words, size = [""], 45
    while data:
        cut = min(size, len(data))
        while cut < len(data) and data[cut] & 0xC0 == 0x80:
            cut -= 1
        space = data.rfind(b" ", 0, cut) if cut < len(data) else -1
        cut = space + 1 if space > 0 else cut
        words.append(f"=?utf-8?b?{binascii.b2a_base64(data[:cut], newline=False).decode()}?=")
        data, size = data[cut:], 45
    return words


def _phrase_runs(name: str) -> list[tuple[bool, str]]:
    """Split a display name into (encode?, text) runs: plain ASCII words stay readable,
    neighbouring words that need encoding share encoded words (spaces included), since
    a decoder drops the space between two encoded words."""
    runs: list[tuple[bool, str]] = []
    for word in name.split():
        encode = not _ATOM.match(word) or "=?" in word
        if encode and runs and runs[-1][0]:
            runs[-1] = (True, f"{runs[-1][1]} {word}")
        else:
            runs.append((encode, word))
    return runs


def _fold_tokens(header: str, runs: list[tuple[bool, str]]) -> str:
    """``Header: tokens`` separated by spaces, folded so lines stay within 76 chars (the
    RFC 2047 limit for lines with encoded words); encoded words fill the room left."""
    start = f"{header}:"
    lines, line = [], start
    for encode, text in runs:
        words = _encoded_words(text, 75 - len(line), can_fold=line != start) if encode else [text]
        for word in words:
            if line not in (start, "") and (not word or len(line) + 1 + len(word) > 76):
                lines.append(line)
                line = ""
            if word:
                line += " " + word
    lines.append(line)
    return CRLF.join(lines)


def _custom_header(name: str, value: str, *, field: str) -> str:
    if not _HEADER_NAME.match(name):
        raise InputError(f"invalid header name {name!r}", field=field)
    if name.lower() in RESERVED_HEADERS:
        raise InputError(f"the {name} header is set by the message builder", field=field)
    return _header(name, value, field=field)


def _message_id_header(message_id: str) -> str:
    if not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    if not _MESSAGE_ID.match(message_id):
        raise InputError(f"not a Message-ID: {message_id!r} (expected '<unique@domain>')",
                         field="message_id")
    return f"Message-ID: {message_id}\r\n"


def _list_unsubscribe(urls: Sequence[str]) -> str:
    for url in urls:
        if not url.isascii() or _CONTROL.search(url) or " " in url or "<" in url or ">" in url \
                or "," in url:
            raise InputError(f"not a usable unsubscribe URL: {url!r} (expected an ASCII URL "
                             "without spaces or commas)", field="unsubscribe_url")
    return _header("List-Unsubscribe", ", ".join(f"<{url}>" for url in urls),
                   field="unsubscribe_url", raw=True)


_date_cache: tuple[int, str] = (0, "")


def _date_header() -> str:
    """RFC 5322 Date in UTC, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        t = time.gmtime(now)
        _date_cache = (now, f"Date: {_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]}"
                            f" {t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000\r\n")
    return _date_cache[1]


def _boundary() -> bytes:
    # "=_" cannot occur in quoted-printable or base64 output, so no body line can match it.
    return b"=_" + binascii.hexlify(os.urandom(12))


def _alternative(text: str, html: str) -> bytes:
    boundary = _boundary()
    return b"".join((b'Content-Type: multipart/alternative; boundary="', boundary,
                     b'"\r\n\r\n--', boundary, b"\r\n", _TEXT_HEADERS, _quoted_printable(text),
                     b"\r\n--", boundary, b"\r\n", _HTML_HEADERS, _quoted_printable(html),
                     b"\r\n--", boundary, b"--\r\n"))


def _quoted_printable(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line breaks, lines of at most 76 chars, and no line
    starting with "." or "From " (dot-stuffing and mbox "From " munging cannot touch it)."""
    data = text.encode("utf-8")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    data = data.replace(b"\n", b"\r\n")
    encoded = binascii.b2a_qp(data, istext=True)  # CRLF when the first line break is CRLF
    if b"\r\n" not in data:  # no line break at all: b2a_qp folded with bare LF
        encoded = encoded.replace(b"\n", b"\r\n")
    if encoded.startswith((b".", b"From ")) or _UNSAFE_LINE_START.search(encoded):
        encoded = _protect_line_starts(encoded)
    return encoded


def _protect_line_starts(encoded: bytes) -> bytes:
    out = []
    for line in encoded.split(b"\r\n"):
        while line.startswith((b".", b"From ")):
            line = (b"=2E" if line[0] == 0x2E else b"=46") + line[1:]
            if len(line) <= 76:
                break
            cut = 75  # soft break; never inside an "=XX" escape
            cut -= 1 if line[cut - 1] == 0x3D else 2 if line[cut - 2] == 0x3D else 0
            out.append(line[:cut] + b"=")
            line = line[cut:]
        out.append(line)
    return b"\r\n".join(out)


def _attachment_part(attachment: Attachment) -> bytes:
    filename, content_type = attachment.filename, attachment.content_type
    if not filename or _CONTROL.search(filename):
        raise InputError(f"bad attachment filename {filename!r}", field="attachments")
    if content_type is None:
        content_type, encoding = mimetypes.guess_type(filename)
        if encoding:
            content_type = _COMPRESSED.get(encoding)
        content_type = content_type or "application/octet-stream"
    if not _CONTENT_TYPE.match(content_type):
        raise InputError(f"bad content type {content_type!r} for {filename!r}",
                         field="attachments")
    encoded = binascii.b2a_base64(attachment.content, newline=False)
    body = b"\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    head = (f"Content-Type: {content_type};\r\n {_parameter('name', filename)}\r\n"
            f"Content-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment;\r\n {_parameter('filename', filename)}\r\n\r\n")
    return head.encode("ascii") + body + b"\r\n"


def _parameter(key: str, value: str) -> str:
    """A MIME parameter: quoted when ASCII, else RFC 2231 ``key*=utf-8''...`` (continued
    as ``key*0*``, ``key*1*`` ... when long)."""
    if value.isascii():
        return f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    encoded = "utf-8''" + quote(value, safe="!#$&+-.^_`|~")
    if len(encoded) <= 60:
        return f"{key}*={encoded}"
    pieces: list[str] = []
    while encoded:
        cut = len(encoded)
        if cut > 60:  # never inside a "%XX" escape
            cut = 59 if encoded[59] == "%" else 58 if encoded[58] == "%" else 60
        pieces.append(f"{key}*{len(pieces)}*={encoded[:cut]}")
        encoded = encoded[cut:]
    return ";\r\n ".join(pieces)
