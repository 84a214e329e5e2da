"""`campaigns bounces report NAME`: what came back for one campaign, from the bounce record."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

from sqlalchemy import select

from campaigns.db import Database
from campaigns.ledger.reads import counts, get_campaign
from campaigns.models import BounceEvent
from campaigns.rates import DomainGroups
from campaigns.settings import Settings

TOP = 10
#: an address in a diagnostic, with its angle brackets when it has them
_ADDRESS = re.compile(r"<?[^\s<>@\"'(),;:\[\]]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+>?")


def mask_addresses(text: str) -> str:
    """`text` with every e-mail address replaced by `<address>`, so diagnostics that differ
    only by their recipient count as one."""
    return _ADDRESS.sub("<address>", text)


def report(db: Database, settings: Settings, name: str) -> dict[str, Any]:
    """Final reports only (a delay notice is not an outcome), one per address and category:
    counts by category, by reason and by receiver domain group (the domain itself when it
    is in no group), the most frequent diagnostic texts (addresses masked), and the
    ledger's counts."""
    with db.session() as s:
        campaign = get_campaign(s, name)
        rows = s.execute(select(BounceEvent.address, BounceEvent.category, BounceEvent.reason,
                                BounceEvent.diagnostic, BounceEvent.source)
                         .where(BounceEvent.campaign_id == campaign.id,
                                BounceEvent.final.is_(True))
                         .order_by(BounceEvent.id)).all()
    groups = DomainGroups(settings.rates.groups)
    seen: set[tuple[str, str]] = set()
    by_category: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    by_group: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    texts: Counter[str] = Counter()
    for address, category, reason, diagnostic, source in rows:
        if (address, category) in seen:
            continue
        seen.add((address, category))
        domain = address.rpartition("@")[2].lower()
        by_category[category] += 1
        by_reason[f"{category}/{reason}"] += 1
        by_group[groups.group(domain) or domain] += 1
        by_source[source] += 1
        if diagnostic and category not in ("delivered", "autoreply"):
            texts[mask_addresses(" ".join(diagnostic.split()))[:200]] += 1
    ledger = counts(db, name)
    return {"campaign": name, "status": ledger["status"], "reason": ledger["reason"],
            "ledger": ledger["counts"], "reports": sum(by_category.values()),
            "by_category": dict(by_category.most_common()),
            "by_reason": dict(by_reason.most_common()),
            "by_domain_group": dict(by_group.most_common()),
            "by_source": dict(by_source.most_common()),
            "top_diagnostics": [{"text": t, "count": n} for t, n in texts.most_common(TOP)]}


def lines(data: dict[str, Any]) -> list[str]:
    out = [f"campaign {data['campaign']}: {data['status']}"
           + (f" ({data['reason']})" if data["reason"] else ""),
           "ledger: " + ", ".join(f"{k} {v}" for k, v in data["ledger"].items() if v),
           f"bounce reports: {data['reports']}"]
    for title, key in (("by category", "by_category"), ("by reason", "by_reason"),
                       ("by domain group", "by_domain_group"), ("by source", "by_source")):
        if data[key]:
            out.append(f"{title}: " + ", ".join(f"{k} {v}" for k, v in data[key].items()))
    if data["top_diagnostics"]:
        out.append("top diagnostics:")
        out.extend(f"  {d['count']:>5}  {d['text']}" for d in data["top_diagnostics"])
    return out
