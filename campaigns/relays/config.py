"""Each [relays.NAME] table, read and checked by the relays package itself (settings hands
the raw table over, `campaigns.settings.hooks` "relay"): the SMTP preset and security, the
secrets given as KEY or KEY_env, and the kind resolved and its keys checked by building the
relay object (`validate_config`), at load; `dkim` (true by default), which every kind
accepts: false for a provider that signs messages itself. `describe` is what `relays list` shows."""
from __future__ import annotations

import os
from typing import Any

from campaigns.errors import ConfigError
from campaigns.relays import validate_config
from campaigns.relays.presets import SECURITY_MODES, api_base_url, require_login, smtp_preset
from campaigns.settings import RelayConfig, Secret, UnsetSecret, clamp, shown, unset_secrets


def relay_config(name: str, raw: dict[str, Any], where: str) -> RelayConfig:
    """One [relays.NAME] table. A `preset` (kind smtp) fills host, port, security and a fixed
    username; keys in the table win. Each secret is given as KEY or KEY_env (the name of an
    environment variable). The kind is resolved here, at start-up: an unknown kind, a missing
    optional dependency or a missing key of a built-in kind is a ConfigError now, not at the
    first message."""
    at = f"{where}: [relays.{name}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a table")
    secrets = ("password", "api_key", "access_key_id", "secret_access_key")
    texts = ("preset", "base_url", "domain", "region", "message_stream", "endpoint_url",
             "configuration_set")
    known = {"kind", "host", "port", "security", "username", "timeout_s", "tls_verify",
             "ca_file", "helo_name", "path", "warmup", "dkim", *texts, *secrets,
             *(f"{key}_env" for key in secrets)}

    def secret(key: str) -> Secret | None:
        if f"{key}_env" in raw:
            env_name = str(raw[f"{key}_env"])
            if env_name not in os.environ:   # an error only when the relay is used or checked
                return UnsetSecret(at, f"{key}_env", env_name)
            return Secret(os.environ[env_name])
        return Secret(str(raw[key])) if key in raw else None

    def text(key: str) -> str | None:
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{at}: {key} must be a non-empty string, {shown(key, value)}")
        return value.strip() if value else None

    dkim = raw.get("dkim", True)
    if not isinstance(dkim, bool):   # every kind: false for a provider that signs itself
        raise ConfigError(f"{at}: dkim must be true or false (false: this relay's provider "
                          f"signs with DKIM itself), {shown('dkim', dkim)}")
    kind = str(raw.get("kind", "smtp"))
    preset_name = text("preset")
    if preset_name and kind != "smtp":
        raise ConfigError(f"{at}: preset is for kind 'smtp' (this relay is kind '{kind}')")
    preset = smtp_preset(preset_name, at) if preset_name else None
    security = str(raw.get("security", preset.security if preset else "none")).lower()
    if security not in SECURITY_MODES:
        raise ConfigError(f"{at}: security must be one of {', '.join(SECURITY_MODES)}, "
                          f"{shown('security', security)}")
    default_port = {"none": 25, "starttls": 587, "tls": 465}[security]
    if preset and "security" not in raw:
        default_port = preset.port
    config = RelayConfig(
        name=name, kind=kind, host=str(raw.get("host", preset.host if preset else "localhost")),
        port=clamp("port", raw.get("port", default_port), int, 1, at),
        security=security, username=raw.get("username", preset.username if preset else None),
        password=secret("password"),
        timeout_s=clamp("timeout_s", raw.get("timeout_s", 30), float, 0.1, at),
        tls_verify=bool(raw.get("tls_verify", True)), ca_file=raw.get("ca_file"),
        helo_name=raw.get("helo_name"), path=raw.get("path"),
        options={k: v for k, v in raw.items() if k not in known},
        preset=preset_name, api_key=secret("api_key"), base_url=text("base_url"),
        domain=text("domain"), region=text("region"), message_stream=text("message_stream"),
        access_key_id=secret("access_key_id"), secret_access_key=secret("secret_access_key"),
        endpoint_url=text("endpoint_url"), configuration_set=text("configuration_set"),
        dkim=dkim,
    )
    if preset and preset_name:
        require_login(preset_name, preset, config.username, bool(config.password), at)
    try:
        validate_config(config)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return config


def describe(config: RelayConfig) -> dict[str, Any]:
    """What may be shown to a person: everything but the secrets."""
    out: dict[str, Any] = {"name": config.name, "kind": config.kind}
    if config.kind == "smtp":
        out.update(host=config.host, port=config.port, security=config.security,
                   username=config.username, password=_masked(config.password))
        if config.preset:
            out["preset"] = config.preset
    elif config.kind == "ses":
        unset = unset_secrets(config)
        out.update(region=config.region, credentials=unset[0].note if unset else (
            "access key ***" if config.access_key_id
            else "AWS default chain (environment, profile, instance role)"))
        out.update({k: v for k, v in (("endpoint_url", config.endpoint_url),
                                      ("configuration_set", config.configuration_set)) if v})
    elif config.kind in ("sendgrid", "mailgun", "postmark"):
        out.update(base_url=config.base_url or api_base_url(config.kind, config.region),
                   api_key=_masked(config.api_key))
        if config.kind == "mailgun":
            out.update(domain=config.domain, region=config.region or "us")
        if config.kind == "postmark":
            out["message_stream"] = config.message_stream or "outbound"
    if config.path:
        out["path"] = config.path
    if not config.dkim:
        out["dkim"] = "off (the provider signs)"
    return out


def _masked(secret: Secret | None) -> str | None:
    """A secret as `describe` shows it: *** or what is wrong with it, never its value."""
    if isinstance(secret, UnsetSecret):
        return secret.note
    return "***" if secret else None
