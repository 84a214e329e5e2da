"""Campaign commands of the `campaigns` CLI: create, launch, pause, resume, cancel, status,
test-send, worker, demo."""
from __future__ import annotations

import json
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, List, Optional

import typer

# campaigns.lifecycle (SQLAlchemy) and rich.progress are imported by the commands that use
# them, so that `campaigns --help` starts without them
from campaigns.cli.common import ctx, enqueue_fn, err, handled, out

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress

FINAL = ("finished", "cancelled")
#: statuses in which a campaign is meant to be sending (status explains when it does not)
ACTIVE = ("sending", "waiting")

#: top-level commands (`campaigns create`, `launch`, `status`, …`): the root registers them
commands = typer.Typer()


@commands.command("create")
@handled
def create(name: str, list_name: str = typer.Option(..., "--list"),
           template: str = typer.Option(..., "--template"),
           from_addr: str = typer.Option(..., "--from", help='"Name <addr>"'),
           reply_to: Optional[str] = typer.Option(None, "--reply-to"),
           relay: Optional[str] = typer.Option(None, "--relay", "--pool", help="A relay or a pool name"),
           attachment_column: Optional[str] = typer.Option(
               None, "--attachment-column", help="CSV column with a file path per recipient"),
           priority: str = typer.Option("bulk", "--priority", help="bulk | transactional"),
           window: Optional[str] = typer.Option(None, "--window",
                                                help='Send only in e.g. "mon-fri 09:00-18:00"'),
           timezone: Optional[str] = typer.Option(None, "--timezone",
                                                  help="The window's zone, e.g. Europe/Rome")) -> None:
    """Create a draft campaign."""
    from campaigns import lifecycle
    c = ctx()
    campaign = lifecycle.create_campaign(c.db, c.settings, name=name, list_name=list_name,
                                         template=template, from_addr=from_addr,
                                         reply_to=reply_to, relay=relay,
                                         attachment_column=attachment_column, priority=priority,
                                         window=window, timezone=timezone)
    out.print(f"campaign '{campaign.name}' created (draft, relay '{campaign.relay}')")


@commands.command("list")
@handled
def list_() -> None:
    """Campaigns with their status."""
    from campaigns.ledger.reads import list_campaigns   # a read: no more than it needs
    for row in list_campaigns(ctx().db):
        out.print(f"{row['name']}\t{row['status']}\tlist={row['list']}\ttemplate={row['template']}")


@commands.command("launch")
@handled
def launch(name: str,
           at: Optional[str] = typer.Option(None, "--at", help='Launch later: "2026-12-01 08:30"'),
           timezone: Optional[str] = typer.Option(None, "--timezone",
                                                  help="The zone of --at, e.g. Europe/Rome")) -> None:
    """Preflight, expand the list into the ledger and queue one task per recipient; with
    --at, schedule the launch (`campaigns beat` must run)."""
    from campaigns import lifecycle
    c = ctx()
    if at is not None:
        from campaigns.scheduling import schedule_once
        when = schedule_once(c.db, name, at, timezone)
        out.print(f"campaign '{name}' scheduled for {when:%Y-%m-%d %H:%M} UTC"
                  + (f" ({at} {timezone})" if timezone else ""), markup=False)
        return
    report = lifecycle.launch(c.db, c.settings, name, enqueue_fn())
    for warning in report.warnings:
        err.print(f"warning: {warning}")
    added = f"{report.added} recipients added ({report.suppressed} suppressed)"
    if not report.relaunch:
        out.print(f"campaign '{name}' launched: {added}, {report.queued} queued for sending")
        return
    # nothing is sent twice: the queued rows were published again, claims keep them single
    out.print(f"campaign '{name}' already {report.was}: {report.queued} queued"
              + (f"; {added}" if report.added else ""))


@commands.command("pause")
@handled
def pause(name: str) -> None:
    """Stop new sends (running ones finish)."""
    from campaigns import lifecycle
    lifecycle.pause(ctx().db, name)
    out.print(f"campaign '{name}' paused")


@commands.command("resume")
@handled
def resume(name: str) -> None:
    """Continue a paused campaign with its unsent recipients only."""
    from campaigns import lifecycle
    c = ctx()
    n = lifecycle.resume(c.db, c.settings, name, enqueue_fn())
    out.print(f"campaign '{name}' resumed: {n} unsent recipients queued")


@commands.command("cancel")
@handled
def cancel(name: str) -> None:
    """Cancel: unsent recipients become `cancelled`."""
    from campaigns import lifecycle
    n = lifecycle.cancel(ctx().db, name)
    out.print(f"campaign '{name}' cancelled ({n} unsent recipients cancelled)")


def _done(c: dict[str, Any]) -> int:
    counts = c["counts"]
    return int(c["total"] - counts["queued"] - counts["sending"] - counts["deferred"])


@commands.command("status")
@handled
def status(name: str, as_json: bool = typer.Option(False, "--json"),
           once: bool = typer.Option(False, "--once", help="Print once, do not follow")) -> None:
    """Progress from the ledger, and why a campaign is slow or stuck (no worker taking
    tasks, an open breaker, parked messages, the binding limit or throttle, a window);
    follows until the campaign ends or Ctrl-C. A read: the workers' upkeep finishes
    campaigns and expires leases, not this."""
    from campaigns import lifecycle
    c = ctx()
    snapshot = lifecycle.counts(c.db, name)
    why = _why(c, name) if snapshot["status"] in ACTIVE else []
    if as_json:
        reason = [snapshot["reason"]] if snapshot["reason"] and snapshot["status"] not in FINAL else []
        print(json.dumps({k: snapshot[k] for k in ("campaign", "status", "total", "counts")}
                         | ({"reason": snapshot["reason"]} if snapshot["reason"] else {})
                         | {"why": reason + why}))
        return
    if once or snapshot["status"] in FINAL + ("draft",):
        _print_counts(snapshot, why)
        return
    for line in why:
        out.print(f"  why: {line}", markup=False)
    follow(c.db, name)


def _why(c: Any, name: str) -> list[str]:
    """campaigns.delivery.planning.explain with this process's Redis; what can be said without it."""
    import redis

    from campaigns.delivery.planning import explain
    if c.running_redis() is None:
        return ["Redis is not running: no worker is taking tasks"]
    try:
        return explain(c.pacer, c.breaker, name)
    except redis.RedisError as e:   # the counts are shown whatever Redis does
        return [f"Redis is not reachable ({e}): no worker can take a task"]


def _print_counts(snapshot: dict[str, Any], why: list[str] | None = None) -> None:
    counts = snapshot["counts"]
    out.print(f"campaign '{snapshot['campaign']}': {snapshot['status']}"
              + (f" ({snapshot['reason']})" if snapshot["reason"] else ""), markup=False)
    out.print("  " + "  ".join(f"{k}={v}" for k, v in counts.items() if v) or "  no recipients")
    for line in why or ():
        out.print(f"  why: {line}", markup=False)


def _rate_eta(samples: deque[tuple[float, int]], total: int) -> tuple[float, str]:
    """Messages/s over the samples and the time left at that rate."""
    (t0, d0), (t1, d1) = samples[0], samples[-1]
    rate = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
    if d1 >= total:
        return rate, "0 s"
    if rate <= 0:
        return rate, "—"
    left = (total - d1) / rate
    return rate, f"{left:.0f} s" if left < 120 else f"{left / 60:.0f} min" if left < 7200 else f"{left / 3600:.1f} h"


def _progress() -> Progress:
    """Name, bar, done/total and elapsed time on one line; each task's `detail` below it as
    plain text that wraps at the terminal's width, so nothing is cut at 80 columns."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class BarThenDetail(Progress):
        def get_renderables(self) -> Iterable[RenderableType]:
            yield from super().get_renderables()
            for task in self.tasks:
                yield Text(str(task.fields.get("detail", "")), no_wrap=False, overflow="fold")

    return BarThenDetail(TextColumn("[bold]{task.description}"), BarColumn(bar_width=20),
                         TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                         console=out, transient=False)


def follow(db: Any, name: str, *, until_final: bool = True,
           timeout_s: float | None = None) -> dict[str, Any]:
    """A live progress bar until the campaign is finished/cancelled (or Ctrl-C, or the
    timeout)."""
    from campaigns import lifecycle
    deadline = time.monotonic() + timeout_s if timeout_s else None
    snapshot = lifecycle.counts(db, name)
    samples: deque[tuple[float, int]] = deque(maxlen=20)   # ~10 s of (time, done)
    try:
        with _progress() as progress:
            bar = progress.add_task(name, total=snapshot["total"] or 1, detail="")
            while True:
                snapshot = lifecycle.counts(db, name)
                k, now = snapshot["counts"], time.monotonic()
                samples.append((now, _done(snapshot)))
                rate, eta = _rate_eta(samples, snapshot["total"])
                detail = (f"sent {k['sent']} deferred {k['deferred']} bounced {k['bounced']} "
                          f"failed {k['failed']} in_doubt {k['in_doubt']} {rate:.0f}/s "
                          f"ETA {eta} [{snapshot['status']}]")
                if snapshot["reason"]:
                    detail += f" {snapshot['reason']}"
                progress.update(bar, total=snapshot["total"] or 1, completed=_done(snapshot),
                                detail=detail)
                if snapshot["status"] in FINAL or (snapshot["status"] == "paused" and not until_final):
                    break
                if deadline and time.monotonic() > deadline:
                    err.print(f"gave up following after {timeout_s:.0f} s")
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    _print_counts(snapshot)
    return snapshot


@commands.command("test-send")
@handled
def test_send(name: str, to: List[str] = typer.Option(..., "--to",
                                                     help="Repeat, or separate with commas"),
              contact: Optional[str] = typer.Option(None, "--contact",
                                                    help="Personalise as this contact")) -> None:
    """Send rendered copies to the given addresses; the ledger is not touched."""
    from campaigns.delivery.testsend import send_test_copies
    c = ctx()
    for line in send_test_copies(c.db, c.settings, name, to, contact):
        out.print(line, markup=False)


@commands.command("worker")
@handled
def worker(concurrency: int = typer.Option(2, "--concurrency", "-c",
                                           help="Worker processes (one per core is best)"),
           pool: str = typer.Option("solo", "--pool", help="solo (N processes) or prefork"),
           threads: int = typer.Option(4, "--threads", min=1, max=64,
                                       help="messages in flight per process (a thread and "
                                            "an SMTP connection each)"),
           loglevel: str = typer.Option("INFO", "--loglevel")) -> None:
    """Start Celery workers with this project's settings (Ctrl-C stops them). A worker
    process that dies is started again and logged; after 5 restarts in a minute this exits
    with 1 (for systemd's Restart=on-failure)."""
    import signal as sig

    from campaigns.workerproc import WorkerGroup
    c = ctx()
    if pool == "prefork":
        group = WorkerGroup(1, queue=c.settings.worker_queues, pool="prefork", concurrency=concurrency,
                            loglevel=loglevel, quiet=False)
    else:
        group = WorkerGroup(concurrency, queue=c.settings.worker_queues, loglevel=loglevel,
                            quiet=False, pool="threads" if threads > 1 else "solo",
                            concurrency=threads)
    group.start()
    out.print(f"{len(group.procs)} worker process(es) started; Ctrl-C to stop")
    sig.signal(sig.SIGTERM, _interrupt)  # a service manager's stop = Ctrl-C: warm shutdown
    try:
        code = group.supervise(_log)
    except KeyboardInterrupt:
        group.stop()
        return
    raise typer.Exit(code)


def _log(line: str) -> None:
    err.print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}", markup=False)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@commands.command("demo")
@handled
def demo(count: int = typer.Option(2000, "--count"),
         workers: int = typer.Option(2, "--workers")) -> None:
    """Send a real campaign end to end on embedded defaults (SQLite, embedded Redis, a local
    SMTP sink); prints the final counts and where the received messages are."""
    from campaigns.cli.demo import run_demo
    raise typer.Exit(run_demo(count=count, workers=workers, follow=follow))


@commands.command("db-upgrade")
@handled
def db_upgrade() -> None:
    """Create or upgrade the database schema (every command also does this)."""
    ctx()
    out.print("database schema is up to date")
