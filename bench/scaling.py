"""Worker scaling: 1, 2, 4 worker processes x 1, 4, 16 messages in flight per process.

Each combination runs `bench/throughput.py`'s pipeline (N recipients, real Redis, the
aiosmtpd sink in its own process, one sink for the whole run) on each database, in turn,
with the 1-minute load average before and after each. Run:

    .venv/bin/python bench/scaling.py [--messages 5000] [--db sqlite,postgresql]
                                      [--processes 1,2,4] [--threads 1,4,16] [--message small]

Prints a table of messages/s; writes bench/results/scaling-*.json.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from throughput import MESSAGES, PG_URL, ROOT, pg_available, run_pipeline, start_sink


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--threads", default="1,4,16")
    parser.add_argument("--message", choices=sorted(MESSAGES), default="small")
    args = parser.parse_args()
    sink, port = start_sink("aiosmtpd")
    rows: list[dict[str, object]] = []
    try:
        for db in args.db.split(","):
            for procs in map(int, args.processes.split(",")):
                for threads in map(int, args.threads.split(",")):
                    if db == "postgresql" and not pg_available():
                        print("PostgreSQL not reachable: skipped")
                        break
                    url = PG_URL if db == "postgresql" else f"sqlite:///{tempfile.mkdtemp()}/bench.db"
                    before = os.getloadavg()[0]
                    r = run_pipeline(url, port, args.messages, procs, None, threads, args.message)
                    row = {"db": db, "processes": procs, "threads": threads, "rate": r["rate"],
                           "sent": r["sent"], "load_before": before,
                           "load_after": os.getloadavg()[0]}
                    rows.append(row)
                    print(f"{db:10s} {procs} x {threads:2d}: {r['rate']:6.0f} msg/s "
                          f"(load {before:.1f} -> {row['load_after']:.1f})", flush=True)
    finally:
        sink.terminate()
        sink.wait()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"scaling-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps({"messages": args.messages, "message": args.message, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
