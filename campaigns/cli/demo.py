"""`campaigns demo`: a real campaign end to end on embedded defaults — SQLite, the embedded
Redis, a local SMTP sink that bounces some addresses (550) and defers others once (451),
2,000 generated contacts (a few invalid), two worker processes."""
from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from campaigns import embedded_redis, lifecycle
from campaigns.audience.contacts import import_contacts
from campaigns.context import open_context
from campaigns.settings import load_settings
from campaigns.cli.sink import DEMO_RULES, ScriptedSink
from campaigns.content.templates import add_template
from campaigns.workerproc import WorkerGroup

FIRST = ["Giulia", "Niccolò", "Marco", "Chiara", "Luca", "Francesca", "Andrea", "Sofia", "José"]
CITIES = ["Roma", "Milano", "Forlì", "Cantù", "Napoli", "Torino", "Bologna"]
INVALID = ["mario.rossi@", "no-at-sign.example.it", "two@@example.it", "spazio in@mezzo.it"]

HTML = """<html><body>
<h1>Ciao {{ contact.first_name }}!</h1>
<p>Le offerte di Natale sono arrivate anche a {{ contact.city }}: sconti più alti, fino al 40%.</p>
<p>Scopri il catalogo: <a href="https://shop.example.it/natale?c={{ campaign.name }}">catalogo di Natale</a></p>
<p style="font-size:small">Non vuoi più ricevere queste e-mail?
<a href="{{ unsubscribe_url }}">Cancellati qui</a>.</p>
</body></html>
"""


def _write_inputs(folder: Path, count: int) -> tuple[Path, Path]:
    rng = random.Random(2026)
    rows = ["email;first_name;city"]
    for i in range(count - len(INVALID)):
        prefix = "bounce" if i % 97 == 5 else "defer" if i % 89 == 7 else "cliente"
        rows.append(f"{prefix}{i}@example.it;{rng.choice(FIRST)};{rng.choice(CITIES)}")
    rows += [f"{bad};Anna;Roma" for bad in INVALID]
    csv_path, html_path = folder / "clienti.csv", folder / "natale.html"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    html_path.write_text(HTML, encoding="utf-8")
    return csv_path, html_path


def _config(folder: Path, port: int) -> Path:
    path = folder / "campaigns.toml"
    path.write_text(f"""default_relay = "sink"
unsubscribe_url = "https://news.example.it/unsubscribe/"

[sending]
retry_base_s = 1
max_attempts = 4

[relays.sink]
kind = "smtp"
host = "127.0.0.1"
port = {port}
security = "none"
timeout_s = 10
""", encoding="utf-8")
    return path


def run_demo(*, count: int, workers: int, follow: Callable[..., dict[str, Any]],
             enqueue: Callable[..., None] | None = None, timeout_s: float = 180.0) -> int:
    """`follow(db, name, timeout_s=…)`: the progress display of `campaigns status`."""
    from campaigns.cli.common import enqueue_fn, out
    base = load_settings().data_dir / "demo"
    if embedded_redis.is_running(base):
        embedded_redis.stop(base)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    started = time.monotonic()
    sink = ScriptedSink(rules=DEMO_RULES, store_dir=base / "received").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(CAMPAIGNS_DATA_DIR=str(base), CAMPAIGNS_CONFIG=str(_config(base, sink.port)))
    for key in [k for k in os.environ if k.startswith("CAMPAIGNS_")]:
        del os.environ[key]
    os.environ.update(env)  # the enqueue function's Celery app reads the same settings
    group = None
    # a SIGTERM stops the demo like Ctrl-C: the finally below stops workers, sink and Redis
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        c = open_context(load_settings(env))
        out.print(f"demo data dir {base} (database, config, received mail); embedded Redis "
                  f"at {embedded_redis.socket_path(base)}; SMTP sink on 127.0.0.1:{sink.port}",
                  markup=False)
        csv_path, html_path = _write_inputs(base, count)
        report = import_contacts(c.db, csv_path, "clienti")
        for row_error in report.errors:
            out.print(f"  skipped {row_error}", markup=False)
        out.print(f"imported {report.imported} contacts ({len(report.errors)} invalid rows)")
        add_template(c.db, "natale", "Offerte di Natale per {{ contact.first_name }}: sconti più alti!",
                     html_path)
        lifecycle.create_campaign(c.db, c.settings, name="natale-2026", list_name="clienti",
                                  template="natale", from_addr="Negozio Più Bello <news@example.it>")
        group = WorkerGroup(workers, queue=c.settings.worker_queues, env=env).start()
        launched = lifecycle.launch(c.db, c.settings, "natale-2026", enqueue or enqueue_fn())
        out.print(f"launched: {launched.queued} messages queued, {workers} worker processes")
        snapshot = follow(c.db, "natale-2026", timeout_s=timeout_s)
        k = snapshot["counts"]
        out.print(f"done in {time.monotonic() - started:.1f} s: sent {k['sent']}, bounced "
                  f"{k['bounced']}, deferred→sent after retry {sink_retried(sink)}, failed "
                  f"{k['failed']}, in doubt {k['in_doubt']}")
        out.print(f"the sink received {len(sink.received)} messages: {base / 'received'}")
        out.print(next_steps(base), markup=False)
        return 0 if snapshot["status"] == "finished" and k["sent"] == len(sink.received) else 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if group:
            group.stop()
        sink.stop()
        embedded_redis.stop(base)


def next_steps(base: Path) -> str:
    """What to try next on the demo's campaign, with the environment that reaches its data."""
    data_dir = base.resolve()
    command = _cli_command()
    lines = ["try next, on the demo's campaign:",
             f"  export CAMPAIGNS_DATA_DIR={shlex.quote(str(data_dir))} "
             f"CAMPAIGNS_CONFIG={shlex.quote(str(data_dir / 'campaigns.toml'))}"]
    lines += [f"  {command} {args}" for args in ("status natale-2026", "bounces report natale-2026",
                                                 "relays list", "contacts lists")]
    return "\n".join(lines)


def _cli_command() -> str:
    """The command as this person can type it: `.venv/bin/campaigns` after `make demo`,
    `campaigns` when that is on the PATH (or when run as `python -m workers.cli`)."""
    script = Path(sys.argv[0]).resolve()
    on_path = shutil.which("campaigns")
    if script.name != "campaigns" or (on_path and Path(on_path).resolve() == script):
        return "campaigns"
    try:
        return shlex.quote(str(script.relative_to(Path.cwd().resolve())))
    except ValueError:
        return shlex.quote(str(script))


def _interrupted(*_: object) -> None:
    raise KeyboardInterrupt


def sink_retried(sink: ScriptedSink) -> int:
    return sum(1 for r in sink.received if r.rcpt.startswith("defer"))
