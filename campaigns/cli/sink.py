"""A scripted SMTP sink on aiosmtpd, for the demo, the tests and the benchmark.

It accepts everything except what its rules say: a rule answers a chosen reply (or drops the
connection) for recipients matching a regex, at RCPT, at the end of DATA, or (stage "mail",
matched against the sender) at MAIL FROM.

    with ScriptedSink(rules=DEMO_RULES) as sink:
        ...  # send to sink.host:sink.port
        sink.wait_for(10, timeout_s=5)

Run alone (the benchmark does) until SIGTERM/SIGINT; the first stdout line is
`listening HOST:PORT`:

    python -m campaigns.cli.sink --port 2525 --store DIR --rule '^bounce=550 5.1.1 User unknown'
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import re
import signal
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from campaigns.intake.smtpserver import AnyPortController

_DROP = "\x00drop"       # a handler's reply meaning "close the connection, answer nothing"
STAGES = ("mail", "rcpt", "data")


@dataclass
class Rule:
    pattern: str              # regex searched in the recipient address (the sender at "mail")
    code: int                 # e.g. 550, 451, 421
    text: str                 # e.g. "5.1.1 User unknown"
    times: int | None = None  # answer this for the first N attempts per address, then accept
    stage: str = "rcpt"       # "rcpt", "data" (after the body) or "mail" (matched on sender)
    disconnect: bool = False  # close the connection instead of replying (simulate a drop)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"rule stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        self._regex = re.compile(self.pattern)

    def matches(self, address: str) -> bool:
        return self._regex.search(address) is not None

    @property
    def reply(self) -> str:
        return _DROP if self.disconnect else f"{self.code} {self.text}"


@dataclass
class Received:
    mail_from: str
    rcpt: str
    data: bytes               # b"" when the sink was started with keep_data=False
    at: float                 # time.time() when accepted


DEMO_RULES: list[Rule] = [
    Rule(r"^bounce", 550, "5.1.1 User unknown"),
    Rule(r"^defer", 451, "4.2.0 Mailbox temporarily unavailable", times=1),
]


class _SinkSMTP(SMTP):
    """aiosmtpd's server, plus: 421 closes the connection (aiosmtpd would keep it open),
    `_DROP` closes it without a reply, and live connections are known to the sink."""

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = handler.sink
        self.greeted = False    # counted in sink.connections (a 2nd EHLO after STARTTLS is not)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._sink._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._sink._live.discard(self)
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        if status == _DROP:
            self.drop()
            return
        await super().push(status)
        if isinstance(status, str) and status.startswith("421"):
            self.drop()

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Handler:
    """aiosmtpd hooks; runs on the sink's event loop thread."""

    def __init__(self, sink: ScriptedSink) -> None:
        self.sink = sink

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        self.sink._greeted(server)
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str) -> str:
        session.host_name = hostname
        self.sink._greeted(server)
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if self.sink.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        rule = self.sink._fire("mail", address)
        if rule:
            return rule.reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        self.sink._count_attempt(address)
        rule = self.sink._fire("rcpt", address)
        if rule:
            return rule.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.sink.delay_s > 0:
            await asyncio.sleep(self.sink.delay_s)
        for rcpt in envelope.rcpt_tos:
            rule = self.sink._fire("data", rcpt)
            if rule:
                return rule.reply
        data = envelope.original_content or b""
        number = self.sink._accept(envelope.mail_from or "", envelope.rcpt_tos, data)
        return f"250 2.0.0 Ok: queued as {number}"


class _Controller(AnyPortController):
    def factory(self) -> _SinkSMTP:
        return _SinkSMTP(self.handler, **self.SMTP_kwargs)


class ScriptedSink:
    """An SMTP server on a background thread that records what it accepts.

    Thread-safe for the reader: `received`, `counts()`, `attempts()`, `connections` and
    `wait_for()` may be used from any thread while clients send."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, rules: list[Rule] | None = None,
                 store_dir: Path | None = None, auth: dict[str, str] | None = None,
                 tls_context: ssl.SSLContext | None = None, require_starttls: bool = False,
                 implicit_tls: bool = False, delay_s: float = 0.0, keep_data: bool = True) -> None:
        self.host, self.port = host, port
        self.rules = list(rules or [])
        self.store_dir = Path(store_dir) if store_dir else None
        self.auth, self.delay_s, self.keep_data = auth, delay_s, keep_data
        self.tls_context, self.require_starttls = tls_context, require_starttls
        self.implicit_tls = implicit_tls  # tls_context used for TLS from the first byte (port 465)
        self.received: list[Received] = []
        self.connections = 0              # SMTP sessions that greeted (EHLO/HELO) so far
        self._messages = 0                # accepted messages (one per DATA, any recipients)
        self._cond = threading.Condition()
        self._attempts: collections.Counter[str] = collections.Counter()
        self._fired: collections.Counter[tuple[int, str]] = collections.Counter()
        self._live: set[_SinkSMTP] = set()  # touched on the loop thread only
        self._controller: _Controller | None = None

    def start(self) -> ScriptedSink:
        if self.store_dir:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"server_hostname": "sink.campaigns.test", "ident": "ScriptedSink"}
        if self.tls_context and not self.implicit_tls:
            kwargs.update(tls_context=self.tls_context, require_starttls=self.require_starttls)
        if self.auth is not None:
            # AUTH is offered without TLS (loopback); MAIL enforces it, see handle_MAIL.
            kwargs.update(auth_require_tls=False, authenticator=self._authenticate)
        self._controller = _Controller(
            _Handler(self), hostname=self.host, port=self.port,
            ssl_context=self.tls_context if self.implicit_tls else None, **kwargs)
        self._controller.start()
        self.port = self._controller.port
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is None:
            return
        controller.loop.call_soon_threadsafe(self._drop_all)
        controller.stop()

    def drop_connections(self) -> None:
        """Close every client connection now, as a server does with idle ones."""
        if self._controller is not None:
            done = threading.Event()

            def drop() -> None:
                self._drop_all()
                done.set()

            self._controller.loop.call_soon_threadsafe(drop)
            done.wait(5)

    def __enter__(self) -> ScriptedSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def counts(self) -> collections.Counter[str]:
        """Accepted messages per recipient."""
        with self._cond:
            return collections.Counter(r.rcpt for r in self.received)

    def attempts(self, rcpt: str) -> int:
        """How many times RCPT TO this recipient was tried, accepted or not."""
        with self._cond:
            return self._attempts[rcpt]

    def wait_for(self, n: int, timeout_s: float) -> bool:
        """Wait until at least n messages were accepted; False when timeout_s passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= n, timeout=timeout_s)

    # --- called on the loop thread -------------------------------------------------------

    def _drop_all(self) -> None:
        for server in list(self._live):
            server.drop()

    def _greeted(self, server: SMTP) -> None:
        if isinstance(server, _SinkSMTP) and not server.greeted:
            server.greeted = True
            with self._cond:
                self.connections += 1

    def _count_attempt(self, rcpt: str) -> None:
        with self._cond:
            self._attempts[rcpt] += 1

    def _fire(self, stage: str, address: str) -> Rule | None:
        """The first rule of this stage matching the address that still has times left."""
        with self._cond:
            for index, rule in enumerate(self.rules):
                if rule.stage != stage or not rule.matches(address):
                    continue
                key = (index, address)
                if rule.times is not None and self._fired[key] >= rule.times:
                    continue
                self._fired[key] += 1
                return rule
        return None

    def _accept(self, mail_from: str, rcpts: list[str], data: bytes) -> int:
        """Record one accepted message (a Received per recipient); its number, from 1."""
        now = time.time()
        kept = data if self.keep_data else b""
        with self._cond:
            self.received.extend(Received(mail_from, rcpt, kept, now) for rcpt in rcpts)
            self._messages += 1
            number = self._messages
            self._cond.notify_all()
        if self.store_dir:
            (self.store_dir / f"{number}.eml").write_bytes(data)
        return number

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        assert self.auth is not None
        ok = (isinstance(auth_data, LoginPassword)
              and self.auth.get(auth_data.login.decode("utf-8", "replace"))
              == auth_data.password.decode("utf-8", "replace"))
        return AuthResult(success=ok, handled=False)


_RULE_ARG = re.compile(
    r"^(?P<pattern>.*?)=(?P<code>[2-5]\d\d) (?P<text>.*?)"
    r"(?P<opts>(?:,(?:times=\d+|stage=\w+|disconnect))*)$")


def parse_rule(arg: str) -> Rule:
    """Parse `REGEX=CODE TEXT[,times=N][,stage=rcpt|data|mail][,disconnect]`."""
    m = _RULE_ARG.match(arg)
    if not m:
        raise ValueError(f"--rule {arg!r}: expected REGEX=CODE TEXT[,times=N][,stage=S][,disconnect]")
    opts = [o for o in m["opts"].split(",") if o]
    kw: dict[str, Any] = {"disconnect": "disconnect" in opts}
    for opt in opts:
        key, _, value = opt.partition("=")
        if key == "times":
            kw["times"] = int(value)
        elif key == "stage":
            kw["stage"] = value
    return Rule(m["pattern"], int(m["code"]), m["text"], **kw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m campaigns.cli.sink", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525, help="0 picks a free port")
    parser.add_argument("--store", type=Path, help="also write each accepted message as N.eml here")
    parser.add_argument("--rule", action="append", default=[], metavar="'REGEX=CODE TEXT[,times=N]'")
    parser.add_argument("--demo-rules", action="store_true", help="add DEMO_RULES (bounce*, defer*)")
    parser.add_argument("--delay-s", type=float, default=0.0, help="pause before answering DATA")
    parser.add_argument("--no-keep-data", action="store_true", help="do not keep bodies in memory")
    args = parser.parse_args(argv)
    try:
        rules = [parse_rule(r) for r in args.rule] + (DEMO_RULES if args.demo_rules else [])
    except (ValueError, re.error) as err:
        parser.error(str(err))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sink = ScriptedSink(host=args.host, port=args.port, rules=rules, store_dir=args.store,
                        delay_s=args.delay_s, keep_data=not args.no_keep_data).start()
    print(f"listening {sink.host}:{sink.port}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sink.stop()
    print(f"stopped after accepting {len(sink.received)} messages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
