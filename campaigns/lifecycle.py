"""Campaign lifecycle: create, launch (preflight, expand, enqueue), pause, resume, cancel,
status, and the periodic maintenance that keeps the ledger honest.

Enqueueing is done through a callable handed in by the caller (the Celery layer), so this
module never imports Celery."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence, cast

from sqlalchemy import CursorResult, exists, func, select, update
from sqlalchemy.orm import Session

from campaigns.db import Database, as_utc
from campaigns.errors import InputError, NotFound, StateError
from campaigns.models import (DELIVERY_STATUSES, OPEN, PENDING, Campaign, CampaignStatus,
                              Contact, ContactList, Delivery, DeliveryStatus, ListMember,
                              Template, utcnow)
from campaigns.settings import Settings
from campaigns.suppressions import blocks

#: enqueue(delivery_ids, countdown_s, priority) publishes one send task per id, on the
#: queue of that priority ("bulk" or "transactional")
Enqueue = Callable[[Sequence[int], float | None, str], None]
PRIORITIES = ("bulk", "transactional")

#: a deferred row whose retry is this late has lost its task (worker died before publishing)
OVERDUE_RETRY_S = 120.0

#: how many tasks the broker holds for the send queues (waiting, reserved by a worker, parked
#: under a limit); None when the broker cannot say
BrokerPending = Callable[[], "int | None"]
#: rows re-published by one upkeep run at the most
RECOVER_BATCH = 10_000


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


def create_campaign(db: Database, settings: Settings, *, name: str, list_name: str,
                    template: str, from_addr: str, reply_to: str | None = None,
                    relay: str | None = None, attachment_column: str | None = None,
                    priority: str = "bulk", window: str | None = None,
                    timezone: str | None = None) -> Campaign:
    from campaigns.audience import get_list
    from campaigns.mime import parse_address
    from campaigns.rates.windows import parse_window

    if priority not in PRIORITIES:
        raise InputError(f"'{priority}': expected one of {', '.join(PRIORITIES)}", field="--priority")
    tz = timezone or settings.rates.timezone
    if window:
        parse_window(window, tz)  # InputError naming the expected form

    if reply_to:
        parse_address(reply_to, field="--reply-to")
    _, sender = parse_address(from_addr, field="--from")
    relay_name = settings.target(relay, sender.rpartition("@")[2])
    if not name.strip() or any(c in name for c in "\r\n"):
        raise InputError("a campaign name must be a non-empty single line", field="NAME")
    with db.session() as s:
        if s.scalars(select(Campaign.id).where(Campaign.name == name)).first():
            raise StateError(f"a campaign named '{name}' already exists")
        campaign = Campaign(name=name, list_id=get_list(s, list_name).id,
                            template_id=get_template(s, template).id, from_addr=from_addr,
                            reply_to=reply_to, relay=relay_name, attachment_column=attachment_column,
                            priority=priority, send_window=window, timezone=tz,
                            status=CampaignStatus.DRAFT.value)
        s.add(campaign)
    return campaign


@dataclass
class LaunchReport:
    campaign: str
    added: int = 0
    suppressed: int = 0
    enqueued: int = 0
    relaunch: bool = False      # it was already sending (or waiting): nothing new starts
    was: str = ""               # its status before this launch
    queued: int = 0             # on a relaunch: its rows still queued
    warnings: list[str] = field(default_factory=list)


def launch(db: Database, settings: Settings, name: str, enqueue: Enqueue) -> LaunchReport:
    """Preflight, expand the list into the ledger, mark the campaign sending, enqueue.

    Idempotent: launching a campaign that is already sending adds only recipients that
    joined the list since and re-publishes unsent rows (claims make duplicates harmless)."""
    from campaigns.preflight import run_preflight

    with db.session() as s:
        campaign = get_campaign(s, name)
    if campaign.status in (CampaignStatus.CANCELLED.value, CampaignStatus.FINISHED.value):
        raise StateError(f"campaign '{name}' is {campaign.status}; create a new one to send again")
    if campaign.status == CampaignStatus.PAUSED.value:
        raise StateError(f"campaign '{name}' is paused; use `campaigns resume {name}`")
    report = LaunchReport(campaign=name, relaunch=campaign.status in ("sending", "waiting"),
                          was=campaign.status)
    if not report.relaunch:
        report.warnings = run_preflight(db, settings, campaign)
    report.added, report.suppressed = _expand(db, campaign, settings.sending.expand_batch)
    if report.relaunch:
        report.queued = _status_counts(db, campaign.id).get(DeliveryStatus.QUEUED.value, 0)
    closed = _window_closed(campaign, utcnow())
    if campaign.status == "waiting" and closed:
        return report  # the upkeep publishes its rows when the window opens
    with db.session() as s:
        s.execute(update(Campaign).where(Campaign.id == campaign.id).values(
            status="waiting" if closed else "sending", status_reason=closed,
            resume_at=None, launched_at=func.coalesce(Campaign.launched_at, utcnow())))
    if not closed:
        report.enqueued = _enqueue_status(db, campaign, ("queued",), enqueue,
                                          settings.sending.enqueue_batch)
    return report


def _window_closed(campaign: Campaign, now: datetime) -> str | None:
    """None when the campaign may send now, else why not ("waiting for window …")."""
    if not campaign.send_window:
        return None
    from campaigns.rates.windows import parse_window
    window = parse_window(campaign.send_window, campaign.timezone or "UTC")
    if window.contains(now):
        return None
    opening = window.next_opening(now)
    return (f"waiting for window {window.describe()}; opens {opening:%Y-%m-%d %H:%M} UTC")


def _insert(db: Database) -> Any:
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING on both."""
    from sqlalchemy.dialects import postgresql, sqlite
    return postgresql.insert if db.dialect == "postgresql" else sqlite.insert


def _expand(db: Database, campaign: Campaign, batch: int) -> tuple[int, int]:
    """One Delivery row per list member, keyset-paged; an address with a suppression that
    stops this campaign (suppressions.blocks: its scope) gets `suppressed`.
    Returns (rows added, of which suppressed)."""
    before = _status_counts(db, campaign.id)
    insert, last = _insert(db), 0
    stmt = insert(Delivery).on_conflict_do_nothing(index_elements=["campaign_id", "address"])
    query = (select(ListMember.contact_id, Contact.email, blocks(Contact.email, campaign.id))
             .join(Contact, Contact.id == ListMember.contact_id)
             .where(ListMember.list_id == campaign.list_id)
             .order_by(ListMember.contact_id).limit(batch))
    while True:
        with db.session() as s:
            rows = s.execute(query.where(ListMember.contact_id > last)).all()
            if not rows:
                break
            now = utcnow()
            s.execute(stmt, [{"campaign_id": campaign.id, "contact_id": cid, "address": email,
                              "status": "suppressed" if sup else "queued", "attempts": 0,
                              "updated_at": now} for cid, email, sup in rows])
            last = rows[-1][0]
    after = _status_counts(db, campaign.id)
    return (sum(after.values()) - sum(before.values()),
            after.get("suppressed", 0) - before.get("suppressed", 0))


def _status_counts(db: Database, campaign_id: int) -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(select(Delivery.status, func.count()).where(
            Delivery.campaign_id == campaign_id).group_by(Delivery.status)).all()
    return {status: n for status, n in rows}


def _enqueue_status(db: Database, campaign: Campaign, statuses: Sequence[str], enqueue: Enqueue,
                    batch: int) -> int:
    campaign_id, last, total = campaign.id, 0, 0
    while True:
        with db.session() as s:
            ids = s.scalars(select(Delivery.id).where(
                Delivery.campaign_id == campaign_id, Delivery.status.in_(statuses),
                Delivery.id > last).order_by(Delivery.id).limit(batch)).all()
        if not ids:
            return total
        enqueue(ids, None, campaign.priority)
        total += len(ids)
        last = ids[-1]


def _set_status(db: Database, name: str, allowed: Sequence[str], new: str,
                reason: str | None = None) -> Campaign:
    with db.session() as s:
        campaign = get_campaign(s, name)
        if campaign.status not in allowed:
            raise StateError(f"campaign '{name}' is {campaign.status}; "
                             f"this needs one of: {', '.join(allowed)}")
        values: dict[str, Any] = {"status": new, "status_reason": reason}
        if new in (CampaignStatus.CANCELLED.value, CampaignStatus.FINISHED.value):
            values["finished_at"] = utcnow()
        s.execute(update(Campaign).where(Campaign.id == campaign.id).values(**values))
        campaign.status = new
    return campaign


def pause(db: Database, name: str, reason: str = "paused by a person") -> None:
    """Workers claim rows only of `sending` campaigns, so no new send starts after this."""
    _set_status(db, name, ("sending", "waiting"), CampaignStatus.PAUSED.value, reason)


def resume(db: Database, settings: Settings, name: str, enqueue: Enqueue) -> int:
    """Back to sending; re-publishes the unsent rows only. Returns how many. A waiting
    campaign is woken now (if its window is closed or its cap still reached, it waits
    again)."""
    campaign = _set_status(db, name, ("paused", "waiting"), CampaignStatus.SENDING.value)
    return _publish_unsent(db, settings, campaign, enqueue)


def _publish_unsent(db: Database, settings: Settings, campaign: Campaign,
                    enqueue: Enqueue) -> int:
    count = _enqueue_status(db, campaign, ("queued",), enqueue, settings.sending.enqueue_batch)
    return count + _enqueue_deferred(db, campaign.id, enqueue)


def _enqueue_deferred(db: Database, campaign_id: int | None, enqueue: Enqueue,
                      older_than: datetime | None = None) -> int:
    """Publish deferred rows of sending campaigns, each with its remaining wait. Rows picked
    for being overdue get `next_attempt_at = now`, so they are not picked again at once."""
    now = utcnow()
    query = (select(Delivery.id, Delivery.next_attempt_at, Campaign.priority)
             .join(Campaign, Campaign.id == Delivery.campaign_id)
             .where(Delivery.status == "deferred", Campaign.status == "sending"))
    if campaign_id is not None:
        query = query.where(Delivery.campaign_id == campaign_id)
    if older_than is not None:
        query = query.where(Delivery.next_attempt_at < older_than)
    with db.session() as s:
        rows = s.execute(query).all()
        if older_than is not None and rows:
            s.execute(update(Delivery).where(Delivery.id.in_([r[0] for r in rows]),
                                             Delivery.status == "deferred")
                      .values(next_attempt_at=now))
    for did, due, priority in rows:
        wait = 0.0 if older_than is not None else ((as_utc(due) or now) - now).total_seconds()
        enqueue([did], wait if wait > 0 else None, priority)
    return len(rows)


def cancel(db: Database, name: str) -> int:
    """Cancel the campaign; its unsent rows become `cancelled`. Returns how many."""
    campaign = _set_status(db, name, ("draft", "scheduled", "sending", "paused", "waiting"),
                           CampaignStatus.CANCELLED.value)
    with db.session() as s:
        return _rowcount(s.execute(update(Delivery).where(
            Delivery.campaign_id == campaign.id, Delivery.status.in_(PENDING)).values(
            status="cancelled", updated_at=utcnow())))


def counts(db: Database, name: str) -> dict[str, Any]:
    """The ledger's view of a campaign, as `campaigns status --json` prints it."""
    with db.session() as s:
        campaign = get_campaign(s, name)
    by_status = {st: 0 for st in DELIVERY_STATUSES}
    by_status.update(_status_counts(db, campaign.id))
    return {"campaign": campaign.name, "status": campaign.status,
            "reason": campaign.status_reason, "total": sum(by_status.values()),
            "counts": by_status}


def maintenance(db: Database, enqueue: Enqueue | None = None,
                settings: Settings | None = None,
                pending: BrokerPending | None = None) -> dict[str, int]:
    """Periodic ledger upkeep (every worker runs it, one at a time):
    rows `sending` past their lease become `in_doubt` (held for a person: the worker died
    between the relay's answer and our write, we cannot know whether it was sent);
    deferred rows whose retry task was lost are re-published, and so are queued rows when the
    broker holds no task at all (`pending`: a flushed Redis, a worker killed between taking
    a task and recording it; the claim makes a duplicate harmless); campaigns with no open row
    are finished; sending campaigns outside their window wait, and waiting campaigns whose
    window opened (or whose wait ended) send again."""
    now = utcnow()
    with db.session() as s:
        in_doubt = _rowcount(s.execute(update(Delivery).where(
            Delivery.status == "sending", Delivery.lease_until < now).values(
            status="in_doubt", updated_at=now,
            reply_text="lease expired while sending: the worker stopped before recording"
                       " the relay's answer")))
    republished = 0
    if enqueue is not None:
        republished = _enqueue_deferred(db, None, enqueue,
                                        older_than=now - timedelta(seconds=OVERDUE_RETRY_S))
        if pending is not None and settings is not None:
            republished += _recover_lost(db, enqueue, pending, now - timedelta(
                seconds=settings.sending.republish_after_s))
    with db.session() as s:
        open_rows = exists().where(Delivery.campaign_id == Campaign.id,
                                   Delivery.status.in_(OPEN))
        finished = _rowcount(s.execute(update(Campaign).where(
            Campaign.status.in_(("sending", "waiting")), ~open_rows).values(
            status="finished", finished_at=now)))
    woken = parked = 0
    if enqueue is not None and settings is not None:
        parked, woken = _windows(db, settings, enqueue, now)
    return {"in_doubt": in_doubt, "republished": republished, "finished": finished,
            "parked": parked, "woken": woken}


def _recover_lost(db: Database, enqueue: Enqueue, pending: BrokerPending,
                  published_before: datetime) -> int:
    """Queued rows of sending campaigns whose task the broker lost. Asked only when the
    broker holds no send task at all (so a backlog waiting its turn is never published
    twice), for rows handed over before `published_before`; each gets `published_at`."""
    if pending() != 0:
        return 0
    handed = func.coalesce(Delivery.published_at, Delivery.updated_at)
    with db.session() as s:
        rows = s.execute(select(Delivery.id, Campaign.priority)
                         .join(Campaign, Campaign.id == Delivery.campaign_id)
                         .where(Delivery.status == DeliveryStatus.QUEUED.value,
                                Campaign.status == CampaignStatus.SENDING.value,
                                handed < published_before)
                         .order_by(Delivery.id).limit(RECOVER_BATCH)).all()
        if not rows:
            return 0
        s.execute(update(Delivery).where(Delivery.id.in_([r[0] for r in rows]))
                  .values(published_at=utcnow()))
    for priority in PRIORITIES:
        ids = [did for did, p in rows if p == priority]
        if ids:
            enqueue(ids, None, priority)
    return len(rows)


def _windows(db: Database, settings: Settings, enqueue: Enqueue, now: datetime) -> tuple[int, int]:
    """Park sending campaigns whose window closed; wake waiting ones that may send again."""
    parked = woken = 0
    with db.session() as s:
        campaigns = s.scalars(select(Campaign).where(
            Campaign.status.in_(("sending", "waiting")))).all()
    for campaign in campaigns:
        closed = _window_closed(campaign, now)
        if campaign.status == "sending" and closed:
            parked += _transition(db, campaign, "sending", "waiting", closed)
        elif campaign.status == "waiting" and not closed and (
                campaign.resume_at is None or as_utc(campaign.resume_at) <= now):
            if _transition(db, campaign, "waiting", "sending", None):
                woken += 1
                _publish_unsent(db, settings, campaign, enqueue)
    return parked, woken


def _transition(db: Database, campaign: Campaign, old: str, new: str, reason: str | None) -> int:
    with db.session() as s:
        return _rowcount(s.execute(update(Campaign).where(
            Campaign.id == campaign.id, Campaign.status == old).values(
            status=new, status_reason=reason, resume_at=None)))


def _rowcount(result: Any) -> int:
    """Rows an UPDATE touched (reliable for UPDATE on SQLite and PostgreSQL)."""
    return int(cast(CursorResult[Any], result).rowcount)


def list_campaigns(db: Database) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.execute(select(Campaign.name, Campaign.status, ContactList.name, Template.name)
                         .join(ContactList, ContactList.id == Campaign.list_id)
                         .join(Template, Template.id == Campaign.template_id)
                         .order_by(Campaign.id)).all()
    return [{"name": n, "status": st, "list": ln, "template": tn} for n, st, ln, tn in rows]
