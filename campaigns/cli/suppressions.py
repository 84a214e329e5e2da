"""`campaigns suppressions …`: addresses that must never be mailed, with their scope."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from campaigns.cli.common import ctx, handled, out

app = typer.Typer(no_args_is_help=True, help="Addresses that must never be mailed.")


@app.command("add")
@handled
def suppressions_add(address: str, reason: str = typer.Option("manual", help="Why"),
                     scope: str = typer.Option("all", help="what it stops: all (every message), "
                                               "bulk (bulk campaigns), stream:NAME, list:NAME")
                     ) -> None:
    """Never mail ADDRESS again in SCOPE (queued mail to it included)."""
    from campaigns.ledger import suppressions
    added = suppressions.add(ctx().db, address, reason, scope=scope)
    out.print("suppressed" if added else "already suppressed")


@app.command("remove")
@handled
def suppressions_remove(address: str, scope: Optional[str] = typer.Option(
        None, help="lift only this scope (default: every scope)")) -> None:
    """Lift the suppression of ADDRESS: it may be mailed again."""
    from campaigns.ledger import suppressions
    removed = suppressions.remove(ctx().db, address, scope)
    out.print("removed" if removed else "not suppressed")
    if not removed:
        raise typer.Exit(1)


@app.command("list")
@handled
def suppressions_list() -> None:
    """Every suppression: address, scope, source, reason, when."""
    from campaigns.ledger import suppressions
    for s in suppressions.list_all(ctx().db):
        out.print(f"{s.address}\t{s.scope}\t{s.source}\t{s.reason}\t"
                  f"{s.created_at:%Y-%m-%d %H:%M}", markup=False)


@app.command("import")
@handled
def suppressions_import(file: Path) -> None:
    """Suppress every address of a CSV file with an `email` column (optional `reason`,
    `source`, `category`, `scope`: what `export` writes; scope defaults to all). Bad rows are
    listed; the rest imported."""
    from campaigns.ledger import suppressions
    report = suppressions.import_csv(ctx().db, file)
    for err in report.errors:
        out.print(f"error: {err}", markup=False)
    out.print(f"{file}: {report.added} suppressed, {report.already} already suppressed, "
              f"{len(report.errors)} rows with errors", markup=False)
    if report.errors:
        raise typer.Exit(1)


@app.command("export")
@handled
def suppressions_export(file: Optional[Path] = typer.Argument(None, help="default: stdout")) -> None:
    """Every suppression with its cause (source, category, delivery, bounce report) and
    scope as CSV.

    A cell starting with = + - @, a tab or a carriage return gets a leading single quote, so
    a spreadsheet shows it as text instead of running it as a formula; `suppressions import`
    removes that quote."""
    import sys

    from campaigns.ledger import suppressions
    if file is None:
        suppressions.export_csv(ctx().db, sys.stdout)
        return
    with file.open("w", newline="", encoding="utf-8") as fh:
        count = suppressions.export_csv(ctx().db, fh)
    out.print(f"{count} suppressions written to {file}", markup=False)
