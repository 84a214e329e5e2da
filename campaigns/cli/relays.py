"""`campaigns relays …`: the relay kinds, the configured relays and pools, and a check
that sends no mail."""
from __future__ import annotations

import json
from typing import Any

import typer

from campaigns.cli.common import REDIS_TIMEOUT_S, handled, out

app = typer.Typer(no_args_is_help=True, help="Configured relays.")


@app.command("list")
@handled
def relays_list() -> None:
    """Relay kinds that can be used (built in and entry points) and the configured relays,
    never their secrets."""
    from campaigns.relays import available_kinds
    from campaigns.settings import load_settings
    settings = load_settings()   # no database needed to list relays
    out.print("kinds:", markup=False)
    for kind, source, note in available_kinds():
        out.print(f"  {kind:<10} {source:<12} {note}", markup=False)
    out.print("relays:", markup=False)
    states = _breaker_states(settings)
    for name, relay in settings.relays.items():
        mark = " (default)" if name == settings.default_relay else ""
        out.print("  " + json.dumps(relay.describe(), ensure_ascii=False) + mark, markup=False)
        out.print(f"    breaker {states.get(name, 'unknown (Redis not running)')}", markup=False)
    if not settings.relays:
        out.print(f"  none configured ({settings.config_path or 'no campaigns.toml'})", markup=False)
    if settings.pools:
        out.print("pools:", markup=False)
    for pool in settings.pools.values():
        mark = " (default)" if pool.name == settings.default_relay else ""
        members = ", ".join(f"{r}×{w:g}" if pool.strategy == "weighted" else r
                            for r, w in zip(pool.relays, pool.weights))
        routes = f"; From domains {', '.join(pool.from_domains)}" if pool.from_domains else ""
        out.print(f"  {pool.name}: {pool.strategy} [{members}]{routes}{mark}", markup=False)


def _breaker_states(settings: Any) -> dict[str, str]:
    """Each relay's circuit breaker, as the fleet shares it in Redis ({} when unreachable)."""
    try:
        from campaigns.context import open_context
        c = open_context(settings, migrate=False, redis_timeout_s=REDIS_TIMEOUT_S)
        if c.running_redis() is None:
            return {}
        breaker = c.breaker
        return {name: breaker.state(name).describe() for name in settings.relays}
    except Exception:  # noqa: BLE001 - listing relays must work without Redis
        return {}


@app.command("check")
@handled
def relays_check(name: str) -> None:
    """Check a relay without sending mail: SMTP connects, greets, STARTTLS, AUTH, QUIT; an API
    relay makes one authenticated request; a file relay writes a probe file."""
    from campaigns.relays import build_relay
    from campaigns.settings import load_settings, require_secrets
    config = load_settings().relay(name)
    out.print(f"checking relay '{config.name}': "
              f"{json.dumps(config.describe(), ensure_ascii=False)}", markup=False)
    require_secrets(config)
    relay = build_relay(config)
    try:
        for line in relay.check():
            out.print(f"ok  {line}", markup=False)
    finally:
        relay.close()
    out.print(f"relay '{config.name}' is ready (no mail was sent)", markup=False)
