"""The launch preflight: render for a sample of recipients and check every attachment file;
refuse to launch, naming template, line and variable, or listing the missing files."""
from __future__ import annotations

from sqlalchemy import func, select

from campaigns.content.attachments import AttachmentError
from campaigns.content.compose import attachment_path, compose, load_runtime
from campaigns.db import Database
from campaigns.errors import CampaignsError, InputError, TemplateRenderError
from campaigns.models import Campaign, Contact, ListMember
from campaigns.settings import Settings

MAX_LISTED = 20


class PreflightError(CampaignsError):
    def __init__(self, campaign: str, problems: list[str]) -> None:
        shown = problems[:MAX_LISTED]
        more = f"\n  … and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        super().__init__(f"campaign '{campaign}' not launched, preflight found "
                         f"{len(problems)} problem(s):\n  " + "\n  ".join(shown) + more)
        self.problems = problems


def _members(campaign: Campaign):  # type: ignore[no-untyped-def]
    return (select(Contact.email, Contact.attributes, Contact.source_dir)
            .join(ListMember, ListMember.contact_id == Contact.id)
            .where(ListMember.list_id == campaign.list_id))


def run_preflight(db: Database, settings: Settings, campaign: Campaign) -> list[str]:
    """Raises PreflightError when the campaign must not launch; returns warnings."""
    problems: list[str] = []
    half = max(1, settings.sending.preflight_sample // 2)
    with db.session() as s:
        rt = load_runtime(s, campaign.id)
        total = s.scalar(select(func.count()).select_from(ListMember)
                         .where(ListMember.list_id == campaign.list_id)) or 0
        first = s.execute(_members(campaign).order_by(Contact.id).limit(half)).all()
        last = s.execute(_members(campaign).order_by(Contact.id.desc()).limit(half)).all()
    seen: set[str] = set()
    for email, attributes, source_dir in [*first, *last]:
        if email in seen:
            continue
        seen.add(email)
        try:
            compose(rt, settings, delivery_id=None, address=email, attributes=attributes or {},
                    source_dir=source_dir)
        except (TemplateRenderError, InputError) as err:
            problem = f"{email}: {err}"
            if str(err) not in {p.split(": ", 1)[-1] for p in problems}:
                problems.append(problem)
        except AttachmentError:
            pass  # reported below, for every recipient
    if rt.attachment_column:
        problems += _refused_attachments(db, settings, campaign, rt)
    if problems:
        raise PreflightError(campaign.name, problems)
    return [] if total else [f"list of campaign '{campaign.name}' has no recipients"]


def _refused_attachments(db: Database, settings: Settings, campaign: Campaign,  # type: ignore[no-untyped-def]
                         rt) -> list[str]:
    """Every recipient whose attachment is missing or refused (campaigns.content.attachments)."""
    missing: list[str] = []
    last = 0
    while True:
        with db.session() as s:
            rows = s.execute(select(Contact.id, Contact.email, Contact.attributes, Contact.source_dir)
                             .join(ListMember, ListMember.contact_id == Contact.id)
                             .where(ListMember.list_id == campaign.list_id, Contact.id > last)
                             .order_by(Contact.id).limit(1000)).all()
        if not rows:
            return missing
        for _, email, attributes, source_dir in rows:
            try:
                attachment_path(rt, settings.attachments, email, attributes or {}, source_dir)
            except AttachmentError as err:
                missing.append(str(err))
        last = rows[-1][0]
