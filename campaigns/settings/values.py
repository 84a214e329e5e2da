"""Values read from TOML and the environment, and how errors may show them: `Secret`, the
`KEY_env` indirection (`UnsetSecret`), `shown` (never a secret in an error), `clamp` and
`setting` for numbers, `check_table` for a table's keys. Used by every table reader, here and
in the domain modules that read their own tables (relays, the IMAP mailbox, webhooks)."""
from __future__ import annotations

import re
from typing import Any

from campaigns.errors import ConfigError, RelayConfigError


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


def clamp(name: str, value: Any, kind: type, low: float, where: str) -> Any:
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
        raise RelayConfigError(self.problem)

    def __bool__(self) -> bool:
        return True


def setting(raw: dict[str, Any], defaults: Any, name: str, kind: type, low: float,
             where: str) -> Any:
    """The TOML table's `name`, else the default's, checked by `clamp`."""
    return clamp(name, raw.get(name, getattr(defaults, name)), kind, low, where)


def check_table(raw: Any, at: str, keys: set[str]) -> dict[str, Any]:
    """`raw` as a TOML table holding only `keys`, else ConfigError naming what is not."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a table")
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}; expected some of "
                          f"{', '.join(sorted(keys))}")
    return raw
