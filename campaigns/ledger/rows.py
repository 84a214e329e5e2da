"""Delivery rows in bulk: a list expanded into rows, the unsent cancelled, expired leases
made `in_doubt`, and the queries that pick rows to publish again."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import func, select, text, update

from campaigns.db import Database, insert_for
from campaigns.ledger.campaigns import rowcount
from campaigns.ledger.reads import status_counts
from campaigns.ledger.suppressions import blocks
from campaigns.models import (PENDING, Campaign, CampaignStatus, Contact, Delivery,
                              DeliveryStatus, ListMember, utcnow)

_QUEUED, _DEFERRED = DeliveryStatus.QUEUED.value, DeliveryStatus.DEFERRED.value
_SENDING = CampaignStatus.SENDING.value


def expand(db: Database, campaign_id: int, list_id: int, batch: int) -> tuple[int, int]:
    """One row per list member, keyset-paged, `queued`; an address with a suppression that
    stops this campaign (suppressions.blocks: its scope) is `suppressed`. Members already in
    the ledger are left as they are (a relaunch adds only newcomers).
    Returns (rows added, of which suppressed)."""
    before = status_counts(db, campaign_id)
    stmt = (insert_for(db.dialect)(Delivery)
            .on_conflict_do_nothing(index_elements=["campaign_id", "address"],
                                    index_where=text("origin = 'list'")))
    query = (select(ListMember.contact_id, Contact.email, blocks(Contact.email, campaign_id))
             .join(Contact, Contact.id == ListMember.contact_id)
             .where(ListMember.list_id == list_id)
             .order_by(ListMember.contact_id).limit(batch))
    last = 0
    while True:
        with db.session() as s:
            rows = s.execute(query.where(ListMember.contact_id > last)).all()
            if not rows:
                break
            now = utcnow()
            s.execute(stmt, [{"campaign_id": campaign_id, "contact_id": cid, "address": email,
                              "status": (DeliveryStatus.SUPPRESSED.value if sup else _QUEUED),
                              "attempts": 0, "updated_at": now} for cid, email, sup in rows])
            last = rows[-1][0]
    after = status_counts(db, campaign_id)
    suppressed = DeliveryStatus.SUPPRESSED.value
    return (sum(after.values()) - sum(before.values()),
            after.get(suppressed, 0) - before.get(suppressed, 0))


def ids_page(db: Database, campaign_id: int, statuses: Sequence[str], after_id: int,
             limit: int) -> list[int]:
    """The next `limit` row ids of the campaign in `statuses`, after `after_id`, in order."""
    with db.session() as s:
        return list(s.scalars(select(Delivery.id).where(
            Delivery.campaign_id == campaign_id, Delivery.status.in_(statuses),
            Delivery.id > after_id).order_by(Delivery.id).limit(limit)).all())


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
                                handed < published_before)
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
