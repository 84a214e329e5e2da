"""The API's campaign and suppression resources (campaigns.web.api builds the app): the
same functions as `campaigns status/launch/pause/resume/cancel` and `suppressions …`."""
from __future__ import annotations

from typing import Annotated, Any, Optional

from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from campaigns.web.common import MAX_PAGE, Deps, Problem, cursor_of
from campaigns.web.keys import KeyInfo


class CampaignItem(BaseModel):
    name: str
    status: str
    list: Optional[str] = Field(None, description="null for a stream's campaign (tx:NAME)")
    template: Optional[str] = None


class CampaignIn(BaseModel):
    """The options of `campaigns create`."""
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    name: str = Field(..., min_length=1, max_length=200)
    list: str = Field(..., min_length=1, max_length=200)
    template: str = Field(..., min_length=1, max_length=200)
    from_: str = Field(..., alias="from", max_length=500)
    reply_to: Optional[str] = Field(None, max_length=500)
    relay: Optional[str] = Field(None, max_length=200, description="a relay or pool")
    attachment_column: Optional[str] = Field(None, max_length=200)
    priority: str = Field("bulk", max_length=20, description="bulk or transactional")
    window: Optional[str] = Field(None, max_length=200, description='"mon-fri 09:00-18:00"')
    timezone: Optional[str] = Field(None, max_length=64)


#: the CLI's option names in InputError fields, as the body's
_FIELDS = {"--from": "from", "--reply-to": "reply_to", "--priority": "priority",
           "--window": "window", "--timezone": "timezone", "--relay": "relay", "NAME": "name"}


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



def register(api: FastAPI, d: Deps) -> None:
    # --- campaigns ------------------------------------------------------------------------
    @api.get("/campaigns", response_model=CampaignPage, tags=["campaigns"])
    def campaigns_list(key: KeyInfo = d.need("read"),
                       limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                       cursor: Optional[str] = None) -> dict[str, Any]:
        """Campaigns in creation order, a page at a time."""
        from campaigns.ledger.reads import list_campaigns
        rows = list_campaigns(d.db, after_id=cursor_of(cursor), limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": rows, "next": str(rows[-1]["id"]) if more else None}

    @api.post("/campaigns", response_model=CampaignStatusBody, status_code=201,
              tags=["campaigns"])
    def campaign_create(body: CampaignIn, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """A draft campaign, as `campaigns create`: 409 when the name is taken, 404 for an
        unknown list or template, 422 naming a field that is not valid."""
        from campaigns import lifecycle
        from campaigns.errors import InputError
        from campaigns.ledger.reads import counts
        try:
            lifecycle.create_campaign(
                d.db, d.ctx.settings, name=body.name, list_name=body.list,
                template=body.template, from_addr=body.from_, reply_to=body.reply_to,
                relay=body.relay, attachment_column=body.attachment_column,
                priority=body.priority, window=body.window, timezone=body.timezone)
        except InputError as err:
            field = _FIELDS.get(str(err.field), str(err.field or "-").lstrip("-"))
            raise Problem(422, "invalid input", str(err),
                          errors=[{"field": field, "reason": str(err)}]) from None
        return counts(d.db, body.name)

    @api.get("/campaigns/{name}", response_model=CampaignStatusBody, tags=["campaigns"])
    def campaign_get(name: str, key: KeyInfo = d.need("read")) -> dict[str, Any]:
        """The ledger's counts of one campaign, as `campaigns status NAME --json`."""
        from campaigns.ledger.reads import counts
        return counts(d.db, name)

    @api.post("/campaigns/{name}/launch", response_model=Changed, tags=["campaigns"])
    def campaign_launch(name: str, body: Optional[LaunchBody] = None,
                        key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Preflight, expand the list and queue one task per recipient; with `at`, schedule
        the launch. Launching a campaign already sending sends nothing new."""
        from campaigns import lifecycle
        counts_status(name)     # 404 for an unknown campaign, before anything else
        if body is not None and body.at:
            from campaigns.scheduling import schedule_once
            when = schedule_once(d.db, name, body.at, body.timezone)
            return {"campaign": name, "status": "scheduled",
                    "detail": f"scheduled for {when:%Y-%m-%d %H:%M} UTC"}
        report = lifecycle.launch(d.db, d.ctx.settings, name, d.publish())
        detail = (f"already {report.was}: {report.queued} queued" if report.relaunch else
                  f"{report.added} recipients added ({report.suppressed} suppressed), "
                  f"{report.queued} queued for sending")
        return {"campaign": name, "status": counts_status(name), "detail": detail}

    def counts_status(name: str) -> str:
        from campaigns.ledger.reads import counts
        return str(counts(d.db, name)["status"])

    @api.post("/campaigns/{name}/pause", response_model=Changed, tags=["campaigns"])
    def campaign_pause(name: str, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """No new send starts after this (sends under way finish)."""
        from campaigns import lifecycle
        lifecycle.pause(d.db, name, reason=f"paused through the API (key '{key.name}')")
        return {"campaign": name, "status": "paused", "detail": "paused"}

    @api.post("/campaigns/{name}/resume", response_model=Changed, tags=["campaigns"])
    def campaign_resume(name: str, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Back to sending; the unsent rows are published again."""
        from campaigns import lifecycle
        counts_status(name)     # 404 for an unknown campaign, before anything else
        n = lifecycle.resume(d.db, d.ctx.settings, name, d.publish())
        return {"campaign": name, "status": counts_status(name), "detail": f"{n} re-queued"}

    @api.post("/campaigns/{name}/cancel", response_model=Changed, tags=["campaigns"])
    def campaign_cancel(name: str, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Cancel the campaign; its unsent rows become `cancelled`."""
        from campaigns import lifecycle
        n = lifecycle.cancel(d.db, name)
        return {"campaign": name, "status": "cancelled", "detail": f"{n} unsent cancelled"}

    # --- suppressions ---------------------------------------------------------------------
    @api.get("/suppressions", response_model=SuppressionPage, tags=["suppressions"])
    def suppressions_list(key: KeyInfo = d.need("read"),
                          limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                          cursor: Optional[str] = None) -> dict[str, Any]:
        """Suppressions in the order they were recorded, a page at a time."""
        from campaigns.ledger import suppressions
        rows = suppressions.page(d.db, cursor_of(cursor), limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [{"address": r.address, "scope": r.scope, "reason": r.reason,
                  "source": r.source, "category": r.category,
                  "created_at": r.created_at.isoformat()} for r in rows]
        return {"items": items, "next": str(rows[-1].id) if more else None}

    @api.post("/suppressions", response_model=SuppressionAdded, status_code=201,
              tags=["suppressions"])
    def suppressions_add(body: SuppressionIn, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Suppress an address in a scope; `added` false when one already covered it."""
        from campaigns.ledger import suppressions
        scope = suppressions.parse_scope(body.scope)
        added = suppressions.add(d.db, body.address, body.reason, source=f"api:{key.name}",
                                 scope=scope)
        return {"address": body.address.strip().lower(), "scope": scope, "added": added}

    @api.delete("/suppressions/{address}", status_code=204, tags=["suppressions"],
                response_model=None)
    def suppressions_remove(address: str, key: KeyInfo = d.need("manage"),
                            scope: Optional[str] = None) -> None:
        """Lift the suppressions of an address (in every scope, or in `scope`)."""
        from campaigns.ledger import suppressions
        if not suppressions.remove(d.db, address, scope):
            raise Problem(404, "not found", f"{address} is not suppressed"
                          + (f" in {scope}" if scope else ""))
