"""The `campaigns` command. Enqueueing needs the Celery layer, which hands its `enqueue`
function in through `set_enqueue` (see workers/cli.py), so this module imports no Celery."""
from __future__ import annotations

import json
import signal
import sys
import time
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar

import typer
from rich.markup import escape
from rich.console import Console

from campaigns.errors import CampaignsError

if TYPE_CHECKING:   # imported when a command runs: --help needs no SQLAlchemy nor Redis
    from campaigns.context import Context

F = TypeVar("F", bound=Callable[..., Any])
Enqueue = Callable[[Sequence[int], Optional[float], str], None]

# show_locals off: a traceback must never print a frame's password or API key
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Queued bulk e-mail: audience, templates, campaigns, a delivery ledger.")
contacts_app = typer.Typer(no_args_is_help=True, help="Import and inspect contacts and lists.")
supp_app = typer.Typer(no_args_is_help=True, help="Addresses that must never be mailed.")
templates_app = typer.Typer(no_args_is_help=True, help="Message templates (Jinja2, sandboxed).")
relays_app = typer.Typer(no_args_is_help=True, help="Configured relays.")
redis_app = typer.Typer(no_args_is_help=True, help="The embedded Redis (when no CAMPAIGNS_REDIS_URL).")
for sub, name in ((contacts_app, "contacts"), (supp_app, "suppressions"),
                  (templates_app, "templates"), (relays_app, "relays"), (redis_app, "redis")):
    app.add_typer(sub, name=name)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_enqueue_factory: Callable[[], Enqueue] | None = None


def set_enqueue(factory: Callable[[], Enqueue]) -> None:
    global _enqueue_factory
    _enqueue_factory = factory


def enqueue_fn() -> Enqueue:
    if _enqueue_factory is None:
        raise CampaignsError("no task queue configured (run through the `campaigns` command)")
    return _enqueue_factory()


def handled(fn: F) -> F:
    """Print our errors as one clear line on stderr and exit 1; never a traceback."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CampaignsError as e:
            # the message may hold "[AUTHENTICATIONFAILED]" and the like: not markup
            err.print(f"[red]error:[/red] {escape(str(e))}", markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]


def ctx() -> Context:
    from campaigns.context import open_context
    return open_context()


# ---------------------------------------------------------------- contacts and suppressions
@contacts_app.command("import")
@handled
def contacts_import(file: Path, list_name: str = typer.Option(..., "--list", help="List name"),
                    check_dns: bool = typer.Option(False, "--check-dns",
                                                   help="Also check the domains accept mail")) -> None:
    """Import a CSV (header row; an `email` column; every other column is an attribute)."""
    from campaigns.audience import import_contacts
    report = import_contacts(ctx().db, file, list_name, check_dns=check_dns)
    for row_error in report.errors:
        err.print(str(row_error), soft_wrap=True)
    out.print(f"{report.file} → list '{report.list_name}': {report.imported} imported, "
              f"{report.updated} updated, {report.unchanged} unchanged, "
              f"{len(report.errors)} invalid, {report.duplicates} duplicate")
    for warning in report.warnings:   # attributes changed under a campaign about to send
        err.print(f"warning: {warning}", markup=False)


@contacts_app.command("lists")
@handled
def contacts_lists() -> None:
    """Lists with their member counts."""
    from sqlalchemy import func, select

    from campaigns.models import ContactList, ListMember
    with ctx().db.session() as s:
        rows = s.execute(select(ContactList.name, func.count(ListMember.contact_id))
                         .outerjoin(ListMember, ListMember.list_id == ContactList.id)
                         .group_by(ContactList.name).order_by(ContactList.name)).all()
    for name, n in rows:
        out.print(f"{name}\t{n}")


@supp_app.command("add")
@handled
def suppressions_add(address: str, reason: str = typer.Option("manual", help="Why"),
                     scope: str = typer.Option("all", help="what it stops: all (every message), "
                                               "bulk (bulk campaigns), stream:NAME, list:NAME")
                     ) -> None:
    """Never mail ADDRESS again in SCOPE (queued mail to it included)."""
    from campaigns import suppressions
    added = suppressions.add(ctx().db, address, reason, scope=scope)
    out.print("suppressed" if added else "already suppressed")


@supp_app.command("remove")
@handled
def suppressions_remove(address: str, scope: Optional[str] = typer.Option(
        None, help="lift only this scope (default: every scope)")) -> None:
    """Lift the suppression of ADDRESS: it may be mailed again."""
    from campaigns import suppressions
    removed = suppressions.remove(ctx().db, address, scope)
    out.print("removed" if removed else "not suppressed")
    if not removed:
        raise typer.Exit(1)


@supp_app.command("list")
@handled
def suppressions_list() -> None:
    """Every suppression: address, scope, source, reason, when."""
    from campaigns import suppressions
    for s in suppressions.list_all(ctx().db):
        out.print(f"{s.address}\t{s.scope}\t{s.source}\t{s.reason}\t"
                  f"{s.created_at:%Y-%m-%d %H:%M}", markup=False)


@supp_app.command("import")
@handled
def suppressions_import(file: Path) -> None:
    """Suppress every address of a CSV file with an `email` column (optional `reason`,
    `source`, `category`, `scope`: what `export` writes; scope defaults to all). Bad rows are
    listed; the rest imported."""
    from campaigns import suppressions
    report = suppressions.import_csv(ctx().db, file)
    for err in report.errors:
        out.print(f"error: {err}", markup=False)
    out.print(f"{file}: {report.added} suppressed, {report.already} already suppressed, "
              f"{len(report.errors)} rows with errors", markup=False)
    if report.errors:
        raise typer.Exit(1)


@supp_app.command("export")
@handled
def suppressions_export(file: Optional[Path] = typer.Argument(None, help="default: stdout")) -> None:
    """Every suppression with its cause (source, category, delivery, bounce report) and
    scope as CSV.

    A cell starting with = + - @, a tab or a carriage return gets a leading single quote, so
    a spreadsheet shows it as text instead of running it as a formula; `suppressions import`
    removes that quote."""
    import sys

    from campaigns import suppressions
    if file is None:
        suppressions.export_csv(ctx().db, sys.stdout)
        return
    with file.open("w", newline="", encoding="utf-8") as fh:
        count = suppressions.export_csv(ctx().db, fh)
    out.print(f"{count} suppressions written to {file}", markup=False)


# ---------------------------------------------------------------- templates
@templates_app.command("add")
@handled
def templates_add(name: str, subject: str = typer.Option(..., "--subject"),
                  html: Path = typer.Option(..., "--html"),
                  text: Optional[Path] = typer.Option(None, "--text"),
                  replace: bool = typer.Option(False, "--replace")) -> None:
    """Store a template; the text part is derived from the HTML when --text is not given."""
    from campaigns.templates import add_template
    t = add_template(ctx().db, name, subject, html, text, replace=replace)
    out.print(f"template '{t.name}' stored" + (" (text part generated from the HTML)"
                                                  if t.text_generated else ""))


@templates_app.command("list")
@handled
def templates_list() -> None:
    """Every template: name and subject."""
    from campaigns.templates import list_templates
    for t in list_templates(ctx().db):
        out.print(f"{t['name']}\t{t['subject']}")


@templates_app.command("preview")
@handled
def templates_preview(name: str, contact: str = typer.Option(..., "--contact"),
                      campaign: str = typer.Option("preview", "--campaign",
                                                   help="campaign.name in the preview")) -> None:
    """Print the message as rendered for one contact."""
    from campaigns.compose import compile_stored, contact_row, unsubscribe_url
    from campaigns.lifecycle import get_template
    from campaigns.rendering import build_context
    c = ctx()
    with c.db.session() as s:
        template = get_template(s, name)
        email, attributes, _ = contact_row(s, contact)
    url = unsubscribe_url(c.settings, None, "sender@example.invalid")
    rendered = compile_stored(template).render(build_context(
        email=email, attributes=attributes, campaign_name=campaign, unsubscribe_url=url))
    out.print(f"Subject: {rendered.subject}\n\n--- text ---\n{rendered.text}\n\n--- html ---\n"
              f"{rendered.html}", markup=False)


# ---------------------------------------------------------------- relays and redis
@relays_app.command("list")
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


def redis_if_running(settings: Any) -> Any:
    """A client of the configured Redis, or of the embedded one when it runs (None when it
    does not: never start one just to look)."""
    import redis

    from campaigns import embedded_redis
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    if embedded_redis.is_running(settings.data_dir):
        return redis.Redis(unix_socket_path=str(embedded_redis.socket_path(settings.data_dir)),
                           socket_timeout=2)
    return None


def _breaker_states(settings: Any) -> dict[str, str]:
    """Each relay's circuit breaker, as the fleet shares it in Redis ({} when unreachable)."""
    try:
        from campaigns.pools import Breaker
        client = redis_if_running(settings)
        if client is None:
            return {}
        breaker = Breaker(client, settings.breaker)
        return {name: breaker.state(name).describe() for name in settings.relays}
    except Exception:  # noqa: BLE001 - listing relays must work without Redis
        return {}


@relays_app.command("check")
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


@redis_app.command("stop")
@handled
def redis_stop() -> None:
    """Stop the embedded Redis of this data dir."""
    from campaigns import embedded_redis
    c = ctx()
    stopped = embedded_redis.stop(c.settings.data_dir)
    out.print("stopped" if stopped else "not running")


@redis_app.command("status")
@handled
def redis_status() -> None:
    from campaigns import embedded_redis
    c = ctx()
    if not c.embedded_redis:
        out.print("external Redis (CAMPAIGNS_REDIS_URL)")
    else:
        running = embedded_redis.is_running(c.settings.data_dir)
        out.print(f"embedded Redis {'running' if running else 'not running'} at "
                  f"{embedded_redis.socket_path(c.settings.data_dir)}")


from campaigns import cli_campaigns  # noqa: E402,F401  (registers the campaign commands)


from campaigns import cli_bounces  # noqa: E402,F401  (registers the bounce commands)
from campaigns import cli_rates  # noqa: E402,F401  (registers rates and plan)
from campaigns import cli_schedules  # noqa: E402,F401  (registers schedules, beat)
from campaigns import cli_api  # noqa: E402,F401  (registers api)
