"""Bounces and complaints coming in: returned messages (inbound SMTP, the IMAP mailbox,
a file), provider webhooks, and the policy that turns a report into ledger changes
(`reports`: attribution by VERP token, header or Message-ID; applied once per key; the
reputation guard). The classification itself is campaigns.bounces (pure); the writes are
campaigns.ledger's.

`campaigns.intake.apply`, `process_message`, … are `campaigns.intake.reports`'s, loaded on
first use (the webhook and IMAP modules need no database until they apply a report).

May import: ledger, bounces, content.tokens, settings. Never delivery or the CLI."""
from __future__ import annotations

from importlib import import_module
from typing import Any


def __getattr__(name: str) -> Any:
    module = import_module("campaigns.intake.reports")   # not `from … import`: that asks __getattr__
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'campaigns.intake' has no attribute {name!r}") from None
