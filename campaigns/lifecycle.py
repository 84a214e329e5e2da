"""Campaign lifecycle: create, launch (preflight, expand, enqueue), pause, resume, cancel,
status, and the periodic maintenance that keeps the ledger honest. It decides; the ledger
(campaigns.ledger) writes.

Enqueueing is done through a callable handed in by the caller (the Celery layer), so this
module never imports Celery."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func

from campaigns.db import Database, as_utc
from campaigns.errors import InputError, StateError
from campaigns.ledger import campaigns as ledger_campaigns
from campaigns.ledger import messages as ledger_messages
from campaigns.ledger import rows as ledger_rows
from campaigns.ledger.reads import (active_campaigns, counts, get_campaign, get_template,
                                    list_campaigns, status_counts)
from campaigns.models import Campaign, CampaignStatus, DeliveryStatus, utcnow
from campaigns.settings import Settings

__all__ = ["Enqueue", "LaunchReport", "cancel", "counts", "create_campaign", "get_campaign",
           "get_template", "launch", "list_campaigns", "maintenance", "pause", "resume"]
SENDING, WAITING = CampaignStatus.SENDING, CampaignStatus.WAITING

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


def create_campaign(db: Database, settings: Settings, *, name: str, list_name: str,
                    template: str, from_addr: str, reply_to: str | None = None,
                    relay: str | None = None, attachment_column: str | None = None,
                    priority: str = "bulk", window: str | None = None,
                    timezone: str | None = None) -> Campaign:
    from campaigns.audience.contacts import get_list
    from campaigns.content.mime import parse_address
    from campaigns.rates.windows import parse_window

    if priority not in PRIORITIES:
        raise InputError(f"'{priority}': expected one of {', '.join(PRIORITIES)}", field="--priority")
    tz = timezone or settings.rates.timezone
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone {tz!r}: expected an IANA name such as "
                         "Europe/Rome or UTC", field="--timezone") from None
    if window:
        try:
            parse_window(window, tz)  # InputError naming the expected form
        except InputError as err:
            raise InputError(str(err), field="--window") from None

    if reply_to:
        parse_address(reply_to, field="--reply-to")
    _, sender = parse_address(from_addr, field="--from")
    relay_name = settings.target(relay, sender.rpartition("@")[2])
    if not name.strip() or any(c in name for c in "\r\n"):
        raise InputError("a campaign name must be a non-empty single line", field="NAME")
    with db.session() as s:
        list_id, template_id = get_list(s, list_name).id, get_template(s, template).id
    return ledger_campaigns.create(
        db, name=name, list_id=list_id, template_id=template_id, from_addr=from_addr,
        reply_to=reply_to, relay=relay_name, attachment_column=attachment_column,
        priority=priority, send_window=window, timezone=tz)


@dataclass
class LaunchReport:
    campaign: str
    added: int = 0
    suppressed: int = 0
    enqueued: int = 0           # handed to the broker now (the first window; the feeder the rest)
    relaunch: bool = False      # it was already sending (or waiting): nothing new starts
    was: str = ""               # its status before this launch
    queued: int = 0             # its rows queued for sending
    warnings: list[str] = field(default_factory=list)


def launch(db: Database, settings: Settings, name: str, enqueue: Enqueue) -> LaunchReport:
    """Preflight, mark the campaign sending, write its rows (in batches, inside the
    database) and hand the first window of them to the broker after the first batch: the
    workers' feeder (`feed`) hands over the rest as they drain the queue.

    Idempotent: launching a campaign that is already sending adds only recipients that
    joined the list since (the feeder hands them over; claims make duplicates harmless)."""
    from campaigns.content.preflight import run_preflight

    with db.session() as s:
        campaign = get_campaign(s, name)
    if campaign.status in ledger_campaigns.FINAL:
        raise StateError(f"campaign '{name}' is {campaign.status}; create a new one to send again")
    if campaign.stream is not None:
        raise StateError(f"campaign '{name}' holds a stream's messages: it is always open")
    if campaign.status == CampaignStatus.PAUSED.value:
        raise StateError(f"campaign '{name}' is paused; use `campaigns resume {name}`")
    report = LaunchReport(campaign=name, relaunch=campaign.status in ledger_campaigns.ACTIVE,
                          was=campaign.status)
    if not report.relaunch:
        report.warnings = run_preflight(db, settings, campaign)
    closed = _window_closed(campaign, utcnow())
    if not (campaign.status == WAITING.value and closed) and not ledger_campaigns.transition(
            db, campaign.id, campaign.status, WAITING if closed else SENDING, closed,
            resume_at=None, expanded_at=None,
            launched_at=func.coalesce(Campaign.launched_at, utcnow())):
        with db.session() as s:
            now_status = get_campaign(s, name).status
        if now_status in ledger_campaigns.ACTIVE:   # a launch at the same time won
            report.relaunch, report.was = True, now_status
            return report
        raise StateError(f"campaign '{name}' became {now_status} while launching")
    ledger_campaigns.set_values(db, campaign.id, expanded_at=None)

    def first_window() -> None:
        # after each committed batch of rows: sending starts with the first one
        if not closed and report.enqueued < settings.sending.feed_window:
            report.enqueued += _feed_one(db, campaign, enqueue,
                                         settings.sending.feed_window - report.enqueued)
    report.added, report.suppressed = ledger_rows.expand(
        db, campaign.id, campaign.list_id, settings.sending.expand_batch, first_window)
    ledger_campaigns.set_values(db, campaign.id, expanded_at=utcnow())
    report.queued = status_counts(db, campaign.id).get(DeliveryStatus.QUEUED.value, 0)
    return report


def _feed_one(db: Database, campaign: Campaign, enqueue: Enqueue, room: int) -> int:
    """Hand the campaign's next `room` queued rows to the broker (the feed cursor moves)."""
    ids = ledger_rows.feed(db, campaign.id, room)
    if ids:
        enqueue(ids, None, campaign.priority)
    return len(ids)


def feed(db: Database, settings: Settings, enqueue: Enqueue,
         waiting: Callable[[str], int | None]) -> int:
    """Keep [sending] feed_window send tasks waiting in the broker for each priority, taken
    from the ledger in id order, shared among the sending campaigns (a stream's messages are
    published when they are handed over). `waiting(priority)`: the tasks in that queue now
    (None when the broker cannot tell: the rows handed over and not yet taken are counted
    instead). A message parked under a limit is not waiting, so a slow receiver never
    fills the window. Run by one worker of the fleet at a time. Returns how many."""
    window = settings.sending.feed_window
    by_priority: dict[str, list[Campaign]] = {}
    for campaign in active_campaigns(db):
        if campaign.status == SENDING.value and campaign.stream is None:
            by_priority.setdefault(campaign.priority, []).append(campaign)
    fed = 0
    for priority, campaigns in by_priority.items():
        depth = waiting(priority)
        if depth is None:
            depth = sum(ledger_rows.in_flight(db, c.id) for c in campaigns)
        room = window - depth
        if room <= 0:
            continue
        share = max(1, room // len(campaigns))
        for campaign in campaigns:
            fed += _feed_one(db, campaign, enqueue, share)
    return fed


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


def pause(db: Database, name: str, reason: str = "paused by a person") -> None:
    """Workers claim rows only of `sending` campaigns, so no new send starts after this."""
    ledger_campaigns.change(db, name, (SENDING, WAITING), CampaignStatus.PAUSED, reason)


def resume(db: Database, settings: Settings, name: str, enqueue: Enqueue) -> int:
    """Back to sending; re-publishes the unsent rows only. Returns how many. A waiting
    campaign is woken now (if its window is closed or its cap still reached, it waits
    again)."""
    campaign = ledger_campaigns.change(db, name, (CampaignStatus.PAUSED, WAITING), SENDING)
    return _publish_unsent(db, settings, campaign, enqueue)


def _publish_unsent(db: Database, settings: Settings, campaign: Campaign,
                    enqueue: Enqueue) -> int:
    """After a pause or a wait: the tasks published before were taken and skipped, so the
    feed starts again from the first unsent row (a first window now, the feeder the rest)
    and deferred rows get their retry tasks again."""
    ledger_rows.unfed(db, campaign.id)
    count = _feed_one(db, campaign, enqueue, settings.sending.feed_window)
    return count + _enqueue_deferred(db, campaign.id, enqueue)


def _enqueue_deferred(db: Database, campaign_id: int | None, enqueue: Enqueue,
                      older_than: datetime | None = None) -> int:
    """Publish deferred rows of sending campaigns, each with its remaining wait. Rows picked
    for being overdue get `next_attempt_at = now`, so they are not picked again at once."""
    now = utcnow()
    rows = ledger_rows.deferred(db, campaign_id, older_than)
    for did, due, priority in rows:
        wait = 0.0 if older_than is not None else ((as_utc(due) or now) - now).total_seconds()
        enqueue([did], wait if wait > 0 else None, priority)
    return len(rows)


def cancel(db: Database, name: str) -> int:
    """Cancel the campaign; its unsent rows become `cancelled`. Returns how many. A stream's
    campaign is paused, never cancelled (it would refuse every later message)."""
    with db.session() as s:
        if get_campaign(s, name).stream is not None:
            raise StateError(f"campaign '{name}' holds a stream's messages: pause it instead")
    campaign = ledger_campaigns.change(
        db, name, [s for s in CampaignStatus if s.value not in ledger_campaigns.FINAL],
        CampaignStatus.CANCELLED)
    return ledger_rows.cancel_unsent(db, campaign.id)


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
    in_doubt = ledger_rows.expire_leases(db, now)
    republished = 0
    if enqueue is not None:
        republished = _enqueue_deferred(db, None, enqueue,
                                        older_than=now - timedelta(seconds=OVERDUE_RETRY_S))
        if pending is not None and settings is not None:
            republished += _recover_lost(db, enqueue, pending, now - timedelta(
                seconds=settings.sending.republish_after_s))
    finished = ledger_campaigns.finish_done(db, now)
    swept = ledger_messages.sweep(db, now)
    woken = parked = 0
    if enqueue is not None and settings is not None:
        parked, woken = _windows(db, settings, enqueue, now)
    return {"in_doubt": in_doubt, "republished": republished, "finished": finished,
            "parked": parked, "woken": woken, **swept}


def _recover_lost(db: Database, enqueue: Enqueue, pending: BrokerPending,
                  published_before: datetime) -> int:
    """Queued rows of sending campaigns whose task the broker lost. Asked only when the
    broker holds no send task at all (so a backlog waiting its turn is never published
    twice), for rows handed over before `published_before`; each gets `published_at`."""
    if pending() != 0:
        return 0
    rows = ledger_rows.lost_queued(db, published_before, RECOVER_BATCH)
    for priority in PRIORITIES:
        ids = [did for did, p in rows if p == priority]
        if ids:
            enqueue(ids, None, priority)
    return len(rows)


def _windows(db: Database, settings: Settings, enqueue: Enqueue, now: datetime) -> tuple[int, int]:
    """Park sending campaigns whose window closed; wake waiting ones that may send again."""
    parked = woken = 0
    for campaign in active_campaigns(db):
        closed = _window_closed(campaign, now)
        if campaign.status == SENDING.value and closed:
            parked += ledger_campaigns.transition(db, campaign.id, SENDING, WAITING, closed,
                                                  resume_at=None)
        elif campaign.status == WAITING.value and not closed and (
                campaign.resume_at is None or as_utc(campaign.resume_at) <= now):
            if ledger_campaigns.transition(db, campaign.id, WAITING, SENDING, resume_at=None):
                woken += 1
                _publish_unsent(db, settings, campaign, enqueue)
    return parked, woken
