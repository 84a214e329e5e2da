"""The SMTP submission gateway (`campaigns gateway`): its accept rate against the project's
aiosmtpd sink, and the latency from its 250 to the relay's acceptance, idle and under a bulk
campaign, in one run.

A real `campaigns gateway` process (STARTTLS on a free port, its self-signed certificate, a
credential made with `campaigns gateway users add`), `--workers` `-P solo` worker processes
(campaigns.workerproc.WorkerGroup), real Redis (db 12, flushed) and SQLite, or PostgreSQL
(`--db postgresql`: database campaigns_bench_gw, its schema recreated). The relay is the
project's sink (campaigns.cli.sink.ScriptedSink) in this process, limited to `--relay-rate`
(200/s) for the whole run; it records each message's recipient and `time.time()` when DATA
was accepted, and every message goes to a recipient of its own, so each 250 of the gateway
is matched with its arrival. Every message carries a Message-ID of its own, as an ERP's do.

1. Latency idle: `--latency-n` messages one at a time at `--latency-rate`/s over one
   STARTTLS + AUTH session; p50/p95/max of (relay accepted - gateway's 250 received).
2. Latency under bulk: the same while a `--bulk`-recipient campaign is sending through the
   same relay (launched as bench/transactional.py does; its rate alone is measured for 5 s
   first, from 1 s after the launch call returned).
3. Accept rate, workers stopped: `--clients` threads, each one smtplib session (STARTTLS +
   AUTH) reused for all its messages, sending back to back for `--seconds`: small messages
   (~1.5 KB) and then each with a 200 KB PDF (random bytes). Baseline of the same run: the
   same messages to the project's aiosmtpd sink in a process of its own (bench/throughput.py's
   start_sink), over as many plain connections (no TLS, no AUTH, nothing stored). The
   gateway also does TLS, AUTH, a suppression check per recipient and a durable commit of
   the original and its delivery (and publishes it) before each 250. Both servers' CPU per
   message answered (from /proc, TLS handshakes and logins of the 4 sessions included) is
   kept too: on a shared 2-core machine it moves less with the others' load than the rates.

The load average (`uptime`) is kept at the start, before each part and at the end.

    .venv/bin/python bench/gateway.py [--db sqlite|postgresql] [--seconds 10]
        [--latency-n 200] [--latency-rate 10] [--bulk 20000] [--workers 2] [--clients 4]
        [--relay-rate 200]

Writes bench/results/gateway-<db>-<YYYYmmdd-HHMMSS>.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import redis  # noqa: E402

import transactional  # noqa: E402
from campaigns.cli.sink import ScriptedSink  # noqa: E402
from tests.gateway_helpers import Gateway, add_user, gateway_toml, start_gateway  # noqa: E402
from throughput import start_sink  # noqa: E402
from transactional import HTML, pct, summary  # noqa: E402

transactional.PG_DB = "campaigns_bench_gw"   # database_url() below: a database of its own
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
SENDER = "fatture@bench.test"
TO, MSGID = b"xrcptx@bench.test", b"xmsgidx@bench.test"   # filled in for each message


def template(pdf_kb: int = 0) -> bytes:
    """An ERP's invoice mail (~1.5 KB), with a `pdf_kb` KB PDF of random bytes when > 0."""
    msg = EmailMessage()
    msg["From"] = f"Bottega Rossi <{SENDER}>"
    msg["To"] = TO.decode()
    msg["Subject"] = "Fattura n. 2026/0042"
    msg["Date"] = "Wed, 02 Dec 2026 08:00:00 +0100"
    msg["Message-ID"] = f"<{MSGID.decode()}>"
    html = HTML.format(n=42)
    msg.set_content("Gentile cliente,\nin allegato la fattura n. 2026/0042.\n\n"
                    + html.replace("<p>", "").replace("</p>", "\n")[:150])
    msg.add_alternative(html, subtype="html")
    if pdf_kb:
        msg.add_attachment(b"%PDF-1.4\n" + os.urandom(pdf_kb * 1024), maintype="application",
                           subtype="pdf", filename="fattura-2026-0042.pdf")
    return msg.as_bytes(policy=SMTP_POLICY)


def fill(body: bytes, rcpt: str, serial: str) -> bytes:
    return body.replace(TO, rcpt.encode()).replace(MSGID, f"{serial}@erp.bench.test".encode())


def machine_load(uptime: bool = False) -> Any:
    if uptime:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return [round(x, 2) for x in os.getloadavg()]


class Sessions:
    """transactional.load's `api` for SMTP: client() opens one session (the gateway's
    STARTTLS + AUTH, or a plain one to the sink), reused for all the thread's messages;
    request() sends one message and answers like the API (200 for a 250) so load() counts
    it; every refusal or error is kept by its reply."""

    def __init__(self, connect: Callable[[], smtplib.SMTP], body: bytes, prefix: str) -> None:
        self.connect, self.body, self.prefix = connect, body, prefix
        self.refused: Counter[str] = Counter()
        self.accepted: list[str] = []          # every recipient answered 250, warm-ups too

    def client(self) -> smtplib.SMTP:
        return self.connect()

    def request(self, smtp: smtplib.SMTP, tag: str) -> Any:
        rcpt = f"{self.prefix}-{tag}@bench.test"
        code, why = 250, ""
        try:
            smtp.sendmail(SENDER, [rcpt], fill(self.body, rcpt, f"{self.prefix}-{tag}"))
            self.accepted.append(rcpt)
        except smtplib.SMTPRecipientsRefused as err:
            code, raw = next(iter(err.recipients.values()))
            why = raw.decode(errors="replace")
        except smtplib.SMTPResponseException as err:
            code, why = err.smtp_code, err.smtp_error.decode(errors="replace")
        except (smtplib.SMTPException, OSError) as err:
            code, why = 0, f"{type(err).__name__}: {err}"
        if code != 250:
            self.refused[f"{code} {why}"[:160]] += 1
        return types.SimpleNamespace(status_code=200 if code == 250 else code)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accept(connect: Callable[[], smtplib.SMTP], body: bytes, prefix: str, clients: int,
           seconds: float, server_pid: int) -> tuple[dict[str, Any], Sessions]:
    """load() of bench/transactional.py over SMTP sessions, and the server process's CPU per
    message answered 250 (a figure the other processes on the machine change less)."""
    s = Sessions(connect, body, prefix)
    cpu0, mine0 = cpu_s(server_pid), time.process_time()
    r: dict[str, Any] = transactional.load(s, clients, seconds,  # type: ignore[arg-type]
                                           s.request)
    r["server_cpu_s"] = cpu_s(server_pid) - cpu0     # sessions' TLS + AUTH and warm-ups too
    n = max(1, len(s.accepted))
    r["server_cpu_ms_per_message"] = 1000 * r["server_cpu_s"] / n
    # the client threads (this process: smtplib's dot-stuffing, TLS on the gateway's side)
    r["client_cpu_ms_per_message"] = 1000 * (time.process_time() - mine0) / n
    r["refused"] = dict(s.refused)
    r["message_bytes"] = len(fill(body, f"{prefix}-0-0@bench.test", f"{prefix}-0-0"))
    return r, s


def plain(port: int) -> Callable[[], smtplib.SMTP]:
    def connect() -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
        smtp.ehlo("erp.bench.test")
        return smtp
    return connect


def latency(gw: Gateway, sink: ScriptedSink, phase: str, count: int, rate: float,
            body: bytes) -> dict[str, Any]:
    """`count` messages, one at a time at `rate`/s over one session; (relay accepted - 250)."""
    accepted: dict[str, float] = {}
    sent: dict[str, float] = {}
    refused: Counter[str] = Counter()
    data_ms: list[float] = []
    with gw.login() as smtp:
        t_next = time.perf_counter()
        for n in range(count):
            to = f"gw-{phase}-{n}@bench.test"
            t, t_sent = time.perf_counter(), time.time()
            try:
                smtp.sendmail(SENDER, [to], fill(body, to, f"gw-{phase}-{n}"))
                accepted[to], sent[to] = time.time(), t_sent
                data_ms.append(1000 * (time.perf_counter() - t))
            except smtplib.SMTPException as err:
                refused[f"{type(err).__name__}: {err}"[:160]] += 1
            t_next += 1 / rate
            time.sleep(max(0.0, t_next - time.perf_counter()))
    deadline = time.monotonic() + 60
    arrived: dict[str, float] = {}
    while time.monotonic() < deadline:
        arrived = {r.rcpt: r.at for r in list(sink.received) if r.rcpt in accepted}
        if len(arrived) == len(accepted):
            break
        time.sleep(0.1)
    lat = [arrived[to] - accepted[to] for to in accepted if to in arrived]
    out: dict[str, Any] = summary(lat) if lat else {"n": 0}
    out.update(accepted=len(accepted), missing=len(accepted) - len(lat), refused=dict(refused),
               smtp_send_p50_ms=statistics.median(data_ms) if data_ms else None,
               smtp_send_p95_ms=pct(data_ms, 95) if data_ms else None)
    from_send = [arrived[to] - sent[to] for to in sent if to in arrived]
    if from_send:      # from the start of MAIL FROM instead of the 250: never negative
        out["from_send_start"] = summary(from_send)
    return out


def stored(ctx: Any, prefix: str) -> int:
    """Deliveries in the ledger to recipients starting with `prefix`."""
    from sqlalchemy import text
    with ctx.db.engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM deliveries WHERE address LIKE :p"),
                               {"p": f"{prefix}%"}))


def bulk_campaign(ctx: Any, folder: Path, count: int) -> None:
    """The bulk campaign of bench/transactional.py: `count` contacts, a one-field template."""
    from campaigns import lifecycle
    from campaigns.audience.contacts import import_contacts
    from campaigns.content.templates import add_template
    csv_path, html_path = folder / "bulk.csv", folder / "news.html"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "first_name"])
        writer.writerows((f"bulk{i}@bench.test", f"Nome{i}") for i in range(count))
    html_path.write_text("<p>Ciao {{ contact.first_name }}, le offerte della settimana.</p>"
                         + HTML.format(n=0), encoding="utf-8")
    import_contacts(ctx.db, csv_path, "bulk")
    add_template(ctx.db, "news", "Offerte per {{ contact.first_name }}", html_path)
    lifecycle.create_campaign(ctx.db, ctx.settings, name="bulk", list_name="bulk",
                              template="news", from_addr="Negozio <news@bench.test>")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--latency-rate", type=float, default=10.0)
    parser.add_argument("--bulk", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--relay-rate", type=float, default=200.0)
    args = parser.parse_args()
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, Any] = {"db": args.db, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "uptime_start": machine_load(uptime=True), "cores": os.cpu_count(),
                               "workers": args.workers, "clients": args.clients,
                               "seconds": args.seconds, "relay_rate": args.relay_rate,
                               "bulk_recipients": args.bulk, "load": {"start": machine_load()}}
    print(f"start: {results['uptime_start']}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    relay = ScriptedSink(keep_data=False).start()
    (folder / "campaigns.toml").write_text(
        f'default_relay = "sink"\n[relays.sink]\nkind = "smtp"\nhost = "127.0.0.1"\n'
        f'port = {relay.port}\nsecurity = "none"\n' + gateway_toml())
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(CAMPAIGNS_DATA_DIR=str(folder / "data"),
               CAMPAIGNS_CONFIG=str(folder / "campaigns.toml"),
               CAMPAIGNS_DATABASE_URL=transactional.database_url(args.db, folder),
               CAMPAIGNS_REDIS_URL=REDIS_URL)
    rclient = redis.Redis.from_url(REDIS_URL)
    rclient.flushdb()
    os.environ.update(env)

    from campaigns import lifecycle
    from campaigns.context import open_context
    from campaigns.delivery.ratestore import set_limit
    from campaigns.errors import StateError
    from campaigns.gateway.service import status
    from campaigns.settings import load_settings
    from campaigns.workerproc import WorkerGroup
    from workers.dispatch import enqueue  # the Celery app reads the settings just set

    ctx = open_context(load_settings(env))
    set_limit(ctx.db, rclient, "relay:sink", args.relay_rate, None)
    bulk_campaign(ctx, folder, args.bulk)
    project = types.SimpleNamespace(env=env, root=folder)   # what tests.gateway_helpers reads
    add_user(project, "erp", "--from-domain", "bench.test")  # the CLI, as an admin would
    results["transactional_share"] = ctx.settings.rates.transactional_share
    small, with_pdf = template(), template(pdf_kb=200)
    results["message_bytes"] = {"small": len(small), "pdf": len(with_pdf)}

    gw = start_gateway(project)
    worker_log = (folder / "workers.log").open("wb")
    workers = WorkerGroup(args.workers, queue=ctx.settings.worker_queues, env=env, log=worker_log)
    baseline = None
    try:
        # 1. latency, idle (workers warmed up by a few messages first)
        workers.start()
        latency(gw, relay, "warm", 10, 5, small)
        results["load"]["latency_idle"] = machine_load()
        results["latency_idle"] = r = latency(gw, relay, "idle", args.latency_n,
                                              args.latency_rate, small)
        print(f"latency idle: p50 {r.get('p50_ms', 0):.0f} ms, p95 {r.get('p95_ms', 0):.0f} ms, "
              f"max {r.get('max_ms', 0):.0f} ms; missing {r['missing']}, refused "
              f"{sum(r['refused'].values())}", flush=True)

        # 2. latency while the bulk campaign sends through the same relay
        t = time.perf_counter()
        report = lifecycle.launch(ctx.db, ctx.settings, "bulk", enqueue)
        results["bulk_launch_s"] = time.perf_counter() - t
        a0 = time.time() + 1.0
        time.sleep(6.0)
        results["load"]["latency_bulk"] = machine_load()
        w0 = time.time()
        results["latency_bulk"] = r = latency(gw, relay, "bulk", args.latency_n,
                                              args.latency_rate, small)
        w1 = time.time()
        bulk_at = [x.at for x in list(relay.received) if x.rcpt.startswith("bulk")]
        during = [a for a in bulk_at if w0 <= a < w1]
        alone = [a for a in bulk_at if a0 <= a < w0]
        results["bulk_during_window"] = {"launch_enqueued": report.enqueued,  # the 1st feed
                                         "seconds": w1 - w0,
                                         "bulk_rate_alone_before": len(alone) / (w0 - a0),
                                         "bulk_sent_in_window": len(during),
                                         "bulk_rate_in_window": len(during) / (w1 - w0)}
        print(f"latency under bulk: p50 {r.get('p50_ms', 0):.0f} ms, p95 "
              f"{r.get('p95_ms', 0):.0f} ms, max {r.get('max_ms', 0):.0f} ms; missing "
              f"{r['missing']}, refused {sum(r['refused'].values())}; bulk "
              f"{len(during) / (w1 - w0):.0f} msg/s meanwhile, {len(alone) / (w0 - a0):.0f} "
              "msg/s alone before", flush=True)
        try:
            lifecycle.cancel(ctx.db, "bulk")
        except StateError:     # finished already: --bulk too small to cover the window
            results["bulk_during_window"]["finished_before_window_end"] = True

        # 3. accept rate, workers stopped; the sink in its own process as the baseline
        workers.stop()
        rclient.flushdb()
        set_limit(ctx.db, rclient, "relay:sink", args.relay_rate, None)
        baseline, port = start_sink("aiosmtpd")
        for size, body in (("small", small), ("pdf", with_pdf)):
            results["load"][f"accept_{size}"] = machine_load()
            g, sessions = accept(gw.login, body, f"acc-{size}", args.clients, args.seconds,
                                 gw.proc.pid)
            g["stored"] = stored(ctx, f"acc-{size}-")
            g["answered_250_total"] = len(sessions.accepted)   # warm-ups too
            s, _ = accept(plain(port), body, f"sink-{size}", args.clients, args.seconds,
                          baseline.pid)
            results[f"accept_{size}"] = {
                "gateway": g, "sink": s, "ratio_gateway_to_sink": g["rate"] / s["rate"],
                "cpu_per_message_gateway_to_sink": g["server_cpu_ms_per_message"]
                / s["server_cpu_ms_per_message"]}
            print(f"accept {size} ({g['message_bytes']} B): gateway {g['rate']:.0f} msg/s "
                  f"(p50 {g['request_p50_ms']:.1f} ms, {g['server_cpu_ms_per_message']:.1f} "
                  f"CPU ms/msg, refused {sum(g['refused'].values())}, {g['stored']} stored for "
                  f"{g['answered_250_total']} answered 250), sink {s['rate']:.0f} msg/s "
                  f"({s['server_cpu_ms_per_message']:.2f} CPU ms/msg): ratio "
                  f"{g['rate'] / s['rate']:.2f}; client CPU ms/msg "
                  f"{g['client_cpu_ms_per_message']:.1f} (gateway), "
                  f"{s['client_cpu_ms_per_message']:.1f} (sink)", flush=True)
        results["gateway_status"] = status(ctx)
    finally:
        workers.stop()
        worker_log.close()
        if baseline is not None:
            baseline.terminate()
            baseline.wait()
        gw.stop()
        relay.stop()
        (folder / "gateway.log").write_text("".join(gw.lines))
        ctx.db.dispose()
    results["load"]["end"] = machine_load()
    results["uptime_end"] = machine_load(uptime=True)
    results["gateway_log_tail"] = [line.rstrip() for line in gw.lines[-20:]]
    results["folder"] = str(folder)
    results["run_s"] = time.time() - started
    print("gateway does TLS + AUTH + a suppression check + a durable commit per message; "
          "the sink none of them")
    print(f"end: {results['uptime_end']}; whole run {results['run_s']:.0f} s; files in {folder}")
    dest = ROOT / "bench" / "results"
    dest.mkdir(exist_ok=True)
    path = dest / f"gateway-{args.db}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
