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
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional, Sequence

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from campaigns.errors import CampaignsError, InputError, NotFound, StateError
from campaigns.web.keys import KeyInfo, authenticate

if TYPE_CHECKING:
    from campaigns.context import Context

log = logging.getLogger("campaigns.web")

Enqueue = Callable[[Sequence[int], Optional[float], str], None]
PROBLEM = "application/problem+json"
MAX_PAGE = 500


class Problem(Exception):
    """An error answer: RFC 9457 problem details."""

    def __init__(self, status: int, title: str, detail: str | None = None,
                 errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers = errors or [], headers


def problem_response(p: Problem) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": p.title, "status": p.status}
    if p.detail:
        body["detail"] = p.detail
    if p.errors:
        body["errors"] = p.errors
    return JSONResponse(body, status_code=p.status, media_type=PROBLEM, headers=p.headers)


# --- declarations (the OpenAPI document is made from these) ---------------------------------

class ProblemBody(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: Optional[str] = None
    errors: list[dict[str, Any]] = []


class CampaignItem(BaseModel):
    name: str
    status: str
    list: str
    template: str


class CampaignPage(BaseModel):
    items: list[CampaignItem]
    next: Optional[str] = Field(None, description="the cursor of the next page; null at the end")


class CampaignStatusBody(BaseModel):
    campaign: str
    status: str
    reason: Optional[str]
    total: int
    counts: dict[str, int]


class LaunchBody(BaseModel):
    at: Optional[str] = Field(None, description='launch later: "2026-12-01 08:30"')
    timezone: Optional[str] = Field(None, description="the zone of `at`, e.g. Europe/Rome")


class Changed(BaseModel):
    campaign: str
    status: str
    detail: str


class SuppressionItem(BaseModel):
    address: str
    scope: str
    reason: Optional[str]
    source: Optional[str]
    category: Optional[str]
    created_at: str


class SuppressionPage(BaseModel):
    items: list[SuppressionItem]
    next: Optional[str] = None


class SuppressionIn(BaseModel):
    address: str = Field(..., max_length=320)
    reason: str = Field("manual", max_length=500)
    scope: str = Field("all", max_length=120, description="all, bulk, stream:NAME or list:NAME")


class SuppressionAdded(BaseModel):
    address: str
    scope: str
    added: bool = Field(..., description="false when a suppression already covered it")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemBody, "description": text} for code, text in (
        (400, "malformed request"), (401, "no live API key"), (403, "the key lacks the scope"),
        (404, "not found"), (409, "not in a state that allows it"),
        (413, "body too large"), (422, "a field is not valid"),
        (429, "the key's request rate is exceeded"))}


def _cursor(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 18:
        raise Problem(422, "invalid cursor", errors=[{"field": "cursor",
                                                      "reason": "use the `next` of a page"}])
    return int(value)


def create_api(ctx: "Context", enqueue: Enqueue | None = None) -> FastAPI:
    """The /api/v1 app of one installation (`ctx`: campaigns.context); `enqueue` publishes
    send tasks (launch, resume), handed in by the Celery layer."""
    db = ctx.db
    api = FastAPI(title="campaigns", version="1", openapi_url="/openapi.json", docs_url=None,
                  redoc_url=None, responses=ERRORS,
                  description="Queued bulk e-mail: campaigns, suppressions and the ledger.")
    bearer = HTTPBearer(auto_error=False, description="a key from `campaigns keys create`")

    def limiter_for(key: KeyInfo) -> None:
        from campaigns.rates.limiter import Limit, RedisLimiter
        decision = RedisLimiter(ctx.redis, prefix="campaigns:api:").acquire(
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
        if isinstance(exc, InputError):
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

    # --- campaigns ------------------------------------------------------------------------
    @api.get("/campaigns", response_model=CampaignPage, tags=["campaigns"])
    def campaigns_list(key: KeyInfo = need("read"),
                       limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                       cursor: Optional[str] = None) -> dict[str, Any]:
        """Campaigns in creation order, a page at a time."""
        from campaigns.ledger.reads import list_campaigns
        rows = list_campaigns(db, after_id=_cursor(cursor), limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": rows, "next": str(rows[-1]["id"]) if more else None}

    @api.get("/campaigns/{name}", response_model=CampaignStatusBody, tags=["campaigns"])
    def campaign_get(name: str, key: KeyInfo = need("read")) -> dict[str, Any]:
        """The ledger's counts of one campaign, as `campaigns status NAME --json`."""
        from campaigns.ledger.reads import counts
        return counts(db, name)

    def _enqueue() -> Enqueue:
        if enqueue is None:
            raise Problem(503, "no task queue", "this process cannot publish send tasks")
        return enqueue

    @api.post("/campaigns/{name}/launch", response_model=Changed, tags=["campaigns"])
    def campaign_launch(name: str, body: Optional[LaunchBody] = None,
                        key: KeyInfo = need("manage")) -> dict[str, Any]:
        """Preflight, expand the list and queue one task per recipient; with `at`, schedule
        the launch. Launching a campaign already sending sends nothing new."""
        from campaigns import lifecycle
        counts_status(name)     # 404 for an unknown campaign, before anything else
        if body is not None and body.at:
            from campaigns.scheduling import schedule_once
            when = schedule_once(db, name, body.at, body.timezone)
            return {"campaign": name, "status": "scheduled",
                    "detail": f"scheduled for {when:%Y-%m-%d %H:%M} UTC"}
        report = lifecycle.launch(db, ctx.settings, name, _enqueue())
        detail = (f"already {report.was}: {report.queued} queued" if report.relaunch else
                  f"{report.added} recipients added ({report.suppressed} suppressed), "
                  f"{report.enqueued} queued for sending")
        return {"campaign": name, "status": counts_status(name), "detail": detail}

    def counts_status(name: str) -> str:
        from campaigns.ledger.reads import counts
        return str(counts(db, name)["status"])

    @api.post("/campaigns/{name}/pause", response_model=Changed, tags=["campaigns"])
    def campaign_pause(name: str, key: KeyInfo = need("manage")) -> dict[str, Any]:
        """No new send starts after this (sends under way finish)."""
        from campaigns import lifecycle
        lifecycle.pause(db, name, reason=f"paused through the API (key '{key.name}')")
        return {"campaign": name, "status": "paused", "detail": "paused"}

    @api.post("/campaigns/{name}/resume", response_model=Changed, tags=["campaigns"])
    def campaign_resume(name: str, key: KeyInfo = need("manage")) -> dict[str, Any]:
        """Back to sending; the unsent rows are published again."""
        from campaigns import lifecycle
        counts_status(name)     # 404 for an unknown campaign, before anything else
        n = lifecycle.resume(db, ctx.settings, name, _enqueue())
        return {"campaign": name, "status": counts_status(name), "detail": f"{n} re-queued"}

    @api.post("/campaigns/{name}/cancel", response_model=Changed, tags=["campaigns"])
    def campaign_cancel(name: str, key: KeyInfo = need("manage")) -> dict[str, Any]:
        """Cancel the campaign; its unsent rows become `cancelled`."""
        from campaigns import lifecycle
        n = lifecycle.cancel(db, name)
        return {"campaign": name, "status": "cancelled", "detail": f"{n} unsent cancelled"}

    # --- suppressions ---------------------------------------------------------------------
    @api.get("/suppressions", response_model=SuppressionPage, tags=["suppressions"])
    def suppressions_list(key: KeyInfo = need("read"),
                          limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                          cursor: Optional[str] = None) -> dict[str, Any]:
        """Suppressions in the order they were recorded, a page at a time."""
        from campaigns.ledger import suppressions
        rows = suppressions.page(db, _cursor(cursor), limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [{"address": r.address, "scope": r.scope, "reason": r.reason,
                  "source": r.source, "category": r.category,
                  "created_at": r.created_at.isoformat()} for r in rows]
        return {"items": items, "next": str(rows[-1].id) if more else None}

    @api.post("/suppressions", response_model=SuppressionAdded, status_code=201,
              tags=["suppressions"])
    def suppressions_add(body: SuppressionIn, key: KeyInfo = need("manage")) -> dict[str, Any]:
        """Suppress an address in a scope; `added` false when one already covered it."""
        from campaigns.ledger import suppressions
        scope = suppressions.parse_scope(body.scope)
        added = suppressions.add(db, body.address, body.reason, source=f"api:{key.name}",
                                 scope=scope)
        return {"address": body.address.strip().lower(), "scope": scope, "added": added}

    @api.delete("/suppressions/{address}", status_code=204, tags=["suppressions"],
                response_model=None)
    def suppressions_remove(address: str, key: KeyInfo = need("manage"),
                            scope: Optional[str] = None) -> None:
        """Lift the suppressions of an address (in every scope, or in `scope`)."""
        from campaigns.ledger import suppressions
        if not suppressions.remove(db, address, scope):
            raise Problem(404, "not found", f"{address} is not suppressed"
                          + (f" in {scope}" if scope else ""))

    return api

