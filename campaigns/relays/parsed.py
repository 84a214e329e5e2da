"""Our finished message taken apart, for provider APIs that take JSON fields instead of MIME
(SendGrid, Postmark): From, To, Subject decoded; text and HTML bodies; attachments as bytes;
and the other headers (ours: X-Campaigns-Delivery, List-Unsubscribe, Message-ID, ...) as the
raw, still RFC 2047-encoded values, so the provider writes them back unchanged.
"""
from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import getaddresses

# Headers the provider writes itself from the JSON fields, or refuses to take from us.
# SendGrid documents its reserved names: "x-sg-id, x-sg-eid, received, dkim-signature,
# Content-Type, Content-Transfer-Encoding, To, From, Subject, Reply-To, CC, BCC".
STRUCTURAL_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "subject", "reply-to", "sender", "date", "mime-version",
    "content-type", "content-transfer-encoding", "content-disposition", "return-path",
    "received", "dkim-signature", "x-sg-id", "x-sg-eid",
})


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    filename: str
    content_type: str           # "application/pdf"
    content: bytes
    content_id: str | None      # without angle brackets; set for inline parts
    inline: bool


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    from_name: str
    from_address: str
    to: list[tuple[str, str]]           # (display name, address)
    reply_to: list[tuple[str, str]]
    subject: str                        # decoded
    text: str | None
    html: str | None
    attachments: list[ParsedAttachment]
    headers: list[tuple[str, str]]      # the other headers: name, raw value unfolded

    def display_name_of(self, address: str) -> str:
        """The To header's display name for `address` ("" when none)."""
        return next((n for n, a in self.to if a.lower() == address.lower()), "")


def parse_message(data: bytes) -> ParsedMessage:
    """Take apart a complete RFC 5322 message (CRLF or LF line endings)."""
    msg = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(msg, EmailMessage)     # the default policy builds EmailMessage
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    bodies = [p for p in (text_part, html_part) if p is not None]
    from_name, from_address = (_addresses(msg, "from") or [("", "")])[0]
    return ParsedMessage(
        from_name=from_name, from_address=from_address, to=_addresses(msg, "to"),
        reply_to=_addresses(msg, "reply-to"), subject=str(msg.get("subject", "")),
        text=_content(text_part), html=_content(html_part),
        attachments=[_attachment(p) for p in msg.walk()
                     if not p.is_multipart() and not any(p is b for b in bodies)],
        headers=[(name, _unfold(value)) for name, value in msg.raw_items()
                 if name.lower() not in STRUCTURAL_HEADERS],
    )


def _addresses(msg: EmailMessage, header: str) -> list[tuple[str, str]]:
    values = [str(v) for v in msg.get_all(header, [])]      # decoded by the default policy
    return [(name, address) for name, address in getaddresses(values) if address]


def _content(part: MIMEPart | None) -> str | None:
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else content.decode("utf-8", "replace")


def _attachment(part: MIMEPart) -> ParsedAttachment:
    payload = part.get_payload(decode=True)
    content = payload if isinstance(payload, bytes) else b""
    cid = part.get("content-id")
    return ParsedAttachment(
        filename=part.get_filename() or "attachment", content_type=part.get_content_type(),
        content=content, content_id=str(cid).strip().strip("<>") if cid else None,
        inline=part.get_content_disposition() == "inline")


def _unfold(value: str) -> str:
    return "".join(value.splitlines()).strip() if ("\n" in value or "\r" in value) else value.strip()
