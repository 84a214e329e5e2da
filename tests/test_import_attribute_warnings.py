"""Contacts are global (issue 11 item 18): an import merges attributes by column, and when it
changes an attribute that a scheduled or sending campaign's template reads for a contact of
that campaign's list, the import report says so (list, campaign, attribute, count)."""
from __future__ import annotations

from pathlib import Path

import pytest

from campaigns import lifecycle
from campaigns.audience.attribute_watch import attributes_used
from campaigns.audience.contacts import import_contacts
from campaigns.scheduling import schedule_once
from campaigns.content.templates import add_template
from tests.helpers import write_csv

HTML = "<p>Ciao {{ contact.first_name }}, offerte a {{ contact['city'] }}</p>"
HEADER = "email,first_name,city,phone"


def _campaign_on_list_a(project, how: str) -> None:  # type: ignore[no-untyped-def]
    """List A (anna, bruno) with a campaign whose template reads first_name and city, put
    in the state `how`; list B (anna, carla) imported before it."""
    db, settings = project.ctx.db, project.ctx.settings
    import_contacts(db, write_csv(project.root / "a.csv", [
        ("anna@shop.test", "Anna", "Roma", "111"), ("bruno@shop.test", "Bruno", "Forlì", "222")],
        HEADER), "A")
    import_contacts(db, write_csv(project.root / "b0.csv", [
        ("anna@shop.test", "Anna", "Roma", "111"), ("carla@shop.test", "Carla", "Bari", "333")],
        HEADER), "B")
    html = project.root / "natale.html"
    html.write_text(HTML, encoding="utf-8")
    add_template(db, "natale", "Offerte per {{ contact.first_name }}", html)
    lifecycle.create_campaign(db, settings, name="natale", list_name="A", template="natale",
                              from_addr="Negozio <news@shop.test>")
    if how == "scheduled":
        schedule_once(db, "natale", "2099-01-01 09:00", "Europe/Rome")
    elif how == "sending":
        lifecycle.launch(db, settings, "natale", lambda ids, countdown, priority: None)
    assert project.status("natale")["status"] == how


@pytest.mark.parametrize("how", ["scheduled", "sending"])
def test_changing_an_attribute_the_campaign_reads_warns(project, how: str) -> None:  # type: ignore[no-untyped-def]
    _campaign_on_list_a(project, how)
    b = write_csv(project.root / "b.csv", [("anna@shop.test", "Anna", "Milano", "111"),
                                           ("carla@shop.test", "Carla", "", "333")], HEADER)
    report = import_contacts(project.ctx.db, b, "B")
    assert report.warnings == ["1 contact of list 'A' used by campaign 'natale' had attribute "
                               "'city' changed"]
    # carla's city was blanked too, but carla is not in list A: no warning for her


def test_the_cli_prints_the_warning(project) -> None:  # type: ignore[no-untyped-def]
    _campaign_on_list_a(project, "scheduled")
    b = write_csv(project.root / "b.csv", [("anna@shop.test", "Annalisa", "", "111"),
                                           ("bruno@shop.test", "Bruno", "Cesena", "222")],
                  HEADER)
    proc = project.cli("contacts", "import", str(b), "--list", "B")
    assert "0 imported, 2 updated" in proc.stdout
    assert ("warning: 1 contact of list 'A' used by campaign 'natale' had attribute "
            "'first_name' changed") in proc.stderr
    assert ("warning: 2 contacts of list 'A' used by campaign 'natale' had attribute 'city' "
            "changed") in proc.stderr


def test_no_warning_for_an_attribute_the_template_does_not_read(project) -> None:  # type: ignore[no-untyped-def]
    _campaign_on_list_a(project, "scheduled")
    b = write_csv(project.root / "b.csv", [("anna@shop.test", "999", "new")],
                  "email,phone,newsletter")   # city absent from the file: kept
    report = import_contacts(project.ctx.db, b, "B")
    assert report.updated == 1 and report.warnings == []
    lifecycle.cancel(project.ctx.db, "natale")   # a cancelled campaign reads nothing any more
    c = write_csv(project.root / "c.csv", [("anna@shop.test", "Anna", "Napoli", "999")], HEADER)
    assert import_contacts(project.ctx.db, c, "B").warnings == []


def test_attributes_used_by_a_template() -> None:
    assert attributes_used("{{ contact.city }} {{contact['first name']}}",
                           '{% if contact["vip"] %}{{ contact.get("code") }}{% endif %}',
                           "{{ mycontact.nope }} {{ campaign.name }}") == \
        {"city", "first name", "vip", "code"}


def test_a_schedule_watches_its_list_too(project) -> None:  # type: ignore[no-untyped-def]
    from campaigns.scheduling import ScheduleSpec, add_schedule
    _campaign_on_list_a(project, "draft")
    add_schedule(project.ctx.db, project.ctx.settings, ScheduleSpec(
        name="weekly", template="natale", list_name="A", from_addr="Negozio <news@shop.test>",
        cron="0 9 * * mon", timezone="Europe/Rome"))
    b = write_csv(project.root / "b.csv", [("anna@shop.test", "Anna", "Torino", "111")], HEADER)
    assert import_contacts(project.ctx.db, b, "B").warnings == [
        "1 contact of list 'A' used by schedule 'weekly' had attribute 'city' changed"]
