"""The public unsubscribe pages of `campaigns serve` (issue 17; RFC 2369, RFC 8058):

    POST /u/TOKEN   body List-Unsubscribe=One-Click (what Gmail, Yahoo, … send): 200, the
                    address suppressed for bulk mail; or the confirm form of the page below
                    (its CSRF token and cookie checked)
    GET  /u/TOKEN   a page in Italian or English naming the sender, with the choice "this
                    list" or "all mail from this sender" and a confirm button; never
                    unsubscribes (mail scanners fetch links)
    GET  /static/unsubscribe.css

TOKEN is signed and bound to one delivery (campaigns.content.tokens); it is the authority
(a one-click POST carries no cookie, no CSRF token). A forged or malformed one gets a plain
404 page. The confirm form carries a signed, time-limited CSRF token bound to TOKEN, whose
nonce must equal the SameSite=Strict cookie the page set (double submit). The writes are the
ledger's (campaigns.ledger.unsubscribes); bodies are capped at MAX_FORM_BYTES. No page is
kept by a cache or framed, and none sends a Referer (the token is in the URL)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message

from campaigns.content.tokens import read_unsubscribe_token
from campaigns.db import Database
from campaigns.ledger.unsubscribes import (EVERYTHING, THIS_LIST, Subscription, Unsubscribed,
                                           subscription, unsubscribe)
from campaigns.settings import Settings
from campaigns.web.unsubscribe_text import LANGUAGES, TEXT, choose_language

log = logging.getLogger("campaigns.web.unsubscribe")

#: a one-click body is 26 bytes, the confirm form about 150
MAX_FORM_BYTES = 16 * 1024
#: how long the page's confirm form stays valid
CSRF_TTL_S = 3600
COOKIE = "unsubscribe_csrf"
_HERE = Path(__file__).parent
_CSS = (_HERE / "static" / "unsubscribe.css").read_bytes()
_PAGES = Environment(loader=FileSystemLoader(_HERE / "templates"),
                     autoescape=select_autoescape(default=True), auto_reload=False)
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}


class _TooLarge(Exception):
    pass


def routes(settings: Settings, db: Database) -> list[Route]:
    """The routes to add to the app of `campaigns serve`."""
    pages = Pages(settings, db)
    return [Route("/static/unsubscribe.css", css, methods=["GET"]),
            Route("/u/{token}", pages.get, methods=["GET"]),
            Route("/u/{token}", pages.post, methods=["POST"])]


async def css(request: Request) -> Response:
    return Response(_CSS, media_type="text/css",
                    headers={"Cache-Control": "public, max-age=86400",
                             "X-Content-Type-Options": "nosniff"})


class Pages:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db

    async def _found(self, token: str) -> Subscription | None:
        delivery_id = read_unsubscribe_token(self.settings.secret_key, token)
        if delivery_id is None:
            return None
        return await run_in_threadpool(subscription, self.db, delivery_id)

    async def get(self, request: Request) -> Response:
        lang = _language(request)
        found = await self._found(request.path_params["token"])
        if found is None:
            return _error(lang, 404, "not_found")
        nonce = _nonce()
        response = _page("page", lang, found, csrf=self._csrf(found, nonce))
        response.set_cookie(COOKIE, nonce, max_age=CSRF_TTL_S, httponly=True,
                            samesite="strict", secure=_https(request))
        return response

    async def post(self, request: Request) -> Response:
        lang = _language(request)
        try:
            form = await _form(request)
        except _TooLarge:
            return _error(lang, 413, "too_large", title="bad_title")
        except ClientDisconnect:
            return PlainTextResponse("client disconnected", status_code=400)
        found = await self._found(request.path_params["token"])
        if found is None:
            return _error(lang, 404, "not_found")
        if form.get("List-Unsubscribe") == "One-Click":       # RFC 8058: the token decides
            done = await self._unsubscribe(found, EVERYTHING, "one-click")
            return _page("done", lang, found, done=done)
        if not self._csrf_ok(found, str(form.get("csrf") or ""),
                             request.cookies.get(COOKIE, "")):
            return _error(lang, 403, "forbidden")
        choice = form.get("scope")
        if choice not in (THIS_LIST, EVERYTHING):
            return _error(lang, 400, "bad")
        done = await self._unsubscribe(found, str(choice), "page")
        response = _page("done", lang, found, done=done)
        response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=_https(request))
        return response

    async def _unsubscribe(self, found: Subscription, choice: str, via: str) -> Unsubscribed:
        done = await run_in_threadpool(unsubscribe, self.db, found.delivery_id, choice=choice,
                                       via=via)
        assert done is not None     # the row was there a moment ago; deliveries stay
        log.info("unsubscribe: delivery %d (%s): %s %s", found.delivery_id, via, done.scope,
                 "recorded" if done.added else "already")
        return done

    def _mac(self, found: Subscription, issued: int, nonce: str) -> str:
        message = f"unsubscribe-csrf:{found.delivery_id}:{issued}:{nonce}".encode()
        digest = hmac.new(self.settings.secret_key.reveal().encode(), message,
                          hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _csrf(self, found: Subscription, nonce: str) -> str:
        issued = int(time.time())
        return f"{issued}.{nonce}.{self._mac(found, issued, nonce)}"

    def _csrf_ok(self, found: Subscription, given: str, cookie: str) -> bool:
        """The form's token was made by us for this delivery, within CSRF_TTL_S, and its
        nonce is the one in this browser's cookie."""
        issued, _, rest = given.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (issued.isascii() and issued.isdigit()) or not nonce or not cookie:
            return False
        age = time.time() - int(issued)
        return (-60 <= age <= CSRF_TTL_S
                and hmac.compare_digest(nonce.encode(), cookie.encode())
                and hmac.compare_digest(mac.encode(),
                                        self._mac(found, int(issued), nonce).encode()))


def _https(request: Request) -> bool:
    """Whether the browser came over https (uvicorn applies a trusted proxy's
    X-Forwarded-Proto): the cookie is then Secure."""
    return request.url.scheme == "https"


def _nonce() -> str:
    return base64.urlsafe_b64encode(os.urandom(18)).decode()


def _language(request: Request) -> str:
    asked = request.query_params.get("lang")
    return choose_language(request.headers.get("accept-language", ""), asked)


def _common(lang: str, heading: str) -> dict[str, Any]:
    other = next(x for x in LANGUAGES if x != lang)
    return {"lang": lang, "t": TEXT[lang], "heading": heading, "root": "../", "switch": other}


def _sender(from_addr: str) -> str:
    name, address = parseaddr(from_addr)
    return f"{name} ({address})" if name and address else address or from_addr


def _masked(address: str) -> str:
    """m•••@example.it: enough for a person with several addresses, little for anyone else."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}"


def _page(name: str, lang: str, found: Subscription, *, csrf: str = "",
          done: Unsubscribed | None = None) -> HTMLResponse:
    t = TEXT[lang]
    values = _common(lang, t["done_title"] if done else t["title"])
    values.update(sender=_sender(found.from_addr), address=_masked(found.address),
                  list_name=found.list_name, csrf=csrf)
    if done is not None:
        values.update(whole=not done.scope.startswith("list:"), switch=None,
                      when=done.at.strftime("%Y-%m-%d %H:%M"))
    html = _PAGES.get_template(f"unsubscribe/{name}.html").render(values)
    return HTMLResponse(html, headers={**_HEADERS, "Content-Language": lang})


def _error(lang: str, status: int, key: str, title: str | None = None) -> HTMLResponse:
    t = TEXT[lang]
    values = _common(lang, t[title or f"{key}_title"])
    values.update(message=t[key], switch=None)
    html = _PAGES.get_template("unsubscribe/error.html").render(values)
    return HTMLResponse(html, status_code=status, headers={**_HEADERS, "Content-Language": lang})


async def _form(request: Request) -> Any:
    """The form of a POST (urlencoded or multipart, as RFC 8058 allows), its body read up to
    MAX_FORM_BYTES (past it: _TooLarge, the rest never read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    if body.strip() == b"List-Unsubscribe=One-Click":     # whatever the Content-Type said
        return {"List-Unsubscribe": "One-Click"}

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}
    try:
        return await Request(request.scope, replay).form(max_files=0, max_fields=20,
                                                         max_part_size=MAX_FORM_BYTES)
    except Exception:  # noqa: BLE001 - a malformed multipart body is just no form
        return {}
