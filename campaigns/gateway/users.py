"""The gateway's credentials: `campaigns gateway users add NAME --from-domain D …` makes one
and shows its password once; only an scrypt hash of it is stored (hashlib.scrypt: the
standard library's memory-hard password hash, N=2^14, r=8, p=1, a 16-byte salt). Each
credential says which From domains it may send as, its stream (`invoices`: its messages are
the stream's, with the stream's callbacks), its relay or pool, and its own message rate."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from campaigns.db import Database
from campaigns.errors import InputError, NotFound, StateError
from campaigns.models import GatewayUser, utcnow

DEFAULT_STREAM = "smtp"
_N, _R, _P = 2 ** 14, 8, 1
#: a password proved right is not hashed again for this long (a busy ERP logs in per message)
_PROVEN_S = 300.0


@dataclass(frozen=True)
class UserInfo:
    """A credential as it may be shown: never the password nor its hash."""
    name: str
    from_domains: tuple[str, ...]
    stream: str
    relay: str | None
    rate_per_s: float | None
    created_at: datetime

    def may_send_as(self, address: str) -> bool:
        domain = address.rpartition("@")[2].lower().rstrip(".")
        return any(domain == d or domain.endswith("." + d) for d in self.from_domains)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt),
                             n=int(n), r=int(r), p=int(p), dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def _info(row: GatewayUser) -> UserInfo:
    return UserInfo(row.name, tuple(d for d in row.from_domains.split(",") if d), row.stream,
                    row.relay, row.rate_per_s, row.created_at)


def _domains(domains: Sequence[str]) -> tuple[str, ...]:
    chosen: list[str] = []
    for domain in domains:
        for part in domain.split(","):
            part = part.strip().lower().rstrip(".").removeprefix("@")
            if not part:
                continue
            if "." not in part or any(c.isspace() or c in "@/\\:" for c in part):
                raise InputError(f"'{part}': a --from-domain is a domain name such as "
                                 "example.it", field="--from-domain")
            if part not in chosen:
                chosen.append(part)
    if not chosen:
        raise InputError("give at least one --from-domain: the domains this credential may "
                         "send as (the envelope sender and the From header)",
                         field="--from-domain")
    return tuple(chosen)


def _name(name: str, field: str = "NAME") -> str:
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() or c == ":" for c in name):
        raise InputError("a user name is 1 to 100 characters without spaces or ':'",
                         field=field)
    return name


def _password(password: str | None) -> str:
    if password is None:
        return secrets.token_urlsafe(18)
    if len(password) < 12:
        raise InputError("a password of at least 12 characters is required",
                         field="--password-env")
    return password


def add_user(db: Database, name: str, from_domains: Sequence[str], *,
             stream: str | None = None, relay: str | None = None,
             rate_per_s: float | None = None,
             password: str | None = None) -> tuple[str, UserInfo]:
    """A new credential: (its password, to show once when it was generated; what is stored)."""
    name = _name(name)
    domains = _domains(from_domains)
    stream = (stream or DEFAULT_STREAM).strip()
    if not stream or len(stream) > 100 or any(c.isspace() for c in stream):
        raise InputError("a stream name is 1 to 100 characters without spaces", field="--stream")
    if rate_per_s is not None and not 0 < rate_per_s <= 10_000:
        raise InputError(f"{rate_per_s:g}: the rate is messages per second, above 0 and at "
                         "most 10000", field="--rate")
    password = _password(password)
    row = GatewayUser(name=name, password_hash=hash_password(password),
                      from_domains=",".join(domains), stream=stream, relay=relay,
                      rate_per_s=rate_per_s, created_at=utcnow())
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            info = _info(row)
    except IntegrityError:
        raise StateError(f"a gateway user named '{name}' exists; remove it or choose another "
                         "name") from None
    return password, info


def list_users(db: Database) -> list[UserInfo]:
    with db.session() as s:
        return [_info(r) for r in s.scalars(select(GatewayUser).order_by(GatewayUser.name))]


def remove_user(db: Database, name: str) -> None:
    with db.session() as s:
        if not s.execute(delete(GatewayUser).where(GatewayUser.name == name)).rowcount:
            raise NotFound(f"no gateway user named '{name}'")
    _proven.forget(name)


def set_password(db: Database, name: str, password: str | None = None) -> str:
    """A new password for NAME (generated when None): returned, to show once."""
    password = _password(password)
    with db.session() as s:
        done = s.execute(update(GatewayUser).where(GatewayUser.name == name).values(
            password_hash=hash_password(password), password_changed_at=utcnow())).rowcount
        if not done:
            raise NotFound(f"no gateway user named '{name}'")
    _proven.forget(name)
    return password


class _Proven:
    """Passwords proved right lately, by (name, SHA-256 of name and password): a login
    within `_PROVEN_S` costs no scrypt. In this process only; a changed password or a
    removed user is forgotten here, and elsewhere within `_PROVEN_S` (the stored hash is
    compared too)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str, password: str) -> str:
        return hashlib.sha256(f"{name}\0{password}".encode("utf-8", "surrogatepass")).hexdigest()

    def knows(self, name: str, password: str, stored: str) -> bool:
        with self._lock:
            seen = self._seen.get(name)
        return (seen is not None and seen[1] == stored and time.monotonic() < seen[2]
                and hmac.compare_digest(seen[0], self._key(name, password)))

    def remember(self, name: str, password: str, stored: str) -> None:
        with self._lock:
            self._seen[name] = (self._key(name, password), stored,
                                time.monotonic() + _PROVEN_S)

    def forget(self, name: str) -> None:
        with self._lock:
            self._seen.pop(name, None)


_proven = _Proven()


def authenticate(db: Database, name: str, password: str) -> UserInfo | None:
    """The credential when NAME and PASSWORD match, else None. A slow hash per first login."""
    if not name or len(name) > 100 or len(password) > 1000:
        return None
    with db.session() as s:
        row = s.scalars(select(GatewayUser).where(GatewayUser.name == name)).first()
        if row is None:
            check_password(password, _dummy())   # the same time for an unknown name
            return None
        info, stored = _info(row), row.password_hash
    if _proven.knows(name, password, stored):
        return info
    if not check_password(password, stored):
        return None
    _proven.remember(name, password, stored)
    return info


_DUMMIES: list[str] = []


def _dummy() -> str:
    if not _DUMMIES:
        _DUMMIES.append(hash_password(secrets.token_urlsafe(12)))
    return _DUMMIES[0]
