"""Amazon SES through the v2 API (boto3 "sesv2"): SendEmail with Content.Raw, so our headers and
attachments go out byte for byte.

FromEmailAddress is our envelope sender (the VERP bounce address): SES uses it as the
message's source, so forwarded bounces come back to it; its domain must be a verified SES
identity. Destination holds only the envelope recipient (SES ignores the To header then).
One client per relay object (= per worker process), with botocore's own retries off: a
throttled or failed message goes back to our queue, which honours the wait.
Config: region, access_key_id / secret_access_key (or *_env; none: boto3's default chain),
endpoint_url, configuration_set.
"""
from __future__ import annotations

import re
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from campaigns.errors import (ConfigError, RelayConfigError, RelayError, RelayInDoubt,
                              RelayPermanentError, RelayTemporaryError)
from campaigns.relays.base import OutgoingMessage, SendResult
from campaigns.settings import RelayConfig

# SES: "the API produces a ThrottlingException error ... Daily message quota exceeded /
# Maximum sending rate exceeded ... wait for an interval of up to 10 minutes, then retry";
# the v2 API names the rate limit TooManyRequestsException (429).
THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException",
                            "LimitExceededException"})
# Our keys, account or configuration: the campaign pauses until a person acts.
AUTH_CODES = frozenset({
    "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
    "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken",
    "ExpiredToken", "ExpiredTokenException", "AuthFailure"})
ACCOUNT_CODES = frozenset({
    "AccountSuspendedException", "SendingPausedException", "MailFromDomainNotVerifiedException",
    "NotFoundException", "AccessDenied", "AccessDeniedException", "OptInRequired"})
_DAILY_QUOTA = re.compile(r"daily (message|sending) quota", re.I)
# MessageRejected "Email address is not verified. The following identities failed the check in
# region EU-WEST-1: ..." is the sandbox (or an unverified sender): every message would fail.
_NOT_VERIFIED = re.compile(r"not verified|did not have authority|not authorized to send", re.I)
# BadRequestException "Illegal address", InvalidParameterValue "Missing domain",
# "Local address contains control or whitespace"
_BAD_ADDRESS = re.compile(r"illegal address|missing (final '@domain'|domain)|local address|"
                          r"domain contains|invalid (email )?address", re.I)
# MessageRejected "Email address is not verified" aside, SES refuses a message for its content
_VIRUS = re.compile(r"\bvirus", re.I)
_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.S)
_XML_CODE = re.compile(r"<Code>(.*?)</Code>", re.S)
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


class SesRelay:
    """The Relay contract (campaigns.relays.base.Relay) over SES v2 SendEmail."""

    def __init__(self, config: RelayConfig) -> None:
        if not config.region or not _REGION.fullmatch(config.region):
            raise ConfigError(f"relay '{config.name}': kind 'ses' needs region = \"eu-west-1\" "
                              f"(an AWS region), got {config.region!r}")
        if bool(config.access_key_id) != bool(config.secret_access_key):
            raise ConfigError(f"relay '{config.name}': set both access_key_id and "
                              "secret_access_key, or neither (boto3's default credentials)")
        self.name = config.name
        self.region = config.region
        self._config = config
        self._client: Any = None

    def open(self) -> None:
        """Make the SES client (no network yet; credentials are looked up now)."""
        if self._client is not None:
            return
        cfg = self._config
        session = boto3.session.Session(
            aws_access_key_id=cfg.access_key_id.reveal() if cfg.access_key_id else None,
            aws_secret_access_key=cfg.secret_access_key.reveal() if cfg.secret_access_key else None,
            region_name=self.region)
        verify: bool | str = (cfg.ca_file or True) if cfg.tls_verify else False
        self._client = session.client(
            "sesv2", endpoint_url=cfg.endpoint_url, verify=verify,
            config=Config(connect_timeout=cfg.timeout_s, read_timeout=cfg.timeout_s,
                          retries={"mode": "standard", "total_max_attempts": 1},
                          user_agent_extra="campaigns"))

    def send(self, message: OutgoingMessage) -> SendResult:
        """SendEmail with the raw message (see Relay.send)."""
        kwargs: dict[str, Any] = {
            "FromEmailAddress": message.sender,
            "Destination": {"ToAddresses": [message.recipient]},
            "Content": {"Raw": {"Data": message.data}},
        }
        if self._config.configuration_set:
            kwargs["ConfigurationSetName"] = self._config.configuration_set
        subject = f"{message.message_id} to <{message.recipient}>"
        reply = self._call("send_email", subject, sending=True, **kwargs)
        return SendResult(250, "2.0.0", f"SES {self.region} accepted", reply.get("MessageId"))

    def close(self) -> None:
        """Close the client's connections; never raises."""
        client, self._client = self._client, None
        try:
            if client is not None:
                client.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass

    def check(self) -> list[str]:
        """GetAccount (and GetConfigurationSet when one is set): no mail is sent."""
        account = self._call("get_account", "check", sending=False)
        quota = account.get("SendQuota", {})
        lines = [f"SES {self.region} reached, credentials accepted (GetAccount)",
                 f"production access: {'yes' if account.get('ProductionAccessEnabled') else 'no (sandbox: verified recipients only)'}",
                 f"quota: {quota.get('Max24HourSend', '?')} per 24 h, {quota.get('MaxSendRate', '?')}/s, "
                 f"{quota.get('SentLast24Hours', '?')} sent in the last 24 h"]
        if not account.get("SendingEnabled", True):
            raise RelayConfigError(f"SES {self.region}: sending is paused for this account "
                                   f"(enforcement status {account.get('EnforcementStatus', '?')})")
        if self._config.configuration_set:
            self._call("get_configuration_set", "check", sending=False,
                       ConfigurationSetName=self._config.configuration_set)
            lines.append(f"configuration set '{self._config.configuration_set}' exists")
        return lines

    # --- errors ------------------------------------------------------------------------------

    def _call(self, operation: str, subject: str, *, sending: bool, **kwargs: Any) -> dict[str, Any]:
        """One API call; the one translation of botocore's exceptions."""
        self.open()
        try:
            reply: dict[str, Any] = getattr(self._client, operation)(**kwargs)
            return reply
        except botocore.exceptions.ClientError as err:
            raise self._client_error(err, subject) from err
        except botocore.exceptions.BotoCoreError as err:
            raise self._transport_error(err, subject, sending) from err

    def _client_error(self, err: botocore.exceptions.ClientError, subject: str) -> RelayError:
        code, text, status = _error_parts(err)
        text = self._scrub(text)
        detail = f"{code}: {text}"
        where = f"SES {self.region}"
        kw: dict[str, Any] = {"text": detail, "http_status": status or None}
        if code in THROTTLE_CODES or status == 429:
            if _DAILY_QUOTA.search(text):
                # the account's own daily quota: our relay refusing us until tomorrow
                return RelayTemporaryError(
                    f"{where} throttled {subject}: {detail}", text=f"Throttling: {detail}",
                    category="relay", reason="norelaying", http_status=status or None,
                    retry_after_s=600.0)
            return RelayTemporaryError(
                f"{where} throttled {subject}: {detail}", text=f"Throttling, rate limited: {detail}",
                category="throttle", reason="ratelimited", http_status=status or None,
                retry_after_s=1.0)
        if code in AUTH_CODES or status == 401:
            return RelayConfigError(f"{where} rejected the credentials, {subject}: {detail}",
                                    text=f"authentication failed: {detail}", category="relay",
                                    reason="securityerror", http_status=status or None)
        if code in ACCOUNT_CODES or status == 403 or (
                code == "MessageRejected" and _NOT_VERIFIED.search(text)):
            return RelayConfigError(f"{where} refuses us, {subject}: {detail}",
                                    category="relay", reason="norelaying", **kw)
        if status >= 500 or code in ("InternalFailure", "ServiceUnavailable",
                                     "InternalServiceErrorException"):
            return RelayTemporaryError(f"{where} failed, {subject}: {detail}", category="soft",
                                       reason="systemerror", relay_down=True, **kw)
        if _BAD_ADDRESS.search(text):
            return RelayPermanentError(f"{where} refused the recipient, {subject}: {detail}",
                                       category="hard", reason="userunknown", **kw)
        # MessageRejected "the message contains a virus", BadRequestException, ...
        reason = "virusdetected" if _VIRUS.search(text) else "contenterror"
        return RelayPermanentError(f"{where} refused {subject}: {detail}", category="policy",
                                   reason=reason, **kw)

    def _transport_error(self, err: botocore.exceptions.BotoCoreError, subject: str,
                         sending: bool) -> RelayError:
        where, detail = f"SES {self.region}", self._scrub(str(err))
        if isinstance(err, (botocore.exceptions.NoCredentialsError,
                            botocore.exceptions.PartialCredentialsError)):
            return RelayConfigError(f"{where}: no AWS credentials ({detail}); set access_key_id "
                                    "and secret_access_key, or the AWS environment")
        if isinstance(err, botocore.exceptions.SSLError):
            return RelayConfigError(f"{where}: TLS failed: {detail} (set ca_file, or tls_verify = false)")
        if isinstance(err, botocore.exceptions.ParamValidationError):
            return RelayPermanentError(f"{where}: {subject} cannot be sent: {detail}")
        if sending and isinstance(err, (botocore.exceptions.ReadTimeoutError,
                                        botocore.exceptions.ConnectionClosedError)):
            return RelayInDoubt(f"{where}: no answer after {subject} was sent ({detail}); "
                                "SES may have accepted it")
        return RelayTemporaryError(f"{where}: {subject} not sent: {detail}", relay_down=True)

    def _scrub(self, text: str) -> str:
        for secret in (self._config.secret_access_key, self._config.access_key_id):
            if secret and secret.reveal():
                text = text.replace(secret.reveal(), "***")
        return text


def _error_parts(err: botocore.exceptions.ClientError) -> tuple[str, str, int]:
    """(code, message, HTTP status). Some endpoints answer a JSON API with an XML error body,
    which botocore leaves whole in the message: read Code and Message out of it."""
    error = err.response.get("Error", {})
    code, text = str(error.get("Code", "")), str(error.get("Message", ""))
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if text.lstrip().startswith("<"):
        xml_code, xml_text = _XML_CODE.search(text), _XML_MESSAGE.search(text)
        code = xml_code.group(1) if xml_code else code
        text = xml_text.group(1) if xml_text else " ".join(text.split())
    return code, " ".join(text.split()), status
