"""`campaigns keys`: keys of the HTTP API (campaigns.web.keys)."""
from __future__ import annotations

from typing import List

import typer

from campaigns.cli.common import ctx, handled, out

app = typer.Typer(help="Keys of the HTTP API: create (shown once), list, revoke.",
                  no_args_is_help=True)


@app.command("create")
@handled
def keys_create(name: str,
                scope: List[str] = typer.Option(..., "--scope",
                                                help="send, read or manage; repeat for more"),
                rate: float = typer.Option(20.0, "--rate", help="requests per second")) -> None:
    """Create key NAME and print it once: only its hash is kept."""
    from campaigns.web.keys import create_key
    key, info = create_key(ctx().db, name, scope, rate)
    out.print(f"key '{info.name}' ({', '.join(info.scopes)}; {info.rate_per_s:g} requests/s):",
              markup=False)
    out.print(key, markup=False)
    out.print("store it now: it is not shown again", markup=False)


@app.command("list")
@handled
def keys_list() -> None:
    """Keys with their scopes, rate and state; never the keys."""
    from campaigns.web.keys import list_keys
    for k in list_keys(ctx().db):
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        used = f"last used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
        out.print(f"{k.name}\t{k.prefix}…\t{','.join(k.scopes)}\t{k.rate_per_s:g}/s\t{state}"
                  f"\t{used}", markup=False)


@app.command("revoke")
@handled
def keys_revoke(name: str) -> None:
    """Revoke key NAME: refused from its next request on."""
    from campaigns.web.keys import revoke_key
    revoke_key(ctx().db, name)
    out.print(f"key '{name}' revoked", markup=False)
