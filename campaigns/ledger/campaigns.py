"""Campaign rows: creation, status transitions (each a guarded UPDATE: only from the
statuses given, so two processes racing move a campaign once), notes and run context."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence, cast

from sqlalchemy import CursorResult, exists, select, update

from campaigns.db import Database
from campaigns.errors import StateError
from campaigns.ledger.reads import get_campaign
from campaigns.models import OPEN, Campaign, CampaignStatus, Delivery, utcnow

Status = CampaignStatus | str
#: campaigns in these statuses are meant to be sending
ACTIVE = (CampaignStatus.SENDING.value, CampaignStatus.WAITING.value)
FINAL = (CampaignStatus.CANCELLED.value, CampaignStatus.FINISHED.value)


def _value(status: Status) -> str:
    # always the plain text: a driver may spell an Enum member by its name
    return status.value if isinstance(status, CampaignStatus) else CampaignStatus(status).value


def _values(statuses: Status | Sequence[Status]) -> list[str]:
    if isinstance(statuses, (str, CampaignStatus)):
        return [_value(statuses)]
    return [_value(s) for s in statuses]


def rowcount(result: Any) -> int:
    """Rows an UPDATE touched (reliable for UPDATE on SQLite and PostgreSQL)."""
    return int(cast(CursorResult[Any], result).rowcount)


def transition(db: Database, campaign_id: int, from_: Status | Sequence[Status], to: Status,
               reason: str | None = None, **values: Any) -> bool:
    """Move the campaign to `to` with `reason` (its status_reason) when it is in one of
    `from_`; False when it was not (another process moved it first). `values`: more columns
    to set with it (resume_at, finished_at, scheduled_at, launched_at …). A final status
    stamps finished_at."""
    new = _value(to)
    changes: dict[str, Any] = {"status": new, "status_reason": reason, **values}
    if new in FINAL:
        changes.setdefault("finished_at", utcnow())
    with db.session() as s:
        return rowcount(s.execute(update(Campaign).where(
            Campaign.id == campaign_id, Campaign.status.in_(_values(from_))).values(changes))) > 0


def change(db: Database, name: str, allowed: Sequence[Status], to: Status,
           reason: str | None = None) -> Campaign:
    """A person's transition of campaign NAME (pause, resume, cancel): StateError naming
    its status and the ones it needs when it is in none of `allowed`. Returns the campaign
    as it is now."""
    allowed_values = _values(allowed)
    with db.session() as s:
        campaign = get_campaign(s, name)
    if campaign.status not in allowed_values or not transition(
            db, campaign.id, campaign.status, to, reason):
        raise StateError(f"campaign '{name}' is {campaign.status}; "
                         f"this needs one of: {', '.join(allowed_values)}")
    campaign.status = _value(to)
    return campaign


def create(db: Database, **fields: Any) -> Campaign:
    """A draft campaign; StateError when the name is taken."""
    with db.session() as s:
        if s.scalars(select(Campaign.id).where(Campaign.name == fields["name"])).first():
            raise StateError(f"a campaign named '{fields['name']}' already exists")
        campaign = Campaign(**fields, status=CampaignStatus.DRAFT.value)
        s.add(campaign)
    return campaign


def note(db: Database, campaign_id: int, text: str, **values: Any) -> None:
    """Set the campaign's status_reason (and `values`, e.g. run_context) without moving it."""
    with db.session() as s:
        s.execute(update(Campaign).where(Campaign.id == campaign_id)
                  .values(status_reason=text, **values))


def set_values(db: Database, campaign_id: int, **values: Any) -> None:
    """Columns that are no status (run_context of a scheduled run)."""
    with db.session() as s:
        s.execute(update(Campaign).where(Campaign.id == campaign_id).values(**values))


def finish_done(db: Database, now: datetime) -> int:
    """Sending and waiting campaigns with no open row are `finished` (a stream's campaign
    never is: it takes messages at any time; nor one whose launch is still writing its
    rows). Returns how many."""
    open_rows = exists().where(Delivery.campaign_id == Campaign.id, Delivery.status.in_(OPEN))
    with db.session() as s:
        return rowcount(s.execute(update(Campaign).where(
            Campaign.status.in_(ACTIVE), Campaign.stream.is_(None),
            Campaign.expanded_at.is_not(None), ~open_rows).values(
            status=CampaignStatus.FINISHED.value, finished_at=now)))
