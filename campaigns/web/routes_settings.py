"""The API's other resources, the twins of `rates show/set/unset/reset`, `relays list/check`
and `bounces report` (campaigns.web.api builds the app; schedules: routes_schedules)."""
from __future__ import annotations

from typing import Any, Optional

from fastapi import FastAPI
from pydantic import BaseModel, Field

from campaigns.web.common import Deps, Problem
from campaigns.web.keys import KeyInfo


class RateIn(BaseModel):
    rate: str = Field(..., max_length=40, description='"50/s", "3000/min", "20000/h"')
    burst: Optional[int] = Field(None, ge=1, le=1_000_000)
    daily_cap: Optional[int] = Field(None, ge=1, le=1_000_000_000)


class RateSet(BaseModel):
    target: str
    rate: str
    rate_per_s: float
    burst: Optional[int]
    daily_cap: Optional[int]


class Done(BaseModel):
    target: str
    changed: bool


class Check(BaseModel):
    relay: str
    ok: bool
    steps: list[str]


def register(api: FastAPI, d: Deps) -> None:
    @api.get("/rates", tags=["rates"], response_model=list[dict[str, Any]])
    def rates_show(key: KeyInfo = d.need("read")) -> list[dict[str, Any]]:
        """Every limit: configured and effective rate (and why lower), daily cap, observed
        rate, parked messages, and for a relay each class's share now."""
        from campaigns.delivery.planning import rate_rows
        return rate_rows(d.ctx.pacer)

    @api.put("/rates/{target}", tags=["rates"], response_model=RateSet)
    def rates_set(target: str, body: RateIn, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Set a target's rate (relay:NAME, domain:GROUP, campaign:NAME); every worker obeys
        within a second."""
        from campaigns.delivery.ratestore import set_limit
        from campaigns.rates.parse import parse_rate
        parsed = parse_rate(body.rate)
        set_limit(d.db, d.ctx.redis, target, parsed.per_s, body.burst, body.daily_cap)
        return {"target": target, "rate": parsed.text, "rate_per_s": parsed.per_s,
                "burst": body.burst, "daily_cap": body.daily_cap}

    @api.delete("/rates/{target}", tags=["rates"], response_model=Done)
    def rates_unset(target: str, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Remove what was set for a target (the TOML default, if any, applies again)."""
        from campaigns.delivery.ratestore import unset_limit
        return {"target": target, "changed": unset_limit(d.db, d.ctx.redis, target)}

    @api.post("/rates/{target}/reset", tags=["rates"], response_model=Done)
    def rates_reset(target: str, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Clear a target's adaptive throttle."""
        from campaigns.delivery.ratestore import check_target
        return {"target": target, "changed": d.ctx.pacer.reset(check_target(target))}

    @api.get("/relays", tags=["relays"], response_model=list[dict[str, Any]])
    def relays_list(key: KeyInfo = d.need("read")) -> list[dict[str, Any]]:
        """The configured relays as `relays list` shows them: never a secret."""
        settings = d.ctx.settings
        return [{**relay.describe(), "default": name == settings.default_relay}
                for name, relay in settings.relays.items()]

    @api.post("/relays/{name}/check", tags=["relays"], response_model=Check)
    def relays_check(name: str, key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Connect, greet, TLS and authenticate without sending mail. A failing step is a
        409 naming it."""
        from campaigns.errors import RelayError
        from campaigns.relays import build_relay
        from campaigns.settings import require_secrets
        if name not in d.ctx.settings.relays:
            raise Problem(404, "not found", f"no relay named '{name}'")
        config = d.ctx.settings.relay(name)
        try:
            require_secrets(config)
            relay = build_relay(config)
            try:
                steps = relay.check()
            finally:
                relay.close()
        except RelayError as err:
            raise Problem(409, "relay check failed", str(err)) from None
        return {"relay": config.name, "ok": True, "steps": steps}

    @api.get("/campaigns/{name}/bounces", tags=["campaigns"], response_model=dict[str, Any])
    def bounce_report(name: str, key: KeyInfo = d.need("read")) -> dict[str, Any]:
        """What came back for a campaign, as `bounces report NAME --json`."""
        from campaigns.intake.bounce_report import report
        return report(d.db, d.ctx.settings, name)
