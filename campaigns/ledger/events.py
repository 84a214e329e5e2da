"""What happened to a delivery, one row per event: a transactional message's timeline and
the outbox of the event callbacks (`callback` pending until campaigns.callbacks delivered
it). Written in the same transaction as the change it tells of, by the ledger's writers;
only for deliveries someone follows (a stream's messages, a bulk campaign named in
[callbacks] streams), so a plain bulk send writes nothing more."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import Session

from campaigns.db import Database, as_utc
from campaigns.models import Campaign, Delivery, Event, Message, utcnow

PENDING = "pending"
#: a row's new status → the event it tells (`expired`: a failure for the caller)
EVENT_OF_STATUS = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced",
                   "failed": "failed", "expired": "failed", "suppressed": "suppressed",
                   "in_doubt": "in_doubt", "queued": "queued", "cancelled": "cancelled"}
_INSERT = insert(Event)


def emit(conn: Connection | Session, *, delivery_id: int, campaign_id: int, type: str,
         callback: bool, code: int | None = None, category: str | None = None,
         reason: str | None = None, detail: str | None = None,
         at: datetime | None = None) -> None:
    """One event of a delivery, inside the caller's transaction; `callback`: the caller's
    [callbacks] want it (the outbox row is pending)."""
    now = at or utcnow()
    conn.execute(_INSERT, {"delivery_id": delivery_id, "campaign_id": campaign_id,
                           "type": type, "at": now, "code": code, "category": category,
                           "reason": reason, "detail": (detail or "")[:500] or None,
                           "callback": PENDING if callback else None,
                           "callback_attempts": 0, "callback_at": now if callback else None})


def timeline(db: Database, delivery_id: int) -> list[dict[str, Any]]:
    """The delivery's events, oldest first."""
    with db.session() as s:
        rows = s.execute(select(Event.type, Event.at, Event.code, Event.category,
                                Event.reason, Event.detail)
                         .where(Event.delivery_id == delivery_id).order_by(Event.id)).all()
    return [{"type": t, "at": as_utc(at).isoformat() if at else None, "code": code,
             "category": cat, "reason": reason, "detail": detail}
            for t, at, code, cat, reason, detail in rows]


# --- the outbox of the event callbacks (campaigns.callbacks delivers, workers/ publishes) ---
# A pending event is due when callback_at <= now. Publishing pushes callback_at forward by a
# visibility window (the next sweep does not publish it again before its task ran); the
# task's outcome writes the real state. Every change is guarded by the state it saw, so two
# workers racing deliver an event twice at most and never lose it: at least once.
SENT, FAILED, SKIPPED = "sent", "failed", "skipped"
_ERROR_CHARS = 200


def claim_due(db: Database, now: datetime, limit: int, visibility_s: float) -> list[int]:
    """Ids of due pending events, oldest first (at most `limit`), their callback_at moved to
    now + visibility_s: in flight until their task says how it went."""
    with db.session() as s:
        ids = s.scalars(select(Event.id).where(Event.callback == PENDING,
                                               Event.callback_at <= now)
                        .order_by(Event.callback_at, Event.id).limit(limit)).all()
        if not ids:
            return []
        taken = s.scalars(update(Event).where(Event.id.in_(ids), Event.callback == PENDING,
                                              Event.callback_at <= now)
                          .values(callback_at=now + timedelta(seconds=visibility_s))
                          .returning(Event.id)).all()
    return sorted(taken)


def outbox_entry(db: Database, event_id: int) -> dict[str, Any] | None:
    """A pending event with what its callback tells (delivery, campaign, message), or None
    when it is not pending any more (sent, given up, skipped) or does not exist."""
    with db.session() as s:
        row = s.execute(
            select(Event.id, Event.type, Event.at, Event.code, Event.category, Event.reason,
                   Event.callback_attempts, Event.delivery_id, Delivery.origin,
                   Delivery.address, Campaign.name, Campaign.stream, Message.ref)
            .join(Delivery, Delivery.id == Event.delivery_id)
            .join(Campaign, Campaign.id == Event.campaign_id)
            .outerjoin(Message, Message.delivery_id == Event.delivery_id)
            .where(Event.id == event_id, Event.callback == PENDING)).first()
    if row is None:
        return None
    entry = dict(row._mapping)
    entry["at"] = as_utc(entry["at"])
    return entry


def _settle(db: Database, event_id: int, states: tuple[str, ...], attempts: int | None,
            **values: Any) -> bool:
    query = update(Event).where(Event.id == event_id, Event.callback.in_(states))
    if attempts is not None:    # the attempt this worker saw: a racing worker's result stays
        query = query.where(Event.callback_attempts == attempts)
    with db.session() as s:
        return bool(s.execute(query.values(**values)).rowcount)  # type: ignore[attr-defined]


def mark_sent(db: Database, event_id: int, now: datetime) -> bool:
    """The receiver took it (callback_at: when). Also over a racing worker's give-up."""
    return _settle(db, event_id, (PENDING, FAILED), None, callback=SENT, callback_at=now,
                   callback_error=None,
                   callback_attempts=Event.callback_attempts + 1)


def retry_at(db: Database, event_id: int, attempts: int, at: datetime, error: str) -> bool:
    """A failed try: the next one at `at`; `error` is short and never a secret nor the body."""
    return _settle(db, event_id, (PENDING,), attempts, callback_attempts=attempts + 1,
                   callback_at=at, callback_error=error[:_ERROR_CHARS])


def give_up(db: Database, event_id: int, attempts: int, now: datetime, error: str) -> bool:
    """Tried for [callbacks] max_age_s: `failed` (`campaigns callbacks retry` revives it)."""
    return _settle(db, event_id, (PENDING,), attempts, callback=FAILED, callback_at=now,
                   callback_attempts=attempts + 1, callback_error=error[:_ERROR_CHARS])


def skip(db: Database, event_id: int, now: datetime, reason: str) -> bool:
    """Not to be sent any more (no url, its type left [callbacks] events): `skipped`."""
    return _settle(db, event_id, (PENDING,), None, callback=SKIPPED, callback_at=now,
                   callback_error=reason[:_ERROR_CHARS])


def revive(db: Database, now: datetime) -> int:
    """Given-up events pending again, due now, their attempts from zero."""
    with db.session() as s:
        return int(s.execute(update(Event).where(Event.callback == FAILED).values(
            callback=PENDING, callback_at=now, callback_attempts=0))
            .rowcount)  # type: ignore[attr-defined]


def outbox_status(db: Database, now: datetime) -> dict[str, Any]:
    """Counts for `campaigns callbacks status`: pending, failing (pending, tried before),
    given up, skipped, sent (all, last hour), the oldest pending age, the last error."""
    with db.session() as s:
        by_state = dict(s.execute(select(Event.callback, func.count())
                                  .where(Event.callback.is_not(None))
                                  .group_by(Event.callback)).all())
        failing = s.execute(select(func.count(), func.min(Event.callback_at))
                            .where(Event.callback == PENDING,
                                   Event.callback_attempts > 0)).one()
        oldest = s.scalar(select(func.min(Event.at)).where(Event.callback == PENDING))
        recent = s.scalar(select(func.count()).where(
            Event.callback == SENT, Event.callback_at >= now - timedelta(hours=1)))
        last = s.execute(select(Event.callback_error, Event.callback_at)
                         .where(Event.callback.in_((PENDING, FAILED)),
                                Event.callback_error.is_not(None))
                         .order_by(Event.callback_at.desc()).limit(1)).first()
    next_try = as_utc(failing[1])
    return {"pending": by_state.get(PENDING, 0), "failing": failing[0],
            "failed": by_state.get(FAILED, 0), "skipped": by_state.get(SKIPPED, 0),
            "sent": by_state.get(SENT, 0), "sent_last_hour": recent or 0,
            "oldest_pending_s": round((now - as_utc(oldest)).total_seconds(), 1)
            if oldest else None,
            "next_try": next_try.isoformat() if next_try else None,
            "last_error": last[0] if last else None}
