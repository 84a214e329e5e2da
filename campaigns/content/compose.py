"""Turn (campaign, recipient) into the bytes a relay sends. Shared by the send path, test
sends, previews and the launch preflight. The per-campaign parts (compiled template, encoded
From/Reply-To) are prepared once per process in `CampaignRuntime`."""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.content import attachments
from campaigns.errors import CampaignsError
from campaigns.headers import DELIVERY_HEADER
from campaigns.content.mime import Attachment, MessageBuilder, make_message_id, parse_address
from campaigns.models import Campaign, Template
from campaigns.content.rendering import (CompiledTemplate, Record, Rendered, build_context,
                                 compile_template)
from campaigns.settings import AttachmentPolicy, Settings
from campaigns.content.tokens import (UNSUBSCRIBE_LOCAL_PART, make_return_path, make_token,
                                      make_unsubscribe_token)


@dataclass
class CampaignRuntime:
    id: int
    name: str
    relay: str | None
    template: CompiledTemplate
    builder: MessageBuilder
    attachment_column: str | None
    from_domain: str
    priority: str = "bulk"
    window: Any = None          # campaigns.rates.windows.Window when the campaign has one
    extra: dict[str, Any] | None = None   # template names beyond contact/campaign: `run`
    stream: str | None = None   # a stream's campaign: each message brings its own content


def compile_stored(template: Template) -> CompiledTemplate:
    return compile_template(template.name, template.subject, template.html, template.text)


def load_runtime(session: Session, campaign_id: int) -> CampaignRuntime:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignsError(f"campaign id {campaign_id} does not exist")
    if campaign.stream is not None:    # its messages carry their content (compose_message)
        return CampaignRuntime(
            id=campaign.id, name=campaign.name, relay=campaign.relay, stream=campaign.stream,
            template=compile_template(campaign.name, "", "", ""),
            builder=MessageBuilder(from_addr=f"stream@{_STREAM_DOMAIN}"),
            attachment_column=None, from_domain=_STREAM_DOMAIN, priority=campaign.priority)
    template = session.get(Template, campaign.template_id)
    assert template is not None
    _, addr = parse_address(campaign.from_addr, field="from")
    return CampaignRuntime(
        id=campaign.id, name=campaign.name, relay=campaign.relay,
        template=compile_stored(template),
        builder=MessageBuilder(from_addr=campaign.from_addr, reply_to=campaign.reply_to),
        attachment_column=campaign.attachment_column,
        from_domain=addr.rpartition("@")[2] or "localhost", priority=campaign.priority,
        window=_window(campaign),
        extra={"run": Record("run", campaign.run_context)} if campaign.run_context else None)


#: a stream's campaign has no sender of its own; its runtime's builder is never used
_STREAM_DOMAIN = "stream.invalid"


def _window(campaign: Campaign) -> Any:
    if not campaign.send_window:
        return None
    from campaigns.rates.windows import parse_window
    return parse_window(campaign.send_window, campaign.timezone or "UTC")


def runtime_by_name(session: Session, name: str) -> CampaignRuntime:
    from campaigns.ledger.reads import get_campaign
    return load_runtime(session, get_campaign(session, name).id)


def _page_base(settings: Settings) -> str | None:
    """Where the unsubscribe pages are: `[web] public_url` + ``/u/`` (`campaigns serve`
    answers there), else the former top-level `unsubscribe_url` (the token is appended to
    it: point it at a `campaigns serve`'s ``/u/``)."""
    if settings.web.public_url:
        return settings.web.public_url.rstrip("/") + "/u/"
    return settings.unsubscribe_url or None


def unsubscribe_url(settings: Settings, delivery_id: int | None, sender: str) -> str:
    """The unsubscribe page of one delivery (the base plus its signed token: `/u/TOKEN`);
    a preview's has no token; without a base, a mailto: to the sender."""
    base = _page_base(settings)
    if base and delivery_id is not None:
        return base + make_unsubscribe_token(settings.secret_key, delivery_id)
    if base:
        return base + "preview"
    return "mailto:" + sender + "?subject=" + urllib.parse.quote("unsubscribe")


def list_unsubscribe(settings: Settings, delivery_id: int) -> list[str]:
    """The List-Unsubscribe URIs of one bulk delivery (RFC 2369, RFC 8058): the one-click
    page (`/u/TOKEN`) when a base is configured, and ``mailto:unsubscribe+TOKEN@`` the bounce
    domain (answered by the bounce intake) when `[bounces] domain` is set. Empty: neither."""
    token = make_unsubscribe_token(settings.secret_key, delivery_id)
    base, domain = _page_base(settings), settings.bounces.domain
    uris = [base + token] if base else []
    if domain:
        uris.append(f"mailto:{UNSUBSCRIBE_LOCAL_PART}+{token}@{domain}")
    return uris


def return_path(settings: Settings, delivery_id: int, sender: str) -> str:
    """The envelope sender (MAIL FROM) of one delivery: a signed VERP address at the bounce
    domain when one is configured, so every bounce names its delivery; else the From."""
    cfg = settings.bounces
    if not cfg.domain:
        return sender
    return make_return_path(settings.secret_key, delivery_id, cfg.local_part, cfg.domain)


def attachment_path(rt: CampaignRuntime, policy: AttachmentPolicy, address: str,
                    attributes: Mapping[str, Any], source_dir: str | None) -> Path | None:
    """The checked real path of `address`'s attachment (campaigns.content.attachments.resolve), None
    when the campaign attaches nothing. Raises AttachmentError naming the rule."""
    if not rt.attachment_column:
        return None
    value = str(attributes.get(rt.attachment_column) or "")
    return attachments.resolve(policy, address, rt.attachment_column, value, source_dir)


def load_attachment(rt: CampaignRuntime, policy: AttachmentPolicy, address: str,
                    attributes: Mapping[str, Any], source_dir: str | None) -> list[Attachment]:
    path = attachment_path(rt, policy, address, attributes, source_dir)
    if path is None:
        return []
    assert rt.attachment_column is not None
    value = str(attributes.get(rt.attachment_column) or "").strip()
    content = attachments.read(policy, address, rt.attachment_column, value, path)
    attachments.check_total(policy, address, [len(content)])
    return [Attachment(filename=path.name, content=content)]


def render(rt: CampaignRuntime, settings: Settings, *, delivery_id: int | None, address: str,
           attributes: Mapping[str, Any]) -> tuple[Rendered, list[str] | None]:
    """The rendered parts and the List-Unsubscribe URIs (None for transactional mail and
    for copies that are not a delivery)."""
    sender = rt.builder.envelope_from
    url = unsubscribe_url(settings, delivery_id, sender)
    context = build_context(email=address, attributes=attributes, campaign_name=rt.name,
                            unsubscribe_url=url, extra=rt.extra)
    # List-Unsubscribe (RFC 8058) belongs to bulk mail only: an invoice or an order
    # confirmation is not a subscription, and the header invites a mailbox to offer it as one
    bulk = rt.priority != "transactional"
    list_urls = (list_unsubscribe(settings, delivery_id)
                 if bulk and delivery_id is not None else None)
    return rt.template.render(context), list_urls


def compose(rt: CampaignRuntime, settings: Settings, *, delivery_id: int | None, address: str,
            attributes: Mapping[str, Any], source_dir: str | None,
            to: str | None = None) -> tuple[bytes, str]:
    """Render and build one message for `address` (sent to `to` when given, for test
    copies). Returns (RFC 5322 bytes, Message-ID).
    Raises TemplateRenderError, AttachmentError, InputError (header injection)."""
    rendered, list_urls = render(rt, settings, delivery_id=delivery_id, address=address,
                                attributes=attributes)
    files = load_attachment(rt, settings.attachments, address, attributes, source_dir)
    message_id = make_message_id(f"{delivery_id or 'test'}.{rt.id}", rt.from_domain)
    headers = {}
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = make_token(settings.secret_key, "delivery", delivery_id)
    data = rt.builder.build(to=to or address, subject=rendered.subject, html=rendered.html,
                            text=rendered.text, message_id=message_id, unsubscribe_url=list_urls,
                            attachments=files, headers=headers)
    return data, message_id


def contact_row(session: Session, address: str) -> tuple[str, dict[str, Any], str | None]:
    from campaigns.audience.contacts import normalise_address
    from campaigns.errors import NotFound
    from campaigns.models import Contact

    try:
        address = normalise_address(address)
    except ValueError:
        pass
    row = session.execute(select(Contact.email, Contact.attributes, Contact.source_dir)
                          .where(Contact.email == address)).first()
    if row is None:
        raise NotFound(f"no contact with address {address}")
    return row[0], dict(row[1] or {}), row[2]


def message_context(address: str, data: Mapping[str, Any], stream: str) -> dict[str, Any]:
    """What a template sees in a transactional message: its `data` as `data.*`, and as
    `contact.*` beside `contact.email` (so a bulk template works too)."""
    return build_context(email=address, attributes=data, campaign_name=stream,
                         unsubscribe_url="", extra={"data": Record("data", data)})


def compose_message(msg: Any, settings: Settings, *, delivery_id: int, address: str,
                    files: list[tuple[str, str, bytes]],
                    template: CompiledTemplate | None) -> tuple[bytes, str, str]:
    """One transactional message (campaigns.ledger.messages.Content): its stored template
    rendered with its `data` (as `data.*`, and as `contact.*` beside `contact.email`), or
    its own subject and bodies as given (not templates; the text part made from the HTML
    when missing). Never a List-Unsubscribe. Returns (bytes, Message-ID, envelope sender).
    Raises TemplateRenderError, InputError (a bad address, header injection)."""
    from campaigns.content.html_text import html_to_text
    builder = MessageBuilder(from_addr=msg.from_addr, reply_to=msg.reply_to,
                             list_unsubscribe_post=False)
    domain = builder.envelope_from.rpartition("@")[2] or "localhost"
    if template is not None:
        rendered = template.render(message_context(address, msg.data, msg.stream))
        subject, html, text = rendered.subject, rendered.html, rendered.text
    else:
        subject, html = msg.subject or "", msg.html or ""
        text = msg.text if msg.text is not None else html_to_text(html)
    message_id = make_message_id(f"{delivery_id}.m", domain)
    data = builder.build(
        to=address, subject=subject, html=html, text=text, message_id=message_id,
        attachments=[Attachment(filename=f, content=c, content_type=t) for f, t, c in files],
        headers={DELIVERY_HEADER: make_token(settings.secret_key, "delivery", delivery_id)})
    return data, message_id, builder.envelope_from
