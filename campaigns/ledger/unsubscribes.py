"""A recipient's unsubscribe request (the one-click POST of RFC 8058, the confirm page of
`campaigns serve`, a message to the mailto: address), written as a suppression with source
`unsubscribe`, the delivery it came through, its campaign (in the reason) and the time.

The scopes (campaigns.ledger.suppressions): "this list" is `list:<the campaign's list>`;
"all mail from this sender", the one-click POST and the mailto: form are `bulk` (every bulk
campaign of this installation; transactional mail such as invoices is not a subscription
and still arrives). Both stop at once every queued or deferred delivery they cover: the
claim (campaigns.ledger.sends) checks the suppression in the same UPDATE that takes a row."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from campaigns.db import Database, as_utc
from campaigns.ledger.suppressions import BULK, _covering, record
from campaigns.models import (Campaign, ContactList, Delivery, Suppression, SuppressionScope,
                              utcnow)

#: what a person may choose on the page: this list, or every bulk message of the sender
THIS_LIST, EVERYTHING = "list", "all"


@dataclass(frozen=True)
class Subscription:
    """What an unsubscribe token leads to: one delivery, its address and campaign."""
    delivery_id: int
    address: str
    campaign: str
    from_addr: str
    list_name: str | None

    def scope(self, choice: str) -> str:
        """The suppression scope of a choice (THIS_LIST or EVERYTHING); a campaign without
        a list (a stream's) has only `bulk`."""
        if choice == THIS_LIST and self.list_name:
            return SuppressionScope.LIST.of(self.list_name)
        return BULK


@dataclass(frozen=True)
class Unsubscribed:
    """The outcome: the scope in force, and whether this request added it (False: the
    address was already suppressed there or wider, e.g. a second click)."""
    subscription: Subscription
    scope: str
    added: bool
    at: datetime


def subscription(db: Database, delivery_id: int) -> Subscription | None:
    """The delivery a (genuine) token names, or None when there is no such row."""
    stmt = (select(Delivery.id, Delivery.address, Campaign.name, Campaign.from_addr,
                   ContactList.name.label("list_name"))
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .outerjoin(ContactList, ContactList.id == Campaign.list_id)
            .where(Delivery.id == delivery_id))
    with db.engine.connect() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        return None
    return Subscription(delivery_id=row.id, address=row.address, campaign=row.name,
                        from_addr=row.from_addr, list_name=row.list_name)


def unsubscribe(db: Database, delivery_id: int, *, choice: str = EVERYTHING,
                via: str = "one-click") -> Unsubscribed | None:
    """Suppress the address of delivery `delivery_id` in the scope of `choice` (source
    `unsubscribe`); idempotent. `via` says how it was asked (one-click, page, mailto) and
    goes into the reason with the campaign. None when the delivery does not exist."""
    found = subscription(db, delivery_id)
    if found is None:
        return None
    scope, now = found.scope(choice), utcnow()
    reason = f"unsubscribed ({via}) from campaign '{found.campaign}'"
    with db.session() as session:
        added = record(session, found.address, scope, reason=reason, source="unsubscribe",
                       delivery_id=delivery_id, created_at=now)
        if not added:    # already: since when (the same scope or a wider one)
            first = session.scalar(
                select(Suppression.created_at)
                .where(Suppression.address == found.address,
                       Suppression.scope.in_(_covering(scope)))
                .order_by(Suppression.created_at).limit(1))
            now = as_utc(first) if first is not None else now
    return Unsubscribed(found, scope, added, now)
