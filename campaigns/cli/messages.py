"""`campaigns messages`: transactional messages (POST /api/v1/messages), the CLI twins of
GET /api/v1/messages and /messages/{id} (campaigns.ledger.messages)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Optional

import typer

from campaigns.cli.common import ctx, handled, out

app = typer.Typer(help="Transactional messages: list, show (with the timeline).",
                  no_args_is_help=True)

_AGE = re.compile(r"^(\d+)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    match = _AGE.match(text.strip())
    if not match:
        from campaigns.errors import InputError
        raise InputError(f"--since {text!r}: expected an age such as 90s, 30m, 1h or 7d",
                         field="since")
    age = int(match.group(1)) * _UNIT_S[match.group(2)]
    return datetime.now(timezone.utc) - timedelta(seconds=age)


@app.command("list")
@handled
def messages_list(stream: Optional[str] = typer.Option(None, "--stream"),
                  status: Optional[str] = typer.Option(None, "--status",
                                                       help="queued, sent, bounced, …"),
                  since: Optional[str] = typer.Option(None, "--since", help="e.g. 1h, 7d"),
                  ref: Optional[str] = typer.Option(None, "--ref"),
                  limit: int = typer.Option(100, "--limit", min=1, max=10_000),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Messages, oldest first: id, status, stream, recipient, ref, last reply."""
    from campaigns.errors import InputError
    from campaigns.ledger.messages import listing
    from campaigns.models import DELIVERY_STATUSES
    if status is not None and status not in DELIVERY_STATUSES:
        raise InputError(f"--status {status!r}: expected one of {', '.join(DELIVERY_STATUSES)}",
                         field="status")
    rows = listing(ctx().db, stream=stream, status=status, since=_since(since), ref=ref,
                   limit=limit)
    if as_json:
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    for m in rows:
        reply = f"{m['reply_code'] or ''} {m['reply_text'] or ''}".strip()
        out.print(f"{m['id']}\t{m['status']}\t{m['stream']}\t{m['to']}\t{m['ref'] or '-'}"
                  f"\t{reply[:80]}", markup=False)


@app.command("show")
@handled
def messages_show(message_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One message: status, attempts, the last reply, its bounce, and its timeline."""
    from campaigns.ledger.messages import get
    m = get(ctx().db, message_id)
    if as_json:
        out.print(json.dumps(m, indent=2), markup=False)
        return
    for key in ("id", "status", "stream", "to", "from", "ref", "template", "subject",
                "attempts", "relay", "reply_code", "enhanced_status", "reply_text",
                "bounce_category", "bounce_reason", "provider_message_id", "message_id",
                "created_at", "sent_at"):
        if m.get(key) not in (None, ""):
            out.print(f"{key}: {m[key]}", markup=False)
    for a in m["attachments"]:
        out.print(f"attachment: {a['filename']} ({a['size']} bytes)", markup=False)
    for e in m["events"]:
        detail = " ".join(str(v) for v in (e["code"], e["category"], e["reason"], e["detail"])
                          if v)
        out.print(f"  {e['at']}  {e['type']}  {detail}".rstrip(), markup=False)
