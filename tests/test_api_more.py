"""The JSON API's deliveries, suppressions export and schedules (issue 13): each through the
same functions as the CLI, with problem+json errors, in-process on a real database and
Redis; and schemathesis on these operations from the served OpenAPI document."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterator

import pytest
from starlette.testclient import TestClient

from campaigns import lifecycle
from campaigns.ledger import suppressions
from campaigns.web.app import create_app
from campaigns.web.keys import create_key
from tests.helpers import make_campaign, server_errors

PROBLEM = "application/problem+json"
NEW = {("GET", "/campaigns/{name}/deliveries"), ("GET", "/suppressions/export"),
       ("GET", "/schedules"), ("POST", "/schedules"), ("POST", "/schedules/{name}/pause"),
       ("POST", "/schedules/{name}/resume"), ("DELETE", "/schedules/{name}"),
       ("GET", "/schedules/{name}/runs")}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(project: Any) -> Iterator[TestClient]:
    with TestClient(create_app(project.ctx, webhooks=False)) as client:
        yield client


def launched(project: Any, name: str, n: int, suppressed: tuple[str, ...] = ()) -> list[str]:
    """A campaign of n recipients launched (rows expanded, tasks dropped): `queued` rows, and
    `suppressed` ones for the addresses suppressed first."""
    addresses = make_campaign(project, name, n)
    for address in suppressed:
        suppressions.add(project.ctx.db, address, "test")
    lifecycle.launch(project.ctx.db, project.ctx.settings, name, lambda ids, countdown, p: None)
    return addresses


def test_deliveries_are_paged_by_id_and_filtered_by_status(project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "reader", ["read"])
    addresses = launched(project, "news", 7, suppressed=("user3@example.test",))
    url = "/api/v1/campaigns/news/deliveries"
    first = api.get(url, params={"limit": 3}, headers=bearer(key))
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 3 and page["next"] == str(page["items"][-1]["id"])
    item = page["items"][0]
    assert set(item) == {"id", "address", "status", "attempts", "reply_code", "enhanced_status",
                         "reply_text", "bounce_category", "bounce_reason", "relay",
                         "provider_message_id", "sent_at", "updated_at"}
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = api.get(url, params=params, headers=bearer(key)).json()
        seen += body["items"]
        cursor = body["next"]
        if cursor is None:
            break
    assert sorted(i["address"] for i in seen) == sorted(addresses)
    assert [i["id"] for i in seen] == sorted(i["id"] for i in seen) and len(seen) == 7
    assert {i["address"]: i["status"] for i in seen}["user3@example.test"] == "suppressed"

    queued = api.get(url, params={"status": "queued", "limit": 500}, headers=bearer(key)).json()
    assert len(queued["items"]) == 6 and queued["next"] is None
    assert {i["status"] for i in queued["items"]} == {"queued"}
    only = api.get(url, params={"status": "suppressed"}, headers=bearer(key)).json()
    assert [i["address"] for i in only["items"]] == ["user3@example.test"]
    assert api.get(url, params={"status": "sent"}, headers=bearer(key)).json() == \
        {"items": [], "next": None}


def test_deliveries_errors_are_problems(project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "reader", ["read"])
    sender, _ = create_key(project.ctx.db, "erp", ["send"])
    launched(project, "news", 2)
    url = "/api/v1/campaigns/news/deliveries"
    r = api.get(url, params={"status": "delivered"}, headers=bearer(key))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["errors"][0]["field"] == "status"
    assert "expected one of queued, sending, sent" in r.json()["errors"][0]["reason"]
    r = api.get("/api/v1/campaigns/nothing/deliveries", headers=bearer(key))
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert "no campaign named 'nothing'" in r.json()["detail"]
    r = api.get(url, params={"cursor": "x1"}, headers=bearer(key))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"
    r = api.get(url, params={"limit": 501}, headers=bearer(key))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.limit"
    r = api.get(url, headers=bearer(sender))
    assert r.status_code == 403 and "lacks the scope 'read'" in r.json()["detail"]
    assert api.get(url).status_code == 401


def test_suppressions_export_is_the_cli_csv_and_formula_safe(project: Any,
                                                             api: TestClient) -> None:
    db = project.ctx.db
    key, _ = create_key(db, "reader", ["read"])
    sender, _ = create_key(db, "erp", ["send"])
    suppressions.add(db, "anna@example.it", '=HYPERLINK("http://evil.test","x")')
    suppressions.add(db, "bruno@example.it", "@SUM(1+1)", scope="bulk")
    suppressions.add(db, "carla@example.it", "asked by phone")
    r = api.get("/api/v1/suppressions/export", headers=bearer(key))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "suppressions.csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == list(suppressions.CSV_COLUMNS)
    by = {row["email"]: row for row in rows}
    assert set(by) == {"anna@example.it", "bruno@example.it", "carla@example.it"}
    assert by["anna@example.it"]["reason"] == '\'=HYPERLINK("http://evil.test","x")'
    assert by["bruno@example.it"]["reason"] == "'@SUM(1+1)"
    assert by["bruno@example.it"]["scope"] == "bulk"
    assert by["carla@example.it"]["reason"] == "asked by phone"
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    # the same bytes as the CLI's export
    cli = project.cli("suppressions", "export").stdout
    assert cli.replace("\r\n", "\n") == r.text.replace("\r\n", "\n")

    # not swallowed by /suppressions/{address}: registered before it, export is a GET of
    # its own, and a DELETE of "export" still reaches the address route (not an address)
    assert api.get("/api/v1/suppressions/export", headers=bearer(sender)).status_code == 403
    fastapi_app = api.app.app.routes[0].app  # type: ignore[attr-defined]  # Guard → Mount
    paths = [r.path for r in fastapi_app.routes]
    assert paths.index("/suppressions/export") < paths.index("/suppressions/{address}")
    manager, _ = create_key(db, "ops", ["manage"])
    r = api.delete("/api/v1/suppressions/export", headers=bearer(manager))
    assert r.status_code in (404, 422) and r.headers["content-type"] == PROBLEM, r.text
    r = api.delete("/api/v1/suppressions/carla@example.it", headers=bearer(manager))
    assert r.status_code == 204
    r = api.get("/api/v1/suppressions/export", headers=bearer(key))
    assert "carla@example.it" not in r.text


def test_schedule_create_list_pause_resume_runs_delete(project: Any, api: TestClient) -> None:
    db = project.ctx.db
    key, _ = create_key(db, "ops", ["read", "manage"])
    reader, _ = create_key(db, "reader", ["read"])
    make_campaign(project, "news", 2)
    body = {"name": "weekly", "template": "news-tpl", "list": "news-list",
            "from": "Negozio <news@shop.test>", "cron": "0 9 * * mon",
            "timezone": "Europe/Rome", "window": "mon-fri 08:00-18:00"}
    r = api.post("/api/v1/schedules", json=body, headers=bearer(reader))
    assert r.status_code == 403 and "lacks the scope 'manage'" in r.json()["detail"]
    r = api.post("/api/v1/schedules", json=body, headers=bearer(key))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "weekly" and created["paused"] is False and created["runs"] == 0
    assert created["next_run"].endswith(("+01:00", "+02:00")) and "T09:00" in created["next_run"]
    r = api.post("/api/v1/schedules", json=body, headers=bearer(key))
    assert r.status_code == 409 and "already exists" in r.json()["detail"]

    listed = api.get("/api/v1/schedules", headers=bearer(reader)).json()
    assert listed == [created]
    assert json.loads(project.cli("schedules", "list", "--json").stdout) == listed

    r = api.post("/api/v1/schedules/weekly/pause", headers=bearer(reader))
    assert r.status_code == 403
    r = api.post("/api/v1/schedules/weekly/pause", headers=bearer(key))
    assert r.status_code == 200 and r.json()["paused"] is True
    shown = api.get("/api/v1/schedules", headers=bearer(key)).json()[0]
    assert shown["paused"] is True and shown["next_run"] is None
    r = api.post("/api/v1/schedules/weekly/resume", headers=bearer(key))
    assert r.status_code == 200 and r.json()["paused"] is False
    assert api.get("/api/v1/schedules", headers=bearer(key)).json()[0]["next_run"]
    assert api.get("/api/v1/schedules/weekly/runs", headers=bearer(reader)).json() == []

    assert api.delete("/api/v1/schedules/weekly", headers=bearer(reader)).status_code == 403
    assert api.delete("/api/v1/schedules/weekly", headers=bearer(key)).status_code == 204
    assert api.get("/api/v1/schedules", headers=bearer(key)).json() == []
    for method, path in (("post", "/schedules/weekly/pause"), ("post", "/schedules/weekly/resume"),
                         ("delete", "/schedules/weekly"), ("get", "/schedules/weekly/runs")):
        r = api.request(method.upper(), "/api/v1" + path, headers=bearer(key))
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM, (path, r.text)
        assert "no schedule named 'weekly'" in r.json()["detail"]


@pytest.mark.parametrize("change,field,words", [
    ({"cron": "0 9 * *"}, "cron", "expected 5 fields"),
    ({"cron": "61 9 * * mon"}, "cron", "outside 0-59"),
    ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
    ({"from": "not an address"}, "from", "expected 'user@example.com'"),
    ({"reply_to": "nope"}, "reply_to", "expected 'user@example.com'"),
    ({"window": "someday"}, "window", "not understood"),
    ({"priority": "urgent"}, "priority", "expected one of bulk, transactional"),
    ({"data_url": "ftp://x.test/a.json"}, "data_url", "expected an http://"),
    ({"relay": "nowhere"}, "relay", "nowhere"),
    ({"name": "a\x00b"}, "name", "control characters"),
])
def test_a_bad_schedule_is_a_422_naming_the_field(project: Any, api: TestClient,
                                                 change: dict[str, str], field: str,
                                                 words: str) -> None:
    key, _ = create_key(project.ctx.db, "ops", ["read", "manage"])
    make_campaign(project, "news", 1)
    body = {"name": "weekly", "template": "news-tpl", "list": "news-list",
            "from": "news@shop.test", "cron": "0 9 * * mon", "timezone": "Europe/Rome"} | change
    r = api.post("/api/v1/schedules", json=body, headers=bearer(key))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    problem = r.json()
    assert problem["errors"][0]["field"] == field and words in problem["detail"], problem
    assert api.get("/api/v1/schedules", headers=bearer(key)).json() == []


def test_a_schedule_of_an_unknown_template_or_list_is_404_and_a_missing_field_422(
        project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "ops", ["read", "manage"])
    make_campaign(project, "news", 1)
    body = {"name": "weekly", "template": "news-tpl", "list": "news-list",
            "from": "news@shop.test", "cron": "0 9 * * mon", "timezone": "UTC"}
    r = api.post("/api/v1/schedules", json=body | {"template": "gone"}, headers=bearer(key))
    assert r.status_code == 404 and "no template named 'gone'" in r.json()["detail"]
    r = api.post("/api/v1/schedules", json=body | {"list": "gone"}, headers=bearer(key))
    assert r.status_code == 404
    r = api.post("/api/v1/schedules", json={k: v for k, v in body.items() if k != "cron"},
                 headers=bearer(key))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cron"


def test_the_new_operations_are_documented_and_never_answer_a_server_error(
        project: Any) -> None:
    """schemathesis draws requests for the operations above from /api/v1/openapi.json (20 per
    operation) and sends them with a key of every scope to the real app."""
    key, _ = create_key(project.ctx.db, "fuzz", ["send", "read", "manage"], 10_000)
    launched(project, "news", 3, suppressed=("user1@example.test",))
    suppressions.add(project.ctx.db, "x@example.test", "-1+2")
    app = create_app(project.ctx, lambda ids, countdown, priority: None, webhooks=False)
    with TestClient(app) as client:
        doc = client.get("/api/v1/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert NEW <= documented
    errors, drawn = server_errors(app, key, only=NEW)
    assert drawn == len(NEW) and errors == []
