"""`campaigns gateway`: the SMTP submission gateway (campaigns.gateway) and its credentials."""
from __future__ import annotations

import json
import os
from typing import List, Optional

import typer

from campaigns.cli.common import ctx, enqueue_fn, handled, out

app = typer.Typer(help="The SMTP submission gateway an ERP points its outgoing mail server "
                       "at: run it, its users (credentials), its status.",
                  invoke_without_command=True)
users_app = typer.Typer(help="Credentials of the gateway: add (password shown once), list, "
                             "remove, passwd.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@app.callback()
@handled
def gateway(context: typer.Context) -> None:
    """Run the gateway ([gateway] listen and tls_listen) until SIGTERM or Ctrl-C."""
    if context.invoked_subcommand is not None:
        return
    from campaigns.errors import ConfigError
    try:
        import cryptography  # noqa: F401 - the self-signed certificate
    except ImportError:
        raise ConfigError("`campaigns gateway` needs cryptography: "
                          "pip install 'campaigns[gateway]'") from None
    from campaigns.gateway.service import serve
    enqueue = enqueue_fn()
    serve(ctx(), lambda ids: enqueue(ids, None, "transactional"),
          say=lambda line: out.print(line, markup=False))


def _password_from(env: Optional[str]) -> Optional[str]:
    from campaigns.errors import InputError
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise InputError(f"--password-env {env}: that environment variable is not set or "
                         "empty", field="--password-env")
    return value


@users_app.command("add")
@handled
def users_add(name: str,
              from_domain: List[str] = typer.Option(..., "--from-domain",
                                                    help="a domain it may send as; repeat"),
              stream: Optional[str] = typer.Option(None, "--stream",
                                                   help="its messages' stream (default smtp)"),
              relay: Optional[str] = typer.Option(None, "--relay", help="a relay to send through"),
              pool: Optional[str] = typer.Option(None, "--pool", help="or a pool"),
              rate: Optional[str] = typer.Option(None, "--rate", help="messages it may hand "
                                                 "over, such as 10/s or 600/min"),
              password_env: Optional[str] = typer.Option(
                  None, "--password-env", help="take the password from this environment "
                  "variable instead of generating one")) -> None:
    """Add gateway user NAME; its generated password is printed once."""
    from campaigns.errors import InputError
    from campaigns.gateway.users import add_user
    from campaigns.rates.parse import parse_rate
    if relay and pool:
        raise InputError("give --relay or --pool, not both", field="--pool")
    target = relay or pool
    c = ctx()
    if target is not None and target not in c.settings.relays and target not in c.settings.pools:
        raise InputError(f"'{target}' is not a configured relay or pool "
                         f"(relays: {', '.join(c.settings.relays) or 'none'}; pools: "
                         f"{', '.join(c.settings.pools) or 'none'})",
                         field="--pool" if pool else "--relay")
    per_s = parse_rate(rate).per_s if rate else None
    password, info = add_user(c.db, name, from_domain, stream=stream, relay=target,
                              rate_per_s=per_s, password=_password_from(password_env))
    out.print(f"gateway user '{info.name}': may send as {', '.join(info.from_domains)}; stream "
              f"{info.stream}; via {info.relay or 'the default relay'}"
              + (f"; {info.rate_per_s:g} messages/s" if info.rate_per_s else ""), markup=False)
    if password_env is None:
        out.print(f"password: {password}", markup=False)
        out.print("store it now: it is not shown again", markup=False)


@users_app.command("list")
@handled
def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Gateway users: domains, stream, relay, rate; never passwords."""
    from campaigns.gateway.users import list_users
    found = list_users(ctx().db)
    if as_json:
        out.print(json.dumps([{"name": u.name, "from_domains": list(u.from_domains),
                               "stream": u.stream, "relay": u.relay,
                               "rate_per_s": u.rate_per_s,
                               "created_at": u.created_at.isoformat()} for u in found]),
                  markup=False)
        return
    for u in found:
        out.print(f"{u.name}\t{','.join(u.from_domains)}\tstream {u.stream}\t"
                  f"{u.relay or 'default relay'}\t"
                  f"{f'{u.rate_per_s:g}/s' if u.rate_per_s else 'no rate limit'}", markup=False)


@users_app.command("remove")
@handled
def users_remove(name: str) -> None:
    """Remove gateway user NAME: its next login is refused."""
    from campaigns.gateway.users import remove_user
    remove_user(ctx().db, name)
    out.print(f"gateway user '{name}' removed", markup=False)


@users_app.command("passwd")
@handled
def users_passwd(name: str,
                 password_env: Optional[str] = typer.Option(
                     None, "--password-env", help="take the new password from this "
                     "environment variable instead of generating one")) -> None:
    """A new password for NAME (generated and printed once, or from --password-env)."""
    from campaigns.gateway.users import set_password
    password = set_password(ctx().db, name, _password_from(password_env))
    if password_env is None:
        out.print(f"new password for '{name}': {password}", markup=False)
        out.print("store it now: it is not shown again", markup=False)
    else:
        out.print(f"password of '{name}' changed", markup=False)


@app.command("status")
@handled
def gateway_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Running gateway processes: connections now, accepted in the last minute, refusals by
    reason."""
    from campaigns.gateway.service import status
    found = status(ctx())
    if as_json:
        out.print(json.dumps(found), markup=False)
        return
    if not found:
        out.print("no gateway running (none reported in the last 10 s)", markup=False)
    for g in found:
        refusals = ", ".join(f"{k} {v}" for k, v in sorted(g["refusals"].items())) or "none"
        out.print(f"{g['process']}: ports {', '.join(map(str, g.get('listening', [])))}; "
                  f"{g['connections']} connections now; {g['accepted_last_minute']} accepted "
                  f"in the last minute ({g['accepted_total']} since start); refusals: "
                  f"{refusals}", markup=False)
