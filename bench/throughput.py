"""Whole-pipeline throughput against the ceiling of the same sink, measured in one run.

For each database (SQLite, and PostgreSQL when reachable): import N contacts, launch a
campaign (the ~5.7 KB newsletter of bench/mime_build.py, two personalised fields), and let
two `-P solo` worker processes send it through real Redis to an aiosmtpd sink running in its
own process. The ceiling is one smtplib loop over one connection sending N messages of the
same size to the same sink. The sink's capacity is 5 threads of this process, one smtplib
connection each, sending N/5 messages each (the physical limit of the sink on this machine).
With --peer, django-post_office 3.12 with its Celery integration (bench/peer_postoffice.py,
in a venv of its own made on first use) sends the same N messages to the same sink on each
database of the run. With --dkim, a 2048-bit RSA key signs every message (the From domain
bench.test has a [dkim] table): the signing cost in the whole pipeline. Run:

    .venv/bin/python bench/throughput.py [--messages 10000] [--workers 2] [--db sqlite,postgresql]
                                         [--sink aiosmtpd|fast] [--peer]
                                         [--threads T] [--message newsletter|small] [--dkim]

Prints messages/s, the peer's, ours/peer and the ratios to the ceiling and to the 5-connection
capacity; writes bench/results/throughput-*.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from mime_build import MESSAGES  # noqa: E402

PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_URL = f"{PG_SERVER}/campaigns_bench"  # a database of its own: the tests use `test`
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


SINKS = {"aiosmtpd": [sys.executable, "-m", "campaigns.cli.sink", "--port", "0", "--no-keep-data"],
         "fast": [sys.executable, str(ROOT / "bench" / "fastsink.py"), "--port", "0"]}


def start_sink(kind: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(SINKS[kind], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "listening 127.0.0.1:PORT"
    return proc, int(line.rsplit(":", 1)[1])


def ceiling(port: int, count: int, size: int) -> float:
    """One smtplib connection, `count` messages of `size` bytes: messages/s."""
    body = (b"Subject: ceiling\r\nFrom: a@bench.test\r\nTo: b@bench.test\r\n\r\n"
            + b"x" * 70 + b"\r\n") * max(1, size // 72)
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        started = time.perf_counter()
        for i in range(count):
            smtp.sendmail("a@bench.test", [f"b{i}@bench.test"], body)
        return count / (time.perf_counter() - started)


def capacity(port: int, count: int, size: int, connections: int = 5) -> float:
    """`connections` threads, one smtplib connection each, `count` messages in all: messages/s."""
    import threading
    body = (b"Subject: capacity\r\nFrom: a@bench.test\r\nTo: b@bench.test\r\n\r\n"
            + b"x" * 70 + b"\r\n") * max(1, size // 72)
    share = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    smtps = [smtplib.SMTP("127.0.0.1", port) for _ in range(connections)]
    for smtp in smtps:
        smtp.ehlo()
    gate = threading.Barrier(connections + 1)

    def loop(smtp: smtplib.SMTP, n: int, k: int) -> None:
        gate.wait()
        for i in range(n):
            smtp.sendmail("a@bench.test", [f"c{k}-{i}@bench.test"], body)

    threads = [threading.Thread(target=loop, args=(smtp, n, k))
               for k, (smtp, n) in enumerate(zip(smtps, share))]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for smtp in smtps:
        smtp.quit()
    return count / elapsed


def prepare(env: dict[str, str], folder: Path, count: int, message: str) -> None:
    from campaigns import lifecycle
    from campaigns.audience.contacts import import_contacts
    from campaigns.context import open_context
    from campaigns.settings import load_settings
    from campaigns.content.templates import add_template

    ctx = open_context(load_settings(env))
    csv_path, html_path = folder / "list.csv", folder / "news.html"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "first_name", "city"])
        writer.writerows((f"cliente{i}@bench.test", f"Nome{i}", "Forlì") for i in range(count))
    subject, html = MESSAGES[message]
    html_path.write_text(html, encoding="utf-8")
    for name, n in (("warmup", 50), ("bench", count)):
        import_contacts(ctx.db, csv_path if n == count else _head(csv_path, folder, n), name)
        add_template(ctx.db, name, subject, html_path)
        lifecycle.create_campaign(ctx.db, ctx.settings, name=name, list_name=name,
                                  template=name, from_addr="Bottega Rossi <news@bench.test>")
    ctx.db.dispose()


def _head(csv_path: Path, folder: Path, n: int) -> Path:
    out = folder / "warmup.csv"
    out.write_text("".join(csv_path.read_text().splitlines(True)[: n + 1]))
    return out


def wait_done(db, name: str, total: int, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    from campaigns import lifecycle
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        k = lifecycle.counts(db, name)["counts"]
        if k["sent"] + k["bounced"] + k["failed"] + k["in_doubt"] >= total:
            return time.perf_counter()
        time.sleep(0.05)
    raise SystemExit(f"campaign {name} did not finish within {timeout_s:.0f} s")


def run_pipeline(db_url: str, port: int, count: int, workers: int,
                 relay_rate: float | None = None, threads: int = 1,
                 message: str = "newsletter", dkim: bool = False) -> dict[str, float]:
    from campaigns import lifecycle
    from campaigns.context import open_context
    from campaigns.settings import load_settings
    from campaigns.workerproc import WorkerGroup

    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    signing = ""
    if dkim:   # the bench's From domain signs every message (campaigns dkim keygen's key)
        from campaigns.content.dkim import RSA, generate
        key = generate(RSA, "bench", folder / "dkim" / "bench.test.bench.pem")
        signing = f'[dkim."bench.test"]\nselector = "bench"\nkey_file = "{key.path}"\n'
    (folder / "campaigns.toml").write_text(
        f'default_relay = "sink"\n[relays.sink]\nkind = "smtp"\nhost = "127.0.0.1"\n'
        f'port = {port}\nsecurity = "none"\n{signing}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(CAMPAIGNS_DATA_DIR=str(folder / "data"), CAMPAIGNS_CONFIG=str(folder / "campaigns.toml"),
               CAMPAIGNS_DATABASE_URL=db_url, CAMPAIGNS_REDIS_URL=REDIS_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    prepare(env, folder, count, message)
    os.environ.update(env)
    from workers.dispatch import enqueue  # the Celery app reads the settings just set

    ctx = open_context(load_settings(env), migrate=False)
    if relay_rate:  # a limit far above capacity: what the limiter itself costs
        from campaigns.delivery.ratestore import set_limit
        set_limit(ctx.db, redis.Redis.from_url(REDIS_URL), "relay:sink", relay_rate, 1000)
    with WorkerGroup(workers, queue="campaigns.control,campaigns.transactional,campaigns.retry,campaigns", env=env,
                     pool="threads" if threads > 1 else "solo", concurrency=threads):
        lifecycle.launch(ctx.db, ctx.settings, "warmup", enqueue)  # workers booted and warm
        wait_done(ctx.db, "warmup", 50, 60)
        started = time.perf_counter()
        report = lifecycle.launch(ctx.db, ctx.settings, "bench", enqueue)
        launched = time.perf_counter()
        done = wait_done(ctx.db, "bench", count, 600)
    sent = lifecycle.counts(ctx.db, "bench")["counts"]["sent"]
    ctx.db.dispose()
    return {"messages": report.enqueued, "sent": sent, "launch_s": launched - started,
            "total_s": done - started, "rate": sent / (done - started),
            "launch_rate": report.enqueued / (launched - started)}


def pg_available() -> bool:
    try:
        admin = create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname='campaigns_bench'")):
                conn.execute(text("CREATE DATABASE campaigns_bench"))
        admin.dispose()
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--threads", type=int, default=1,
                        help="messages in flight per worker process (a thread each)")
    parser.add_argument("--relay-rate", type=float, default=None,
                        help="set relay:sink to this rate (e.g. 100000: far above capacity)")
    parser.add_argument("--sink", choices=sorted(SINKS), default="aiosmtpd",
                        help="aiosmtpd (the project's sink) or fast (bench/fastsink.py)")
    parser.add_argument("--message", choices=sorted(MESSAGES), default="newsletter",
                        help="newsletter (~9 KB on the wire) or small (the issue's ~1.5 KB message)")
    parser.add_argument("--dkim", action="store_true",
                        help="sign every message with a 2048-bit RSA DKIM key ([dkim.\"bench.test\"])")
    parser.add_argument("--peer", action="store_true",
                        help="also django-post_office + Celery on each database, same sink, same N")
    args = parser.parse_args()
    sink, port = start_sink(args.sink)
    results: dict[str, object] = {"messages": args.messages, "workers": args.workers,
                                  "threads": args.threads,
                                  "sink": args.sink, "relay_rate": args.relay_rate,
                                  "message": args.message, "dkim": args.dkim}
    try:
        size = len(MESSAGES[args.message][1].encode()) * 2  # html + a text part of similar size
        results["ceiling_rate"] = ceiling(port, args.messages, size)
        results["capacity5_rate"] = capacity(port, args.messages, size)
        results["load_before"] = os.getloadavg()
        for db in args.db.split(","):
            if db == "postgresql" and not pg_available():
                print("PostgreSQL not reachable: skipped")
                continue
            url = PG_URL if db == "postgresql" else f"sqlite:///{tempfile.mkdtemp()}/bench.db"
            results[db] = r = run_pipeline(url, port, args.messages, args.workers,
                                           args.relay_rate, args.threads, args.message,
                                           args.dkim)
            r["ratio_ceiling"] = r["rate"] / results["ceiling_rate"]  # type: ignore[operator]
            r["ratio_capacity5"] = r["rate"] / results["capacity5_rate"]  # type: ignore[operator]
            print(f"{db:10s} {r['sent']} sent in {r['total_s']:.1f} s = {r['rate']:.0f} msg/s "
                  f"(launch {r['launch_s']:.1f} s, {r['launch_rate']:.0f} enqueued/s); "
                  f"ratio to ceiling {r['ratio_ceiling']:.2f}, to 5-connection capacity "
                  f"{r['ratio_capacity5']:.2f}", flush=True)
            if args.peer:
                from peer_postoffice import run_peer
                p = run_peer(db, port, args.messages, args.workers, args.message)
                p["ratio_ceiling"] = p["rate"] / results["ceiling_rate"]  # type: ignore[operator]
                p["ratio_capacity5"] = p["rate"] / results["capacity5_rate"]  # type: ignore[operator]
                results[f"peer_{db}"] = p
                r["ratio_peer"] = r["rate"] / p["rate"]
                print(f"{'  peer':10s} django-post_office {p['sent']} sent in {p['total_s']:.1f} s = "
                      f"{p['rate']:.0f} msg/s (send_many {p['queue_s']:.1f} s); ratio to ceiling "
                      f"{p['ratio_ceiling']:.2f}, to 5-connection capacity {p['ratio_capacity5']:.2f}; "
                      f"ours/peer {r['ratio_peer']:.2f}", flush=True)
        results["load_after"] = os.getloadavg()
        print(f"ceiling    one smtplib connection: {results['ceiling_rate']:.0f} msg/s")
        print(f"capacity   5 smtplib connections:  {results['capacity5_rate']:.0f} msg/s "
              f"({results['capacity5_rate'] / results['ceiling_rate']:.2f} x ceiling)")  # type: ignore[operator]
        print("load average before/after: %.2f / %.2f" % (results["load_before"][0],  # type: ignore[index]
                                                        results["load_after"][0]))  # type: ignore[index]
    finally:
        sink.terminate()
        sink.wait()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"throughput-{args.sink}-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
