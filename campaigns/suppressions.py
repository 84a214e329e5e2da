"""Addresses that must never be sent to again (unsubscribed, hard-bounced, added by hand).

Stored in the same normalised form as contacts (`audience.normalise_address`), so a
suppression matches whatever case the address had in the CSV file or the bounce."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from campaigns.audience import RowError, normalise_address
from campaigns.csvsafe import SafeWriter, unescape_cell
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


def add(db: Database, address: str, reason: str = "manual", source: str = "manual",
        category: str | None = None) -> bool:
    """Suppress `address`. False when it already was (its first reason is kept).
    InputError when the address is not valid."""
    key = _normalised(address)
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    stmt = (insert(Suppression).values(address=key, reason=reason, source=source,
                                       category=category, created_at=utcnow())
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


#: the columns `export_csv` writes and `import_csv` reads (only `email` is required)
CSV_COLUMNS = ("email", "reason", "source", "category", "delivery_id", "bounce_id", "created_at")
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
    `source`/`category` as `export_csv` writes them, so an export from another installation
    imports with its causes; the quote `export_csv` prefixes to formula-like cells is
    removed). Bad rows are reported with their line and the rest imported;
    a file that cannot be used at all raises InputError and changes nothing."""
    from campaigns.audience import _decoded_lines, _open_csv
    file = str(path)
    report = SuppressionImport(file)
    try:
        with path.open("rb") as handle:
            header, rows = _open_csv(_decoded_lines(handle, file), file)
            named = {name.lower(): index for index, name in header.attributes}
            for line, cells, problem in rows:
                if not any(c.strip() for c in cells) and not problem:
                    continue
                if problem or len(cells) != header.width:
                    report.errors.append(RowError(line, "row", "", problem or (
                        f"expected {header.width} fields, got {len(cells)}"), file))
                    continue
                raw = unescape_cell(cells[header.email_index].strip())
                try:
                    normalise_address(raw)
                except ValueError as err:
                    report.errors.append(RowError(line, header.email_name, raw, str(err), file))
                    continue

                def cell(name: str) -> str:
                    return unescape_cell(cells[named[name]].strip()) if name in named else ""
                source = cell("source") or "import"
                if add(db, raw, cell("reason") or "imported",
                       source if source in _SOURCES_KEPT else "import", cell("category") or None):
                    report.added += 1
                else:
                    report.already += 1
    except OSError as err:
        raise InputError(f"cannot read the file: {err.strerror or err}", file=file) from None
    return report


def export_csv(db: Database, out: IO[str]) -> int:
    """Write every suppression with its cause as CSV (`CSV_COLUMNS`). Returns the count.
    A cell a spreadsheet would run as a formula (= + - @ tab CR first) gets a leading quote
    (campaigns.csvsafe); `import_csv` removes it."""
    writer = SafeWriter(out)
    writer.writerow(CSV_COLUMNS)
    rows = list_all(db)
    for s in rows:
        writer.writerow([s.address, s.reason, s.source, s.category or "", s.delivery_id or "",
                         s.bounce_id or "", s.created_at.isoformat() if s.created_at else ""])
    return len(rows)
