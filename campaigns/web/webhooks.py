"""The HTTP endpoint providers post their events to (`campaigns api`), an ASGI app:

    POST /webhooks/ses | /webhooks/sendgrid | /webhooks/mailgun | /webhooks/postmark
    GET  /healthz

Answers: 200 with the number of events and what the intake did with them; 401/403 when
the request is not verifiably the provider's (nothing changed); 400 naming the field of a
verified body that is not as documented; 503 when we could not check it now (the provider
sends it again). Verification, parsing and database work are blocking: they run in a
worker thread, never on the event loop. The log says each outcome, never a body, a header
or a secret.

Needs the `api` extra: pip install 'campaigns[api]'."""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from campaigns.db import Database
from campaigns.errors import ConfigError
from campaigns.settings import Settings
from campaigns.intake.webhooks import (Provider, WebhookConfig, WebhookError, WebhookRequest,
                                load_webhook_config, providers, record_events)

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ConfigError("the webhook API needs starlette and uvicorn: "
                      "pip install 'campaigns[api]'") from err

log = logging.getLogger("campaigns.web.webhooks")

#: SendGrid posts batches of events; nothing a provider sends comes near this
MAX_BODY_BYTES = 5 * 1024 * 1024


class _TooLarge(WebhookError):
    status = 413


def create_app(settings: Settings, *, config: WebhookConfig | None = None,
               db: Database | None = None, endpoints: dict[str, Provider] | None = None,
               clock: Callable[[], float] = time.time) -> Starlette:
    """The app for one installation. `config` defaults to the `[webhooks]` table of the
    settings' TOML file, `db` to a new Database (disposed at shutdown), `endpoints` to every
    provider (`campaigns.intake.webhooks.providers`), `clock` (epoch seconds) to the system's."""
    config = config if config is not None else load_webhook_config(settings)
    database = db if db is not None else Database(settings)
    table = endpoints if endpoints is not None else providers()

    def process(provider: Provider, request: WebhookRequest) -> dict[str, Any]:
        provider.verify(request, config)
        if provider.acknowledge is not None:
            provider.acknowledge(request.body, config)
        events = provider.events(request.body)
        applied = record_events(database, settings, provider.name, events)
        actions: dict[str, int] = {}
        for a in applied:
            actions[a.action] = actions.get(a.action, 0) + 1
        return {"events": len(events), "actions": actions}

    async def webhook(request: Request) -> JSONResponse:
        name = request.path_params["provider"]
        provider = table.get(name)
        client = request.client.host if request.client else "-"
        if provider is None:
            return JSONResponse({"error": "unknown provider"}, status_code=404)
        try:
            body = await _body(request)
        except ClientDisconnect:    # nobody to answer: one line in the log, not a traceback
            log.warning("webhook %s from %s: client disconnected before the end of the body",
                        name, client)
            return JSONResponse({"error": "client disconnected"}, status_code=400)
        try:
            parts = WebhookRequest(body, {k.lower(): v for k, v in request.headers.items()},
                                   clock())
            result = await run_in_threadpool(process, provider, parts)
        except WebhookError as err:
            log.warning("webhook %s from %s: %d %s", name, client, err.status, err.reason)
            headers = ({"WWW-Authenticate": 'Basic realm="campaigns webhooks"'}
                       if err.status == 401 and name == "postmark" else None)
            return JSONResponse({"error": err.reason}, status_code=err.status, headers=headers)
        log.info("webhook %s from %s: 200, %d events %s", name, client, result["events"],
                 result["actions"])
        return JSONResponse(result)

    async def healthz(request: Request) -> JSONResponse:
        def ping() -> None:
            from sqlalchemy import text
            with database.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        try:
            await run_in_threadpool(ping)
        except Exception as err:  # noqa: BLE001 - any database failure is "not healthy"
            log.warning("healthz: database unreachable: %s", type(err).__name__)
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        return JSONResponse({"ok": True, "providers": config.describe()})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if db is None:
            database.dispose()

    return Starlette(routes=[Route("/webhooks/{provider}", webhook, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])],
                     lifespan=lifespan)


async def _body(request: Request) -> bytes:
    """The raw body, refused past MAX_BODY_BYTES without reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge("body too large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge("body too large")
        chunks.append(chunk)
    return b"".join(chunks)
