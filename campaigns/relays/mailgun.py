"""Mailgun: POST /v3/{domain}/messages.mime, our message as it is (multipart form: "to" and
the MIME as the file field "message"), so headers and attachments reach Mailgun untouched.

Authentication is HTTP Basic with the user "api" and the API key. Accepted is 200 {"id":
"<20240101...@mg.example.com>", "message": "Queued. Thank you."}; errors are {"message": ...}
(400, 404), a bare "Forbidden" (401) or 429 "as defined in the response" (Retry-After).
The base URL depends on the region: api.mailgun.net (us) or api.eu.mailgun.net (eu).
Config: api_key (api_key_env), domain, region (us | eu), base_url.
"""
from __future__ import annotations

import base64
import re

from campaigns.errors import ConfigError, RelayConfigError, RelayError
from campaigns.relays.base import OutgoingMessage, SendResult
from campaigns.relays.httpapi import ApiAnswer, ApiRequest, HttpApiRelay
from campaigns.relays.presets import MAILGUN_REGIONS
from campaigns.settings import RelayConfig

# 400 "to parameter is not a valid address. please check documentation"
_BAD_RECIPIENT = re.compile(r"\bto\b.*\bnot a valid address|invalid (recipient|address)", re.I)
# 400 "Domain mg.example.com is not allowed to send: Free accounts are for test purposes only"
# 400 "Sandbox subdomains are for test purposes only. Please add your own domain ..."
_ACCOUNT = re.compile(r"not allowed to send|sandbox subdomains|free accounts|"
                      r"domain .* (is )?(not verified|unverified|disabled)|\bfrom\b.*not a valid", re.I)


class MailgunRelay(HttpApiRelay):
    provider = "Mailgun"
    kind = "mailgun"

    def __init__(self, config: RelayConfig) -> None:
        if not config.domain:
            raise ConfigError(f"relay '{config.name}': kind 'mailgun' needs domain = "
                              "\"mg.example.com\" (the sending domain)")
        if config.region and config.region not in MAILGUN_REGIONS:
            raise ConfigError(f"relay '{config.name}': region must be us or eu for mailgun, "
                              f"got {config.region!r}")
        super().__init__(config)
        self.domain = config.domain

    def _auth_headers(self) -> dict[str, str]:
        assert self._config.api_key is not None
        token = base64.b64encode(f"api:{self._config.api_key.reveal()}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def _send_request(self, message: OutgoingMessage) -> ApiRequest:
        # "message: MIME string of the message. Make sure to use multipart/form-data to send
        # this as a file upload." "to" must name every envelope recipient.
        return ApiRequest("POST", f"/v3/{self.domain}/messages.mime",
                          data={"to": message.recipient},
                          files={"message": ("message.eml", message.data, "message/rfc822")})

    def _accepted(self, answer: ApiAnswer, message: OutgoingMessage) -> SendResult:
        body = answer.body if isinstance(answer.body, dict) else {}
        provider_id = str(body.get("id") or "").strip().strip("<>") or None
        text = str(body.get("message") or "Queued")
        return SendResult(250, "2.0.0", f"Mailgun: {text}", provider_id)

    def _check_request(self) -> ApiRequest:
        return ApiRequest("GET", f"/v3/domains/{self.domain}")

    def _check_lines(self, answer: ApiAnswer) -> list[str]:
        domain = (answer.body or {}).get("domain", {}) if isinstance(answer.body, dict) else {}
        state = str(domain.get("state", "unknown"))
        if state != "active":
            raise RelayConfigError(f"Mailgun domain {self.domain} is {state}: it cannot send "
                                   "until its DNS records are verified")
        return [f"domain {self.domain} is active"]

    def _detail(self, answer: ApiAnswer) -> str:
        body = answer.body
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
        return super()._detail(answer)

    def _refused(self, answer: ApiAnswer, subject: str) -> RelayError:
        detail = self._detail(answer)
        if answer.status == 400 and _ACCOUNT.search(detail):
            return self.refuses_us(f"Mailgun refuses our domain or sender, {subject}: "
                                   f"{detail}", detail, answer.status)
        if answer.status == 400 and _BAD_RECIPIENT.search(detail):
            return self.recipient_refused(subject, detail, answer.status)
        return self.status_error(answer, subject, detail)
