"""Delivery rows in bulk: a list expanded into rows, the unsent cancelled, expired leases
made `in_doubt`, and the queries that pick rows to publish again."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from sqlalchemy import DateTime, case, func, literal, or_, select, text, update

from campaigns.db import Database, insert_for
from campaigns.ledger.campaigns import rowcount
from campaigns.ledger.reads import status_counts
from campaigns.ledger.suppressions import blocks
from campaigns.models import (PENDING, Campaign, CampaignStatus, Contact, Delivery,
                              DeliveryStatus, ListMember, utcnow)

_QUEUED, _DEFERRED = DeliveryStatus.QUEUED.value, DeliveryStatus.DEFERRED.value
_SUPPRESSED = DeliveryStatus.SUPPRESSED.value
_WHEN = DateTime(timezone=True)
_EXPAND_COLUMNS = ["campaign_id", "contact_id", "address", "status", "attempts", "updated_at",
                   "origin"]
_SENDING = CampaignStatus.SENDING.value


def expand(db: Database, campaign_id: int, list_id: int, batch: int,
           after_batch: Callable[[], None] | None = None) -> tuple[int, int]:
    """One row per list member, `queued`, or `suppressed` when a suppression stops this
    campaign (suppressions.blocks: its scope), written inside the database: one
    INSERT … SELECT per batch of `batch` members in contact order, each committed (so
    sending can start after the first: `after_batch` is called after each). Members already
    in the ledger are left as they are (a relaunch adds only newcomers).
    Returns (rows added, of which suppressed)."""
    before = status_counts(db, campaign_id)
    members = (select(ListMember.contact_id).where(ListMember.list_id == list_id)
               .order_by(ListMember.contact_id))
    last = 0
    while True:
        with db.session() as s:
            if db.dialect == "postgresql":
                # a batch joins its members to their contacts by key: while the ledger
                # grows the statistics lag and the planner hashed all of `contacts` for
                # every batch (measured: 50 full scans for a million rows)
                s.execute(text("SET LOCAL enable_hashjoin = off"))
                s.execute(text("SET LOCAL enable_mergejoin = off"))
            upper = s.scalar(members.where(ListMember.contact_id > last)
                             .offset(batch - 1).limit(1))
            chosen = (select(literal(campaign_id), ListMember.contact_id, Contact.email,
                             case((blocks(Contact.email, campaign_id), _SUPPRESSED),
                                  else_=_QUEUED),
                             literal(0), literal(utcnow(), _WHEN), literal("list"))
                      .join(Contact, Contact.id == ListMember.contact_id)
                      .where(ListMember.list_id == list_id, ListMember.contact_id > last))
            if upper is not None:
                chosen = chosen.where(ListMember.contact_id <= upper)
            s.execute(insert_for(db.dialect)(Delivery).from_select(_EXPAND_COLUMNS, chosen)
                      .on_conflict_do_nothing(index_elements=["campaign_id", "address"],
                                              index_where=text("origin = 'list'")))
        if after_batch is not None:
            after_batch()
        if upper is None:
            break
        last = upper
    after = status_counts(db, campaign_id)
    return (sum(after.values()) - sum(before.values()),
            after.get(_SUPPRESSED, 0) - before.get(_SUPPRESSED, 0))


def feed(db: Database, campaign_id: int, limit: int) -> list[int]:
    """The next `limit` queued rows of the campaign above its feed cursor, in id order, with
    the cursor moved past them (guarded: of two feeders racing, one gets them)."""
    with db.session() as s:
        cursor = s.scalar(select(Campaign.fed_until).where(Campaign.id == campaign_id)) or 0
        ids = list(s.scalars(select(Delivery.id).where(
            Delivery.campaign_id == campaign_id, Delivery.status == _QUEUED,
            Delivery.id > cursor).order_by(Delivery.id).limit(limit)).all())
        if not ids:
            return []
        moved = rowcount(s.execute(update(Campaign).where(
            Campaign.id == campaign_id, Campaign.fed_until == cursor)
            .values(fed_until=ids[-1])))
    return ids if moved else []


def unfed(db: Database, campaign_id: int, after_id: int = 0) -> int:
    """Feed the campaign again from after row `after_id` (a resume: the tasks published
    before its pause were taken and skipped)."""
    with db.session() as s:
        return rowcount(s.execute(update(Campaign).where(Campaign.id == campaign_id)
                                  .values(fed_until=after_id)))


def in_flight(db: Database, campaign_id: int) -> int:
    """Rows handed to the broker and not yet taken (queued, at or below the cursor)."""
    with db.session() as s:
        cursor = s.scalar(select(Campaign.fed_until).where(Campaign.id == campaign_id)) or 0
        return int(s.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id == campaign_id, Delivery.status == _QUEUED,
            Delivery.id <= cursor)) or 0)


def deferred(db: Database, campaign_id: int | None,
             older_than: datetime | None = None) -> list[Any]:
    """(id, next_attempt_at, priority) of deferred rows of sending campaigns (of one, or
    all). With `older_than`, only rows overdue since then, and those get
    `next_attempt_at = now`, so the next round does not pick them again at once."""
    query = (select(Delivery.id, Delivery.next_attempt_at, Campaign.priority)
             .join(Campaign, Campaign.id == Delivery.campaign_id)
             .where(Delivery.status == _DEFERRED, Campaign.status == _SENDING))
    if campaign_id is not None:
        query = query.where(Delivery.campaign_id == campaign_id)
    if older_than is not None:
        query = query.where(Delivery.next_attempt_at < older_than)
    with db.session() as s:
        rows = s.execute(query).all()
        if older_than is not None and rows:
            s.execute(update(Delivery).where(Delivery.id.in_([r[0] for r in rows]),
                                             Delivery.status == _DEFERRED)
                      .values(next_attempt_at=utcnow()))
    return list(rows)


def lost_queued(db: Database, published_before: datetime, limit: int) -> list[Any]:
    """(id, priority) of queued rows of sending campaigns handed to the broker before
    `published_before` (at most `limit`, oldest first); each gets `published_at = now`."""
    handed = func.coalesce(Delivery.published_at, Delivery.updated_at)
    with db.session() as s:
        rows = s.execute(select(Delivery.id, Campaign.priority)
                         .join(Campaign, Campaign.id == Delivery.campaign_id)
                         .where(Delivery.status == _QUEUED, Campaign.status == _SENDING,
                                handed < published_before,
                                or_(Delivery.id <= Campaign.fed_until,
                                    Campaign.stream.is_not(None)))
                         .order_by(Delivery.id).limit(limit)).all()
        if rows:
            s.execute(update(Delivery).where(Delivery.id.in_([r[0] for r in rows]))
                      .values(published_at=utcnow()))
    return list(rows)


def cancel_unsent(db: Database, campaign_id: int) -> int:
    """The campaign's pending rows become `cancelled`. Returns how many."""
    with db.session() as s:
        return rowcount(s.execute(update(Delivery).where(
            Delivery.campaign_id == campaign_id, Delivery.status.in_(PENDING)).values(
            status=DeliveryStatus.CANCELLED.value, updated_at=utcnow())))


def expire_leases(db: Database, now: datetime) -> int:
    """Rows `sending` past their lease become `in_doubt` (held for a person: the worker
    died between the relay's answer and our write; we cannot know whether it was sent)."""
    with db.session() as s:
        return rowcount(s.execute(update(Delivery).where(
            Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_until < now).values(
            status=DeliveryStatus.IN_DOUBT.value, updated_at=now,
            reply_text="lease expired while sending: the worker stopped before recording"
                       " the relay's answer")))
