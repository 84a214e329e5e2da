"""Where each provider lives: SMTP presets (`preset = "sendgrid"` in a [relays.NAME] table of
kind "smtp") and the base URLs of the HTTP APIs.

A preset fills host, port, security, and the username where the provider fixes it; keys
written in the table win. Only this table changes when a provider moves. No third-party
imports: campaigns.relays.config reads it while settings load the TOML file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from campaigns.errors import ConfigError


#: A relay's `security` (kind smtp): plain, STARTTLS on the plain port, or TLS from the start.
SECURITY_MODES = ("none", "starttls", "tls")


@dataclass(frozen=True, slots=True)
class SmtpPreset:
    host: str
    port: int
    security: str                 # none | starttls | tls
    username: str | None = None   # set only where the provider fixes it
    hint: str = ""                # what goes in username/password, for error messages


SMTP_PRESETS: dict[str, SmtpPreset] = {
    # SendGrid: "the username is the literal string apikey, the password is the API key".
    "sendgrid": SmtpPreset("smtp.sendgrid.net", 587, "starttls", "apikey",
                           "password = the API key"),
    "mailgun-us": SmtpPreset("smtp.mailgun.org", 587, "starttls",
                             hint="username = the domain's SMTP login, e.g. "
                                  "postmaster@mg.example.com, password = its SMTP password"),
    "mailgun-eu": SmtpPreset("smtp.eu.mailgun.org", 587, "starttls",
                             hint="username = the domain's SMTP login, e.g. "
                                  "postmaster@mg.example.com, password = its SMTP password"),
    "postmark": SmtpPreset("smtp.postmarkapp.com", 587, "starttls",
                           hint="username and password = the server API token"),
    "brevo": SmtpPreset("smtp-relay.brevo.com", 587, "starttls",
                        hint="username = the account's SMTP login, password = an SMTP key"),
    "microsoft365": SmtpPreset("smtp.office365.com", 587, "starttls",
                               hint="username = the mailbox (SMTP AUTH enabled for it), "
                                    "password = its password"),
    "gmail": SmtpPreset("smtp.gmail.com", 587, "starttls",
                        hint="username = the address, password = an app password"),
    "aruba": SmtpPreset("smtps.aruba.it", 465, "tls",
                        hint="username = the full mailbox address, password = its password"),
}

# Amazon SES SMTP endpoints are per region: "ses-eu-west-1" -> email-smtp.eu-west-1.amazonaws.com
_SES_PRESET = re.compile(r"ses-([a-z]{2}(?:-[a-z]+)+-\d{1,2})")

# The HTTP APIs' own base URLs (`base_url` in the table overrides them, e.g. for tests).
API_BASE_URLS: dict[str, str] = {
    "sendgrid": "https://api.sendgrid.com",
    "postmark": "https://api.postmarkapp.com",
    "mailgun-us": "https://api.mailgun.net",
    "mailgun-eu": "https://api.eu.mailgun.net",
}
MAILGUN_REGIONS = ("us", "eu")


def known_presets() -> list[str]:
    return [*sorted(SMTP_PRESETS), "ses-<region> (e.g. ses-eu-west-1)"]


def smtp_preset(name: str, where: str) -> SmtpPreset:
    """The preset called `name`; ConfigError naming `where` and the known presets if none."""
    if name in SMTP_PRESETS:
        return SMTP_PRESETS[name]
    ses = _SES_PRESET.fullmatch(name)
    if ses:
        return SmtpPreset(f"email-smtp.{ses.group(1)}.amazonaws.com", 587, "starttls",
                          hint="username and password = SES SMTP credentials (not the AWS keys)")
    raise ConfigError(f"{where}: unknown preset {name!r} (known presets: "
                      f"{', '.join(known_presets())})")


def require_login(name: str, preset: SmtpPreset, username: str | None, password: bool,
                  where: str) -> None:
    """Every preset's relay requires SMTP AUTH: refuse, at start-up, a table that lacks the
    username or the password, saying what goes in them."""
    missing = [key for key, given in (("username", username), ("password", password)) if not given]
    if missing:
        raise ConfigError(f"{where}: preset '{name}' needs {' and '.join(missing)} "
                          f"(or {missing[-1]}_env) for SMTP AUTH: {preset.hint}")


def api_base_url(kind: str, region: str | None = None) -> str | None:
    """The provider's own base URL for an HTTP kind; Mailgun's depends on the region."""
    if kind == "mailgun":
        return API_BASE_URLS[f"mailgun-{region or 'us'}"] if (region or "us") in MAILGUN_REGIONS else None
    return API_BASE_URLS.get(kind)
