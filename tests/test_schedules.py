"""Scheduled and recurring runs: cron with DST, exactly once, missed-run grace, data sources;
end to end with real beat and worker processes and an injected clock."""
from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from campaigns import lifecycle, scheduling
from campaigns.scheduling.cron import local_to_utc, next_firing, parse_at, parse_cron
from campaigns.db import as_utc
from campaigns.errors import InputError
from campaigns.models import Campaign, ScheduleRun
from tests.helpers import make_campaign, parse

ROME = ZoneInfo("Europe/Rome")
UTC = timezone.utc


def rome(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ROME)


# ------------------------------------------------------------------ cron and DST
def test_cron_fields_names_steps_and_clear_errors() -> None:
    c = parse_cron("*/15 9-17 * jan,dec mon-fri")
    assert c.minutes == (0, 15, 30, 45) and c.hours == tuple(range(9, 18))
    assert c.months == frozenset({1, 12}) and c.weekdays == frozenset(range(5))
    assert parse_cron("0 9 * * 0").weekdays == parse_cron("0 9 * * 7").weekdays == frozenset({6})
    for bad, words in [("0 9 * *", "expected 5 fields"), ("61 9 * * *", "minute: 61 is outside 0-59"),
                       ("0 9 * * funday", "day of week: 'funday' is not a number"),
                       ("0 17-9 * * *", "goes backwards")]:
        with pytest.raises(InputError) as err:
            parse_cron(bad)
        assert words in str(err.value) and "--cron" in str(err.value)


def test_monday_nine_in_rome_across_the_dst_change() -> None:
    cron = parse_cron("0 9 * * mon")
    first = next_firing(cron, rome("2027-03-24 12:00").astimezone(UTC), ROME)
    second = next_firing(cron, first, ROME)
    assert first == rome("2027-03-29 09:00").astimezone(UTC) == datetime(2027, 3, 29, 7, 0, tzinfo=UTC)
    assert second.astimezone(ROME).isoformat() == "2027-04-05T09:00:00+02:00"
    winter = next_firing(cron, rome("2026-11-27 12:00").astimezone(UTC), ROME)
    assert winter == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)       # 09:00 CET


def test_a_time_that_does_not_exist_runs_at_three_and_one_that_exists_twice_runs_once() -> None:
    cron = parse_cron("30 2 * * *")
    # 2027-03-28: 02:00 → 03:00 in Rome; 02:30 does not exist
    spring = [next_firing(cron, rome("2027-03-27 12:00").astimezone(UTC), ROME)]
    spring.append(next_firing(cron, spring[0], ROME))
    assert [t.astimezone(ROME).strftime("%m-%d %H:%M %Z") for t in spring] == \
        ["03-28 03:00 CEST", "03-29 02:30 CEST"]
    # 2026-10-25: 03:00 → 02:00; 02:30 exists twice: once, the first (CEST)
    autumn = [next_firing(cron, rome("2026-10-24 12:00").astimezone(UTC), ROME)]
    autumn.append(next_firing(cron, autumn[0], ROME))
    assert [t.astimezone(ROME).strftime("%m-%d %H:%M %Z") for t in autumn] == \
        ["10-25 02:30 CEST", "10-26 02:30 CET"]
    assert local_to_utc(datetime(2026, 10, 25, 2, 30), ROME) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert parse_at("2026-12-01 08:30", ROME) == datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
    with pytest.raises(InputError, match="--at"):
        parse_at("1 December", ROME)


# ------------------------------------------------------------------ the tick, in process
class Recorder:
    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self, ids: Any, countdown: Any = None, priority: str = "bulk") -> None:
        self.ids.extend(ids)


def _schedule(project: Any, name: str, cron: str, now: datetime, **kw: Any) -> None:
    make_campaign(project, f"{name}-src", n=3, prefix=name,
                  html="<p>Numero {{ run.number }} del {{ run.date }}"
                       "{% if run.data %}: {{ run.data.title }}{% endif %}</p>")
    scheduling.add_schedule(project.ctx.db, project.ctx.settings, scheduling.ScheduleSpec(
        name=name, template=f"{name}-src-tpl", list_name=f"{name}-src-list",
        from_addr="News <news@shop.test>", cron=cron, timezone="Europe/Rome", **kw), now=now)


def _runs(project: Any) -> list[tuple[str, str, str | None]]:
    with project.ctx.db.session() as s:
        rows = s.execute(select(ScheduleRun.scheduled_for, ScheduleRun.status, Campaign.name)
                         .outerjoin(Campaign, Campaign.id == ScheduleRun.campaign_id)
                         .order_by(ScheduleRun.scheduled_for)).all()
    return [(as_utc(t).astimezone(ROME).strftime("%m-%d %H:%M"), st, n) for t, st, n in rows]


def test_missed_runs_within_grace_go_late_older_ones_are_skipped(project: Any) -> None:
    project.sending["preflight_sample"] = 1
    project.write_config()
    start = rome("2027-01-04 08:00").astimezone(UTC)      # a Monday
    _schedule(project, "daily", "0 9 * * *", start)
    db, settings = project.ctx.db, project.ctx.settings    # grace: the default hour
    sent = Recorder()
    # down from Monday 08:00 until Thursday 09:40: Mon-Wed missed long ago, Thu 40 min late
    report = scheduling.tick(db, settings, sent, now=rome("2027-01-07 09:40").astimezone(UTC))
    assert report.launched == ["daily-2027-01-07"] and len(report.skipped) == 3
    assert _runs(project) == [("01-04 09:00", "skipped", None), ("01-05 09:00", "skipped", None),
                              ("01-06 09:00", "skipped", None),
                              ("01-07 09:00", "launched", "daily-2027-01-07")]
    assert len(sent.ids) == 3
    counts = lifecycle.counts(db, "daily-2027-01-07")
    assert counts["status"] == "sending" and "sent late: 40 min after its time" in counts["reason"]
    history = scheduling.runs(db, "daily")
    assert history[0]["number"] == 1 and history[0]["note"].startswith("sent late")
    assert "newer firing" in history[-1]["note"]
    # the machine is down over Friday's run for 2 hours: skipped, not sent
    report = scheduling.tick(db, settings, sent, now=rome("2027-01-08 11:00").astimezone(UTC))
    assert report.launched == [] and _runs(project)[-1] == ("01-08 09:00", "skipped", None)
    # ticking again changes nothing
    scheduling.tick(db, settings, sent, now=rome("2027-01-08 11:00").astimezone(UTC))
    assert len(_runs(project)) == 5 and len(sent.ids) == 3


def test_two_schedulers_ticking_at_once_launch_each_firing_once(project: Any) -> None:
    project.sending["preflight_sample"] = 1
    project.write_config()
    _schedule(project, "twice", "*/5 * * * *", rome("2027-02-01 08:58").astimezone(UTC))
    db, settings = project.ctx.db, project.ctx.settings
    sent = Recorder()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def tick_at(now: datetime) -> None:
        try:
            barrier.wait(5)
            scheduling.tick(db, settings, sent, now=now)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
    for minute in (0, 5, 10):
        now = rome(f"2027-02-01 09:{minute:02d}").astimezone(UTC) + timedelta(seconds=2)
        threads = [threading.Thread(target=tick_at, args=(now,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert [(t, st) for t, st, _ in _runs(project)] == [
        ("02-01 09:00", "launched"), ("02-01 09:05", "launched"), ("02-01 09:10", "launched")]
    assert len(sent.ids) == 3 * 3          # three runs of three recipients, each once


def test_the_data_source_is_read_at_run_time_and_a_failing_one_sends_nothing(
        project: Any, tmp_path: Path) -> None:
    project.sending["preflight_sample"] = 1
    project.write_config()
    state = {"ok": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"title": "Gli articoli della settimana"}).encode()
            self.send_response(200 if state["ok"] else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if state["ok"] else b"down")

        def log_message(self, *args: Any) -> None:
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/week.json"
        _schedule(project, "weekly", "0 9 * * mon", rome("2027-01-03 12:00").astimezone(UTC),
                  data_url=url)
        db, settings = project.ctx.db, project.ctx.settings
        sent = Recorder()
        scheduling.tick(db, settings, sent, now=rome("2027-01-04 09:00:05").astimezone(UTC))
        state["ok"] = False
        report = scheduling.tick(db, settings, sent, now=rome("2027-01-11 09:00:05").astimezone(UTC))
    finally:
        server.shutdown()
    assert report.failed == ["weekly"] and report.launched == []
    assert _runs(project) == [("01-04 09:00", "launched", "weekly-2027-01-04"),
                              ("01-11 09:00", "failed", None)]
    failed = scheduling.runs(db, "weekly")[0]
    assert "data source" in failed["note"] and "503" in failed["note"] and "nothing sent" in failed["note"]
    assert len(sent.ids) == 3
    # the first run renders run.number, run.date and run.data
    from campaigns.content.compose import compose, runtime_by_name
    with db.session() as s:
        rt = runtime_by_name(s, "weekly-2027-01-04")
    data, _ = compose(rt, settings, delivery_id=None, address="weekly0@example.test",
                      attributes={"first_name": "Nome0", "code": "C1"}, source_dir=None)
    body = parse(data).get_body(("html",)).get_content()
    assert "Numero 1 del 2027-01-04: Gli articoli della settimana" in body


# ------------------------------------------------------------------ processes: beat + workers
@pytest.fixture
def beats(project: Any) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(n: int) -> None:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-m", "workers.cli", "beat",
                                           "--loglevel", "WARNING"], env=project.env,
                                          cwd=project.root, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
    yield start
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def _wait(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def test_a_one_off_launch_fires_on_time_and_unschedule_sends_nothing(project: Any, beats: Any) -> None:
    project.extra_toml = "[schedules]\ntick_s = 0.5\n"
    project.write_config()
    make_campaign(project, "circolare", n=5)
    make_campaign(project, "ritirata", n=5, prefix="other")
    project.workers(1)
    beats(1)
    at = datetime.now(ROME) + timedelta(seconds=8)   # room for three (in-process) CLI calls on a busy machine
    at_text = at.strftime("%Y-%m-%d %H:%M:%S")
    out = project.cli("launch", "circolare", "--at", at_text, "--timezone", "Europe/Rome").stdout
    assert "scheduled for" in out
    project.cli("launch", "ritirata", "--at", at_text, "--timezone", "Europe/Rome")
    assert project.status("circolare")["status"] == "scheduled"
    project.cli("unschedule", "ritirata")
    assert datetime.now(ROME) < at, "the set-up took until the scheduled time; nothing checked"
    snap = project.wait_status("circolare", timeout_s=60)
    assert snap["status"] == "finished" and snap["counts"]["sent"] == 5
    with project.ctx.db.session() as s:
        launched_at = s.scalar(select(Campaign.launched_at).where(Campaign.name == "circolare"))
    delay = (as_utc(launched_at) - at.astimezone(UTC).replace(microsecond=0)).total_seconds()
    # never early; late only by a few ticks (a loaded CI machine has taken 8 s)
    assert 0 <= delay < 20, delay
    time.sleep(2)
    assert project.status("ritirata")["status"] == "draft"
    assert not any(r.rcpt.startswith("other") for r in project.sink.received)


def test_a_simulated_week_with_two_beats_one_run_per_firing_across_dst(
        project: Any, beats: Any, tmp_path: Path) -> None:
    """Europe/Rome, 02:30 every day from Wednesday 2027-03-24 to Wednesday 2027-03-31: the
    clock of every process jumps 2 h at a time, and after a night's firing waits for its run
    and ~0.6 s more at that hour; Sunday 03-28's 02:30 does not exist and runs at 03:00. Two
    beat processes tick twice a second each."""
    clock = tmp_path / "clock"
    start = rome("2027-03-24 12:00").timestamp()
    offset = start - time.time()
    clock.write_text(str(offset))
    project.extra_toml = "[schedules]\ntick_s = 0.25\ngrace_s = 14400\n"
    project.extra_env = {"CAMPAIGNS_CLOCK_FILE": str(clock)}
    project.sending["preflight_sample"] = 1
    project.write_config()
    now = datetime.fromtimestamp(start, UTC)
    _schedule(project, "nightly", "30 2 * * *", now)
    project.workers(2)
    beats(2)
    # the clock moves only once beat's ticks reach a worker (their start-up under load took
    # longer than the 4 h of grace, ~1.2 s here, and the first night was skipped)
    import redis

    from campaigns.delivery.planning import LAST_TASK_KEY
    heard = redis.Redis.from_url(project.redis_url)
    assert _wait(lambda: heard.get(LAST_TASK_KEY) is not None, 60), "no tick reached a worker"
    firings = [rome(f"2027-03-{d} 02:30").timestamp() for d in (25, 26, 27, 29, 30, 31)]
    firings.append(rome("2027-03-28 03:00").timestamp())
    for _ in range(7 * 12):                      # 7 days in 2-hour steps
        offset += 7200
        clock.write_text(str(offset))
        due = sum(1 for f in firings if f <= time.time() + offset)
        if due > len(_runs(project)):
            # a firing passed: its run before the clock moves on (4 h of grace: two steps),
            # then both beats tick on at this hour (nothing may run twice)
            assert _wait(lambda: len(_runs(project)) >= due, 30), (due, _runs(project))
            time.sleep(0.6)
        else:
            time.sleep(0.05)
    assert _wait(lambda: len(_runs(project)) >= 7, 20)
    time.sleep(2)
    got = _runs(project)
    assert [(t, st) for t, st, _ in got] == [
        ("03-25 02:30", "launched"), ("03-26 02:30", "launched"), ("03-27 02:30", "launched"),
        ("03-28 03:00", "launched"), ("03-29 02:30", "launched"), ("03-30 02:30", "launched"),
        ("03-31 02:30", "launched")]
    names = [n for _, _, n in got]
    assert names == [f"nightly-2027-03-{d}" for d in range(25, 32)]
    for name in names:
        assert project.wait_status(name, timeout_s=30)["counts"]["sent"] == 3
    # each recipient got exactly one copy per run: 7 runs × 3 recipients
    assert len(project.sink.received) == 21
    assert max(project.sink.counts().values()) == 7


def test_each_run_takes_the_list_and_suppressions_as_they_are_at_run_time(project: Any) -> None:
    from campaigns.ledger import suppressions
    from campaigns.audience.contacts import import_contacts
    from tests.helpers import write_csv
    project.sending["preflight_sample"] = 1
    project.write_config()
    _schedule(project, "lista", "0 9 * * *", rome("2027-01-03 12:00").astimezone(UTC))
    db, settings = project.ctx.db, project.ctx.settings
    # after the schedule was made: one recipient joins the list, one is suppressed
    import_contacts(db, write_csv(project.root / "late.csv", [("late@example.test", "L", "C")]),
                    "lista-src-list")
    suppressions.add(db, "lista1@example.test", "unsubscribed")
    scheduling.tick(db, settings, Recorder(), now=rome("2027-01-04 09:00:01").astimezone(UTC))
    from tests.helpers import ledger
    got = ledger(project, "lista-2027-01-04")
    assert sorted(got) == ["late@example.test", "lista0@example.test", "lista1@example.test",
                           "lista2@example.test"]
    assert got["lista1@example.test"][0] == "suppressed"
    assert got["late@example.test"][0] == "queued"


def test_a_cancelled_scheduled_campaign_is_never_launched(project: Any) -> None:
    make_campaign(project, "annullata", n=2)
    db, settings = project.ctx.db, project.ctx.settings
    now = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
    scheduling.schedule_once(db, "annullata", "2027-01-04 10:00", "Europe/Rome", now=now)
    assert lifecycle.counts(db, "annullata")["status"] == "scheduled"
    lifecycle.cancel(db, "annullata")
    sent = Recorder()
    report = scheduling.tick(db, settings, sent, now=datetime(2027, 1, 4, 9, 1, tzinfo=UTC))
    assert report.launched == [] and sent.ids == []
    assert lifecycle.counts(db, "annullata")["status"] == "cancelled"
    with pytest.raises(InputError, match="in the past"):
        make_campaign(project, "tardi", n=1)
        scheduling.schedule_once(db, "tardi", "2027-01-04 08:00", "Europe/Rome", now=now)
