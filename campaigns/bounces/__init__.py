"""Bounce classification: one classifier for SMTP replies while sending and for returned
messages (RFC 3464 DSNs, the prose of common MTAs, RFC 5965 complaints, RFC 3834
auto-replies). Pure Python: imports neither Celery nor SQLAlchemy.

A delay notice is category expired, reason "delayed" (or the cause its words name), never
permanent, and its BounceReport has `final=False`: never record it as an outcome. Every
Classification names the `rule` that decided; the precedence is documented in
campaigns.bounces.classify. Details in campaigns.bounces.model."""
from __future__ import annotations

from campaigns.bounces.classify import classify_reply
from campaigns.bounces.cli import classify_files
from campaigns.bounces.model import BounceCategory, BounceReport, Classification
from campaigns.bounces.parse import parse_bounce

__all__ = ["BounceCategory", "BounceReport", "Classification", "classify_files",
           "classify_reply", "parse_bounce"]
