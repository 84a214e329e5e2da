"""`campaigns contacts import` at database speed: N contacts from one CSV, timed end to end.

Generates a CSV of N contacts (email plus four attribute columns: first name, city, code,
signup date; about 1 % of the rows repeat an earlier address and 0.1 % are invalid) and runs
the real command, `campaigns contacts import FILE --list bench`, in a subprocess (start-up,
migrations, the file's scan and every batch included) on PostgreSQL (its own database
`campaigns_bench_import` on 127.0.0.1:5432, created and dropped) and on SQLite (a fresh file).
Then imports the same file again (every address exists: the update path). Run:

    .venv/bin/python bench/import_contacts.py [--rows 1000000] [--db postgresql,sqlite]
                                              [--profile 100000]

Prints seconds and rows/s; writes bench/results/import-<db>.json. `--profile N` instead runs
an import of N rows in this process under cProfile on SQLite and prints the top functions.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_DB = "campaigns_bench_import"
CITIES = ["Roma", "Milano", "Forlì", "Bologna", "Cefalù", "Torino", "Napoli", "Bari"]
DOMAINS = [f"example{i}.com" for i in range(40)] + ["gmail.com", "libero.it", "shop.test"]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "first_name", "city", "code", "signup"])
        for i in range(rows):
            n = rnd.randrange(i) if i > 100 and rnd.random() < 0.01 else i
            email = f"User.{n}@{DOMAINS[n % len(DOMAINS)]}"
            if rnd.random() < 0.001:
                email = f"broken.{i}.example.com"
            writer.writerow([email, f"Nome{n}", CITIES[n % len(CITIES)], f"C{n:07d}",
                             f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}"])


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_import(csv_path: Path, url: str, data_dir: Path) -> dict[str, object]:
    env = {**os.environ, "CAMPAIGNS_DATABASE_URL": url, "CAMPAIGNS_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).with_name("campaigns")), "contacts",
                           "import", str(csv_path), "--list", "bench"],
                          env=env, capture_output=True, text=True, cwd=data_dir)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"import failed: {proc.stderr[-2000:]}")
    return {"seconds": round(seconds, 2), "summary": proc.stdout.strip().splitlines()[-1],
            "rejected_lines": len(proc.stderr.splitlines()), "load": _uptime()}


def _pg(admin_sql: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(admin_sql))
    engine.dispose()


def bench(db: str, csv_path: Path, rows: int, folder: Path) -> dict[str, object]:
    if db == "postgresql":
        _pg(f"DROP DATABASE IF EXISTS {PG_DB}")
        _pg(f"CREATE DATABASE {PG_DB}")
        url = f"{PG_SERVER}/{PG_DB}"
    else:
        url = f"sqlite:///{folder / 'bench.db'}"
    try:
        first = run_import(csv_path, url, folder)
        again = run_import(csv_path, url, folder)
    finally:
        if db == "postgresql":
            _pg(f"DROP DATABASE IF EXISTS {PG_DB}")
    result = {"db": db, "rows": rows, "first": first, "reimport": again,
              "rows_per_s": round(rows / float(first["seconds"])),  # type: ignore[arg-type]
              "reimport_rows_per_s": round(rows / float(again["seconds"])),  # type: ignore[arg-type]
              "cpus": os.cpu_count()}
    print(f"{db}: {rows:,} rows in {first['seconds']} s ({result['rows_per_s']:,} rows/s); "
          f"again (all existing) {again['seconds']} s; {first['summary']}; load: {first['load']}")
    return result


def profile(rows: int, folder: Path) -> None:
    import cProfile
    import pstats

    from campaigns.audience.contacts import import_contacts
    from campaigns.db import Database
    from campaigns.settings import load_settings

    csv_path = folder / "profile.csv"
    generate(csv_path, rows)
    db = Database(load_settings({"CAMPAIGNS_DATA_DIR": str(folder),
                                 "CAMPAIGNS_DATABASE_URL": os.environ.get(
                                     "BENCH_PROFILE_URL", f"sqlite:///{folder / 'p.db'}")}))
    with cProfile.Profile() as prof:
        import_contacts(db, csv_path, "profile")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default="postgresql,sqlite")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        if args.profile:
            profile(args.profile, folder)
            return
        csv_path = folder / "contacts.csv"
        started = time.perf_counter()
        generate(csv_path, args.rows)
        print(f"generated {args.rows:,} rows ({csv_path.stat().st_size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - started:.1f} s")
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        for db in args.db.split(","):
            result = bench(db, csv_path, args.rows, folder)
            (out / f"import-{db}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
