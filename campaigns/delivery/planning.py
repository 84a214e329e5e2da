"""`campaigns plan`: duration from the audience's domain-group mix and the limits; and
`campaigns status`: why a sending campaign is slow or stuck (`explain`)."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sqlalchemy import func, or_, select

from campaigns.ledger.reads import get_campaign
from campaigns.models import (PENDING, CampaignStatus, Contact, Delivery, ListMember,
                              Suppression, utcnow)

#: Redis key: when a worker last took a send task (epoch seconds; workers/tasks.py)
LAST_TASK_KEY = "campaigns:last-task"
#: no task taken for this long while rows are due: no worker consumes the queue
IDLE_WORKERS_S = 60.0
#: pending addresses read to name the receivers a campaign still waits for
SAMPLE = 5000


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def estimate(pacer: Any, name: str) -> list[str]:
    with pacer.db.session() as s:
        campaign = get_campaign(s, name)
        emails = s.scalars(select(Contact.email)
                           .join(ListMember, ListMember.contact_id == Contact.id)
                           .outerjoin(Suppression, Suppression.address == Contact.email)
                           .where(ListMember.list_id == campaign.list_id,
                                  Suppression.id.is_(None))).all()
    from campaigns.delivery.pools import first_relay
    relay = first_relay(pacer.settings, campaign.relay)
    total = len(emails)
    groups = Counter(pacer.group_of(e) or "other" for e in emails)
    lines = [f"campaign '{name}': {total} recipients (suppressed excluded) via relay '{relay}'",
             "  mix: " + ", ".join(f"{g} {n} ({n / max(total, 1):.0%})"
                                   for g, n in groups.most_common())]
    bounds = _bounds(pacer, _targets(relay, name, campaign.priority, total, groups))
    if not bounds:
        return lines + ["  no limit applies: as fast as the workers and the relay go"]
    bounds.sort(reverse=True)
    for seconds, label in bounds:
        lines.append(f"  {label}: {_duration(seconds)}")
    lines.append(f"estimated duration: {_duration(bounds[0][0])}; the binding limit is {bounds[0][1]}")
    return lines


def _targets(relay: str, name: str, priority: str, total: int,
             receivers: Counter[str]) -> list[tuple[str, int]]:
    """The limits a campaign's messages are under, with how many messages each takes
    (`receivers`: by domain group, "other" for the rest, or by `domain:…` target)."""
    targets = [(f"relay:{relay}", total), (f"campaign:{name}", total)]
    if priority != "transactional":
        targets.append((f"relay:{relay}:bulk", total))
    return targets + [(g if g.startswith("domain:") else f"domain:{g}", n)
                      for g, n in receivers.items() if g != "other"]


def _bounds(pacer: Any, targets: list[tuple[str, int]]) -> list[tuple[float, str]]:
    """(seconds the target needs for its messages, what binds it), the longest first."""
    bounds: list[tuple[float, str]] = []
    pacer.refresh()
    for target, count in targets:
        config = pacer.config(target)
        rate, why = pacer.effective(target, config.rate_per_s if config else None)
        if rate:
            bounds.append((count / rate, f"{target} at {rate:g}/s" + (f" ({why})" if why else "")))
        cap = None if target.endswith(":bulk") else pacer.daily_cap(target, config)
        if cap:
            bounds.append((count / cap * 86400, f"{target} daily cap {cap}"))
    return sorted(bounds, reverse=True)


def _pending(db: Any, campaign_id: int) -> tuple[int, int, list[str]]:
    """(rows pending, rows due now, a sample of the pending addresses)."""
    due = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= utcnow())
    mine = (Delivery.campaign_id == campaign_id, Delivery.status.in_(PENDING))
    with db.session() as s:
        pending = s.scalar(select(func.count()).where(*mine)) or 0
        now_due = s.scalar(select(func.count()).where(*mine, due)) or 0
        sample = list(s.scalars(select(Delivery.address).where(*mine).limit(SAMPLE)))
    return pending, now_due, sample


def explain(pacer: Any, breaker: Any, name: str, *, now: float | None = None) -> list[str]:
    """Why campaign `name` is slow or stuck, beside its status reason (a window, a pause):
    no worker taking tasks, an open circuit breaker, messages parked under a limit, and the
    limit that binds what is left (as `plan` computes it, throttles included). [] when it
    is not sending or has nothing left to send."""
    from campaigns.delivery.pools import candidates
    with pacer.db.session() as s:
        campaign = get_campaign(s, name)
        cid, status, target, priority = campaign.id, campaign.status, campaign.relay, campaign.priority
    if status not in (CampaignStatus.SENDING.value, CampaignStatus.WAITING.value):
        return []
    pending, due, sample = _pending(pacer.db, cid)
    if not pending:
        return []
    why = []
    if due and status == CampaignStatus.SENDING.value:
        why += _idle_workers(pacer.client, time.time() if now is None else now)
    relays = sorted(set(candidates(pacer.settings, target)))
    for relay in relays:
        state = breaker.state(relay)
        if state.state != "closed":
            why.append(f"relay '{relay}' circuit breaker {state.describe()}")
    # receivers: groups, and plain domains (limited only when set or throttled)
    receivers = Counter(pacer.receiver(a)[0] for a in sample)
    scale = pending / max(1, len(sample))
    scaled = Counter({r: max(1, round(n * scale)) for r, n in receivers.items()})
    targets = [t for relay in relays for t in _targets(relay, name, priority, pending, scaled)]
    parked = pacer.parking.counts()
    for t in sorted({t for t, _ in targets} & set(parked)):
        if parked[t]:
            why.append(f"{parked[t]} messages parked under {t}, released at its rate")
    bounds = _bounds(pacer, targets)
    if bounds:
        seconds, label = bounds[0]
        why.append(f"binding limit: {label}, about {_duration(seconds)} for the {pending} left")
    return why


def _idle_workers(client: Any, now: float) -> list[str]:
    last = client.get(LAST_TASK_KEY)
    idle = now - float(last) if last is not None else None
    if idle is not None and idle < IDLE_WORKERS_S:
        return []
    since = f"for {idle:.0f} s" if idle is not None else f"in the last {IDLE_WORKERS_S:.0f} s"
    return [f"no worker has taken a task {since}: is `campaigns worker` running "
            "(on this queue and Redis)?"]


def record_task(client: Any, now: float | None = None) -> None:
    """A worker took a task (for `explain`); kept a day."""
    client.set(LAST_TASK_KEY, f"{time.time() if now is None else now:.3f}", ex=86400)


def shares(pacer: Any, target: str, effective: float | None) -> dict[str, Any] | None:
    """What each class of mail may use of a relay's rate now: all of it for bulk while no
    transactional mail is about, else bulk keeps to its share (see pacing.TX_ACTIVE_MS)."""
    if not target.startswith("relay:") or target.endswith(":bulk") or effective is None:
        return None
    waiting = pacer.transactional_waiting(target.removeprefix("relay:"))
    bulk = pacer.config(f"{target}:bulk") if waiting else None
    return {"transactional_waiting": waiting, "transactional_per_s": effective,
            "bulk_per_s": min(effective, bulk.rate_per_s) if bulk else effective}


def rate_rows(pacer: Any) -> list[dict[str, Any]]:
    """Every limit as `rates show --json` (and the API's GET /rates) give it."""
    from campaigns.rates.parse import format_rate
    limits = pacer.limits_by_target
    parked = pacer.parking.counts()
    targets = (set(limits) | {f"relay:{n}" for n in pacer.settings.relays} | set(parked)
               | pacer.throttled_targets)
    rows = []
    for target in sorted(targets):
        config = limits.get(target)
        configured = config.rate_per_s if config else None
        effective, why = pacer.effective(target, configured)
        cap = pacer.daily_cap(target, config)
        rows.append({
            "target": target,
            "rate": format_rate(configured) if configured else None,
            "rate_per_s": configured, "burst": config.burst if config else None,
            "effective_per_s": effective, "why_lower": why,
            "daily_cap": cap,
            "daily_cap_reason": "warm-up" if pacer.warmup_of(target) else None,
            "observed_per_s": round(pacer.limiter.observed_rate(target), 2),
            "parked": parked.get(target, 0),
            "shares": shares(pacer, target, effective)})
    return rows
