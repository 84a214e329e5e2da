"""Read-only questions to the ledger (no writes), light to import: `campaigns list` and
`status` need no more than SQLAlchemy and the models."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.db import Database, as_utc
from campaigns.errors import InputError, NotFound
from campaigns.models import (DELIVERY_STATUSES, Campaign, CampaignStatus, ContactList, Delivery,
                              Template)


def _named(session: Session, model: Any, kind: str, name: str) -> Any:
    """The row of `model` called `name`, or NotFound listing what exists."""
    found = session.scalars(select(model).where(model.name == name)).first()
    if found is None:
        names = session.scalars(select(model.name).order_by(model.name).limit(20)).all()
        raise NotFound(f"no {kind} named '{name}' ({kind}s: {', '.join(names) or 'none'})")
    return found


def get_campaign(session: Session, name: str) -> Campaign:
    return _named(session, Campaign, "campaign", name)  # type: ignore[no-any-return]


def get_template(session: Session, name: str) -> Template:
    return _named(session, Template, "template", name)  # type: ignore[no-any-return]


def status_counts(db: Database, campaign_id: int) -> dict[str, int]:
    """Rows of a campaign by delivery status (only the statuses it has)."""
    with db.session() as s:
        rows = s.execute(select(Delivery.status, func.count()).where(
            Delivery.campaign_id == campaign_id).group_by(Delivery.status)).all()
    return {status: n for status, n in rows}


def counts(db: Database, name: str) -> dict[str, Any]:
    """The ledger's view of a campaign, as `campaigns status --json` prints it."""
    with db.session() as s:
        campaign = get_campaign(s, name)
    by_status = {st: 0 for st in DELIVERY_STATUSES}
    by_status.update(status_counts(db, campaign.id))
    return {"campaign": campaign.name, "status": campaign.status,
            "reason": campaign.status_reason, "total": sum(by_status.values()),
            "counts": by_status}


def list_campaigns(db: Database, after_id: int = 0,
                   limit: int | None = None) -> list[dict[str, Any]]:
    """Campaigns in creation order (`id` is the cursor of a page: after_id, limit)."""
    query = (select(Campaign.id, Campaign.name, Campaign.status, ContactList.name, Template.name)
             .outerjoin(ContactList, ContactList.id == Campaign.list_id)
             .outerjoin(Template, Template.id == Campaign.template_id)
             .where(Campaign.id > after_id).order_by(Campaign.id))
    if limit is not None:
        query = query.limit(limit)
    with db.session() as s:
        rows = s.execute(query).all()
    return [{"id": i, "name": n, "status": st, "list": ln, "template": tn}
            for i, n, st, ln, tn in rows]


def active_campaigns(db: Database) -> list[Campaign]:
    """Campaigns meant to be sending (`sending` or `waiting`), detached."""
    with db.session() as s:
        return list(s.scalars(select(Campaign).where(Campaign.status.in_(
            (CampaignStatus.SENDING.value, CampaignStatus.WAITING.value)))).all())


#: the columns of a delivery the API's `GET /campaigns/{name}/deliveries` shows
DELIVERY_FIELDS = ("id", "address", "status", "attempts", "reply_code", "enhanced_status",
                   "reply_text", "bounce_category", "bounce_reason", "relay",
                   "provider_message_id", "sent_at", "updated_at")


def deliveries_page(db: Database, name: str, status: str | None = None, after_id: int = 0,
                    limit: int = 100) -> list[dict[str, Any]]:
    """The deliveries of campaign NAME in id order (`id` is the cursor of a page: after_id,
    limit), only those in `status` when given (InputError naming `status` when it is not one
    of DELIVERY_STATUSES; NotFound for an unknown campaign). Times are ISO 8601 UTC."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise InputError(f"{status!r}: expected one of {', '.join(DELIVERY_STATUSES)}",
                         field="status")
    columns = [getattr(Delivery, c) for c in DELIVERY_FIELDS]
    with db.session() as s:
        campaign_id = get_campaign(s, name).id
        query = (select(*columns).where(Delivery.campaign_id == campaign_id,
                                        Delivery.id > after_id)
                 .order_by(Delivery.id).limit(limit))
        if status is not None:
            query = query.where(Delivery.status == status)
        rows = s.execute(query).all()
    out = []
    for row in rows:
        item = dict(zip(DELIVERY_FIELDS, row))
        for when in ("sent_at", "updated_at"):
            value = as_utc(item[when])
            item[when] = value.isoformat() if value is not None else None
        out.append(item)
    return out
