"""Fleet-wide rate limits, measured at the sink (timestamps of accepted messages).

1. Relay limited to 50/s, then 200/s, with 2, then 4 worker processes, 60 s each: achieved
   rate (messages accepted in the 60 s from the first one, / 60) against the configured
   rate, and the busiest one-second window (sliding) against rate + burst.
2. A domain group (google) limited to 10/s while the other half of the audience is not
   limited: both groups' rates, against an unlimited baseline run of the same length.
3. A rate raised mid-run (50/s → 150/s): how long until the sink sees the new rate.

    .venv/bin/python bench/rates.py [--seconds 60] [--quick]

Writes bench/results/rates-*.json. Needs Redis on 127.0.0.1:6379 (database 11).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import redis  # noqa: E402

from campaigns import lifecycle  # noqa: E402
from campaigns.audience.contacts import import_contacts  # noqa: E402
from campaigns.context import open_context  # noqa: E402
from campaigns.delivery.ratestore import set_limit, unset_limit  # noqa: E402
from campaigns.settings import load_settings  # noqa: E402
from campaigns.cli.sink import ScriptedSink  # noqa: E402
from campaigns.content.templates import add_template  # noqa: E402
from campaigns.workerproc import WorkerGroup  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
HTML = "<p>Ciao {{ contact.first_name }}, le offerte di questa settimana.</p>"


class Bench:
    def __init__(self, folder: Path, sink: ScriptedSink) -> None:
        self.folder, self.sink, self.runs = folder, sink, 0
        (folder / "campaigns.toml").write_text(
            'default_relay = "sink"\n[rates]\ntransactional_share = 0\n'
            f'[relays.sink]\nkind = "smtp"\nhost = "127.0.0.1"\nport = {sink.port}\n')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
        self.env.update(CAMPAIGNS_DATA_DIR=str(folder / "data"),
                        CAMPAIGNS_CONFIG=str(folder / "campaigns.toml"),
                        CAMPAIGNS_DATABASE_URL=f"sqlite:///{folder / 'bench.db'}",
                        CAMPAIGNS_REDIS_URL=REDIS_URL)
        self.client = redis.Redis.from_url(REDIS_URL)
        self.client.flushdb()
        os.environ.update(self.env)
        self.ctx = open_context(load_settings(self.env))
        from workers.dispatch import enqueue  # the Celery app reads the settings just set
        self.enqueue = enqueue
        add_template(self.ctx.db, "t", "Offerte per {{ contact.first_name }}", self._html())

    def _html(self) -> Path:
        path = self.folder / "t.html"
        path.write_text(HTML, encoding="utf-8")
        return path

    def audience(self, name: str, domains: list[str], count: int) -> None:
        path = self.folder / f"{name}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["email", "first_name"])
            writer.writerows((f"{name}{i}@{domains[i % len(domains)]}", f"N{i}") for i in range(count))
        import_contacts(self.ctx.db, path, name)

    threads = 4     # messages in flight per worker process (`campaigns worker`'s default)

    def run(self, list_name: str, workers: int, seconds: float,
            during: Any = None) -> tuple[list[Any], float]:
        """Launch a campaign on `list_name`, measure `seconds` from the first message."""
        self.runs += 1
        name = f"run{self.runs}"
        lifecycle.create_campaign(self.ctx.db, self.ctx.settings, name=name,
                                  list_name=list_name, template="t",
                                  from_addr="Bench <news@bench.test>")
        with WorkerGroup(workers, queue=self.ctx.settings.worker_queues, env=self.env,
                         pool="threads" if self.threads > 1 else "solo",
                         concurrency=self.threads):
            time.sleep(3)  # workers booted
            self.sink.received.clear()
            lifecycle.launch(self.ctx.db, self.ctx.settings, name, self.enqueue)
            if not self.sink.wait_for(1, timeout_s=30):
                raise SystemExit("no message arrived")
            # measure from when the launch finished publishing: until then this process
            # (which also runs the sink, under the same GIL) is busy enqueueing
            t0 = time.time() + 1.0
            while time.time() < t0:
                time.sleep(0.05)
            while time.time() < t0 + seconds:
                if during:
                    during = during(time.time() - t0)
                time.sleep(0.05)
            if lifecycle.counts(self.ctx.db, name)["status"] != "finished":
                lifecycle.cancel(self.ctx.db, name)
        received = [r for r in list(self.sink.received) if t0 <= r.at < t0 + seconds]
        # the cancelled campaign's tasks would slow the next run down: start it clean
        # (the limits are reloaded from the database into Redis on the next read)
        self.client.flushdb()
        return received, t0

    def limit(self, target: str, rate: float | None, burst: int | None = None) -> None:
        if rate is None:
            unset_limit(self.ctx.db, self.client, target)
        else:
            set_limit(self.ctx.db, self.client, target, rate, burst)


def busiest_second(times: list[float]) -> int:
    times, best, j = sorted(times), 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def fixed_rates(b: Bench, seconds: float, rates: list[int], workers: list[int]) -> list[dict[str, Any]]:
    out = []
    for rate in rates:
        burst = max(5, rate // 10)
        b.limit("relay:sink", rate, burst)
        for n in workers:
            received, _ = b.run("plain", n, seconds)
            achieved = len(received) / seconds
            row = {"rate": rate, "burst": burst, "workers": n, "achieved_per_s": round(achieved, 2),
                   "ratio": round(achieved / rate, 4), "busiest_second": busiest_second([r.at for r in received]),
                   "limit_plus_burst": rate + burst}
            print(f"relay {rate}/s burst {burst}, {n} workers: {achieved:.1f}/s "
                  f"({achieved / rate:.3f} of configured), busiest 1-s window "
                  f"{row['busiest_second']} (rate + burst = {rate + burst})", flush=True)
            out.append(row)
    b.limit("relay:sink", None)
    return out


def domain_group(b: Bench, seconds: float) -> dict[str, Any]:
    b.limit("domain:google", 10, 2)
    mixed, _ = b.run("mix", 2, seconds)
    b.limit("domain:google", None)
    base, _ = b.run("mix", 2, seconds)

    def rate(rows: list[Any], gmail: bool) -> float:
        return sum(1 for r in rows if r.rcpt.endswith("@gmail.com") == gmail) / seconds
    row = {"seconds": seconds, "google_limited_per_s": round(rate(mixed, True), 2),
           "others_limited_run_per_s": round(rate(mixed, False), 2),
           "others_baseline_per_s": round(rate(base, False), 2),
           "all_baseline_per_s": round(len(base) / seconds, 2)}
    print(f"domain:google at 10/s: google {row['google_limited_per_s']}/s, others "
          f"{row['others_limited_run_per_s']}/s (unlimited run: all {row['all_baseline_per_s']}/s,"
          f" others {row['others_baseline_per_s']}/s)", flush=True)
    return row


def rate_change(b: Bench, seconds: float) -> dict[str, Any]:
    b.limit("relay:sink", 50, 5)
    changed: list[float] = []

    def change(elapsed: float) -> Any:
        if elapsed >= seconds / 2:
            changed.append(time.time())
            b.limit("relay:sink", 150, 5)
            return None
        return change
    received, _ = b.run("plain", 2, seconds, during=change)
    b.limit("relay:sink", None)
    at = changed[0]
    times = sorted(r.at for r in received)
    # first moment after the change when the trailing second holds more than 50 + burst
    effect = next((t for i, t in enumerate(times) if t > at and
                   sum(1 for u in times[max(0, i - 200):i + 1] if u > t - 1.0) > 55), None)
    end = times[-1]
    before = sum(1 for t in times if at - 5 <= t < at) / 5
    after = sum(1 for t in times if at + 1 <= t < end) / max(1e-9, end - at - 1)
    row = {"before_per_s": before, "after_per_s": after,
           "effect_latency_s": round(effect - at, 3) if effect else None}
    print(f"50/s → 150/s: {before:.0f}/s before, {after:.0f}/s after; new rate visible at the "
          f"sink {row['effect_latency_s']} s after `rates set`", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--quick", action="store_true", help="10 s runs, 50/s only, 2 workers")
    parser.add_argument("--skip-fixed", action="store_true", help="only the group and change runs")
    parser.add_argument("--only-fixed", action="store_true", help="only the fixed-rate runs")
    parser.add_argument("--rates", default="50,200", help="the fixed runs' relay limits")
    parser.add_argument("--workers", default="2,4", help="the fixed runs' worker processes")
    parser.add_argument("--threads", type=int, default=4,
                        help="messages in flight per worker process (campaigns worker's default)")
    args = parser.parse_args()
    seconds = 10 if args.quick else args.seconds
    folder = Path(tempfile.mkdtemp(prefix="bench-rates-"))
    with ScriptedSink(keep_data=False) as sink:
        b = Bench(folder, sink)
        b.threads = args.threads
        b.audience("plain", ["bench.test"], int(200 * seconds * 1.3) + 500)
        b.audience("mix", ["gmail.com", "bench.test"], 24000)
        results: dict[str, Any] = {"seconds": seconds, "threads": args.threads,
                                   "load_before": os.getloadavg()}
        if not args.skip_fixed:
            results["fixed"] = fixed_rates(
                b, seconds, [50] if args.quick else [int(r) for r in args.rates.split(",")],
                [2] if args.quick else [int(w) for w in args.workers.split(",")])
        if not args.only_fixed:
            results["domain_group"] = domain_group(b, min(seconds, 30))
            results["rate_change"] = rate_change(b, min(seconds, 30))
        results["load_after"] = os.getloadavg()
        print("load average before/after: %.2f / %.2f" % (results["load_before"][0],
                                                        results["load_after"][0]))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"rates-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
