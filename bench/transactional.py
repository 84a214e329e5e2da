"""Transactional messages (POST /api/v1/messages): latency from the API's 202 to the relay's
acceptance, idle and under a bulk campaign, and the API's accept rate, each set against a
baseline measured in the same run.

A real `campaigns serve` process, two `-P solo` worker processes, real Redis (db 13, flushed),
the relay limited to `--relay-rate` (200/s) for the whole run, and the project's aiosmtpd sink
(`campaigns.cli.sink.ScriptedSink`) running in this process: it records each accepted message's
recipient and `time.time()` when DATA was accepted, and every transactional message goes to a
recipient of its own (tx-PHASE-N@bench.test), so each 202 is matched with its arrival.

1. Baselines: the sink's ceiling (one smtplib connection from another process, ~1 KB messages)
   and a bare `GET /healthz` (one `SELECT 1`) of the same server, from the same client threads.
2. Latency idle: `--latency-n` messages posted one at a time at `--latency-rate`/s by one client
   thread; p50/p95/max of (sink accepted - 202 received).
3. Latency under bulk: the same while a `--bulk`-recipient campaign is sending through the same
   relay under the same limit: the bulk's rate alone is measured for `--bulk-alone-s` (5 s)
   from 1 s after the launch call returned, then the transactional messages are posted.
4. Accept rate, workers stopped: `--clients` threads posting for `--seconds` each, small
   messages (inline subject/html, ~1 KB) and then messages with a 200 KB PDF (random bytes).

    .venv/bin/python bench/transactional.py [--db sqlite|postgresql] [--bulk 20000]
        [--latency-n 200] [--latency-rate 10] [--clients 4] [--seconds 10] [--relay-rate 200]

Writes bench/results/transactional-<db>.json.
"""
from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import httpx  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from campaigns.cli.sink import ScriptedSink  # noqa: E402

PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_DB = "campaigns_bench_tx"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
HTML = ("<p>Gentile cliente, la sua ricevuta n. {n} è disponibile nell'area riservata. "
        "Per qualsiasi domanda risponda a questo messaggio: le risponderemo entro un giorno "
        "lavorativo.</p>" * 4)
CEILING = """
import smtplib, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
body = (b"Subject: ceiling\\r\\nFrom: a@bench.test\\r\\nTo: b@bench.test\\r\\n\\r\\n"
        + b"x" * 70 + b"\\r\\n") * 14
with smtplib.SMTP("127.0.0.1", port) as smtp:
    t0 = time.perf_counter()
    for i in range(count):
        smtp.sendmail("a@bench.test", [f"ceiling{i}@bench.test"], body)
    print(count / (time.perf_counter() - t0))
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": 1000 * statistics.median(values),
            "p95_ms": 1000 * pct(values, 95), "max_ms": 1000 * max(values),
            "min_ms": 1000 * min(values)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url(db: str, folder: Path) -> str:
    if db == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text(f"SELECT 1 FROM pg_database WHERE datname='{PG_DB}'")):
            conn.execute(text(f"CREATE DATABASE {PG_DB}"))
    admin.dispose()
    url = f"{PG_SERVER}/{PG_DB}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def message(to: str, n: int, pdf: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"to": to, "from": "Negozio <ricevute@bench.test>",
                            "subject": f"Ricevuta {n}", "html": HTML.format(n=n),
                            "stream": "receipts", "ref": f"R-{n}"}
    if pdf is not None:
        body["attachments"] = [{"filename": f"ricevuta-{n}.pdf",
                                "content_type": "application/pdf", "content_base64": pdf}]
    return body


class Api:
    def __init__(self, base: str, key: str) -> None:
        self.base, self.headers = base, {"Authorization": f"Bearer {key}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=self.headers, timeout=30)


def load(api: Api, clients: int, seconds: float,
         request: Callable[[httpx.Client, str], httpx.Response]) -> dict[str, float]:
    """`clients` threads, each sending requests back to back for `seconds`: answers/s."""
    counts, errors, times = [0] * clients, [0] * clients, [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def run(i: int) -> None:
        with api.client() as c:
            request(c, f"warm-{i}")            # the connection is open before the clock starts
            start.wait()
            n = 0
            while time.perf_counter() < stop_at[0]:
                t = time.perf_counter()
                r = request(c, f"{i}-{n}")
                times[i].append(time.perf_counter() - t)
                n += 1
                if r.status_code in (200, 202):
                    counts[i] += 1
                else:
                    errors[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    start.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for ts in times for x in ts]
    return {"answers": sum(counts), "errors": sum(errors), "seconds": elapsed,
            "rate": sum(counts) / elapsed, "request_p50_ms": 1000 * statistics.median(flat),
            "request_p95_ms": 1000 * pct(flat, 95)}


def latency(api: Api, sink: ScriptedSink, phase: str, count: int, rate: float) -> dict[str, Any]:
    """`count` messages, one at a time at `rate`/s; (sink accepted - 202 received) each."""
    accepted: dict[str, float] = {}
    sent: dict[str, float] = {}
    post_ms: list[float] = []
    with api.client() as c:
        t_next = time.perf_counter()
        for n in range(count):
            to = f"tx-{phase}-{n}@bench.test"
            t, sent[to] = time.perf_counter(), time.time()
            r = c.post("/api/v1/messages", json=message(to, n))
            accepted[to] = time.time()
            post_ms.append(1000 * (time.perf_counter() - t))
            if r.status_code != 202:
                raise SystemExit(f"POST answered {r.status_code}: {r.text}")
            t_next += 1 / rate
            time.sleep(max(0.0, t_next - time.perf_counter()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        arrived = {r.rcpt: r.at for r in list(sink.received) if r.rcpt in accepted}
        if len(arrived) == count:
            break
        time.sleep(0.1)
    lat = [arrived[to] - accepted[to] for to in accepted if to in arrived]
    out: dict[str, Any] = summary(lat) if lat else {"n": 0}
    out.update(missing=count - len(lat), post_p50_ms=statistics.median(post_ms),
               post_p95_ms=pct(post_ms, 95))
    # from the request's start instead of the 202: never negative (the API publishes before
    # it answers, so a message may reach the sink before the client has read its 202)
    from_post = [arrived[to] - sent[to] for to in sent if to in arrived]
    if from_post:
        out["from_request"] = summary(from_post)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--bulk", type=int, default=20_000)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--latency-rate", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--relay-rate", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bulk-alone-s", type=float, default=5.0,
                        help="seconds of bulk alone (its rate) before the transactional posts")
    args = parser.parse_args()
    started = time.time()
    folder = Path(tempfile.mkdtemp(prefix="bench-tx-"))
    sink = ScriptedSink(keep_data=False).start()
    (folder / "campaigns.toml").write_text(
        f'default_relay = "sink"\n[relays.sink]\nkind = "smtp"\nhost = "127.0.0.1"\n'
        f'port = {sink.port}\nsecurity = "none"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(CAMPAIGNS_DATA_DIR=str(folder / "data"),
               CAMPAIGNS_CONFIG=str(folder / "campaigns.toml"),
               CAMPAIGNS_DATABASE_URL=database_url(args.db, folder), CAMPAIGNS_REDIS_URL=REDIS_URL)
    rclient = redis.Redis.from_url(REDIS_URL)
    rclient.flushdb()
    os.environ.update(env)

    from campaigns import lifecycle
    from campaigns.audience.contacts import import_contacts
    from campaigns.content.templates import add_template
    from campaigns.context import open_context
    from campaigns.delivery.ratestore import set_limit
    from campaigns.settings import load_settings
    from campaigns.web.keys import create_key
    from campaigns.workerproc import WorkerGroup
    from workers.dispatch import enqueue  # the Celery app reads the settings just set

    ctx = open_context(load_settings(env))
    key, _ = create_key(ctx.db, "bench", ["send", "read"], 10_000)
    set_limit(ctx.db, rclient, "relay:sink", args.relay_rate, None)
    csv_path, html_path = folder / "bulk.csv", folder / "news.html"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "first_name"])
        writer.writerows((f"bulk{i}@bench.test", f"Nome{i}") for i in range(args.bulk))
    html_path.write_text("<p>Ciao {{ contact.first_name }}, le offerte della settimana.</p>"
                         + HTML.format(n=0), encoding="utf-8")
    import_contacts(ctx.db, csv_path, "bulk")
    add_template(ctx.db, "news", "Offerte per {{ contact.first_name }}", html_path)
    lifecycle.create_campaign(ctx.db, ctx.settings, name="bulk", list_name="bulk",
                              template="news", from_addr="Negozio <news@bench.test>")

    results: dict[str, Any] = {
        "db": args.db, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
        "workers": args.workers, "relay_rate": args.relay_rate,
        "transactional_share": ctx.settings.rates.transactional_share,
        "bulk_recipients": args.bulk, "clients": args.clients, "seconds": args.seconds,
        "sink": "campaigns.cli.sink.ScriptedSink in the bench process"}
    port = free_port()
    log = (folder / "serve.log").open("w")
    serve = subprocess.Popen([sys.executable, "-m", "workers.cli", "serve", "--listen",
                              f"127.0.0.1:{port}"], env=env, cwd=ROOT, stdout=log, stderr=log)
    workers = WorkerGroup(args.workers, queue=ctx.settings.worker_queues, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if serve.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start: {(folder / 'serve.log').read_text()}")
            time.sleep(0.1)
        api = Api(base, key)

        # 1. baselines, in this run
        out = subprocess.run([sys.executable, "-c", CEILING, str(sink.port), "3000"],
                             capture_output=True, text=True, check=True)
        results["sink_ceiling_rate"] = float(out.stdout)
        results["healthz"] = load(api, args.clients, args.seconds,
                                  lambda c, _: c.get("/healthz"))
        with api.client() as c:
            one = []
            for _ in range(100):
                t = time.perf_counter()
                c.get("/healthz")
                one.append(time.perf_counter() - t)
                time.sleep(0.02)
        results["healthz_single"] = summary(one)
        print(f"baseline: sink ceiling {results['sink_ceiling_rate']:.0f} msg/s; /healthz "
              f"{results['healthz']['rate']:.0f} req/s ({args.clients} clients), one at a time "
              f"p50 {results['healthz_single']['p50_ms']:.1f} ms", flush=True)

        # 2. latency, idle (workers warmed up by a few messages first)
        workers.start()
        latency(api, sink, "warm", 10, 5)
        results["latency_idle"] = r = latency(api, sink, "idle", args.latency_n, args.latency_rate)
        print(f"latency idle: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, "
              f"max {r['max_ms']:.0f} ms, missing {r['missing']}", flush=True)

        # 3. latency while the bulk campaign sends through the same relay
        t = time.perf_counter()
        report = lifecycle.launch(ctx.db, ctx.settings, "bulk", enqueue)
        results["bulk_launch_s"] = time.perf_counter() - t
        a0 = time.time() + 1.0     # bulk alone for --bulk-alone-s: its rate, for comparison
        time.sleep(1.0 + args.bulk_alone_s)
        w0 = time.time()
        results["latency_bulk"] = r = latency(api, sink, "bulk", args.latency_n,
                                              args.latency_rate)
        w1 = time.time()
        bulk_at = [x.at for x in list(sink.received) if x.rcpt.startswith("bulk")]
        during = [a for a in bulk_at if w0 <= a < w1]
        alone = [a for a in bulk_at if a0 <= a < w0]
        results["bulk_during_window"] = {"enqueued": report.enqueued, "seconds": w1 - w0,
                                         "bulk_rate_alone_before": len(alone) / (w0 - a0),
                                         "bulk_sent_in_window": len(during),
                                         "bulk_rate_in_window": len(during) / (w1 - w0),
                                         "bulk_sent_before_window_end": len(
                                             [a for a in bulk_at if a < w1])}
        print(f"latency under bulk: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, "
              f"max {r['max_ms']:.0f} ms, missing {r['missing']}; bulk "
              f"{len(during) / (w1 - w0):.0f} msg/s meanwhile, "
              f"{len(alone) / (w0 - a0):.0f} msg/s alone before", flush=True)
        lifecycle.cancel(ctx.db, "bulk")

        # 4. accept rate, workers stopped
        workers.stop()
        rclient.flushdb()
        set_limit(ctx.db, rclient, "relay:sink", args.relay_rate, None)
        results["accept_small"] = a = load(api, args.clients, args.seconds, lambda c, tag: c.post(
            "/api/v1/messages", json=message(f"small-{tag}@bench.test", 0)))
        print(f"accept small: {a['rate']:.0f} msg/s (errors {a['errors']})", flush=True)
        pdf = base64.b64encode(b"%PDF-1.4\n" + os.urandom(200 * 1024)).decode()
        results["accept_pdf"] = a = load(api, args.clients, args.seconds, lambda c, tag: c.post(
            "/api/v1/messages", json=message(f"pdf-{tag}@bench.test", 0, pdf)))
        print(f"accept 200 KB PDF: {a['rate']:.0f} msg/s (errors {a['errors']})", flush=True)
    finally:
        workers.stop()
        serve.terminate()
        serve.wait(15)
        sink.stop()
        log.close()
        ctx.db.dispose()
    h = results["healthz"]["rate"]
    results["ratios"] = {"accept_small_to_healthz": results["accept_small"]["rate"] / h,
                         "accept_pdf_to_healthz": results["accept_pdf"]["rate"] / h,
                         "latency_idle_p50_to_healthz_p50": results["latency_idle"]["p50_ms"]
                         / results["healthz_single"]["p50_ms"],
                         "latency_bulk_p95_to_idle_p95": results["latency_bulk"]["p95_ms"]
                         / results["latency_idle"]["p95_ms"]}
    results["run_s"] = time.time() - started
    print(json.dumps(results["ratios"], indent=1))
    print(f"whole run {results['run_s']:.0f} s")
    dest = ROOT / "bench" / "results"
    dest.mkdir(exist_ok=True)
    (dest / f"transactional-{args.db}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
