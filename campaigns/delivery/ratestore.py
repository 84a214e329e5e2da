"""Where send rates live: TOML defaults, overridden by `campaigns rates set` rows in the
database (they survive a restart of everything), cached in a Redis hash that every worker
re-reads at most once a second (a change reaches the fleet within a second, no restart)."""
from __future__ import annotations

import json
from typing import Any

import redis
from sqlalchemy import delete, select

from campaigns.db import Database
from campaigns.errors import InputError
from campaigns.models import RateLimit, utcnow
from campaigns.settings import LimitConfig, Settings

HASH = "campaigns:rates:limits"
LOADED = "campaigns:rates:loaded"     # set once the hash mirrors the database
KINDS = ("relay", "domain", "campaign")


def check_target(target: str) -> str:
    kind, _, name = target.partition(":")
    if kind not in KINDS or not name:
        raise InputError(f"'{target}': a target is relay:NAME, domain:GROUP or campaign:NAME",
                         field="TARGET")
    return target


def _row_json(rate_per_s: float | None, burst: int | None, daily_cap: int | None) -> str:
    return json.dumps({"rate_per_s": rate_per_s, "burst": burst, "daily_cap": daily_cap})


def set_limit(db: Database, client: redis.Redis, target: str, rate_per_s: float | None,
              burst: int | None = None, daily_cap: int | None = None) -> None:
    check_target(target)
    with db.session() as s:
        row = s.get(RateLimit, target) or RateLimit(target=target)
        row.rate_per_s, row.burst, row.daily_cap, row.updated_at = rate_per_s, burst, daily_cap, utcnow()
        s.add(row)
    _mirror(db, client)
    client.hset(HASH, target, _row_json(rate_per_s, burst, daily_cap))


def unset_limit(db: Database, client: redis.Redis, target: str) -> bool:
    check_target(target)
    with db.session() as s:
        gone = s.execute(delete(RateLimit).where(RateLimit.target == target)).rowcount  # type: ignore[attr-defined]
    _mirror(db, client)
    client.hdel(HASH, target)
    return bool(gone)


def _mirror(db: Database, client: redis.Redis) -> None:
    """Fill the Redis hash from the database when Redis lost it (restart, flush)."""
    if client.exists(LOADED):
        return
    with db.session() as s:
        rows = s.scalars(select(RateLimit)).all()
    pipe = client.pipeline()
    pipe.delete(HASH)
    for r in rows:
        pipe.hset(HASH, r.target, _row_json(r.rate_per_s, r.burst, r.daily_cap))
    pipe.set(LOADED, "1")
    pipe.execute()


def current_limits(db: Database, client: redis.Redis, settings: Settings) -> dict[str, LimitConfig]:
    """TOML defaults overridden field by field by what a person set."""
    _mirror(db, client)
    merged = dict(settings.rates.limits)
    for target, raw in client.hgetall(HASH).items():
        key = target.decode() if isinstance(target, bytes) else str(target)
        data: dict[str, Any] = json.loads(raw)
        base = merged.get(key, LimitConfig(target=key))
        merged[key] = LimitConfig(
            target=key,
            rate_per_s=data["rate_per_s"] if data["rate_per_s"] is not None else base.rate_per_s,
            burst=data["burst"] if data["burst"] is not None else base.burst,
            daily_cap=data["daily_cap"] if data["daily_cap"] is not None else base.daily_cap)
    return merged
