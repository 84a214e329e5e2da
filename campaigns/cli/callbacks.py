"""`campaigns callbacks`: the outbox of the event callbacks (campaigns.callbacks)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import typer

from campaigns.cli.common import ctx, handled, out

app = typer.Typer(help="Event callbacks: the outbox's state, and given-up events tried again.",
                  no_args_is_help=True)


def _now() -> datetime:
    return datetime.fromtimestamp(ctx().clock(), timezone.utc)


@app.command("status")
@handled
def callbacks_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Pending, failing (with the last error and the next try), given up, skipped, sent in
    the last hour, the oldest pending event's age. Never the secret nor the url."""
    from campaigns.ledger.events import outbox_status
    c = ctx()
    snap = outbox_status(c.db, _now())
    snap["configured"] = bool(c.settings.callbacks.url)
    if as_json:
        print(json.dumps(snap, sort_keys=True))
        return
    age = snap["oldest_pending_s"]
    lines = [f"callbacks: {'configured' if snap['configured'] else 'no [callbacks] url'}",
             f"pending: {snap['pending']}"
             + (f" (oldest {age:g} s old)" if age is not None else ""),
             f"failing: {snap['failing']}"
             + (f" (next try {snap['next_try']})" if snap["failing"] else ""),
             f"given up: {snap['failed']}"
             + (" (`campaigns callbacks retry` tries them again)" if snap["failed"] else ""),
             f"skipped: {snap['skipped']}",
             f"sent in the last hour: {snap['sent_last_hour']} ({snap['sent']} in all)"]
    if snap["last_error"]:
        lines.append(f"last error: {snap['last_error']}")
    for line in lines:
        out.print(line, markup=False)


@app.command("retry")
@handled
def callbacks_retry() -> None:
    """Make the given-up events pending again: tried again from now, with the backoff."""
    from campaigns.ledger.events import revive
    n = revive(ctx().db, _now())
    out.print(f"{n} given-up event{'s' if n != 1 else ''} pending again", markup=False)
