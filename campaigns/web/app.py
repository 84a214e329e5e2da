"""The one HTTP process (`campaigns serve`): one ASGI app with the JSON API under /api/v1
(campaigns.web.api), the provider webhooks under /webhooks (campaigns.web.webhooks),
/healthz, and the public unsubscribe pages /u/TOKEN (campaigns.web.unsubscribe: outside the
API and its OpenAPI document). Around it: a cap on request bodies ([web] max_body_bytes, 413 past it, before the
body is read when its length is declared) and one access-log line per request (key name,
method, path, status, milliseconds; never a body, a header value, a key or a secret: an
unsubscribe token in a path is logged as `/u/…`)."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaigns.web.api import create_api
from campaigns.web.common import Problem, problem_response

if TYPE_CHECKING:
    from campaigns.context import Context

log = logging.getLogger("campaigns.web")
Enqueue = Callable[[Sequence[int], Optional[float], str], None]


class _TooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: the body cap and the access log."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), [0]
        too_large = Problem(413, "body too large",
                            f"a request body is at most {self.max_body_bytes} bytes")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        try:
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _TooLarge
            seen = [0]

            async def receiving() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.max_body_bytes:
                        raise _TooLarge
                return message
            await self.app(scope, receiving, sending)
        except _TooLarge:
            if status[0] == 0:
                await problem_response(too_large)(scope, receive, sending)
        finally:
            state = scope.get("state") or {}
            log.info("%s %s %s %d %.0f ms", state.get("key_name", "-"), scope["method"],
                     _logged_path(scope["path"]), status[0],
                     (time.monotonic() - started) * 1000)


def _logged_path(path: str) -> str:
    """The path as logged: an unsubscribe token is a credential (it unsubscribes)."""
    return "/u/…" if path.startswith("/u/") else path


def create_app(ctx: "Context", enqueue: Enqueue | None = None, *,
               webhooks: bool = True) -> Any:
    """The app of one installation: `ctx` its composition root (campaigns.context)."""
    routes: list[Any] = [Mount("/api/v1", app=create_api(ctx, enqueue))]
    if webhooks:
        from campaigns.web.webhooks import create_app as webhooks_app
        routes += webhooks_app(ctx.settings, db=ctx.db, clock=ctx.clock).routes
    from campaigns.web.unsubscribe import routes as unsubscribe_routes
    routes += unsubscribe_routes(ctx.settings, ctx.db)
    app = Starlette(routes=routes)
    return Guard(app, ctx.settings.web.max_body_bytes)
