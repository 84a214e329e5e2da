"""What the API's modules share: problem details (RFC 9457), the error table of the OpenAPI
document, the cursor of a page, and `Deps`, what a route module gets from the app."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from campaigns.context import Context

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


class RowOutcome(BaseModel):
    """Where a delivery stands: its status and the relay's last answer (a campaign's
    deliveries, a transactional message)."""
    status: str
    attempts: int
    reply_code: Optional[int]
    enhanced_status: Optional[str]
    reply_text: Optional[str]
    bounce_category: Optional[str]
    bounce_reason: Optional[str]
    relay: Optional[str]
    provider_message_id: Optional[str]
    sent_at: Optional[str] = Field(None, description="ISO 8601, UTC")
    updated_at: Optional[str] = Field(None, description="ISO 8601, UTC")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemBody, "description": text} for code, text in (
        (400, "malformed request"), (401, "no live API key"), (403, "the key lacks the scope"),
        (404, "not found"), (409, "not in a state that allows it"),
        (413, "body too large"), (422, "a field is not valid"),
        (429, "the key's request rate is exceeded"))}


@dataclass
class Deps:
    """What route modules get from the app: the composition root, the database, the scope
    check (`need("read")` as a parameter default) and the Celery layer's enqueue."""
    ctx: "Context"
    db: Any
    need: Callable[[str], Any]
    enqueue: Enqueue | None

    def publish(self) -> Enqueue:
        if self.enqueue is None:
            raise Problem(503, "no task queue", "this process cannot publish send tasks")
        return self.enqueue


def cursor_of(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isascii() or not value.isdigit() or int(value) > 2**31 - 1:
        raise Problem(422, "invalid cursor", errors=[{"field": "cursor",
                                                      "reason": "use the `next` of a page"}])
    return int(value)


