"""`campaigns bounces …`: classify, process, serve, poll, report."""
from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Optional

import typer

from campaigns.cli.common import ctx, handled, out

app = typer.Typer(no_args_is_help=True,
                  help="Bounces: classify, take in and report returned messages.")


def _files(files: list[Path]) -> None:
    from campaigns.errors import InputError
    for path in files:
        if not path.is_file():
            raise InputError("no such file", file=str(path))


@app.command("classify")
@handled
def bounces_classify(files: list[Path]) -> None:
    """Print one JSON object per recipient report found in each message file (changes
    nothing)."""
    from campaigns.bounces.cli import classify_files
    _files(files)
    for row in classify_files(files):
        print(json.dumps(row, ensure_ascii=False))


@app.command("process")
@handled
def bounces_process(files: list[Path]) -> None:
    """Apply returned messages saved as files to the ledger (as the inbound endpoint
    does): one line per report with what it did."""
    from campaigns.intake import process_message
    _files(files)
    c = ctx()
    for path in files:
        for a in process_message(c.db, c.settings, path.read_bytes(), source="file"):
            out.print(f"{path}: {a.address} {a.category}/{a.reason}: {a.action}", markup=False)


@app.command("serve")
@handled
def bounces_serve(listen: Optional[str] = typer.Option(None, "--listen",
                                                       help="HOST:PORT (default \\[bounces] listen)"),
                  domain: Optional[str] = typer.Option(None, "--domain",
                                                       help="default \\[bounces] domain")) -> None:
    """Receive returned messages by SMTP for the bounce domain and apply them to the ledger
    until SIGTERM or Ctrl-C."""
    from campaigns.errors import InputError
    from campaigns.intake.inbound import BounceServer
    c = ctx()
    address = listen or c.settings.bounces.listen
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--listen must be HOST:PORT such as 127.0.0.1:2526 (got {address!r})",
                         field="listen")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with BounceServer(c.db, c.settings, host, int(port), domain) as server:
        print(f"listening {server.host}:{server.port} for {server.handler.domain}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


@app.command("poll")
@handled
def bounces_poll() -> None:
    r"""Fetch new messages from the \[bounces.imap] mailbox once and apply them (workers do
    this every `imap_every_s`)."""
    from campaigns.errors import ConfigError
    from campaigns.intake import poll_mailbox
    c = ctx()
    if c.settings.bounces.imap is None:
        raise ConfigError("no [bounces.imap] table in the configuration")
    result = poll_mailbox(c.db, c.settings)
    out.print(f"{result.handled} messages handled, {result.failed} left for the next poll",
              markup=False)


@app.command("report")
@handled
def bounces_report(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """What came back for campaign NAME: counts by category, reason and domain group, and
    the most frequent diagnostic texts."""
    from campaigns.intake.bounce_report import lines, report
    c = ctx()
    data = report(c.db, c.settings, name)
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    for line in lines(data):
        out.print(line, markup=False)
