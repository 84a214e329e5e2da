"""Audience import and suppressions against a real database.

SQLite in tmp_path by default; PostgreSQL when TEST_DATABASE_URL is set (its schema `public`
is dropped and recreated before each test)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, func, select, text

from campaigns.audience import contacts as audience
from campaigns.ledger import suppressions
from campaigns.audience.contacts import RowError, get_list, import_contacts, normalise_address
from campaigns.db import Database
from campaigns.errors import InputError, NotFound
from campaigns.models import Contact, ContactList, ListMember
from campaigns.settings import load_settings


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@pytest.fixture
def audience_db(tmp_path: Path) -> Iterator[Database]:
    env = {"CAMPAIGNS_DATA_DIR": str(tmp_path / "data")}
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        _reset_postgres(url)
        env["CAMPAIGNS_DATABASE_URL"] = url
    db = Database(load_settings(env))
    yield db
    db.dispose()


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def contacts(db: Database) -> dict[str, Contact]:
    with db.session() as s:
        return {c.email: c for c in s.scalars(select(Contact))}


def members(db: Database, list_name: str) -> set[str]:
    with db.session() as s:
        lst = get_list(s, list_name)
        stmt = (select(Contact.email).join(ListMember, ListMember.contact_id == Contact.id)
                .where(ListMember.list_id == lst.id))
        return set(s.scalars(stmt))


def row_counts(db: Database) -> tuple[int, int, int]:
    with db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(m))  # type: ignore[return-value]
                     for m in (Contact, ContactList, ListMember))


# --- reading files ----------------------------------------------------------------------

def test_comma_file_imports_contacts_attributes_and_folder(audience_db: Database,
                                                           tmp_path: Path) -> None:
    path = write(tmp_path, "soci.csv",
                 "email,name,attachment\n"
                 "Mario.Rossi@Example.COM,Mario,docs/mario.pdf\n"
                 "anna@example.org,Anna,\n")
    report = import_contacts(audience_db, path, "soci")
    assert (report.imported, report.updated, report.unchanged, report.errors) == (2, 0, 0, [])
    assert report.columns == ["name", "attachment"]
    found = contacts(audience_db)
    assert set(found) == {"mario.rossi@example.com", "anna@example.org"}
    assert found["mario.rossi@example.com"].attributes == {"name": "Mario",
                                                           "attachment": "docs/mario.pdf"}
    assert found["anna@example.org"].attributes == {"name": "Anna", "attachment": ""}
    assert found["anna@example.org"].source_dir == str(tmp_path.resolve())
    assert members(audience_db, "soci") == set(found)


def test_semicolon_file_with_bom_and_italian_accents(audience_db: Database, tmp_path: Path) -> None:
    content = ("\ufeff E-Mail ;Nome;Città\r\n"
               "niccolo@esempio.it;Niccolò;Forlì\r\n"
               "lucia@esempio.it;Lucia;Cefalù\r\n")
    report = import_contacts(audience_db, write(tmp_path, "it.csv", content), "clienti")
    assert report.imported == 2 and report.errors == []
    assert report.columns == ["Nome", "Città"]
    assert contacts(audience_db)["niccolo@esempio.it"].attributes == {"Nome": "Niccolò",
                                                                      "Città": "Forlì"}


def test_tab_delimited_file(audience_db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "t.tsv", "email\tname, with comma\na@example.com\tAnna, Maria\n")
    report = import_contacts(audience_db, path, "t")
    assert report.columns == ["name, with comma"]
    assert contacts(audience_db)["a@example.com"].attributes == {"name, with comma": "Anna, Maria"}


def test_invalid_rows_are_reported_with_line_and_reason_and_others_imported(
        audience_db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.csv",
                 "email,name\n"
                 "good@example.com,Good\n"
                 "mario.example.com,No at\n"
                 ",Empty\n"
                 "bad@exa_mple..com,Bad domain\n"
                 "short-row@example.com\n"
                 "also-good@example.com,Also\n")
    report = import_contacts(audience_db, path, "mixed")
    assert report.imported == 2
    assert set(contacts(audience_db)) == {"good@example.com", "also-good@example.com"}
    got = [(e.line, e.field, e.value) for e in report.errors]
    assert got == [(3, "email", "mario.example.com"), (4, "email", ""),
                   (5, "email", "bad@exa_mple..com"), (6, "row", "short-row@example.com")]
    assert "@-sign" in report.errors[0].reason
    assert "empty" in report.errors[1].reason
    assert "after the @-sign" in report.errors[2].reason
    assert "expected 2 fields" in report.errors[3].reason
    assert str(report.errors[0]) == (f"{path}:3: field 'email': 'mario.example.com': "
                                     f"{report.errors[0].reason}")


def test_quoted_field_with_newlines_keeps_physical_line_numbers(audience_db: Database,
                                                                tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv",
                 'email;address;note\n'
                 'a@example.com;"Via Roma 1\n40100 Bologna\nItalia";ok\n'
                 'broken;x;y\n'
                 '\n'
                 'b@example.com;"one ""quoted"" word";\n'
                 'also broken;x;y\n')
    report = import_contacts(audience_db, path, "q")
    assert [e.line for e in report.errors] == [5, 8]
    found = contacts(audience_db)
    assert found["a@example.com"].attributes["address"] == "Via Roma 1\n40100 Bologna\nItalia"
    assert found["b@example.com"].attributes["address"] == 'one "quoted" word'


def test_bad_quotes_are_row_errors_not_swallowed_rows(audience_db: Database,
                                                      tmp_path: Path) -> None:
    path = write(tmp_path, "bq.csv",
                 'email,note\n'
                 'a@example.com,say "hi" there\n'
                 'b@example.com,"closed"then more\n'
                 'c@example.com,ok\n'
                 'd@example.com,"never closed\n'
                 'e@example.com,lost\n')
    report = import_contacts(audience_db, path, "bq")
    assert set(contacts(audience_db)) == {"a@example.com", "c@example.com"}
    assert contacts(audience_db)["a@example.com"].attributes == {"note": 'say "hi" there'}
    assert [(e.line, e.field) for e in report.errors] == [(3, "row"), (5, "row")]
    assert "quotes" in report.errors[1].reason


def test_trailing_empty_cells_and_blank_rows_are_tolerated(audience_db: Database,
                                                            tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "email;name\na@example.com;A;;\n;;\n\nb@example.com;B\n")
    report = import_contacts(audience_db, path, "x")
    assert (report.imported, report.errors) == (2, [])


# --- duplicates and re-import -----------------------------------------------------------

def test_duplicates_in_file_are_merged_later_non_empty_values_win(audience_db: Database,
                                                                  tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv",
                 "email,name,city\n"
                 "mario@example.com,Mario,\n"
                 "other@example.com,Other,Roma\n"
                 "MARIO@example.com,,Milano\n"
                 "mario@example.com,Mario R.,\n")
    report = import_contacts(audience_db, path, "d")
    assert (report.imported, report.duplicates) == (2, 2)
    assert contacts(audience_db)["mario@example.com"].attributes == {"name": "Mario R.",
                                                                     "city": "Milano"}


def test_duplicates_across_chunks_are_merged_and_counted_once(
        audience_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "CHUNK_ROWS", 2)
    rows = [f"user{i}@example.com,U{i}," for i in range(7)]
    rows += ["user0@example.com,,late city", "user6@example.com,U6 again,"]
    path = write(tmp_path, "c.csv", "email,name,city\n" + "\n".join(rows) + "\n")
    report = import_contacts(audience_db, path, "c")
    assert (report.imported, report.updated, report.duplicates) == (7, 0, 2)
    found = contacts(audience_db)
    assert found["user0@example.com"].attributes == {"name": "U0", "city": "late city"}
    assert found["user6@example.com"].attributes == {"name": "U6 again", "city": ""}
    assert len(members(audience_db, "c")) == 7


def test_reimport_merges_attributes_and_counts_updated_and_unchanged(
        audience_db: Database, tmp_path: Path) -> None:
    first = write(tmp_path, "v1.csv", "email,name,city\na@example.com,Anna,Roma\n"
                                      "b@example.com,Bruno,Pisa\n")
    import_contacts(audience_db, first, "news")
    folder = tmp_path / "v2"
    folder.mkdir()
    second = write(folder, "v2.csv", "email,city,attachment\nA@example.com,Milano,a.pdf\n")
    report = import_contacts(audience_db, second, "news")
    assert (report.imported, report.updated, report.unchanged) == (0, 1, 0)
    anna = contacts(audience_db)["a@example.com"]
    assert anna.attributes == {"name": "Anna", "city": "Milano", "attachment": "a.pdf"}
    assert anna.source_dir == str(folder.resolve())
    again = import_contacts(audience_db, first, "news")
    assert (again.imported, again.updated, again.unchanged) == (0, 1, 1)
    assert contacts(audience_db)["a@example.com"].attributes["city"] == "Roma"


def test_contact_in_many_lists_and_joining_a_list_counts_as_updated(
        audience_db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "email\na@example.com\n")
    import_contacts(audience_db, path, "one")
    report = import_contacts(audience_db, path, "two")
    assert (report.imported, report.updated, report.unchanged) == (0, 1, 0)
    assert members(audience_db, "one") == members(audience_db, "two") == {"a@example.com"}
    assert len(contacts(audience_db)) == 1


# --- files that cannot be imported ------------------------------------------------------

def _assert_rejected(db: Database, path: Path, *words: str) -> None:
    before = row_counts(db)
    with pytest.raises(InputError) as err:
        import_contacts(db, path, "news")
    message = str(err.value)
    assert message.startswith(str(path)), message
    for word in words:
        assert word in message, message
    assert row_counts(db) == before


@pytest.fixture
def seeded(audience_db: Database, tmp_path: Path) -> Database:
    import_contacts(audience_db, write(tmp_path, "seed.csv", "email,name\nz@example.com,Z\n"),
                    "news")
    return audience_db


def test_no_email_column_changes_nothing(seeded: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "n.csv", "mail,name\nz@example.com,New\n")
    _assert_rejected(seeded, path, ":1:", "no 'email' column", "mail, name")
    assert contacts(seeded)["z@example.com"].attributes == {"name": "Z"}


def test_non_utf8_file_is_a_clear_error_and_changes_nothing(
        seeded: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of 2 rows: earlier chunks are written before the bad byte is read, and undone.
    monkeypatch.setattr(audience, "CHUNK_ROWS", 2)
    good = "".join(f"u{i}@example.com,U{i}\n" for i in range(5))
    content = ("email,name\n" + good).encode() + "z@example.com,Nicol\xf2\n".encode("cp1252")
    path = write(tmp_path, "latin.csv", content)
    offset = content.index(b"\xf2")
    _assert_rejected(seeded, path, ":7:", "not valid UTF-8", f"byte offset {offset}", "CSV UTF-8")
    assert set(contacts(seeded)) == {"z@example.com"}


@pytest.mark.parametrize("content, words", [
    ("", ["empty"]),
    ("\ufeff\n\n", ["empty"]),
    ("email,,name\n", [":1:", "column 2 (B)", "empty header"]),
    ("email,Name,name \n", [":1:", "column 3 (C)", "repeats column 2 (B)"]),
    ("Email;e-mail\n", ["column 2 (B)", "repeats column 1 (A)"]),
])
def test_bad_header_or_empty_file_changes_nothing(seeded: Database, tmp_path: Path,
                                                  content: str, words: list[str]) -> None:
    _assert_rejected(seeded, write(tmp_path, "bad.csv", content), *words)


def test_unreadable_file(seeded: Database, tmp_path: Path) -> None:
    _assert_rejected(seeded, tmp_path / "missing.csv", "cannot read")
    _assert_rejected(seeded, tmp_path, "cannot read")


def test_header_only_file_creates_the_list_and_no_contacts(audience_db: Database,
                                                           tmp_path: Path) -> None:
    report = import_contacts(audience_db, write(tmp_path, "h.csv", "email,name\n"), "empty")
    assert (report.imported, report.errors, report.columns) == (0, [], ["name"])
    assert members(audience_db, "empty") == set()


def test_get_list_names_the_existing_lists(audience_db: Database, tmp_path: Path) -> None:
    import_contacts(audience_db, write(tmp_path, "a.csv", "email\n"), "beta")
    import_contacts(audience_db, write(tmp_path, "b.csv", "email\n"), "alfa")
    with audience_db.session() as s, pytest.raises(NotFound,
                                                   match=r"no list named gamma \(lists: alfa, beta\)"):
        get_list(s, "gamma")


def test_normalise_address() -> None:
    assert normalise_address("  Mario.Rossi@Example.COM ") == "mario.rossi@example.com"
    assert normalise_address("Niccolò@Esempio.it") == "niccolò@esempio.it"
    assert normalise_address("Bob@Example.TEST") == "bob@example.test"
    for bad in ("", "mario", "a@b@example.com", "a@localhost", "a@printer.local"):
        with pytest.raises(ValueError):
            normalise_address(bad)


def test_row_error_str() -> None:
    err = RowError(line=4, field="email", value="x", reason="Bad.", file="f.csv")
    assert str(err) == "f.csv:4: field 'email': 'x': Bad."


# --- suppressions -----------------------------------------------------------------------

def test_suppressions_add_remove_list(audience_db: Database) -> None:
    assert suppressions.add(audience_db, "Mario@Example.com", reason="unsubscribed")
    assert not suppressions.add(audience_db, " mario@example.COM ")
    assert suppressions.add(audience_db, "anna@example.org")
    listed = suppressions.list_all(audience_db)
    assert [(s.address, s.reason) for s in listed] == [("mario@example.com", "unsubscribed"),
                                                       ("anna@example.org", "manual")]
    with audience_db.session() as s:
        assert suppressions.is_suppressed(s, "MARIO@example.com")
        assert not suppressions.is_suppressed(s, "luigi@example.com")
        assert not suppressions.is_suppressed(s, "not an address")
        assert suppressions.suppressed_among(s, ["anna@example.org", "x@example.com"]) == {
            "anna@example.org"}
    assert suppressions.remove(audience_db, "MARIO@example.com")
    assert not suppressions.remove(audience_db, "mario@example.com")
    assert [s.address for s in suppressions.list_all(audience_db)] == ["anna@example.org"]


def test_suppression_of_invalid_address_is_input_error(audience_db: Database) -> None:
    with pytest.raises(InputError, match="@-sign"):
        suppressions.add(audience_db, "mario.example.com")
    with pytest.raises(InputError):
        suppressions.remove(audience_db, "")
    assert suppressions.list_all(audience_db) == []
