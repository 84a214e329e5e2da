"""`campaigns templates …`: store, list and preview message templates."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from campaigns.cli.common import ctx, handled, out

app = typer.Typer(no_args_is_help=True, help="Message templates (Jinja2, sandboxed).")


@app.command("add")
@handled
def templates_add(name: str, subject: str = typer.Option(..., "--subject"),
                  html: Path = typer.Option(..., "--html"),
                  text: Optional[Path] = typer.Option(None, "--text"),
                  replace: bool = typer.Option(False, "--replace")) -> None:
    """Store a template; the text part is derived from the HTML when --text is not given."""
    from campaigns.content.templates import add_template
    t = add_template(ctx().db, name, subject, html, text, replace=replace)
    out.print(f"template '{t.name}' stored" + (" (text part generated from the HTML)"
                                                  if t.text_generated else ""))


@app.command("list")
@handled
def templates_list() -> None:
    """Every template: name and subject."""
    from campaigns.content.templates import list_templates
    for t in list_templates(ctx().db):
        out.print(f"{t['name']}\t{t['subject']}")


@app.command("preview")
@handled
def templates_preview(name: str, contact: str = typer.Option(..., "--contact"),
                      campaign: str = typer.Option("preview", "--campaign",
                                                   help="campaign.name in the preview")) -> None:
    """Print the message as rendered for one contact."""
    from campaigns.content.compose import compile_stored, contact_row, unsubscribe_url
    from campaigns.lifecycle import get_template
    from campaigns.content.rendering import build_context
    c = ctx()
    with c.db.session() as s:
        template = get_template(s, name)
        email, attributes, _ = contact_row(s, contact)
    url = unsubscribe_url(c.settings, None, "sender@example.invalid")
    rendered = compile_stored(template).render(build_context(
        email=email, attributes=attributes, campaign_name=campaign, unsubscribe_url=url))
    out.print(f"Subject: {rendered.subject}\n\n--- text ---\n{rendered.text}\n\n--- html ---\n"
              f"{rendered.html}", markup=False)
