"""Transactional messages: `POST /messages` (one message per recipient, each a delivery of
its stream's campaign, idempotent under `Idempotency-Key`), `GET /messages/{id}` with its
timeline and `GET /messages`; the twins of `campaigns messages list/show`."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Optional, Union

from fastapi import FastAPI, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from campaigns.web.common import MAX_PAGE, Deps, Problem, RowOutcome, cursor_of
from campaigns.web.keys import KeyInfo

MAX_RECIPIENTS = 50
_STREAM = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*$")


class AttachmentIn(BaseModel):
    filename: str = Field(..., min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", max_length=200)
    content_base64: str


class MessageIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    to: Union[str, list[str]] = Field(..., description=f"one address, or up to "
                                      f"{MAX_RECIPIENTS} (one message each)")
    from_: str = Field(..., alias="from", max_length=500)
    reply_to: Optional[str] = Field(None, max_length=500)
    template: Optional[str] = Field(None, max_length=200,
                                    description="a stored template, rendered with `data`")
    data: dict[str, Any] = Field(default_factory=dict)
    subject: Optional[str] = Field(None, max_length=2000,
                                   description="with `html` instead of `template`")
    html: Optional[str] = None
    text: Optional[str] = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=50)
    ref: Optional[str] = Field(None, max_length=200, description="your reference")
    stream: str = Field("default", pattern=_STREAM)
    relay: Optional[str] = Field(None, max_length=200, description="a relay or pool")


class Accepted(BaseModel):
    id: int
    to: str
    status: str = Field(..., description="queued, or suppressed (with the reason)")
    reason: Optional[str] = None


class AcceptedBody(BaseModel):
    messages: list[Accepted]


class MessageView(RowOutcome):
    id: int
    to: str
    stream: str
    ref: Optional[str]
    message_id: Optional[str]
    created_at: Optional[str]
    events: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []


class MessagePage(BaseModel):
    items: list[MessageView]
    next: Optional[str] = None


def _invalid(field: str, reason: str) -> Problem:
    return Problem(422, "invalid input", f"{field}: {reason}",
                   errors=[{"field": field, "reason": reason}])


def prepare(d: Deps, body: MessageIn, key: str) -> list[Any]:
    """The request as ledger messages, every field checked; Problem (422, 413) naming the
    field otherwise. Nothing is stored here."""
    from campaigns.audience.contacts import normalise_address
    from campaigns.content.mime import parse_address
    from campaigns.errors import CampaignsError
    from campaigns.ledger.messages import NewMessage
    settings = d.ctx.settings
    recipients = [body.to] if isinstance(body.to, str) else list(body.to)
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise _invalid("to", f"give 1 to {MAX_RECIPIENTS} addresses")
    seen: dict[str, int] = {}
    addresses = []
    for i, raw in enumerate(recipients):
        field = "to" if isinstance(body.to, str) else f"to[{i}]"
        try:
            address = normalise_address(parse_address(raw, field=field)[1])
        except (ValueError, CampaignsError) as err:
            raise _invalid(field, str(err)) from None
        if address in seen:
            raise _invalid(field, f"repeats to[{seen[address]}]: one message per address")
        seen[address] = i
        addresses.append(address)
    for field, value in (("from", body.from_), ("reply_to", body.reply_to)):
        if value is not None:
            try:
                parse_address(value, field=field)
            except CampaignsError as err:
                raise _invalid(field, str(err)) from None
    _check_content(d, body)
    if body.relay is not None and body.relay not in settings.relays and \
            settings.pool(body.relay) is None:
        raise _invalid("relay", f"no relay or pool named '{body.relay}'")
    files = _files(body, settings.attachments.max_message_bytes)
    return [NewMessage(to=a, from_addr=body.from_, stream=body.stream, reply_to=body.reply_to,
                       relay=body.relay, template=body.template, data=body.data,
                       subject=body.subject, html=body.html, text=body.text, ref=body.ref,
                       attachments=files) for a in addresses]


def _check_content(d: Deps, body: MessageIn) -> None:
    """A stored template (rendered once here with `data`, so a missing variable is a 422
    now, not a failed message later), or subject and html; never both."""
    from campaigns.content.compose import compile_stored, message_context
    from campaigns.errors import NotFound, TemplateRenderError
    from campaigns.ledger.reads import get_template
    inline = body.subject is not None or body.html is not None or body.text is not None
    if body.template is None:
        if body.subject is None or body.html is None:
            raise _invalid("template", "give a template, or subject and html")
        return
    if inline:
        raise _invalid("template", "give a template or subject/html/text, not both")
    try:
        with d.db.session() as s:
            compiled = compile_stored(get_template(s, body.template))
        compiled.render(message_context("recipient@example.invalid", body.data, body.stream))
    except NotFound as err:
        raise _invalid("template", str(err)) from None
    except TemplateRenderError as err:
        raise _invalid("data", str(err)) from None


def _files(body: MessageIn, limit: int) -> list[tuple[str, str, bytes]]:
    files, total = [], 0
    for i, a in enumerate(body.attachments):
        field = f"attachments[{i}]"
        if any(c in a.filename for c in "/\\\r\n\0") or a.filename in (".", ".."):
            raise _invalid(f"{field}.filename", "a file name, without a path or line breaks")
        if not _CONTENT_TYPE.match(a.content_type):
            raise _invalid(f"{field}.content_type", "a MIME type such as application/pdf")
        try:
            content = base64.b64decode(a.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"{field}.content_base64", "not valid base64") from None
        total += len(content)
        if total > limit:
            raise Problem(413, "attachments too large",
                          f"the attachments pass {limit} bytes ([attachments] "
                          "max_message_bytes)", errors=[{"field": field, "reason": "too large"}])
        files.append((a.filename, a.content_type, content))
    return files


def register(api: FastAPI, d: Deps) -> None:
    @api.post("/messages", tags=["messages"], status_code=202, response_model=AcceptedBody)
    def send_messages(body: MessageIn, response: Response,
                      idempotency_key: Annotated[Optional[str], Header(
                          max_length=200, description="the same key and body within 24 h "
                          "answers the first answer and sends nothing new")] = None,
                      key: KeyInfo = d.need("send")) -> dict[str, Any]:
        """Hand over transactional messages (one per recipient): stored before the 202,
        sent on the transactional queue ahead of bulk mail."""
        from campaigns.ledger.messages import campaign_name, submit
        publish = d.publish()
        items = prepare(d, body, key.name)
        settings = d.ctx.settings
        idem = None
        if idempotency_key is not None:
            canonical = json.dumps(body.model_dump(by_alias=True), sort_keys=True)
            idem = (idempotency_key, hashlib.sha256(canonical.encode()).hexdigest())
        name = campaign_name(body.stream)
        done = submit(d.db, items, owner=key.name, idempotency=idem,
                      wants=lambda t: settings.callbacks.wants(t, body.stream, name))
        if done.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        elif done.queued:
            publish(done.queued, None, "transactional")
        return done.response

    @api.get("/messages/{message_id}", tags=["messages"], response_model=MessageView)
    def message_show(message_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
                     key: KeyInfo = d.need("read")) -> dict[str, Any]:
        """Status, attempts, the last reply, the bounce's category and reason, the
        provider's id, your `ref`, and the timeline of events."""
        from campaigns.ledger.messages import get
        return get(d.db, message_id)

    @api.get("/messages", tags=["messages"], response_model=MessagePage)
    def message_list(stream: Annotated[Optional[str], Query(max_length=100)] = None,
                     status: Annotated[Optional[str], Query(max_length=20)] = None,
                     ref: Annotated[Optional[str], Query(max_length=200)] = None,
                     since_s: Annotated[Optional[int], Query(ge=1, le=10**8, description=
                                                             "only the last N seconds")] = None,
                     limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                     cursor: Annotated[Optional[str], Query(max_length=20)] = None,
                     key: KeyInfo = d.need("read")) -> dict[str, Any]:
        """Messages, oldest first, filtered by stream, status, ref and age."""
        from campaigns.ledger.messages import listing
        from campaigns.models import DELIVERY_STATUSES
        if status is not None and status not in DELIVERY_STATUSES:
            raise _invalid("status", f"one of {', '.join(DELIVERY_STATUSES)}")
        since = (datetime.now(timezone.utc) - timedelta(seconds=since_s)) if since_s else None
        items = listing(d.db, stream=stream, status=status, ref=ref, since=since,
                        after_id=cursor_of(cursor), limit=limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return {"items": items, "next": str(items[-1]["id"]) if more else None}
