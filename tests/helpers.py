"""Small builders shared by the pipeline tests."""
from __future__ import annotations

import csv
import email
import email.policy
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import httpx

from campaigns import lifecycle
from campaigns.audience.contacts import import_contacts
from campaigns.content.templates import add_template

HTML = """<html><body>
<p>Ciao {{ contact.first_name }},</p>
<p>il tuo codice è <b>{{ contact.code }}</b>.</p>
<p><a href="{{ unsubscribe_url }}">Cancellati</a></p>
</body></html>
"""


class FakeClock:
    """An injected clock (epoch seconds) that a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_csv(path: Path, rows: Iterable[tuple[str, ...]], header: str = "email,first_name,code") -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    return path


def make_campaign(project, name: str = "c1", n: int = 100, *, prefix: str = "user",  # type: ignore[no-untyped-def]
                  rows: list[tuple[str, ...]] | None = None, html: str = HTML,
                  subject: str = "Offerta per {{ contact.first_name }}", **create_kw) -> list[str]:
    """Import n contacts into list `name`-list, add template `name`-tpl, create the campaign.
    Returns the addresses."""
    rows = rows if rows is not None else [(f"{prefix}{i}@example.test", f"Nome{i}", f"C{i:05d}")
                                          for i in range(n)]
    csv_path = write_csv(project.root / f"{name}.csv", rows)
    db, settings = project.ctx.db, project.ctx.settings
    import_contacts(db, csv_path, f"{name}-list")
    html_path = project.root / f"{name}.html"
    html_path.write_text(html, encoding="utf-8")
    add_template(db, f"{name}-tpl", subject, html_path)
    lifecycle.create_campaign(db, settings, name=name, list_name=f"{name}-list",
                              template=f"{name}-tpl", from_addr="Negozio Più <news@shop.test>",
                              **create_kw)
    return [r[0] for r in rows]


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def ledger(project, name: str) -> dict[str, tuple[str, int]]:  # type: ignore[no-untyped-def]
    """address -> (status, attempts)"""
    from sqlalchemy import select

    from campaigns.models import Delivery
    with project.ctx.db.session() as s:
        cid = lifecycle.get_campaign(s, name).id
        rows = s.execute(select(Delivery.address, Delivery.status, Delivery.attempts)
                         .where(Delivery.campaign_id == cid)).all()
    return {a: (st, n) for a, st, n in rows}


@dataclass
class Served:
    """A running `campaigns serve`: its base URL and port; its output once it stopped."""
    base: str
    port: int
    out: str = ""
    err: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(env: dict[str, str], cwd: Path, command: str = "serve") -> Iterator[Served]:
    """`campaigns serve` (or its alias) as a real process on a free loopback port, up once
    /healthz answers (30 s at most); stopped with SIGTERM when the block ends, its stdout and
    stderr then in the yielded `Served`."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", command, "--listen",
                             f"127.0.0.1:{port}"], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    served = Served(f"http://127.0.0.1:{port}", port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{served.base}/healthz", timeout=1).json()["ok"] is True:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, err = proc.communicate(timeout=10)
                raise AssertionError(f"campaigns {command} did not start:\n{out}\n{err}")
            time.sleep(0.1)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
        served.out, served.err = proc.communicate(timeout=15)


def server_errors(app: Any, key: str, only: set[tuple[str, str]] | None = None,
                  examples: int = 20) -> tuple[list[tuple[str, str, int, str]], int]:
    """schemathesis draws `examples` requests per operation of the app's served
    /api/v1/openapi.json (`only`: (METHOD, path) pairs) and sends them with `key`; returns
    the answers of 500 and above, and how many operations were drawn for."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    errors: list[tuple[str, str, int, str]] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    if only is not None:
        operations = [op for op in operations if (op.method.upper(), op.path) in only]
    for operation in operations:
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            if response.status_code >= 500:
                errors.append((case.method, case.formatted_path, response.status_code,
                               response.text[:300]))
        call()
    return errors, len(operations)


def unseen_in_doubt(project, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The campaign's `in_doubt` rows that the sink never received: only messages in flight
    at a kill may be such. (A row the sink did receive may be `in_doubt` too: sent, its
    answer still waiting for the worker's group commit when the worker was killed.)"""
    counts = project.sink.counts()
    return [a for a, (status, _) in ledger(project, name).items()
            if status == "in_doubt" and a not in counts]
