"""Suppressions have a scope (issue 11 item 3): a complaint about a newsletter stops bulk mail
only, so the same customer's invoice (a transactional campaign) still goes; a hard bounce
stops everything; manual entries are `all` unless told; `list:NAME` stops one list's
campaigns. Checked at launch and at the claim (rows queued before the suppression)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from campaigns import intake, lifecycle
from campaigns.ledger import suppressions
from campaigns.models import Suppression, utcnow
from campaigns.content.tokens import make_return_path
from tests.helpers import ledger, make_campaign
from tests.test_bounces_intake import DOMAIN, _sent_rows, arf, dsn

FAN, GONE, OK = "fan@example.test", "gone@example.test", "ok@example.test"


def scopes(project: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with project.ctx.db.session() as s:
        for row in s.scalars(select(Suppression)):
            out.setdefault(row.address, set()).add(row.scope)
    return out


def test_a_complaint_stops_newsletters_not_invoices_and_a_hard_bounce_stops_both(
        project: Any) -> None:
    project.bounces = {"domain": DOMAIN, "guard_min_sample": 1000}
    project.write_config()
    db, settings = project.ctx.db, project.ctx.settings
    sent = _sent_rows(project, "news1", [FAN, GONE, OK], utcnow() - timedelta(hours=1))
    rows = [(a, "N", "C") for a in (FAN, GONE, OK)]
    make_campaign(project, "invoice", rows=rows[:2], priority="transactional")
    make_campaign(project, "news2", rows=rows)
    # queued before the suppressions: the claim must decide
    project.cli("launch", "invoice")
    project.cli("launch", "news2")

    def verp(address: str) -> list[str]:
        return [make_return_path(settings.secret_key, sent[address], "bounces", DOMAIN)]
    headers = "Subject: news\r\nFrom: news@shop.test\r\n"
    [complaint] = intake.process_message(db, settings, arf(FAN, headers), source="inbound",
                                         envelope_to=verp(FAN))
    [hard] = intake.process_message(db, settings, dsn(GONE, "5.1.1", "550 5.1.1 User unknown",
                                                      headers), source="inbound",
                                    envelope_to=verp(GONE))
    assert (complaint.category, complaint.action) == ("complaint", "suppressed")
    assert (hard.category, hard.action) == ("hard", "suppressed")
    assert scopes(project) == {FAN: {"bulk"}, GONE: {"all"}}
    # launched after them: marked at launch
    make_campaign(project, "news3", rows=rows)
    assert "3 recipients added (2 suppressed)" in project.cli("launch", "news3").stdout
    make_campaign(project, "invoice2", rows=rows[:2], priority="transactional")
    assert "2 recipients added (1 suppressed)" in project.cli("launch", "invoice2").stdout

    project.workers(1)
    for name in ("invoice", "news2", "news3", "invoice2"):
        assert project.wait_status(name)["status"] == "finished", name
    for name in ("invoice", "invoice2"):
        got = ledger(project, name)
        assert got[FAN][0] == "sent" and got[GONE][0] == "suppressed", (name, got)
    for name in ("news2", "news3"):
        got = ledger(project, name)
        assert (got[FAN][0], got[GONE][0], got[OK][0]) == ("suppressed", "suppressed", "sent")
    received = [r.rcpt for r in project.sink.received]
    assert sorted(received) == [FAN, FAN, OK, OK]        # the two invoices, two newsletters

    listed = [line.split()[:3] for line in project.cli("suppressions", "list").stdout.splitlines()]
    assert [FAN, "bulk", "complaint"] in listed and [GONE, "all", "bounce"] in listed, listed


def _launch(project: Any, name: str) -> int:
    """Launch without publishing; the number of rows marked suppressed."""
    report = lifecycle.launch(project.ctx.db, project.ctx.settings, name, lambda *a, **k: None)
    return int(report.suppressed)


def test_manual_scopes_list_scope_export_and_import(project: Any) -> None:
    db = project.ctx.db
    who = "mario@example.test"
    assert project.cli("suppressions", "add", who, "--scope", "list:a-list").stdout.strip() == \
        "suppressed"
    bad = project.cli("suppressions", "add", who, "--scope", "everything", check=False)
    assert bad.returncode != 0 and "list:NAME" in bad.stdout + bad.stderr
    make_campaign(project, "a", rows=[(who, "M", "C")])
    make_campaign(project, "b", rows=[(who, "M", "C")])
    make_campaign(project, "t", rows=[(who, "M", "C")], priority="transactional")
    assert _launch(project, "a") == 1          # its list
    assert _launch(project, "b") == 0          # another list
    assert suppressions.add(db, who, "asked", scope="bulk")
    assert not suppressions.add(db, who, "again", scope="list:b-list")   # bulk covers it
    make_campaign(project, "b2", rows=[(who, "M", "C")])
    assert _launch(project, "b2") == 1 and _launch(project, "t") == 0
    # the default is all: a wider scope is added beside the narrower ones
    assert project.cli("suppressions", "add", who).stdout.strip() == "suppressed"
    assert project.cli("suppressions", "add", who, "--scope", "bulk").stdout.strip() == \
        "already suppressed"
    make_campaign(project, "t2", rows=[(who, "M", "C")], priority="transactional")
    assert _launch(project, "t2") == 1
    assert scopes(project) == {who: {"list:a-list", "bulk", "all"}}

    exported = project.cli("suppressions", "export").stdout.splitlines()
    assert exported[0].split(",")[-1] == "scope"
    assert sorted(line.split(",")[-1] for line in exported[1:]) == ["all", "bulk", "list:a-list"]
    assert project.cli("suppressions", "remove", who, "--scope", "all").stdout.strip() == "removed"
    assert scopes(project) == {who: {"list:a-list", "bulk"}}
    project.cli("suppressions", "remove", who)
    assert scopes(project) == {}
    path = project.root / "back.csv"
    path.write_text("\n".join(exported) + "\nluigi@example.test" + ",x" * 6 + ",stream:x\n"
                    + "anna@example.test" + ",x" * 6 + ",\nbad@example.test" + ",x" * 6
                    + ",nowhere\n", encoding="utf-8")
    done = project.cli("suppressions", "import", str(path), check=False)
    assert "5 suppressed, 0 already suppressed, 1 rows with errors" in done.stdout, done.stdout
    assert f"{path}:7" in done.stdout and "scope" in done.stdout
    assert scopes(project) == {who: {"list:a-list", "bulk", "all"},
                               "luigi@example.test": {"stream:x"},
                               "anna@example.test": {"all"}}
