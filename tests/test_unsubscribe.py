"""Issue 17, unsubscribe: the List-Unsubscribe headers of bulk mail (none on transactional
mail), the one-click POST as Gmail sends it, the page (Italian and English, CSRF, forged
tokens), the mailto: form through the real inbound SMTP intake, and an unsubscribe that
stops mail already queued. Real parts: workers, the SMTP sink, `campaigns serve` and
`bounces serve` as processes, httpx over HTTP."""
from __future__ import annotations

import re
import smtplib
import time
from typing import Any, Iterator

import httpx
import pytest
from sqlalchemy import select

from campaigns.content.tokens import make_unsubscribe_token
from campaigns.models import Delivery, Suppression
from tests.test_bounces_intake import _serve as _bounces_serve_started
from tests.helpers import Served, ledger, make_campaign, parse, serving

PUBLIC = "https://mail.example.test"
DOMAIN = "bounces.example.test"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
_URI = re.compile(r"<([^>]+)>")


def configure(project: Any) -> None:
    project.bounces = {"domain": DOMAIN, "guard_min_sample": 100000}
    project.extra_toml = f'[web]\npublic_url = "{PUBLIC}"\n'
    project.write_config()


def uris(message: Any) -> list[str]:
    return _URI.findall(str(message["List-Unsubscribe"]))


def received(project: Any, start: int = 0) -> dict[str, Any]:
    return {r.rcpt: parse(r.data) for r in project.sink.received[start:]}


def suppressions(project: Any) -> dict[str, list[Suppression]]:
    with project.ctx.db.session() as s:
        found: dict[str, list[Suppression]] = {}
        for row in s.scalars(select(Suppression).order_by(Suppression.id)):
            found.setdefault(row.address, []).append(row)
    return found


def page_url(served: Served, https_url: str) -> str:
    """The URL of the header, on the served process (the same path and token)."""
    assert https_url.startswith(PUBLIC + "/u/"), https_url
    return served.base + https_url[len(PUBLIC):]


@pytest.fixture
def sent(project: Any) -> dict[str, Any]:
    """A bulk campaign `news` of 4 and a transactional `invoices`, sent by real workers;
    the caught messages by recipient."""
    configure(project)
    make_campaign(project, "news", rows=[(f"n{i}@example.test", f"N{i}", "C") for i in range(4)])
    make_campaign(project, "invoices", rows=[("inv@example.test", "I", "x")],
                  priority="transactional")
    project.workers(1)
    project.cli("launch", "news")
    project.cli("launch", "invoices")
    assert project.wait_status("news")["counts"]["sent"] == 4
    assert project.wait_status("invoices")["counts"]["sent"] == 1
    return received(project)


@pytest.fixture
def served(project: Any, sent: dict[str, Any]) -> Iterator[Served]:
    with serving(project.env, project.root) as s:
        yield s


def test_bulk_mail_has_the_page_and_the_mailto_transactional_mail_none(project, sent):
    ids = {d.address: d.id for d in _deliveries(project)}
    for address in ("n0@example.test", "n3@example.test"):
        message = sent[address]
        https, mailto = uris(message)
        token = make_unsubscribe_token(project.ctx.settings.secret_key, ids[address])
        assert https == f"{PUBLIC}/u/{token}"
        assert mailto == f"mailto:unsubscribe+{token}@{DOMAIN}"
        assert address.split("@")[0] not in token and "example" not in token
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert https in message.get_body(("html",)).get_content()    # the template's link
    invoice = sent["inv@example.test"]
    assert invoice["List-Unsubscribe"] is None and invoice["List-Unsubscribe-Post"] is None


def test_one_click_post_as_gmail_sends_it_suppresses_at_once_and_again(project, sent, served):
    https = uris(sent["n1@example.test"])[0]
    before = time.time()
    # RFC 8058 §3.1: no cookie, no authorization, the body List-Unsubscribe=One-Click
    r = httpx.post(page_url(served, https), data=ONE_CLICK, timeout=10)
    assert r.status_code == 200, r.text
    got = suppressions(project)["n1@example.test"]
    assert [(s.source, s.scope) for s in got] == [("unsubscribe", "bulk")]
    assert "news" in got[0].reason and got[0].delivery_id == _id(project, "n1@example.test")
    assert got[0].created_at.timestamp() >= before - 1
    again = httpx.post(page_url(served, https), data=ONE_CLICK, timeout=10)
    assert again.status_code == 200 and len(suppressions(project)["n1@example.test"]) == 1
    # the RFC's own example is multipart/form-data
    other = uris(sent["n2@example.test"])[0]
    r = httpx.post(page_url(served, other), files={"List-Unsubscribe": (None, "One-Click")},
                   timeout=10)
    assert r.status_code == 200 and "n2@example.test" in suppressions(project)


def test_the_page_in_italian_and_english_csrf_and_forged_tokens(project, sent, served):
    https = uris(sent["n0@example.test"])[0]
    url = page_url(served, https)
    with httpx.Client(timeout=10) as browser:
        it = browser.get(url, headers={"Accept-Language": "it-IT,it;q=0.9,en;q=0.8"})
        assert it.status_code == 200 and it.headers["content-language"] == "it"
        assert "Conferma la cancellazione" in it.text and "Negozio Più (news@shop.test)" in it.text
        assert "news-list" in it.text and "n•••@example.test" in it.text
        assert "n0@example.test" not in it.text
        assert it.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in it.headers["content-security-policy"]
        assert it.headers["cache-control"] == "no-store"
        assert it.headers["referrer-policy"] == "no-referrer"
        cookie = it.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        en = httpx.get(url, headers={"Accept-Language": "en-GB,en;q=0.9,it;q=0.5"})
        assert en.headers["content-language"] == "en" and "Confirm unsubscribe" in en.text
        assert httpx.get(url, headers={"Accept-Language": "de"}).headers[
            "content-language"] == "en"
        assert "n0@example.test" not in suppressions(project)    # a GET never unsubscribes

        csrf = re.search(r'name="csrf" value="([^"]+)"', it.text).group(1)
        # a form without its CSRF token, or from another browser (no cookie): refused
        no_token = httpx.post(url, data={"scope": "all"})
        assert no_token.status_code == 403 and "n0@example.test" not in suppressions(project)
        no_cookie = httpx.post(url, data={"scope": "all", "csrf": csrf})
        assert no_cookie.status_code == 403
        # the token of another delivery's page does not fit this one
        other_url = page_url(served, uris(sent["n3@example.test"])[0])
        assert browser.post(other_url, data={"scope": "all", "csrf": csrf}).status_code == 403
        assert suppressions(project) == {}

        done = browser.post(url, data={"scope": "list", "csrf": csrf},
                            headers={"Accept-Language": "it"})
        assert done.status_code == 200 and "Iscrizione annullata" in done.text
        got = suppressions(project)["n0@example.test"]
        assert [(s.source, s.scope) for s in got] == [("unsubscribe", "list:news-list")]
        everything = browser.get(url)
        csrf = re.search(r'name="csrf" value="([^"]+)"', everything.text).group(1)
        done = browser.post(url, data={"scope": "all", "csrf": csrf})
        assert done.status_code == 200 and "newsletters or promotional mail" in done.text
        assert {s.scope for s in suppressions(project)["n0@example.test"]} == {
            "list:news-list", "bulk"}

    token = https.rpartition("/")[2]
    forged = token[:-2] + ("aa" if not token.endswith("aa") else "bb")
    for bad in (forged, "1.abc", "999999.x", "nonsense", str(_id(project, "n3@example.test"))):
        for call in (httpx.get, lambda u: httpx.post(u, data=ONE_CLICK)):
            r = call(f"{served.base}/u/{bad}")
            assert r.status_code == 404 and "<html" in r.text and "not valid" in r.text
    assert set(suppressions(project)) == {"n0@example.test"}
    big = httpx.post(url, content=b"x" * 20000,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413
    assert httpx.get(f"{served.base}/static/unsubscribe.css").headers[
        "content-type"].startswith("text/css")
    doc = httpx.get(f"{served.base}/api/v1/openapi.json").json()
    assert not any(path.startswith("/u/") for path in doc["paths"])


def test_the_mailto_form_through_bounces_serve(project, sent):
    mailto = uris(sent["n2@example.test"])[1].removeprefix("mailto:")
    forged = re.sub(r"\.[a-z2-7]+@", ".aaaaaaaaaaaaaaaa@", mailto)
    proc, port = _bounces_serve(project)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            message = (f"From: n2@example.test\r\nTo: {mailto}\r\nSubject: unsubscribe\r\n"
                       "\r\nplease\r\n")
            smtp.sendmail("n2@example.test", [forged], message.replace(mailto, forged))
            assert "n2@example.test" not in suppressions(project)
            smtp.sendmail("n2@example.test", [mailto.upper()], message)   # a case-folding MTA
            smtp.sendmail("n2@example.test", [mailto], message)           # twice: one row
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    got = suppressions(project)["n2@example.test"]
    assert [(s.source, s.scope) for s in got] == [("unsubscribe", "bulk")]
    assert "mailto" in got[0].reason and "news" in got[0].reason


# `campaigns bounces serve` on a free port, as the intake's tests start it
_bounces_serve = _bounces_serve_started


def _deliveries(project: Any) -> list[Any]:
    with project.ctx.db.session() as s:
        return list(s.execute(select(Delivery.id, Delivery.address)).all())


def _id(project: Any, address: str) -> int:
    return next(d.id for d in _deliveries(project) if d.address == address)


def test_fifty_unsubscribe_mid_campaign_and_none_gets_a_message_sent_after(project):
    """2,000 queued at 40/s; 50 of them unsubscribe (one-click, with the link of an earlier
    newsletter) while it sends: a message to one of them may arrive after their POST
    returned only if its send had started before (at most one per worker thread in flight)."""
    from campaigns.workerproc import WorkerGroup
    configure(project)
    rows = [(f"r{i:04d}@example.test", f"N{i}", "C") for i in range(2000)]
    leavers = [rows[100 + k * 38][0] for k in range(50)]
    # the contacts in list order first: the queue follows them
    make_campaign(project, "novembre", rows=rows)
    make_campaign(project, "ottobre", rows=[r for r in rows if r[0] in set(leavers)])
    processes, threads = 2, 4
    project.groups.append(WorkerGroup(
        processes, queue=project.ctx.settings.worker_queues, env=project.env, pool="threads",
        concurrency=threads, log=open(project.root / "workers.log", "ab")).start())
    project.cli("launch", "ottobre")
    assert project.wait_status("ottobre")["counts"]["sent"] == 50
    links = {a: uris(m)[0] for a, m in received(project).items()}
    project.cli("rates", "set", "relay:sink", "40/s")
    start = len(project.sink.received)
    returned: dict[str, float] = {}
    with serving(project.env, project.root) as served, httpx.Client(timeout=10) as http:
        project.cli("launch", "novembre")
        assert project.sink.wait_for(start + 150, timeout_s=60)
        began, progress = time.time(), []
        for address in leavers:
            r = http.post(page_url(served, links[address]), data=ONE_CLICK)
            assert r.status_code == 200, r.text
            returned[address] = time.time()
            progress.append(len(project.sink.received) - start)
            time.sleep(0.05)
        posting_s = time.time() - began
        snap = project.wait_status("novembre", timeout_s=240)
    assert snap["status"] == "finished", snap
    arrivals: dict[str, list[float]] = {}
    for r in project.sink.received[start:]:
        arrivals.setdefault(r.rcpt, []).append(r.at)
    assert all(len(times) == 1 for times in arrivals.values()), "a second copy"
    book = ledger(project, "novembre")
    late = {a: arrivals[a][0] - returned[a] for a in leavers
            if a in arrivals and arrivals[a][0] > returned[a]}
    assert len(late) <= processes * threads, late
    assert all(seconds < 2.0 for seconds in late.values()), late
    stopped = [a for a in leavers if a not in arrivals]
    assert all(book[a][0] == "suppressed" for a in stopped)
    print(f"\n50 unsubscribed in {posting_s:.1f} s: {len(stopped)} stopped (suppressed), "
          f"{50 - len(stopped) - len(late)} sent before their POST, {len(late)} in flight "
          f"then ({sorted(late.values())})")
    assert len(stopped) >= 40, (len(stopped), sorted(late), posting_s, progress)
    others = [r[0] for r in rows if r[0] not in set(leavers)]
    assert all(a in arrivals and book[a][0] == "sent" for a in others)
    assert snap["counts"]["suppressed"] == len(stopped)
    assert snap["counts"]["sent"] == 2000 - len(stopped)


def test_the_mailto_form_through_the_imap_mailbox(project, tmp_path):
    """Apple Mail's unsubscribe, delivered to a real IMAP mailbox (Dovecot) that the bounce
    domain's MTA fills: `bounces poll` suppresses the address and files the message."""
    from tests.dovecot import private_dovecot
    with private_dovecot(tmp_path / "imap", users={"bounces": "mailbox-pw-2"}) as server:
        configure(project)
        project.bounces["imap"] = {"host": server.host, "port": server.port_imap,
                                   "security": "none", "user": "bounces",
                                   "password": "mailbox-pw-2", "timeout_s": 10}
        project.bounces["imap_every_s"] = 3600     # the poll below, not the workers'
        project.write_config()
        make_campaign(project, "news", rows=[("apple@example.test", "A", "C")])
        project.workers(1)
        project.cli("launch", "news")
        assert project.wait_status("news")["counts"]["sent"] == 1
        mailto = uris(received(project)["apple@example.test"])[1].removeprefix("mailto:")
        server.append("bounces", (
            f"Delivered-To: {mailto}\r\nFrom: apple@example.test\r\nTo: {mailto}\r\n"
            "Subject: unsubscribe\r\nX-Apple-Unsubscribe: true\r\n"
            "Auto-Submitted: auto-generated\r\n\r\nThis message was automatically generated "
            "by Mail to unsubscribe you from this mailing list.\r\n").encode())
        time.sleep(1.5)      # let a first poll by the starting worker pass, if any
        project.cli("bounces", "poll")
        got = suppressions(project)["apple@example.test"]
        assert [(s.source, s.scope) for s in got] == [("unsubscribe", "bulk")]
        assert "mailto" in got[0].reason
        assert server.messages("bounces", "INBOX") == []


def test_the_header_holds_both_uris_and_post_only_with_an_https_one():
    from campaigns.content.mime import MessageBuilder
    from campaigns.errors import InputError
    builder = MessageBuilder(from_addr="News <news@shop.test>")
    page, mailto = f"{PUBLIC}/u/7.abc", f"mailto:unsubscribe+7.abc@{DOMAIN}"

    def build(urls: Any) -> Any:
        return parse(builder.build(to="a@example.test", subject="s", html="<p>x</p>", text="x",
                                   message_id="<1@shop.test>", unsubscribe_url=urls))
    both = build([page, mailto])
    assert uris(both) == [page, mailto]
    assert both["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    only_mail = build([mailto])
    assert uris(only_mail) == [mailto] and only_mail["List-Unsubscribe-Post"] is None
    assert build([])["List-Unsubscribe"] is None
    with pytest.raises(InputError, match="commas"):
        build([page + ",x"])


@pytest.mark.parametrize("header, asked, expected", [
    ("it-IT,it;q=0.9,en;q=0.8", None, "it"), ("en-US,en;q=0.9,it;q=0.8", None, "en"),
    ("it;q=0.5, en;q=0.5", None, "it"), ("en;q=0.4, it;q=0.6", None, "it"),
    ("de-DE,fr", None, "en"), ("", None, "en"), ("it;q=abc, en", None, "en"),
    ("it", "en", "en"), ("en", "it", "it"), ("en", "xx", "en")])
def test_the_language_of_the_page(header, asked, expected):
    from campaigns.web.unsubscribe_text import choose_language
    assert choose_language(header, asked) == expected


def test_a_token_is_bound_to_its_delivery_and_survives_case_folding():
    from campaigns.content.tokens import read_unsubscribe_address, read_unsubscribe_token
    from campaigns.settings import Secret
    key, other = Secret("k" * 32), Secret("x" * 32)
    token = make_unsubscribe_token(key, 4711)
    assert read_unsubscribe_token(key, token) == 4711
    assert read_unsubscribe_token(key, token.upper()) == 4711
    assert read_unsubscribe_token(other, token) is None
    assert read_unsubscribe_token(key, "4712." + token.partition(".")[2]) is None
    for bad in ("", ".", "4711", "4711.", "²." + token[5:], "4711.é", "1" * 40 + ".aa"):
        assert read_unsubscribe_token(key, bad) is None
    address = f"Unsubscribe+{token.upper()}@BOUNCES.example.test"
    assert read_unsubscribe_address(key, address, DOMAIN) == 4711
    assert read_unsubscribe_address(key, f"bounces+{token}@{DOMAIN}", DOMAIN) is None
    assert read_unsubscribe_address(key, f"unsubscribe+{token}@other.test", DOMAIN) is None
