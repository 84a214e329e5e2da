"""Where an import is: the `imports` table (migration 0011), written only here.

One row per import: the list, the file (path for people; size and SHA-256 of the whole file
for matching), `line` (the last line of the last committed batch) and `rows` (rows written
so far). A batch and the move of its position commit together, so after a crash `line` is
exactly what the database holds. An import of the same file (same size and SHA-256, whatever
its path) into the same list whose row is not finished continues after `line`."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text,
                        insert, select, update)
from sqlalchemy.orm import Session

from campaigns.audience.csvread import FileScan
from campaigns.models import utcnow

IMPORTS = Table(
    "imports", MetaData(),
    Column("id", Integer, primary_key=True),
    Column("list_name", String(200), nullable=False),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("line", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Position:
    id: int
    line: int      # rows starting on or before this line are written (0: none)
    rows: int      # rows written by earlier runs of this import


def begin(session: Session, path: str, list_name: str, scan: FileScan, *,
          resume: bool) -> Position:
    """The interrupted import of this file into this list (`resume`), else a new one. With
    `resume` False an interrupted one is closed (it will not be continued)."""
    t = IMPORTS.c
    same = (t.sha256 == scan.sha256, t.size == scan.size, t.list_name == list_name,
            t.finished_at.is_(None))
    found = session.execute(select(t.id, t.line, t.rows).where(*same)
                            .order_by(t.id.desc()).limit(1)).first()
    now = utcnow()
    if found is not None and resume:
        session.execute(update(IMPORTS).where(t.id == found.id).values(path=path, updated_at=now))
        return Position(found.id, found.line, found.rows)
    if found is not None:
        session.execute(update(IMPORTS).where(*same).values(finished_at=now))
    new_id = session.execute(insert(IMPORTS).values(
        list_name=list_name, path=path, size=scan.size, sha256=scan.sha256, line=0, rows=0,
        started_at=now, updated_at=now).returning(t.id)).scalar_one()
    return Position(new_id, 0, 0)


def advance(session: Session, import_id: int, line: int, rows: int) -> None:
    """The batch ending at `line` is written (in this same transaction); `rows` more rows."""
    session.execute(update(IMPORTS).where(IMPORTS.c.id == import_id).values(
        line=line, rows=IMPORTS.c.rows + rows, updated_at=utcnow()))


def finish(session: Session, import_id: int, line: int) -> None:
    now = utcnow()
    session.execute(update(IMPORTS).where(IMPORTS.c.id == import_id).values(
        line=line, updated_at=now, finished_at=now))
