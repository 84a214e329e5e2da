"""`campaigns contacts …`: import contacts into lists, and the lists."""
from __future__ import annotations

from pathlib import Path

import typer

from campaigns.cli.common import ctx, err, handled, out

app = typer.Typer(no_args_is_help=True, help="Import and inspect contacts and lists.")


@app.command("import")
@handled
def contacts_import(file: Path, list_name: str = typer.Option(..., "--list", help="List name"),
                    check_dns: bool = typer.Option(False, "--check-dns",
                                                   help="Also check the domains accept mail")) -> None:
    """Import a CSV (header row; an `email` column; every other column is an attribute)."""
    from campaigns.audience.contacts import import_contacts
    report = import_contacts(ctx().db, file, list_name, check_dns=check_dns)
    for row_error in report.errors:
        err.print(str(row_error), soft_wrap=True)
    out.print(f"{report.file} → list '{report.list_name}': {report.imported} imported, "
              f"{report.updated} updated, {report.unchanged} unchanged, "
              f"{len(report.errors)} invalid, {report.duplicates} duplicate")
    for warning in report.warnings:   # attributes changed under a campaign about to send
        err.print(f"warning: {warning}", markup=False)


@app.command("lists")
@handled
def contacts_lists() -> None:
    """Lists with their member counts."""
    from campaigns.audience.lists import list_lists
    for row in list_lists(ctx().db):
        out.print(f"{row['name']}\t{row['members']}")
