"""The typed settings: one frozen dataclass per TOML table, and `Settings` holding them.
Built by `campaigns.settings.load`; nothing here reads a file."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from campaigns.errors import ConfigError, RelayConfigError
from campaigns.settings.hooks import hook
from campaigns.settings.values import Secret, UnsetSecret


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
    dkim: bool = True                # sign messages of [dkim] domains; false: the provider signs

    def describe(self) -> dict[str, Any]:
        """What may be shown to a person: everything but the secrets (each kind's fields, as
        its relay module describes them)."""
        return hook("relay.describe")(self)


def unset_secrets(config: RelayConfig) -> list[UnsetSecret]:
    """The relay's secrets whose environment variable is not set."""
    values = (config.password, config.api_key, config.access_key_id, config.secret_access_key)
    return [v for v in values if isinstance(v, UnsetSecret)]


def require_secrets(config: RelayConfig) -> None:
    """Before a relay is used or checked: RelayConfigError when one of its `KEY_env`
    variables is not set (the same message a load used to fail with)."""
    unset = unset_secrets(config)
    if unset:
        raise RelayConfigError(unset[0].problem)


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
    expand_batch: int = 20000        # list members written per INSERT … SELECT at launch
    feed_window: int = 2000          # messages kept waiting in the broker per priority
    task_batch: int = 10             # bulk messages per send task (the feeder's batches)


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
    imap: Any = None                 # campaigns.intake.imap.ImapConfig when [bounces.imap] is set
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
    """TOML [attachments]: where a recipient's attachment may come from (campaigns.content.attachments)."""
    roots: tuple[str, ...] = ()       # absolute folders; empty: the folder of the imported CSV
    max_file_bytes: int = 15_000_000
    max_message_bytes: int = 25_000_000


@dataclass(frozen=True)
class TemplatesConfig:
    """TOML [templates]: render limits per message part (campaigns.content.render_limits)."""
    max_render_s: float = 2.0        # wall clock to render one part
    max_part_bytes: int = 2_000_000  # a rendered part, and any string or list a template builds
    max_range: int = 10_000          # items of one range() in a template


@dataclass(frozen=True)
class WebConfig:
    """TOML [web]: the one HTTP process (`campaigns serve`): API, provider webhooks, health."""
    listen: str | None = None          # HOST:PORT; None: [webhooks] listen, else 127.0.0.1:8025
    public_url: str | None = None      # the https address people and providers reach
    max_body_bytes: int = 30 * 1024 * 1024   # a request body past this is answered 413


@dataclass(frozen=True)
class GatewayConfig:
    """TOML [gateway]: the SMTP submission gateway (`campaigns gateway`) an ERP points its
    outgoing mail server at."""
    listen: str | None = "127.0.0.1:2587"      # submission, STARTTLS offered (587 in production)
    tls_listen: str | None = "127.0.0.1:2465"  # implicit TLS (465 in production)
    cert_file: Path | None = None    # None: a self-signed pair made in the data dir
    key_file: Path | None = None
    hostname: str | None = None      # the name in the greeting and EHLO; None: this host's
    max_message_bytes: int = 26_214_400
    max_recipients: int = 100        # per message
    suppressed: str = "reject"       # or "accept": recorded as suppressed, called back
    allow_plain_auth_from: tuple[str, ...] = ()   # addresses that may AUTH without TLS
    timeout_s: float = 300.0         # an idle session is closed after this


@dataclass(frozen=True)
class DkimConfig:
    """TOML [dkim."DOMAIN"]: the keys that sign messages whose From is at DOMAIN
    (campaigns.content.dkim): RSA always, Ed25519 too when both ed25519_* keys are given."""
    domain: str
    selector: str
    key_file: Path
    ed25519_selector: str | None = None
    ed25519_key_file: Path | None = None


#: the event types a callback may ask for ([callbacks] events)
CALLBACK_EVENTS = ("delivered", "bounced", "complained", "failed", "suppressed", "deferred",
                   "queued", "in_doubt")


@dataclass(frozen=True)
class CallbacksConfig:
    """TOML [callbacks]: events of transactional messages (and of bulk campaigns named in
    `streams`) POSTed, signed, to the caller's URL (campaigns.callbacks)."""
    url: str | None = None
    secret: Secret | None = None       # from the variable named by secret_env
    events: tuple[str, ...] = ("delivered", "bounced", "complained", "failed", "suppressed",
                               "deferred")
    streams: tuple[str, ...] = ()      # streams, and bulk campaigns by name ("*": all)
    timeout_s: float = 10.0
    max_age_s: float = 86_400.0        # an event not delivered within this is given up

    def wants(self, event: str, stream: str | None, campaign: str) -> bool:
        """Whether an event of this type, of a stream's message (`stream`) or of a bulk
        campaign, is to be called back."""
        if not self.url or event not in self.events:
            return False
        listed = set(self.streams)
        return "*" in listed or (stream in listed if stream else campaign in listed)


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
    web: WebConfig = field(default_factory=WebConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    dkim: dict[str, DkimConfig] = field(default_factory=dict)   # by lower-case From domain
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
