"""Expansion and the fed queue: launching a campaign to a large audience, end to end.

On PostgreSQL (its own database `campaigns_bench_expand` on 127.0.0.1:5432, created and
dropped) or SQLite (a fresh file), for an audience of N contacts:

1. `campaigns contacts import` of N contacts (bench/import_contacts.py's CSV: ~1 % repeated
   addresses, 0.1 % invalid, so the list holds ~0.989 N), timed;
2. `campaigns launch` of a campaign to the whole list, with two `-P solo` worker processes
   already running and warm (a 50-recipient campaign sent first) and a minimal asyncio sink
   in its own process (this file, `--serve-sink`: bench/fastsink.py plus the wall-clock time
   of every accepted message, reported per 0.2 s): time from the launch call (the CLI's
   process start, included) to the first message accepted by the sink, and to the call's
   return (every ledger row written); `SELECT count(*)` of the campaign's rows polled;
3. Redis (db 11, flushed first; the server is shared, so deltas): `used_memory` sampled every
   0.25 s from just before the launch to the cancel, `used_memory_peak` before and after,
   and the send queue's length (LLEN of settings.queue with kombu's priority lists), which
   should stay around [sending] feed_window;
4. sending for `--send-s` seconds after the launch returned (rate at the sink), then
   `campaigns cancel`, timed, and the messages the sink still accepted after it returned.

While the launch runs, the database's active statements are sampled every 0.1 s
(pg_stat_activity: a poor man's profile of where the launch spends its time). Run:

    .venv/bin/python bench/expansion.py [--contacts 1000000] [--db postgresql|sqlite]
                                        [--send-s 45]

Prints the figures; writes bench/results/expansion-<db>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_DB = "campaigns_bench_expand"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
CLI = str(Path(sys.executable).with_name("campaigns"))


# --- the sink (its own process) ---------------------------------------------------------

def serve_sink() -> None:
    """fastsink's protocol; prints `listening 127.0.0.1:PORT`, `first <epoch>` at the first
    accepted message (again for the next one after a SIGUSR1), then `n <epoch> <accepted so far>` every 0.2 s when it changed."""
    accepted = 0
    first: list[float] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        writer.write(b"220 sink ESMTP\r\n")
        replies = {b"EHLO": b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                   b"HELO": b"250 sink\r\n", b"MAIL": b"250 2.1.0 Ok\r\n",
                   b"RCPT": b"250 2.1.5 Ok\r\n", b"RSET": b"250 2.0.0 Ok\r\n",
                   b"NOOP": b"250 2.0.0 Ok\r\n"}
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"DATA":
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    await reader.readuntil(b"\r\n.\r\n")
                    accepted += 1
                    if not first:
                        first.append(time.time())
                        print(f"first {first[0]:.6f}", flush=True)
                    writer.write(b"250 2.0.0 Ok: queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    writer.write(replies.get(verb, b"502 5.5.2 Error\r\n"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def report(stop: asyncio.Event) -> None:
        last = -1
        while not stop.is_set():
            await asyncio.sleep(0.2)
            if accepted != last:
                last = accepted
                print(f"n {time.time():.6f} {accepted}", flush=True)

    async def main() -> None:
        server = await asyncio.start_server(session, "127.0.0.1", 0, limit=1 << 20)
        print(f"listening 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, first.clear)
        task = asyncio.create_task(report(stop))
        await stop.wait()
        await task
        server.close()
        print(f"n {time.time():.6f} {accepted}", flush=True)

    asyncio.run(main())


class Sink:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-sink"],
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline().rsplit(":", 1)[1])
        self.first: float | None = None
        self.samples: list[tuple[float, int]] = [(time.time(), 0)]
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, *rest = line.split()
            if kind == "first":
                self.first = float(rest[0])
            elif kind == "n":
                self.samples.append((float(rest[0]), int(rest[1])))

    def mark(self) -> None:
        self.first = None
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)

    def count(self) -> int:
        return self.samples[-1][1]

    def count_at(self, when: float) -> int:
        """Messages accepted by `when` (epoch), from the 0.2 s reports."""
        n = 0
        for t, k in self.samples:
            if t > when:
                break
            n = k
        return n

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        self.thread.join(5)


# --- sampling during the run ------------------------------------------------------------

class Sampler(threading.Thread):
    """Every `every` s: Redis used_memory and the send queue's length; every `count_every` s
    the campaign's ledger rows (count(*)); with `activity`, the database's active statements
    every 0.1 s."""

    def __init__(self, rds, queue: str, engine, campaign_id: int,  # type: ignore[no-untyped-def]
                 activity: bool, every: float = 0.25, count_every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.rds, self.engine, self.campaign_id, self.activity = rds, engine, campaign_id, activity
        self.keys = [queue] + [f"{queue}\x06\x16{step}" for step in (3, 6, 9)]
        self.every, self.count_every = every, count_every
        self.stop_flag = threading.Event()
        self.redis: list[tuple[float, int, int]] = []      # (epoch, used_memory, queue length)
        self.rows: list[tuple[float, int]] = []
        self.statements: Counter[str] = Counter()
        self.running: dict[str, float] = {}     # the longest a sampled statement had run (s)
        self.waits: defaultdict[str, Counter[str]] = defaultdict(Counter)  # wait events seen
        self.activity_samples = 0
        self.count_rows = True

    def run(self) -> None:
        from sqlalchemy import text
        next_count = next_redis = 0.0
        with self.engine.connect() as conn:
            while not self.stop_flag.is_set():
                now = time.time()
                if now >= next_redis:
                    next_redis = now + self.every
                    pipe = self.rds.pipeline(transaction=False)
                    pipe.info("memory")
                    for key in self.keys:
                        pipe.llen(key)
                    info, *lengths = pipe.execute()
                    self.redis.append((now, int(info["used_memory"]), sum(lengths)))
                if self.count_rows and now >= next_count:
                    next_count = now + self.count_every
                    n = conn.execute(text("SELECT count(*) FROM deliveries WHERE campaign_id = :c"),
                                     {"c": self.campaign_id}).scalar()
                    conn.commit()
                    self.rows.append((time.time(), int(n or 0)))
                if self.activity:
                    rows = conn.execute(text(
                        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 110), "
                        "extract(epoch FROM clock_timestamp() - query_start), "
                        "coalesce(wait_event_type || ':' || wait_event, 'cpu') FROM pg_stat_activity "
                        "WHERE datname = current_database() AND state = 'active' "
                        "AND pid <> pg_backend_pid()")).all()
                    conn.commit()
                    self.activity_samples += 1
                    for q, running_s, wait in rows:
                        self.statements[q] += 1
                        self.running[q] = max(self.running.get(q, 0.0), float(running_s or 0))
                        self.waits[q][wait] += 1
                self.stop_flag.wait(0.1 if self.activity else 0.05)


# --- the run ----------------------------------------------------------------------------

def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _pg(sql: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


def _cli(env: dict[str, str], folder: Path, *args: str) -> tuple[float, float, str]:
    """Run `campaigns ARGS`: (epoch started, seconds, last line of output)."""
    started, t0 = time.time(), time.perf_counter()
    proc = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"campaigns {' '.join(args)} failed: {proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    return started, seconds, lines[-1] if lines else ""


def wait_done(db, name: str, total: int, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    from campaigns import lifecycle
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        k = lifecycle.counts(db, name)["counts"]
        if k["sent"] + k["bounced"] + k["failed"] + k["in_doubt"] >= total:
            return
        time.sleep(0.1)
    raise SystemExit(f"campaign {name} did not finish within {timeout_s:.0f} s")


def run(db_kind: str, contacts: int, send_s: float, folder: Path) -> dict[str, object]:
    import redis
    from sqlalchemy import create_engine

    from import_contacts import generate
    from mime_build import HTML, SUBJECT

    git = ["git", "-C", str(ROOT)]
    result: dict[str, object] = {
        "db": db_kind, "contacts": contacts, "cpus": os.cpu_count(), "load_start": _uptime(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git_head": subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                                   text=True).stdout.strip(),
        # the workers and the CLI run from this checkout: uncommitted changes count
        "git_modified": subprocess.run([*git, "status", "--short", "--untracked-files=no"],
                                       capture_output=True, text=True).stdout.splitlines()}
    if db_kind == "postgresql":
        _pg(f"DROP DATABASE IF EXISTS {PG_DB}")
        _pg(f"CREATE DATABASE {PG_DB}")
        url = f"{PG_SERVER}/{PG_DB}"
    else:
        url = f"sqlite:///{folder / 'bench.db'}"
    sink = Sink()
    (folder / "campaigns.toml").write_text(
        f'default_relay = "sink"\n[relays.sink]\nkind = "smtp"\nhost = "127.0.0.1"\n'
        f'port = {sink.port}\nsecurity = "none"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(CAMPAIGNS_DATA_DIR=str(folder / "data"), CAMPAIGNS_CONFIG=str(folder / "campaigns.toml"),
               CAMPAIGNS_DATABASE_URL=url, CAMPAIGNS_REDIS_URL=REDIS_URL)
    rds = redis.Redis.from_url(REDIS_URL)
    rds.flushdb()
    workers = None
    try:
        # 1. the import
        csv_path, warm_csv, html = folder / "contacts.csv", folder / "warm.csv", folder / "news.html"
        t0 = time.perf_counter()
        generate(csv_path, contacts)
        print(f"generated {contacts:,} rows in {time.perf_counter() - t0:.1f} s", flush=True)
        warm_csv.write_text("email,first_name,city\n"
                            + "".join(f"warm{i}@bench.test,W{i},Roma\n" for i in range(50)))
        html.write_text(HTML, encoding="utf-8")
        _, import_s, summary = _cli(env, folder, "contacts", "import", str(csv_path), "--list", "bench")
        result["import"] = {"seconds": round(import_s, 2), "rows_per_s": round(contacts / import_s),
                            "summary": summary, "load": _uptime()}
        print(f"import: {import_s:.1f} s ({contacts / import_s:,.0f} rows/s): {summary}", flush=True)
        _cli(env, folder, "contacts", "import", str(warm_csv), "--list", "warm")

        os.environ.update(env)
        from campaigns import lifecycle
        from campaigns.content.templates import add_template
        from campaigns.context import open_context
        from campaigns.settings import load_settings
        from campaigns.workerproc import WorkerGroup

        ctx = open_context(load_settings(env), migrate=False)
        settings = ctx.settings
        add_template(ctx.db, "news", SUBJECT, html)
        ids = {}
        for name in ("warm", "bench"):
            ids[name] = lifecycle.create_campaign(
                ctx.db, settings, name=name, list_name=name, template="news",
                from_addr="Bottega Rossi <news@bench.test>").id
        from sqlalchemy import text
        with ctx.db.session() as s:
            audience = int(s.scalar(text(
                "SELECT count(*) FROM list_members m JOIN lists l ON l.id = m.list_id "
                "WHERE l.name = 'bench'")) or 0)

        # 2. workers running and warm
        queues = ",".join([settings.control_queue, settings.transactional_queue,
                           settings.retry_queue, settings.queue])
        workers = WorkerGroup(2, queue=queues, env=env).start()
        _cli(env, folder, "launch", "warm")
        wait_done(ctx.db, "warm", 50, 120)
        _, cli_s, _ = _cli(env, folder, "status", "warm")   # the CLI's own start-up + a read
        time.sleep(2)

        engine = create_engine(url)
        sampler = Sampler(rds, settings.queue, engine, ids["bench"], activity=db_kind == "postgresql")
        peak_before = int(rds.info("memory")["used_memory_peak"])
        base = [int(rds.info("memory")["used_memory"]) for _ in range(5)]
        mem_before = int(statistics.median(base))
        sent_before = sink.count()
        sink.mark()          # the sink reports the next accepted message's time
        sampler.start()
        time.sleep(0.5)
        launch_at, launch_s, launch_out = _cli(env, folder, "launch", "bench")
        returned_at = launch_at + launch_s
        sampler.activity = False           # the profile is of the launch only
        launch_load = _uptime()
        print(f"launch returned after {launch_s:.1f} s: {launch_out}", flush=True)
        deadline = time.time() + 30
        while sink.first is None and time.time() < deadline:
            time.sleep(0.05)
        first_at = sink.first
        time.sleep(max(0.0, returned_at + send_s - time.time()))
        sampler.count_rows = False

        # 4. the cancel
        cancel_at, cancel_s, cancel_out = _cli(env, folder, "cancel", "bench")
        cancel_done = cancel_at + cancel_s
        print(f"cancel took {cancel_s:.2f} s: {cancel_out}", flush=True)
        time.sleep(5)
        queue_after_5 = sampler.redis[-1][2] if sampler.redis else None
        time.sleep(5)
        sampler.stop_flag.set()
        sampler.join(5)
        counts = lifecycle.counts(ctx.db, "bench")["counts"]
        sent_at_cancel_call = sink.count_at(cancel_at)
        sent_at_cancel_done = sink.count_at(cancel_done)
        sent_after_5 = sink.count_at(cancel_done + 5)
        sent_after_10 = sink.count()

        # figures
        window_from = returned_at + 1.0
        steady = [(t, k) for t, k in sink.samples if window_from <= t <= cancel_at]
        during_launch = [(t, k) for t, k in sink.samples if launch_at <= t <= returned_at]
        rate_steady = ((steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
                       if len(steady) > 1 else None)
        rate_launch = ((during_launch[-1][1] - sent_before) / (during_launch[-1][0] - launch_at)
                       if during_launch else None)
        queue = [q for t, _, q in sampler.redis if launch_at <= t <= cancel_at]
        queue_steady = [q for t, _, q in sampler.redis if (first_at or launch_at) + 1 <= t <= cancel_at]
        mem = [m for t, m, _ in sampler.redis if launch_at <= t <= cancel_at]
        peak_after = int(rds.info("memory")["used_memory_peak"])
        result.update({
            "audience": audience,
            "feed_window": settings.sending.feed_window,
            "expand_batch": settings.sending.expand_batch,
            "cli_startup_s": round(cli_s, 2),
            "launch": {"call_s": round(launch_s, 2), "output": launch_out, "load": launch_load,
                       "to_first_message_s": round(first_at - launch_at, 2) if first_at else None,
                       "rows_per_s": round(audience / launch_s),
                       "rows_polled": [(round(t - launch_at, 1), n) for t, n in sampler.rows]},
            "send": {"rate_during_launch": round(rate_launch, 1) if rate_launch else None,
                     "rate_after_launch": round(rate_steady, 1) if rate_steady else None,
                     "window_s": round(steady[-1][0] - steady[0][0], 1) if len(steady) > 1 else None,
                     "accepted_launch_to_cancel": sent_at_cancel_call - sent_before},
            "redis": {"used_memory_before": mem_before, "used_memory_max": max(mem),
                      "used_memory_max_delta_mb": round((max(mem) - mem_before) / 1e6, 2),
                      "used_memory_peak_before": peak_before, "used_memory_peak_after": peak_after,
                      "used_memory_peak_delta_mb": round((peak_after - peak_before) / 1e6, 2),
                      "queue_len_max": max(queue), "queue_len_median_sending": (
                          statistics.median(queue_steady) if queue_steady else None),
                      "queue_len_min_sending": min(queue_steady) if queue_steady else None,
                      "queue_len_p90_sending": (statistics.quantiles(queue_steady, n=10)[-1]
                                                if len(queue_steady) > 1 else None),
                      "samples": len(mem),
                      # (s after the launch call, used_memory - before, queue length) every ~1 s
                      "series": [(round(t - launch_at, 1), m - mem_before, q)
                                 for t, m, q in sampler.redis[::4] if launch_at <= t <= cancel_done + 10]},
            "cancel": {"call_s": round(cancel_s, 2), "output": cancel_out,
                       "accepted_during_call": sent_at_cancel_done - sent_at_cancel_call,
                       # the sink's first 0.2 s report that counts its final number
                       "sending_stopped_s_into_call": next(
                           (round(t - cancel_at, 1) for t, k in sink.samples
                            if k >= sent_after_10), None),
                       "accepted_0_5s_after": sent_after_5 - sent_at_cancel_done,
                       "accepted_5_10s_after": sent_after_10 - sent_after_5,
                       "queue_len_5s_after": queue_after_5,
                       "queue_len_10s_after": sampler.redis[-1][2] if sampler.redis else None,
                       "counts": counts},
            "statements_during_launch": {
                "samples": sampler.activity_samples,
                "top": sampler.statements.most_common(12),
                "longest_running_s": {q: round(sampler.running[q], 3)
                                      for q, _ in sampler.statements.most_common(12)},
                "waits": {q: dict(sampler.waits[q]) for q, _ in sampler.statements.most_common(12)}},
            "load_end": _uptime(),
        })
        ctx.db.dispose()
        engine.dispose()
    finally:
        if workers is not None:
            workers.stop()
        sink.stop()
        rds.flushdb()
        if db_kind == "postgresql":
            try:
                _pg(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            except Exception as err:  # noqa: BLE001
                print(f"could not drop {PG_DB}: {err}")
    return result


def main() -> None:
    if "--serve-sink" in sys.argv:
        serve_sink()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--send-s", type=float, default=45.0,
                        help="seconds of sending after the launch returned, before the cancel")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-expand-") as tmp:
        result = run(args.db, args.contacts, args.send_s, Path(tmp))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"expansion-{args.db}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "statements_during_launch"}, indent=2))
    print("statements active during the launch (samples of pg_stat_activity):")
    st = result["statements_during_launch"]
    for q, n in st["top"]:  # type: ignore[index]
        print(f"  {n:5d}  longest {st['longest_running_s'][q]:6.2f} s  {q}")  # type: ignore[index]
        print(f"         waits: {st['waits'][q]}")  # type: ignore[index]


if __name__ == "__main__":
    main()
