"""The JSON API under /api/v1 (FastAPI on Starlette): the OpenAPI document at
/api/v1/openapi.json is generated from the same declarations (pydantic models, routes,
security) the handlers run on.

Every request carries `Authorization: Bearer ck_…` (campaigns.web.keys): 401 without a live
key, 403 without the route's scope, 429 with Retry-After past the key's rate. Errors are RFC
9457 `application/problem+json`: {type, title, status, detail, errors: [{field, reason}]}.
Handlers call the same service functions as the CLI (lifecycle, the ledger); blocking work
runs in FastAPI's thread pool (handlers are plain `def`)."""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from campaigns.errors import (CampaignsError, InputError, NotFound, StateError,
                              TemplateRenderError)
from campaigns.web import (routes_audience, routes_campaigns, routes_content, routes_deliveries,
                           routes_messages, routes_schedules, routes_settings)
from campaigns.web.common import ERRORS, Deps, Enqueue, Problem, problem_response
from campaigns.web.keys import KeyInfo, authenticate

if TYPE_CHECKING:
    from campaigns.context import Context

log = logging.getLogger("campaigns.web")

def create_api(ctx: "Context", enqueue: Enqueue | None = None) -> FastAPI:
    """The /api/v1 app of one installation (`ctx`: campaigns.context); `enqueue` publishes
    send tasks (launch, resume), handed in by the Celery layer."""
    db = ctx.db
    api = FastAPI(title="campaigns", version="1", openapi_url="/openapi.json", docs_url=None,
                  redoc_url=None, responses=ERRORS,
                  description="Queued bulk e-mail: campaigns, suppressions and the ledger.")
    bearer = HTTPBearer(auto_error=False, description="a key from `campaigns keys create`")

    limiters: list[Any] = []    # one RedisLimiter (its Lua script registered once), made on first use

    def limiter_for(key: KeyInfo) -> None:
        from campaigns.rates.limiter import Limit, RedisLimiter
        if not limiters:
            limiters.append(RedisLimiter(ctx.redis, prefix="campaigns:api:"))
        decision = limiters[0].acquire(
            [Limit(key=f"key:{key.name}", rate_per_s=key.rate_per_s,
                   burst=max(1, math.ceil(key.rate_per_s)))])
        if not decision.allowed:
            wait = max(1, math.ceil(decision.wait_s))
            raise Problem(429, "too many requests",
                          f"key '{key.name}' is limited to {key.rate_per_s:g} requests/s",
                          headers={"Retry-After": str(wait)})

    def need(scope: str) -> Any:
        # default-value Depends, not Annotated: with postponed annotations FastAPI resolves
        # an annotation in the module's globals, where this closure's `bearer` is not
        def check(request: Request,
                  creds: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> KeyInfo:
            if creds is None:
                raise Problem(401, "unauthorized", "send Authorization: Bearer <key>",
                              headers={"WWW-Authenticate": "Bearer"})
            key = authenticate(db, creds.credentials)
            if key is None:
                raise Problem(401, "unauthorized", "unknown or revoked key",
                              headers={"WWW-Authenticate": "Bearer"})
            request.state.key_name = key.name
            if not key.allows(scope):
                raise Problem(403, "forbidden", f"key '{key.name}' lacks the scope '{scope}'")
            limiter_for(key)
            return key
        return Depends(check)

    @api.exception_handler(Problem)
    def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @api.exception_handler(CampaignsError)
    def _domain(request: Request, exc: CampaignsError) -> JSONResponse:
        if isinstance(exc, NotFound):
            return problem_response(Problem(404, "not found", str(exc)))
        if isinstance(exc, StateError):
            return problem_response(Problem(409, "conflict", str(exc)))
        field = getattr(exc, "field", None)
        if isinstance(exc, (InputError, TemplateRenderError)):
            return problem_response(Problem(422, "invalid input", str(exc), errors=[
                {"field": field or "-", "reason": str(exc)}]))
        return problem_response(Problem(400, "cannot do that", str(exc)))

    @api.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                   "reason": e.get("msg", "invalid")} for e in exc.errors()]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem_response(Problem(400, "malformed JSON", "the body is not JSON",
                                            errors=errors))
        return problem_response(Problem(422, "invalid request", errors=errors))

    @api.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(Problem(exc.status_code, str(exc.detail)))

    deps = Deps(ctx=ctx, db=db, need=need, enqueue=enqueue)
    routes_deliveries.register(api, deps)   # first: /suppressions/export before any /{address}
    routes_campaigns.register(api, deps)
    routes_audience.register(api, deps)
    routes_content.register(api, deps)
    routes_settings.register(api, deps)
    routes_schedules.register(api, deps)
    routes_messages.register(api, deps)
    return api

