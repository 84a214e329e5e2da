"""The audience: contacts imported from CSV files into named lists.

Addresses are normalised once, here, and stored in that form everywhere (contacts,
suppressions, deliveries): email-validator's `.normalized` form, then lowercased as a whole.
RFC 5321 lets a receiving server treat the local part case-sensitively, but in practice no
mailbox provider does, and lowercasing is what keeps `Mario.Rossi@x.it` and
`mario.rossi@x.it` from becoming two contacts who each get the newsletter.

A CSV file is streamed in chunks of `CHUNK_ROWS` rows (one query to find the chunk's existing
contacts, one bulk insert, one bulk update, one bulk membership insert), inside one
transaction: an import either happens completely or, when the file itself is unusable
(unreadable, not UTF-8, no `email` column, empty), not at all.
"""
from __future__ import annotations

import codecs
import csv
import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, cast

import email_validator
from sqlalchemy import Table, and_, select, update
from sqlalchemy.orm import Session

from campaigns.audience.attribute_watch import AttributeWatch
from campaigns.db import Database, insert_for
from campaigns.errors import InputError, NotFound
from campaigns.models import Contact, ContactList, ListMember, utcnow

CHUNK_ROWS = 1000
EMAIL_HEADERS = ("email", "e-mail")
DELIMITERS = (",", ";", "\t")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_CONTACTS = cast(Table, Contact.__table__)
_MEMBERS = cast(Table, ListMember.__table__)
_resolver: Any = None  # email-validator's caching DNS resolver, made on first DNS check


@dataclass
class RowError:
    """One rejected row. `line` is the physical line the row starts on (the header is 1)."""

    line: int
    field: str          # the column at fault, usually "email"; "row" for a wrong field count
    value: str
    reason: str
    file: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else f"line {self.line}"
        return f"{where}: field '{self.field}': '{self.value}': {self.reason}"


@dataclass
class ImportReport:
    """What an import did. Counts are per distinct address, except `duplicates` (rows)."""

    file: str
    list_name: str
    imported: int = 0     # new contacts created
    updated: int = 0      # existing contacts that changed, or were newly added to the list
    unchanged: int = 0
    duplicates: int = 0   # rows repeating an address seen earlier in the same file
    errors: list[RowError] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # attribute columns, without email
    warnings: list[str] = field(default_factory=list)  # attributes changed under a campaign

    def summary(self) -> str:
        return (f"{self.file} -> list '{self.list_name}': {self.imported} imported, "
                f"{self.updated} updated, {self.unchanged} unchanged, "
                f"{self.duplicates} duplicate rows merged, {len(self.errors)} rows rejected")


def normalise_address(raw: str, *, check_dns: bool = False) -> str:
    """The stored form of an address: validated, email-validator-normalised, lowercased.

    Surrounding whitespace is ignored. Raises ValueError with email-validator's reason
    (e.g. "An email address must have an @-sign."). Special-use domains (localhost, .local,
    .invalid, ...) are refused, except the reserved testing TLD `.test` (RFC 6761), used by
    demos and tests against a local SMTP server; it never resolves, so with `check_dns`,
    where the domain must also accept mail (MX or A record; answers cached), it is refused."""
    text = raw.strip()
    if not text:
        raise ValueError("The email address is empty.")
    try:
        if check_dns:
            result = email_validator.validate_email(
                text, check_deliverability=True, dns_resolver=_dns_resolver())
        else:
            result = email_validator.validate_email(text, check_deliverability=False,
                                                    test_environment=True)
    except email_validator.EmailNotValidError as err:
        raise ValueError(str(err)) from err
    return str(result.normalized).lower()


def _dns_resolver() -> Any:
    global _resolver
    if _resolver is None:
        _resolver = email_validator.caching_resolver(timeout=10)
    return _resolver


def get_list(session: Session, name: str) -> ContactList:
    """The list called `name`; NotFound names the lists there are."""
    found = session.scalar(select(ContactList).where(ContactList.name == name))
    if found is None:
        names = ", ".join(session.scalars(select(ContactList.name).order_by(ContactList.name)))
        raise NotFound(f"no list named {name} (lists: {names or 'none'})")
    return found


def import_contacts(db: Database, path: Path, list_name: str, *,
                    check_dns: bool = False, from_file_dir: bool = True) -> ImportReport:
    """Import a CSV file of contacts into the list `list_name` (created when missing).

    The file: UTF-8 (a BOM is fine), a header line, delimiter `,`, `;` or tab (the one that
    splits the header into an email column and the most others). One column is the address (`email` or `e-mail`, any case); every
    other column becomes an attribute named by its header, value stripped of surrounding
    whitespace (empty cells are stored as ""). Blank rows are skipped.

    A contact already known keeps its other attributes; columns of this file overwrite
    same-named ones (`warnings` names the attributes so changed that a scheduled, sending,
    waiting or paused campaign, or a schedule, reads for a list they are in). `source_dir` becomes this file's folder (attachment paths are relative
    to it). An address repeated within the file is merged: later non-empty values win.

    Bad rows are reported in `ImportReport.errors` and the others imported. A file that can
    not be used at all raises InputError and changes nothing. `from_file_dir` False (an
    upload through the API, written to a temporary file): contacts keep the folder they had
    (new ones get none), since the file's own folder means nothing."""
    file = str(path)
    name = list_name.strip()
    if not name:
        raise InputError("the list name is empty", file=file)
    try:
        with path.open("rb") as handle:
            header, rows = _open_csv(_decoded_lines(handle, file), file)
            with db.session() as session:
                importer = _Importer(session, db.dialect, name, file, header,
                                     source_dir=(str(path.resolve().parent) if from_file_dir
                                                 else None), check_dns=check_dns)
                for line, cells, problem in rows:
                    importer.feed(line, cells, problem)
                return importer.finish()
    except OSError as err:
        raise InputError(f"cannot read the file: {err.strerror or err}", file=file) from None


# --- reading the file -------------------------------------------------------------------

@dataclass(frozen=True)
class _Header:
    line: int
    width: int
    email_index: int
    email_name: str
    attributes: tuple[tuple[int, str], ...]  # (column index, attribute name)


_Row = tuple[int, list[str], str]  # (line the row starts on, cells, parse error or "")


def _decoded_lines(handle: BinaryIO, file: str) -> Iterator[str]:
    """The file's physical lines, decoded. UTF-8 is decoded line by line, which is exact:
    the byte "\\n" never occurs inside a multi-byte sequence."""
    offset = 0
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(_UTF16_BOMS):
            raise InputError("the file is UTF-16; save it as 'CSV UTF-8' and import it again",
                             file=file, line=1)
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw, offset = raw[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as err:
            byte = raw[err.start:err.start + 1]
            raise InputError(
                f"not valid UTF-8: byte {byte!r} at byte offset {offset + err.start} (byte "
                f"{err.start + 1} of the line); the file is probably Windows-1252 or Latin-1: save it as "
                "'CSV UTF-8' and import it again", file=file, line=number) from None
        offset += len(raw)


def _open_csv(lines: Iterator[str], file: str) -> tuple[_Header, Iterator[_Row]]:
    """Read up to the header, check it, and return it with the numbered data rows."""
    skipped = 0
    first = next(lines, None)
    while first is not None and not first.strip():
        skipped, first = skipped + 1, next(lines, None)
    if first is None:
        raise InputError("the file is empty; expected a header line with an 'email' column",
                         file=file)
    reader = csv.reader(itertools.chain([first], lines), delimiter=_delimiter(first),
                        strict=True)
    numbered = _numbered(reader, skipped)
    line, cells, problem = next(numbered)
    if problem:
        raise InputError(f"the header: {problem}", file=file, line=line)
    return _parse_header(cells, line, file), numbered


def _delimiter(header: str) -> str:
    """The delimiter that splits the header line into an email column and the most other
    columns (`,` first on a tie: a one-column file)."""
    def score(delimiter: str) -> tuple[bool, int]:
        try:
            cells = next(csv.reader([header], delimiter=delimiter), [])
        except csv.Error:   # reported with its line when the header is parsed
            return False, 0
        return any(c.strip().lower() in EMAIL_HEADERS for c in cells), len(cells)
    return max(DELIMITERS, key=score)


def _numbered(reader: Any, skipped: int) -> Iterator[_Row]:
    """Rows with the physical line each starts on. `reader.line_num` counts lines read so
    far, so it gives where a row ends; a row starts just after the previous one ended.
    The reader is strict, so an unclosed quote is an error, not a field swallowing the rest
    of the file; after an error the reader goes on with the next line."""
    done = 0
    while True:
        start = skipped + done + 1
        try:
            cells, problem = next(reader), ""
        except StopIteration:
            return
        except csv.Error as err:
            cells, problem = [], _csv_problem(err)
        done = reader.line_num
        yield start, cells, problem


def _csv_problem(err: csv.Error) -> str:
    if "field limit" in str(err):  # _csv's "field larger than field limit (131072)"
        return (f"a field is longer than {csv.field_size_limit():,} characters; is this a CSV "
                "file, with its quotes closed?")
    return f"cannot parse this row ({err}): check its quotes"


def _column(index: int) -> str:
    """Position as a person sees it in a spreadsheet: 'column 3 (C)'."""
    letters, n = "", index + 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"column {index + 1} ({letters})"


def _parse_header(cells: list[str], line: int, file: str) -> _Header:
    names = [c.strip() for c in cells]
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name:
            raise InputError(f"{_column(index)} has an empty header; every column needs a "
                             "name", file=file, line=line)
        key = name.lower() if name.lower() not in EMAIL_HEADERS else "email"
        if key in seen:
            raise InputError(f"{_column(index)} '{name}' repeats {_column(seen[key])} "
                             f"'{names[seen[key]]}'; header names must be unique",
                             file=file, line=line)
        seen[key] = index
    if "email" not in seen:
        raise InputError(f"no 'email' column; the header has: {', '.join(names)}",
                         file=file, line=line)
    email_index = seen["email"]
    attributes = tuple((i, n) for i, n in enumerate(names) if i != email_index)
    return _Header(line, len(names), email_index, names[email_index], attributes)


# --- writing the contacts ---------------------------------------------------------------

class _Importer:
    """Collects parsed rows into chunks and writes each chunk with a few bulk statements."""

    def __init__(self, session: Session, dialect: str, list_name: str, file: str,
                 header: _Header, *, source_dir: str | None, check_dns: bool) -> None:
        self.session, self.file, self.header = session, file, header
        self.source_dir, self.check_dns = source_dir, check_dns
        self.insert = insert_for(dialect)
        self.list_id = self._ensure_list(list_name)
        self.report = ImportReport(file=file, list_name=list_name,
                                   columns=[n for _, n in header.attributes])
        self.outcome: dict[str, str] = {}          # address -> imported|updated|unchanged
        # address -> attributes to merge in; only the non-empty ones for an address
        # already written by an earlier chunk (a duplicate row)
        self.chunk: dict[str, dict[str, str]] = {}
        self.watch = AttributeWatch.load(session)

    def _ensure_list(self, name: str) -> int:
        stmt = self.insert(ContactList).values(name=name, created_at=utcnow())
        self.session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        return get_list(self.session, name).id

    def feed(self, line: int, cells: list[str], problem: str = "") -> None:
        if problem:
            self._reject(line, "row", "", problem)
            return
        parsed = self._parse_row(line, cells)
        if parsed is None:
            return
        address, attrs = parsed
        if address in self.chunk or address in self.outcome:
            self.report.duplicates += 1
            filled = {k: v for k, v in attrs.items() if v != ""}
            if address in self.chunk:
                self.chunk[address].update(filled)
                return
            attrs = filled
        self.chunk[address] = attrs
        if len(self.chunk) >= CHUNK_ROWS:
            self._flush()

    def _parse_row(self, line: int, cells: list[str]) -> tuple[str, dict[str, str]] | None:
        h = self.header
        if not any(c.strip() for c in cells):
            return None  # blank line, or a spreadsheet's empty row ";;;"
        # Trailing empty cells beyond the header are tolerated (spreadsheet exports).
        if len(cells) < h.width or any(c.strip() for c in cells[h.width:]):
            value = cells[h.email_index] if len(cells) > h.email_index else ""
            self._reject(line, "row", value, f"expected {h.width} fields as in the header, "
                         f"found {len(cells)}; check for an unquoted delimiter or quote")
            return None
        raw = cells[h.email_index]
        try:
            address = normalise_address(raw, check_dns=self.check_dns)
        except ValueError as err:
            self._reject(line, h.email_name, raw.strip(), str(err))
            return None
        return address, {n: cells[i].strip().replace("\r\n", "\n") for i, n in h.attributes}

    def _reject(self, line: int, column: str, value: str, reason: str) -> None:
        self.report.errors.append(RowError(line, column, value, reason, self.file))

    def finish(self) -> ImportReport:
        self._flush()
        counts = Counter(self.outcome.values())
        self.report.imported = counts["imported"]
        self.report.updated = counts["updated"]
        self.report.unchanged = counts["unchanged"]
        self.report.warnings = self.watch.warnings()
        return self.report

    def _flush(self) -> None:
        if not self.chunk:
            return
        existing = self._load(list(self.chunk))
        new = [a for a in self.chunk if a not in existing]
        created = self._create(new)
        missing = [a for a in new if a not in created]  # inserted meanwhile by someone else
        if missing:
            existing.update(self._load(missing))
        joins = list(created.values())
        joins += [cid for a, (cid, _, _, member) in existing.items() if not member]
        for address in created:
            self._record(address, "imported")
        self._update(existing)
        if joins:
            rows = [{"list_id": self.list_id, "contact_id": cid} for cid in joins]
            stmt = self.insert(_MEMBERS).on_conflict_do_nothing()
            self.session.connection().execute(stmt, rows)
        self.chunk = {}

    def _load(self, addresses: list[str]) -> dict[str, tuple[int, dict[str, Any], str | None, bool]]:
        """address -> (id, attributes, source_dir, already in the list), one query."""
        member = and_(ListMember.contact_id == Contact.id, ListMember.list_id == self.list_id)
        stmt = (select(Contact.id, Contact.email, Contact.attributes, Contact.source_dir,
                       ListMember.contact_id)
                .outerjoin(ListMember, member).where(Contact.email.in_(addresses)))
        return {email: (cid, dict(attrs or {}), src, joined is not None)
                for cid, email, attrs, src, joined in self.session.execute(stmt)}

    def _create(self, addresses: list[str]) -> dict[str, int]:
        if not addresses:
            return {}
        now = utcnow()
        rows = [{"email": a, "attributes": self.chunk[a], "source_dir": self.source_dir,
                 "created_at": now, "updated_at": now} for a in addresses]
        # An executemany of one cached statement: SQLAlchemy batches it into multi-row
        # INSERTs ("insertmanyvalues"), RETURNING included, on SQLite and PostgreSQL alike.
        stmt = (self.insert(_CONTACTS).on_conflict_do_nothing(index_elements=["email"])
                .returning(_CONTACTS.c.id, _CONTACTS.c.email))
        return {email: cid for cid, email in self.session.connection().execute(stmt, rows)}

    def _update(self, existing: dict[str, tuple[int, dict[str, Any], str | None, bool]]) -> None:
        now, changes, watched = utcnow(), [], {}
        for address, (cid, attrs, source_dir, member) in existing.items():
            merged = {**attrs, **self.chunk[address]}
            folder = source_dir if self.source_dir is None else self.source_dir  # None: kept
            changed = merged != attrs or source_dir != folder
            if changed:
                changes.append({"id": cid, "attributes": merged,
                                "source_dir": folder, "updated_at": now})
                if names := self.watch.changed(attrs, self.chunk[address]):
                    watched[cid] = names
            self._record(address, "updated" if changed or not member else "unchanged")
        if changes:
            self.session.execute(update(Contact), changes)
        self.watch.note(self.session, watched)

    def _record(self, address: str, outcome: str) -> None:
        """An address seen in an earlier chunk keeps "imported"; "unchanged" can only
        become "updated" when a later duplicate row changes it."""
        before = self.outcome.get(address)
        if before is None or (before == "unchanged" and outcome == "updated"):
            self.outcome[address] = outcome
