"""`campaigns rates …` and `campaigns plan`: live send rates and duration estimates."""
from __future__ import annotations

import json
from typing import Any, Optional

import typer

from campaigns.cli.common import ctx, handled, out

app = typer.Typer(no_args_is_help=True, help="Fleet-wide send rates (live).")
#: top-level commands (`campaigns plan`): the root registers them
commands = typer.Typer()


def _pacer() -> Any:
    return ctx().pacer


@app.command("set")
@handled
def rates_set(target: str, rate: str,
              burst: Optional[int] = typer.Option(None, "--burst", min=1),
              daily: Optional[int] = typer.Option(None, "--daily", min=1)) -> None:
    """Set TARGET (relay:NAME, domain:GROUP, campaign:NAME) to RATE (50/s, 3000/min,
    20000/h). Every worker obeys within a second; it survives restarts."""
    from campaigns.rates.parse import parse_rate
    from campaigns.delivery.ratestore import set_limit
    parsed = parse_rate(rate)
    pacer = _pacer()
    set_limit(pacer.db, pacer.client, target, parsed.per_s, burst, daily)
    out.print(f"{target}: {parsed.text}" + (f", burst {burst}" if burst else "")
              + (f", daily cap {daily}" if daily is not None else ""))


@app.command("unset")
@handled
def rates_unset(target: str) -> None:
    """Remove what `rates set` stored for TARGET (the TOML default, if any, applies again)."""
    from campaigns.delivery.ratestore import unset_limit
    pacer = _pacer()
    removed = unset_limit(pacer.db, pacer.client, target)
    out.print(f"{target}: " + ("unset" if removed else "nothing was set"))


@app.command("reset")
@handled
def rates_reset(target: str) -> None:
    """Clear TARGET's throttle (relay:NAME, domain:GROUP or domain:example.com): its
    configured rate (or no limit) applies again at once, on every worker within a second."""
    from campaigns.delivery.ratestore import check_target
    pacer = _pacer()
    cleared = pacer.reset(check_target(target))
    out.print(f"{target}: " + ("throttle cleared" if cleared else "was not throttled"))


@app.command("show")
@handled
def rates_show(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every limit: configured rate, current effective rate and why it is lower, today's
    daily cap, the rate observed over the last minute, messages parked under it, and for a
    relay the share bulk and transactional mail may use now."""
    from campaigns.delivery.planning import rate_rows
    rows = rate_rows(_pacer())
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        line = f"{r['target']:28s} {r['rate'] or 'unlimited':>12s}"
        if r["effective_per_s"] is not None and r["effective_per_s"] != r["rate_per_s"]:
            line += f"  now {r['effective_per_s']:.3g}/s ({r['why_lower']})"
        if r["daily_cap"] is not None:
            line += f"  daily cap {r['daily_cap']}" + (" (warm-up today)" if r["daily_cap_reason"] else "")
        line += f"  observed {r['observed_per_s']:.1f}/s"
        if r["parked"]:
            line += f"  {r['parked']} parked"
        if r["shares"] and r["shares"]["transactional_waiting"]:
            line += (f"  bulk {r['shares']['bulk_per_s']:.3g}/s, transactional "
                     f"{r['shares']['transactional_per_s']:.3g}/s (transactional mail waiting)")
        elif r["shares"]:
            line += "  bulk may use all of it (no transactional mail waiting)"
        out.print(line, markup=False)


@commands.command("plan")
@handled
def plan(name: str) -> None:
    """Estimate how long a campaign takes from its audience's domain-group mix and the
    limits, and name the limit that binds."""
    from campaigns.delivery.planning import estimate
    for line in estimate(_pacer(), name):
        out.print(line, markup=False)
