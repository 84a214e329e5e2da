"""The audience: contacts imported from CSV files into named lists.

Addresses are normalised once (`addresses.normalise_address`) and stored in that form
everywhere (contacts, suppressions, deliveries): email-validator's `.normalized` form, then
lowercased as a whole. RFC 5321 lets a receiving server treat the local part
case-sensitively, but in practice no mailbox provider does, and lowercasing is what keeps
`Mario.Rossi@x.it` and `mario.rossi@x.it` from becoming two contacts.

A CSV file is first scanned whole (`csvread.scan`: size, SHA-256, lines, UTF-8), then
streamed in batches of `CHUNK_ROWS` distinct addresses, each written by `batches` (staging
table: COPY on PostgreSQL, executemany on SQLite, then set-based statements) and committed
with the import's position (`positions`): a crash loses at most the batch being written, and
importing the same file into the same list again continues after the last committed line.
A file that is unusable (unreadable, not UTF-8, no `email` column, empty) changes nothing.
"""
from __future__ import annotations

import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience import positions
from campaigns.audience.addresses import normalise_address
from campaigns.audience.attribute_watch import AttributeWatch
from campaigns.audience.batches import BatchWriter, Existing
from campaigns.audience.csvread import (_decoded_lines, _Header, _open_csv, scan)
from campaigns.db import Database, insert_for
from campaigns.errors import InputError, NotFound
from campaigns.models import ContactList, utcnow

__all__ = ["CHUNK_ROWS", "ImportReport", "RowError", "get_list", "import_contacts",
           "normalise_address", "_decoded_lines", "_open_csv"]

CHUNK_ROWS = 20_000
#: called after each committed batch with (last line written, lines in the file)
Progress = Callable[[int, int], None]


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
    resumed_after: int = 0  # an interrupted import continued after this line (0: from the top)
    earlier: int = 0        # distinct addresses written by the interrupted run(s)

    def summary(self) -> str:
        return (f"{self.file} -> list '{self.list_name}': {self.imported} imported, "
                f"{self.updated} updated, {self.unchanged} unchanged, "
                f"{self.duplicates} duplicate rows merged, {len(self.errors)} rows rejected")


def get_list(session: Session, name: str) -> ContactList:
    """The list called `name`; NotFound names the lists there are."""
    found = session.scalar(select(ContactList).where(ContactList.name == name))
    if found is None:
        names = ", ".join(session.scalars(select(ContactList.name).order_by(ContactList.name)))
        raise NotFound(f"no list named {name} (lists: {names or 'none'})")
    return found


def import_contacts(db: Database, path: Path, list_name: str, *,
                    check_dns: bool = False, from_file_dir: bool = True, resume: bool = True,
                    progress: Progress | None = None) -> ImportReport:
    """Import a CSV file of contacts into the list `list_name` (created when missing).

    The file: UTF-8 (a BOM is fine), a header line, delimiter `,`, `;` or tab (the one that
    splits the header into an email column and the most others). One column is the address
    (`email` or `e-mail`, any case); every other column becomes an attribute named by its
    header, value stripped of surrounding whitespace (empty cells are stored as ""). Blank
    rows are skipped.

    A contact already known keeps its other attributes; columns of this file overwrite
    same-named ones (`warnings` names the attributes so changed that a scheduled, sending,
    waiting or paused campaign, or a schedule, reads for a list they are in). `source_dir`
    becomes this file's folder (attachment paths are relative to it). An address repeated
    within the file is merged: later non-empty values win.

    Written in committed batches of `CHUNK_ROWS` addresses; `progress(line, lines)` is
    called after each. With `resume` (the default), an earlier import of the same file (same
    size and SHA-256) into the same list that did not finish continues after its last
    committed line: the lines before it are read again (their errors reported, their
    addresses known for merging duplicates) but not written; `resume` False starts over.

    Bad rows are reported in `ImportReport.errors` and the others imported. A file that can
    not be used at all raises InputError and changes nothing. `from_file_dir` False (an
    upload through the API, written to a temporary file): contacts keep the folder they had
    (new ones get none), since the file's own folder means nothing."""
    file = str(path)
    name = list_name.strip()
    if not name:
        raise InputError("the list name is empty", file=file)
    try:
        scanned = scan(path, file)
        with path.open("rb") as handle:
            header, rows = _open_csv(_decoded_lines(handle, file), file)
            importer = _Importer(db, name, file, header, source_dir=(
                str(path.resolve().parent) if from_file_dir else None), check_dns=check_dns)
            with db.session() as session:
                importer.start(session, scanned, resume=resume)
            importer.progress = progress
            importer.total = scanned.lines
            try:
                for line, cells, problem in rows:
                    importer.feed(line, cells, problem)
                return importer.finish()
            finally:
                importer.stop()
    except OSError as err:
        raise InputError(f"cannot read the file: {err.strerror or err}", file=file) from None


class _Stopped(Exception):
    """The reader stopped: the writer writes no more batches."""


# --- writing the contacts ---------------------------------------------------------------

class _Importer:
    """Collects parsed rows into batches; writes and commits each with its position."""

    def __init__(self, db: Database, list_name: str, file: str, header: _Header, *,
                 source_dir: str | None, check_dns: bool) -> None:
        self.db, self.file, self.header = db, file, header
        self.list_name, self.source_dir, self.check_dns = list_name, source_dir, check_dns
        self.report = ImportReport(file=file, list_name=list_name,
                                   columns=[n for _, n in header.attributes])
        # address -> imported|updated|unchanged, "earlier" when written by an interrupted
        # run, "" while its batch is being written (set by the reader, then by the writer)
        self.outcome: dict[str, str] = {}
        # address -> attributes to merge in; only the non-empty ones for an address
        # already written by an earlier batch (a duplicate row)
        self.chunk: dict[str, dict[str, str]] = {}
        self.progress: Progress | None = None
        self.total = self.line = self.rows = 0
        self.batches: queue.Queue[tuple[Any, int, int] | None] = queue.Queue(maxsize=1)
        self.thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def start(self, session: Session, scanned: Any, *, resume: bool) -> None:
        stmt = insert_for(session.get_bind().dialect.name)(ContactList).values(
            name=self.list_name, created_at=utcnow())
        session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        list_id = get_list(session, self.list_name).id
        self.writer = BatchWriter(session.get_bind().dialect.name, list_id, self.source_dir)
        self.position = positions.begin(session, self.file, self.list_name, scanned,
                                        resume=resume)
        self.report.resumed_after = self.position.line
        self.watch = AttributeWatch.load(session)

    def feed(self, line: int, cells: list[str], problem: str = "") -> None:
        if problem:
            self._reject(line, "row", "", problem)
            return
        parsed = self._parse_row(line, cells)
        if parsed is None:
            return
        address, attrs = parsed
        if line <= self.position.line:   # written by the interrupted run
            if address not in self.outcome:
                self.outcome[address] = "earlier"
            else:
                self.report.duplicates += 1
            return
        if address in self.chunk or address in self.outcome:
            self.report.duplicates += 1
            filled = {k: v for k, v in attrs.items() if v != ""}
            if address in self.chunk:
                self.chunk[address].update(filled)
                self.line, self.rows = line, self.rows + 1
                return
            attrs = filled
        self.chunk[address] = attrs
        self.outcome.setdefault(address, "")   # seen; its outcome set once written
        self.line, self.rows = line, self.rows + 1
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
        self.close()
        with self.db.session() as session:
            positions.finish(session, self.position.id, max(self.line, self.position.line))
        counts = Counter(self.outcome.values())
        self.report.imported = counts["imported"]
        self.report.updated = counts["updated"]
        self.report.unchanged = counts["unchanged"]
        self.report.earlier = counts["earlier"]
        self.report.warnings = self.watch.warnings()
        return self.report

    def _flush(self) -> None:
        """Hands the batch to the writer thread, which writes it while the next is parsed
        (the database and this process each have a core); re-raises the writer's error."""
        if self.failure is not None:
            raise self.failure
        if not self.chunk:
            return
        if self.thread is None:
            self.thread = threading.Thread(target=self._writer, name="import-writer",
                                           daemon=True)
            self.thread.start()
        self.batches.put((self.chunk, self.line, self.rows))
        self.chunk, self.rows = {}, 0

    def close(self) -> None:
        """Waits for the batch being written; re-raises the writer's error."""
        if self.thread is not None:
            self.batches.put(None)
            self.thread.join()
            self.thread = None
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        """After an error of the reader: lets the batch being written finish, no more."""
        if self.thread is not None:
            self.failure = self.failure or _Stopped()
            self.batches.put(None)
            self.thread.join()
            self.thread = None

    def _writer(self) -> None:
        while (batch := self.batches.get()) is not None:
            if self.failure is None:
                try:
                    self._write(*batch)
                except BaseException as exc:  # noqa: BLE001 - re-raised by the reader
                    self.failure = exc

    def _write(self, chunk: dict[str, dict[str, str]], line: int, rows: int) -> None:
        """The batch and its position in one transaction, then `progress`."""
        with self.db.session() as session:
            conn = session.connection()
            self.writer.stage(conn, chunk)
            existing = self.writer.existing(conn)
            created = self.writer.create(conn, utcnow())
            if len(existing) + len(created) < len(chunk):   # created meanwhile elsewhere
                existing = {a: v for a, v in self.writer.existing(conn).items()
                            if a not in created}
            self.writer.join(conn, [*created.values(),
                                    *(cid for cid, _, _, member in existing.values() if not member)])
            self._update(session, chunk, existing)
            positions.advance(session, self.position.id, line, rows)
        for address in created:
            self._record(address, "imported")
        if self.progress is not None:
            self.progress(line, self.total)

    def _update(self, session: Session, chunk: dict[str, dict[str, str]],
                existing: Existing) -> None:
        now, changes, watched = utcnow(), [], {}
        for address, (cid, attrs, source_dir, member) in existing.items():
            if attrs is None:   # the database found nothing to change
                self._record(address, "unchanged" if member else "updated")
                continue
            merged = {**attrs, **chunk[address]}
            folder = source_dir if self.source_dir is None else self.source_dir  # None: kept
            changed = merged != attrs or source_dir != folder
            if changed:
                changes.append({"id": cid, "attributes": merged,
                                "source_dir": folder, "updated_at": now})
                if names := self.watch.changed(attrs, chunk[address]):
                    watched[cid] = names
            self._record(address, "updated" if changed or not member else "unchanged")
        self.writer.update(session, changes)
        self.watch.note(session, watched)

    def _record(self, address: str, outcome: str) -> None:
        """An address seen in an earlier batch keeps "imported" (or "earlier");
        "unchanged" can only become "updated" when a later duplicate row changes it."""
        before = self.outcome.get(address)
        if not before or (before == "unchanged" and outcome == "updated"):
            self.outcome[address] = outcome
