"""Postmark: POST /email with the X-Postmark-Server-Token header.

Postmark has no raw-MIME endpoint, so our message is taken apart (campaigns.relays.parsed)
into From, To, Subject, TextBody, HtmlBody, ReplyTo, Headers [{Name, Value}] and Attachments
[{Name, Content (base64), ContentType, ContentID}]. Accepted is 200 {"To", "SubmittedAt",
"MessageID", "ErrorCode": 0, "Message": "OK"}; refusals are {"ErrorCode", "Message"}, mostly
with 422. Postmark documents no retry hint for 429, so a throttle waits `throttle_wait_s`.
Config: api_key (the server token; api_key_env), message_stream ("outbound"), base_url.
"""
from __future__ import annotations

import base64
from email.headerregistry import Address
from typing import Any

from campaigns.errors import RelayConfigError, RelayError
from campaigns.relays.base import OutgoingMessage, SendResult
from campaigns.relays.httpapi import ApiAnswer, ApiRequest, HttpApiRelay
from campaigns.relays.parsed import ParsedAttachment, ParsedMessage, parse_message

# Postmark's documented ErrorCodes (https://postmarkapp.com/developer/api/overview#error-codes)
BAD_TOKEN = 10                 # "Bad or missing API token"
INVALID_EMAIL_REQUEST = 300    # "Invalid email request": a bad To or From, no body, > 50 recipients
INACTIVE_RECIPIENT = 406       # "Inactive recipient": hard bounce, spam complaint or suppression
# Our account or sender, not this recipient: 400 "Sender Signature not found", 401 "Sender
# signature not confirmed", 405 "Not allowed to send", 412 "Account is Pending",
# 413 "Account May Not Send", 1226 "The message stream for the provided 'ID' was not found".
ACCOUNT_CODES = frozenset({400, 401, 405, 412, 413, 1226})


class PostmarkRelay(HttpApiRelay):
    provider = "Postmark"
    kind = "postmark"
    throttle_wait_s = 60.0

    @property
    def message_stream(self) -> str:
        return self._config.message_stream or "outbound"

    def _auth_headers(self) -> dict[str, str]:
        assert self._config.api_key is not None
        return {"X-Postmark-Server-Token": self._config.api_key.reveal()}

    def _send_request(self, message: OutgoingMessage) -> ApiRequest:
        return ApiRequest("POST", "/email",
                          json=payload(message, parse_message(message.data), self.message_stream))

    def _accepted(self, answer: ApiAnswer, message: OutgoingMessage) -> SendResult:
        body = answer.body if isinstance(answer.body, dict) else {}
        if body.get("ErrorCode", 0) != 0:     # documented as 0 on success; never seen otherwise
            raise self._refused(answer, f"{message.message_id} to <{message.recipient}>")
        provider_id = str(body.get("MessageID") or "") or None
        return SendResult(250, "2.0.0", f"Postmark: {body.get('Message', 'OK')}", provider_id)

    def _check_request(self) -> ApiRequest:
        return ApiRequest("GET", "/server")

    def _check_lines(self, answer: ApiAnswer) -> list[str]:
        server = answer.body if isinstance(answer.body, dict) else {}
        lines = [f"server '{server.get('Name', '?')}' (ID {server.get('ID', '?')}), "
                 f"delivery type {server.get('DeliveryType', '?')}"]
        stream = self._exchange(ApiRequest("GET", f"/message-streams/{self.message_stream}"),
                                "check", sending=False)
        if stream.status != 200:
            raise RelayConfigError(f"Postmark message stream '{self.message_stream}' is not "
                                   f"usable: {self._detail(stream)}")
        kind = (stream.body or {}).get("MessageStreamType", "?") if isinstance(stream.body, dict) else "?"
        return [*lines, f"message stream '{self.message_stream}' exists ({kind})"]

    def _detail(self, answer: ApiAnswer) -> str:
        body = answer.body
        if isinstance(body, dict) and body.get("Message"):
            return f"{body['Message']} (ErrorCode {body.get('ErrorCode', '?')})"
        return super()._detail(answer)

    def _refused(self, answer: ApiAnswer, subject: str) -> RelayError:
        body = answer.body if isinstance(answer.body, dict) else {}
        code, text = body.get("ErrorCode"), str(body.get("Message") or "")
        detail = self._detail(answer)
        if code == BAD_TOKEN:
            return self.key_rejected(f"Postmark rejected the server token, {subject}", detail,
                                     answer.status)
        if code in ACCOUNT_CODES or (code == INVALID_EMAIL_REQUEST and "'From'" in text):
            return self.refuses_us(f"Postmark refuses our server token or sender, {subject}: "
                                   f"{detail}", detail, answer.status)
        if code == INACTIVE_RECIPIENT:
            # "You tried to send to recipient(s) that have been marked as inactive": a hard
            # bounce, a spam complaint or a manual suppression at Postmark
            return self.recipient_refused(subject, detail, answer.status, "suppressed")
        if code == INVALID_EMAIL_REQUEST and any(f"'{h}'" in text for h in ("To", "Cc", "Bcc")):
            # "Invalid 'To' address: 'someone@'."
            return self.recipient_refused(subject, detail, answer.status)
        return self.status_error(answer, subject, detail)


def payload(message: OutgoingMessage, parsed: ParsedMessage, stream: str) -> dict[str, Any]:
    """The /email body for one message to its envelope recipient."""
    body: dict[str, Any] = {
        "From": _mailbox(parsed.from_name, parsed.from_address or message.sender),
        "To": _mailbox(parsed.display_name_of(message.recipient), message.recipient),
        "Subject": parsed.subject,
        "MessageStream": stream,
    }
    if parsed.text:
        body["TextBody"] = parsed.text
    if parsed.html:
        body["HtmlBody"] = parsed.html
    if parsed.reply_to:
        body["ReplyTo"] = ", ".join(_mailbox(n, a) for n, a in parsed.reply_to)
    if parsed.headers:
        body["Headers"] = [{"Name": n, "Value": v} for n, v in parsed.headers]
    if parsed.attachments:
        body["Attachments"] = [_attachment(a) for a in parsed.attachments]
    return body


def _mailbox(name: str, address: str) -> str:
    """"Name <address>", the name quoted when it needs it, kept in Unicode (JSON is UTF-8)."""
    if not name:
        return address
    try:
        return str(Address(display_name=name, addr_spec=address))
    except (ValueError, IndexError):        # an address the stdlib parser refuses (SMTPUTF8)
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>'


def _attachment(a: ParsedAttachment) -> dict[str, str]:
    out = {"Name": a.filename, "Content": base64.b64encode(a.content).decode("ascii"),
           "ContentType": a.content_type}
    if a.content_id:
        out["ContentID"] = f"cid:{a.content_id}"
    return out
