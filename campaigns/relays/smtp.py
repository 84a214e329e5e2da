"""SMTP relay on smtplib: one persistent connection per relay object (= per worker process).

MAIL, RCPT, DATA and the body are sent as separate steps, so a failure is known by stage:
a refusal is followed by RSET (the connection stays usable); a drop or a 421 before the body
was sent in full means reconnect (bounded, jittered backoff) and try again; a drop after the
body, before the final reply, is RelayInDoubt and never resent here. smtplib/socket/ssl errors
are translated in `_connect_error` (connecting) and `_send_once` (sending), without the password.
Replies are read by campaigns.relays.smtp_replies.
"""
from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential,
                      wait_random)

from campaigns.errors import (ConfigError, RelayConfigError, RelayError, RelayInDoubt,
                              RelayPermanentError, RelayTemporaryError)
from campaigns.relays.base import OutgoingMessage, SendResult
from campaigns.relays.presets import SECURITY_MODES
from campaigns.relays.smtp_client import (Client, NoGreeting, default_helo, dot_stuffed,
                                          greeting_s, peer_closed)
from campaigns.relays.smtp_replies import parse_reply, queued_as, reply_error, retry_after_s
from campaigns.settings import RelayConfig
from campaigns.tls import TlsSetupError, client_context

__all__ = ["SmtpRelay", "parse_reply", "reply_error", "retry_after_s"]

T = TypeVar("T")
# ssl reasons for a TLS handshake answered in plain text (a plain or STARTTLS port)
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE",
                      "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"})


class _ConnectionLost(Exception):
    """Internal: the connection dropped, or the server said 421, before the message body was
    sent in full. Nothing was accepted: reconnecting and trying again is safe."""

    def __init__(self, message: str, code: int | None = None, msg: bytes | str = b"") -> None:
        super().__init__(message)
        self.code = code
        self.enhanced: str | None = None
        self.text: str | None = None
        if code:
            self.enhanced, self.text = parse_reply(msg)

    def temporary(self, message: str) -> RelayTemporaryError:
        return RelayTemporaryError(message, code=self.code, enhanced=self.enhanced, text=self.text,
                                   retry_after_s=retry_after_s(self.text) if self.text else None,
                                   relay_down=self.code is None)   # no reply: the relay is down


@dataclass
class _Steps:
    """The handshake steps done so far (lines for check()) and the one in progress."""
    lines: list[str] = field(default_factory=list)
    current: str = "connect"


def _restated(err: RelayError, message: str) -> RelayError:
    """A copy of err with another message, keeping the reply."""
    kw: dict[str, Any] = {"code": err.code, "enhanced": err.enhanced, "text": err.text,
                          "category": err.category, "reason": err.reason,
                          "http_status": err.http_status}
    if isinstance(err, RelayTemporaryError):
        kw["retry_after_s"], kw["relay_down"] = err.retry_after_s, err.relay_down
    return type(err)(message, **kw)


class SmtpRelay:
    """The Relay contract over smtplib (see campaigns.relays.base.Relay).

    Not thread-safe: one object per worker process, reused for every message. Options (keyword
    or `config.options`): reconnect_attempts (3) bounds the tries of one message when the
    connection drops; the waits between them double from backoff_min_s (0.2) up to backoff_max_s
    (2.0), plus a random jitter of up to backoff_min_s.
    """

    def __init__(self, config: RelayConfig, *, reconnect_attempts: int | None = None,
                 backoff_min_s: float | None = None, backoff_max_s: float | None = None) -> None:
        if config.security not in SECURITY_MODES:
            raise ConfigError(f"relay '{config.name}': security must be one of "
                              f"{', '.join(SECURITY_MODES)}, got {config.security!r}")
        self.name = config.name
        self._config = config
        self._where = f"{config.host}:{config.port}"
        attempts = int(self._option("reconnect_attempts", reconnect_attempts, 3, 1))
        low = self._option("backoff_min_s", backoff_min_s, 0.2, 0.0)
        high = max(low, self._option("backoff_max_s", backoff_max_s, 2.0, 0.0))
        self.reconnect_attempts = attempts
        self._retrying = Retrying(
            stop=stop_after_attempt(attempts), reraise=True,
            wait=wait_exponential(multiplier=low, max=high) + wait_random(0, low),
            retry=retry_if_exception_type(_ConnectionLost))
        self._conn: smtplib.SMTP | None = None
        self._tls: ssl.SSLContext | None = None

    def _option(self, key: str, given: float | None, default: float, low: float) -> float:
        value = given if given is not None else self._config.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"relay '{self.name}': {key} must be a number, got {value!r}")
        return max(low, float(value))

    # --- the contract ----------------------------------------------------------------------

    def open(self) -> None:
        """Connect, greet, STARTTLS and AUTH unless connected (see Relay.open)."""
        self._reconnecting(self._connection)

    def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message on the persistent connection (see Relay.send)."""
        return self._reconnecting(lambda: self._send_once(message))

    def close(self) -> None:
        """QUIT and close; never raises."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except Exception:  # noqa: BLE001 - closing politely is best effort
            conn.close()

    def check(self) -> list[str]:
        """Connect, greet, TLS, AUTH and QUIT on a separate connection; the lines of the steps
        that passed, or a RelayError whose message names the step that failed."""
        steps = _Steps()
        try:
            conn = self._connect(steps)
        except _ConnectionLost as lost:
            raise lost.temporary(f"check failed at step '{steps.current}': {lost}") from lost
        except RelayError as err:
            raise _restated(err, f"check failed at step '{steps.current}': {err}") from err
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()
            return [*steps.lines, "QUIT (no reply, connection closed)"]
        return [*steps.lines, "QUIT"]

    # --- connecting ------------------------------------------------------------------------

    def _reconnecting(self, attempt: Callable[[], T]) -> T:
        try:
            return self._retrying(attempt)
        except _ConnectionLost as lost:
            raise lost.temporary(f"{lost} (gave up after {self.reconnect_attempts} attempts)") from lost

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None and not peer_closed(self._conn):
            return self._conn
        self._drop()
        self._conn = self._connect(_Steps())
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connect(self, steps: _Steps) -> smtplib.SMTP:
        cfg = self._config
        conn: smtplib.SMTP | None = None
        try:
            steps.current = f"connect to {self._where}"
            conn = self._client()   # connected: SMTPConnectError unless the greeting is 220
            tls = f" ({conn.sock.version()})" if isinstance(conn.sock, ssl.SSLSocket) else ""
            steps.lines.append(f"connected to {self._where}{tls}")
            self._greet(conn, steps)
            if cfg.security == "starttls":
                self._starttls(conn, steps)
            if cfg.username:
                self._login(conn, steps, cfg.username)
            return conn
        except (RelayError, smtplib.SMTPException, OSError, ValueError) as err:  # SSLError: OSError
            if conn is not None:
                conn.close()
            if isinstance(err, RelayError):
                raise
            failure = self._connect_error(err, steps.current)
            # At AUTH, smtplib's frames (and a UnicodeError's .object) hold the password: raise
            # outside this block without chaining, so neither __cause__ nor __context__ keeps them.
            cause = None if steps.current.startswith("AUTH") else err
        raise failure from cause

    def _client(self) -> smtplib.SMTP:
        # Host given to the constructor: smtplib verifies the TLS certificate against it.
        cfg = self._config
        helo = cfg.helo_name or default_helo()
        if cfg.security == "tls":
            return smtplib.SMTP_SSL(cfg.host, cfg.port, local_hostname=helo, timeout=cfg.timeout_s,
                                    context=self._tls_context())
        return Client(cfg.host, cfg.port, local_hostname=helo, timeout=cfg.timeout_s,
                       greeting_s=greeting_s(cfg.timeout_s))

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            cfg = self._config
            try:   # system CAs plus ca_file, hostname checked unless tls_verify = false
                self._tls = client_context(cfg.ca_file, verify=cfg.tls_verify)
            except TlsSetupError as err:
                raise RelayConfigError(f"relay '{self.name}': {err}") from err
        return self._tls

    def _greet(self, conn: smtplib.SMTP, steps: _Steps) -> None:
        steps.current = "EHLO"
        code, msg = conn.ehlo()
        if 500 <= code < 600:           # no ESMTP: an old server
            code, msg = conn.helo()
        if code != 250:
            raise smtplib.SMTPHeloError(code, msg)
        words = msg.decode("utf-8", "replace").split()
        steps.lines.append(f"EHLO ok (server: {words[0] if words else '?'})")

    def _starttls(self, conn: smtplib.SMTP, steps: _Steps) -> None:
        steps.current = "STARTTLS"
        if not conn.has_extn("starttls"):
            raise RelayConfigError(f"{self._where} does not offer STARTTLS (security = 'starttls'); "
                                   "use security = 'tls' for port 465, or 'none'")
        conn.starttls(context=self._tls_context())
        code, msg = conn.ehlo()
        if code != 250:
            raise smtplib.SMTPHeloError(code, msg)
        version = conn.sock.version() if isinstance(conn.sock, ssl.SSLSocket) else "?"
        steps.lines.append(f"STARTTLS ok ({version})")

    def _login(self, conn: smtplib.SMTP, steps: _Steps, user: str) -> None:
        steps.current = f"AUTH as {user}"
        if not self._config.password:
            raise RelayConfigError(f"relay '{self.name}': username {user} is set but no password")
        try:
            conn.login(user, self._config.password.reveal())
        finally:
            conn.password = ""  # smtplib keeps it on the connection object otherwise
        steps.lines.append(f"AUTH ok as {user}")

    def _connect_error(self, err: Exception, step: str) -> Exception:
        """The one translation of a connect/greet/TLS/AUTH failure: a RelayError, or
        _ConnectionLost when reconnecting may help."""
        cfg, where = self._config, self._where
        if isinstance(err, socket.gaierror):
            return RelayConfigError(f"cannot resolve host {cfg.host}: {err.strerror}")
        if isinstance(err, ConnectionRefusedError):
            return RelayTemporaryError(f"connection refused by {where}", relay_down=True)
        if isinstance(err, ssl.SSLCertVerificationError):
            return RelayConfigError(f"TLS certificate verification failed for {where}: "
                                    f"{err.verify_message} (set ca_file, or tls_verify = false)")
        if isinstance(err, NoGreeting):
            return RelayConfigError(
                f"no SMTP greeting from {where} within {greeting_s(cfg.timeout_s):g} s"
                ": is this an implicit-TLS port (465)? use security = \"tls\"")
        if isinstance(err, ssl.SSLError):
            return RelayConfigError(f"TLS handshake with {where} failed at {step}: "
                                    f"{err.reason or err}{self._plain_text_hint(err)}")
        if isinstance(err, smtplib.SMTPAuthenticationError) and err.smtp_code >= 500:
            enhanced, text = parse_reply(err.smtp_error)
            reply = " ".join(p for p in (str(err.smtp_code), enhanced, text) if p)
            return RelayConfigError(f"authentication failed for user {cfg.username}: {reply}",
                                    code=err.smtp_code, enhanced=enhanced, text=text)
        if isinstance(err, smtplib.SMTPResponseException):
            if err.smtp_code == 421:
                return _ConnectionLost(f"{where} closed the connection at {step}", 421, err.smtp_error)
            return reply_error(err.smtp_code, err.smtp_error, stage=step, subject=f"{where}, {step}",
                               before_mail=True)
        if isinstance(err, (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionError)):
            return _ConnectionLost(f"connection to {where} lost at {step}: {err}")
        if isinstance(err, OSError) and not isinstance(err, smtplib.SMTPException):
            return RelayTemporaryError(f"cannot connect to {where}: {err.strerror or err}",
                                       relay_down=True)
        if isinstance(err, UnicodeError):   # its text would show a character of the password
            return RelayConfigError(f"{step}: non-ASCII characters cannot be sent here")
        return RelayConfigError(f"{step} failed on {where}: {err}")  # e.g. AUTH not offered

    def _plain_text_hint(self, err: ssl.SSLError) -> str:
        """Why implicit TLS met a server answering in plain text, and the fix."""
        if self._config.security != "tls" or err.reason not in _NOT_TLS:
            return ""
        return (f" (the server answered in plain text: is {self._config.port} a plain or "
                "STARTTLS port such as 587 or 25? use security = \"starttls\" there; "
                "security = \"tls\" is for implicit-TLS ports such as 465)")

    # --- sending ---------------------------------------------------------------------------

    def _send_once(self, message: OutgoingMessage) -> SendResult:
        conn = self._connection()
        stage = "MAIL"
        try:
            code, msg = conn.mail(message.sender, ["SMTPUTF8"] if message.smtputf8 else [])
            self._expect(conn, code, msg, "MAIL", f"MAIL FROM:<{message.sender}>", 250)
            stage = "RCPT"
            code, msg = conn.rcpt(message.recipient)
            self._expect(conn, code, msg, "RCPT", f"RCPT TO:<{message.recipient}>", 250, 251)
            stage = "DATA"
            conn.putcmd("data")
            code, msg = conn.getreply()
            self._expect(conn, code, msg, "DATA", f"DATA for <{message.recipient}>", 354)
            # A failure while sending the body: the final "." was not sent, nothing accepted.
            stage = "the message body"
            conn.send(dot_stuffed(message.data))
            stage = "final reply"        # the body is out: from here a loss is in doubt
            code, msg = conn.getreply()
        except smtplib.SMTPNotSupportedError as err:      # MAIL with SMTPUTF8 not offered
            raise RelayPermanentError(f"{self._where} does not offer SMTPUTF8, needed to send "
                                      f"{message.message_id} to <{message.recipient}>") from err
        except OSError as err:   # smtplib's exceptions included: getreply() closed the socket
            self._drop()
            if stage == "final reply":
                raise RelayInDoubt(
                    f"connection to {self._where} lost after the body of {message.message_id} "
                    f"to <{message.recipient}> was sent, before the reply; the relay may have "
                    f"accepted it ({err})") from err
            raise _ConnectionLost(f"connection to {self._where} lost at {stage}: {err}") from err
        except ValueError as err:   # non-ASCII address without smtputf8, CR/LF in an address
            self._reset(conn)
            raise RelayPermanentError(f"{stage}: address cannot be sent ({err}); "
                                      "non-ASCII addresses need smtputf8") from err
        return self._accepted(conn, code, msg, message)

    def _expect(self, conn: smtplib.SMTP, code: int, msg: bytes, stage: str, subject: str,
                *ok: int) -> None:
        if code in ok:
            return
        if code == 421:              # the server is closing this connection
            self._drop()
            raise _ConnectionLost(f"{self._where} closed the connection at {subject}", code, msg)
        err = reply_error(code, msg, stage=stage, subject=subject)
        self._reset(conn)
        raise err

    def _reset(self, conn: smtplib.SMTP) -> None:
        """RSET after a refusal so the next message can use the connection."""
        try:
            code, _ = conn.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._drop()

    def _accepted(self, conn: smtplib.SMTP, code: int, msg: bytes,
                  message: OutgoingMessage) -> SendResult:
        if 200 <= code < 300:
            enhanced, text = parse_reply(msg)
            return SendResult(code, enhanced, text, queued_as(text))
        if code == 421:
            self._drop()
        raise reply_error(code, msg, stage="end of DATA",
                          subject=f"message {message.message_id} to <{message.recipient}>")
