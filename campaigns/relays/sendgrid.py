"""SendGrid v3 API: POST /v3/mail/send, one personalization per message.

SendGrid takes no raw MIME, so our message is taken apart (campaigns.relays.parsed) into the
JSON fields; the headers SendGrid does not write itself (X-Campaigns-Delivery, List-Unsubscribe,
Message-ID, ...) go in "headers" as their encoded values. Accepted is "202 Accepted" with an
empty body and the id in the X-Message-Id header. Errors are {"errors": [{"message", "field",
"help"}]}. The envelope sender is SendGrid's own: bounces come through its event webhook.
Config: api_key (api_key_env), base_url.
"""
from __future__ import annotations

import base64
import re
from typing import Any

from campaigns.errors import RelayConfigError, RelayError
from campaigns.relays.base import OutgoingMessage, SendResult
from campaigns.relays.httpapi import ApiAnswer, ApiRequest, HttpApiRelay
from campaigns.relays.parsed import ParsedAttachment, ParsedMessage, parse_message

# "personalizations.0.to.0.email": the field of an error about the recipient.
_RECIPIENT_FIELD = re.compile(r"^personalizations(\.\d+)?\.(to|cc|bcc)\b")
_SENDER_FIELD = re.compile(r"^(from|reply_to)\b")


class SendGridRelay(HttpApiRelay):
    provider = "SendGrid"
    kind = "sendgrid"

    def _auth_headers(self) -> dict[str, str]:
        assert self._config.api_key is not None
        return {"Authorization": f"Bearer {self._config.api_key.reveal()}"}

    def _send_request(self, message: OutgoingMessage) -> ApiRequest:
        return ApiRequest("POST", "/v3/mail/send", json=payload(message, parse_message(message.data)))

    def _accepted(self, answer: ApiAnswer, message: OutgoingMessage) -> SendResult:
        # "202 ACCEPTED: Your message is both valid, and queued to be delivered."
        provider_id = answer.headers.get("x-message-id")
        return SendResult(250, "2.0.0", f"SendGrid accepted ({answer.status})", provider_id)

    def _check_request(self) -> ApiRequest:
        return ApiRequest("GET", "/v3/scopes")

    def _check_lines(self, answer: ApiAnswer) -> list[str]:
        scopes = (answer.body or {}).get("scopes", []) if isinstance(answer.body, dict) else []
        if "mail.send" not in scopes:
            raise RelayConfigError("SendGrid API key accepted, but it lacks the mail.send scope")
        return ["the key has the mail.send scope"]

    def _detail(self, answer: ApiAnswer) -> str:
        errors = _errors(answer)
        if not errors:
            return super()._detail(answer)
        return "; ".join(str(e.get("message", "")) + (f" ({e['field']})" if e.get("field") else "")
                         for e in errors)

    def _refused(self, answer: ApiAnswer, subject: str) -> RelayError:
        detail = self._detail(answer)
        fields = [str(e.get("field") or "") for e in _errors(answer)]
        if answer.status == 400 and any(_SENDER_FIELD.match(f) for f in fields):
            return self.refuses_us(f"SendGrid refuses our sender, {subject}: {detail}",
                                   detail, answer.status)
        if answer.status == 400 and fields and all(_RECIPIENT_FIELD.match(f) for f in fields):
            # "Does not contain a valid address." (personalizations.0.to.0.email)
            return self.recipient_refused(subject, detail, answer.status)
        return self.status_error(answer, subject, detail)


def payload(message: OutgoingMessage, parsed: ParsedMessage) -> dict[str, Any]:
    """The /v3/mail/send body for one message to its envelope recipient."""
    to: dict[str, str] = {"email": message.recipient}
    if name := parsed.display_name_of(message.recipient):
        to["name"] = name
    body: dict[str, Any] = {
        "personalizations": [{"to": [to]}],
        "from": _address(parsed.from_name, parsed.from_address or message.sender),
        "subject": parsed.subject,
        # "text/plain must be first, then text/html"
        "content": [{"type": t, "value": v} for t, v in (("text/plain", parsed.text),
                                                          ("text/html", parsed.html)) if v],
    }
    if parsed.reply_to:
        body["reply_to"] = _address(*parsed.reply_to[0])
    if parsed.attachments:
        body["attachments"] = [_attachment(a) for a in parsed.attachments]
    if parsed.headers:
        body["headers"] = dict(parsed.headers)
    return body


def _address(name: str, address: str) -> dict[str, str]:
    return {"email": address, "name": name} if name else {"email": address}


def _attachment(a: ParsedAttachment) -> dict[str, str]:
    out = {"content": base64.b64encode(a.content).decode("ascii"), "type": a.content_type,
           "filename": a.filename, "disposition": "inline" if a.inline else "attachment"}
    if a.content_id:
        out["content_id"] = a.content_id
    return out


def _errors(answer: ApiAnswer) -> list[dict[str, Any]]:
    body = answer.body
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
