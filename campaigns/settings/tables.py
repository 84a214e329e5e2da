"""Readers of the generic tables: [sending], [rates], [bounces], [breaker], [schedules],
[attachments], [templates], [web], [callbacks], [gateway], [dkim]. Each takes the raw TOML
table and `where` (the file, for errors) and returns its typed dataclass or raises
ConfigError. A table a domain module owns ([bounces.imap]; the renderer's limits; whether a
DKIM key parses) is handed to it through `hooks`."""
from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from campaigns.errors import ConfigError, InputError
from campaigns.settings.hooks import hook
from campaigns.settings.model import (CALLBACK_EVENTS, AttachmentPolicy, BouncesConfig,
                                      BreakerConfig, CallbacksConfig, DkimConfig, GatewayConfig, LimitConfig, RatesConfig, SchedulesConfig, SendingPolicy,
                                      TemplatesConfig, WarmupConfig, WebConfig)
from campaigns.settings.values import (Secret, check_table, clamp, env_var_problem,
                                       setting, shown)


def _sending(raw: dict[str, Any], where: str) -> SendingPolicy:
    at = f"{where}: [sending]"
    d = SendingPolicy()
    return SendingPolicy(
        max_attempts=setting(raw, d, "max_attempts", int, 1, at),
        retry_base_s=setting(raw, d, "retry_base_s", float, 0.01, at),
        retry_max_s=setting(raw, d, "retry_max_s", float, 0.01, at),
        lease_s=setting(raw, d, "lease_s", float, 1, at),
        visibility_timeout_s=setting(raw, d, "visibility_timeout_s", float, 1, at),
        republish_after_s=setting(raw, d, "republish_after_s", float, 0.5, at),
        max_defer_s=setting(raw, d, "max_defer_s", float, 1, at),
        preflight_sample=setting(raw, d, "preflight_sample", int, 1, at),
        expand_batch=setting(raw, d, "expand_batch", int, 1, at),
        feed_window=setting(raw, d, "feed_window", int, 1, at),
        task_batch=setting(raw, d, "task_batch", int, 1, at),
    )


def _limit(target: str, raw: Any, at: str) -> LimitConfig:
    from campaigns.rates.parse import parse_rate   # pure; lazy: campaigns.rates pulls redis

    where = f'{at}: [rates.limits."{target}"]'
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table with rate, burst, daily")
    if not target.split(":", 1)[0] in ("relay", "domain", "campaign") or ":" not in target:
        raise ConfigError(f"{where}: target must be relay:NAME, domain:GROUP or campaign:NAME")
    try:
        rate = parse_rate(str(raw["rate"])).per_s if "rate" in raw else None
    except InputError as err:
        raise ConfigError(f"{where}: {err}") from None
    burst = clamp("burst", raw["burst"], int, 1, where) if "burst" in raw else None
    daily = clamp("daily", raw["daily"], int, 1, where) if "daily" in raw else None
    return LimitConfig(target=target, rate_per_s=rate, burst=burst, daily_cap=daily)


def _strings(value: Any, at: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{at}: expected a list of text, like [\"127.0.0.1:5353\"], got {value!r}")
    return tuple(v.strip() for v in value)


def _rates(raw: dict[str, Any], relays_raw: dict[str, Any], where: str) -> RatesConfig:
    at = f"{where}: [rates]"
    d = RatesConfig()
    window = str(raw.get("daily_window", d.daily_window))
    if window not in ("calendar", "rolling"):
        raise ConfigError(f"{at}: daily_window must be calendar or rolling, got {window!r}")
    tz = str(raw.get("timezone", d.timezone))
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(tz)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError
        raise ConfigError(f"{at}: unknown timezone {tz!r} (expected e.g. Europe/Rome)") from None
    groups = raw.get("groups", {})
    if not isinstance(groups, dict) or not all(isinstance(v, list) for v in groups.values()):
        raise ConfigError(f"{at}: groups must map a group name to a list of domains")
    warmup = {}
    for name, relay in relays_raw.items():
        if isinstance(relay, dict) and "warmup" in relay:
            w, wat = relay["warmup"], f"{where}: [relays.{name}.warmup]"
            try:
                warmup[name] = WarmupConfig(start=clamp("start", w["start"], int, 1, wat),
                                            factor=clamp("factor", w.get("factor", 1.5), float, 1, wat),
                                            start_date=date.fromisoformat(str(w["start_date"])))
            except (KeyError, ValueError) as err:
                raise ConfigError(f"{wat}: needs start, factor and start_date (YYYY-MM-DD): {err}") from None
    return RatesConfig(
        timezone=tz, daily_window=window,
        transactional_share=setting(raw, d, "transactional_share", float, 0, at),
        quiet_period_s=setting(raw, d, "quiet_period_s", float, 0.1, at),
        max_wait_s=setting(raw, d, "max_wait_s", float, 0, at),
        long_wait_s=setting(raw, d, "long_wait_s", float, 1, at),
        mx_lookup=bool(raw.get("mx_lookup", False)),
        mx_nameservers=_strings(raw.get("mx_nameservers", []), f"{at}.mx_nameservers"),
        limits={t: _limit(t, v, where) for t, v in raw.get("limits", {}).items()},
        groups={str(k): [str(x).lower() for x in v] for k, v in groups.items()},
        warmup=warmup)


_BOUNCES_KEYS = {"domain", "local_part", "soft_limit", "soft_days", "guard_min_sample",
                 "guard_max_hard", "guard_max_complaint", "listen", "imap", "imap_every_s"}


def _bounces(raw: Any, where: str) -> BouncesConfig:
    at = f"{where}: [bounces]"
    raw = check_table(raw, at, _BOUNCES_KEYS)
    d = BouncesConfig()
    domain = raw.get("domain")
    if domain is not None and (not isinstance(domain, str) or "@" in domain or "." not in domain):
        raise ConfigError(f"{at}: domain must be a domain name such as bounces.example.it "
                          f"(got {domain!r})")
    listen = str(raw.get("listen", d.listen))
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{at}: listen must be HOST:PORT such as 127.0.0.1:2526 (got {listen!r})")
    imap = None
    if "imap" in raw:
        try:   # the IMAP poller reads and checks its own table
            imap = hook("bounces.imap")(raw["imap"], f"{where} [bounces.imap]")
        except InputError as err:
            raise ConfigError(str(err)) from None
    return BouncesConfig(
        domain=domain.lower() if domain else None,
        local_part=str(raw.get("local_part", d.local_part)),
        soft_limit=setting(raw, d, "soft_limit", int, 1, at),
        soft_days=setting(raw, d, "soft_days", float, 0.01, at),
        guard_min_sample=setting(raw, d, "guard_min_sample", int, 1, at),
        guard_max_hard=setting(raw, d, "guard_max_hard", float, 0, at),
        guard_max_complaint=setting(raw, d, "guard_max_complaint", float, 0, at),
        listen=listen, imap=imap,
        imap_every_s=setting(raw, d, "imap_every_s", float, 1, at))


def _breaker(raw: Any, where: str) -> BreakerConfig:
    at = f"{where}: [breaker]"
    raw = check_table(raw, at, {"failures", "cooldown_s"})
    d = BreakerConfig()
    return BreakerConfig(
        failures=setting(raw, d, "failures", int, 1, at),
        cooldown_s=setting(raw, d, "cooldown_s", float, 0.1, at))


def _schedules(raw: Any, where: str) -> SchedulesConfig:
    at = f"{where}: [schedules]"
    raw = check_table(raw, at, {"grace_s", "tick_s", "data_timeout_s"})
    d = SchedulesConfig()
    return SchedulesConfig(
        grace_s=setting(raw, d, "grace_s", float, 0, at),
        tick_s=setting(raw, d, "tick_s", float, 0.1, at),
        data_timeout_s=setting(raw, d, "data_timeout_s", float, 0.1, at))


def _attachments(raw: Any, where: str) -> AttachmentPolicy:
    at = f"{where}: [attachments]"
    raw = check_table(raw, at, {"roots", "max_file_bytes", "max_message_bytes"})
    d = AttachmentPolicy()
    roots = raw.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
        raise ConfigError(f"{at}: roots must be a list of folder paths")
    for root in roots:
        real = Path(root).resolve()
        if not Path(root).is_absolute() or real == Path(real.anchor) or not real.is_dir():
            raise ConfigError(f"{at}: roots: '{root}' must be an existing absolute folder "
                              "other than /")
    return AttachmentPolicy(
        roots=tuple(roots),
        max_file_bytes=setting(raw, d, "max_file_bytes", int, 1, at),
        max_message_bytes=setting(raw, d, "max_message_bytes", int, 1, at))


def _web(raw: Any, where: str) -> WebConfig:
    """[web]: listen (HOST:PORT), public_url (http(s)://…), max_body_bytes."""
    at = f"{where}: [web]"
    raw = check_table(raw, at, {"listen", "public_url", "max_body_bytes"})
    d = WebConfig()
    listen = raw.get("listen")
    if listen is not None:
        host, _, port = str(listen).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{at}: listen must be HOST:PORT such as 127.0.0.1:8025, "
                              f"got {listen!r}")
    public = raw.get("public_url")
    if public is not None and not str(public).startswith(("https://", "http://")):
        raise ConfigError(f"{at}: public_url must start with https:// (or http:// for a "
                          f"test), got {public!r}")
    return WebConfig(listen=None if listen is None else str(listen),
                     public_url=None if public is None else str(public).rstrip("/"),
                     max_body_bytes=setting(raw, d, "max_body_bytes", int, 1024, at))


def _templates(raw: Any, where: str) -> TemplatesConfig:
    """[templates], also handed to the renderer of this process (its limits are global)."""
    at = f"{where}: [templates]"
    raw = check_table(raw, at, {"max_render_s", "max_part_bytes", "max_range"})
    d = TemplatesConfig()
    config = TemplatesConfig(
        max_render_s=setting(raw, d, "max_render_s", float, 0.01, at),
        max_part_bytes=setting(raw, d, "max_part_bytes", int, 1000, at),
        max_range=setting(raw, d, "max_range", int, 1, at))
    hook("templates")(config)
    return config


def _callbacks(raw: Any, where: str, env: Any) -> CallbacksConfig:
    """[callbacks]: url, secret_env (the variable holding the signing secret), events,
    streams, timeout_s, max_age_s."""
    at = f"{where}: [callbacks]"
    raw = check_table(raw, at, {"url", "secret_env", "events", "streams", "timeout_s",
                                "max_age_s"})
    d = CallbacksConfig()
    url = raw.get("url")
    if url is not None and not str(url).startswith(("https://", "http://")):
        raise ConfigError(f"{at}: url must start with https:// (or http:// for a test), "
                          f"got {url!r}")
    secret = None
    if url is not None:
        name = raw.get("secret_env")
        if not name:
            raise ConfigError(f"{at}: secret_env must name the environment variable holding "
                              "the signing secret (events are always signed)")
        value = env.get(str(name))
        if not value:
            raise env_var_problem(at, "secret_env", name)
        secret = Secret(value)
    events = _names(raw.get("events", list(d.events)), at, "events")
    unknown = sorted(set(events) - set(CALLBACK_EVENTS))
    if unknown:
        raise ConfigError(f"{at}: events: unknown {', '.join(map(repr, unknown))}; expected "
                          f"some of {', '.join(CALLBACK_EVENTS)}")
    return CallbacksConfig(
        url=None if url is None else str(url), secret=secret, events=events,
        streams=_names(raw.get("streams", []), at, "streams"),
        timeout_s=setting(raw, d, "timeout_s", float, 0.1, at),
        max_age_s=setting(raw, d, "max_age_s", float, 1, at))


def _names(value: Any, at: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{at}: {key} must be a list of names such as [\"a\", \"b\"]")
    return tuple(value)


def _listen(value: Any, at: str, key: str) -> str | None:
    if value is None or value == "":
        return None
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{at}: {key} must be HOST:PORT such as 127.0.0.1:2587 (port 0: any "
                          f"free port; \"\" for none), got {value!r}")
    return str(value)


def _gateway(raw: Any, where: str, base: Path) -> GatewayConfig:
    """[gateway]: listen, tls_listen, cert_file, key_file, hostname, max_message_bytes,
    max_recipients, suppressed (reject|accept), allow_plain_auth_from, timeout_s."""
    at = f"{where}: [gateway]"
    raw = check_table(raw, at, {"listen", "tls_listen", "cert_file", "key_file", "hostname",
                                "max_message_bytes", "max_recipients", "suppressed",
                                "allow_plain_auth_from", "timeout_s"})
    d = GatewayConfig()
    listen = _listen(raw.get("listen", d.listen), at, "listen")
    tls_listen = _listen(raw.get("tls_listen", d.tls_listen), at, "tls_listen")
    if listen is None and tls_listen is None:
        raise ConfigError(f"{at}: listen and tls_listen are both empty: give at least one")
    files = {}
    for key in ("cert_file", "key_file"):
        value = raw.get(key)
        files[key] = None if value is None else (base / str(value)).expanduser()
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise ConfigError(f"{at}: give both cert_file and key_file, or neither (a self-signed "
                          "pair is then made in the data dir)")
    suppressed = str(raw.get("suppressed", d.suppressed))
    if suppressed not in ("reject", "accept"):
        raise ConfigError(f"{at}: suppressed must be \"reject\" (550 at RCPT) or \"accept\" "
                          f"(recorded as suppressed), got {suppressed!r}")
    allowed = raw.get("allow_plain_auth_from", [])
    allowed = _strings(allowed, f"{at}: allow_plain_auth_from") if allowed else ()
    hostname = raw.get("hostname")
    return GatewayConfig(
        listen=listen, tls_listen=tls_listen, cert_file=files["cert_file"],
        key_file=files["key_file"], hostname=None if hostname is None else str(hostname),
        max_message_bytes=setting(raw, d, "max_message_bytes", int, 1024, at),
        max_recipients=setting(raw, d, "max_recipients", int, 1, at),
        suppressed=suppressed, allow_plain_auth_from=allowed,
        timeout_s=setting(raw, d, "timeout_s", float, 1, at))


#: a DKIM selector: one or more DNS labels (the name before ._domainkey.)
DKIM_SELECTOR = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*")
_DKIM_KEYS = {"selector", "key_file", "ed25519_selector", "ed25519_key_file"}


def _dkim(raw: Any, where: str, base: Path) -> dict[str, DkimConfig]:
    """[dkim."DOMAIN"] tables: selector and key_file (RSA), optionally ed25519_selector and
    ed25519_key_file (dual signing). Each key file must exist and parse (checked by
    campaigns.content.dkim through `hooks`); relative paths are from the config file's
    folder."""
    if not isinstance(raw, dict):
        raise ConfigError(f'{where}: [dkim] must hold one [dkim."DOMAIN"] table per domain')
    tables = {}
    for domain, table in raw.items():
        at = f'{where}: [dkim."{domain}"]'
        name = str(domain).strip().lower().rstrip(".")
        if "@" in name or "." not in name or " " in name:
            raise ConfigError(f"{at}: the table's name must be the From domain, quoted, such "
                              f'as [dkim."example.it"]')
        if name in tables:
            raise ConfigError(f"{at}: domain {name} has two [dkim] tables")
        table = check_table(table, at, _DKIM_KEYS)
        files: dict[str, Path | None] = {}
        selectors: dict[str, str | None] = {}
        for prefix, kind in (("", "rsa"), ("ed25519_", "ed25519")):
            selector, key_file = table.get(f"{prefix}selector"), table.get(f"{prefix}key_file")
            if prefix and selector is None and key_file is None:
                selectors[kind], files[kind] = None, None
                continue
            for key, value in ((f"{prefix}selector", selector), (f"{prefix}key_file", key_file)):
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError(f"{at}: {key} must be given, as text ({shown(key, value)})")
            if not DKIM_SELECTOR.fullmatch(str(selector)):
                raise ConfigError(f"{at}: {prefix}selector must be a DNS label such as "
                                  f"\"news2026\", got {selector!r}")
            path = base / Path(str(key_file)).expanduser()
            hook("dkim.key")(path, kind, f"{at} {prefix}key_file")
            selectors[kind], files[kind] = str(selector), path
        assert selectors["rsa"] is not None and files["rsa"] is not None
        tables[name] = DkimConfig(domain=name, selector=selectors["rsa"], key_file=files["rsa"],
                                  ed25519_selector=selectors["ed25519"],
                                  ed25519_key_file=files["ed25519"])
    return tables
