"""`load_settings`: the environment and the TOML file into one `Settings`. Each [relays.NAME]
table is read and checked by the relays' own reader (`hooks`: "relay"), at load as before: an
unknown kind, a missing optional dependency or a bad key fails here, naming the file."""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from campaigns.errors import ConfigError
from campaigns.settings.hooks import hook
from campaigns.settings.model import RelayConfig, Settings
from campaigns.settings.tables import (_attachments, _bounces, _callbacks, _breaker, _dkim, _rates,
                                       _schedules, _gateway, _sending, _templates, _web)
from campaigns.settings.values import Secret


def read_relay(name: str, raw: Any, where: str) -> RelayConfig:
    """One [relays.NAME] table, read and checked by the relays package (its kind resolved,
    its keys checked by the kind itself); ConfigError naming `where` otherwise."""
    return hook("relay")(name, raw, where)


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
    relays = {name: read_relay(name, r, where) for name, r in relays_raw.items()}
    pools = hook("pools")(raw.get("pools", {}), relays, where)   # checked by campaigns.delivery.pools
    default_relay = raw.get("default_relay") or (next(iter(relays)) if len(relays) == 1 else None)
    if default_relay and default_relay not in relays and default_relay not in pools:
        raise ConfigError(f"{where}: default_relay '{default_relay}' is not one of [relays.*] "
                          f"or [pools.*]")
    base = config_path.parent if config_path else Path.cwd()
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
        web=_web(raw.get("web", {}), where),
        callbacks=_callbacks(raw.get("callbacks", {}), where, env),
        gateway=_gateway(raw.get("gateway", {}), where, base),
        dkim=_dkim(raw.get("dkim", {}), where, base),
        config_searched=() if env.get("CAMPAIGNS_CONFIG") else searched,
    )
