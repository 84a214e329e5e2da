"""Relays: where messages are handed over. `build_relay(config)` picks one by `config.kind`.

A kind is resolved, once at start-up (settings call `validate_config` for every configured
relay), as a built-in name, then an entry point in the group "campaigns.relays", then a dotted
path "package.module:Class". The class is called with the RelayConfig and must implement
campaigns.relays.base.Relay: anything else (a function such as `os:system`, a class without
`send`) is a ConfigError at start-up.

Built-ins are imported lazily: `ses` needs boto3 (extra "ses"), the HTTP APIs need httpx
(extra "http"). A missing one is a ConfigError that names the extra to install, as in
"relay 'x': kind 'ses' needs boto3: pip install 'campaigns[ses]'".

May import: errors, settings, tls; never a database, the
ledger or Celery (checked by import-linter)."""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from campaigns.errors import ConfigError
from campaigns.relays.base import OutgoingMessage, Relay, SendResult
from campaigns.relays.file import FileRelay
from campaigns.relays.smtp import SmtpRelay
from campaigns.settings import RelayConfig

__all__ = ["BUILTIN_KINDS", "BuiltinKind", "FileRelay", "OutgoingMessage", "Relay", "SendResult",
           "SmtpRelay", "available_kinds", "build_relay", "validate_config"]

ENTRY_POINT_GROUP = "campaigns.relays"


@dataclass(frozen=True, slots=True)
class BuiltinKind:
    target: str                     # "package.module:Class", imported on first use
    summary: str                    # one line for `campaigns relays list`
    group: str = "core"             # core | api | trial: how unknown-kind errors list them
    extra: str | None = None        # the pip extra that installs `requires`
    requires: tuple[str, ...] = ()  # top-level modules the target imports


BUILTIN_KINDS: dict[str, BuiltinKind] = {
    "smtp": BuiltinKind("campaigns.relays.smtp:SmtpRelay",
                        "SMTP relay (presets: ses-<region>, sendgrid, mailgun-us/eu, postmark, ...)"),
    "file": BuiltinKind("campaigns.relays.file:FileRelay", "writes .eml files into a folder"),
    "ses": BuiltinKind("campaigns.relays.ses:SesRelay", "Amazon SES API v2, raw MIME",
                       "api", "ses", ("boto3",)),
    "sendgrid": BuiltinKind("campaigns.relays.sendgrid:SendGridRelay", "SendGrid v3 mail/send API",
                            "api", "http", ("httpx",)),
    "mailgun": BuiltinKind("campaigns.relays.mailgun:MailgunRelay", "Mailgun messages.mime API",
                           "api", "http", ("httpx",)),
    "postmark": BuiltinKind("campaigns.relays.postmark:PostmarkRelay", "Postmark /email API",
                            "api", "http", ("httpx",)),
    "console": BuiltinKind("campaigns.relays.console:ConsoleRelay",
                           "prints one line per message to stdout, sends nothing", "trial"),
}
_GROUP_TITLES = {"core": "", "api": "provider APIs: ", "trial": "for trials: "}


def build_relay(config: RelayConfig) -> Relay:
    """The relay object for `config` (not connected yet). Raises ConfigError when the kind is
    unknown, its optional dependency is missing, or its options are wrong."""
    return _factory(config)(config)


def validate_config(config: RelayConfig) -> None:
    """Resolve the kind now (start-up), and for a built-in kind check its keys by building the
    relay object, which connects to nothing. ConfigError otherwise."""
    factory = _factory(config)
    if config.kind in BUILTIN_KINDS:
        factory(config)


def available_kinds() -> list[tuple[str, str, str]]:
    """(kind, where it comes from, summary or what is missing) for `campaigns relays list`."""
    rows = []
    for kind, spec in BUILTIN_KINDS.items():
        missing = [m for m in spec.requires if not _installed(m)]
        note = _missing_message(kind, spec, missing[0]) if missing else spec.summary
        rows.append((kind, "built in", note))
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        rows.append((ep.name, "entry point", ep.value))
    return rows


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):   # ValueError: sys.modules holds None for it
        return False


def _factory(config: RelayConfig) -> Callable[[RelayConfig], Relay]:
    kind = config.kind
    if kind in BUILTIN_KINDS:
        return _builtin(config.name, kind, BUILTIN_KINDS[kind])
    plugins = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    if len(plugins) > 1:
        sources = ", ".join(ep.value for ep in plugins)
        raise ConfigError(f"relay '{config.name}': kind '{kind}' is registered twice ({sources})")
    target = plugins[0].value if plugins else kind
    if plugins or ":" in kind:
        return _import(config.name, kind, target)
    raise ConfigError(f"relay '{config.name}': unknown kind '{kind}' (known kinds: "
                      f"{_known_kinds()}; or a class as 'package.module:Class')")


def _known_kinds() -> str:
    """"file, smtp; provider APIs: mailgun, ...; for trials: console; entry points: ..."."""
    parts = []
    for group, title in _GROUP_TITLES.items():
        names = sorted(k for k, spec in BUILTIN_KINDS.items() if spec.group == group)
        parts.append(title + ", ".join(names))
    plugins = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(BUILTIN_KINDS))
    if plugins:
        parts.append("entry points: " + ", ".join(plugins))
    return "; ".join(parts)


def _builtin(name: str, kind: str, spec: BuiltinKind) -> Callable[[RelayConfig], Relay]:
    for module in spec.requires:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"relay '{name}': {_missing_message(kind, spec, module)}"
                              f" ({err})") from err
    return _import(name, kind, spec.target)


def _missing_message(kind: str, spec: BuiltinKind, module: str) -> str:
    return f"kind '{kind}' needs {module}: pip install 'campaigns[{spec.extra}]'"


def _import(name: str, kind: str, target: str) -> Callable[[RelayConfig], Relay]:
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"relay '{name}': kind '{kind}': cannot load {target}: {err}") from err
    return _relay_class(name, kind, target, obj)


_PROTOCOL = ("open", "send", "close", "check")   # the methods of campaigns.relays.base.Relay


def _relay_class(name: str, kind: str, target: str, obj: object) -> Callable[[RelayConfig], Relay]:
    """`obj` when it is a class with every method of the relay protocol, else ConfigError:
    a dotted path may name anything importable (`os:system`), checked here at start-up."""
    where = f"relay '{name}': kind '{kind}': {target}"
    if not isinstance(obj, type):
        raise ConfigError(f"{where} is a {type(obj).__name__}, not a class implementing the "
                          "relay protocol (campaigns.relays.base.Relay)")
    missing = [method for method in _PROTOCOL if not callable(getattr(obj, method, None))]
    if missing:
        raise ConfigError(f"{where} does not implement the relay protocol "
                          f"(campaigns.relays.base.Relay): no {', '.join(missing)} method")
    return obj
