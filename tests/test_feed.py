"""Issue 15, the queue fed from the ledger: a launch writes every row but hands only a
window of tasks to the broker; the workers' feeder tops the queue up in id order as it
drains, so Redis holds a bounded number of tasks whatever the audience, and a pause, a
killed worker and a resume still send each recipient once."""
from __future__ import annotations

import threading
import time
from typing import Any

import redis

from tests.helpers import make_campaign, unseen_in_doubt

WINDOW = 40


def small_window(project: Any) -> None:
    project.sending["feed_window"] = WINDOW
    project.write_config()


def watch_queue(project: Any, stop: threading.Event, seen: list[int]) -> None:
    client = redis.Redis.from_url(project.redis_url)
    queue = project.ctx.settings.queue
    while not stop.is_set():
        seen.append(int(client.llen(queue)))
        time.sleep(0.02)


def test_a_campaign_larger_than_the_window_is_fed_from_the_ledger(project: Any) -> None:
    small_window(project)
    addresses = make_campaign(project, "big", 500)
    project.workers(2)
    seen: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_queue, args=(project, stop, seen), daemon=True)
    watcher.start()
    out = project.cli("launch", "big").stdout
    assert "500 recipients added (0 suppressed), 500 queued for sending" in out
    snap = project.wait_status("big", timeout_s=120)
    stop.set()
    watcher.join(5)
    assert snap["status"] == "finished" and snap["counts"]["sent"] == 500, snap
    assert sorted(project.sink.counts()) == sorted(addresses)
    assert set(project.sink.counts().values()) == {1}
    # never more than a window (and a batch of the feeder's share) waiting in the broker
    assert seen and max(seen) <= 2 * WINDOW, max(seen)


def test_killed_worker_pause_and_resume_with_a_small_window_send_each_once(
        project: Any) -> None:
    small_window(project)
    addresses = make_campaign(project, "fed", 300)
    project.sink.delay_s = 0.01
    group = project.workers(1)
    project.cli("launch", "fed")
    assert project.sink.wait_for(60, timeout_s=60)
    group.kill()
    for proc in group.procs:
        proc.wait()
    assert len(project.sink.received) < 300
    project.cli("pause", "fed")
    project.workers(2)
    time.sleep(1.5)
    paused_at = len(project.sink.received)
    time.sleep(1.5)
    assert len(project.sink.received) == paused_at < 300
    project.cli("resume", "fed")
    snap = project.wait_status("fed", timeout_s=120)
    assert snap["status"] == "finished", snap
    counts = project.sink.counts()
    assert max(counts.values()) == 1, "a recipient received two copies"
    assert snap["counts"]["sent"] + snap["counts"]["in_doubt"] == 300
    assert len(unseen_in_doubt(project, "fed")) <= 2     # in flight at the kill
    # an in_doubt row may have reached the sink (killed after the relay's answer, or before
    # the group commit wrote it)
    assert set(counts) <= set(addresses)
    assert snap["counts"]["sent"] <= len(counts) <= 300


def test_launch_hands_over_one_window_and_a_relaunch_adds_only_newcomers(project: Any) -> None:
    from campaigns import lifecycle

    small_window(project)
    make_campaign(project, "w", 100)
    published: list[int] = []
    ctx = project.ctx
    report = lifecycle.launch(ctx.db, ctx.settings, "w",
                              lambda ids, countdown, priority: published.extend(ids))
    assert report.added == 100 and report.queued == 100
    assert report.enqueued == WINDOW and len(published) == WINDOW == len(set(published))
    # no worker took anything: the campaign is not finished, and its rows are all there
    lifecycle.maintenance(ctx.db)
    assert project.status("w")["status"] == "sending"
    fed = lifecycle.feed(ctx.db, ctx.settings, lambda ids, c, p: published.extend(ids),
                         lambda priority: 0)
    assert fed == WINDOW and len(set(published)) == 2 * WINDOW
    fed = lifecycle.feed(ctx.db, ctx.settings, lambda ids, c, p: published.extend(ids),
                         lambda priority: WINDOW)       # the queue is full: nothing more
    assert fed == 0
    again = lifecycle.launch(ctx.db, ctx.settings, "w", lambda ids, c, p: None)
    assert again.relaunch and again.added == 0 and again.queued == 100


def test_status_only_reads(project: Any) -> None:
    """`campaigns status` (and --json) changes nothing: a campaign whose rows are all final
    is finished by the workers' upkeep, not by someone looking at it."""
    import json

    from sqlalchemy import update

    from campaigns import lifecycle
    from campaigns.models import Delivery

    make_campaign(project, "look", 5)
    ctx = project.ctx
    lifecycle.launch(ctx.db, ctx.settings, "look", lambda ids, c, p: None)
    with ctx.db.session() as s:       # as if a worker had sent them all
        s.execute(update(Delivery).values(status="sent"))
    for args in (("status", "look", "--json"), ("status", "look", "--once")):
        project.cli(*args)
    assert json.loads(project.cli("status", "look", "--json").stdout)["status"] == "sending"
    lifecycle.maintenance(ctx.db)
    assert json.loads(project.cli("status", "look", "--json").stdout)["status"] == "finished"
