"""Bounce classification: one classifier for SMTP replies while sending and for returned
messages (RFC 3464 DSNs, the prose of common MTAs, RFC 5965 complaints, RFC 3834
auto-replies). Pure Python: imports neither Celery nor SQLAlchemy.

A delay notice is category expired, reason "delayed" (or the cause its words name), never
permanent, and its BounceReport has `final=False`: never record it as an outcome. Every
Classification names the `rule` that decided; the precedence is documented in
campaigns.bounces.classify. Details in campaigns.bounces.model.

May import: the standard library, campaigns.errors and campaigns.headers; never a database,
the ledger or Celery (checked by import-linter)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from campaigns.bounces.model import BounceCategory, BounceReport, Classification

if TYPE_CHECKING:
    from campaigns.bounces.classify import classify_reply
    from campaigns.bounces.cli import classify_files
    from campaigns.bounces.parse import parse_bounce

# The classifier compiles a few hundred regular expressions (~0.4 s): loaded on first use,
# so that importing the model (BounceCategory) costs a CLI command nothing.
_LAZY = {"classify_reply": "campaigns.bounces.classify", "classify_files": "campaigns.bounces.cli",
         "parse_bounce": "campaigns.bounces.parse"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'campaigns.bounces' has no attribute {name!r}")

__all__ = ["BounceCategory", "BounceReport", "Classification", "classify_files",
           "classify_reply", "parse_bounce"]
