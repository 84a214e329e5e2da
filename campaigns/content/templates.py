"""Stored templates: add (validated by compiling), list, preview."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from campaigns.db import Database
from campaigns.errors import InputError, StateError
from campaigns.content.rendering import compile_template, html_to_text
from campaigns.models import Campaign, CampaignStatus, Template, utcnow

#: campaigns whose messages are still being made from their template (a waiting campaign,
#: outside its window or past a daily cap, resumes with it)
_RUNNING = tuple(s.value for s in (CampaignStatus.SENDING, CampaignStatus.PAUSED,
                                   CampaignStatus.WAITING))


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("file not found", file=str(path), field=option) from None
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start}: {err.reason})", file=str(path),
                         field=option) from None
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", file=str(path), field=option) from None


def add_template(db: Database, name: str, subject: str, html_file: Path,
                 text_file: Path | None = None, *, replace: bool = False) -> Template:
    """Store a template from files after compiling all its parts (syntax errors name part and
    line). Without a text file the text part is derived from the HTML source once, here."""
    html = _read(html_file, "--html")
    text = _read(text_file, "--text") if text_file else None
    return store_template(db, name, subject, html, text, replace=replace)[0]


def store_template(db: Database, name: str, subject: str, html: str, text: str | None = None,
                   *, replace: bool = False) -> tuple[Template, bool]:
    """Store a template given as text (`add_template` reads files; the API sends text):
    compiled first, so nothing is stored with a syntax error; `replace` refused while a
    sending, paused or waiting campaign renders from it. Returns it and whether it is new."""
    if not name.strip() or len(name) > 200 or any(c in name for c in "\r\n/"):
        raise InputError("a template name is 1 to 200 characters, one line, no '/'",
                         field="name")
    generated = text is None
    if text is None:
        text = html_to_text(html)
    compile_template(name, subject, html, text)
    with db.session() as s:
        existing = s.scalars(select(Template).where(Template.name == name)).first()
        if existing is None:
            template = Template(name=name, subject=subject, html=html, text=text,
                                text_generated=generated)
            s.add(template)
            return template, True
        if not replace:
            raise StateError(f"a template named '{name}' exists; use --replace to change it")
        busy = s.scalars(select(Campaign.name).where(
            Campaign.template_id == existing.id,
            Campaign.status.in_(_RUNNING))).all()
        if busy:
            raise StateError(f"template '{name}' is used by running campaign(s) "
                             f"{', '.join(busy)}; it cannot change under them")
        existing.subject, existing.html, existing.text = subject, html, text
        existing.text_generated, existing.updated_at = generated, utcnow()
        return existing, False


def list_templates(db: Database) -> list[dict[str, object]]:
    with db.session() as s:
        rows = s.scalars(select(Template).order_by(Template.name)).all()
        return [{"name": t.name, "subject": t.subject, "text_generated": t.text_generated}
                for t in rows]
