"""A private Dovecot IMAP server for tests: Debian's dovecot-imapd, installed on first use,
run from a config of its own in a temporary folder, on free loopback ports.

Independent of pytest. When dovecot cannot be provided, `private_dovecot` raises
RuntimeError saying what failed: the tests that need it fail, they never skip.

Dovecot refuses to open mail as root ("userdb returned 0 as uid"), so when we are root the
mail processes run as `nobody`, and the maildirs live in a folder of their own under /tmp
(pytest's tmp_path is 0700 root, which `nobody` cannot enter). When we are not root, Dovecot
runs rootless: every process as the current user, without chroot.
"""
from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests import debian

PACKAGE = "dovecot-imapd"
START_TIMEOUT_S = 10.0
_SUN_PATH_MAX = 70   # base_dir holds unix sockets (108 bytes with their names): stay short


def find_dovecot() -> str | None:
    return debian.find("dovecot")


def ensure_dovecot() -> str:
    """The dovecot binary; installs Debian's dovecot-imapd when it is missing."""
    return debian.ensure("dovecot", PACKAGE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quote(mailbox: str) -> str:
    """An (ASCII, already modified-UTF-7) mailbox name as an IMAP quoted string."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class StoredMessage:
    uid: int
    flags: frozenset[str]
    raw: bytes


@dataclass
class DovecotServer:
    host: str
    port_imap: int                   # plain IMAP, STARTTLS offered when TLS is on
    port_imaps: int | None           # implicit TLS, None without a certificate
    root: Path                       # dovecot.conf, dovecot.log, users
    mail_dir: Path
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @contextlib.contextmanager
    def session(self, user: str) -> Iterator[imaplib.IMAP4]:
        """A logged-in plain-IMAP connection as `user`, logged out afterwards."""
        conn = imaplib.IMAP4(self.host, self.port_imap, timeout=10)
        try:
            conn.login(user, self.passwords[user])
            yield conn
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def append(self, user: str, message: bytes, folder: str = "INBOX") -> None:
        """Deliver `message` to `user`'s `folder` (created when missing) with IMAP APPEND."""
        with self.session(user) as conn:
            if folder.upper() != "INBOX":
                conn.create(quote(folder))          # NO [ALREADYEXISTS] is fine
            typ, data = conn.append(quote(folder), "", None, message)
            if typ != "OK":
                raise RuntimeError(f"APPEND to {user}/{folder} failed: {typ} {data}")

    def messages(self, user: str, folder: str = "INBOX") -> list[StoredMessage]:
        """What `user`'s `folder` holds now (read-only: changes no flag), oldest first.
        `folder` is the name as on the wire (modified UTF-7 for non-ASCII)."""
        with self.session(user) as conn:
            typ, data = conn.select(quote(folder), readonly=True)
            if typ != "OK":
                raise RuntimeError(f"SELECT {user}/{folder} failed: {typ} {data}")
            if int(data[0] or 0) == 0:
                return []
            flags: dict[int, frozenset[str]] = {}
            for line in conn.uid("FETCH", "1:*", "(FLAGS)")[1]:
                m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)
                if m:
                    flags[int(m.group(1))] = frozenset(m.group(2).decode().split())
            out = []
            for item in conn.uid("FETCH", "1:*", "(BODY.PEEK[])")[1]:
                if isinstance(item, tuple):
                    found = re.search(rb"UID (\d+)", item[0])
                    assert found, item[0]
                    uid = int(found.group(1))
                    out.append(StoredMessage(uid, flags.get(uid, frozenset()), item[1]))
            return sorted(out, key=lambda m: m.uid)


def _write_config(server: DovecotServer, tls_cert: tuple[Path, Path] | None, run_dir: Path,
                  user_settings: Mapping[str, Mapping[str, str]]) -> Path:
    lines = []
    for user, password in server.passwords.items():
        extra = " ".join(f"userdb_{k}={v}" for k, v in user_settings.get(user, {}).items())
        if any(c in user + password + extra for c in ":\n") or " " in user + password:
            raise ValueError(f"user {user!r}: no ':', space or newline in names and passwords")
        # user:password:uid:gid:gecos:home:shell:extra fields (empty uid: mail_uid below)
        lines.append(f"{user}:{{PLAIN}}{password}::::::{extra}")
    users = server.root / "users"
    users.write_text("\n".join(lines) + "\n")
    users.chmod(0o600)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        # auth reads the users file from tmp_path, which only root may enter
        identity = (f"mail_uid = {nobody.pw_uid}\nmail_gid = {nobody.pw_gid}\n"
                    "service auth {\n  user = root\n}\n")
        chroot = ""
    else:
        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(me.pw_gid).gr_name
        identity = (f"default_internal_user = {me.pw_name}\ndefault_login_user = {me.pw_name}\n"
                    f"default_internal_group = {group}\n"
                    "service anvil {\n  chroot =\n}\n")
        chroot = "  chroot =\n"
    ssl = "ssl = no\n"
    if tls_cert:
        ssl = f"ssl = yes\nssl_cert = <{tls_cert[0]}\nssl_key = <{tls_cert[1]}\n"
    conf = server.root / "dovecot.conf"
    conf.write_text(f"""\
# Written by tests/dovecot.py: a private server, nothing from /etc/dovecot.
base_dir = {run_dir}
state_dir = {server.root / "state"}
log_path = {server.log_path}
instance_name = campaigns-test-{server.port_imap}
listen = {server.host}
protocols = imap
{identity}{ssl}\
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_failure_delay = 0
mail_location = maildir:{server.mail_dir}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
service imap-login {{
{chroot}  inet_listener imap {{
    port = {server.port_imap}
  }}
  inet_listener imaps {{
    port = {server.port_imaps or 0}
  }}
}}
""")
    return conf


def _greets(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            return s.recv(64).startswith(b"* OK")
    except OSError:
        return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the master (it stops its children), SIGKILL to the whole process group
    it leads when it does not exit in time or leaves a child behind."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


def _start(binary: str, server: DovecotServer, conf: Path) -> subprocess.Popen[bytes] | None:
    """The running master, or None when a port was taken meanwhile (try other ports)."""
    for old in (server.log_path, server.root / "stderr.log"):
        old.unlink(missing_ok=True)
    with open(server.root / "stderr.log", "wb") as err:
        proc = subprocess.Popen([binary, "-F", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=err, stderr=err, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _greets(server.host, server.port_imap) and (
                server.port_imaps is None or _accepts(server.host, server.port_imaps)):
            return proc
        time.sleep(0.05)
    _stop(proc)
    log = server.log_tail() + "\n" + (server.root / "stderr.log").read_text(errors="replace")
    if "Address already in use" in log:
        return None
    raise RuntimeError(f"dovecot ({binary} -F -c {conf}) did not greet on "
                       f"{server.host}:{server.port_imap} within {START_TIMEOUT_S:g} s "
                       f"(exit code {proc.returncode}):\n{log[-2000:]}")


@contextlib.contextmanager
def private_dovecot(tmp_path: Path, users: Mapping[str, str] | None = None,
                    tls_cert: tuple[Path, Path] | None = None,
                    user_settings: Mapping[str, Mapping[str, str]] | None = None,
                    ) -> Iterator[DovecotServer]:
    """A running Dovecot for `users` ({name: password}, plain text), stopped on exit.

    `tls_cert` is (certificate chain PEM, private key PEM): with it the server offers
    STARTTLS on `port_imap` and implicit TLS on `port_imaps`. `user_settings` overrides
    Dovecot settings per user through userdb fields, e.g. {"old": {"imap_capability":
    "IMAP4rev1"}} (values without spaces)."""
    binary = ensure_dovecot()
    root = Path(tmp_path) / "dovecot"
    root.mkdir(parents=True, exist_ok=True)
    cleanup: list[Path] = []
    run_dir = root / "run"
    if len(str(run_dir)) > _SUN_PATH_MAX:
        run_dir = Path(tempfile.mkdtemp(prefix="dovecot-run-"))
        cleanup.append(run_dir)
    if os.geteuid() == 0:
        mail_dir = Path(tempfile.mkdtemp(prefix="dovecot-mail-"))
        cleanup.append(mail_dir)
        nobody = pwd.getpwnam("nobody")
        os.chown(mail_dir, nobody.pw_uid, nobody.pw_gid)
    else:
        mail_dir = root / "mail"
        mail_dir.mkdir(exist_ok=True)
    proc = None
    try:
        for _attempt in range(3):
            server = DovecotServer(host="127.0.0.1", port_imap=free_port(),
                                   port_imaps=free_port() if tls_cert else None, root=root,
                                   mail_dir=mail_dir,
                                   passwords=dict(users or {"bounces": "s3cret-pw"}))
            conf = _write_config(server, tls_cert, run_dir, user_settings or {})
            proc = _start(binary, server, conf)
            if proc:
                break
        if proc is None:
            raise RuntimeError(f"dovecot: no free port after 3 tries:\n{server.log_tail()}")
        yield server
    finally:
        if proc is not None:
            _stop(proc)
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
