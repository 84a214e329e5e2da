"""The API's recurring schedules (campaigns.web.api builds the app): the twins of `campaigns
schedules add/list/pause/resume/remove/runs`, through campaigns.scheduling, the only writer
of schedules. A field the scheduler refuses is a 422 naming the body's field (`cron`,
`timezone`, `from`, …), not the CLI's option."""
from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from campaigns.errors import ConfigError, InputError
from campaigns.web.common import Deps, Problem
from campaigns.web.keys import KeyInfo

T = TypeVar("T")

#: the CLI's option (InputError.field of campaigns.scheduling) -> the body's field
_FIELDS = {"--cron": "cron", "--timezone": "timezone", "--from": "from",
           "--reply-to": "reply_to", "--relay": "relay", "--priority": "priority",
           "--window": "window", "--data-url": "data_url"}


class ScheduleIn(BaseModel):
    """The options of `campaigns schedules add`."""
    model_config = ConfigDict(populate_by_name=True)
    name: str = Field(..., min_length=1, max_length=200)
    template: str = Field(..., min_length=1, max_length=200)
    list_name: str = Field(..., alias="list", min_length=1, max_length=200)
    from_addr: str = Field(..., alias="from", max_length=500, description='"Name <addr>"')
    cron: str = Field(..., max_length=200, description='five fields, e.g. "0 9 * * mon"')
    timezone: str = Field(..., max_length=64, description="e.g. Europe/Rome")
    reply_to: Optional[str] = Field(None, max_length=500)
    relay: Optional[str] = Field(None, max_length=200, description="a relay or a pool")
    priority: str = Field("bulk", max_length=20, description="bulk or transactional")
    window: Optional[str] = Field(None, max_length=200, description='"mon-fri 09:00-18:00"')
    data_url: Optional[str] = Field(None, max_length=2000,
                                    description="JSON fetched at each run, as run.data")


class ScheduleOut(BaseModel):
    name: str
    cron: str
    timezone: str
    paused: bool
    template: str
    list: str
    next_run: Optional[str] = Field(None, description="in the schedule's zone; null if paused")
    runs: int


class ScheduleChanged(BaseModel):
    name: str
    paused: bool
    detail: str


def _invalid(field: str, reason: str) -> Problem:
    return Problem(422, "invalid input", reason, errors=[{"field": field, "reason": reason}])


def _checked(field: str, call: Callable[[], T]) -> T:
    """`call()`, its InputError a 422 naming the body's field (`field` when it names none)."""
    try:
        return call()
    except InputError as err:
        raise _invalid(_FIELDS.get(err.field or "", field), str(err)) from None


def _no_control(body: ScheduleIn) -> None:
    for field in ("name", "template", "list_name", "cron", "timezone", "relay", "priority"):
        value = getattr(body, field)
        if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise _invalid(field.replace("list_name", "list"), "control characters are not "
                           "allowed")


def register(api: FastAPI, d: Deps) -> None:
    @api.get("/schedules", tags=["schedules"], response_model=list[ScheduleOut])
    def schedules_list(key: KeyInfo = d.need("read")) -> list[dict[str, Any]]:
        """Schedules with their next run (in their own zone) and how many runs so far."""
        from campaigns.scheduling import list_schedules
        return list_schedules(d.db)  # type: ignore[no-any-return]

    @api.post("/schedules", tags=["schedules"], response_model=ScheduleOut, status_code=201)
    def schedules_add(body: ScheduleIn, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """A recurring run, as `schedules add`: each firing of `cron` (in `timezone`) creates
        the campaign NAME-YYYY-MM-DD from the template and list as they are then, and
        launches it. Everything a run needs is checked now (422 naming the field; 404 for an
        unknown template or list; 409 when the name is taken)."""
        from campaigns.db import as_utc
        from campaigns.rates.windows import parse_window
        from campaigns.scheduling import ScheduleSpec, add_schedule
        from campaigns.scheduling.cron import parse_cron, zone
        _no_control(body)
        _checked("cron", lambda: parse_cron(body.cron))
        tz = _checked("timezone", lambda: zone(body.timezone))
        if body.window:
            window = body.window
            _checked("window", lambda: parse_window(window, tz.key))
        spec = ScheduleSpec(name=body.name, template=body.template, list_name=body.list_name,
                            from_addr=body.from_addr, cron=body.cron, timezone=body.timezone,
                            reply_to=body.reply_to, relay=body.relay, priority=body.priority,
                            window=body.window, data_url=body.data_url)
        try:
            schedule = _checked("-", lambda: add_schedule(d.db, d.ctx.settings, spec))
        except ConfigError as err:      # the only one here: an unknown relay or pool
            raise _invalid("relay", str(err)) from None
        return {"name": schedule.name, "cron": schedule.cron, "timezone": schedule.timezone,
                "paused": schedule.paused, "template": schedule.template,
                "list": schedule.list_name, "runs": 0,
                "next_run": as_utc(schedule.next_run_at).astimezone(tz)
                .isoformat(timespec="minutes")}

    @api.post("/schedules/{name}/pause", tags=["schedules"], response_model=ScheduleChanged)
    def schedules_pause(name: str, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """No run fires until it is resumed."""
        from campaigns.scheduling import set_paused
        set_paused(d.db, name, True)
        return {"name": name, "paused": True, "detail": "paused"}

    @api.post("/schedules/{name}/resume", tags=["schedules"], response_model=ScheduleChanged)
    def schedules_resume(name: str, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Resume from the next firing after now (the ones missed while paused are not
        sent)."""
        from campaigns.scheduling import set_paused
        set_paused(d.db, name, False)
        return {"name": name, "paused": False, "detail": "resumed from the next firing"}

    @api.delete("/schedules/{name}", tags=["schedules"], status_code=204, response_model=None)
    def schedules_remove(name: str, key: KeyInfo = d.need("manage")) -> None:
        """Remove the schedule and its run history (the campaigns it created stay)."""
        from campaigns.scheduling import remove_schedule
        remove_schedule(d.db, name)

    @api.get("/schedules/{name}/runs", tags=["schedules"], response_model=list[dict[str, Any]])
    def schedules_runs(name: str, key: KeyInfo = d.need("read")) -> list[dict[str, Any]]:
        """Past runs, newest first, with their campaign's counts (`schedules runs --json`)."""
        from campaigns.scheduling import runs
        return runs(d.db, name)  # type: ignore[no-any-return]
