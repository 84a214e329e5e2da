"""Relays: where messages are handed over. `build_relay(config)` picks one by `config.kind`.

A kind is resolved, once at start-up, as a built-in name ("smtp", "file"), then an entry point
in the group "campaigns.relays", then a dotted path "package.module:Class". The class is called
with the RelayConfig and must implement campaigns.relays.base.Relay.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

from campaigns.errors import ConfigError
from campaigns.relays.base import OutgoingMessage, Relay, SendResult
from campaigns.relays.file import FileRelay
from campaigns.relays.smtp import SmtpRelay
from campaigns.settings import RelayConfig

__all__ = ["BUILTIN_KINDS", "FileRelay", "OutgoingMessage", "Relay", "SendResult", "SmtpRelay",
           "build_relay"]

ENTRY_POINT_GROUP = "campaigns.relays"
BUILTIN_KINDS: dict[str, Callable[[RelayConfig], Relay]] = {"smtp": SmtpRelay, "file": FileRelay}


def build_relay(config: RelayConfig) -> Relay:
    """The relay object for `config` (not connected yet). Raises ConfigError when the kind is
    unknown or its options are wrong."""
    return _factory(config)(config)


def _factory(config: RelayConfig) -> Callable[[RelayConfig], Relay]:
    kind = config.kind
    if kind in BUILTIN_KINDS:
        return BUILTIN_KINDS[kind]
    plugins = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    if len(plugins) > 1:
        sources = ", ".join(ep.value for ep in plugins)
        raise ConfigError(f"relay '{config.name}': kind '{kind}' is registered twice ({sources})")
    target = plugins[0].value if plugins else kind
    if plugins or ":" in kind:
        return _import(config.name, kind, target)
    known = sorted({*BUILTIN_KINDS, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    raise ConfigError(f"relay '{config.name}': unknown kind '{kind}' (known kinds: "
                      f"{', '.join(known)}; or a class as 'package.module:Class')")


def _import(name: str, kind: str, target: str) -> Callable[[RelayConfig], Relay]:
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"relay '{name}': kind '{kind}': cannot load {target}: {err}") from err
    if not callable(obj):
        raise ConfigError(f"relay '{name}': kind '{kind}': {target} is not a class")
    return obj
