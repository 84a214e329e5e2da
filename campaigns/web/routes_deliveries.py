"""The API's view of the ledger's rows (campaigns.web.api builds the app): one campaign's
deliveries, a page at a time, and the suppressions as the CSV of `suppressions export`.

Registered before routes_campaigns, so `GET /suppressions/export` is matched here before any
`/suppressions/{address}` route could take "export" for an address."""
from __future__ import annotations

import io
from typing import Annotated, Any, Optional

from fastapi import FastAPI, Query, Response
from pydantic import BaseModel, Field

from campaigns.models import DELIVERY_STATUSES
from campaigns.web.common import MAX_PAGE, Deps, RowOutcome, cursor_of
from campaigns.web.keys import KeyInfo


class DeliveryItem(RowOutcome):
    id: int
    address: str


class DeliveryPage(BaseModel):
    items: list[DeliveryItem]
    next: Optional[str] = Field(None, description="the cursor of the next page; null at the end")


CSV = "text/csv"   # Starlette adds "; charset=utf-8"


def register(api: FastAPI, d: Deps) -> None:
    @api.get("/campaigns/{name}/deliveries", response_model=DeliveryPage, tags=["campaigns"])
    def deliveries_list(name: str, key: KeyInfo = d.need("read"),
                        status: Annotated[Optional[str], Query(
                            max_length=40,
                            description=f"only rows in this status: {', '.join(DELIVERY_STATUSES)}"
                        )] = None,
                        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                        cursor: Optional[str] = None) -> dict[str, Any]:
        """A campaign's deliveries (one per recipient) in id order, a page at a time, with
        the relay's last answer and the bounce's classification."""
        from campaigns.ledger.reads import deliveries_page
        rows = deliveries_page(d.db, name, status or None, after_id=cursor_of(cursor),
                               limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": rows, "next": str(rows[-1]["id"]) if more else None}

    @api.get("/suppressions/export", tags=["suppressions"], response_class=Response,
             responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                              "description": "the CSV of `campaigns suppressions export`"}})
    def suppressions_export(key: KeyInfo = d.need("read")) -> Response:
        """Every suppression with its cause and scope, as CSV (the columns of `campaigns
        suppressions export`, which `suppressions import` reads back). A cell a spreadsheet
        would run as a formula (= + - @, tab, CR first) gets a leading single quote."""
        from campaigns.ledger.suppressions import export_csv
        buffer = io.StringIO()
        export_csv(d.db, buffer)
        return Response(buffer.getvalue(), media_type=CSV, headers={
            "Content-Disposition": 'attachment; filename="suppressions.csv"'})
