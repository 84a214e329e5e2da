"""Bounce and complaint reports in the ledger: each stored once under its key, and what its
category does to the delivery and to the suppression list (the policy is campaigns.intake's
docstring). The send path's own final answer and a returned message go through the same
`record`; only a report from elsewhere (not the send path, which wrote its row already)
marks the delivery `bounced`."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.bounces.model import BounceCategory
from campaigns.db import Database, as_utc
from campaigns.ledger import events, suppressions
from campaigns.models import BounceEvent, Campaign, Delivery, DeliveryStatus, utcnow

log = logging.getLogger(__name__)

#: categories that suppress the address at once
SUPPRESS_NOW = frozenset({BounceCategory.HARD, BounceCategory.COMPLAINT})
#: categories counted towards the soft limit
SOFT = frozenset({BounceCategory.SOFT, BounceCategory.UNKNOWN, BounceCategory.EXPIRED})
#: categories that only get recorded
RECORD_ONLY = frozenset({BounceCategory.THROTTLE, BounceCategory.RELAY,
                         BounceCategory.AUTOREPLY})
#: statuses a returned report may turn into `bounced` (not a row still being retried)
_BOUNCEABLE = tuple(s.value for s in (DeliveryStatus.SENT, DeliveryStatus.IN_DOUBT,
                                      DeliveryStatus.BOUNCED, DeliveryStatus.FAILED))


@dataclass(frozen=True)
class Applied:
    """What one report did: `action` is bounced, suppressed, recorded, ignored, delivered,
    unmatched or duplicate."""
    address: str | None
    category: str
    reason: str
    action: str
    delivery_id: int | None = None
    bounce_id: int | None = None
    campaign_id: int | None = None


@dataclass(frozen=True)
class SoftPolicy:
    """Suppress (for bulk mail) after `limit` soft bounces within `days`."""
    days: float
    limit: int


def record(db: Database, soft: SoftPolicy, verdict: Any, *, source: str,
           delivery_id: int | None, key: str, address: str | None = None,
           attributed: bool = True,
           wants: Callable[[str, str | None, str], bool] | None = None) -> Applied:
    """Store one report (a classification: category, reason, permanent, and what a parsed
    report adds) under `key` and do what its category asks; `duplicate` when the key was
    stored before (nothing changes). `delivery_id` None, or `attributed` False, records it
    as unmatched."""
    category = BounceCategory(verdict.category)
    now = utcnow()
    with db.session() as s:
        delivery = s.get(Delivery, delivery_id) if delivery_id is not None else None
        if delivery is not None and address and delivery.address.lower() != address.lower():
            # the report names another recipient than the delivery it came back for
            # (a forwarder): believe the delivery, the address we mailed
            log.info("bounce for delivery %s names %s; recorded against %s", delivery_id,
                     address, delivery.address)
        addr = delivery.address if delivery is not None else (address or "").lower()
        event = BounceEvent(
            report_key=key, source=source, delivery_id=delivery.id if delivery else None,
            campaign_id=delivery.campaign_id if delivery else None, address=addr or "-",
            category=category.value, reason=verdict.reason, permanent=verdict.permanent,
            final=getattr(verdict, "final", True), status=getattr(verdict, "status", None),
            reply_code=getattr(verdict, "reply_code", None),
            diagnostic=(getattr(verdict, "diagnostic", None) or None),
            feedback_type=getattr(verdict, "feedback_type", None), created_at=now)
        s.add(event)
        try:
            s.flush()
        except IntegrityError:
            s.rollback()
            return Applied(addr, category.value, verdict.reason, "duplicate", delivery_id)
        action = _act(s, soft, event, delivery, attributed, now)
        event.action = action
        if delivery is not None and source != "smtp" and action in ("bounced", "suppressed"):
            _tell(s, delivery, event, wants)
        return Applied(addr, category.value, verdict.reason, action,
                       delivery.id if delivery else None, event.id, event.campaign_id)


def _tell(s: Session, delivery: Delivery, event: BounceEvent,
          wants: Callable[[str, str | None, str], bool] | None) -> None:
    """A report that came back after the send (a DSN, a complaint) as an event of the
    delivery, when it is followed (a stream's message; a campaign [callbacks] names)."""
    campaign = s.get(Campaign, delivery.campaign_id)
    if campaign is None:
        return
    kind = "complained" if event.category == BounceCategory.COMPLAINT.value else "bounced"
    callback = wants(kind, campaign.stream, campaign.name) if wants else False
    if campaign.stream is not None or callback:
        events.emit(s, delivery_id=delivery.id, campaign_id=campaign.id, type=kind,
                    callback=callback, code=event.reply_code, category=event.category,
                    reason=event.reason, detail=event.diagnostic, at=event.created_at)


def _act(s: Session, soft: SoftPolicy, event: BounceEvent, delivery: Delivery | None,
         attributed: bool, now: datetime) -> str:
    category = BounceCategory(event.category)
    if delivery is None or not attributed:
        return "unmatched"
    if not event.final:
        return "recorded"          # a delay notice: the MTA is still trying
    if category == BounceCategory.AUTOREPLY:
        return "ignored"
    if category in RECORD_ONLY:
        return "recorded"
    if category == BounceCategory.DELIVERED:
        s.execute(update(Delivery).where(Delivery.id == delivery.id,
                                         Delivery.status == DeliveryStatus.SENT.value)
                  .values(bounce_category="delivered", bounce_reason="delivered"))
        return "delivered"
    if event.source != "smtp":     # the send path writes its own row
        s.execute(update(Delivery).where(Delivery.id == delivery.id,
                                         Delivery.status.in_(_BOUNCEABLE))
                  .values(status=DeliveryStatus.BOUNCED.value, bounce_category=category.value,
                          bounce_reason=event.reason, updated_at=now,
                          reply_code=event.reply_code or Delivery.reply_code,
                          enhanced_status=event.status or Delivery.enhanced_status,
                          reply_text=(event.diagnostic or "")[:2000] or Delivery.reply_text))
    if category in SUPPRESS_NOW:
        source = "complaint" if category == BounceCategory.COMPLAINT else "bounce"
        return "suppressed" if _suppress(s, event, source, f"{category.value}: {event.reason}") \
            else "bounced"
    if category in SOFT:
        since = max(now - timedelta(days=soft.days),
                    _last_success(s, event.address) or datetime.min.replace(tzinfo=now.tzinfo))
        count = s.scalar(select(func.count()).select_from(BounceEvent).where(
            BounceEvent.address == event.address, BounceEvent.category.in_([c.value for c in SOFT]),
            BounceEvent.final.is_(True), BounceEvent.delivery_id.is_not(None),
            BounceEvent.created_at >= since)) or 0
        if count >= soft.limit:
            reason = (f"{count} soft bounces within {soft.days:g} days "
                      f"(last: {event.reason})")
            return "suppressed" if _suppress(s, event, "soft-limit", reason) else "bounced"
    return "bounced"


def _last_success(s: Session, address: str) -> datetime | None:
    return as_utc(s.scalar(select(func.max(Delivery.sent_at)).where(
        Delivery.address == address, Delivery.status == DeliveryStatus.SENT.value)))


def _suppress(s: Session, event: BounceEvent, source: str, reason: str) -> bool:
    """Suppress the event's address with its cause, in the scope its category calls for
    (suppressions.scope_for: a hard bounce everything, a complaint or repeated soft bounces
    bulk mail); False when a suppression already covered it."""
    scope = suppressions.scope_for(event.category)
    if not suppressions.record(s, event.address, scope, reason=reason, source=source,
                               category=event.category, delivery_id=event.delivery_id,
                               bounce_id=event.id, created_at=event.created_at):
        return False
    log.info("suppressed %s (%s): %s (delivery %s, bounce %s)", event.address, scope, reason,
             event.delivery_id, event.id)
    return True


def campaign_rates(db: Database, campaign_id: int) -> tuple[int, int, int]:
    """(messages that reached an outcome at the relay: sent or bounced, hard bounces,
    complaints) of a campaign."""
    with db.engine.connect() as conn:
        sent = conn.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id == campaign_id,
            Delivery.status.in_((DeliveryStatus.SENT.value,
                                 DeliveryStatus.BOUNCED.value)))) or 0
        rows = conn.execute(select(BounceEvent.category, func.count(func.distinct(BounceEvent.address)))
                            .where(BounceEvent.campaign_id == campaign_id,
                                   BounceEvent.category.in_(("hard", "complaint")),
                                   BounceEvent.final.is_(True))
                            .group_by(BounceEvent.category)).all()
    by = {c: n for c, n in rows}
    return int(sent), int(by.get("hard", 0)), int(by.get("complaint", 0))
