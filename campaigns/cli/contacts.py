"""`campaigns contacts …`: import contacts into lists, and the lists."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from campaigns.cli.common import ctx, err, handled, out

app = typer.Typer(no_args_is_help=True, help="Import and inspect contacts and lists.")


@app.command("import")
@handled
def contacts_import(file: Path, list_name: str = typer.Option(..., "--list", help="List name"),
                    check_dns: bool = typer.Option(False, "--check-dns",
                                                   help="Also check the domains accept mail"),
                    restart: bool = typer.Option(
                        False, "--restart", help="Start over even if an import of this file "
                        "into this list was interrupted (default: continue after its last "
                        "committed line)")) -> None:
    """Import a CSV (header row; an `email` column; every other column is an attribute).

    Written in committed batches; importing the same file into the same list again after an
    interruption continues after the last committed line."""
    from campaigns.audience.contacts import import_contacts
    with _progress_bar(file.name) as progress:
        report = import_contacts(ctx().db, file, list_name, check_dns=check_dns,
                                 resume=not restart, progress=progress)
    for row_error in report.errors:
        err.print(str(row_error), soft_wrap=True)
    if report.resumed_after:
        out.print(f"continued an interrupted import after line {report.resumed_after} "
                  f"({report.earlier} addresses written before)", markup=False)
    out.print(f"{report.file} → list '{report.list_name}': {report.imported} imported, "
              f"{report.updated} updated, {report.unchanged} unchanged, "
              f"{len(report.errors)} invalid, {report.duplicates} duplicate", markup=False)
    for warning in report.warnings:   # attributes changed under a campaign about to send
        err.print(f"warning: {warning}", markup=False)


@contextmanager
def _progress_bar(name: str) -> Iterator[Optional[Callable[[int, int], None]]]:
    """A bar of lines committed, with rows/s and ETA, on a terminal; nothing otherwise."""
    if not out.is_terminal:
        yield None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeRemainingColumn)
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                          MofNCompleteColumn(), TextColumn("lines"),
                          TextColumn("{task.fields[rate]} rows/s"), TimeRemainingColumn()]
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task(name, total=None, rate="…")

        def progress(line: int, lines: int) -> None:
            bar.update(task, completed=line, total=lines)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:,.0f}" if speed else "…")
        yield progress


@app.command("lists")
@handled
def contacts_lists() -> None:
    """Lists with their member counts."""
    from campaigns.audience.lists import list_lists
    for row in list_lists(ctx().db):
        out.print(f"{row['name']}\t{row['members']}")
