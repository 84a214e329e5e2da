"""Engine and sessions for SQLite (embedded default, WAL mode) and PostgreSQL, same code."""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, overload

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")


def insert_for(dialect: str) -> Any:
    """The dialect's INSERT (SQLite's or PostgreSQL's), which has ON CONFLICT DO NOTHING
    (`.on_conflict_do_nothing(index_elements=[...])`) on both: the one insert-or-ignore."""
    from sqlalchemy.dialects import postgresql, sqlite
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def make_engine(url: str, *, pre_ping: bool = True) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL: readers never block the writer; NORMAL sync is durable across process crashes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()
        return engine
    return create_engine(url, pool_pre_ping=pre_ping, pool_size=5, max_overflow=5)


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:'([^']*)'|\"([^\"]*)\"|None)\s*$",
                       re.MULTILINE)


def head_revision() -> str | None:
    """The newest migration's revision, read from the files without Alembic; None when the
    files are not a simple chain (a merge, an unexpected spelling): then Alembic decides."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = {m[1]: m[2] or m[3] or None for m in _REVISION.finditer(path.read_text("utf-8"))}
        if "revision" not in found or "down_revision" not in found or not found["revision"]:
            return None
        revisions.add(found["revision"])
        parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine) -> bool:
    """True when the database is already at the newest revision (most commands): checked
    with one query, so a command does not spend a third of a second importing Alembic."""
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError:   # no schema yet
        return False
    return list(rows) == [head]


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest Alembic revision."""
    if at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection_engine"] = engine
    command.upgrade(cfg, "head")


class Database:
    """The engine plus a session factory; one per process."""

    def __init__(self, settings: Settings, *, auto_migrate: bool = True,
                 pre_ping: bool = True) -> None:
        """`pre_ping`: test a pooled PostgreSQL connection before each use (a round trip per
        transaction); workers go without: a task that meets a connection the server dropped
        is retried (OperationalError) and the pool is renewed."""
        self.engine = make_engine(settings.database_url, pre_ping=pre_ping)
        if auto_migrate:
            migrate(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s, s.begin():
            yield s

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value
