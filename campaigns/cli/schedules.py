"""`campaigns launch --at`, `unschedule`, `schedules …` and `beat`: runs that go out on time."""
from __future__ import annotations

import json
from typing import Optional

import typer

from campaigns.cli.common import ctx, handled, out

app = typer.Typer(no_args_is_help=True, help="Recurring runs (cron, in a time zone).")
#: top-level commands (`campaigns unschedule`, `beat`): the root registers them
commands = typer.Typer()


@commands.command("unschedule")
@handled
def unschedule(name: str) -> None:
    """Return a scheduled campaign to draft; nothing is sent."""
    from campaigns.scheduling import unschedule as do
    do(ctx().db, name)
    out.print(f"campaign '{name}' unscheduled (draft)")


@app.command("add")
@handled
def schedules_add(name: str, template: str = typer.Option(..., "--template"),
                  list_name: str = typer.Option(..., "--list"),
                  from_addr: str = typer.Option(..., "--from", help='"Name <addr>"'),
                  cron: str = typer.Option(..., "--cron", help='e.g. "0 9 * * mon"'),
                  timezone: str = typer.Option(..., "--timezone", help="e.g. Europe/Rome"),
                  reply_to: Optional[str] = typer.Option(None, "--reply-to"),
                  relay: Optional[str] = typer.Option(None, "--relay", "--pool", help="A relay or a pool"),
                  priority: str = typer.Option("bulk", "--priority"),
                  window: Optional[str] = typer.Option(None, "--window"),
                  data_url: Optional[str] = typer.Option(
                      None, "--data-url", help="JSON fetched at each run, as run.data")) -> None:
    """Each firing creates the run NAME-YYYY-MM-DD from the template and list as they are
    then, and launches it."""
    from campaigns.scheduling.cron import zone
    from campaigns.db import as_utc
    from campaigns.scheduling import ScheduleSpec, add_schedule
    c = ctx()
    schedule = add_schedule(c.db, c.settings, ScheduleSpec(
        name=name, template=template, list_name=list_name, from_addr=from_addr, cron=cron,
        timezone=timezone, reply_to=reply_to, relay=relay, priority=priority, window=window,
        data_url=data_url))
    first = as_utc(schedule.next_run_at).astimezone(zone(timezone))
    out.print(f"schedule '{name}' added: {cron} ({timezone}); first run "
              f"{first:%Y-%m-%d %H:%M %Z}", markup=False)


@app.command("list")
@handled
def schedules_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Schedules with their next run (in their own zone) and how many runs so far."""
    from campaigns.scheduling import list_schedules
    rows = list_schedules(ctx().db)
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        nxt = "paused" if r["paused"] else f"next {r['next_run']}"
        out.print(f"{r['name']}\t{r['cron']} ({r['timezone']})\t{nxt}\t{r['runs']} runs",
                  markup=False)


@app.command("pause")
@handled
def schedules_pause(name: str) -> None:
    from campaigns.scheduling import set_paused
    set_paused(ctx().db, name, True)
    out.print(f"schedule '{name}' paused")


@app.command("resume")
@handled
def schedules_resume(name: str) -> None:
    """Resume from the next firing after now (missed ones are not sent)."""
    from campaigns.scheduling import set_paused
    set_paused(ctx().db, name, False)
    out.print(f"schedule '{name}' resumed")


@app.command("remove")
@handled
def schedules_remove(name: str) -> None:
    from campaigns.scheduling import remove_schedule
    remove_schedule(ctx().db, name)
    out.print(f"schedule '{name}' removed (its campaigns stay)")


@app.command("runs")
@handled
def schedules_runs(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Past runs, newest first, with their campaign's counts."""
    from campaigns.scheduling import runs
    rows = runs(ctx().db, name)
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        counts = " ".join(f"{k}={v}" for k, v in (r.get("counts") or {}).items())
        out.print(f"#{r['number']}\t{r['scheduled_for']}\t{r['status']}\t{r['campaign'] or '-'}"
                  f"\t{counts}" + (f"\t{r['note']}" if r["note"] else ""), markup=False)


@commands.command("beat")
@handled
def beat(loglevel: str = typer.Option("INFO", "--loglevel")) -> None:
    r"""Start the scheduler: every `\[schedules] tick_s` it asks a worker to launch due
    scheduled and recurring runs. Safe to run twice (each run is launched once)."""
    import os
    import sys
    c = ctx()
    cmd = [sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel", loglevel,
           "--scheduler", "celery.beat:Scheduler"]   # in memory: the schedules live in the DB
    out.print(f"beat: a tick every {c.settings.schedules.tick_s:g} s", markup=False)
    sys.stdout.flush()
    # become beat (no child left behind when a service manager sends SIGTERM)
    os.execv(sys.executable, cmd)
