"""Addresses that must not be mailed again (unsubscribed, hard-bounced, added by hand), each
in a scope (models.SuppressionScope): `all` stops every message, `bulk` bulk campaigns only,
`stream:NAME` one stream (a campaign's priority), `list:NAME` the campaigns of one list.

Which suppressions stop a campaign (`blocking_scopes`, `blocks` in SQL): `all` and
`stream:<its priority>` stop every campaign; a bulk campaign is also stopped by `bulk` and
`list:<its list>`. So a transactional campaign (an invoice) is stopped only by a hard bounce
or a manual `all` entry, never by a complaint about a newsletter.

Which scope a cause gets (`scope_for`): a hard bounce `all`; a complaint, an unsubscribe and
repeated soft bounces `bulk`; `suppressions add` `all` unless told (`--scope`).

Stored in the same normalised form as contacts (`audience.normalise_address`), so a
suppression matches whatever case the address had in the CSV file or the bounce."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Iterable

from sqlalchemy import and_, delete, exists, literal, or_, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from campaigns.audience.contacts import RowError, normalise_address
from campaigns.bounces.model import BounceCategory
from campaigns.audience.csvsafe import SafeWriter, unescape_cell
from campaigns.db import Database, insert_for
from campaigns.errors import InputError
from campaigns.models import (Campaign, ContactList, Priority, Suppression, SuppressionScope,
                              utcnow)

ALL, BULK = SuppressionScope.ALL.value, SuppressionScope.BULK.value
_PREFIXES = (SuppressionScope.STREAM.value, SuppressionScope.LIST.value)


def parse_scope(text: str) -> str:
    """A scope as stored: `all`, `bulk`, `stream:NAME` or `list:NAME`; InputError otherwise."""
    try:
        return _scope(text)
    except ValueError as err:
        raise InputError(f"'{text}': {err}", field="scope") from None


def _scope(text: str) -> str:
    scope = text.strip()
    kind, colon, name = scope.partition(":")
    if scope.lower() in (ALL, BULK):
        return scope.lower()
    if colon and kind.lower() in _PREFIXES and name.strip():
        return f"{kind.lower()}:{name.strip()}"
    raise ValueError("expected all, bulk, stream:NAME or list:NAME")


def scope_for(category: str) -> str:
    """The scope a bounce or complaint suppresses in: a hard bounce (no such mailbox) stops
    every message; a complaint, an unsubscribe request or repeated soft bounces stop bulk
    mail only, so a customer's invoices still reach them."""
    return ALL if category == BounceCategory.HARD.value else BULK


def blocking_scopes(priority: str, list_name: str | None,
                    stream: str | None = None) -> list[str]:
    """The scopes whose suppressions stop a campaign of `priority` mailing list `list_name`
    (a stream's campaign: `stream`, no list)."""
    scopes = [ALL, SuppressionScope.STREAM.of(priority)]
    if stream:
        scopes.append(SuppressionScope.STREAM.of(stream))
    if priority != Priority.TRANSACTIONAL.value:
        scopes.append(BULK)
        if list_name:
            scopes.append(SuppressionScope.LIST.of(list_name))
    return scopes


def blocks(address: Any, campaign_id: Any) -> ColumnElement[bool]:
    """SQL: `address` has a suppression that stops campaign `campaign_id` (columns or
    values; the rule of `blocking_scopes`). For the claim and the launch."""
    campaign, contact_list = aliased(Campaign), aliased(ContactList)
    list_name = (select(contact_list.name).where(contact_list.id == campaign.list_id)
                 .scalar_subquery())
    stream_scope = literal(SuppressionScope.STREAM.of(""))
    return exists().where(
        Suppression.address == address, campaign.id == campaign_id,
        or_(Suppression.scope == ALL,
            Suppression.scope == stream_scope + campaign.priority,
            Suppression.scope == stream_scope + campaign.stream,
            and_(campaign.priority != Priority.TRANSACTIONAL.value,
                 or_(Suppression.scope == BULK,
                     Suppression.scope == literal(SuppressionScope.LIST.of(""))
                     + list_name))))


def _covering(scope: str) -> list[str]:
    """The scopes whose suppression already stops everything `scope` would."""
    kind, _, name = scope.partition(":")
    if scope == ALL:
        return [ALL]
    if scope == BULK or kind == SuppressionScope.LIST.value or name == Priority.BULK.value:
        return [ALL, BULK, scope]
    return [ALL, scope]


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


def add(db: Database, address: str, reason: str = "manual", source: str = "manual",
        category: str | None = None, scope: str = ALL) -> bool:
    """Suppress `address` in `scope`. False when a suppression already covers it (the same
    scope or a wider one; its first reason is kept). InputError when the address or the
    scope is not valid."""
    key, scope = _normalised(address), parse_scope(scope)
    with db.session() as session:
        return record(session, key, scope, reason=reason, source=source, category=category)


def record(session: Session, address: str, scope: str, *, reason: str, source: str,
           category: str | None = None, delivery_id: int | None = None,
           bounce_id: int | None = None, created_at: datetime | None = None) -> bool:
    """Suppress `address` (normalised) in `scope` (as stored) within the caller's
    transaction; False when a suppression already covers it."""
    if session.scalar(select(Suppression.id).where(
            Suppression.address == address, Suppression.scope.in_(_covering(scope)))):
        return False
    stmt = (insert_for(session.get_bind().dialect.name)(Suppression).values(
        address=address, scope=scope, reason=reason, source=source, category=category,
        delivery_id=delivery_id, bounce_id=bounce_id, created_at=created_at or utcnow())
        .on_conflict_do_nothing(index_elements=["address", "scope"]).returning(Suppression.id))
    # RETURNING, not rowcount: psycopg reports -1 for a statement that inserted nothing.
    return session.execute(stmt).first() is not None


def remove(db: Database, address: str, scope: str | None = None) -> bool:
    """Lift the suppressions of `address` (in every scope, or in `scope` only). False when
    there was none."""
    key = _normalised(address)
    stmt = delete(Suppression).where(Suppression.address == key)
    if scope is not None:
        stmt = stmt.where(Suppression.scope == parse_scope(scope))
    with db.session() as session:
        return session.execute(stmt.returning(Suppression.id)).first() is not None


def list_all(db: Database) -> list[Suppression]:
    """Every suppression, oldest first."""
    with db.session() as session:
        stmt = select(Suppression).order_by(Suppression.created_at, Suppression.id)
        return list(session.scalars(stmt))


def page(db: Database, after_id: int, limit: int) -> list[Suppression]:
    """Suppressions in the order they were recorded, `limit` after the one with `after_id`."""
    with db.session() as session:
        stmt = (select(Suppression).where(Suppression.id > after_id)
                .order_by(Suppression.id).limit(limit))
        return list(session.scalars(stmt))


def is_suppressed(session: Session, address: str) -> bool:
    """Whether `address` (any case, surrounding whitespace ignored) is suppressed in any scope.
    Never raises for a malformed address: it is simply not suppressed."""
    stmt = select(Suppression.id).where(Suppression.address == _lookup_key(address))
    return session.scalar(stmt) is not None


def suppressed_among(session: Session, addresses: Iterable[str]) -> set[str]:
    """Which of `addresses` (already in stored, normalised form, e.g. `Contact.email`) are
    suppressed in any scope: one query, for checking a batch of recipients at once (keep it to about a
    thousand addresses per call)."""
    wanted = list(set(addresses))
    if not wanted:
        return set()
    stmt = select(Suppression.address).where(Suppression.address.in_(wanted)).distinct()
    return set(session.scalars(stmt))


#: the columns `export_csv` writes and `import_csv` reads (only `email` is required)
CSV_COLUMNS = ("email", "reason", "source", "category", "delivery_id", "bounce_id", "created_at",
               "scope")
_SOURCES_KEPT = {"manual", "import", "smtp", "bounce", "complaint", "soft-limit",
                 "unsubscribe", "webhook"}


@dataclass
class SuppressionImport:
    file: str
    added: int = 0
    already: int = 0
    errors: list[RowError] = field(default_factory=list)


def import_csv(db: Database, path: Path) -> SuppressionImport:
    """Suppress every address of a CSV file (an `email` column; optional `reason`, and
    `source`/`category`/`scope` as `export_csv` writes them, so an export from another
    installation imports with its causes and scopes; `scope` defaults to `all`; the quote
    `export_csv` prefixes to formula-like cells is removed). Bad rows are reported with their
    line and the rest imported; a file that cannot be used at all raises InputError and
    changes nothing."""
    from campaigns.audience.contacts import _decoded_lines, _open_csv
    file = str(path)
    report = SuppressionImport(file)
    try:
        with path.open("rb") as handle:
            header, rows = _open_csv(_decoded_lines(handle, file), file)
            named = {name.lower(): index for index, name in header.attributes}
            named["email"] = header.email_index
            for line, cells, problem in rows:
                if not any(c.strip() for c in cells) and not problem:
                    continue
                if problem or len(cells) != header.width:
                    report.errors.append(RowError(line, "row", "", problem or (
                        f"expected {header.width} fields, got {len(cells)}"), file))
                    continue
                _import_row(db, report, line, header.email_name,
                            {name: unescape_cell(cells[i].strip()) for name, i in named.items()})
    except OSError as err:
        raise InputError(f"cannot read the file: {err.strerror or err}", file=file) from None
    return report


def _import_row(db: Database, report: SuppressionImport, line: int, email_name: str,
                cell: dict[str, str]) -> None:
    address, source = cell["email"], cell.get("source") or "import"
    try:
        normalise_address(address)
    except ValueError as err:
        report.errors.append(RowError(line, email_name, address, str(err), report.file))
        return
    try:
        scope = _scope(cell.get("scope") or ALL)
    except ValueError as err:
        report.errors.append(RowError(line, "scope", cell["scope"], str(err), report.file))
        return
    if add(db, address, cell.get("reason") or "imported",
           source if source in _SOURCES_KEPT else "import", cell.get("category") or None, scope):
        report.added += 1
    else:
        report.already += 1


def export_csv(db: Database, out: IO[str]) -> int:
    """Write every suppression with its cause as CSV (`CSV_COLUMNS`). Returns the count.
    A cell a spreadsheet would run as a formula (= + - @ tab CR first) gets a leading quote
    (campaigns.audience.csvsafe); `import_csv` removes it."""
    writer = SafeWriter(out)
    writer.writerow(CSV_COLUMNS)
    rows = list_all(db)
    for s in rows:
        writer.writerow([s.address, s.reason, s.source, s.category or "", s.delivery_id or "",
                         s.bounce_id or "", s.created_at.isoformat() if s.created_at else "",
                         s.scope])
    return len(rows)
