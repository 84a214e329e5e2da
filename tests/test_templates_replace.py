"""`templates add --replace` never changes a template under a campaign that still renders
from it: sending, paused, or waiting (outside its window, past a daily cap); a draft's or a
finished campaign's template may change."""
from __future__ import annotations

from typing import Any

import pytest

from campaigns.content.templates import add_template
from campaigns.errors import StateError
from campaigns.ledger import campaigns as ledger_campaigns
from campaigns.ledger.reads import get_campaign
from campaigns.models import CampaignStatus
from tests.helpers import make_campaign


@pytest.mark.parametrize("status,refused", [
    (CampaignStatus.SENDING, True), (CampaignStatus.PAUSED, True),
    (CampaignStatus.WAITING, True), (CampaignStatus.DRAFT, False),
    (CampaignStatus.FINISHED, False)])
def test_replace_is_refused_while_a_campaign_renders_from_the_template(
        project: Any, status: CampaignStatus, refused: bool) -> None:
    make_campaign(project, "news", 2)
    db = project.ctx.db
    with db.session() as s:
        campaign = get_campaign(s, "news")
        template = campaign.template_id
    if status != CampaignStatus.DRAFT:
        assert ledger_campaigns.transition(db, campaign.id, CampaignStatus.DRAFT, status)
    html = project.root / "new.html"
    html.write_text("<p>Nuovo {{ contact.first_name }}</p>")
    with db.session() as s:
        from campaigns.models import Template
        name = s.get(Template, template).name
    if refused:
        with pytest.raises(StateError, match="used by running campaign"):
            add_template(db, name, "Nuovo", html, replace=True)
    else:
        assert add_template(db, name, "Nuovo", html, replace=True).subject == "Nuovo"
