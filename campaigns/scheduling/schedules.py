"""Scheduled and recurring runs: what `tick` does every few seconds (Celery beat asks a
worker to run it; see workers/tasks.py).

Exactly once: a one-off campaign is launched by whoever moves it out of `scheduled` (one
atomic UPDATE … WHERE status = 'scheduled'); a recurring firing by whoever inserts its
`schedule_runs` row (unique on schedule and scheduled time). Two beat processes, a beat
restarted mid-dispatch, or two workers ticking at once therefore launch a run once. The
Redis lock the task takes around `tick` only saves duplicate work.

Missed runs: a run found due less than `grace_s` after its time is sent late and says so;
an older one is recorded as skipped. Of several missed firings of one schedule only the
newest may be sent: never a burst of catch-up runs.
"""
from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from campaigns import lifecycle
from campaigns.scheduling.cron import next_firing, parse_at, parse_cron, zone
from campaigns.db import Database, as_utc
from campaigns.errors import CampaignsError, InputError, NotFound, StateError
from campaigns.ledger import campaigns as ledger_campaigns
from campaigns.ledger.reads import get_campaign
from campaigns.models import Campaign, CampaignStatus, Schedule, ScheduleRun, utcnow
from campaigns.settings import Settings

log = logging.getLogger(__name__)

#: a run started this much after its time says it was late
LATE_AFTER_S = 60.0

Fetch = Callable[[str, float], Any]


def fetch_json(url: str, timeout_s: float) -> Any:
    """A schedule's data source: JSON from http(s):// or file://."""
    if not url.startswith(("http://", "https://", "file://")):
        raise InputError(f"{url!r}: expected an http://, https:// or file:// URL",
                         field="--data-url")
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - checked above
        return json.loads(response.read().decode("utf-8"))


# ------------------------------------------------------------------ one-off schedules
def schedule_once(db: Database, name: str, at: str, tz_name: str | None = None,
                  now: datetime | None = None) -> datetime:
    """Set campaign NAME to launch at `at` (wall-clock in `tz_name`, default the campaign's
    zone). Returns the UTC instant."""
    now = now or utcnow()
    with db.session() as s:
        campaign = get_campaign(s, name)
    schedulable = (CampaignStatus.DRAFT.value, CampaignStatus.SCHEDULED.value)
    only_a_draft = StateError(f"campaign '{name}' is {campaign.status}; only a draft can be "
                              f"scheduled")
    if campaign.status not in schedulable:
        raise only_a_draft
    tz = zone(tz_name or campaign.timezone or "UTC")
    when = parse_at(at, tz)
    if when <= now:
        local_now = now.astimezone(tz)
        raise InputError(f"{at} {tz.key} is in the past (now {local_now:%Y-%m-%d %H:%M} "
                         f"{tz.key})", field="--at")
    more = {"timezone": tz.key} if tz_name else {}
    if not ledger_campaigns.transition(
            db, campaign.id, schedulable, CampaignStatus.SCHEDULED,
            f"scheduled for {when.astimezone(tz):%Y-%m-%d %H:%M %Z}", scheduled_at=when, **more):
        raise only_a_draft
    return when


def unschedule(db: Database, name: str) -> None:
    with db.session() as s:
        campaign = get_campaign(s, name)
    if not ledger_campaigns.transition(db, campaign.id, CampaignStatus.SCHEDULED,
                                       CampaignStatus.DRAFT, "unscheduled", scheduled_at=None):
        with db.session() as s:
            campaign = get_campaign(s, name)
        raise StateError(f"campaign '{name}' is {campaign.status}, not scheduled")


# ------------------------------------------------------------------ recurring schedules
@dataclass
class ScheduleSpec:
    name: str
    template: str
    list_name: str
    from_addr: str
    cron: str
    timezone: str
    reply_to: str | None = None
    relay: str | None = None
    priority: str = "bulk"
    window: str | None = None
    data_url: str | None = None


def add_schedule(db: Database, settings: Settings, spec: ScheduleSpec,
                 now: datetime | None = None) -> Schedule:
    """Check everything a run will need now (template, list, sender, relay, window, cron,
    zone), so a schedule that is accepted can fire."""
    from campaigns.audience.contacts import get_list
    from campaigns.content.mime import parse_address
    from campaigns.rates.windows import parse_window
    now = now or utcnow()
    cron, tz = parse_cron(spec.cron), zone(spec.timezone)
    if spec.reply_to:
        parse_address(spec.reply_to, field="--reply-to")
    if spec.window:
        parse_window(spec.window, tz.key)
    if spec.priority not in lifecycle.PRIORITIES:
        raise InputError(f"'{spec.priority}': expected one of {', '.join(lifecycle.PRIORITIES)}",
                         field="--priority")
    if spec.data_url and not spec.data_url.startswith(("http://", "https://", "file://")):
        raise InputError(f"{spec.data_url!r}: expected an http://, https:// or file:// URL",
                         field="--data-url")
    _, sender = parse_address(spec.from_addr, field="--from")
    relay = settings.target(spec.relay, sender.rpartition("@")[2])
    with db.session() as s:
        get_list(s, spec.list_name)
        lifecycle.get_template(s, spec.template)
        if s.scalar(select(Schedule.id).where(Schedule.name == spec.name)):
            raise StateError(f"a schedule named '{spec.name}' already exists")
        schedule = Schedule(name=spec.name, template=spec.template, list_name=spec.list_name,
                            from_addr=spec.from_addr, reply_to=spec.reply_to, relay=relay,
                            priority=spec.priority, send_window=spec.window, cron=cron.text,
                            timezone=tz.key, data_url=spec.data_url, paused=False,
                            next_run_at=next_firing(cron, now, tz), created_at=now)
        s.add(schedule)
    return schedule


def _get(s: Any, name: str) -> Schedule:
    schedule = s.scalar(select(Schedule).where(Schedule.name == name))
    if schedule is None:
        raise NotFound(f"no schedule named '{name}'")
    return schedule  # type: ignore[no-any-return]


def set_paused(db: Database, name: str, paused: bool, now: datetime | None = None) -> None:
    """Pause or resume a schedule. Resuming starts from the next firing after now: the
    firings missed while paused are not sent."""
    now = now or utcnow()
    with db.session() as s:
        schedule = _get(s, name)
        schedule.paused = paused
        if not paused:
            schedule.next_run_at = next_firing(parse_cron(schedule.cron), now,
                                               zone(schedule.timezone))


def remove_schedule(db: Database, name: str) -> None:
    """Remove the schedule and its run history (the campaigns it created stay)."""
    with db.session() as s:
        s.delete(_get(s, name))


def list_schedules(db: Database) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.scalars(select(Schedule).order_by(Schedule.name)).all()
        out = []
        for sc in rows:
            tz = zone(sc.timezone)
            runs = s.scalar(select(func.count()).select_from(ScheduleRun)
                            .where(ScheduleRun.schedule_id == sc.id)) or 0
            out.append({"name": sc.name, "cron": sc.cron, "timezone": sc.timezone,
                        "paused": sc.paused, "template": sc.template, "list": sc.list_name,
                        "next_run": None if sc.paused else
                        as_utc(sc.next_run_at).astimezone(tz).isoformat(timespec="minutes"),
                        "runs": runs})
    return out


def runs(db: Database, name: str) -> list[dict[str, Any]]:
    """Past runs of a schedule, newest first, with their campaign's counts."""
    with db.session() as s:
        schedule = _get(s, name)
        tz = zone(schedule.timezone)
        rows = s.execute(select(ScheduleRun, Campaign.name).outerjoin(
            Campaign, Campaign.id == ScheduleRun.campaign_id)
            .where(ScheduleRun.schedule_id == schedule.id)
            .order_by(ScheduleRun.scheduled_for.desc())).all()
    out = []
    for run, campaign_name in rows:
        item = {"number": run.number, "status": run.status, "campaign": campaign_name,
                "scheduled_for": as_utc(run.scheduled_for).astimezone(tz).isoformat(timespec="minutes"),
                "started_at": as_utc(run.started_at).isoformat(timespec="seconds"),
                "note": run.note}
        if campaign_name:
            item["counts"] = {k: v for k, v in lifecycle.counts(db, campaign_name)["counts"].items() if v}
        out.append(item)
    return out


# ------------------------------------------------------------------ the tick
@dataclass
class TickReport:
    launched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def tick(db: Database, settings: Settings, enqueue: lifecycle.Enqueue,
         now: datetime | None = None, fetch: Fetch = fetch_json) -> TickReport:
    """Launch what is due at `now`: one-off campaigns and recurring firings."""
    now = now or utcnow()
    report = TickReport()
    _one_offs(db, settings, enqueue, now, report)
    with db.session() as s:
        due = s.scalars(select(Schedule.id).where(Schedule.paused.is_(False),
                                                  Schedule.next_run_at <= now)).all()
    for schedule_id in due:
        try:
            _fire(db, settings, enqueue, schedule_id, now, fetch, report)
        except Exception:  # one broken schedule must not stop the others
            log.exception("schedule %s: firing failed", schedule_id)
    return report


def _one_offs(db: Database, settings: Settings, enqueue: lifecycle.Enqueue, now: datetime,
              report: TickReport) -> None:
    grace = timedelta(seconds=settings.schedules.grace_s)
    with db.session() as s:
        due = s.execute(select(Campaign.id, Campaign.name, Campaign.scheduled_at, Campaign.timezone)
                        .where(Campaign.status == CampaignStatus.SCHEDULED.value, Campaign.scheduled_at <= now)).all()
    for cid, name, scheduled_at, tz_name in due:
        at = as_utc(scheduled_at or now)
        tz = zone(tz_name or "UTC")
        late = now - at
        missed = late > grace
        reason = (f"scheduled run of {at.astimezone(tz):%Y-%m-%d %H:%M %Z} missed by "
                  f"{_span(late)} (grace {_span(grace)}): not sent; launch it by hand if still "
                  f"wanted") if missed else f"launching the run scheduled for {at.astimezone(tz):%Y-%m-%d %H:%M %Z}"
        # the claim: only one process moves it out of `scheduled`
        if not ledger_campaigns.transition(db, cid, CampaignStatus.SCHEDULED,
                                           CampaignStatus.DRAFT, reason):
            continue
        if missed:
            log.warning("campaign %s: %s", name, reason)
            report.skipped.append(name)
            continue
        try:
            lifecycle.launch(db, settings, name, enqueue)
        except CampaignsError as err:
            _note(db, cid, f"scheduled launch failed: {err}")
            report.failed.append(name)
            continue
        if late.total_seconds() > LATE_AFTER_S:
            _note(db, cid, f"sent late: scheduled for {at.astimezone(tz):%Y-%m-%d %H:%M %Z}, "
                           f"launched {_span(late)} after")
        report.launched.append(name)


def _note(db: Database, campaign_id: int, text: str) -> None:
    ledger_campaigns.note(db, campaign_id, text)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _fire(db: Database, settings: Settings, enqueue: lifecycle.Enqueue, schedule_id: int,
          now: datetime, fetch: Fetch, report: TickReport) -> None:
    with db.session() as s:
        schedule = s.get(Schedule, schedule_id)
        assert schedule is not None
        cron, tz = parse_cron(schedule.cron), zone(schedule.timezone)
        start = as_utc(schedule.next_run_at)
        firings: list[datetime] = []
        t = start
        while t <= now and len(firings) < 10_000:
            firings.append(t)
            t = next_firing(cron, t, tz)
        spec = {c: getattr(schedule, c) for c in ("name", "template", "list_name", "from_addr",
                                                  "reply_to", "relay", "priority", "send_window",
                                                  "data_url")}
        # advance first, guarded by the value read: a second scheduler sees the new value
        s.execute(update(Schedule).where(Schedule.id == schedule_id,
                                         Schedule.next_run_at == schedule.next_run_at)
                  .values(next_run_at=t))
    grace = timedelta(seconds=settings.schedules.grace_s)
    for index, at in enumerate(firings):
        newest = index == len(firings) - 1
        if newest and now - at <= grace:
            _run(db, settings, enqueue, schedule_id, spec, at, tz, now, fetch, report)
            continue
        why = ("a newer firing was also missed" if not newest else
               f"missed by {_span(now - at)} (grace {_span(grace)})")
        if _claim_run(db, schedule_id, at, "skipped", f"skipped: {why}") is not None:
            log.warning("schedule %s: run of %s skipped: %s", spec["name"],
                        at.astimezone(tz).isoformat(timespec="minutes"), why)
            report.skipped.append(f"{spec['name']}@{at.isoformat()}")


def _claim_run(db: Database, schedule_id: int, at: datetime, status: str,
               note: str | None) -> tuple[int, int] | None:
    """Insert the firing's run row: (run id, run number), or None when another process
    already did (the unique key is the exactly-once guarantee)."""
    try:
        with db.session() as s:
            number = (s.scalar(select(func.count()).select_from(ScheduleRun)
                               .where(ScheduleRun.schedule_id == schedule_id,
                                      ScheduleRun.status != "skipped")) or 0) + 1
            run = ScheduleRun(schedule_id=schedule_id, scheduled_for=at, number=number,
                              status=status, note=note, started_at=utcnow())
            s.add(run)
            s.flush()
            return run.id, number
    except IntegrityError:
        return None


def _run(db: Database, settings: Settings, enqueue: lifecycle.Enqueue, schedule_id: int,
         spec: dict[str, Any], at: datetime, tz: Any, now: datetime, fetch: Fetch,
         report: TickReport) -> None:
    claimed = _claim_run(db, schedule_id, at, "running", None)
    if claimed is None:
        return
    run_id, number = claimed
    local = at.astimezone(tz)
    late = now - at
    note = (f"sent late: {_span(late)} after its time" if late.total_seconds() > LATE_AFTER_S
            else None)
    try:
        data = fetch(spec["data_url"], settings.schedules.data_timeout_s) if spec["data_url"] else None
    except Exception as err:  # noqa: BLE001 - any failure of the source: no send, say why
        _finish(db, run_id, "failed", None, f"data source {spec['data_url']} failed: "
                                           f"{type(err).__name__}: {err}; nothing sent")
        log.error("schedule %s: run %d not sent: data source failed: %s", spec["name"], number, err)
        report.failed.append(spec["name"])
        return
    name = f"{spec['name']}-{local:%Y-%m-%d}"
    with db.session() as s:
        if s.scalar(select(Campaign.id).where(Campaign.name == name)):
            name = f"{spec['name']}-{local:%Y-%m-%d-%H%M}"
    try:
        campaign = lifecycle.create_campaign(
            db, settings, name=name, list_name=spec["list_name"], template=spec["template"],
            from_addr=spec["from_addr"], reply_to=spec["reply_to"], relay=spec["relay"],
            priority=spec["priority"], window=spec["send_window"], timezone=tz.key)
        ledger_campaigns.set_values(db, campaign.id, run_context={
            "date": local.date().isoformat(), "number": number,
            "scheduled_for": local.isoformat(timespec="minutes"), "data": data})
        lifecycle.launch(db, settings, name, enqueue)
    except CampaignsError as err:
        _finish(db, run_id, "failed", None, f"{err}; nothing sent")
        log.error("schedule %s: run %d failed: %s", spec["name"], number, err)
        report.failed.append(spec["name"])
        return
    _finish(db, run_id, "launched", campaign.id, note)
    if note:
        _note(db, campaign.id, note)
    report.launched.append(name)


def _finish(db: Database, run_id: int, status: str, campaign_id: int | None,
            note: str | None) -> None:
    with db.session() as s:
        s.execute(update(ScheduleRun).where(ScheduleRun.id == run_id)
                  .values(status=status, campaign_id=campaign_id, note=note))
