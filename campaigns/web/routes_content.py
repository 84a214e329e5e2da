"""The API's templates (campaigns.web.api builds the app): the twins of `templates add
[--replace]`, `templates list` and `templates preview`, through the same functions, so a
template is compiled (and its errors name part and line) before anything is stored, and is
never replaced under a campaign that still renders from it."""
from __future__ import annotations

from typing import Any, Optional, Union

from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

from campaigns.web.common import Deps
from campaigns.web.keys import KeyInfo

Value = Union[str, int, float, bool, None]


class TemplateIn(BaseModel):
    subject: str = Field(..., max_length=2_000)
    html: str = Field(..., max_length=2_000_000)
    text: Optional[str] = Field(None, max_length=2_000_000,
                                description="omitted: derived from the HTML once, when stored")


class TemplateOut(BaseModel):
    name: str
    subject: str
    html: str
    text: str
    text_generated: bool


class PreviewIn(BaseModel):
    contact: Optional[str] = Field(None, max_length=320, description="a stored contact's address")
    attributes: dict[str, Value] = Field(default_factory=dict,
                                         description="or the contact's attributes, given here")
    email: str = Field("preview@example.invalid", max_length=320)
    campaign: str = Field("preview", max_length=200, description="campaign.name in the preview")


class Rendered(BaseModel):
    subject: str
    html: str
    text: str


def _out(t: Any) -> dict[str, Any]:
    return {"name": t.name, "subject": t.subject, "html": t.html, "text": t.text,
            "text_generated": t.text_generated}


def register(api: FastAPI, d: Deps) -> None:
    @api.get("/templates", tags=["templates"], response_model=list[dict[str, Any]])
    def templates_list(key: KeyInfo = d.need("read")) -> list[dict[str, Any]]:
        """Every template: name, subject, whether its text part was derived from the HTML."""
        from campaigns.content.templates import list_templates
        return list_templates(d.db)

    @api.get("/templates/{name}", tags=["templates"], response_model=TemplateOut)
    def template_get(name: str, key: KeyInfo = d.need("read")) -> dict[str, Any]:
        """One template, its three parts as stored."""
        from campaigns.ledger.reads import get_template
        with d.db.session() as s:
            return _out(get_template(s, name))

    @api.put("/templates/{name}", tags=["templates"], response_model=TemplateOut,
             responses={201: {"model": TemplateOut, "description": "created"}})
    def template_put(name: str, body: TemplateIn, response: Response,
                     key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Create or replace template NAME (201 when created). A syntax error is a 422
        naming the part and line; a template that a sending, paused or waiting campaign
        renders from is not replaced (409)."""
        from campaigns.content.templates import store_template
        template, created = store_template(d.db, name, body.subject, body.html, body.text,
                                           replace=True)
        response.status_code = 201 if created else 200
        return _out(template)

    @api.post("/templates/{name}/preview", tags=["templates"], response_model=Rendered)
    def template_preview(name: str, body: PreviewIn,
                         key: KeyInfo = d.need("read")) -> dict[str, Any]:
        """The message as rendered for a stored contact, or for the attributes given."""
        from campaigns.content.compose import compile_stored, contact_row, unsubscribe_url
        from campaigns.content.rendering import build_context
        from campaigns.ledger.reads import get_template
        with d.db.session() as s:
            template = get_template(s, name)
            if body.contact:
                email, attributes, _ = contact_row(s, body.contact)
            else:
                email = body.email
                attributes = {k: "" if v is None else str(v) for k, v in body.attributes.items()}
        url = unsubscribe_url(d.ctx.settings, None, "sender@example.invalid")
        rendered = compile_stored(template).render(build_context(
            email=email, attributes=attributes, campaign_name=body.campaign,
            unsubscribe_url=url))
        return {"subject": rendered.subject, "html": rendered.html, "text": rendered.text}
