"""The `[webhooks]` table of the TOML file: who may post events to `campaigns api`.

Read apart from `campaigns.settings` (which does not know this table) by reading the same
file again, once at start-up. A provider whose secret is not configured accepts nothing:
its endpoint answers 403 to every request, so a forgotten key never means "trust anyone".

    [webhooks]
    listen = "127.0.0.1:8025"
    sendgrid_verification_key_env = "SENDGRID_WEBHOOK_KEY"   # base64 DER, as SendGrid shows it
    mailgun_signing_key_env = "MAILGUN_WEBHOOK_SIGNING_KEY"
    postmark_user = "postmark"
    postmark_password_env = "POSTMARK_WEBHOOK_PASSWORD"
    ses_topic_arns = ["arn:aws:sns:eu-west-1:123456789012:ses-events"]
    max_age_s = 300          # SendGrid and Mailgun timestamps older than this: a replay
    sns_max_age_s = 3600     # SNS retries one message for up to an hour, same Timestamp
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from campaigns.errors import ConfigError
from campaigns.settings import Secret, Settings, check_table, env_var_problem, shown

DEFAULT_LISTEN = "127.0.0.1:8025"
#: Hosts SNS serves its signing certificates and subscription URLs from (AWS regions, and
#: the China partition's amazonaws.com.cn).
DEFAULT_SNS_CERT_HOSTS = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"

_SECRETS = ("sendgrid_verification_key", "mailgun_signing_key", "postmark_password")
_KEYS = ({"listen", "postmark_user", "ses_topic_arns", "sns_cert_hosts", "max_age_s",
          "sns_max_age_s"} | set(_SECRETS) | {f"{name}_env" for name in _SECRETS})


@dataclass(frozen=True)
class WebhookConfig:
    """What each provider's endpoint checks. None (or an empty list) for a provider means
    its endpoint rejects everything."""

    listen: str = DEFAULT_LISTEN
    sendgrid_verification_key: Secret | None = None   # ECDSA P-256 public key, base64 DER
    mailgun_signing_key: Secret | None = None
    postmark_user: str | None = None
    postmark_password: Secret | None = None
    ses_topic_arns: tuple[str, ...] = ()
    sns_cert_hosts: str = DEFAULT_SNS_CERT_HOSTS
    max_age_s: float = 300.0
    sns_max_age_s: float = 3600.0

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)

    def describe(self) -> dict[str, Any]:
        """What may be shown to a person: which providers are configured, never a secret."""
        return {"listen": self.listen,
                "sendgrid": self.sendgrid_verification_key is not None,
                "mailgun": self.mailgun_signing_key is not None,
                "postmark": self.postmark_password is not None,
                "ses": bool(self.ses_topic_arns)}


def load_webhook_config(settings: Settings,
                        env: Mapping[str, str] | None = None) -> WebhookConfig:
    """The `[webhooks]` table of the settings' TOML file (defaults when there is no file or
    no table). `env` is where `*_env` keys are looked up (default: the process
    environment)."""
    path = settings.config_path
    if path is None:
        return WebhookConfig()
    return parse_webhook_config(_read_toml(path).get("webhooks", {}), str(path),
                                os.environ if env is None else env)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None


def parse_webhook_config(raw: Any, where: str, env: Mapping[str, str]) -> WebhookConfig:
    """Validate one `[webhooks]` table; errors name the file, the table and the field."""
    at = f"{where}: [webhooks]"
    raw = check_table(raw, at, set(_KEYS))
    d = WebhookConfig()
    secrets = {name: _secret(raw, name, at, env) for name in _SECRETS}
    if secrets["sendgrid_verification_key"] is not None:
        _check_sendgrid_key(secrets["sendgrid_verification_key"], at)
    user = raw.get("postmark_user")
    if (user is None) != (secrets["postmark_password"] is None):
        raise ConfigError(f"{at}: postmark_user and postmark_password (or postmark_password_env)"
                          " go together")
    return WebhookConfig(
        listen=_listen(raw.get("listen", d.listen), at),
        sendgrid_verification_key=secrets["sendgrid_verification_key"],
        mailgun_signing_key=secrets["mailgun_signing_key"],
        postmark_user=str(user) if user is not None else None,
        postmark_password=secrets["postmark_password"],
        ses_topic_arns=_arns(raw.get("ses_topic_arns", []), at),
        sns_cert_hosts=_pattern(raw.get("sns_cert_hosts", d.sns_cert_hosts), at),
        max_age_s=_seconds("max_age_s", raw.get("max_age_s", d.max_age_s), at),
        sns_max_age_s=_seconds("sns_max_age_s", raw.get("sns_max_age_s", d.sns_max_age_s), at))


def _secret(raw: dict[str, Any], name: str, at: str, env: Mapping[str, str]) -> Secret | None:
    if name in raw and f"{name}_env" in raw:
        raise ConfigError(f"{at}: give {name} or {name}_env, not both")
    if f"{name}_env" in raw:
        var = str(raw[f"{name}_env"])
        if not env.get(var):
            raise env_var_problem(at, f"{name}_env", var)
        return Secret(env[var].strip())
    if name in raw:
        if not isinstance(raw[name], str) or not raw[name].strip():
            raise ConfigError(f"{at}: '{name}' must be a non-empty string")
        return Secret(raw[name].strip())
    return None


def _check_sendgrid_key(key: Secret, at: str) -> None:
    """Fail at start-up, not at the first event, when the key is not what SendGrid shows
    (the message never repeats the key)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key
    try:
        public = load_der_public_key(base64.b64decode(key.reveal(), validate=True))
    except (ValueError, binascii.Error, TypeError):
        raise ConfigError(f"{at}: sendgrid_verification_key is not a base64 DER public key "
                          "(paste the Verification Key SendGrid shows)") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise ConfigError(f"{at}: sendgrid_verification_key must be an ECDSA P-256 key")


def _listen(value: Any, at: str) -> str:
    listen = str(value)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{at}: listen must be HOST:PORT such as 127.0.0.1:8025 "
                          f"(got {listen!r})")
    return listen


def _arns(value: Any, at: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(
            isinstance(v, str) and v.startswith("arn:") for v in value):
        raise ConfigError(f"{at}: ses_topic_arns must be a list of topic ARNs such as "
                          '["arn:aws:sns:eu-west-1:123456789012:ses-events"]')
    return tuple(value)


def _pattern(value: Any, at: str) -> str:
    try:
        re.compile(str(value))
    except re.error as err:
        raise ConfigError(f"{at}: sns_cert_hosts is not a valid regular expression: {err}") \
            from None
    return str(value)


def _seconds(name: str, value: Any, at: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{at}: '{name}' must be a number of seconds, "
                          f"{shown(name, value)}") from None
    if seconds < 1:
        raise ConfigError(f"{at}: '{name}' must be >= 1, got {seconds:g}")
    return seconds
