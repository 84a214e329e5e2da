"""Issue 13, transactional messages: POST /api/v1/messages stored before the 202 and sent
once by real workers to the SMTP sink, idempotent under concurrent and retried requests (a
real `campaigns serve` process), suppressed addresses answered, every field checked, files
kept in the database until the message is final, the stream's campaign always open, the
timeline, and the CLI twins."""
from __future__ import annotations

import base64
import email
import json
import os
import threading
import time
from email import policy
from typing import Any, Iterator
from unittest import mock

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from campaigns import lifecycle
from campaigns.models import Campaign, MessageAttachment
from campaigns.web.app import create_app
from campaigns.web.keys import create_key
from tests.conftest import _enqueue_factory
from tests.helpers import serving

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def bearer(key: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **more}


def invoice(to: Any = "anna@example.it", **more: Any) -> dict[str, Any]:
    body = {"to": to, "from": "Amministrazione <fatture@example.it>", "template": "fattura",
            "data": {"numero": "2026/118", "nome": "Anna"}, "ref": "INV-2026-118",
            "stream": "invoices",
            "attachments": [{"filename": "fattura-118.pdf", "content_type": "application/pdf",
                             "content_base64": base64.b64encode(PDF).decode()}]}
    body.update(more)
    return body


def add_template(project: Any) -> None:
    html = project.root / "fattura.html"
    html.write_text("<p>Gentile {{ data.nome }}, la fattura {{ data.numero }} è allegata.</p>")
    project.cli("templates", "add", "fattura", "--subject", "Fattura {{ data.numero }}",
                "--html", str(html))


def enqueue_of(project: Any) -> Any:
    """The Celery layer's enqueue for this project (workers.app reads the environment on its
    first import in this process)."""
    with mock.patch.dict(os.environ, project.env):
        return _enqueue_factory(project.env)()


@pytest.fixture
def api(project: Any) -> Iterator[TestClient]:
    add_template(project)
    app = create_app(project.ctx, enqueue_of(project), webhooks=False)
    with TestClient(app) as client:
        yield client


def wait_message(api: TestClient, key: str, mid: int, statuses: tuple[str, ...],
                 timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        view: dict[str, Any] = api.get(f"/api/v1/messages/{mid}", headers=bearer(key)).json()
        if view["status"] in statuses or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


def test_a_message_is_sent_once_as_written_with_its_file_and_its_timeline(
        project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "erp", ["send", "read"])
    project.workers(1)
    r = api.post("/api/v1/messages", json=invoice(), headers=bearer(key))
    assert r.status_code == 202, r.text
    [accepted] = r.json()["messages"]
    assert accepted["to"] == "anna@example.it" and accepted["status"] == "queued"
    view = wait_message(api, key, accepted["id"], ("sent",))
    assert view["status"] == "sent" and view["ref"] == "INV-2026-118", view
    assert view["stream"] == "invoices" and view["attempts"] == 1 and view["reply_code"] == 250
    assert [e["type"] for e in view["events"]] == ["queued", "delivered"]
    assert project.sink.wait_for(1, timeout_s=10)
    [got] = project.sink.received
    msg = email.message_from_bytes(got.data, policy=policy.default)
    assert msg["Subject"] == "Fattura 2026/118" and "List-Unsubscribe" not in msg
    assert msg["From"] == "Amministrazione <fatture@example.it>"
    body = msg.get_body(("plain",))
    assert body is not None and "Gentile Anna, la fattura 2026/118" in body.get_content()
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "fattura-118.pdf" and part.get_content() == PDF
    assert part.get_content_type() == "application/pdf"
    # the stream's campaign takes messages at any time: never finished, never cancelled
    lifecycle.maintenance(project.ctx.db)
    with project.ctx.db.session() as s:
        stream = s.scalars(select(Campaign).where(Campaign.stream == "invoices")).one()
        files = s.scalar(select(func.count()).select_from(MessageAttachment))
    assert stream.name == "tx:invoices" and stream.status == "sending"
    assert files == 0      # the message is final: its file is gone from the database
    manager, _ = create_key(project.ctx.db, "ops", ["manage"])
    r = api.post("/api/v1/campaigns/tx:invoices/cancel", headers=bearer(manager))
    assert r.status_code == 409 and "pause it instead" in r.json()["detail"]
    shown = project.cli("messages", "show", str(accepted["id"])).stdout
    assert "status: sent" in shown and "delivered" in shown and "ref: INV-2026-118" in shown
    listed = project.cli("messages", "list", "--stream", "invoices", "--since", "1h").stdout
    assert listed.split()[:5] == [str(accepted["id"]), "sent", "invoices", "anna@example.it",
                                  "INV-2026-118"]
    assert project.cli("messages", "list", "--since", "soon", check=False).returncode == 1


def test_a_list_of_recipients_is_one_message_each_and_a_bounce_is_told(
        project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "erp", ["send", "read"])
    r = api.post("/api/v1/messages", json=invoice(
        ["anna@example.it", "Bounce Me <bounce@example.it>", "carlo@example.it"]),
        headers=bearer(key))
    assert r.status_code == 202, r.text
    ids = {m["to"]: m["id"] for m in r.json()["messages"]}
    assert list(ids) == ["anna@example.it", "bounce@example.it", "carlo@example.it"]
    with project.ctx.db.session() as s:   # one copy of the file for the three messages
        assert s.scalar(select(func.count()).select_from(MessageAttachment)) == 1
    project.workers(1)
    bounced = wait_message(api, key, ids["bounce@example.it"], ("bounced", "failed"))
    assert bounced["status"] == "bounced" and bounced["bounce_category"] == "hard"
    assert bounced["reply_code"] == 550 and "User unknown" in bounced["reply_text"]
    assert [e["type"] for e in bounced["events"]] == ["queued", "bounced"]
    for address in ("anna@example.it", "carlo@example.it"):
        assert wait_message(api, key, ids[address], ("sent",))["status"] == "sent"
    assert sorted(m.rcpt for m in project.sink.received) == ["anna@example.it",
                                                              "carlo@example.it"]
    # the hard bounce suppressed the address for everything: a new invoice says so
    r = api.post("/api/v1/messages", json=invoice("bounce@example.it"), headers=bearer(key))
    [again] = r.json()["messages"]
    assert r.status_code == 202 and again["status"] == "suppressed"
    assert "suppressed (all) since" in again["reason"] and "bounce" in again["reason"]
    page = api.get("/api/v1/messages?stream=invoices&status=sent&limit=1",
                   headers=bearer(key)).json()
    assert [m["to"] for m in page["items"]] == ["anna@example.it"] and page["next"]
    rest = api.get(f"/api/v1/messages?stream=invoices&status=sent&cursor={page['next']}",
                   headers=bearer(key)).json()
    assert [m["to"] for m in rest["items"]] == ["carlo@example.it"] and rest["next"] is None


def test_suppression_scopes_apply_to_a_stream(project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "erp", ["send"])
    project.cli("suppressions", "add", "news@example.it", "--scope", "bulk")
    project.cli("suppressions", "add", "gone@example.it", "--scope", "stream:invoices")
    r = api.post("/api/v1/messages", json=invoice(["news@example.it", "gone@example.it"]),
                 headers=bearer(key))
    statuses = {m["to"]: m["status"] for m in r.json()["messages"]}
    # a complaint about a newsletter (bulk) never stops an invoice; the stream's own does
    assert statuses == {"news@example.it": "queued", "gone@example.it": "suppressed"}
    r = api.post("/api/v1/messages", json=invoice("gone@example.it", stream="orders"),
                 headers=bearer(key))
    assert r.json()["messages"][0]["status"] == "queued"


def test_every_field_is_checked_before_anything_is_stored(project: Any, api: TestClient) -> None:
    key, _ = create_key(project.ctx.db, "erp", ["send", "read"])
    reader, _ = create_key(project.ctx.db, "viewer", ["read"])
    project.extra_toml = "[attachments]\nmax_message_bytes = 5000\n"
    project.write_config()
    cases = [
        (invoice(template="nope"), 422, "template", "no template"),
        (invoice(data={"numero": "1"}), 422, "data", "nome"),
        (invoice(subject="Hi", html="<p>x</p>"), 422, "template", "not both"),
        (invoice(template=None), 422, "template", "subject and html"),
        (invoice("not-an-address"), 422, "to", ""),
        (invoice(["a@example.it", "A@example.it"]), 422, "to[1]", "repeats to[0]"),
        (invoice([f"u{i}@example.it" for i in range(51)]), 422, "to", "1 to 50"),
        (invoice(relay="nowhere"), 422, "relay", "no relay or pool"),
        (invoice(**{"from": "Evil\r\nBcc: x@example.it <a@example.it>"}), 422, "from", ""),
        (invoice(attachments=[{"filename": "../x.pdf", "content_base64": "AAAA"}]), 422,
         "attachments[0].filename", "without a path"),
        (invoice(attachments=[{"filename": "x.pdf", "content_base64": "@@@"}]), 422,
         "attachments[0].content_base64", "base64"),
        (invoice(stream="no spaces"), 422, "stream", ""),
        (invoice(unknown_field=1), 422, "unknown_field", ""),
    ]
    for body, status, field, words in cases:
        r = api.post("/api/v1/messages", json=body, headers=bearer(key))
        assert r.status_code == status, (field, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["errors"][0]["field"] == field, problem
        assert words in json.dumps(problem), problem
    project._ctx = None
    app = create_app(project.ctx, enqueue_of(project), webhooks=False)
    with TestClient(app) as small:   # the settings with the 5 kB attachment cap
        r = small.post("/api/v1/messages", json=invoice(), headers=bearer(key))
        assert r.status_code == 413 and "max_message_bytes" in r.json()["detail"]
    assert api.post("/api/v1/messages", json=invoice(),
                    headers=bearer(reader)).status_code == 403
    assert api.post("/api/v1/messages", content=b"{", headers=bearer(
        key, **{"content-type": "application/json"})).status_code == 400
    assert api.get("/api/v1/messages/999", headers=bearer(key)).status_code == 404
    assert api.get("/api/v1/messages?status=lost", headers=bearer(key)).status_code == 422
    assert api.get("/api/v1/messages", headers=bearer(key)).json()["items"] == []


def test_idempotency_key_concurrent_and_retried_requests_send_one_message(project: Any) -> None:
    add_template(project)
    key = next(line for line in project.cli("keys", "create", "erp", "--scope", "send",
                                            "--scope", "read", "--rate", "1000").stdout
               .splitlines() if line.startswith("ck_"))
    body = invoice()
    with serving(project.env, project.root) as served:
        url = f"{served.base}/api/v1/messages"
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def post() -> None:
            r = httpx.post(url, json=body, headers=bearer(key, **{"Idempotency-Key": "inv-118"}),
                           timeout=60)
            with lock:
                answers.append(r)
        threads = [threading.Thread(target=post) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert [r.status_code for r in answers] == [202] * 10, [r.text for r in answers]
        assert len({json.dumps(r.json(), sort_keys=True) for r in answers}) == 1
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 9
        # a retry after the client gave up waiting (the first answer may or may not have
        # been written): one message whatever happened
        try:
            httpx.post(url, json=invoice("late@example.it"),
                       headers=bearer(key, **{"Idempotency-Key": "inv-119"}), timeout=0.001)
        except httpx.TimeoutException:
            pass
        retry = httpx.post(url, json=invoice("late@example.it"),
                           headers=bearer(key, **{"Idempotency-Key": "inv-119"}), timeout=60)
        assert retry.status_code == 202, retry.text
        other = httpx.post(url, json=invoice("someone@example.it"),
                           headers=bearer(key, **{"Idempotency-Key": "inv-118"}), timeout=60)
        assert other.status_code == 409 and "another body" in other.json()["detail"]
        project.workers(1)
        assert project.sink.wait_for(2, timeout_s=60)
        time.sleep(2)     # room for a duplicate to show up, if there were one
    assert sorted(m.rcpt for m in project.sink.received) == ["anna@example.it",
                                                              "late@example.it"]
    assert key not in served.out + served.err
