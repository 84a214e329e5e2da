"""One batch of an import written with a few set-based statements, from a staging table.

The batch's rows (address, attributes as JSON, position in the file) go into a temporary
table `import_stage`: on PostgreSQL with COPY (psycopg 3's `cursor.copy()` on the session's
own connection, so in the batch's transaction; the table is dropped at commit), on SQLite
with one `executemany`. Then, joined with it: the contacts that exist (one SELECT), the new
ones (`INSERT … SELECT … ON CONFLICT (email) DO NOTHING RETURNING`, in file order), and the
list's memberships of the new ones and of the existing ones not yet in it (PostgreSQL: one
`INSERT … SELECT unnest(ids)`; SQLite: one executemany). Attribute merges of
contacts that exist stay in Python (the importer's rules); the changed ones are one UPDATE … FROM
a COPY-filled `import_update` on PostgreSQL, one executemany UPDATE on SQLite."""
from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _quoted  # type: ignore[attr-defined]
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, column, text, update
from sqlalchemy.orm import Session

from campaigns.models import Contact

_CONTACTS = cast(Table, Contact.__table__)
#: address -> (id, attributes (None: the batch changes nothing of it), source_dir, member)
Existing = dict[str, tuple[int, "dict[str, Any] | None", "str | None", bool]]

_ATTRS = column("attributes", _CONTACTS.c.attributes.type)


def _load(same: str) -> Any:
    return text(
        f"SELECT c.id, c.email, CASE WHEN {same} THEN NULL ELSE c.attributes END AS attributes, "
        f"c.source_dir, m.contact_id, {same} AS same FROM import_stage s "
        "JOIN contacts c ON c.email = s.email "
        "LEFT JOIN list_members m ON m.contact_id = c.id AND m.list_id = :list_id"
    ).columns(column("id"), column("email"), _ATTRS, column("source_dir"), column("member"),
              column("same"))


# On PostgreSQL a contact the batch leaves as it is (its attributes contain the staged ones,
# its folder stays) comes without its attributes: nothing to merge, decode or write.
_LOAD = {"postgresql": _load(
    "(c.attributes::jsonb @> CAST(s.attributes AS jsonb) AND (CAST(:source_dir AS text) IS NULL "
    "OR c.source_dir = :source_dir))"), "sqlite": _load("0")}
_JOIN = {"postgresql": text("INSERT INTO list_members (list_id, contact_id) SELECT :list_id, "
                            "unnest(CAST(:ids AS integer[])) ON CONFLICT DO NOTHING"),
         "sqlite": text("INSERT INTO list_members (list_id, contact_id) VALUES (:list_id, :id) "
                        "ON CONFLICT DO NOTHING")}
# On PostgreSQL the batch's joins with contacts and list_members are index lookups per
# staged row: the planner, with statistics of a table growing under it, would otherwise
# hash whole tables once a batch (quadratic in the file's length).
_INDEXED = ("SET LOCAL enable_hashjoin = off", "SET LOCAL enable_mergejoin = off")


def _create(attributes: str) -> Any:
    stamp = _CONTACTS.c.created_at.type
    return text(
        "INSERT INTO contacts (email, attributes, source_dir, created_at, updated_at) "
        f"SELECT s.email, {attributes}, :source_dir, :now, :now FROM import_stage s "
        "WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.email = s.email) ORDER BY s.n "
        "ON CONFLICT (email) DO NOTHING RETURNING email, id"
    ).bindparams(bindparam("now", type_=stamp), bindparam("source_dir"))


_UPDATE = text(
    "UPDATE contacts AS c SET attributes = CAST(u.attributes AS json), source_dir = u.source_dir, "
    "updated_at = :now FROM import_update u WHERE c.id = u.id"
).bindparams(bindparam("now", type_=_CONTACTS.c.updated_at.type))
_CREATE = {"postgresql": _create("CAST(s.attributes AS json)"), "sqlite": _create("s.attributes")}


def _json(attrs: dict[str, str]) -> str:
    """`json.dumps(attrs)` (what SQLAlchemy's JSON type writes) for a flat dict of strings,
    at a quarter of the cost."""
    return "{" + ", ".join([f"{_quoted(k)}: {_quoted(v)}" for k, v in attrs.items()]) + "}"


class BatchWriter:
    """Writes batches of one import into one list, on one dialect."""

    def __init__(self, dialect: str, list_id: int, source_dir: str | None) -> None:
        self.postgres = dialect == "postgresql"
        self.list_id, self.source_dir = list_id, source_dir
        dialect = "postgresql" if self.postgres else "sqlite"
        self.create_stmt, self.join_stmt = _CREATE[dialect], _JOIN[dialect]
        self.load_stmt = _LOAD[dialect]

    def stage(self, conn: Connection, chunk: dict[str, dict[str, str]]) -> None:
        """The batch's rows into `import_stage` (created empty for this transaction)."""
        rows = [(n, address, _json(attrs)) for n, (address, attrs) in enumerate(chunk.items())]
        if self.postgres:
            for setting in _INDEXED:
                conn.exec_driver_sql(setting)
            conn.exec_driver_sql("CREATE TEMPORARY TABLE import_stage (n integer, email text, "
                                 "attributes text) ON COMMIT DROP")
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cur:
                with cur.copy("COPY import_stage (n, email, attributes) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            conn.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS import_stage "
                                 "(n integer, email text, attributes text)")
            conn.exec_driver_sql("DELETE FROM import_stage")
            conn.exec_driver_sql("INSERT INTO import_stage (n, email, attributes) "
                                 "VALUES (?, ?, ?)", rows)

    def existing(self, conn: Connection) -> Existing:
        """The staged addresses that are contacts: see `Existing`."""
        params = {"list_id": self.list_id, "source_dir": self.source_dir}
        return {email: (cid, None if same else dict(attrs or {}), src, member is not None)
                for cid, email, attrs, src, member, same in conn.execute(self.load_stmt, params)}

    def create(self, conn: Connection, now: datetime) -> dict[str, int]:
        """The staged addresses no contact has yet become contacts: address -> id of the
        ones created (in file order)."""
        return dict(conn.execute(self.create_stmt, {"source_dir": self.source_dir,
                                                    "now": now}).all())  # type: ignore[arg-type]

    def join(self, conn: Connection, ids: list[int]) -> None:
        """The contacts `ids` members of the list (those already are stay)."""
        if not ids:
            return
        if self.postgres:
            conn.execute(self.join_stmt, {"list_id": self.list_id, "ids": ids})
        else:
            conn.execute(self.join_stmt, [{"list_id": self.list_id, "id": i} for i in ids])

    def update(self, session: Session, changes: list[dict[str, Any]]) -> None:
        """Contacts whose attributes or folder changed (`id`, `attributes`, `source_dir`,
        `updated_at`): on PostgreSQL COPY into `import_update` and one UPDATE … FROM;
        on SQLite one executemany UPDATE."""
        if not changes:
            return
        if not self.postgres:
            session.execute(update(Contact), changes)
            return
        conn = session.connection()
        conn.exec_driver_sql("CREATE TEMPORARY TABLE import_update (id integer, attributes text, "
                             "source_dir text) ON COMMIT DROP")
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy("COPY import_update (id, attributes, source_dir) FROM STDIN") as copy:
                for change in changes:
                    copy.write_row((change["id"], json.dumps(change["attributes"]),
                                    change["source_dir"]))
        conn.execute(_UPDATE, {"now": changes[0]["updated_at"]})
