"""What a bounce does to the ledger: one policy for every source (an SMTP reply while
sending, a returned message from the inbound endpoint, the IMAP mailbox or a file, and,
later, provider webhooks).

- hard and complaint: the delivery is `bounced` and the address suppressed at once (a hard
  bounce for every message, scope `all`; a complaint for bulk mail, scope `bulk`);
- soft (and unknown, and a returned `expired`): the delivery is `bounced`; the address is
  suppressed for bulk mail after `soft_limit` soft bounces within `soft_days`, counted from
  its last successful delivery (a success resets the count);
- block, policy, auth, toolarge: the delivery is `bounced` with that category, the address
  never suppressed (the receiver refuses *us*, or the message; not the recipient's fault);
- throttle, relay and a delay notice (`final=False`): recorded, nothing else changes;
- autoreply: recorded and ignored; delivered: recorded on the delivery.

Only a report attributed to one of our deliveries (a signed VERP return path, our signed
header in the returned original, or the original's Message-ID) changes the ledger or
suppresses: a forged bounce naming an arbitrary address is recorded as `unmatched` and does
nothing else. Every report is stored once (`report_key`: what it says, not its bytes), so
processing the same message twice, or the same DSN delivered again with other trace headers
(Return-Path, Delivered-To, Received), changes nothing the second time.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from campaigns.bounces import BounceReport, Classification, parse_bounce
from campaigns.bounces.model import BounceCategory
from campaigns.db import Database
from campaigns.ledger import campaigns as ledger_campaigns
from campaigns.ledger import reports
from campaigns.ledger.reports import SUPPRESS_NOW, Applied, SoftPolicy
from campaigns.models import CampaignStatus, Delivery
from campaigns.settings import Settings
from campaigns.content.tokens import read_return_path, read_token, read_unsubscribe_address
from campaigns.ledger.unsubscribes import unsubscribe

log = logging.getLogger(__name__)

#: RFC 3464 per-message fields (and RFC 5965 feedback fields) that identify a report: what
#: the reporting MTA wrote, never the trace headers each hop or mailbox adds on top
_MESSAGE_FIELDS = ("reporting-mta", "original-envelope-id", "arrival-date", "dsn-gateway",
                   "received-from-mta", "x-postfix-queue-id", "feedback-type", "received-date",
                   "source-ip", "original-mail-from", "original-rcpt-to", "reported-domain",
                   "incidents")
#: RFC 3464 per-recipient fields of the recipient a report is about
_RECIPIENT_FIELDS = ("action", "status", "remote-mta", "diagnostic-code", "last-attempt-date",
                     "will-retry-until", "final-log-id")
_RECIPIENT_NAMES = ("final-recipient", "original-recipient")
#: the postmark line that starts each message of an mbox file
_POSTMARK_RE = re.compile(rb"^From \S+ +[A-Z][a-z]{2} [A-Z][a-z]{2} +\d", re.MULTILINE)


@dataclass(frozen=True)
class Identity:
    """What a returned message says about itself, whichever path delivered it: the fields
    of its DSN or ARF part, or (a report in prose only) a digest of its body."""
    fields: tuple[str, ...]
    recipients: tuple[dict[str, str], ...]
    body: str


def identity(raw: bytes) -> Identity:
    from campaigns.bounces.message import ReturnedMessage
    groups = ReturnedMessage(raw).fields
    fields = [f"{k}={_flat(g[k])}" for g in groups for k in _MESSAGE_FIELDS
              if k in g and not any(n in g for n in _RECIPIENT_NAMES)]
    recipients = tuple(g for g in groups if any(n in g for n in _RECIPIENT_NAMES))
    body = b"" if groups else raw.replace(b"\r\n", b"\n").partition(b"\n\n")[2]
    body = b"\n".join(line.rstrip() for line in body.strip().split(b"\n"))
    return Identity(tuple(fields), recipients, hashlib.sha256(body).hexdigest())


def _flat(value: str) -> str:
    return " ".join(value.split()).lower()


def _names(group: dict[str, str]) -> set[str]:
    """The addresses a per-recipient group names ("rfc822; a@b" and "rfc822;<a@b>")."""
    return {group[n].rpartition(";")[2].strip().strip("<>").lower()
            for n in _RECIPIENT_NAMES if n in group}


def report_key(ident: Identity, report: BounceReport, delivery_id: int | None) -> str:
    """The report's meaning, not its bytes: the delivery it is about, the recipient, the
    verdict, the returned original's Message-ID and the report's own fields (Reporting-MTA,
    Original-Envelope-Id, Arrival-Date, the recipient's Action, Status, Diagnostic-Code, …).
    The same DSN delivered again with other Return-Path, Delivered-To, X-Original-To or
    Received headers has the same key; a report of another message has another."""
    rcpt = (report.recipient or "-").lower()
    mine = [f"{k}={_flat(g[k])}" for g in ident.recipients if rcpt in _names(g)
            for k in _RECIPIENT_FIELDS if k in g]
    parts = [str(delivery_id or "-"), rcpt, BounceCategory(report.category).value,
             report.reason, report.status or "-", str(report.final), report.feedback_type or "-",
             (report.original_message_id or "-").strip().strip("<>").lower(),
             *ident.fields, *mine, ident.body]
    digest = hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()
    return f"dsn:{digest[:40]}:{rcpt[:50]}"


def _messages(raw: bytes) -> list[bytes]:
    """The messages of an mbox file, or the one message."""
    starts = [m.start() for m in _POSTMARK_RE.finditer(raw)] if raw.startswith(b"From ") else []
    if len(starts) < 2:
        return [raw]
    return [raw[a:b] for a, b in zip(starts, starts[1:] + [len(raw)])]


def attribute(db: Database, settings: Settings, report: BounceReport,
              envelope_to: list[str] | None = None) -> int | None:
    """The delivery a returned report is about, or None: by our signed VERP return path
    (the address the bounce was sent to), by our signed header in the returned original,
    then by the original's Message-ID (its recipient must match when the report names one)."""
    cfg = settings.bounces
    if cfg.domain:
        for rcpt in envelope_to or []:
            found = read_return_path(settings.secret_key, rcpt, cfg.local_part, cfg.domain)
            if found is not None:
                return found
    token = next((v for k, v in report.original_headers.items()
                  if k.lower() == "x-campaigns-delivery"), None)
    if token:
        found = read_token(settings.secret_key, "delivery", token.strip())
        if found is not None:
            return found
    if report.original_message_id:
        mid = report.original_message_id.strip()
        if not mid.startswith("<"):
            mid = f"<{mid}>"
        with db.engine.connect() as conn:
            row = conn.execute(select(Delivery.id, Delivery.address)
                               .where(Delivery.message_id == mid)).first()
        if row is not None and (not report.recipient
                                or row.address.lower() == report.recipient.lower()):
            return int(row.id)
    return None


def process_message(db: Database, settings: Settings, raw: bytes, *, source: str,
                    envelope_to: list[str] | None = None) -> list[Applied]:
    """Parse a returned message (or an mbox file of them) and apply each of its reports,
    each once (`report_key`). A message to our List-Unsubscribe address
    (``unsubscribe+TOKEN@`` the bounce domain) is an unsubscribe request instead, whatever
    it says (campaigns.ledger.unsubscribes, as the one-click POST)."""
    asked = unsubscribe_requests(db, settings, envelope_to or [])
    if asked:
        return asked
    out = []
    for message in _messages(raw):
        reports = parse_bounce(message)
        if not reports:
            continue
        ident = identity(message)
        for report in reports:
            delivery_id = attribute(db, settings, report, envelope_to)
            out.append(apply(db, settings, report, source=source, delivery_id=delivery_id,
                             key=report_key(ident, report, delivery_id),
                             address=report.recipient))
    if not out:
        log.info("%s: a message with no recipient report (not a bounce?) ignored", source)
    return out


def unsubscribe_requests(db: Database, settings: Settings,
                         envelope_to: list[str]) -> list[Applied]:
    """The unsubscribes a message asks for by being sent to ``unsubscribe+TOKEN@domain``
    (a genuine token of ours): each address suppressed for bulk mail, idempotent."""
    domain, out = settings.bounces.domain, []
    if not domain:
        return out
    for rcpt in dict.fromkeys(envelope_to):
        delivery_id = read_unsubscribe_address(settings.secret_key, rcpt, domain)
        done = unsubscribe(db, delivery_id, via="mailto") if delivery_id is not None else None
        if done is not None:
            out.append(Applied(done.subscription.address, "unsubscribe", "mailto",
                               "suppressed" if done.added else "duplicate", delivery_id))
    return out


def apply(db: Database, settings: Settings, verdict: Classification, *, source: str,
          delivery_id: int | None, key: str, address: str | None = None,
          attributed: bool = True) -> Applied:
    """Record one report and do what its category asks (module docstring; the ledger
    writes), then run the reputation guard on its campaign for a hard bounce or a
    complaint. `delivery_id` None, or `attributed` False, records it as unmatched."""
    soft = SoftPolicy(days=settings.bounces.soft_days, limit=settings.bounces.soft_limit)
    applied = reports.record(db, soft, verdict, source=source, delivery_id=delivery_id, key=key,
                             address=address, attributed=attributed,
                             wants=settings.callbacks.wants)
    if (BounceCategory(verdict.category) in SUPPRESS_NOW and applied.campaign_id is not None
            and applied.action not in ("unmatched", "duplicate")):
        guard(db, settings, applied.campaign_id)
    return applied


def guard(db: Database, settings: Settings, campaign_id: int) -> str | None:
    """The reputation guard: pause a sending campaign whose hard-bounce or complaint rate
    passed its threshold after the minimum sample. Returns the reason when it paused."""
    cfg = settings.bounces
    sent, hard, complaints = reports.campaign_rates(db, campaign_id)
    sample = max(sent, hard)
    if sample < cfg.guard_min_sample:
        return None
    reason = None
    if hard / sample > cfg.guard_max_hard:
        reason = (f"reputation guard: hard-bounce rate {hard / sample:.1%} ({hard} of {sample})"
                  f" is above {cfg.guard_max_hard:.1%}")
    elif complaints / sample > cfg.guard_max_complaint:
        reason = (f"reputation guard: complaint rate {complaints / sample:.2%} ({complaints} "
                  f"of {sample}) is above {cfg.guard_max_complaint:.2%}")
    if reason is None:
        return None
    if ledger_campaigns.transition(db, campaign_id, ledger_campaigns.ACTIVE,
                                   CampaignStatus.PAUSED, reason):
        log.warning("campaign %s paused: %s", campaign_id, reason)
        return reason
    return None


def poll_mailbox(db: Database, settings: Settings) -> Any:
    """One poll of the [bounces.imap] mailbox: each new message applied, then marked."""
    from campaigns.intake.imap import poll_once

    def handle(raw: bytes) -> None:
        process_message(db, settings, raw, source="imap",
                        envelope_to=_envelope_recipients(raw))
    return poll_once(settings.bounces.imap, handle)


def _envelope_recipients(raw: bytes) -> list[str]:
    """Where a message from a mailbox was delivered to (our VERP address), as the
    delivering MTA recorded it: Delivered-To, X-Original-To, Envelope-To, then To."""
    from email.parser import BytesHeaderParser
    from email.utils import getaddresses
    headers = BytesHeaderParser().parsebytes(raw)
    found: list[str] = []
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To"):
        found += [addr for _, addr in getaddresses(headers.get_all(name, [])) if addr]
    return found
