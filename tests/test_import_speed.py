"""Contacts import at database speed: committed batches, the recorded position, resuming an
interrupted import, per-line errors across batches, the fast address path.

SQLite in tmp_path by default; PostgreSQL when TEST_DATABASE_URL is set (the same tests, the
COPY path)."""
from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import email_validator
import pytest
from sqlalchemy import func, select

from campaigns.audience import contacts as audience
from campaigns.audience.addresses import normalise_address
from campaigns.audience.contacts import import_contacts
from campaigns.audience.positions import IMPORTS
from campaigns.db import Database
from campaigns.errors import InputError
from campaigns.models import ListMember
from tests.test_audience import audience_db, contacts, members, write  # noqa: F401 - fixture

# 14 lines: header, then rows; bad rows on lines 4, 8 and 12; line 11 repeats a@ (line 2)
# with an empty name and a city; line 13 repeats g@ (line 9) with a name
ROWS = ["email,name,city",
        "a@example.com,Anna,Roma",          # 2
        "b@example.com,Bruno,",             # 3
        "not an address,X,",                # 4  error
        "c@example.com,Carla,Bari",         # 5
        "d@example.com,Dario,",             # 6
        "e@example.com,Elena,",             # 7
        "f@example.com",                    # 8  error: fields
        "g@example.com,,Pisa",              # 9
        "h@example.com,Hugo,",              # 10
        "A@Example.com,,Milano",            # 11 duplicate of line 2
        "i@exa_mple..com,I,",               # 12 error
        "g@example.com,Gino,",              # 13 duplicate of line 9
        "j@example.com,Jole,"]              # 14
ALL = {f"{c}@example.com" for c in "abcdeghj"}
ERRORS = [(4, "email"), (8, "row"), (12, "email")]


class Crash(Exception):
    pass


def _crash_after(batches: int) -> Any:
    seen: list[int] = []

    def progress(line: int, lines: int) -> None:
        seen.append(line)
        if len(seen) == batches:
            raise Crash(f"after batch {batches} (line {line})")
    return progress


def _position(db: Database) -> list[tuple[int, int, bool]]:
    with db.session() as s:
        return [(line, rows, finished is not None) for line, rows, finished in
                s.execute(select(IMPORTS.c.line, IMPORTS.c.rows, IMPORTS.c.finished_at)
                          .order_by(IMPORTS.c.id))]


def _member_rows(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(ListMember)) or 0)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "CHUNK_ROWS", 3)


def test_each_batch_is_committed_with_its_position(audience_db: Database, tmp_path: Path,
                                                   small_batches: None) -> None:
    path = write(tmp_path, "c.csv", "\n".join(ROWS) + "\n")
    with pytest.raises(Crash):
        import_contacts(audience_db, path, "news", progress=_crash_after(2))
    # batches of 3 addresses: a b c (lines 2-5), d e g (6-9); the crash after the second
    assert set(contacts(audience_db)) == {f"{c}@example.com" for c in "abcdeg"}
    assert members(audience_db, "news") == set(contacts(audience_db))
    assert _position(audience_db) == [(9, 6, False)]


def test_resume_continues_after_the_position_without_duplicates_or_losses(
        audience_db: Database, tmp_path: Path, small_batches: None) -> None:
    path = write(tmp_path, "c.csv", "\n".join(ROWS) + "\n")
    with pytest.raises(Crash):
        import_contacts(audience_db, path, "news", progress=_crash_after(2))
    lines: list[int] = []
    report = import_contacts(audience_db, path, "news",
                             progress=lambda line, total: lines.append(line))
    assert report.resumed_after == 9 and report.earlier == 6
    assert lines == [13, 14]                       # h a g | j (the line of a batch's last row)
    found = contacts(audience_db)
    assert set(found) == ALL and members(audience_db, "news") == ALL
    assert _member_rows(audience_db) == len(ALL)
    # duplicates across the resume point still merge: later non-empty values win
    assert found["a@example.com"].attributes == {"name": "Anna", "city": "Milano"}
    assert found["g@example.com"].attributes == {"name": "Gino", "city": "Pisa"}
    # every line's error is reported, those before the position too, with their lines
    assert [(e.line, e.field) for e in report.errors] == ERRORS
    assert (report.imported, report.duplicates) == (2, 2)   # h, j new; lines 11 and 13
    assert _position(audience_db) == [(14, 10, True)]


def test_an_uninterrupted_import_gives_the_same_as_a_resumed_one(
        audience_db: Database, tmp_path: Path, small_batches: None) -> None:
    path = write(tmp_path, "c.csv", "\n".join(ROWS) + "\n")
    report = import_contacts(audience_db, path, "news")
    found = contacts(audience_db)
    assert set(found) == ALL and _member_rows(audience_db) == len(ALL)
    assert found["a@example.com"].attributes == {"name": "Anna", "city": "Milano"}
    assert found["g@example.com"].attributes == {"name": "Gino", "city": "Pisa"}
    assert [(e.line, e.field) for e in report.errors] == ERRORS
    assert (report.imported, report.duplicates, report.resumed_after) == (8, 2, 0)
    # a finished import is not resumed: the same file again is a re-import
    again = import_contacts(audience_db, path, "news")
    assert (again.resumed_after, again.imported, again.updated + again.unchanged) == (0, 0, 8)


def test_restart_and_another_file_or_list_do_not_resume(
        audience_db: Database, tmp_path: Path, small_batches: None) -> None:
    path = write(tmp_path, "c.csv", "\n".join(ROWS) + "\n")
    with pytest.raises(Crash):
        import_contacts(audience_db, path, "news", progress=_crash_after(1))
    assert import_contacts(audience_db, path, "other").resumed_after == 0
    changed = write(tmp_path, "c2.csv", "\n".join(ROWS) + "\nk@example.com,K,\n")
    assert import_contacts(audience_db, changed, "news").resumed_after == 0
    with pytest.raises(Crash):
        import_contacts(audience_db, path, "news", progress=_crash_after(1))
    report = import_contacts(audience_db, path, "news", resume=False)
    assert report.resumed_after == 0 and report.imported == 0
    assert set(contacts(audience_db)) == ALL | {"k@example.com"}


def test_the_same_file_under_another_path_resumes(audience_db: Database, tmp_path: Path,
                                                  small_batches: None) -> None:
    path = write(tmp_path, "c.csv", "\n".join(ROWS) + "\n")
    with pytest.raises(Crash):
        import_contacts(audience_db, path, "news", progress=_crash_after(1))
    moved = path.rename(tmp_path / "moved.csv")
    assert import_contacts(audience_db, moved, "news").resumed_after == 5


def test_errors_keep_their_lines_across_many_batches(audience_db: Database, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "CHUNK_ROWS", 2)
    rows = ["email,n"]
    for i in range(40):
        rows.append(f"bad{i}.example.com,{i}" if i % 7 == 3 else f"u{i}@example.com,{i}")
    report = import_contacts(audience_db, write(tmp_path, "m.csv", "\n".join(rows)), "m")
    assert [e.line for e in report.errors] == [i + 2 for i in range(40) if i % 7 == 3]
    assert report.imported == 40 - len(report.errors) == len(members(audience_db, "m"))


def test_a_bad_byte_late_in_the_file_changes_nothing(audience_db: Database, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "CHUNK_ROWS", 2)
    content = ("email\n" + "".join(f"u{i}@example.com\n" for i in range(50))).encode()
    path = write(tmp_path, "late.csv", content + "z@example.com,Nicol\xf2\n".encode("cp1252"))
    with pytest.raises(InputError, match=":52: not valid UTF-8"):
        import_contacts(audience_db, path, "late")
    assert contacts(audience_db) == {} and _position(audience_db) == []


def test_a_failing_write_stops_the_import_at_its_batch(audience_db: Database, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       small_batches: None) -> None:
    calls: list[int] = []
    real = audience._Importer._update

    def failing(self: Any, session: Any, chunk: Any, existing: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real(self, session, chunk, existing)
    monkeypatch.setattr(audience._Importer, "_update", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        import_contacts(audience_db, write(tmp_path, "c.csv", "\n".join(ROWS) + "\n"), "news")
    assert set(contacts(audience_db)) == {"a@example.com", "b@example.com", "c@example.com"}
    assert _position(audience_db) == [(5, 3, False)]


def test_cli_resumes_and_prints_no_bar_without_a_terminal(project: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "CHUNK_ROWS", 3)
    path = project.root / "c.csv"
    path.write_text("\n".join(ROWS) + "\n", encoding="utf-8")
    with pytest.raises(Crash):
        import_contacts(project.ctx.db, path, "news", progress=_crash_after(1))
    proc = project.cli("contacts", "import", str(path), "--list", "news")
    assert "continued an interrupted import after line 5 (3 addresses written before)" \
        in proc.stdout
    assert "5 imported" in proc.stdout and "━" not in proc.stdout
    assert f"{path}:4: field 'email'" in proc.stderr
    proc = project.cli("contacts", "import", str(path), "--list", "news", "--restart")
    assert "continued" not in proc.stdout and "0 imported" in proc.stdout


# --- the fast address path agrees with email-validator -----------------------------------

def _slow(text: str) -> str:
    try:
        result = email_validator.validate_email(text.strip(), check_deliverability=False,
                                                test_environment=True)
    except email_validator.EmailNotValidError as err:
        return f"error: {err}"
    return str(result.normalized).lower()


def _fast(text: str) -> str:
    try:
        return normalise_address(text)
    except ValueError as err:
        return f"error: {err}"


TRICKY = ["a@b.com", "A.B+tag@Example.COM", " spaced@example.com ", "a@localhost",
          "x@printer.local", "y@site.invalid", "z@x.onion", "q@example.test", '"quoted"@x.com',
          "a..b@x.com", ".a@x.com", "a.@x.com", "a@-x.com", "a@x-.com", "a@x", "a@x.123",
          "a@1.2.3.4", "a@[1.2.3.4]", "a@xn--nicol-yta.it", "a@XN--NICOL-YTA.IT", "niccolò@x.it",
          "a@niccolò.it", "Anna <a@x.com>", "a@b@c.com", "a@x..com", "a@.x.com", "a@x.com.",
          "postmaster@X.com", "a" * 64 + "@x.com", "a" * 65 + "@x.com",
          "b@" + "x" * 63 + ".com", "b@" + "x" * 64 + ".com", ("c" * 60 + ".") * 4 + "@x.com",
          "d@" + ".".join(["y" * 60] * 4) + ".com", "e@under_score.com", "f{}|~'*/=?^`#$%&!@x.com",
          "g@x.c", "h@x.museum", "i@x.arpa", "j@home.arpa", "k@x.local.com", "tab\t@x.com"]


@pytest.mark.parametrize("address", TRICKY)
def test_fast_path_agrees_with_email_validator(address: str) -> None:
    assert _fast(address) == _slow(address)


def test_fast_path_agrees_on_random_addresses() -> None:
    rnd = random.Random(5)
    alphabet = string.ascii_letters + string.digits + ".-_+@!#'\"()[]<> àé"
    domains = ["example.com", "x.it", "EXAMPLE.org", "x", "a-.com", "localhost", "x.test",
               "xn--nicol-yta.it", "ü.de", "1.2", "b..c"]
    for _ in range(3000):
        local = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        address = local + rnd.choice(["@", "@", "@", ""]) + rnd.choice(domains)
        assert _fast(address) == _slow(address), address
