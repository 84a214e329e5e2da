"""One root exception for the whole domain; temporary vs permanent is a type."""
from __future__ import annotations


class CampaignsError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(CampaignsError):
    """The configuration (environment or TOML file) is wrong; the message says where."""


class InputError(CampaignsError):
    """Bad input a person can fix: names the file, line and field, and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        if field:
            prefix += f"field '{field}': "
        super().__init__(prefix + message)
        self.file, self.line, self.field = file, line, field


class NotFound(CampaignsError):
    """A named object (list, template, campaign, relay) does not exist."""


class StateError(CampaignsError):
    """The operation is not allowed in the object's current status."""


class TemplateRenderError(CampaignsError):
    """A template failed to compile or render; names template, part, line and variable."""

    def __init__(self, message: str, *, template: str, part: str, line: int | None = None,
                 variable: str | None = None) -> None:
        where = f"template '{template}' ({part}"
        where += f", line {line})" if line else ")"
        detail = f": undefined variable '{variable}'" if variable else ""
        super().__init__(f"{where}{detail}: {message}" if not variable else f"{where}{detail} ({message})")
        self.template, self.part, self.line, self.variable = template, part, line, variable


class RelayError(CampaignsError):
    """Base for everything a relay raises: what the relay knows of the failure.

    `code`/`enhanced`/`text`: a server's own reply, set only when a server said it (an SMTP
    reply, or a provider that passes an SMTP code or enhanced status in its answer); never
    invented. `category` (a campaigns.bounces BounceCategory value: "throttle", "relay",
    "toolarge", "hard", "policy", "soft", ...) and `reason` (its fine reason, "ratelimited")
    are set by a relay that knows what the failure means (an HTTP status, a provider's error
    field); campaigns.delivery.sending classifies the failure once: by `category` when
    given, else by the SMTP reply (campaigns.bounces.classify_reply), else as a network
    error. `http_status`: an HTTP API's answer status, when there was one."""

    def __init__(self, message: str, *, code: int | None = None, enhanced: str | None = None,
                 text: str | None = None, category: str | None = None,
                 reason: str | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.enhanced, self.text = code, enhanced, text
        self.category, self.reason, self.http_status = category, reason, http_status


class RelayTemporaryError(RelayError):
    """The message was not accepted now but may be later (4xx, dropped connection before DATA).

    `retry_after_s` is the server's hint when it gave one. `relay_down`: the relay itself
    could not be reached or is failing (no connection, no reply, a provider's 5xx): never the
    recipient's fault, so it trips the relay's circuit breaker and spends no attempt. Said
    by the relay that raises it, never inferred."""

    def __init__(self, message: str, *, retry_after_s: float | None = None,
                 relay_down: bool = False, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s
        self.relay_down = relay_down


class RelayPermanentError(RelayError):
    """The receiver refused this recipient or message for good (5xx): never retried."""


class RelayConfigError(RelayError):
    """Our own relay refuses us (bad credentials, TLS failure, relaying denied).

    Never the recipient's fault: the campaign pauses until a person fixes the relay."""


class RelayInDoubt(RelayError):
    """The connection broke after the message body was sent and before the reply:
    the relay may or may not have accepted it. The delivery is held, never resent blindly."""
