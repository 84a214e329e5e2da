"""Where a table only a domain module understands is checked: by that module. Settings reads
TOML and the environment into typed, generic tables and hands each such table to its owner
(anymail's pattern: a backend reads and checks its own settings), at load, so a malformed
table still fails at start-up naming the file.

Owners are named here as "module:function" and imported on first use: settings imports no
domain module, and a load imports what it imported before (the relays, the IMAP reader, the
renderer's limits) plus campaigns.delivery.pools (no Redis import) and, when a [dkim] table
is set, campaigns.content.dkim (dkimpy); `campaigns --help` nothing more.

  relay           (name, table, where) -> RelayConfig   one [relays.NAME], kind resolved
  relay.describe  (RelayConfig) -> dict                 what `relays list` shows
  pools           (table, relays, where) -> {name: PoolConfig}
  bounces.imap    (table, where) -> ImapConfig          InputError naming the key
  templates       (TemplatesConfig) -> None             the renderer's limits, per process
  dkim.key        (path, "rsa"|"ed25519", where) -> None   a [dkim] key file parses
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

OWNERS: dict[str, str] = {
    "relay": "campaigns.relays.config:relay_config",
    "relay.describe": "campaigns.relays.config:describe",
    "pools": "campaigns.delivery.pools:pool_configs",
    "bounces.imap": "campaigns.intake.imap:parse_imap_config",
    "templates": "campaigns.content.render_limits:configure_from",
    "dkim.key": "campaigns.content.dkim:check_key",
}
_resolved: dict[str, Callable[..., Any]] = {}


def hook(name: str) -> Callable[..., Any]:
    """The function that owns `name` (one of OWNERS), imported on first use."""
    function = _resolved.get(name)
    if function is None:
        module, _, attr = OWNERS[name].partition(":")
        function = _resolved[name] = getattr(importlib.import_module(module), attr)
    return function


def register(name: str, function: Callable[..., Any]) -> None:
    """Let `function` own `name` in this process (a test, an application embedding us)."""
    if name not in OWNERS:
        raise KeyError(f"unknown settings hook {name!r} (known: {', '.join(OWNERS)})")
    _resolved[name] = function
