"""Issue 13, first part: `campaigns serve`, API keys with scopes and rates, the JSON API for
campaigns and suppressions with problem+json errors, the OpenAPI document made from the
handlers' declarations, the body cap and the access log. In-process (Starlette's TestClient
on the real app, a real database and Redis) and as a real `campaigns serve` process with
real workers."""
from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from campaigns.errors import InputError, NotFound, StateError
from campaigns.models import ApiKey
from campaigns.web.app import create_app
from campaigns.web.keys import authenticate, create_key, list_keys, revoke_key
from tests.helpers import make_campaign, server_errors, serving

PROBLEM = "application/problem+json"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(project: Any) -> Iterator[TestClient]:
    with TestClient(create_app(project.ctx, webhooks=False)) as client:
        yield client


def test_a_key_is_shown_once_and_stored_only_as_its_hash(project: Any) -> None:
    db = project.ctx.db
    key, info = create_key(db, "erp", ["send", "read"], 5)
    assert key.startswith("ck_") and len(key) >= 40 and info.scopes == ("send", "read")
    with db.session() as s:
        row = s.scalars(select(ApiKey)).one()
        stored = " ".join(str(v) for v in (row.name, row.prefix, row.key_hash, row.scopes))
    assert key not in stored and key[7:] not in stored
    assert authenticate(db, key) is not None and authenticate(db, key + "x") is None
    assert authenticate(db, "not-a-key") is None
    with pytest.raises(StateError, match="exists"):
        create_key(db, "erp", ["read"])
    with pytest.raises(InputError, match="'admin': a scope is one of send, read, manage"):
        create_key(db, "other", ["admin"])
    assert [k.name for k in list_keys(db)] == ["erp"]
    revoke_key(db, "erp")
    assert authenticate(db, key) is None
    with pytest.raises(NotFound):
        revoke_key(db, "nobody")


def test_keys_cli_never_lists_a_key(project: Any) -> None:
    created = project.cli("keys", "create", "ops", "--scope", "read", "--scope", "manage").stdout
    key = next(line for line in created.splitlines() if line.startswith("ck_"))
    listed = project.cli("keys", "list").stdout
    assert "ops" in listed and "read,manage" in listed and key not in listed
    bad = project.cli("keys", "create", "x", "--scope", "everything", check=False)
    assert bad.returncode == 1 and "a scope is one of send, read, manage" in bad.stderr
    assert "revoked" in project.cli("keys", "revoke", "ops").stdout
    assert "revoked" in project.cli("keys", "list").stdout


def test_authentication_scopes_and_errors_are_problem_json(project: Any, api: TestClient) -> None:
    db = project.ctx.db
    reader, _ = create_key(db, "reader", ["read"])
    revoked, _ = create_key(db, "old", ["read", "manage"])
    revoke_key(db, "old")
    make_campaign(project, "news", 3)

    r = api.get("/api/v1/campaigns")
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
    assert r.headers["www-authenticate"] == "Bearer" and r.json()["title"] == "unauthorized"
    assert api.get("/api/v1/campaigns", headers=bearer(reader + "x")).status_code == 401
    assert api.get("/api/v1/campaigns", headers=bearer(revoked)).status_code == 401
    r = api.post("/api/v1/campaigns/news/pause", headers=bearer(reader))
    assert r.status_code == 403 and "lacks the scope 'manage'" in r.json()["detail"]

    r = api.get("/api/v1/campaigns/nothing", headers=bearer(reader))
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = api.get("/api/v1/campaigns", params={"limit": 0}, headers=bearer(reader))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.limit"
    r = api.get("/api/v1/campaigns", params={"cursor": "abc"}, headers=bearer(reader))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"
    snap = api.get("/api/v1/campaigns/news", headers=bearer(reader)).json()
    assert snap["status"] == "draft" and snap["counts"]["queued"] == 0


def test_campaigns_are_paged_and_managed_through_the_same_functions(project: Any,
                                                                     api: TestClient) -> None:
    manager, _ = create_key(project.ctx.db, "ops", ["read", "manage"])
    for name in ("a", "b", "c"):
        make_campaign(project, name, 2)
    first = api.get("/api/v1/campaigns", params={"limit": 2}, headers=bearer(manager)).json()
    assert [c["name"] for c in first["items"]] == ["a", "b"] and first["next"]
    rest = api.get("/api/v1/campaigns", params={"limit": 2, "cursor": first["next"]},
                   headers=bearer(manager)).json()
    assert [c["name"] for c in rest["items"]] == ["c"] and rest["next"] is None
    r = api.post("/api/v1/campaigns/a/pause", headers=bearer(manager))
    assert r.status_code == 409 and "is draft" in r.json()["detail"]
    r = api.post("/api/v1/campaigns/a/cancel", headers=bearer(manager))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert project.cli("status", "a", "--json", "--once").returncode == 0
    assert json.loads(project.cli("status", "a", "--json").stdout)["status"] == "cancelled"
    r = api.post("/api/v1/campaigns/b/launch", headers=bearer(manager))
    assert r.status_code == 503      # this app was given no task queue: nothing half-done
    assert api.get("/api/v1/campaigns/b", headers=bearer(manager)).json()["status"] == "draft"


def test_suppressions_add_list_remove(project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "ops", ["read", "manage"])
    r = api.post("/api/v1/suppressions", json={"address": " Anna@Example.IT ", "scope": "bulk",
                                                 "reason": "asked by phone"},
                 headers=bearer(key))
    assert r.status_code == 201 and r.json() == {"address": "anna@example.it", "scope": "bulk",
                                                  "added": True}
    again = api.post("/api/v1/suppressions", json={"address": "anna@example.it",
                                                     "scope": "bulk"}, headers=bearer(key))
    assert again.json()["added"] is False
    items = api.get("/api/v1/suppressions", headers=bearer(key)).json()["items"]
    assert items[0]["address"] == "anna@example.it" and items[0]["source"] == "api:ops"
    r = api.post("/api/v1/suppressions", json={"address": "x@example.it", "scope": "galaxy"},
                 headers=bearer(key))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "scope"
    r = api.post("/api/v1/suppressions", content=b"{not json", headers={
        **bearer(key), "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["title"] == "malformed JSON"
    r = api.post("/api/v1/suppressions", json={"address": 5}, headers=bearer(key))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "address"
    assert api.delete("/api/v1/suppressions/anna@example.it", headers=bearer(key)).status_code == 204
    assert api.delete("/api/v1/suppressions/anna@example.it", headers=bearer(key)).status_code == 404


def test_a_key_past_its_rate_gets_429_with_retry_after(project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "slow", ["read"], rate_per_s=0.2)
    assert api.get("/api/v1/campaigns", headers=bearer(key)).status_code == 200
    r = api.get("/api/v1/campaigns", headers=bearer(key))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_the_body_cap_refuses_before_reading(project: Any) -> None:
    project.extra_toml = "[web]\nmax_body_bytes = 2048\n"
    project.write_config()
    key, _ = create_key(project.ctx.db, "ops", ["manage"])
    with TestClient(create_app(project.ctx, webhooks=False)) as api:
        r = api.post("/api/v1/suppressions", json={"address": "a@b.it", "reason": "x" * 5000},
                     headers=bearer(key))
        assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
        assert "at most 2048 bytes" in r.json()["detail"]


def test_openapi_is_the_served_routes(api: TestClient) -> None:
    doc = api.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert {"/campaigns", "/campaigns/{name}", "/campaigns/{name}/launch",
            "/campaigns/{name}/pause", "/campaigns/{name}/resume", "/campaigns/{name}/cancel",
            "/campaigns/{name}/bounces", "/suppressions", "/suppressions/{address}", "/rates",
            "/rates/{target}", "/rates/{target}/reset", "/relays", "/relays/{name}/check",
            "/templates", "/templates/{name}", "/templates/{name}/preview",
            "/schedules", "/lists", "/lists/{name}/contacts",
            "/lists/{name}/contacts.csv", "/campaigns/{name}/deliveries",
            "/suppressions/export", "/schedules/{name}", "/schedules/{name}/pause",
            "/schedules/{name}/resume", "/schedules/{name}/runs", "/messages",
            "/messages/{message_id}"} == set(doc["paths"])
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    fastapi_app = api.app.app.routes[0].app  # type: ignore[attr-defined]  # Guard → Mount
    served = {(r.path, m) for r in fastapi_app.routes for m in getattr(r, "methods", ())
              if r.path != "/openapi.json"}
    documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented


def test_rates_relays_templates_and_bounce_report_mirror_the_cli(project: Any,
                                                                  api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "ops", ["read", "manage"])
    make_campaign(project, "news", 2)
    r = api.put("/api/v1/rates/relay:sink", json={"rate": "3000/min", "daily_cap": 500},
                headers=bearer(key))
    assert r.status_code == 200 and r.json()["rate_per_s"] == 50.0
    shown = {row["target"]: row for row in json.loads(project.cli("rates", "show", "--json").stdout)}
    assert shown["relay:sink"]["rate_per_s"] == 50.0 and shown["relay:sink"]["daily_cap"] == 500
    rows = {row["target"]: row for row in api.get("/api/v1/rates", headers=bearer(key)).json()}
    assert rows["relay:sink"]["rate_per_s"] == 50.0
    r = api.put("/api/v1/rates/galaxy:far", json={"rate": "5/s"}, headers=bearer(key))
    assert r.status_code == 422 and "a target is relay:NAME" in r.json()["detail"]
    r = api.put("/api/v1/rates/relay:sink", json={"rate": "fast"}, headers=bearer(key))
    assert r.status_code == 422
    assert api.delete("/api/v1/rates/relay:sink", headers=bearer(key)).json()["changed"] is True
    assert api.post("/api/v1/rates/relay:sink/reset", headers=bearer(key)).json()["changed"] is False

    relays = api.get("/api/v1/relays", headers=bearer(key)).json()
    assert relays[0]["name"] == "sink" and relays[0]["default"] is True
    check = api.post("/api/v1/relays/sink/check", headers=bearer(key))
    assert check.status_code == 200 and check.json()["ok"] is True, check.text
    assert api.post("/api/v1/relays/nope/check", headers=bearer(key)).status_code == 404
    assert [t["name"] for t in api.get("/api/v1/templates", headers=bearer(key)).json()] == \
        ["news-tpl"]
    assert api.get("/api/v1/schedules", headers=bearer(key)).json() == []
    report = api.get("/api/v1/campaigns/news/bounces", headers=bearer(key))
    assert report.status_code == 200 and report.json()["campaign"] == "news"


def test_a_real_serve_process_launches_a_campaign_and_logs_no_key(project: Any) -> None:
    make_campaign(project, "live", 5)
    created = project.cli("keys", "create", "ops", "--scope", "read", "--scope", "manage").stdout
    key = next(line for line in created.splitlines() if line.startswith("ck_"))
    with serving(project.env, project.root) as served:
        base = served.base
        project.workers(1)
        r = httpx.post(f"{base}/api/v1/campaigns/live/launch", headers=bearer(key), timeout=30)
        assert r.status_code == 200 and "5 recipients added" in r.json()["detail"], r.text
        snap = project.wait_status("live", timeout_s=60)
        assert snap["counts"]["sent"] == 5 and project.sink.wait_for(5, timeout_s=10)
        again = httpx.post(f"{base}/api/v1/campaigns/live/launch", headers=bearer(key),
                           timeout=30)    # a retried call sends nothing twice
        assert again.status_code == 409 and "is finished" in again.json()["detail"]
        assert len(project.sink.received) == 5
    out, err = served.out, served.err
    assert "POST /api/v1/campaigns/live/launch 200" in err and "ops" in err
    assert key not in out + err and key[7:] not in out + err


def test_generated_requests_from_the_served_openapi_never_get_a_server_error(
        project: Any) -> None:
    """schemathesis draws requests from /api/v1/openapi.json (bounded: 20 per operation) and
    sends them, with a key of every scope, to the real app on a real database."""
    key, _ = create_key(project.ctx.db, "fuzz", ["send", "read", "manage"], 10_000)
    make_campaign(project, "news", 2)
    published: list[int] = []
    app = create_app(project.ctx, lambda ids, countdown, priority: published.extend(ids),
                     webhooks=False)
    errors, drawn = server_errors(app, key)
    assert drawn == 35 and errors == []


def test_contacts_in_json_and_csv_go_through_the_importer(project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "ops", ["read", "manage"])
    r = api.post("/api/v1/lists/clienti/contacts", headers=bearer(key), json={"contacts": [
        {"email": "Anna@Example.it", "attributes": {"first_name": "Anna", "code": 7}},
        {"email": "not an address", "attributes": {"first_name": "X"}},
        {"email": "bruno@example.it", "attributes": {"first_name": "Bruno"}}]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["imported"] == 2 and [e["index"] for e in out["rejected"]] == [1]
    assert out["rejected"][0]["field"] == "email"
    # attributes not given are kept: code stays 7
    r = api.post("/api/v1/lists/clienti/contacts", headers=bearer(key), json={"contacts": [
        {"email": "anna@example.it", "attributes": {"first_name": "Anna Maria"}}]})
    assert r.json()["updated"] == 1
    from campaigns.models import Contact
    with project.ctx.db.session() as s:
        anna = s.scalars(select(Contact).where(Contact.email == "anna@example.it")).one()
        assert anna.attributes == {"first_name": "Anna Maria", "code": "7"}
        assert anna.source_dir is None
    csv_body = "email,first_name\ncarla@example.it,Carla\nbad@,Nope\n"
    r = api.post("/api/v1/lists/clienti/contacts.csv", content=csv_body.encode(),
                 headers={**bearer(key), "content-type": "text/csv"})
    assert r.status_code == 200 and r.json()["imported"] == 1
    assert [(e["line"], e["field"]) for e in r.json()["rejected"]] == [(3, "email")]
    r = api.post("/api/v1/lists/clienti/contacts.csv", content=b"name,city\nx,y\n",
                 headers={**bearer(key), "content-type": "text/csv"})
    assert r.status_code == 422 and "upload.csv" in r.json()["detail"]
    assert "/tmp" not in r.text and "campaigns-api-" not in r.text
    lists = api.get("/api/v1/lists", headers=bearer(key)).json()
    assert lists == [{"name": "clienti", "members": 3}]
    assert project.cli("contacts", "lists").stdout.split() == ["clienti", "3"]


def test_templates_are_stored_compiled_previewed_and_never_replaced_under_a_campaign(
        project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "ops", ["read", "manage"])
    body = {"subject": "Fattura {{ contact.numero }}",
            "html": "<p>Gentile {{ contact.nome }},</p><p>in allegato la fattura.</p>"}
    r = api.put("/api/v1/templates/fattura", json=body, headers=bearer(key))
    assert r.status_code == 201 and r.json()["text_generated"] is True
    assert "Gentile {{ contact.nome }}" in r.json()["text"]
    r = api.put("/api/v1/templates/fattura", json={**body, "text": "Gentile {{ contact.nome }}"},
                headers=bearer(key))
    assert r.status_code == 200 and r.json()["text_generated"] is False
    got = api.get("/api/v1/templates/fattura", headers=bearer(key)).json()
    assert got["text"] == "Gentile {{ contact.nome }}"
    r = api.put("/api/v1/templates/rotto", headers=bearer(key),
                json={"subject": "x", "html": "<p>{% if %}</p>"})
    assert r.status_code == 422 and "html" in r.json()["detail"]
    assert api.get("/api/v1/templates/rotto", headers=bearer(key)).status_code == 404
    preview = api.post("/api/v1/templates/fattura/preview", headers=bearer(key),
                       json={"attributes": {"nome": "Anna", "numero": "2026/118"}}).json()
    assert preview["subject"] == "Fattura 2026/118" and "Gentile Anna" in preview["html"]
    r = api.post("/api/v1/templates/fattura/preview", headers=bearer(key),
                 json={"attributes": {"nome": "Anna"}})
    assert r.status_code == 422 and "numero" in r.json()["detail"]

    make_campaign(project, "news", 2)
    assert project.cli("launch", "news").returncode == 0   # sending: its template is in use
    r = api.put("/api/v1/templates/news-tpl", json=body, headers=bearer(key))
    assert r.status_code == 409 and "used by running campaign" in r.json()["detail"]


def test_create_a_campaign_as_the_cli_does(project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "ops", ["read", "manage"])
    make_campaign(project, "news", 2)     # its list "news-list", its template "news-tpl"
    body = {"name": "natale", "list": "news-list", "template": "news-tpl",
            "from": "Bottega <news@example.it>", "window": "mon-fri 09:00-18:00",
            "timezone": "Europe/Rome"}
    r = api.post("/api/v1/campaigns", json=body, headers=bearer(key))
    assert r.status_code == 201 and r.json()["status"] == "draft", r.text
    assert project.status("natale")["status"] == "draft"
    assert api.post("/api/v1/campaigns", json=body, headers=bearer(key)).status_code == 409
    r = api.post("/api/v1/campaigns", json={**body, "name": "x", "list": "nope"},
                 headers=bearer(key))
    assert r.status_code == 404
    for field, value in (("from", "not an address"), ("priority", "urgent"),
                         ("window", "sometimes"), ("timezone", "Mars/Olympus")):
        r = api.post("/api/v1/campaigns", json={**body, "name": "y", field: value},
                     headers=bearer(key))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (field, r.text)
    # a stream's campaign (no list, no template) is listed too
    from campaigns.ledger.messages import stream_campaign
    stream_campaign(project.ctx.db, "invoices")
    items = api.get("/api/v1/campaigns", headers=bearer(key)).json()["items"]
    assert {"name": "tx:invoices", "status": "sending", "list": None,
            "template": None} in items
