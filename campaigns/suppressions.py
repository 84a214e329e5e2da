"""Addresses that must never be sent to again (unsubscribed, hard-bounced, added by hand).

Stored in the same normalised form as contacts (`audience.normalise_address`), so a
suppression matches whatever case the address had in the CSV file or the bounce."""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from campaigns.audience import normalise_address
from campaigns.db import Database
from campaigns.errors import InputError
from campaigns.models import Suppression, utcnow


def _normalised(address: str) -> str:
    try:
        return normalise_address(address)
    except ValueError as err:
        raise InputError(f"'{address}': {err}", field="address") from None


def _lookup_key(address: str) -> str:
    """For look-ups only: an address that does not validate cannot have been suppressed
    through `add`, but may still be asked about; compare it the simple way."""
    try:
        return normalise_address(address)
    except ValueError:
        return address.strip().lower()


def add(db: Database, address: str, reason: str = "manual") -> bool:
    """Suppress `address`. False when it already was (its first reason is kept).
    InputError when the address is not valid."""
    key = _normalised(address)
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    stmt = (insert(Suppression).values(address=key, reason=reason, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["address"]).returning(Suppression.id))
    # RETURNING, not rowcount: psycopg reports -1 for a statement that inserted nothing.
    with db.session() as session:
        return session.execute(stmt).first() is not None


def remove(db: Database, address: str) -> bool:
    """Lift the suppression of `address`. False when it was not suppressed."""
    key = _normalised(address)
    with db.session() as session:
        stmt = delete(Suppression).where(Suppression.address == key).returning(Suppression.id)
        return session.execute(stmt).first() is not None


def list_all(db: Database) -> list[Suppression]:
    """Every suppression, oldest first."""
    with db.session() as session:
        stmt = select(Suppression).order_by(Suppression.created_at, Suppression.id)
        return list(session.scalars(stmt))


def is_suppressed(session: Session, address: str) -> bool:
    """Whether `address` (any case, surrounding whitespace ignored) is suppressed.
    Never raises for a malformed address: it is simply not suppressed."""
    stmt = select(Suppression.id).where(Suppression.address == _lookup_key(address))
    return session.scalar(stmt) is not None


def suppressed_among(session: Session, addresses: Iterable[str]) -> set[str]:
    """Which of `addresses` (already in stored, normalised form, e.g. `Contact.email`) are
    suppressed: one query, for checking a batch of recipients at once (keep it to about a
    thousand addresses per call)."""
    wanted = list(set(addresses))
    if not wanted:
        return set()
    stmt = select(Suppression.address).where(Suppression.address.in_(wanted))
    return set(session.scalars(stmt))
