"""Poll an IMAP mailbox for returned messages (bounces, complaints, auto-replies).

The mailbox itself is the state: a message is marked done (moved to `done_folder`, or given
the keyword `done_keyword` and \\Seen) only after `handle(raw)` returned, so nothing is lost
when a handler or the poller dies, and nothing handled is offered again. Messages are read
with BODY.PEEK[], so one whose handler raised stays unseen and unmarked and is offered again
on the next poll. Delivery is at least once: a connection that drops between `handle`
returning and the mark being stored means that message is handled again next time.

Plain imaplib and ssl. imaplib, socket and ssl errors are translated to ImapError in one
place (`_translated`); no message or log line ever carries the password.
"""
from __future__ import annotations

import base64
import imaplib
import logging
import os
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from campaigns.errors import CampaignsError, InputError
from campaigns.settings import Secret
from campaigns.tls import TlsSetupError, client_context

log = logging.getLogger(__name__)

SECURITY_MODES = ("tls", "starttls", "none")
DONE_MODES = ("move", "flag")
_DEFAULT_PORT = {"tls": 993, "starttls": 143, "none": 143}
# RFC 3501 flag-keyword = atom: printable ASCII but ( ) { SP % * " \ ] (a leading
# backslash would make it a system flag).
_KEYWORD_RE = re.compile(r'[!#$&\'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+')


class ImapError(CampaignsError):
    """The mailbox could not be polled: connection, TLS, login, folder or a refused command.
    The message names host, port, user and what failed; never the password."""


@dataclass(frozen=True)
class ImapConfig:
    """Where the returned messages arrive ([bounces.imap] in campaigns.toml)."""
    host: str
    port: int | None = None          # None: 993 for security="tls", else 143
    security: str = "tls"            # tls (IMAPS) | starttls | none
    user: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))
    folder: str = "INBOX"
    done: str = "move"               # move | flag
    done_folder: str = "Processed"   # "move": created when missing
    done_keyword: str = "$CampaignsDone"   # "flag": set with \Seen
    ca_file: str | None = None       # extra CA bundle, besides the system store
    timeout_s: float = 30.0
    batch: int = 200                 # at most this many messages per poll

    @property
    def server_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORT[self.security]

    @property
    def address(self) -> str:
        """host:port, as every error message names the server."""
        return f"{self.host}:{self.server_port}"


@dataclass(frozen=True)
class PollResult:
    handled: int     # passed to handle(), which returned, and then marked done
    failed: int      # handle() raised: left in place, unmarked, offered again next poll


# --- configuration -------------------------------------------------------------------------

_KEYS = ("host", "port", "security", "user", "password", "password_env", "folder", "done",
         "done_folder", "done_keyword", "ca_file", "timeout_s", "batch")


class _Table:
    """Typed reads from one TOML table; each error names the table and the field."""

    def __init__(self, raw: dict[str, Any], where: str) -> None:
        self.raw, self.where = raw, where

    def error(self, key: str, message: str) -> InputError:
        return InputError(message, file=self.where, field=key)

    def text(self, key: str, default: str | None, choices: tuple[str, ...] = ()) -> str:
        value = self.raw.get(key, default)
        if value is None:
            raise self.error(key, "required (expected a non-empty string)")
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string (got {value!r})")
        if choices and value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)} (got {value!r})")
        return value

    def number(self, key: str, default: float, kind: type, low: float, high: float) -> Any:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (kind is int and not isinstance(value, int)) or not low <= value <= high:
            what = "an integer" if kind is int else "a number"
            raise self.error(key, f"expected {what} from {low:g} to {high:g} (got {value!r})")
        return kind(value)


def parse_imap_config(raw: dict[str, Any], where: str) -> ImapConfig:
    """The ImapConfig for the TOML table `raw`; `where` names the table in errors
    ("campaigns.toml [bounces.imap]"). The password comes from `password` or from the
    environment variable `password_env`. Raises InputError naming the field."""
    if not isinstance(raw, dict):
        raise InputError(f"expected a table, got {type(raw).__name__}", file=where)
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise InputError(f"unknown key (expected one of {', '.join(_KEYS)})", file=where,
                         field=unknown[0])
    t, d = _Table(raw, where), ImapConfig(host="")
    host, user = t.text("host", None), t.text("user", None)
    security = t.text("security", d.security, SECURITY_MODES)
    done = t.text("done", d.done, DONE_MODES)
    folder, done_folder = t.text("folder", d.folder), t.text("done_folder", d.done_folder)
    if done == "move" and _mailbox_arg(folder) == _mailbox_arg(done_folder):
        raise t.error("done_folder", f"must differ from folder {folder!r} when done = \"move\"")
    keyword = t.text("done_keyword", d.done_keyword)
    if not _KEYWORD_RE.fullmatch(keyword):
        raise t.error("done_keyword",
                      f"expected an IMAP keyword such as $CampaignsDone (got {keyword!r})")
    ca_file = raw.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
        raise t.error("ca_file", f"expected a file name (got {ca_file!r})")
    return ImapConfig(
        host=host, security=security,
        port=t.number("port", 0, int, 1, 65535) if "port" in raw else None,
        user=user, password=_password(raw, where), folder=folder, done=done,
        done_folder=done_folder, done_keyword=keyword, ca_file=ca_file,
        timeout_s=t.number("timeout_s", d.timeout_s, float, 0.1, 3600),
        batch=t.number("batch", d.batch, int, 1, 100_000))


def _password(raw: dict[str, Any], where: str) -> Secret:
    # Never echo the value: a wrong type may still be the password.
    if "password" in raw and "password_env" in raw:
        raise InputError("give password or password_env, not both", file=where, field="password")
    if "password_env" in raw:
        name = raw["password_env"]
        if not isinstance(name, str) or name not in os.environ:
            from campaigns.settings import env_var_problem
            raise InputError(str(env_var_problem("[bounces.imap]", "password_env", name)),
                             file=where, field="password_env")
        return Secret(os.environ[name])
    value = raw.get("password")
    if not isinstance(value, str) or not value:
        raise InputError("expected a non-empty string (or password_env)", file=where,
                         field="password")
    return Secret(value)


# --- protocol helpers ----------------------------------------------------------------------

def _mailbox_arg(name: str) -> str:
    """`name` as an IMAP mailbox argument: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            b64 = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + b64.decode("ascii").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _reply(data: list[Any]) -> str:
    """The server's text from a command's response data."""
    return " ".join(_text(d) for d in data if d is not None and not isinstance(d, tuple))


@contextmanager
def _translated(config: ImapConfig, stage: str) -> Iterator[None]:
    """imaplib, socket and ssl errors during `stage` as ImapError naming the server."""
    secret = config.password.reveal()
    try:
        yield
    except ssl.SSLCertVerificationError as err:
        raise ImapError(f"imap {config.address}: {stage}: server certificate verification "
                        f"failed: {err.verify_message}") from None
    except (imaplib.IMAP4.error, OSError, UnicodeError) as err:
        detail = " ".join(_text(a) for a in err.args) or type(err).__name__
        if secret:
            detail = detail.replace(secret, "***")
        raise ImapError(f"imap {config.address}: {stage}: {detail}") from None


def _check(config: ImapConfig, stage: str, result: tuple[str, list[Any]]) -> list[Any]:
    typ, data = result
    if typ != "OK":
        raise ImapError(f"imap {config.address}: {stage}: {typ} {_reply(data)}")
    return data


def _tls_context(config: ImapConfig) -> ssl.SSLContext:
    try:
        return client_context(config.ca_file)
    except TlsSetupError as err:
        raise ImapError(f"imap {config.address}: {err}") from None


def _connect(config: ImapConfig) -> imaplib.IMAP4:
    """A logged-in connection."""
    host, port, timeout = config.host, config.server_port, config.timeout_s
    context = None if config.security == "none" else _tls_context(config)
    with _translated(config, "connect"):
        if config.security == "tls":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, port, ssl_context=context,
                                                   timeout=timeout)
        else:
            conn = imaplib.IMAP4(host, port, timeout=timeout)
    try:
        if config.security == "starttls":
            with _translated(config, "STARTTLS"):
                conn.starttls(context)
        login = f"login failed for user {config.user!r}"
        if not (config.user + config.password.reveal()).isascii():
            # imaplib would raise UnicodeEncodeError carrying the (quoted) password itself
            raise ImapError(f"imap {config.address}: {login}: IMAP LOGIN takes ASCII only, "
                            f"and the user name or password is not")
        with _translated(config, login):
            conn.login(config.user, config.password.reveal())
    except BaseException:
        with suppress(OSError):
            conn.shutdown()
        raise
    return conn


def _capabilities(conn: imaplib.IMAP4, config: ImapConfig) -> frozenset[str]:
    """The capabilities after login (a server may announce more than in its greeting)."""
    with _translated(config, "CAPABILITY"):
        data = _check(config, "CAPABILITY", conn.capability())
    return frozenset(" ".join(_text(d) for d in data if d).upper().split())


# --- one poll ------------------------------------------------------------------------------

class _Session:
    """A selected folder on a logged-in connection: finds, fetches and marks messages."""

    def __init__(self, conn: imaplib.IMAP4, config: ImapConfig) -> None:
        self.conn, self.config = conn, config
        self.caps = _capabilities(conn, config)
        self.done_arg = _mailbox_arg(config.done_folder)
        self.to_expunge: list[str] = []

    def run(self, stage: str, *args: str) -> list[Any]:
        """`UID <args>`, checked for OK; `stage` names the command in errors."""
        with _translated(self.config, stage):
            return _check(self.config, stage, self.conn.uid(*args))

    def select(self) -> None:
        cfg = self.config
        with _translated(cfg, f"SELECT {cfg.folder!r}"):
            _check(cfg, f"SELECT {cfg.folder!r}", self.conn.select(_mailbox_arg(cfg.folder)))
            permanent = _reply(self.conn.response("PERMANENTFLAGS")[1])
        # Without \* the server would keep our keyword for this session only, and every
        # poll would offer the same messages again.
        if cfg.done == "flag" and "\\*" not in permanent and cfg.done_keyword not in permanent:
            raise ImapError(f"imap {cfg.address}: folder {cfg.folder!r} does not store the "
                            f"keyword {cfg.done_keyword} (PERMANENTFLAGS {permanent}); "
                            f"use done = \"move\"")
        if cfg.done == "move":
            self._ensure_done_folder()

    def _ensure_done_folder(self) -> None:
        stage = f"create folder {self.config.done_folder!r}"
        with _translated(self.config, stage):
            listed = _check(self.config, stage, self.conn.list('""', self.done_arg))
            if not any(listed):
                _check(self.config, stage, self.conn.create(self.done_arg))

    def pending(self) -> list[str]:
        """UIDs not handled yet, oldest first, at most `batch`. \\Deleted ones are skipped:
        a person deleted them, or our COPY fallback already copied them."""
        criteria = ["UNDELETED"]
        if self.config.done == "flag":
            criteria += ["UNKEYWORD", self.config.done_keyword]
        data = self.run("UID SEARCH", "SEARCH", *criteria)
        uids = sorted({int(u) for d in data if d for u in _text(d).split()})
        return [str(u) for u in uids[: self.config.batch]]

    def fetch(self, uid: str) -> bytes | None:
        """The raw message, or None when it vanished (expunged by someone else)."""
        for item in self.run(f"UID FETCH {uid}", "FETCH", uid, "(BODY.PEEK[])"):
            if isinstance(item, tuple) and isinstance(item[1], bytes):
                return item[1]
        return None

    def mark_done(self, uid: str) -> None:
        cfg = self.config
        if cfg.done == "flag":
            self.run(f"UID STORE {uid}", "STORE", uid, "+FLAGS.SILENT",
                     f"({cfg.done_keyword} \\Seen)")
        elif "MOVE" in self.caps:                                     # RFC 6851
            self.run(f"UID MOVE {uid} to {cfg.done_folder!r}", "MOVE", uid, self.done_arg)
        else:
            self.run(f"UID COPY {uid} to {cfg.done_folder!r}", "COPY", uid, self.done_arg)
            self.run(f"UID STORE {uid}", "STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
            self.to_expunge.append(uid)

    def expunge(self) -> None:
        """Remove the copied-and-deleted messages: only ours with UIDPLUS (RFC 4315);
        without it EXPUNGE also removes what others marked \\Deleted, as any client would."""
        if not self.to_expunge:
            return
        if "UIDPLUS" in self.caps:
            self.run("UID EXPUNGE", "EXPUNGE", ",".join(self.to_expunge))
        else:
            with _translated(self.config, "EXPUNGE"):
                _check(self.config, "EXPUNGE", self.conn.expunge())
        self.to_expunge.clear()


def poll_once(config: ImapConfig, handle: Callable[[bytes], None]) -> PollResult:
    """Pass each message not yet handled in `config.folder` (at most `config.batch`) to
    `handle(raw_bytes)`, then mark it done. A handler that raises is logged with the UID and
    leaves its message unmarked for the next poll. Raises ImapError when the server cannot be
    reached, refuses the login, the folder or a command."""
    conn = _connect(config)
    handled = failed = 0
    try:
        session = _Session(conn, config)
        session.select()
        try:
            for uid in session.pending():
                raw = session.fetch(uid)
                if raw is None:
                    continue
                try:
                    handle(raw)
                except Exception as err:  # noqa: BLE001 - any handler failure is per message
                    failed += 1
                    log.error("imap %s folder %r: handling message UID %s failed, left for "
                              "the next poll: %s: %s", config.address, config.folder, uid,
                              type(err).__name__, err, exc_info=err)
                    continue
                session.mark_done(uid)
                handled += 1
        except BaseException:
            with suppress(ImapError):   # the error that stopped the poll is the one to see
                session.expunge()
            raise
        session.expunge()
    finally:
        with suppress(imaplib.IMAP4.error, OSError):
            conn.logout()               # also closes the socket, even when LOGOUT fails
    log.info("imap %s folder %r: handled %d, failed %d", config.address, config.folder,
             handled, failed)
    return PollResult(handled=handled, failed=failed)
