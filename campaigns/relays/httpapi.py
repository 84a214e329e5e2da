"""The shared sequence of the HTTP e-mail APIs (SendGrid, Mailgun, Postmark) on httpx.

One `httpx.Client` per relay object (= per worker process), made in open(), so connections
are kept alive between messages. A provider module says how to authenticate, how to turn our
message into a request, how to read an acceptance and how to read its own refusals; this
module posts, translates httpx's exceptions (in `_exchange`) and maps what the providers
share: 401/403, 429 with its retry hint, 404, 413 and 5xx.

The errors say what the provider told us as a typed outcome (campaigns.errors.RelayError):
`category` and `reason` (a throttle is "throttle"/"ratelimited", our key or account refused
is "relay", a refused recipient "hard", a refused message "policy", too large "toolarge"),
`http_status`, and the provider's words in `text`. No SMTP code is invented: `code` and
`enhanced` stay None unless the provider's answer carries them; a provider's 5xx is
`relay_down`, any other answer is not.
No secret reaches a message: the API key only travels in the client's headers, and texts
that echo the request are scrubbed (`_scrub`).
"""
from __future__ import annotations

import email.utils
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from campaigns.errors import (ConfigError, RelayConfigError, RelayError, RelayInDoubt,
                              RelayPermanentError, RelayTemporaryError)
from campaigns.relays.base import OutgoingMessage, SendResult
from campaigns.settings import RelayConfig
from campaigns.tls import TlsSetupError, client_context

_USER_AGENT = "campaigns (+https://pypi.org/project/campaigns/)"


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str                                    # joined to the relay's base_url
    json: Any = None
    data: dict[str, str] | None = None           # form fields
    files: dict[str, tuple[str, bytes, str]] | None = None   # multipart file fields


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    headers: httpx.Headers
    body: Any                                    # the parsed JSON, or None
    text: str                                    # the body as text, for messages
    url: str = field(default="")


def retry_after_s(headers: httpx.Headers, now: float | None = None) -> float | None:
    """The wait a 429 asks for, in seconds: Retry-After (seconds or an HTTP date), else a
    rate-limit reset (X-RateLimit-Reset, RateLimit-Reset) given as seconds from now or as a
    Unix time in seconds (SendGrid: "X-RateLimit-Reset: 1392815263") or milliseconds."""
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.replace(".", "", 1).isdigit():
            return max(0.0, float(value))
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        value = (headers.get(name) or "").strip()
        if value.replace(".", "", 1).isdigit():
            number = float(value)
            if number > 1e12:           # Unix time in milliseconds
                return max(0.0, number / 1000 - now)
            if number > 1e9:            # Unix time in seconds
                return max(0.0, number - now)
            return number               # seconds from now
    return None


class HttpApiRelay:
    """The Relay contract (campaigns.relays.base.Relay) for an HTTP e-mail API.

    Subclasses set `provider`, `kind`, and implement `_auth_headers`, `_send_request`,
    `_accepted`, `_check_request`, `_check_lines`; they may refine `_refused`.
    """

    provider: ClassVar[str] = "HTTP API"
    kind: ClassVar[str] = "http"
    # The wait after a 429 that names none; None leaves it to the sender's backoff.
    throttle_wait_s: ClassVar[float | None] = None

    def __init__(self, config: RelayConfig) -> None:
        self.name = config.name
        self._config = config
        if not config.api_key:
            raise ConfigError(f"relay '{config.name}': kind '{self.kind}' needs api_key "
                              "(or api_key_env = \"VARIABLE\")")
        base_url = config.base_url or self._default_base_url()
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"relay '{config.name}': base_url must start with https:// "
                              f"(got {base_url!r})")
        self.base_url = base_url.rstrip("/")
        self._client: httpx.Client | None = None

    def _default_base_url(self) -> str:
        from campaigns.relays.presets import api_base_url
        url = api_base_url(self.kind, self._config.region)
        if url is None:
            raise ConfigError(f"relay '{self.name}': no base_url known for kind '{self.kind}' "
                              f"in region {self._config.region!r}")
        return url

    # --- the contract ----------------------------------------------------------------------

    def open(self) -> None:
        """Make the HTTP client (connections open on first use). RelayConfigError when the
        ca_file cannot be read."""
        if self._client is not None:
            return
        cfg = self._config
        verify: ssl.SSLContext | bool = cfg.tls_verify   # True: httpx's own CA bundle
        if cfg.ca_file:   # the ca_file alone, as before (SMTP and IMAP add it to the system's)
            try:
                verify = client_context(cfg.ca_file, verify=cfg.tls_verify, system_cas=False)
            except TlsSetupError as err:
                raise RelayConfigError(f"relay '{self.name}': {err}") from err
        self._client = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(cfg.timeout_s), verify=verify,
            headers={"User-Agent": _USER_AGENT, "Accept": "application/json",
                     **self._auth_headers()})

    def send(self, message: OutgoingMessage) -> SendResult:
        """POST one message (see Relay.send)."""
        subject = f"{message.message_id} to <{message.recipient}>"
        answer = self._exchange(self._send_request(message), subject, sending=True)
        if 200 <= answer.status < 300:
            return self._accepted(answer, message)
        raise self._refused(answer, subject)

    def close(self) -> None:
        """Close the client's connections; never raises."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def check(self) -> list[str]:
        """One cheap authenticated GET; sends no mail. Lines of what was verified."""
        answer = self._exchange(self._check_request(), "check", sending=False)
        if answer.status in (401, 403):
            raise RelayConfigError(f"{self.provider} API key rejected ({answer.status}) at "
                                   f"{answer.url}: {self._detail(answer)}")
        if not 200 <= answer.status < 300:
            raise self._refused(answer, "check")
        return [f"{self.provider} API at {self.base_url} reachable", "API key accepted",
                *self._check_lines(answer)]

    # --- provider hooks ---------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _send_request(self, message: OutgoingMessage) -> ApiRequest:
        raise NotImplementedError

    def _accepted(self, answer: ApiAnswer, message: OutgoingMessage) -> SendResult:
        raise NotImplementedError

    def _check_request(self) -> ApiRequest:
        raise NotImplementedError

    def _check_lines(self, answer: ApiAnswer) -> list[str]:
        return []

    def _detail(self, answer: ApiAnswer) -> str:
        """The provider's error message, one line."""
        return _one_line(answer.text) or f"HTTP {answer.status}"

    def _refused(self, answer: ApiAnswer, subject: str) -> RelayError:
        """The error for a non-2xx answer; providers first look for their own cases."""
        return self.status_error(answer, subject, self._detail(answer))

    # --- shared mapping ---------------------------------------------------------------------

    def status_error(self, answer: ApiAnswer, subject: str, detail: str) -> RelayError:
        """What the providers share: 401/403 our key or account, 404 our URL or domain, 429
        slow down, 413 too big, 5xx theirs; any other 4xx refuses this message."""
        status = answer.status
        who = f"{self.provider} ({status})"
        if status == 401:
            return self.key_rejected(f"{who} rejected the API key, {subject}", detail, status)
        if status == 403:
            return self.refuses_us(f"{who} refuses us, {subject}: {detail}", detail, status)
        if status == 404:
            return self.refuses_us(f"{who}: {answer.url} not found (check base_url and "
                                   f"domain), {subject}: {detail}", detail, status)
        if status == 429:
            return self.throttled(answer, subject, detail)
        if status == 413:
            return RelayPermanentError(f"{who}: message too large, {subject}: {detail}",
                                       text=f"message too large: {detail}", category="toolarge",
                                       reason="mesgtoobig", http_status=status)
        if status >= 500:
            return RelayTemporaryError(f"{who} failed, {subject}: {detail}", text=detail,
                                       category="soft", reason="systemerror",
                                       http_status=status, relay_down=True)
        if status < 400:
            return RelayTemporaryError(f"{who} failed, {subject}: {detail}", text=detail,
                                       category="unknown", reason="onhold", http_status=status)
        return RelayPermanentError(f"{who} refused {subject}: {detail}", text=detail,
                                   category="policy", reason="contenterror", http_status=status)

    def throttled(self, answer: ApiAnswer, subject: str, detail: str) -> RelayTemporaryError:
        """429: the provider limits OUR account's rate (the relay is throttled, not the
        receiver: campaigns.delivery.pacing.throttle_target)."""
        wait = retry_after_s(answer.headers)
        return RelayTemporaryError(
            f"{self.provider} rate limited {subject} ({answer.status}): {detail}",
            text=f"rate limited: {detail}", category="throttle", reason="ratelimited",
            http_status=answer.status, retry_after_s=self.throttle_wait_s if wait is None else wait)

    def key_rejected(self, message: str, detail: str, status: int | None = None) -> RelayConfigError:
        """Our key is refused: our relay refusing us (the campaign pauses)."""
        return RelayConfigError(f"{message}: {detail}", text=f"authentication failed: {detail}",
                                category="relay", reason="securityerror", http_status=status)

    def refuses_us(self, message: str, detail: str, status: int | None = None) -> RelayConfigError:
        """Our account, sender or domain is refused (not this recipient): the campaign pauses."""
        return RelayConfigError(message, text=detail, category="relay", reason="norelaying",
                                http_status=status)

    def recipient_refused(self, subject: str, detail: str, status: int | None = None,
                          reason: str = "userunknown") -> RelayError:
        """This recipient is refused for good (a malformed address, or one the provider
        will not mail again: `reason` "suppressed")."""
        return RelayPermanentError(f"{self.provider} refused the recipient, {subject}: {detail}",
                                   text=detail, category="hard", reason=reason,
                                   http_status=status)

    # --- the exchange -----------------------------------------------------------------------

    def _exchange(self, request: ApiRequest, subject: str, *, sending: bool) -> ApiAnswer:
        """Send `request`; the one translation of httpx's exceptions. A failure before the
        request was out is temporary; after it (no answer read) the message is in doubt."""
        self.open()
        assert self._client is not None
        try:
            response = self._client.request(request.method, request.path, json=request.json,
                                             data=request.data, files=request.files)
        except httpx.HTTPError as err:
            raise self._transport_error(err, subject, sending) from err
        text = _scrub(response.text, self._secrets())
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        return ApiAnswer(response.status_code, response.headers, body, text,
                         str(response.request.url))

    def _transport_error(self, err: httpx.HTTPError, subject: str, sending: bool) -> RelayError:
        where = f"{self.provider} at {self.base_url}"
        detail = _scrub(str(err) or type(err).__name__, self._secrets())
        if isinstance(err, (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.ProxyError)):
            return RelayConfigError(f"{where}: {detail}")
        if isinstance(err, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in detail:
            return RelayConfigError(f"TLS certificate verification failed for {where}: {detail} "
                                    "(set ca_file, or tls_verify = false)")
        if isinstance(err, httpx.ConnectError) and _caused_by(err, socket.gaierror):
            host = httpx.URL(self.base_url).host
            return RelayConfigError(f"{where}: cannot resolve host {host}: {detail}")
        if sending and isinstance(err, (httpx.ReadTimeout, httpx.ReadError,
                                        httpx.RemoteProtocolError)):
            return RelayInDoubt(f"{where}: no answer after {subject} was sent ({detail}); "
                                "the provider may have accepted it")
        what = f"{subject} not sent" if sending else f"{subject} failed"
        return RelayTemporaryError(f"{where}: {what}: {detail}", relay_down=True)

    def _secrets(self) -> list[str]:
        key = self._config.api_key
        return [key.reveal()] if key else []


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "..."
