"""`campaigns plan`: duration from the audience's domain-group mix and the limits."""
from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from campaigns.lifecycle import get_campaign
from campaigns.models import Contact, ListMember, Suppression


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
    from campaigns.pools import first_relay
    relay = first_relay(pacer.settings, campaign.relay)
    total = len(emails)
    groups = Counter(pacer.group_of(e) or "other" for e in emails)
    lines = [f"campaign '{name}': {total} recipients (suppressed excluded) via relay '{relay}'",
             "  mix: " + ", ".join(f"{g} {n} ({n / max(total, 1):.0%})"
                                   for g, n in groups.most_common())]
    targets = [(f"relay:{relay}", total), (f"campaign:{name}", total)]
    if campaign.priority != "transactional":
        targets.append((f"relay:{relay}:bulk", total))
    targets += [(f"domain:{g}", n) for g, n in groups.items() if g != "other"]
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
    if not bounds:
        return lines + ["  no limit applies: as fast as the workers and the relay go"]
    bounds.sort(reverse=True)
    for seconds, label in bounds:
        lines.append(f"  {label}: {_duration(seconds)}")
    lines.append(f"estimated duration: {_duration(bounds[0][0])}; the binding limit is {bounds[0][1]}")
    return lines
