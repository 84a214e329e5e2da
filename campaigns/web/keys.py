"""Keys of the HTTP API: `campaigns keys create NAME --scope …` prints a key once; only its
SHA-256 hash is stored (a key is 32 random bytes: a slow password hash would add nothing but
latency to every request). Scopes: `send` (transactional messages), `read` (everything that
only looks), `manage` (everything that changes state). Each key has its own request rate,
enforced fleet-wide with the Redis limiter."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from campaigns.db import Database
from campaigns.errors import InputError, NotFound, StateError
from campaigns.models import ApiKey, utcnow

SCOPES = ("send", "read", "manage")
PREFIX = "ck_"
DEFAULT_RATE_PER_S = 20.0


@dataclass(frozen=True)
class KeyInfo:
    """A key as it may be shown: never the key itself nor its hash."""
    name: str
    prefix: str
    scopes: tuple[str, ...]
    rate_per_s: float
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.name, row.prefix, tuple(s for s in row.scopes.split(",") if s),
                   row.rate_per_s, row.created_at, row.revoked_at, row.last_used_at)


def _scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    chosen = []
    for scope in scopes:
        for part in scope.split(","):
            part = part.strip().lower()
            if part not in SCOPES:
                raise InputError(f"'{part}': a scope is one of {', '.join(SCOPES)}",
                                 field="--scope")
            if part not in chosen:
                chosen.append(part)
    if not chosen:
        raise InputError(f"give at least one --scope ({', '.join(SCOPES)})", field="--scope")
    return tuple(chosen)


def create_key(db: Database, name: str, scopes: Sequence[str],
               rate_per_s: float = DEFAULT_RATE_PER_S) -> tuple[str, KeyInfo]:
    """A new key NAME with `scopes`: (the key, to show once; what is stored of it)."""
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise InputError("a key name is 1 to 100 characters without spaces", field="NAME")
    if not 0 < rate_per_s <= 10_000:
        raise InputError(f"{rate_per_s}: the rate is requests per second, above 0 and at most "
                         f"10000", field="--rate")
    chosen = _scopes(scopes)
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:7], key_hash=_digest(key), scopes=",".join(chosen),
                 rate_per_s=float(rate_per_s), created_at=utcnow())
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            info = _info(row)
    except IntegrityError:
        raise StateError(f"a key named '{name}' exists; revoke it or choose another name") \
            from None
    return key, info


def list_keys(db: Database) -> list[KeyInfo]:
    with db.session() as s:
        return [_info(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.name))]


def revoke_key(db: Database, name: str) -> KeyInfo:
    """Revoke key NAME: refused from the next request on. NotFound when there is none."""
    with db.session() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.name == name)).first()
        if row is None:
            raise NotFound(f"no key named '{name}'")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _info(row)


def authenticate(db: Database, key: str) -> KeyInfo | None:
    """The key's record when `key` is a live key, else None (unknown, malformed, revoked).
    Records when it was last used (at most once a minute per key)."""
    if not key.startswith(PREFIX) or len(key) > 200:
        return None
    digest = _digest(key)
    with db.session() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
        if row is None or row.revoked_at is not None:
            return None
        # the stored hash equals the digest (the lookup); compare again in constant time
        if not secrets.compare_digest(row.key_hash, digest):
            return None
        now = utcnow()
        last = row.last_used_at
        if last is None or (now - (last if last.tzinfo else last.replace(tzinfo=now.tzinfo))
                            ).total_seconds() > 60:
            s.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        return _info(row)
