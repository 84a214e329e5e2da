"""Issue 11: what the CLI says (bounce report, help texts, relaunch, a missing config)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from campaigns import intake, lifecycle
from campaigns.audience.contacts import import_contacts
from campaigns.bounces import BounceReport
from campaigns.models import Delivery
from tests.helpers import make_campaign, write_csv


def test_bounce_report_groups_diagnostics_that_differ_only_by_address(project: Any) -> None:
    addresses = [f"gone{i}@example.test" for i in range(10)]
    make_campaign(project, "masked", rows=[(a, "N", "C") for a in addresses])
    lifecycle.launch(project.ctx.db, project.ctx.settings, "masked", lambda *a, **k: None)
    with project.ctx.db.session() as s:
        s.execute(update(Delivery).values(status="sent"))
        ids = dict(s.execute(select(Delivery.address, Delivery.id)).all())
    hard = BounceReport.of("userunknown")
    for i, address in enumerate(addresses):
        text = (f"host mx.example.test said: 550 5.1.1 <{address}>: Recipient address "
                "rejected: User unknown" if i < 9 else f"{address}: mailbox {address} disabled")
        report = BounceReport(hard.category, hard.permanent, hard.reason, recipient=address,
                              status="5.1.1", diagnostic=text)
        intake.apply(project.ctx.db, project.ctx.settings, report, source="file",
                     delivery_id=ids[address], key=f"k{i}", address=address)
    data = json.loads(project.cli("bounces", "report", "masked", "--json").stdout)
    assert data["top_diagnostics"] == [
        {"text": "host mx.example.test said: 550 5.1.1 <address>: Recipient address rejected:"
                 " User unknown", "count": 9},
        {"text": "<address>: mailbox <address> disabled", "count": 1}]
    text = project.cli("bounces", "report", "masked").stdout
    assert "gone3@example.test" not in text and "    9  host mx.example.test" in text


def test_launch_of_a_sending_campaign_says_already_sending_with_its_queued_rows(project: Any) -> None:
    make_campaign(project, "twice", 10)
    first = project.cli("launch", "twice").stdout     # no worker: the rows stay queued
    assert "launched: 10 recipients added (0 suppressed), 10 queued for sending" in first
    again = project.cli("launch", "twice").stdout
    assert again.strip() == "campaign 'twice' already sending: 10 queued"
    more = write_csv(project.root / "more.csv", [("late1@example.test", "L", "1"),
                                                 ("late2@example.test", "L", "2")])
    import_contacts(project.ctx.db, more, "twice-list")
    grown = project.cli("launch", "twice").stdout
    assert grown.strip() == ("campaign 'twice' already sending: 12 queued; "
                             "2 recipients added (0 suppressed)")


def _run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_without_a_config_the_error_says_where_it_looked_and_names_campaigns_config(
        project: Any, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in project.env.items() if k != "CAMPAIGNS_CONFIG"}
    env["CAMPAIGNS_DATA_DIR"] = str(elsewhere / "data")
    csv_path = write_csv(elsewhere / "l.csv", [("a@example.test", "A", "1")])
    (elsewhere / "t.html").write_text("<p>hi</p>", encoding="utf-8")
    assert _run("contacts", "import", str(csv_path), "--list", "l", cwd=elsewhere,
                env=env).returncode == 0
    assert _run("templates", "add", "t", "--subject", "s", "--html", "t.html", cwd=elsewhere,
                env=env).returncode == 0
    create = ("create", "c", "--list", "l", "--template", "t", "--from", "x@example.test")
    proc = _run(*create, cwd=elsewhere, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert f"looked for {elsewhere / 'campaigns.toml'}, {elsewhere / 'data' / 'campaigns.toml'}" \
        in message, message
    assert "CAMPAIGNS_CONFIG=" in message
    # a config in the data dir is found without CAMPAIGNS_CONFIG
    (elsewhere / "data" / "campaigns.toml").write_bytes(
        (project.root / "campaigns.toml").read_bytes())
    assert _run(*create, cwd=elsewhere, env=env).returncode == 0


def test_help_texts_keep_section_names_and_describe_every_command(project: Any) -> None:
    env = {**project.env, "COLUMNS": "200"}
    serve = _run("bounces", "serve", "--help", cwd=project.root, env=env).stdout
    assert "HOST:PORT (default [bounces] listen)" in serve and "default [bounces] domain" in serve
    assert "[bounces.imap] mailbox" in _run("bounces", "poll", "--help", cwd=project.root,
                                             env=env).stdout
    assert "`[schedules] tick_s`" in _run("beat", "--help", cwd=project.root, env=env).stdout
    for group, commands in (("suppressions", ("add", "remove")), ("templates", ("list",))):
        listing = _run(group, "--help", cwd=project.root, env=env).stdout
        for command in commands:
            line = next(li for li in listing.splitlines() if f"│ {command} " in li)
            assert line.strip("│ ").removeprefix(command).strip(), (group, command, line)
